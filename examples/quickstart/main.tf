# Quickstart: point the provider at an NSG and see what is really open.
#
# `make demo` runs this against a local Azure; against real Azure, set the
# usual ARM_* variables and pass -var nsg_id=<your NSG's id>.

terraform {
  required_version = ">= 1.8"
  required_providers {
    jit = {
      source = "jitaccess/jit"
    }
  }
}

provider "jit" {}

variable "nsg_id" {
  description = "The network security group in front of the VM."
  type        = string
}

data "jit_client_config" "current" {}

data "jit_network_security_group" "web" {
  id = var.nsg_id
}

output "terraform_runs_as" {
  value = "${data.jit_client_config.current.client_id} in tenant ${data.jit_client_config.current.tenant_id} (${data.jit_client_config.current.environment})"
}

output "inbound_rules" {
  description = "The NSG's inbound rules, by priority: the first match decides."
  value = [
    for r in data.jit_network_security_group.web.security_rules :
    format("%4d %-5s %-4s from %-12s to port %-5s %s%s",
      r.priority, r.access, r.protocol, join(",", r.source_address_prefixes),
    join(",", r.destination_port_ranges), r.name, r.jit_managed ? " (jit)" : "")
    if r.direction == "Inbound"
  ]
}
