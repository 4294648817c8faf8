package provider

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// These tests hold the access invariant at the edges around a grant: a
// policy gaining and losing NSGs, the same request applied again, an import,
// a create that runs out of time. Each asks the local Azure's flow
// verification who can reach the port, never how the rules look.

// movingPolicy is jit_policy.web on the NSGs given as HCL expressions.
func movingPolicy(nsgs ...string) string {
	return fmt.Sprintf(`
resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [%s]
  destination_address_prefixes    = ["10.0.1.4"]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports = [
    { port = 22, max_duration = "3h" },
  ]
}
`, strings.Join(nsgs, ", "))
}

// A policy that gains an NSG (one created in the same run, so unknown at
// plan time, and an existing one) moves its active grants' rules there for
// their remaining window, and never re-opens an expired or a revoked grant;
// one that loses an NSG takes the rules there with it. Grants are updated
// in place, never replaced.
func TestAccGrant_policyMembershipMovesRulesAndNeverReopens(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgA := env.CreateNSG("nsg-a")
	nsgB := env.CreateNSG("nsg-b")
	nsgC := env.CreateNSG("nsg-c")
	clock := newTestClock()
	const active, expired, revoked, other, newcomer = "203.0.113.7", "203.0.113.8", "203.0.113.9", "203.0.113.10", "203.0.113.11"

	grants := grantBlock("active", active, "3h") + grantBlock("expired", expired, "1h") + grantBlock("revoked", revoked, "3h")
	// nsg-b's id reaches the policy through terraform_data: known only at apply.
	laterB := fmt.Sprintf(`
resource "terraform_data" "nsg_b" {
  input = %q
}
`, nsgB)
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	config := func(nsgs ...string) string {
		return env.ProviderBlock(fmt.Sprintf("  audit_log_path = %q", auditLog)) + movingPolicy(nsgs...) + grants + laterB
	}
	q := func(id string) string { return fmt.Sprintf("%q", id) }
	inPlace := func() []plancheck.PlanCheck {
		var out []plancheck.PlanCheck
		for _, g := range []string{"active", "expired", "revoked"} {
			out = append(out, plancheck.ExpectResourceAction("jit_access_grant."+g, plancheck.ResourceActionUpdate))
		}
		return out
	}
	var ruleA string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{
			{
				Config: config(q(nsgA)),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgA}, true, ssh(active), ssh(expired), ssh(revoked)),
				},
			},
			{
				// 61 minutes on: "expired" ended and jitd closed it; "revoked"
				// was deleted out of band.
				PreConfig: func() {
					clock.Advance(61 * time.Minute)
					endGrantAsJitd(t, env, nsgA, expired)
					ruleA = ruleName(t, env, nsgA, revoked)
					env.DeleteRule(nsgA, ruleA)
				},
				Config: config(q(nsgA)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.expired", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					statecheck.ExpectKnownValue("jit_access_grant.revoked", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
					env.ExpectReachable([]string{nsgA}, true, ssh(active)),
					env.ExpectReachable([]string{nsgA}, false, ssh(expired), ssh(revoked)),
				},
			},
			{
				// Gains nsg-b, whose id is unknown until apply.
				Config:           config(q(nsgA), "terraform_data.nsg_b.output"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: inPlace()},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgB}, true, ssh(active)),
					env.ExpectReachable([]string{nsgB}, false, ssh(expired), ssh(revoked), ssh(other)),
					env.ExpectReachable([]string{nsgA}, false, ssh(expired), ssh(revoked), ssh(other)),
					statecheck.ExpectKnownValue("jit_access_grant.expired", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					statecheck.ExpectKnownValue("jit_access_grant.revoked", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
					statecheck.ExpectKnownValue("jit_access_grant.active", tfjsonpath.New("status"), knownvalue.StringExact("active")),
				},
			},
			{
				// Gains nsg-c, an existing NSG, with a new request in the same
				// run: the plan reads no policy there yet, and must not need to.
				Config:           config(q(nsgA), "terraform_data.nsg_b.output", q(nsgC)) + grantBlock("newcomer", newcomer, "1h"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: inPlace()},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgC}, true, ssh(active), ssh(newcomer)),
					env.ExpectReachable([]string{nsgC}, false, ssh(expired), ssh(revoked), ssh(other)),
				},
			},
			{
				// Loses nsg-a: its rules go, the grant's with them; elsewhere
				// the active grant stays open.
				Config:           config("terraform_data.nsg_b.output", q(nsgC)),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: inPlace()},
				ConfigStateChecks: []statecheck.StateCheck{
					expectNoJITRules(env, nsgA),
					env.ExpectReachable([]string{nsgB}, true, ssh(active)),
					env.ExpectReachable([]string{nsgC}, true, ssh(active)),
					// The expired grant's record, written on nsg-a, went with the
					// policy to the NSGs it kept: it is not lost with nsg-a.
					expectRecordFor(env, nsgB, expired),
					expectRecordFor(env, nsgC, expired),
				},
			},
			{
				// The active grant keeps its own window on the NSGs it moved to:
				// at expiry it is over everywhere.
				PreConfig: func() {
					clock.Advance(2 * time.Hour)
					endGrantAsJitd(t, env, nsgB, active)
					endGrantAsJitd(t, env, nsgC, active)
				},
				Config: config("terraform_data.nsg_b.output", q(nsgC)),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.active", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					env.ExpectReachable([]string{nsgB}, false, ssh(active), ssh(expired), ssh(revoked)),
					env.ExpectReachable([]string{nsgC}, false, ssh(active), ssh(expired), ssh(revoked)),
				},
			},
		},
	})
	checkMoveEvents(t, auditLog)
}

