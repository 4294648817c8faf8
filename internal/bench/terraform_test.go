package bench

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// armWriteLatency is the emulated duration of every NSG and rule write: a
// rule write on Azure takes seconds, half a second is on the kind side.
const armWriteLatency = 500 * time.Millisecond

// listPageSize is how many rules the local Azure returns per page of a
// rule list, so one list of more rules takes several requests.
const listPageSize = 100

// TestBenchPlanCost (issue item 1): ARM requests of a `terraform plan`
// that has nothing to change, with 100 grants on one NSG and with 100
// grants of a policy over 10 NSGs. Target: at most one rule list per NSG
// per plan, not one read per grant.
func TestBenchPlanCost(t *testing.T) {
	requireEnabled(t)
	for _, tc := range []struct {
		name   string
		nsgs   int
		grants int
	}{
		{"100 grants on 1 NSG", 1, 100},
		{"100 grants over 10 NSGs", 10, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, azuresim.Options{})
			var ids []string
			for i := range tc.nsgs {
				ids = append(ids, env.CreateNSG(fmt.Sprintf("nsg-plan-%02d", i)))
			}
			ws := newWorkspace(t, env.Sim, ids)
			setup := ws.apply(tc.grants)

			env.Sim.ResetCounters()
			out, wall, err := ws.run([]string{fmt.Sprintf("TF_VAR_grants=%d", tc.grants)},
				"plan", "-detailed-exitcode", "-input=false", "-no-color")
			c := env.Sim.Counters()
			if code := testproc.ExitCode(err); code != 0 {
				t.Errorf("terraform plan after apply: exit code %d (%v), want 0 (no changes)\n%s", code, err, testproc.Tail(out))
			}

			// Each NSG holds the policy's rules and a rule per grant; a list
			// of more than a page takes one request per page.
			rulesPerNSG := len(benchPolicy(t).Rules()) + tc.grants
			pages := (rulesPerNSG + listPageSize - 1) / listPageSize
			listRequests := c.Requests["GET rule-list"]
			lists := float64(listRequests) / float64(pages)
			perNSG := lists / float64(tc.nsgs)
			otherRuleReads := c.Requests["GET rule"] + c.Requests["GET nsg"]
			met := perNSG <= 1 && otherRuleReads == 0
			t.Logf("FIGURE plan-cost %q: terraform plan (no changes) %s wall; ARM reads %d, writes %d; "+
				"rule-list requests %d (%d rules per NSG = %d page(s) per list) = %.1f list(s) per NSG; single rule/NSG GETs %d; target ≤ 1 list per NSG: %s",
				tc.name, wall.Round(time.Millisecond), armReads(c), armWrites(c), listRequests, rulesPerNSG, pages, perNSG,
				otherRuleReads, metOrNot(met))
			t.Logf("FIGURE plan-cost %q: requests by kind: %s", tc.name, requestBreakdown(c))
			t.Logf("(setup: terraform apply of the policy and %d grants over %d NSG(s) took %s)", tc.grants, tc.nsgs, setup.Round(time.Millisecond))
		})
	}
}

