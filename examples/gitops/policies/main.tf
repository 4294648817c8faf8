# One jit_policy per group of VMs that share who may ask and for how long.
# Onboarding a VM is adding its NIC id: the data source finds the NSGs in
# front of it (NIC and subnet level) and its private addresses.

variable "web_nic_ids" {
  description = "Network interfaces of the web tier."
  type        = list(string)
  default = [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkInterfaces/nic-web-01",
  ]
}

variable "jump_nic_ids" {
  description = "Network interfaces of the Windows jump hosts."
  type        = list(string)
  default = [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ops/providers/Microsoft.Network/networkInterfaces/nic-jump-01",
  ]
}

data "jit_network_interfaces" "web" {
  ids = var.web_nic_ids
}

data "jit_network_interfaces" "jump" {
  ids = var.jump_nic_ids
}

# SSH on the web tier: closed to everyone by default; only the office and
# the VPN may ask, for at most 4 hours.
resource "jit_policy" "web_ssh" {
  name                         = "web-ssh"
  network_security_group_ids   = data.jit_network_interfaces.web.network_security_group_ids
  destination_address_prefixes = data.jit_network_interfaces.web.private_ip_addresses

  allowed_source_address_prefixes = [
    "203.0.113.0/24",   # office
    "198.51.100.32/27", # VPN egress
  ]

  ports = [
    { port = 22, protocol = "Tcp", max_duration = "4h" },
  ]

  priority_band = { start = 100, end = 199 }

  # A pre-existing "Allow 22 from Internet" ahead of the band would keep the
  # port open: fail the plan rather than pretend it is closed.
  fail_on_bypass = true
}

# RDP and WinRM on the jump hosts: at most one hour.
resource "jit_policy" "jump_rdp" {
  name                            = "jump-rdp"
  network_security_group_ids      = data.jit_network_interfaces.jump.network_security_group_ids
  destination_address_prefixes    = data.jit_network_interfaces.jump.private_ip_addresses
  allowed_source_address_prefixes = ["198.51.100.32/27"]

  ports = [
    { port = 3389, protocol = "Tcp", max_duration = "1h" },
    { port = 5986, protocol = "Tcp", max_duration = "1h" },
  ]

  priority_band  = { start = 200, end = 249 }
  fail_on_bypass = true
}
