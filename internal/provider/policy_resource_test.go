package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const (
	vm       = "10.0.1.4"     // the protected VM
	otherVM  = "10.0.1.5"     // behind the same NSG, not protected
	admin    = "203.0.113.7"  // inside the policy's allowed sources
	stranger = "198.51.100.9" // on the Internet, outside them
	neighbor = "10.0.2.5"     // inside the virtual network
)

// policyConfig is a jit_policy block; ports are "22" or "53/Udp", each with
// a 3h maximum.
func policyConfig(env *acctest.Env, nsgID string, ports []string, extra ...string) string {
	var ps []string
	for _, p := range ports {
		number, proto, ok := strings.Cut(p, "/")
		if !ok {
			proto = "Tcp"
		}
		ps = append(ps, fmt.Sprintf(`{ port = %s, protocol = %q, max_duration = "3h" }`, number, proto))
	}
	return env.ProviderBlock() + fmt.Sprintf(`
resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [%q]
  destination_address_prefixes    = [%q]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [%s]
%s
}
`, nsgID, vm, strings.Join(ps, ", "), strings.Join(extra, "\n"))
}

func TestAccPolicy_closesPortsUpdatesImportsAndRestores(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web",
		acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"),
		acctest.AllowRule("AllowHTTPSFromInternet", 310, "Internet", "443"),
		acctest.AllowRule("AllowRDPFromInternet", 320, "Internet", "3389"),
	)
	nsgs := []string{nsgID}
	before := env.Snapshot(nsgID)
	flows := func(port int, sources ...string) []acctest.Flow {
		var out []acctest.Flow
		for _, s := range sources {
			out = append(out, acctest.Flow{Source: s, Destination: vm, Port: port})
		}
		return out
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{
				// Before: 22, 443 and 3389 are open to the Internet.
				PreConfig: func() {
					for _, port := range []int{22, 443, 3389} {
						if !env.Reachable(nsgs, stranger, vm, port, "Tcp") {
							t.Fatalf("fixture: port %d should be open before the policy", port)
						}
					}
				},
				Config: policyConfig(env, nsgID, []string{"22"}),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, flows(22, admin, stranger, neighbor, "2001:db8::1")...),
					env.ExpectReachable(nsgs, true, flows(443, stranger, admin)...),
					env.ExpectReachable(nsgs, true, flows(3389, stranger)...),
					env.ExpectReachable(nsgs, true, acctest.Flow{Source: stranger, Destination: otherVM, Port: 22}),
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("id"), knownvalue.StringExact("web@"+nsgID)),
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("bypassing_rules"), knownvalue.ListSizeExact(0)),
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("priority_band"), knownvalue.ObjectExact(map[string]knownvalue.Check{
						"start": knownvalue.Int64Exact(100), "end": knownvalue.Int64Exact(199),
					})),
				},
			},
			{
				Config: policyConfig(env, nsgID, []string{"22", "3389"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, append(flows(22, admin, stranger), flows(3389, admin, stranger)...)...),
					env.ExpectReachable(nsgs, true, flows(443, stranger)...),
				},
			},
			{
				Config: policyConfig(env, nsgID, []string{"22"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, flows(22, admin, stranger)...),
					env.ExpectReachable(nsgs, true, flows(3389, stranger)...),
				},
			},
			{
				// Moving the band below the pre-existing "Allow 22 from Internet"
				// at priority 300 makes that rule a bypass: the provider says so
				// and port 22 is honestly reported open again.
				Config: policyConfig(env, nsgID, []string{"22"}, "priority_band = { start = 1000, end = 1099 }"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("bypassing_rules"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("AllowSSHFromInternet")}),
					})),
					env.ExpectReachable(nsgs, true, flows(22, stranger)...),
					env.ExpectReachable(nsgs, false, flows(22, neighbor)...),
				},
			},
			{
				Config: policyConfig(env, nsgID, []string{"22"}),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("bypassing_rules"), knownvalue.ListSizeExact(0)),
					env.ExpectReachable(nsgs, false, flows(22, admin, stranger, neighbor)...),
				},
			},
			{
				// Another workspace reads the same policy back from the NSG alone.
				ResourceName:      "jit_policy.web",
				ImportState:       true,
				ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{
					"timeouts",
				},
			},
			{
				// Out of band, someone deletes the deny-all rule: port 22 opens
				// to the allowed sources (the guard still turns everyone else
				// away), the plan shows an update, and the apply closes it again.
				PreConfig: func() {
					env.DeleteRule(nsgID, "jit-web-deny-tcp")
					if !env.Reachable(nsgs, admin, vm, 22, "Tcp") {
						t.Fatal("deleting the deny-all rule should reopen port 22 to the allowed sources")
					}
					if env.Reachable(nsgs, stranger, vm, 22, "Tcp") {
						t.Fatal("the guard should still deny sources outside the policy")
					}
				},
				Config: policyConfig(env, nsgID, []string{"22"}),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, flows(22, admin, stranger)...),
				},
			},
		},
	})
}