// The same request applied again is the same grant: applied by a second
// configuration while it is open, it is adopted with its own window, not
// doubled; after it has ended, applied again by a workspace that lost its
// state, or replaced (-replace, taint), it opens nothing. A request that differs (another justification)
// is a new grant with a new window.
func TestAccGrant_sameRequestIsRecognised(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	sshPolicyOn(t, env, nsgID)
	clock := newTestClock()
	const src = "203.0.113.7"
	block := func(name, justification string) string { return requestBlock(name, "web@"+nsgID, justification) }
	grantRules := func() int {
		n := 0
		for name := range env.Snapshot(nsgID) {
			if strings.HasPrefix(name, "jit-web-g-") {
				n++
			}
		}
		return n
	}
	oneRule := stateCheckFunc(func() error {
		if n := grantRules(); n != 1 {
			return fmt.Errorf("want exactly one grant rule on the NSG, got %d", n)
		}
		return nil
	})
	firstExpiry := clock.Now().Add(time.Hour).Format(time.RFC3339)
	expiresAt := func(name, want string) statecheck.StateCheck {
		return statecheck.ExpectKnownValue(name, tfjsonpath.New("expires_at"), knownvalue.StringExact(want))
	}

	// The first workspace: opened, then a second block with the same request
	// (10 minutes later) is the same grant.
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{
			{
				Config: env.ProviderBlock() + block("a", "INC-1"),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, true, ssh(src)),
					expiresAt("jit_access_grant.a", firstExpiry),
				},
			},
			{
				PreConfig: func() { clock.Advance(10 * time.Minute) },
				Config:    env.ProviderBlock() + block("a", "INC-1") + block("again", "INC-1"),
				ConfigStateChecks: []statecheck.StateCheck{
					expiresAt("jit_access_grant.again", firstExpiry),
					statecheck.CompareValuePairs("jit_access_grant.a", tfjsonpath.New("grant_id"),
						"jit_access_grant.again", tfjsonpath.New("grant_id"), compareEqual{}),
					oneRule,
				},
			},
			{
				// The window ends; jitd closes it and leaves its record.
				PreConfig: func() {
					clock.Advance(51 * time.Minute)
					endGrantAsJitd(t, env, nsgID, src)
				},
				Config: env.ProviderBlock() + block("a", "INC-1") + block("again", "INC-1"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					env.ExpectReachable([]string{nsgID}, false, ssh(src)),
				},
			},
		},
	})

	// A workspace that lost its state applies the same, ended request:
	// nothing opens, and the grant is recorded as ended. Another
	// justification is a new request.
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{
			{
				Config: env.ProviderBlock() + block("a", "INC-1"),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, false, ssh(src)),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(false)),
				},
			},
			{
				Config:           env.ProviderBlock() + block("a", "INC-1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
			{
				// -replace (a taint) of the ended grant: destroyed and created
				// again, and still nothing opens.
				Taint:  []string{"jit_access_grant.a"},
				Config: env.ProviderBlock() + block("a", "INC-1"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionDestroyBeforeCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, false, ssh(src)),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
				},
			},
			{
				Config: env.ProviderBlock() + block("a", "INC-2: the fix needs another look"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionDestroyBeforeCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, true, ssh(src)),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("active")),
				},
			},
		},
	})
}

// compareEqual is a value comparer for CompareValuePairs.
type compareEqual struct{}

func (compareEqual) CompareValues(values ...any) error {
	for _, v := range values[1:] {
		if fmt.Sprint(v) != fmt.Sprint(values[0]) {
			return fmt.Errorf("values differ: %v", values)
		}
	}
	return nil
}

