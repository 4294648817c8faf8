package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/audit/audittest"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// testClock is the provider's clock in tests: steps move it forward in
// PreConfig to make grants expire, as terraform-provider-time's tests do.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now().UTC().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func providerFactoriesAt(clock jit.Clock) map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"jit": providerserver.NewProtocol6WithError(&jitProvider{version: "test", commit: "test", getenv: noEnv, clock: clock}),
	}
}

const webPolicy = `
resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [%q]
  destination_address_prefixes    = ["10.0.1.4"]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports = [
    { port = 22, max_duration = "3h" },
    { port = 3389, max_duration = "1h" },
  ]
}
`

// grantBlock is a jit_access_grant of port 22 on jit_policy.web for one source.
func grantBlock(name, source, duration string) string {
	return fmt.Sprintf(`
resource "jit_access_grant" %q {
  policy_id             = jit_policy.web.id
  ports                 = [22]
  source_address_prefix = %q
  duration              = %q
  requester             = "%s@example.com"
  justification         = "incident INC-42: inspect the web tier"
  approval_reference    = "https://github.com/example/access/pull/42"
}
`, name, source, duration, name)
}

func ssh(src string) acctest.Flow { return acctest.Flow{Source: src, Destination: vm, Port: 22} }

// Every row of the lifecycle table, in one workspace, with reachability
// asked of the local Azure at each step.
func TestAccGrant_lifecycle(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	nsgs := []string{nsgID}
	before := env.Snapshot(nsgID)
	clock := newTestClock()
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")

	const (
		a, b, c, d = "203.0.113.7", "203.0.113.8", "203.0.113.9", "203.0.113.11"
		other      = "203.0.113.10" // allowed by the policy, never granted
	)
	provider := env.ProviderBlock(fmt.Sprintf("  audit_log_path = %q", auditLog))
	config := func(grants ...string) string {
		return provider + fmt.Sprintf(webPolicy, nsgID) + strings.Join(grants, "")
	}
	gA, gB, gC, gD := grantBlock("a", a, "1h"), grantBlock("b", b, "1h"), grantBlock("c", c, "2h"), grantBlock("d", d, "2h")
	gAShorter := grantBlock("a", a, "30m")
	var ruleA string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{
				// Each requester reaches the granted port; nobody else, and no other port.
				Config: config(gA, gB, gC, gD),
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, true, ssh(a), ssh(b), ssh(c), ssh(d)),
					env.ExpectReachable(nsgs, false, ssh(other), ssh(stranger), ssh(neighbor),
						acctest.Flow{Source: a, Destination: vm, Port: 3389}),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("active")),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("starts_at"),
						knownvalue.StringExact(clock.Now().Format(time.RFC3339))),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("expires_at"),
						knownvalue.StringExact(clock.Now().Add(time.Hour).Format(time.RFC3339))),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("rule_name"),
						knownvalue.StringRegexp(regexp.MustCompile(`^jit-web-g-[a-z0-9]{10}$`))),
				},
			},
			{
				// Another workspace imports the grant: the request reads back from its rule.
				ResourceName:      "jit_access_grant.a",
				ImportState:       true,
				ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{
					"duration", "justification", "approval_reference", "starts_at", "timeouts",
				},
			},
			{
				// Revoked early, out of band, before jitd saw it (no record):
				// reported, never re-opened, and the apply records its end, so
				// that lost state cannot re-open it either.
				PreConfig: func() { env.DeleteRule(nsgID, ruleName(t, env, nsgID, c)) },
				Config:    config(gA, gB, gC, gD),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.c", plancheck.ResourceActionUpdate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.c", tfjsonpath.New("status"), knownvalue.StringExact("revoked")),
					statecheck.ExpectKnownValue("jit_access_grant.c", tfjsonpath.New("open"), knownvalue.Bool(false)),
					statecheck.ExpectKnownValue("jit_access_grant.c", tfjsonpath.New("recorded"), knownvalue.Bool(true)),
					env.ExpectReachable(nsgs, false, ssh(c)),
					env.ExpectReachable(nsgs, true, ssh(a), ssh(b), ssh(d)),
				},
			},
			{
				// Any request attribute changed: replaced, a new window for a new rule.
				PreConfig: func() { ruleA = ruleName(t, env, nsgID, a) },
				Config:    config(gAShorter, gB, gC, gD),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionDestroyBeforeCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, true, ssh(a)),
					notOnNSG(env, nsgID, &ruleA),
				},
			},
			{
				// 61 minutes later: a (30m) expired with its rule still there (no
				// jitd ran): the plan closes it. b (1h) expired and jitd already
				// closed it: nothing to do, nothing re-opens. d (2h) is still active.
				PreConfig: func() {
					clock.Advance(61 * time.Minute)
					endGrantAsJitd(t, env, nsgID, b)
				},
				Config: config(gAShorter, gB, gC, gD),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.a", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("jit_access_grant.b", plancheck.ResourceActionNoop),
					plancheck.ExpectResourceAction("jit_access_grant.d", plancheck.ResourceActionNoop),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					statecheck.ExpectKnownValue("jit_access_grant.a", tfjsonpath.New("open"), knownvalue.Bool(false)),
					statecheck.ExpectKnownValue("jit_access_grant.b", tfjsonpath.New("status"), knownvalue.StringExact("expired")),
					env.ExpectReachable(nsgs, false, ssh(a), ssh(b), ssh(c)),
					env.ExpectReachable(nsgs, true, ssh(d)),
				},
			},
			{
				// Applying again changes nothing: expired grants stay closed.
				Config: config(gAShorter, gB, gC, gD),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectEmptyPlan(),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, ssh(a), ssh(b), ssh(c)),
				},
			},
			{
				// The block removed: destroyed, rule deleted.
				Config: config(gAShorter, gB, gC),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_access_grant.d", plancheck.ResourceActionDestroy),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					env.ExpectReachable(nsgs, false, ssh(a), ssh(b), ssh(c), ssh(d)),
				},
			},
		},
	})

	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range events {
		count[string(e.Action)+"/"+string(e.Result)]++
		if e.Actor != actor || e.Policy != "web" || e.GrantID == "" || e.Requester == "" {
			t.Errorf("incomplete audit event: %+v", e)
		}
	}
	// Opens: a, b, c, d and a's replacement. Closes: the replaced a, the
	// expired a, d's removal, and the final destroy of a, b, c.
	if count["open/success"] != 5 || count["close/success"] != 6 || count["drift/success"] < 3 || count["refuse/denied"] != 0 {
		t.Errorf("audit events by action: %v", count)
	}
	audittest.CheckFile(t, auditLog)
}

