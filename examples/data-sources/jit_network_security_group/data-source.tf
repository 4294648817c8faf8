data "jit_network_security_group" "web" {
  id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
}

# Every inbound rule that allows traffic from anywhere, managed by JIT or not.
output "open_to_anyone" {
  value = [
    for r in data.jit_network_security_group.web.security_rules : r.name
    if r.direction == "Inbound" && r.access == "Allow" && anytrue([for p in r.source_address_prefixes : contains(["*", "Internet", "0.0.0.0/0"], p)])
  ]
}
