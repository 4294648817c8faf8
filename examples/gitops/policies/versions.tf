# The platform team's workspace: which NSGs are protected, which ports, who
# may ever ask and for how long. Changes here are reviewed by the platform
# team (CODEOWNERS) and applied on merge by .github/workflows/apply.yml.
terraform {
  required_version = ">= 1.8"

  required_providers {
    jit = {
      source  = "jitaccess/jit"
      version = "~> 0.1"
    }
  }

  # One state per workspace, in a storage account only the pipelines'
  # identities can write. With use_oidc and use_azuread_auth the backend
  # authenticates like the provider (GitHub's OIDC token), no access key.
  backend "azurerm" {
    resource_group_name  = "rg-terraform-state"
    storage_account_name = "stjitstate"
    container_name       = "tfstate"
    key                  = "jit/policies.tfstate"
    use_oidc             = true
    use_azuread_auth     = true
  }
}

# ARM_SUBSCRIPTION_ID, ARM_TENANT_ID, ARM_CLIENT_ID and ARM_USE_OIDC come
# from the workflow, as for the azurerm provider.
provider "jit" {}