// ruleName is the name of the grant rule letting source in.
func ruleName(t *testing.T, env *acctest.Env, nsgID, source string) string {
	t.Helper()
	for name, r := range env.Snapshot(nsgID) {
		if strings.HasPrefix(name, "jit-web-g-") && len(r.SourcePrefixes) == 1 &&
			strings.TrimSuffix(r.SourcePrefixes[0], "/32") == source {
			return name
		}
	}
	t.Fatalf("no grant rule for %s", source)
	return ""
}

func notOnNSG(env *acctest.Env, nsgID string, name *string) statecheck.StateCheck {
	return stateCheckFunc(func() error {
		if _, ok := env.Snapshot(nsgID)[*name]; ok {
			return fmt.Errorf("rule %s is still on the NSG", *name)
		}
		return nil
	})
}

type stateCheckFunc func() error

func (f stateCheckFunc) CheckState(_ context.Context, _ statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	resp.Error = f()
}

// A request outside the policy fails the plan when the policy is already on
// the NSG (written by the platform team's workspace), naming the attribute,
// the value and the limit; and fails the apply when the policy is created in
// the same run. Either way nothing is opened, and the refusal is audited.
func TestAccGrant_refusedOutsidePolicy(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	policy, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{vm},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}, {Number: 3389, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.PutRules(nsgID, policy.Rules()...)
	before := env.Snapshot(nsgID)
	policyID := "web@" + nsgID

	request := func(ports, source, duration string) string {
		return env.ProviderBlock() + fmt.Sprintf(`
resource "jit_access_grant" "x" {
  policy_id             = %q
  ports                 = %s
  source_address_prefix = %q
  duration              = %q
  requester             = "mallory@example.com"
  justification         = "testing the limits"
}
`, policyID, ports, source, duration)
	}
	tests := map[string]struct{ config, want string }{
		"duration over maximum": {request("[22]", admin, "4h"), `duration: duration 4h exceeds policy "web" maximum of 3h for port 22`},
		"tightest port":         {request("[22, 3389]", admin, "2h"), `duration: duration 2h exceeds policy "web" maximum of 1h for port 3389`},
		"source outside":        {request("[22]", stranger, "1h"), `source_address_prefix: source 198.51.100.9 is outside policy "web" allowed sources 203.0.113.0/24`},
		"source anywhere":       {request("[22]", "0.0.0.0/0", "1h"), `source_address_prefix: source "0.0.0.0/0" means anywhere`},
		"port not protected":    {request("[443]", admin, "1h"), `ports\[0\]: port 443/Tcp is not protected by policy "web"`},
		"duration too short":    {request("[22]", admin, "30s"), `duration: duration 30s is shorter than the minimum of 1m`},
		"policy not on the NSG": {strings.Replace(request("[22]", admin, "1h"), `"web@`, `"db@`, 1), `Policy "db" is not on`},
		"policy id not an id":   {strings.Replace(request("[22]", admin, "1h"), policyID, "web", 1), `"web" is not a JIT policy id`},
		"duration not duration": {request("[22]", admin, "1y"), `duration: duration "1y" is not a duration`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: providerFactories(noEnv),
				CheckDestroy:             env.ExpectUnchanged(nsgID, before),
				Steps: []resource.TestStep{{
					Config:      tc.config,
					ExpectError: regexp.MustCompile(strings.ReplaceAll(tc.want, " ", `\s+`)),
				}},
			})
		})
	}

	t.Run("refused at apply, audited", func(t *testing.T) {
		fresh := env.CreateNSG("nsg-fresh")
		freshBefore := env.Snapshot(fresh)
		auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(noEnv),
			CheckDestroy:             env.ExpectUnchanged(fresh, freshBefore),
			Steps: []resource.TestStep{{
				Config: env.ProviderBlock(fmt.Sprintf("  audit_log_path = %q", auditLog)) +
					fmt.Sprintf(webPolicy, fresh) + grantBlock("x", admin, "4h"),
				ExpectError: regexp.MustCompile(`(?s)duration 4h exceeds\s+policy\s+"web"\s+maximum\s+of\s+3h`),
			}},
		})
		events, err := audit.ReadFile(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			t.Fatal("the refusal was not audited")
		}
		for _, e := range events {
			if e.Action != audit.ActionRefuse || e.Result != audit.ResultDenied || !strings.Contains(e.Reason, "exceeds") ||
				e.Source != admin || e.Requester != "x@example.com" {
				t.Fatalf("want only refusal events, got %+v", e)
			}
		}
	})
}

