# The engineers' workspace: one file per access request, each a
# jit_access_grant. The security team reviews every change here
# (CODEOWNERS); the plan on the pull request checks the request against the
# policy as it is written on the NSGs and fails if it asks for more.
terraform {
  required_version = ">= 1.8"

  required_providers {
    jit = {
      source  = "jitaccess/jit"
      version = "~> 0.1"
    }
  }

  # Its own state: a broken or slow request never blocks a policy change,
  # and this workspace needs no access to the policies' state.
  backend "azurerm" {
    resource_group_name  = "rg-terraform-state"
    storage_account_name = "stjitstate"
    container_name       = "tfstate"
    key                  = "jit/requests.tfstate"
    use_oidc             = true
    use_azuread_auth     = true
  }
}

provider "jit" {}
