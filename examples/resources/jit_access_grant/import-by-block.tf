# Terraform 1.5 and later: import in a plan, reviewed like any other change.
# The id is the policy's id and the grant's id: <policy_id>#<grant_id>.
import {
  to = jit_access_grant.alice_web_ssh
  id = "web-admin@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web-nic#k3j9x0p2ab"
}
