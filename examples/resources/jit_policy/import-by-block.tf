# Terraform 1.5 and later: import in a plan, reviewed like any other change.
# The id is the policy's name and its NSGs: <name>@<nsg id>[,<nsg id>...].
import {
  to = jit_policy.web_admin
  id = "web-admin@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web-nic"
}