func TestAccPolicy_reportsBypassingRules(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	// A pre-existing rule at a higher precedence than the policy's band.
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 150, "Internet", "22"))
	nsgs := []string{nsgID}
	before := env.Snapshot(nsgID)
	band := "priority_band = { start = 200, end = 299 }"

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{
				Config:      policyConfig(env, nsgID, []string{"22"}, band, "fail_on_bypass = true"),
				ExpectError: regexp.MustCompile(`(?s)Protected Ports Are Still Reachable.*AllowSSHFromInternet \(priority 150\).*port 22/Tcp`),
			},
			{
				PreConfig: func() {
					if err := env.ExpectUnchanged(nsgID, before)(nil); err != nil {
						t.Fatalf("a refused plan wrote to the NSG: %v", err)
					}
				},
				Config: policyConfig(env, nsgID, []string{"22"}, band),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("bypassing_rules"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"name":                      knownvalue.StringExact("AllowSSHFromInternet"),
							"network_security_group_id": knownvalue.StringExact(nsgID),
							"priority":                  knownvalue.Int64Exact(150),
							"port":                      knownvalue.Int64Exact(22),
						}),
					})),
					// Honest about what is open: the bypass still lets the Internet in,
					// while everything the bypass does not cover is closed.
					env.ExpectReachable(nsgs, true, acctest.Flow{Source: stranger, Destination: vm, Port: 22}),
					env.ExpectReachable(nsgs, false, acctest.Flow{Source: neighbor, Destination: vm, Port: 22}),
				},
			},
		},
	})
}