// TestBenchApplyThroughput (issue item 2): 50 grants created in one apply
// on one NSG, with 500 ms per write and one write at a time per NSG, against
// the baseline measured in the same run: one rule PUT per grant, one after
// the other, as azurerm_network_security_rule resources take them (Azure
// runs one write per NSG at a time: today's ARM queues concurrent writes,
// the older refused them, so they serialise whatever Terraform's
// parallelism). Target: at most a fifth of the baseline's wall time and
// ARM writes, and no lost update.
func TestBenchApplyThroughput(t *testing.T) {
	requireEnabled(t)
	const grants = 50
	p := benchPolicy(t)
	env := newEnv(t, azuresim.Options{})
	foreign := acctest.AllowRule("AllowHTTPSFromInternet", 300, "Internet", "443")
	policyRules := make([]*armnetwork.SecurityRule, 0, 2)
	for _, r := range p.Rules() {
		policyRules = append(policyRules, testproc.ToARM(r))
	}
	baselineID := env.CreateNSG("nsg-baseline", append(policyRules, foreign)...)
	concurrentID := env.CreateNSG("nsg-baseline-p10", append(policyRules, foreign)...)
	// Ours twice: with Terraform's default parallelism (10), which bounds
	// how many grants the provider can see at once, and with 50.
	runs := []*oursRun{
		{label: "default -parallelism=10", nsg: "nsg-ours"},
		{label: "-parallelism=50", nsg: "nsg-ours-p50", args: []string{"-parallelism=50"}},
	}
	for _, r := range runs {
		r.nsgID = env.CreateNSG(r.nsg, foreign)
		r.ws = newWorkspace(t, env.Sim, []string{r.nsgID})
		r.ws.apply(0) // the policy, before the emulated latency
		r.foreignBefore = foreignRules(env.Rules(r.nsg))
	}
	env.Sim.SetWriteLatency(armWriteLatency)

	// Baselines: one rule PUT per grant, as azurerm_network_security_rule
	// resources are written: one after the other (the ratio's baseline),
	// and ten at a time, as azurerm 3.0 and later send them at Terraform's
	// default parallelism (no per-NSG lock): on that client the local
	// Azure's busy mode decides whether a write waits in the NSG's queue
	// or is refused and retried after Retry-After.
	rules := sdkRules(t, env.Sim)
	baseWall, baseSpan, baseC, baseAccepted := putRulesBaseline(t, env, rules, p, "nsg-baseline", "base", grants, 1)
	checkGrantsOpen(t, env, baselineID, grants)
	bw := armWrites(baseC)
	t.Logf("FIGURE apply-throughput baseline (%d sequential rule PUT + PollUntilDone, SDK): wall %s, write span %s, ARM writes %d (accepted %d, queued %d, refused busy %d), reads %d, polls %d",
		grants, baseWall.Round(time.Millisecond), baseSpan.Round(time.Millisecond), bw, baseAccepted, baseC.Queued, baseC.Busy, armReads(baseC), polls(baseC))
	concWall, concSpan, concC, concAccepted := putRulesBaseline(t, env, rules, p, "nsg-baseline-p10", "conc", grants, 10)
	checkGrantsOpen(t, env, concurrentID, grants)
	t.Logf("FIGURE apply-throughput concurrent baseline (%d rule PUT + PollUntilDone, 10 at a time, SDK with its retries): wall %s, write span %s, ARM writes %d (accepted %d, queued %d, refused busy %d), reads %d, polls %d; ours (default parallelism) is measured below",
		grants, concWall.Round(time.Millisecond), concSpan.Round(time.Millisecond), armWrites(concC), concAccepted, concC.Queued, concC.Busy, armReads(concC), polls(concC))

	for _, r := range runs {
		r.measure(t, env, grants)
		ow := armWrites(r.counters)
		timeRatio := r.wall.Seconds() / baseWall.Seconds()
		spanRatio := r.span.Seconds() / baseSpan.Seconds()
		writeRatio := float64(ow) / float64(bw)
		t.Logf("FIGURE apply-throughput ours (%s; terraform apply of %d grants, whole command): wall %s, write span %s, ARM writes %d (accepted %d, queued %d, refused busy %d, throttled %d), reads %d, polls %d",
			r.label, grants, r.wall.Round(time.Millisecond), r.span.Round(time.Millisecond), ow, r.accepted, r.counters.Queued, r.counters.Busy, r.counters.Throttled,
			armReads(r.counters), polls(r.counters))
		t.Logf("FIGURE apply-throughput ours/baseline (%s): wall %s, write span %s, writes %s; target ≤ 0.2 of wall and writes: %s; lost updates: %d; non-2xx answers: %s",
			r.label, ratio(r.wall.Seconds(), baseWall.Seconds()), ratio(r.span.Seconds(), baseSpan.Seconds()), ratio(float64(ow), float64(bw)),
			metOrNot(timeRatio <= 0.2 && writeRatio <= 0.2), r.missing, statusBreakdown(r.counters))
		t.Logf("FIGURE apply-throughput ours (%s) requests by kind: %s (write span ratio %.3f)", r.label, requestBreakdown(r.counters), spanRatio)
	}
}

