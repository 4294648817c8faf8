variable "duration" {
  type = string
  validation {
    condition     = provider::jit::duration_seconds(var.duration) <= provider::jit::duration_seconds("4h")
    error_message = "Access is granted for at most 4h."
  }
}