// Every plan-time check fails the plan with an error naming the attribute
// and the limit, and leaves the NSG exactly as it was.
func TestAccPolicy_planTimeChecks(t *testing.T) {
	type fixture struct {
		rules  []*armnetwork.SecurityRule
		setup  func(env *acctest.Env, nsgID string)
		config func(env *acctest.Env, nsgID string) string
	}
	withPorts := func(ports string, extra ...string) func(*acctest.Env, string) string {
		return func(env *acctest.Env, nsgID string) string {
			return env.ProviderBlock() + fmt.Sprintf(`
resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [%q]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = %s
%s
}
`, nsgID, ports, strings.Join(extra, "\n"))
		}
	}
	ssh := `[{ port = 22, max_duration = "3h" }]`
	manyRules := func(n int) []*armnetwork.SecurityRule {
		var rules []*armnetwork.SecurityRule
		for i := range n {
			rules = append(rules, acctest.AllowRule(fmt.Sprintf("app-%04d", i), int32(300+i), fmt.Sprintf("10.9.%d.%d", i/200, i%200+1), "8080"))
		}
		return rules
	}
	manyPrefixes := func() []*armnetwork.SecurityRule {
		var rules []*armnetwork.SecurityRule
		for r := range 4 {
			rule := acctest.AllowRule(fmt.Sprintf("partners-%d", r), int32(300+r), "*", "8443")
			rule.Properties.SourceAddressPrefix = nil
			for i := range 999 {
				p := fmt.Sprintf("10.%d.%d.%d", 20+r, i/250, i%250+1)
				rule.Properties.SourceAddressPrefixes = append(rule.Properties.SourceAddressPrefixes, &p)
			}
			rules = append(rules, rule)
		}
		return rules
	}

	tests := map[string]struct {
		fixture
		want string
	}{
		"port zero":          {fixture{config: withPorts(`[{ port = 0, max_duration = "3h" }]`)}, `ports\[0\]\.port: port 0 is outside the range 1.65535`},
		"port too large":     {fixture{config: withPorts(`[{ port = 65536, max_duration = "3h" }]`)}, `ports\[0\]\.port: port 65536 is outside the range 1.65535`},
		"bad protocol":       {fixture{config: withPorts(`[{ port = 22, protocol = "Icmp", max_duration = "3h" }]`)}, `(?s)ports\[0\]\.protocol: .*Icmp.*Tcp.*Udp`},
		"duration too short": {fixture{config: withPorts(`[{ port = 22, max_duration = "4m" }]`)}, `(?s)ports\[0\]\.max_duration: .*4m.*5m`},
		"duration too long":  {fixture{config: withPorts(`[{ port = 22, max_duration = "25h" }]`)}, `(?s)ports\[0\]\.max_duration: .*25h.*24h`},
		"duration malformed": {fixture{config: withPorts(`[{ port = 22, max_duration = "1y" }]`)}, `(?s)ports\[0\]\.max_duration: .*"1y"`},
		"band outside":       {fixture{config: withPorts(ssh, `priority_band = { start = 50, end = 150 }`)}, `(?s)priority_band: start 50 is outside Azure's priorities 100.4096`},
		"band too small":     {fixture{config: withPorts(ssh, `priority_band = { start = 100, end = 105 }`)}, `(?s)priority_band: band 100-105 has 6 priorities; a band needs at least 13`},
		"source with host bits": {fixture{config: func(env *acctest.Env, nsgID string) string {
			return strings.Replace(withPorts(ssh)(env, nsgID), "203.0.113.0/24", "203.0.113.7/24", 1)
		}}, `(?s)allowed_source_address_prefixes\[0\]: .*"203\.0\.113\.7/24" has host bits set.*"203\.0\.113\.0/24"`},
		"shadowed source": {fixture{config: func(env *acctest.Env, nsgID string) string {
			return strings.Replace(withPorts(ssh)(env, nsgID), `["203.0.113.0/24"]`, `["203.0.113.0/24", "203.0.113.128/25"]`, 1)
		}}, `(?s)allowed_source_address_prefixes\[1\]: .*203\.0\.113\.128/25.*203\.0\.113\.0/24`},
		"band overlaps another workspace's policy": {fixture{
			setup: func(env *acctest.Env, nsgID string) {
				other, err := jit.NewPolicy(jit.PolicyInput{Name: "db", DestinationPrefixes: []string{"*"},
					AllowedSources: []string{"198.51.100.0/24"}, BandStart: 150, BandEnd: 249,
					Ports: []jit.PortInput{{Number: 5432, Protocol: "Tcp", MaxDuration: "1h"}}})
				if err != nil {
					panic(err)
				}
				env.PutRules(nsgID, other.Rules()...)
			},
			config: withPorts(ssh),
		}, `(?s)priority_band: band 100-199 of policy "web" overlaps band 150-249 of policy "db"`},
		"foreign rule inside the band": {fixture{
			rules:  []*armnetwork.SecurityRule{acctest.AllowRule("LegacyAdmin", 150, "192.0.2.1", "22")},
			config: withPorts(ssh),
		}, `(?s)priority_band: rule "LegacyAdmin" at priority 150 on .* lies inside band 100-199`},
		"NSG rule limit":   {fixture{rules: manyRules(998), config: withPorts(ssh)}, `(?s)network_security_group_ids: .* would hold 1001 security rules with this policy's 3, over Azure's limit of 1000 per NSG`},
		"NSG prefix limit": {fixture{rules: manyPrefixes(), config: withPorts(ssh)}, `(?s)network_security_group_ids: .* address prefixes .* limit of 4000 per NSG`},
		"NSG missing": {fixture{config: func(env *acctest.Env, _ string) string {
			return withPorts(ssh)(env, env.NSGID("nsg-missing"))
		}}, `(?s)network_security_group_ids.*nsg-missing.*does not exist`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env := acctest.New(t, azuresim.Options{})
			nsgID := env.CreateNSG("nsg-web", tc.rules...)
			if tc.setup != nil {
				tc.setup(env, nsgID)
			}
			before := env.Snapshot(nsgID)
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(noEnv),
				CheckDestroy:             env.ExpectUnchanged(nsgID, before),
				Steps: []resource.TestStep{{
					Config: tc.config(env, nsgID),
					// Terraform wraps long messages: any space may be a line break.
					ExpectError: regexp.MustCompile(strings.ReplaceAll(tc.want, " ", `\s+`)),
				}},
			})
		})
	}
}

