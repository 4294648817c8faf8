# The ids requests refer to: copy them into requests/policies.tf when a
# policy is added or its NSGs change (the id names them).
output "policy_ids" {
  description = "The id of each policy, for jit_access_grant.policy_id and jitd request --policy."
  value = {
    web_ssh  = jit_policy.web_ssh.id
    jump_rdp = jit_policy.jump_rdp.id
  }
}

output "bypassing_rules" {
  description = "Rules outside the policies that would still let a protected port in (empty when the ports are really closed)."
  value = {
    web_ssh  = jit_policy.web_ssh.bypassing_rules
    jump_rdp = jit_policy.jump_rdp.bypassing_rules
  }
}