// Twenty grants applied at once on one NSG (terraform's default
// -parallelism=10) all open, each at its own priority, against a local
// Azure that takes one write at a time per NSG.
func TestAccGrant_twentyConcurrentGrantsOnOneNSG(t *testing.T) {
	env := acctest.New(t, azuresim.Options{WriteLatency: 20 * time.Millisecond})
	nsgID := env.CreateNSG("nsg-web")
	before := env.Snapshot(nsgID)
	config := env.ProviderBlock() + fmt.Sprintf(webPolicy, nsgID) + `
resource "jit_access_grant" "many" {
  count                 = 20
  policy_id             = jit_policy.web.id
  ports                 = [22]
  source_address_prefix = "203.0.113.${count.index + 10}"
  duration              = "1h"
  requester             = "user${count.index}@example.com"
  justification         = "load"
}
`
	var flows []acctest.Flow
	for i := range 20 {
		flows = append(flows, ssh(fmt.Sprintf("203.0.113.%d", i+10)))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{{
			Config: config,
			ConfigStateChecks: []statecheck.StateCheck{
				env.ExpectReachable([]string{nsgID}, true, flows...),
				env.ExpectReachable([]string{nsgID}, false, ssh("203.0.113.30")),
				distinctGrantPriorities(env, nsgID, 20),
			},
		}},
	})
}

func distinctGrantPriorities(env *acctest.Env, nsgID string, want int) statecheck.StateCheck {
	return stateCheckFunc(func() error {
		seen := map[int32]string{}
		for name, r := range env.Snapshot(nsgID) {
			if !strings.HasPrefix(name, "jit-web-g-") {
				continue
			}
			if other, dup := seen[r.Priority]; dup {
				return fmt.Errorf("%s and %s share priority %d", name, other, r.Priority)
			}
			seen[r.Priority] = name
		}
		if len(seen) != want {
			return fmt.Errorf("%d grant rules, want %d", len(seen), want)
		}
		return nil
	})
}

