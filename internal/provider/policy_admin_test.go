package provider

import (
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// Security admin rules of the NSG's virtual network decide before the
// policy: the plan says so (and fails when asked), the attribute lists
// them, and flow verification agrees that the NSG cannot close the port.
func TestAccPolicy_reportsSecurityAdminRules(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	env.CreateVNet("vnet-web", "10.0.0.0/16", acctest.Subnet{Name: "vms", Prefix: "10.0.1.0/24", NSGID: nsgID})
	vnetID := env.VNetID("vnet-web")
	anywhere := []azuresim.AddressPrefixItem{{AddressPrefix: "*", AddressPrefixType: "IPPrefix"}}
	set := func(rules ...azuresim.AdminRule) {
		if err := env.Sim.SetAdminRules(vnetID, rules); err != nil {
			t.Fatal(err)
		}
	}
	alwaysSSH := azuresim.AdminRule{Name: "always-ssh", Access: "AlwaysAllow", Priority: 10, Direction: "Inbound", Protocol: "Tcp",
		Sources: anywhere, Destinations: anywhere, DestinationPortRanges: []string{"22"}}
	denySSH := azuresim.AdminRule{Name: "deny-ssh", Access: "Deny", Priority: 20, Direction: "Inbound", Protocol: "Tcp",
		Sources:      []azuresim.AddressPrefixItem{{AddressPrefix: "203.0.113.0/24", AddressPrefixType: "IPPrefix"}},
		Destinations: anywhere, DestinationPortRanges: []string{"3389"}}
	overrides := tfjsonpath.New("admin_rule_overrides")
	config := policyConfig(env, nsgID, []string{"22", "3389"})
	strict := policyConfig(env, nsgID, []string{"22", "3389"}, "  fail_on_admin_override = true")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{
			{
				Config: config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", overrides, knownvalue.ListSizeExact(0)),
				},
			},
			{
				// Someone adds admin rules to the virtual network.
				PreConfig: func() { set(alwaysSSH, denySSH) },
				Config:    config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", overrides, knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("always-ssh"), "access": knownvalue.StringExact("AlwaysAllow"),
							"port": knownvalue.Int64Exact(22), "virtual_network_id": knownvalue.StringExact(vnetID),
							"network_security_group_id": knownvalue.StringExact(nsgID),
						}),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("deny-ssh"), "access": knownvalue.StringExact("Deny"),
							"port": knownvalue.Int64Exact(3389),
						}),
					})),
					// What the attribute says, flow verification shows: the
					// policy's deny-all cannot close 22 to a stranger, and
					// the office cannot reach 3389 whatever a grant says.
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("name"), knownvalue.StringFunc(func(string) error {
						if !reachableIn(t, env, vnetID, nsgID, stranger, 22) {
							t.Error("the AlwaysAllow admin rule does not open 22 in flow verification")
						}
						if reachableIn(t, env, vnetID, nsgID, admin, 3389) {
							t.Error("the Deny admin rule does not close 3389 in flow verification")
						}
						return nil
					})),
				},
			},
			{
				Config:      strict,
				ExpectError: regexp.MustCompile(`(?s)Security Admin Rules Decide Protected Ports.*always-ssh.*fail_on_admin_override is true`),
			},
			{
				PreConfig: func() { set() },
				Config:    strict,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", overrides, knownvalue.ListSizeExact(0)),
				},
			},
		},
	})
}

// reachableIn is flow verification through the virtual network's admin
// rules and the NSG.
func reachableIn(t *testing.T, env *acctest.Env, vnetID, nsgID, src string, port int) bool {
	t.Helper()
	v, err := env.Sim.VerifyFlow(azuresim.Flow{VirtualNetworkID: vnetID, NSGIDs: []string{nsgID}, Protocol: "Tcp",
		Source: src, Destination: vm, DestinationPort: port})
	if err != nil {
		t.Fatal(err)
	}
	return v.Allowed
}
