# Lets this folder validate on its own. The demo copies only alice-ssh.tf
# into the quickstart configuration, which declares var.nsg_id itself.
terraform {
  required_providers {
    jit = {
      source = "jitaccess/jit"
    }
  }
}

variable "nsg_id" {
  description = "The network security group in front of the VM."
  type        = string
}
