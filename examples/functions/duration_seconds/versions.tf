# Lets this example validate on its own (terraform init && terraform validate);
# not shown on the registry page.
terraform {
  required_providers {
    jit = {
      source = "jitaccess/jit"
    }
  }
}
