# Quickstart: close SSH on a VM by default, and let reviewed requests open it
# for one address at a time.
#
# `make demo` runs this against a local Azure. Against real Azure, set the
# usual ARM_* variables and pass -var nsg_id=<the VM's NSG id>
# -var vm_ip=<its private IP>.

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

variable "vm_ip" {
  description = "The VM's private IP address."
  type        = string
  default     = "10.0.1.4"
}

# The platform team's policy: SSH on the VM is closed to everyone; only the
# office range may ever ask, for at most an hour.
resource "jit_policy" "web_ssh" {
  name                            = "web-ssh"
  network_security_group_ids      = [var.nsg_id]
  destination_address_prefixes    = [var.vm_ip]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports = [
    { port = 22, max_duration = "1h" },
  ]
  # Azure keeps established connections after their rule goes: this ends
  # the grantee's SSH session at expiry too (flushConnection on the NSG).
  end_sessions_at_expiry = true
}

data "jit_network_security_group" "web" {
  id         = var.nsg_id
  depends_on = [jit_policy.web_ssh]
}

output "policy_id" {
  value = jit_policy.web_ssh.id
}

output "not_really_closed" {
  description = "Rules that would still let a protected port in (none here)."
  value       = jit_policy.web_ssh.bypassing_rules
}

output "inbound_rules" {
  description = "The NSG's inbound rules, by priority: the first match decides."
  value = [
    for r in data.jit_network_security_group.web.security_rules :
    format("%4d %-5s %-4s from %-22s to port %-5s %s",
      r.priority, r.access, r.protocol, join(",", r.source_address_prefixes),
    join(",", r.destination_port_ranges), r.name)
    if r.direction == "Inbound"
  ]
}
