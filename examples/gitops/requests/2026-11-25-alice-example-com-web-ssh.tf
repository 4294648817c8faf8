# Written by `jitd request` on 2026-11-25. Access lasts 2h from the apply;
# once it has expired, remove this file (plans warn until it is removed).
resource "jit_access_grant" "alice_web_ssh" {
  policy_id             = "web-ssh@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
  ports                 = [22]
  source_address_prefix = "203.0.113.7"
  duration              = "2h"
  requester             = "alice@example.com"
  justification         = "INC-4711: restart the stuck worker on web-01"
  approval_reference    = "https://github.com/example/access/pull/128"
}