// An imported active grant, applied with the configuration it came from,
// changes nothing on Azure: no close, no open, no error. The grant is
// written by another workspace; this one takes it over by import.
func TestAccGrant_importedActiveGrantAppliesWithoutClosing(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	policy := sshPolicyOn(t, env, nsgID)
	clock := newTestClock()
	const src = "203.0.113.7"
	spec, err := policy.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	id := jit.GrantRequest{Policy: "web", Spec: spec, Justification: "INC-1"}.ID()
	env.PutRules(nsgID, policy.GrantRule(id, spec, clock.Now().Add(time.Hour), 106))
	policyID := "web@" + nsgID
	config := env.ProviderBlock() + requestBlock("a", policyID, "INC-1")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{
			{
				Config:             config,
				ResourceName:       "jit_access_grant.a",
				ImportState:        true,
				ImportStateId:      policyID + "#" + id,
				ImportStatePersist: true,
			},
			{
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(true)),
					plancheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("active")),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, true, ssh(src)),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(true)),
				},
			},
			{
				Config:           config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
			},
		},
	})
}

// A create whose timeout ends while Azure is still writing its rule never
// leaves a rule open that state does not know. Here the three grants'
// write starts well within their five-second create timeout (a margin for
// a loaded machine) and takes ten seconds: it is awaited and reported truthfully, so the apply succeeds
// with all three in state (before, the apply failed saying nothing was
// open while all three rules landed, outside state). A change withdrawn
// before its write is covered by the Azure client's tests and the
// lifecycle suite.
func TestAccGrant_createOutlastingItsTimeoutIsReportedTruthfully(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	sshPolicyOn(t, env, nsgID)
	sources := []string{"203.0.113.7", "203.0.113.8", "203.0.113.9"}
	var blocks, flows = "", []acctest.Flow{}
	var checks []statecheck.StateCheck
	for i, src := range sources {
		blocks += fmt.Sprintf(`
resource "jit_access_grant" "g%d" {
  policy_id             = "web@%s"
  ports                 = [22]
  source_address_prefix = %q
  duration              = "1h"
  requester             = "user%d@example.com"
  justification         = "slow Azure"
  timeouts              = { create = "5s" }
}
`, i, nsgID, src, i)
		flows = append(flows, ssh(src))
		checks = append(checks, statecheck.ExpectKnownValue(fmt.Sprintf("jit_access_grant.g%d", i), tfjsonpath.New("open"), knownvalue.Bool(true)))
	}
	inStateOnly := stateCheckFunc(func() error {
		n := 0
		for name := range env.Snapshot(nsgID) {
			if strings.HasPrefix(name, "jit-web-g-") {
				n++
			}
		}
		if n != len(sources) {
			return fmt.Errorf("%d grant rules on the NSG, %d grants in state", n, len(sources))
		}
		return nil
	})
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{
			{
				PreConfig:         func() { env.Sim.SetWriteLatency(10 * time.Second) },
				Config:            env.ProviderBlock() + blocks,
				ConfigStateChecks: append(checks, inStateOnly, env.ExpectReachable([]string{nsgID}, true, flows...)),
			},
			{
				// Destroy closes what the state holds: nothing is left open.
				PreConfig: func() { env.Sim.SetWriteLatency(0) },
				Config:    env.ProviderBlock(),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable([]string{nsgID}, false, flows...),
				},
			},
		},
	})
}

// requestBlock is a one-hour request by alice, from 203.0.113.7, for port
// 22 of the policy.
func requestBlock(name, policyID, justification string) string {
	const source = "203.0.113.7"
	return fmt.Sprintf(`
resource "jit_access_grant" %q {
  policy_id             = %q
  ports                 = [22]
  source_address_prefix = %q
  duration              = "1h"
  requester             = "alice@example.com"
  justification         = %q
}
`, name, policyID, source, justification)
}

// sshPolicyOn writes policy "web" (port 22 of vm for 203.0.113.0/24, up
// to 3h, band 100–199) on an NSG, as the platform team's workspace would.
func sshPolicyOn(t *testing.T, env *acctest.Env, nsgID string) jit.Policy {
	t.Helper()
	policy, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.PutRules(nsgID, policy.Rules()...)
	return policy
}

