terraform {
  required_version = ">= 1.8"
  required_providers {
    jit = {
      source = "jitaccess/jit"
    }
  }
}

# With no arguments the provider reads the same ARM_* environment variables
# as the azurerm provider (ARM_SUBSCRIPTION_ID, ARM_TENANT_ID, ARM_CLIENT_ID,
# ARM_USE_OIDC, ...), so a pipeline already set up for azurerm needs nothing
# new.
provider "jit" {}
