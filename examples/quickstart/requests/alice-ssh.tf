# A request, as a pull request adds it: one file per grant, reviewed like
# code. Merged and applied, it opens port 22 for Alice's address only, for
# one minute (the demo's short window), counted from the apply. It names the
# policy by its id (the policy's name and NSGs), as a request in a workspace
# of its own would.
resource "jit_access_grant" "alice_ssh" {
  policy_id             = provider::jit::policy_id("web-ssh", [var.nsg_id])
  ports                 = [22]
  source_address_prefix = "203.0.113.7"
  duration              = "1m"
  requester             = "alice@example.com"
  justification         = "INC-4711: restart the stuck worker on web-01"
  approval_reference    = "https://github.com/example/access/pull/128"
}

output "alice_expires_at" {
  value = jit_access_grant.alice_ssh.expires_at
}