// putRulesBaseline writes one grant rule per grant to nsg with rule PUTs
// and waits for each operation, parallel at a time, and returns the wall
// time, the span of the writes in the local Azure's event log, its counters
// and how many writes it accepted.
func putRulesBaseline(t *testing.T, env *acctest.Env, rules *armnetwork.SecurityRulesClient, p jit.Policy, nsg, prefix string, grants, parallel int) (
	wall, span time.Duration, c azuresim.Counters, accepted int) {
	t.Helper()
	used := map[int32]bool{}
	for _, r := range env.Rules(nsg) {
		used[*r.Properties.Priority] = true
	}
	lo, hi := p.Band.GrantRange()
	var todo []jit.SecurityRule
	for i := range grants {
		prio := lo
		for used[prio] && prio <= hi {
			prio++
		}
		used[prio] = true
		spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: grantSource(i), Duration: "1h", Requester: "bench@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		todo = append(todo, p.GrantRule(fmt.Sprintf("%s%02d", prefix, i), spec, time.Now().Add(time.Hour), prio))
	}
	env.Sim.ResetCounters()
	seq := lastSeq(env.Sim)
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	start := time.Now()
	for i, r := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			poller, err := rules.BeginCreateOrUpdate(t.Context(), acctest.ResourceGroup, nsg, r.Name, *testproc.ToARM(r), nil)
			if err == nil {
				_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: time.Second})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	wall = time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("baseline: put rule %s on %s: %v", todo[i].Name, nsg, err)
		}
	}
	span, accepted = writeSpan(eventsAfter(env.Sim.Events(), seq))
	return wall, span, env.Sim.Counters(), accepted
}

// oursRun is one terraform apply of the grants, on an NSG of its own.
type oursRun struct {
	label, nsg, nsgID string
	args              []string
	ws                *workspace
	foreignBefore     string

	wall, span        time.Duration
	accepted, missing int
	counters          azuresim.Counters
}

// measure applies the grants and checks that none was lost: each rule in
// the state is on the NSG, each granted source gets in, nobody else does,
// and the NSG's other rules are unchanged.
func (r *oursRun) measure(t *testing.T, env *acctest.Env, grants int) {
	t.Helper()
	env.Sim.ResetCounters()
	seq := lastSeq(env.Sim)
	r.wall = r.ws.apply(grants, r.args...)
	r.counters = env.Sim.Counters()
	r.span, r.accepted = writeSpan(eventsAfter(env.Sim.Events(), seq))

	names := r.ws.outputList("rule_names")
	onNSG := env.Rules(r.nsg)
	for _, n := range names {
		if _, ok := onNSG[n]; !ok {
			r.missing++
		}
	}
	if len(names) != grants || len(uniq(names)) != grants || r.missing > 0 {
		t.Errorf("%s: lost update: state has %d rule names (%d distinct), %d of them missing from the NSG; want %d, all present",
			r.label, len(names), len(uniq(names)), r.missing, grants)
	}
	checkGrantsOpen(t, env, r.nsgID, grants)
	if after := foreignRules(onNSG); after != r.foreignBefore {
		t.Errorf("%s: the foreign rules of the NSG changed:\nbefore %s\nafter  %s", r.label, r.foreignBefore, after)
	}
}

// polls counts the status polls of long-running operations.
func polls(c azuresim.Counters) int64 {
	return c.Requests["GET operation"] + c.Requests["GET operation-result"]
}

