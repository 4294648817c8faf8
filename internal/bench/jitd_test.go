package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// TestBenchExpiryLag (issue item 4, first half): how long after its expiry
// jitd closes each of 100 grants that expire within the same minute, from
// the local Azure's event log (delete completed − expiry). The 100 grants
// sit on 10 NSGs (10 each) and expire over 10 seconds, ten per second, one
// per NSG; measured with instant writes (jitd's own reaction) and with 500
// ms per write.
func TestBenchExpiryLag(t *testing.T) {
	requireEnabled(t)
	binaries(t) // before the clock starts: the grants' expiries are fixed
	for _, latency := range []time.Duration{0, armWriteLatency} {
		t.Run(fmt.Sprintf("write latency %s", latency), func(t *testing.T) {
			const nsgs, grants, rg = 10, 100, "bench-expiry"
			p := benchPolicy(t)
			lo, _ := p.Band.GrantRange()
			// Far enough ahead for the local Azure and jitd to start and
			// read every NSG first.
			base := time.Now().Truncate(time.Second).Add(12 * time.Second)
			type planted struct {
				nsgID, rule, source string
				exp                 time.Time
			}
			seed := map[string][]jit.SecurityRule{}
			var planted100 []planted
			for i := range grants {
				id := nsgID(rg, fmt.Sprintf("nsg-expiry-%02d", i%nsgs))
				if seed[id] == nil {
					seed[id] = p.Rules()
				}
				spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: grantSource(i), Duration: "1h", Requester: "bench@example.com"})
				if err != nil {
					t.Fatal(err)
				}
				exp := base.Add(time.Duration(i/nsgs) * time.Second)
				r := p.GrantRule(fmt.Sprintf("x%03d", i), spec, exp, lo+int32(i/nsgs))
				seed[id] = append(seed[id], r)
				planted100 = append(planted100, planted{id, r.Name, grantSource(i), exp})
			}
			env := newEnv(t, azuresim.Options{SeedFile: writeSeedFile(t, seed), WriteLatency: latency})
			d := startJitd(t, env.Sim, "--resource-group", env.Sim.SubscriptionID()+"/"+rg, "--interval", "5m")
			if time.Now().After(base) {
				t.Fatalf("jitd was ready only %s after the first expiry; the machine is too slow for this measurement", time.Since(base))
			}
			for _, g := range planted100 {
				if !env.Reachable([]string{g.nsgID}, g.source, destination, 22, "Tcp") {
					t.Fatalf("grant %s does not open %s before its expiry", g.rule, g.source)
				}
			}

			deleted := func() map[string]azuresim.Event {
				out := map[string]azuresim.Event{}
				for _, e := range env.Sim.Events() {
					if e.Operation == "DeleteSecurityRuleOperation" && e.Result == "Succeeded" {
						out[strings.ToLower(e.NSGID)+"/"+e.RuleName] = e
					}
					for _, r := range e.RemovedRules { // jitd closes with NSG writes
						if e.Result == "Succeeded" {
							out[strings.ToLower(e.NSGID)+"/"+r] = e
						}
					}
				}
				return out
			}
			last := planted100[len(planted100)-1].exp
			if err := poll(time.Until(last)+2*time.Minute, func() bool { return len(deleted()) >= grants }); err != nil {
				t.Errorf("jitd closed %d of %d grants: %v\n%s", len(deleted()), grants, err, testproc.Tail(d.Logs()))
			}
			events := deleted()
			var lags []time.Duration
			for _, g := range planted100 {
				e, ok := events[strings.ToLower(g.nsgID)+"/"+g.rule]
				if !ok {
					continue
				}
				if env.Reachable([]string{g.nsgID}, g.source, destination, 22, "Tcp") {
					t.Errorf("%s still reaches %s:22 after its grant %s was deleted", g.source, destination, g.rule)
				}
				lags = append(lags, e.Completed.Sub(g.exp))
			}
			slices.Sort(lags)
			if len(lags) == 0 {
				return
			}
			t.Logf("FIGURE expiry-lag (write latency %s, %d grants on %d NSGs expiring over 10 s): closed %d; lag (delete completed − expiry) median %s, p99 %s, max %s, min %s",
				latency, grants, nsgs, len(lags), percentile(lags, 50).Round(time.Millisecond), percentile(lags, 99).Round(time.Millisecond),
				lags[len(lags)-1].Round(time.Millisecond), lags[0].Round(time.Millisecond))
		})
	}
}

// TestBenchFullResync (issue item 4, second half): `jitd --once` over
// 2,000 NSGs holding 10 JIT rules each (a policy's guard and deny rules
// and 8 active grants): wall time, ARM reads and peak RSS.
func TestBenchFullResync(t *testing.T) {
	requireEnabled(t)
	const nsgs, rg = 2000, "bench-resync"
	_, jitd := binaries(t)
	p := benchPolicy(t)
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: grantSource(0), Duration: "1h", Requester: "bench@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(50 * time.Minute)
	rules := p.Rules()
	for i := 0; len(rules) < 10; i++ {
		rules = append(rules, p.GrantRule(fmt.Sprintf("r%d", i), spec, exp, lo+int32(i)))
	}
	seed := map[string][]jit.SecurityRule{}
	for i := range nsgs {
		seed[nsgID(rg, fmt.Sprintf("nsg-%04d", i))] = rules
	}
	env := newEnv(t, azuresim.Options{SeedFile: writeSeedFile(t, seed)})

	env.Sim.ResetCounters()
	wall, rss, out, err := runJitdOnce(t.Context(), env.Sim, jitd, "--resource-group", env.Sim.SubscriptionID()+"/"+rg)
	c := env.Sim.Counters()
	if err != nil {
		t.Fatalf("%v\n%s", err, testproc.Tail(out))
	}
	if w := armWrites(c); w != 0 {
		t.Errorf("a resync with nothing expired wrote %d times", w)
	}
	t.Logf("FIGURE full-resync (jitd --once, %d NSGs × %d JIT rules = %d rules): wall %s, ARM reads %d (%.2f per NSG), writes %d, peak RSS %.1f MiB",
		nsgs, len(rules), nsgs*len(rules), wall.Round(time.Millisecond), armReads(c), float64(armReads(c))/nsgs, armWrites(c), float64(rss)/1024)
	t.Logf("FIGURE full-resync requests by kind: %s", requestBreakdown(c))
}
