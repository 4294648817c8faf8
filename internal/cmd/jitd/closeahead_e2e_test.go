package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// With slow writes (2s each here, 20s and more on a slow Azure day), jitd
// learns from its first close how long a write takes and starts the next
// closes that much ahead of their expiry. Asserted as orderings, from the
// local Azure's event log and jitd's audit log: the first close starts at
// its expiry (nothing observed yet); every later one starts before its
// expiry; none is gone earlier than its expiry minus the lead jitd reports
// in its audit event; two grants of one NSG expiring a second apart share
// one write.
func TestEndToEndClosesAheadOfExpiryByTheWriteLatency(t *testing.T) {
	la := startLocalAzure(t)
	la.setWriteLatency(t, 2*time.Second)
	t.Cleanup(func() { la.setWriteLatency(t, 0) })
	p := webPolicy(t, 100)
	lo, _ := p.Band.GrantRange()
	const rg = "e2e-close-ahead"

	type planted struct {
		nsg, rule, source string
		exp               time.Time
	}
	// Far enough ahead for two NSG writes of 2s and jitd's start.
	base := time.Now().Truncate(time.Second).Add(15 * time.Second)
	plan := []struct {
		nsg   int
		after time.Duration
	}{
		{0, 0},                // the first close: no write observed yet
		{0, 8 * time.Second},  // a write after the first one's
		{1, 8 * time.Second},  // another NSG, at the same time
		{1, 9 * time.Second},  // a second later on that NSG: the same write
		{0, 16 * time.Second}, // and one more
	}
	rules := map[int][]jit.SecurityRule{0: p.Rules(), 1: p.Rules()}
	var grants []planted
	for i, g := range plan {
		src := fmt.Sprintf("203.0.113.%d", 40+i)
		spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "5m", Requester: "e2e@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		exp := base.Add(g.after)
		r := p.GrantRule(fmt.Sprintf("ahead%d", i), spec, exp, lo+int32(i))
		rules[g.nsg] = append(rules[g.nsg], r)
		grants = append(grants, planted{nsg: fmt.Sprintf("nsg-%d", g.nsg), rule: r.Name, source: src, exp: exp})
	}
	ids := map[string]string{}
	for n := range 2 {
		name := fmt.Sprintf("nsg-%d", n)
		ids[name] = la.createNSG(t, rg, name, rules[n]...)
	}
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--resource-group", la.subscription()+"/"+rg, "--interval", "5m")
	if time.Now().After(base) {
		t.Fatal("the first grant expired before jitd was ready; the test machine is too slow for its timing")
	}
	if err := poll(90*time.Second, func() bool {
		for _, g := range grants {
			if la.reachable(t, ids[g.nsg], g.source) {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("grants still reachable after expiry: %v", err)
	}
	d.stop(t)

	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	closes := map[string]audit.Event{}
	for _, e := range events {
		if e.Action == audit.ActionClose && e.Result == audit.ResultSuccess {
			closes[e.RuleName] = e
		}
	}
	deletes := la.deleteEvents(t)
	seq := map[string]int64{}
	for i, g := range grants {
		w, ok := deletes[strings.ToLower(ids[g.nsg])+"/"+g.rule]
		if !ok {
			t.Errorf("%s: no write removed it in the local Azure's event log", g.rule)
			continue
		}
		seq[g.rule] = w.Seq
		e, ok := closes[g.rule]
		if !ok || e.Reason != "expired" {
			t.Errorf("%s: close event %+v, want a successful close of an expired grant", g.rule, e)
			continue
		}
		lead := time.Duration(e.CloseLeadSeconds * float64(time.Second))
		t.Logf("%s: expiry %s, write accepted %+.3fs, done %+.3fs, reported lead %.3fs", g.rule, g.exp.Format(time.TimeOnly),
			w.Accepted.Sub(g.exp).Seconds(), w.Completed.Sub(g.exp).Seconds(), e.CloseLeadSeconds)
		if w.Completed.Before(g.exp.Add(-lead)) {
			t.Errorf("%s: gone %s before its expiry, more than the lead %s jitd reports", g.rule, g.exp.Sub(w.Completed), lead)
		}
		if i == 0 {
			if e.CloseLeadSeconds != 0 || w.Accepted.Before(g.exp) {
				t.Errorf("%s, the first close: started %s before its expiry with lead %s; want no lead before any write was seen",
					g.rule, g.exp.Sub(w.Accepted), lead)
			}
			continue
		}
		if e.CloseLeadSeconds <= 0 || !w.Accepted.Before(g.exp) {
			t.Errorf("%s: write accepted %s after its expiry, reported lead %s; want it started ahead of the expiry",
				g.rule, w.Accepted.Sub(g.exp), lead)
		}
	}
	if a, b := seq[grants[2].rule], seq[grants[3].rule]; a == 0 || a != b {
		t.Errorf("the two grants of nsg-1 a second apart were closed by writes %d and %d, want one write", a, b)
	}
	checkAuditLog(t, la, auditLog, false)
}
