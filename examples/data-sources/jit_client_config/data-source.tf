data "jit_client_config" "current" {}

output "terraform_runs_as" {
  value = data.jit_client_config.current.object_id
}