// endGrantAsJitd ends the grant rule letting source in on one NSG, as jitd
// does at expiry: the rule goes, the record stays.
func endGrantAsJitd(t *testing.T, env *acctest.Env, nsgID, source string) {
	t.Helper()
	ctx := context.Background()
	client := env.Client()
	rules, err := client.ListRules(ctx, nsgID)
	if err != nil {
		t.Fatal(err)
	}
	view := jit.ReadNSG(rules)
	name := ruleName(t, env, nsgID, source)
	for _, g := range view.Grants {
		if g.Rule.Name != name {
			continue
		}
		end := jit.EndGrant(view, g)
		var changes []azure.RuleChange
		for _, n := range end.Delete {
			changes = append(changes, azure.RuleChange{Delete: n})
		}
		if end.Record {
			rec, ok := jit.EndedRule(g, rules)
			if !ok {
				t.Fatal("no priority for the record")
			}
			changes = append(changes, azure.RuleChange{Put: &rec})
		}
		if _, err := client.ApplyRuleChanges(ctx, nsgID, changes); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no grant %s on %s", name, nsgID)
}

// expectRecordFor checks that an NSG holds the record of an ended grant
// for source.
func expectRecordFor(env *acctest.Env, nsgID, source string) statecheck.StateCheck {
	return stateCheckFunc(func() error {
		var rules []jit.SecurityRule
		for _, r := range env.Snapshot(nsgID) {
			rules = append(rules, r)
		}
		for _, e := range jit.ReadNSG(rules).Ended {
			if len(e.Rule.SourcePrefixes) == 1 && strings.TrimSuffix(e.Rule.SourcePrefixes[0], "/32") == source {
				return nil
			}
		}
		return fmt.Errorf("%s holds no record of the ended grant for %s", nsgID, source)
	})
}

// expectNoJITRules checks that an NSG holds no rule of the jit- namespace.
func expectNoJITRules(env *acctest.Env, nsgID string) statecheck.StateCheck {
	return stateCheckFunc(func() error {
		var left []string
		for name := range env.Snapshot(nsgID) {
			if strings.HasPrefix(name, jit.RuleNamePrefix) {
				left = append(left, name)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%s still holds %s", nsgID, strings.Join(left, ", "))
		}
		return nil
	})
}

// A grant's rule edited in place (its source moved to another allowed
// address) is not the grant that was reviewed: the next plan reports it
// revoked and closes the rule.
func TestAccGrant_tamperedRuleIsRevokedAndClosed(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	sshPolicyOn(t, env, nsgID)
	const src, other = "203.0.113.7", "203.0.113.99"
	config := env.ProviderBlock() + requestBlock("a", "web@"+nsgID, "INC-1")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(newTestClock()),
		Steps: []resource.TestStep{
			{Config: config},
			{
				PreConfig: func() {
					r := env.Snapshot(nsgID)[ruleName(t, env, nsgID, src)]
					r.SourcePrefixes = []string{other}
					env.PutRules(nsgID, r)
				},
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(false)),
					env.ExpectReachable([]string{nsgID}, false, ssh(src), ssh(other)),
				},
			},
		},
	})
}

// The same request found open on one NSG of its policy and missing on the
// other (an open interrupted by a killed terraform, or a revocation) is
// never completed: it counts as revoked and what remains is closed.
func TestAccGrant_partlyOpenRequestIsClosedNotCompleted(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgA, nsgB := env.CreateNSG("nsg-a"), env.CreateNSG("nsg-b")
	policy := sshPolicyOn(t, env, nsgA)
	env.PutRules(nsgB, policy.Rules()...)
	clock := newTestClock()
	const src = "203.0.113.7"
	spec, err := policy.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	id := jit.GrantRequest{Policy: "web", Spec: spec, Justification: "INC-1"}.ID()
	env.PutRules(nsgA, policy.GrantRule(id, spec, clock.Now().Add(50*time.Minute), 106))
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{{
			Config: env.ProviderBlock() + requestBlock("a", "web@"+nsgA+","+nsgB, "INC-1"),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
				statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(false)),
				env.ExpectReachable([]string{nsgA}, false, ssh(src)),
				env.ExpectReachable([]string{nsgB}, false, ssh(src)),
			},
		}},
	})
}

// A grant whose rule is deleted out of band before jitd saw it has no record
// of its end; its workspace's next apply writes the records, so that the
// same request applied again after lost state is refused, not opened for a
// new window. Found by the lifecycle soak (seeds …020 step 90, …023 step
// 61).
func TestAccGrant_unrecordedRevocationIsRecordedAndNeverReopens(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	sshPolicyOn(t, env, nsgID)
	const src = "203.0.113.7"
	config := env.ProviderBlock() + requestBlock("alice", "web@"+nsgID, "INC-7")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{
			{Config: config},
			{
				PreConfig: func() { env.DeleteRule(nsgID, ruleName(t, env, nsgID, src)) },
				Config:    config,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.alice", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
					statecheck.ExpectKnownValue("jit_access_grant.alice", tfjsonpath.New("recorded"), knownvalue.Bool(true)),
				},
			},
		},
	})
	// Lost state: the same block in a fresh workspace opens nothing.
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: config,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("jit_access_grant.alice", tfjsonpath.New("open"), knownvalue.Bool(false)),
				env.ExpectReachable([]string{nsgID}, false, ssh(src)),
			},
		}},
	})
}