func TestAttributePath(t *testing.T) {
	tests := map[string]string{
		"name":                               `name`,
		"ports[1].max_duration":              `ports[1].max_duration`,
		"allowed_source_address_prefixes[0]": `allowed_source_address_prefixes[0]`,
		"priority_band.start":                `priority_band.start`,
	}
	for in, want := range tests {
		p, ok := attributePath(in)
		if !ok || p.String() != want {
			t.Errorf("attributePath(%q) = %q, %v; want %q", in, p, ok, want)
		}
	}
	for _, bad := range []string{"", "ports[x]", "ports[1", ".name"} {
		if _, ok := attributePath(bad); ok {
			t.Errorf("attributePath(%q) should fail", bad)
		}
	}
}

func TestPolicyID(t *testing.T) {
	a := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/b"
	b := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/a"
	id := policyID("web", []string{a, b})
	if id != "web@"+b+","+a {
		t.Fatalf("policyID = %q: want NSG ids sorted", id)
	}
	name, ids, err := parsePolicyID(id)
	if err != nil || name != "web" || len(ids) != 2 || ids[0] != b || ids[1] != a {
		t.Fatalf("parsePolicyID(%q) = %q, %v, %v", id, name, ids, err)
	}
	for _, bad := range []string{"web", "@" + a, "web@", "web@/subscriptions/s"} {
		if _, _, err := parsePolicyID(bad); err == nil {
			t.Errorf("parsePolicyID(%q) should fail", bad)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[string]string{"3h": "3h", "90m": "1h30m", "5m": "5m", "24h": "24h", "1h0m30s": "1h0m30s"} {
		d, err := time.ParseDuration(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %q, want %q", in, got, want)
		}
	}
}

// Onboarding a VM is one reference: the policy takes its NSGs (subnet and
// NIC level) and private IPs from jit_network_interfaces. Dropping the subnet
// NSG from the policy leaves it exactly as it was, and the NIC NSG alone
// keeps the port closed.
func TestAccPolicy_onboardsVMThroughItsNetworkInterface(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	subnetNSG := env.CreateNSG("nsg-subnet", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	nicNSG := env.CreateNSG("nsg-nic", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	env.CreateVNet("vnet", "10.0.0.0/16", acctest.Subnet{Name: "web", Prefix: "10.0.1.0/24", NSGID: subnetNSG})
	nicID, ips := env.CreateNIC("nic-web", acctest.NIC{NSGID: nicNSG, SubnetIDs: []string{env.SubnetID("vnet", "web")}})
	path := []string{subnetNSG, nicNSG}
	beforeSubnet, beforeNIC := env.Snapshot(subnetNSG), env.Snapshot(nicNSG)
	ssh := func(src string) acctest.Flow { return acctest.Flow{Source: src, Destination: ips[0], Port: 22} }
	if !env.Reachable(path, stranger, ips[0], 22, "Tcp") {
		t.Fatal("fixture: port 22 should be open before the policy")
	}

	config := func(nsgs string) string {
		return env.ProviderBlock() + fmt.Sprintf(`
data "jit_network_interfaces" "web" {
  ids = [%q]
}

resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = %s
  destination_address_prefixes    = data.jit_network_interfaces.web.private_ip_addresses
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "1h" }]
}
`, nicID, nsgs)
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy: func(s *terraform.State) error {
			if err := env.ExpectUnchanged(subnetNSG, beforeSubnet)(s); err != nil {
				return err
			}
			return env.ExpectUnchanged(nicNSG, beforeNIC)(s)
		},
		Steps: []resource.TestStep{
			{
				Config: config("data.jit_network_interfaces.web.network_security_group_ids"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("network_security_group_ids"),
						knownvalue.SetExact([]knownvalue.Check{knownvalue.StringExact(subnetNSG), knownvalue.StringExact(nicNSG)})),
					env.ExpectReachable(path, false, ssh(stranger), ssh(admin)),
					env.ExpectReachable([]string{subnetNSG}, false, ssh(stranger)),
					env.ExpectReachable([]string{nicNSG}, false, ssh(stranger)),
				},
			},
			{
				Config: config(fmt.Sprintf("[%q]", nicNSG)),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectNSGUnchanged(subnetNSG, beforeSubnet),
					env.ExpectReachable(path, false, ssh(stranger), ssh(admin)),
					env.ExpectReachable([]string{subnetNSG}, true, ssh(stranger)),
				},
			},
		},
	})
}

// Arguments from variables are unknown while Terraform validates the
// configuration; the policy is checked once they are known.
func TestAccPolicy_argumentsFromVariables(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	before := env.Snapshot(nsgID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{{
			ConfigVariables: config.Variables{
				"nsg_id": config.StringVariable(nsgID),
				"vm_ip":  config.StringVariable(vm),
				"office": config.StringVariable("203.0.113.0/24"),
			},
			Config: env.ProviderBlock() + `
variable "nsg_id" { type = string }
variable "vm_ip" { type = string }
variable "office" { type = string }

resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [var.nsg_id]
  destination_address_prefixes    = [var.vm_ip]
  allowed_source_address_prefixes = [var.office]
  ports                           = [{ port = 22, max_duration = "1h" }]
}
`,
			ConfigStateChecks: []statecheck.StateCheck{
				env.ExpectReachable([]string{nsgID}, false, acctest.Flow{Source: stranger, Destination: vm, Port: 22}),
			},
		}},
	})
}

