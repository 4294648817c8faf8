# Onboard a VM with one reference: its NIC- and subnet-level NSGs and its
# private IPs.
data "jit_network_interfaces" "web" {
  # azurerm_network_interface.web.id, or the id of a NIC managed elsewhere.
  ids = ["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkInterfaces/nic-web-01"]
}

# SSH and RDP on the web VM are closed to everyone by default. Only the
# office and VPN ranges may ever ask for access, SSH for at most 4 hours and
# RDP for at most 1 hour.
resource "jit_policy" "web_admin" {
  name                         = "web-admin"
  network_security_group_ids   = data.jit_network_interfaces.web.network_security_group_ids
  destination_address_prefixes = data.jit_network_interfaces.web.private_ip_addresses

  allowed_source_address_prefixes = [
    "203.0.113.0/24", # office
    "2001:db8:100::/48",
    "198.51.100.32/27", # VPN egress
  ]

  ports = [
    { port = 22, protocol = "Tcp", max_duration = "4h" },
    { port = 3389, protocol = "Tcp", max_duration = "1h" },
  ]

  # The NSG priorities this policy owns; must not overlap another policy's.
  # Azure's priorities start at 100: rules at 100-199 here are ahead of it.
  priority_band = { start = 200, end = 299 }

  # Fail the plan if a pre-existing rule ahead of the band (say "Allow 22
  # from Internet" at priority 150) would keep a protected port open.
  fail_on_bypass = true

  # Fail the plan if a rule outside the policy (say "Allow 22 from" the VPN
  # range) lets allowed sources in with no grant.
  fail_on_standing_access = true
}

output "not_really_closed" {
  value = jit_policy.web_admin.bypassing_rules
}

output "open_without_a_grant" {
  value = jit_policy.web_admin.standing_access
}
