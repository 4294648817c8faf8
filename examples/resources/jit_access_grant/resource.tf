# One file per request, added by a pull request and reviewed like code:
# requests/2026-11-24-alice-web-ssh.tf
resource "jit_access_grant" "alice_web_ssh" {
  # The policy's id: jit_policy.web_admin.id in the policy's own workspace;
  # elsewhere its name and NSGs, as provider::jit::policy_id builds it (or the
  # id string itself).
  policy_id = provider::jit::policy_id("web-admin", [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web-nic",
  ])
  ports                 = [22]
  source_address_prefix = "203.0.113.7" # inside the policy's allowed sources
  duration              = "2h"          # at most the policy's maximum for every port
  requester             = "alice@example.com"
  justification         = "INC-4711: restart the stuck worker on web-01"
  approval_reference    = "https://github.com/example/access/pull/128"
}

output "alice_until" {
  value = jit_access_grant.alice_web_ssh.expires_at
}
