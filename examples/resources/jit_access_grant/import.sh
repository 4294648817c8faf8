# A grant is imported by its policy id and its grant id: <policy_id>#<grant_id>.
# The ports, source, requester and expiry are read back from its rule;
# duration, justification and approval_reference come from the configuration.
terraform import jit_access_grant.alice_web_ssh 'web-admin@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web-nic#k3j9x0p2ab'
