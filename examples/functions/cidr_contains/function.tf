# In a module that files access requests: refuse, at validate time, a source
# the policy would refuse at plan time.
variable "source_address" {
  type = string
  validation {
    condition     = provider::jit::cidr_contains(["203.0.113.0/24", "2001:db8:100::/48"], var.source_address)
    error_message = "Requests must come from the office or the VPN."
  }
}
