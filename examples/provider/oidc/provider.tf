# GitHub Actions with workload identity federation: the job needs
# `permissions: id-token: write`; GitHub provides the OIDC request URL and token.
provider "jit" {
  use_oidc        = true
  tenant_id       = "00000000-0000-0000-0000-000000000000"
  client_id       = "00000000-0000-0000-0000-000000000000"
  subscription_id = "00000000-0000-0000-0000-000000000000"
}
