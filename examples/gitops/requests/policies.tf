# The policies requests may refer to, as the policies workspace outputs them
# (terraform -chdir=policies output policy_ids). A policy's id names its NSGs:
# update it here when the platform team changes them. Owned by the platform
# team (CODEOWNERS), like the policies themselves.
#
# A request's policy_id may be the id string (what `jitd request` writes) or
# local.policy_ids.<key>.
locals {
  policy_ids = {
    web_ssh  = "web-ssh@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
    jump_rdp = "jump-rdp@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ops/providers/Microsoft.Network/networkSecurityGroups/nsg-jump"
  }
}

output "policy_ids" {
  description = "Policies a request may name: jitd request --policy <id>."
  value       = local.policy_ids
}