// Two workspaces (two provider instances, sharing nothing) apply grants on
// the same policy band at the same time: a whole-NSG write whose ETag went
// stale because the other workspace wrote first is refused (412), read
// again and its priorities chosen again, so both succeed.
func TestAccGrant_twoWorkspacesRaceForTheBand(t *testing.T) {
	if os.Getenv(resource.EnvTfAcc) == "" {
		// The workspaces are subtests that skip without TF_ACC; the checks
		// after them would then judge nothing.
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	env := acctest.New(t, azuresim.Options{WriteLatency: 20 * time.Millisecond})
	nsgID := env.CreateNSG("nsg-web")
	sshPolicyOn(t, env, nsgID)
	before := env.Snapshot(nsgID)

	workspace := func(t *testing.T, first int) {
		config := env.ProviderBlock() + fmt.Sprintf(`
resource "jit_access_grant" "team" {
  count                 = 6
  policy_id             = "web@%s"
  ports                 = [22]
  source_address_prefix = "203.0.113.${count.index + %d}"
  duration              = "1h"
  requester             = "team${count.index}@example.com"
  justification         = "race"
}
`, nsgID, first)
		var flows []acctest.Flow
		for i := range 6 {
			flows = append(flows, ssh(fmt.Sprintf("203.0.113.%d", first+i)))
		}
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: providerFactories(noEnv),
			Steps: []resource.TestStep{{
				Config:            config,
				ConfigStateChecks: []statecheck.StateCheck{env.ExpectReachable([]string{nsgID}, true, flows...)},
			}},
		})
	}
	afterApply := env.ExpectUnchanged(nsgID, before)
	t.Run("race", func(t *testing.T) {
		t.Run("workspace-a", func(t *testing.T) { t.Parallel(); workspace(t, 10) })
		t.Run("workspace-b", func(t *testing.T) { t.Parallel(); workspace(t, 40) })
	})
	// Both destroyed their grants at the end: the NSG is back to the policy,
	// plus one record per ended grant (inert: nothing reaches the port).
	records := 0
	for name, r := range env.Snapshot(nsgID) {
		if !strings.HasPrefix(name, "jit-web-e-") {
			continue
		}
		records++
		if r.Direction != jit.Outbound || !slices.Equal(r.SourcePrefixes, r.DestinationPrefixes) {
			t.Errorf("record %s is not an inert outbound rule: %+v", name, r)
		}
		env.DeleteRule(nsgID, name)
	}
	if records != 12 {
		t.Errorf("want 12 records of ended grants, got %d", records)
	}
	if err := afterApply(nil); err != nil {
		t.Fatal(err)
	}
	c := env.Sim.Counters()
	t.Logf("12 grants opened and closed by two workspaces: %d NSG writes, %d refused for a stale ETag (the other workspace wrote first), %d for a busy NSG",
		c.Requests["PUT nsg"], c.Responses["PUT nsg 412"], c.Busy)
}

// A failed create closes its rule again even when the first closes fail for
// a reason that passes (a failed long-running operation, throttling); a
// missing permission is not retried.
func TestUndoOpenRetriesTransientFailures(t *testing.T) {
	undoRetryDelay, undoRetryMaxDelay = time.Millisecond, time.Millisecond
	t.Cleanup(func() { undoRetryDelay, undoRetryMaxDelay = time.Second, 30*time.Second })
	const nsg, rule = "nsg-a", "jit-web-g-abc"
	for _, tc := range []struct {
		name      string
		failTimes int
		failErr   error
		wantLeft  bool
		wantCalls int
	}{
		{name: "transient", failTimes: 3, wantCalls: 4},
		{name: "forbidden", failTimes: 0, failErr: &azure.Error{Kind: azure.KindForbidden, StatusCode: 403}, wantLeft: true, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStore()
			f.rules[nsg] = map[string]jit.SecurityRule{rule: {Name: rule}}
			f.fail, f.failTimes, f.failErr = "delete "+rule, tc.failTimes, tc.failErr
			r := &grantResource{data: &providerData{rules: newCachedRules(f)}}
			left := r.undoOpen(context.Background(), []string{nsg}, rule)
			if got := len(left) > 0; got != tc.wantLeft {
				t.Errorf("left open on %v, want left open: %v", left, tc.wantLeft)
			}
			if len(f.calls) != tc.wantCalls {
				t.Errorf("calls %q, want %d", f.calls, tc.wantCalls)
			}
			if _, open := f.rules[nsg][rule]; open != tc.wantLeft {
				t.Errorf("rule on the NSG: %v, want %v", open, tc.wantLeft)
			}
		})
	}
}
