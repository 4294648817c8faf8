# In the requests workspace, which does not share state with the platform
# team's policy workspace.
resource "jit_access_grant" "bob_db" {
  policy_id = provider::jit::policy_id("db-admin", [
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-db/providers/Microsoft.Network/networkSecurityGroups/nsg-db",
  ])
  ports                 = [5432]
  source_address_prefix = "203.0.113.20"
  duration              = "30m"
  requester             = "bob@example.com"
  justification         = "CHG-2231: apply the schema migration by hand"
}
