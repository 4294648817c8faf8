# A policy is imported by its name and its NSGs: <name>@<nsg id>[,<nsg id>...].
# Everything else is read back from the rules on the NSGs.
terraform import jit_policy.web_admin 'web-admin@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web-nic'