// An apply interrupted after Azure accepted the policy's rules and before
// Terraform saved state leaves the policy on the NSG: the next apply adopts
// it instead of failing, and the ports stay closed throughout.
func TestAccPolicy_adoptsAnIdenticalPolicyLeftByAnInterruptedApply(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	before := env.Snapshot(nsgID)
	left, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.PutRules(nsgID, left.Rules()...)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{{
			Config: policyConfig(env, nsgID, []string{"22"}),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("id"), knownvalue.StringExact("web@"+nsgID)),
				env.ExpectReachable([]string{nsgID}, false, acctest.Flow{Source: stranger, Destination: vm, Port: 22}),
			},
		}},
	})
}

// A policy with an active grant (written by another workspace) is not
// destroyed: its deny-all rule is what closes the port again after the
// grant, so the destroy fails naming the grant, and nothing is removed.
// Once the grant is gone, the destroy goes through.
func TestAccPolicy_refusesDestroyUnderAnActiveGrant(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	before := env.Snapshot(nsgID)
	var grantRule string
	var withGrant acctest.Snapshot
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{Config: policyConfig(env, nsgID, []string{"22"})},
			{
				PreConfig: func() {
					p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
						AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
						Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}})
					if err != nil {
						t.Fatal(err)
					}
					g, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: admin, Duration: "1h", Requester: "dave@example.com"})
					if err != nil {
						t.Fatal(err)
					}
					lo, _ := p.Band.GrantRange()
					rule := p.GrantRule("active1", g, time.Now().Add(time.Hour), lo)
					grantRule = rule.Name
					env.PutRules(nsgID, rule)
					withGrant = env.Snapshot(nsgID)
				},
				Config:      env.ProviderBlock(),
				ExpectError: regexp.MustCompile(`(?s)Policy "web" still has 1 active grant\(s\).*grant active1 \(rule jit-web-g-active1\) by dave@example\.com`),
			},
			{
				// Nothing was removed: the port is closed behind the grant.
				PreConfig: func() {
					if err := env.ExpectUnchanged(nsgID, withGrant)(nil); err != nil {
						t.Fatalf("a refused destroy changed the NSG: %v", err)
					}
					if env.Reachable([]string{nsgID}, stranger, vm, 22, "Tcp") {
						t.Fatal("the refused destroy opened port 22")
					}
					env.DeleteRule(nsgID, grantRule)
				},
				Config: env.ProviderBlock(),
			},
		},
	})
}