// TestBenchPolicyAtScale (issue item 3): policies over 200 NSGs applied
// within ARM's subscription write limit (token bucket of 200, 10 per
// second) with 500 ms per write. A jit_policy names at most 100 NSGs, so
// the 200 NSGs take two policies in one apply.
func TestBenchPolicyAtScale(t *testing.T) {
	requireEnabled(t)
	const nsgs = 200
	// Each NSG starts with SSH open to the Internet below the policy's band:
	// the policy must close it.
	open := jit.SecurityRule{Name: "AllowSSHFromInternet", Priority: 4000, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"Internet"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	seed := map[string][]jit.SecurityRule{}
	var ids []string
	for i := range nsgs {
		id := nsgID(acctest.ResourceGroup, fmt.Sprintf("nsg-scale-%03d", i))
		seed[id] = []jit.SecurityRule{open}
		ids = append(ids, id)
	}
	env := newEnv(t, azuresim.Options{SeedFile: writeSeedFile(t, seed), WriteRate: 10, WriteBurst: 200, WriteLatency: armWriteLatency})
	// A jit_policy names at most 100 NSGs: 200 NSGs take two policies,
	// applied together.
	ws := newWorkspace(t, env.Sim, ids, scaleConfig)

	env.Sim.ResetCounters()
	seq := lastSeq(env.Sim)
	wall := ws.apply(0)
	c := env.Sim.Counters()
	span, accepted := writeSpan(eventsAfter(env.Sim.Events(), seq))

	stillOpen := 0
	for _, id := range ids {
		if env.Reachable([]string{id}, "198.51.100.9", destination, 22, "Tcp") {
			stillOpen++
		}
	}
	if stillOpen > 0 {
		t.Errorf("%d of %d NSGs still let 198.51.100.9 reach %s:22 after the policy was applied", stillOpen, nsgs, destination)
	}
	t.Logf("FIGURE policy-at-scale (2 jit_policy × 100 NSGs = %d NSGs in one apply, bucket 200 burst + 10/s, %s per write): terraform apply %s wall, write span %s; ARM writes %d (accepted %d), throttled %d, queued %d, refused busy %d, reads %d; non-2xx: %s",
		nsgs, armWriteLatency, wall.Round(time.Millisecond), span.Round(time.Millisecond), armWrites(c), accepted, c.Throttled, c.Queued, c.Busy, armReads(c), statusBreakdown(c))
	t.Logf("FIGURE policy-at-scale requests by kind: %s", requestBreakdown(c))
}

// scaleConfig spreads var.nsg_ids over as many policies as the provider's
// limit of NSGs per policy requires, all in one configuration.
const scaleConfig = configHeader + `
variable "nsgs_per_policy" {
  type    = number
  default = 100
}

locals {
  chunks = chunklist(var.nsg_ids, var.nsgs_per_policy)
}

resource "jit_policy" "bench" {
  count                           = length(local.chunks)
  name                            = "bench-${count.index}"
  network_security_group_ids      = local.chunks[count.index]
  destination_address_prefixes    = ["10.0.1.4"]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "1h" }]
}
`

// checkGrantsOpen asks flow verification whether each grant's source
// reaches the VM through the NSG, and that a source without a grant does
// not.
func checkGrantsOpen(t *testing.T, env *acctest.Env, nsg string, grants int) {
	t.Helper()
	closed := 0
	for i := range grants {
		if !env.Reachable([]string{nsg}, grantSource(i), destination, 22, "Tcp") {
			closed++
		}
	}
	if closed > 0 {
		t.Errorf("%d of %d granted sources cannot reach %s:22 through %s", closed, grants, destination, nsg)
	}
	if env.Reachable([]string{nsg}, "203.0.113.250", destination, 22, "Tcp") {
		t.Errorf("203.0.113.250 (no grant) reaches %s:22 through %s", destination, nsg)
	}
}

// foreignRules renders the properties of the rules outside the jit-
// namespace, byte for byte as Azure returns them, to compare before and
// after (the etag changes with every write of the NSG, as on Azure).
func foreignRules(rules map[string]*armnetwork.SecurityRule) string {
	var out []string
	for name, r := range rules {
		if strings.HasPrefix(name, "jit-") {
			continue
		}
		b, err := r.Properties.MarshalJSON()
		if err != nil {
			b = []byte(err.Error())
		}
		out = append(out, name+" "+string(b))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func uniq(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

func metOrNot(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}
