# In the platform workspace, which does not hold the requests' state: who can
# get in through the web policy right now, whoever applied the grants.
data "jit_access_grants" "web" {
  policy_id = provider::jit::policy_id("web-ssh", [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web",
  ])
}

output "who_is_in" {
  value = [
    for g in data.jit_access_grants.web.grants :
    format("%s from %s to %s until %s", g.requester, g.source_address_prefix, join(",", [for p in g.ports : tostring(p)]), g.expires_at)
    if g.status == "active"
  ]
}

# Nothing in the grant namespace that does not decode as a grant.
check "no_hand_made_grants" {
  assert {
    condition     = length(data.jit_access_grants.web.malformed_rules) == 0
    error_message = "Rules in the grant namespace that are not grants: ${join(", ", data.jit_access_grants.web.malformed_rules[*].rule_name)}"
  }
}
