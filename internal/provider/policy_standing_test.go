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
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// A rule that lets the VPN pool (an allowed source) reach a protected port
// gives it access with no grant: above the band, or planted inside it
// between the guard and the deny-all, where the guard does not stop it. It
// is listed in standing_access, warned about, and with
// fail_on_standing_access the plan fails naming the rule, its priority,
// sources and ports.
func TestAccPolicy_reportsStandingAccess(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	// Allow 22 from the VPN pool, at a higher precedence than the band.
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("VPNToSSH", 150, "203.0.113.0/24", "22"))
	nsgs := []string{nsgID}
	before := env.Snapshot(nsgID)
	band := "priority_band = { start = 200, end = 299 }"
	ssh := func(src string) acctest.Flow { return acctest.Flow{Source: src, Destination: vm, Port: 22} }
	inBand := jit.SecurityRule{Name: "VPNToSSHInBand", Priority: 250, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"203.0.113.128/25"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22", "3389"}}
	finding := func(name string, priority int64) knownvalue.Check {
		return knownvalue.ObjectExact(map[string]knownvalue.Check{
			"network_security_group_id": knownvalue.StringExact(nsgID),
			"name":                      knownvalue.StringExact(name),
			"priority":                  knownvalue.Int64Exact(priority),
			"port":                      knownvalue.Int64Exact(22),
			"protocol":                  knownvalue.StringExact("Tcp"),
			"reason":                    knownvalue.StringRegexp(regexp.MustCompile(`overlapping the policy's allowed sources`)),
		})
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{
				Config: policyConfig(env, nsgID, []string{"22"}, band, "fail_on_standing_access = true"),
				ExpectError: regexp.MustCompile(`(?s)Allowed Sources Have Standing Access.*VPNToSSH \(priority 150\).*` +
					`port 22/Tcp,\s+sources\s+203\.0\.113\.0/24,\s+ports\s+22:.*fail_on_standing_access is true`),
			},
			{
				PreConfig: func() {
					if err := env.ExpectUnchanged(nsgID, before)(nil); err != nil {
						t.Fatalf("a refused plan wrote to the NSG: %v", err)
					}
				},
				Config: policyConfig(env, nsgID, []string{"22"}, band),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("standing_access"),
						knownvalue.ListExact([]knownvalue.Check{finding("VPNToSSH", 150)})),
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("bypassing_rules"), knownvalue.ListSizeExact(0)),
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("fail_on_standing_access"), knownvalue.Bool(false)),
					// Honest about what is open: the pool reaches port 22
					// with no grant; everyone else is turned away.
					env.ExpectReachable(nsgs, true, ssh(admin)),
					env.ExpectReachable(nsgs, false, ssh(stranger), ssh(neighbor)),
				},
			},
			{
				// Someone plants a rule for part of the pool inside the band,
				// between the guard and the deny-all: a refresh lists it too.
				PreConfig: func() {
					env.PutRules(nsgID, inBand)
					if env.Reachable(nsgs, stranger, vm, 22, "Tcp") {
						t.Fatal("fixture: the guard should keep sources outside the pool out")
					}
				},
				// A refresh runs no plan, so nothing else (such as the band
				// conflict the rule also is) stands in the way of reading it.
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("jit_policy.web", "standing_access.#", "2"),
					resource.TestCheckResourceAttr("jit_policy.web", "standing_access.0.name", "VPNToSSH"),
					resource.TestCheckResourceAttr("jit_policy.web", "standing_access.1.name", "VPNToSSHInBand"),
					resource.TestCheckResourceAttr("jit_policy.web", "standing_access.1.priority", "250"),
					resource.TestCheckResourceAttr("jit_policy.web", "standing_access.1.port", "22"),
					resource.TestMatchResourceAttr("jit_policy.web", "standing_access.1.reason", regexp.MustCompile(`inside the policy's band`)),
					resource.TestCheckResourceAttr("jit_policy.web", "bypassing_rules.#", "0"),
				),
			},
			{
				// A plan that changes nothing writes nothing: the rule in the
				// band is a warning, not a conflict that blocks the workspace.
				Config:   policyConfig(env, nsgID, []string{"22"}, band),
				PlanOnly: true,
			},
			{
				// Nor does an apply that changes only a switch: the policy's
				// rules are not rewritten, so the rule in the band does not
				// conflict with them.
				Config: policyConfig(env, nsgID, []string{"22"}, band, "fail_on_bypass = true"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("fail_on_bypass"), knownvalue.Bool(true)),
				},
			},
			{
				Config: policyConfig(env, nsgID, []string{"22"}, band, "fail_on_standing_access = true"),
				ExpectError: regexp.MustCompile(`(?s)Allowed Sources Have Standing Access.*VPNToSSHInBand \(priority 250\).*` +
					`port 22/Tcp,\s+sources\s+203\.0\.113\.128/25,\s+ports\s+22,3389:.*inside\s+the\s+policy's\s+band`),
			},
			{
				// Without the rule in the band, the pool still gets in only
				// through the rule above it.
				PreConfig: func() { env.DeleteRule(nsgID, inBand.Name) },
				Config:    policyConfig(env, nsgID, []string{"22"}, band),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_policy.web", tfjsonpath.New("standing_access"),
						knownvalue.ListExact([]knownvalue.Check{finding("VPNToSSH", 150)})),
				},
			},
		},
	})
}
