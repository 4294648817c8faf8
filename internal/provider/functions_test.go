package provider

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
)

// Functions run in the real terraform CLI; they need no provider
// configuration and no Azure.
func TestAccFunctions(t *testing.T) {
	const nsgA = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/a"
	const nsgB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/b"
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: `
locals {
  allowed = ["203.0.113.0/24", "2001:db8:1::/48"]
}
output "inside"        { value = provider::jit::cidr_contains(local.allowed, "203.0.113.7") }
output "inside_cidr"   { value = provider::jit::cidr_contains(local.allowed, "203.0.113.128/25") }
output "wider"         { value = provider::jit::cidr_contains(local.allowed, "203.0.112.0/23") }
output "outside"       { value = provider::jit::cidr_contains(local.allowed, "198.51.100.9") }
output "inside_v6"     { value = provider::jit::cidr_contains(local.allowed, "2001:db8:1:2::9") }
output "any"           { value = provider::jit::cidr_contains(["*"], "198.51.100.9") }
output "seconds"       { value = provider::jit::duration_seconds("1h30m") }
output "within_limit"  { value = provider::jit::duration_seconds("2h") <= provider::jit::duration_seconds("3h") }
output "policy_id"     { value = provider::jit::policy_id("web", ["` + nsgB + `", "` + nsgA + `"]) }
`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownOutputValue("inside", knownvalue.Bool(true)),
				statecheck.ExpectKnownOutputValue("inside_cidr", knownvalue.Bool(true)),
				statecheck.ExpectKnownOutputValue("wider", knownvalue.Bool(false)),
				statecheck.ExpectKnownOutputValue("outside", knownvalue.Bool(false)),
				statecheck.ExpectKnownOutputValue("inside_v6", knownvalue.Bool(true)),
				statecheck.ExpectKnownOutputValue("any", knownvalue.Bool(true)),
				statecheck.ExpectKnownOutputValue("seconds", knownvalue.Int64Exact(5400)),
				statecheck.ExpectKnownOutputValue("within_limit", knownvalue.Bool(true)),
				statecheck.ExpectKnownOutputValue("policy_id", knownvalue.StringExact("web@"+nsgA+","+nsgB)),
			},
		}},
	})
}

func TestAccFunctions_errors(t *testing.T) {
	for name, tc := range map[string]struct{ expr, want string }{
		"host bits":      {`provider::jit::cidr_contains(["203.0.113.7/24"], "203.0.113.7")`, `prefix "203.0.113.7/24" has host bits set`},
		"not an address": {`provider::jit::cidr_contains(["203.0.113.0/24"], "web-01")`, `address "web-01" is not an IP address or CIDR`},
		"bad duration":   {`provider::jit::duration_seconds("1y")`, `duration "1y" is not a duration`},
		"not an NSG id":  {`provider::jit::policy_id("web", ["nsg-web"])`, `"nsg-web" is not a network security group id`},
		"empty NSG list": {`provider::jit::policy_id("web", [])`, `nsg_ids needs at least one`},
	} {
		t.Run(name, func(t *testing.T) {
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(noEnv),
				Steps: []resource.TestStep{{
					Config:      `output "x" { value = ` + tc.expr + ` }`,
					ExpectError: regexp.MustCompile(strings.ReplaceAll(tc.want, " ", `\s+`)),
				}},
			})
		})
	}
}
