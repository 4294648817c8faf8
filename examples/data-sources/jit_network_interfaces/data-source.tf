# The NSGs (subnet and NIC level) and private IP addresses of the web VMs'
# network interfaces: onboarding a VM is one reference to its NIC.
variable "web_nic_ids" {
  description = "The web VMs' NICs: flatten(azurerm_linux_virtual_machine.web[*].network_interface_ids) where the VMs are in the same configuration."
  type        = list(string)
  default = [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkInterfaces/nic-web-01",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkInterfaces/nic-web-02",
  ]
}

data "jit_network_interfaces" "web" {
  ids = var.web_nic_ids
}

# Keep SSH on those VMs closed except for reviewed, time-limited grants. When
# the network team moves a VM to another subnet or NSG, the next plan follows.
resource "jit_policy" "web_ssh" {
  name                            = "web-ssh"
  network_security_group_ids      = data.jit_network_interfaces.web.network_security_group_ids
  destination_address_prefixes    = data.jit_network_interfaces.web.private_ip_addresses
  allowed_source_address_prefixes = ["203.0.113.0/24"]

  ports = [
    { port = 22, protocol = "Tcp", max_duration = "4h" },
  ]

  priority_band = { start = 100, end = 199 }
}

# Per NIC: which NSGs filter its traffic, at which level.
output "web_nics" {
  value = {
    for nic in data.jit_network_interfaces.web.interfaces : nic.name => {
      nic_nsg     = nic.network_security_group_id
      subnet_nsgs = nic.subnet_network_security_group_ids
      addresses   = nic.private_ip_addresses
    }
  }
}
