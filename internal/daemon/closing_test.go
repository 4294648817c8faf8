package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// slowAzure is fakeAzure whose NSG writes are long-running operations, as
// Azure's are: a write is accepted, takes its latency (in the bubble's
// time), and only then takes effect; writes to one NSG are serialised. It
// writes several closes at once (setWriter), as azure.Client does.
type slowAzure struct {
	*fakeAzure
	// latency returns how long the n-th write (from 0) takes.
	latency func(n int) time.Duration

	mu      sync.Mutex
	n       int
	nsgBusy map[string]*sync.Mutex
	ops     []slowWrite
}

// slowWrite is one completed NSG write.
type slowWrite struct {
	nsg                 string
	accepted, completed time.Time
	removed             []string // rules the write deleted
}

func newSlowAzure(latency func(n int) time.Duration) *slowAzure {
	return &slowAzure{fakeAzure: newFakeAzure(), latency: latency, nsgBusy: map[string]*sync.Mutex{}}
}

func (s *slowAzure) ApplyRuleChangeSets(ctx context.Context, nsg string, sets [][]azure.RuleChange) []error {
	s.mu.Lock()
	busy := s.nsgBusy[nsg]
	if busy == nil {
		busy = &sync.Mutex{}
		s.nsgBusy[nsg] = busy
	}
	s.mu.Unlock()
	busy.Lock() // ARM serialises one NSG's writes
	defer busy.Unlock()
	s.mu.Lock()
	took := s.latency(s.n)
	s.n++
	s.mu.Unlock()
	accepted := time.Now()
	time.Sleep(took)
	errs := make([]error, len(sets))
	var removed []string
	for i, set := range sets {
		before := names(s.rulesOf(nsg))
		_, errs[i] = s.ApplyRuleChanges(ctx, nsg, set)
		after := names(s.rulesOf(nsg))
		for _, n := range before {
			if !slices.Contains(after, n) {
				removed = append(removed, n)
			}
		}
	}
	s.mu.Lock()
	s.ops = append(s.ops, slowWrite{nsg: nsg, accepted: accepted, completed: time.Now(), removed: removed})
	s.mu.Unlock()
	return errs
}

func (s *slowAzure) writes() []slowWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

// writeOf returns the write that removed the rule.
func (s *slowAzure) writeOf(nsg, rule string) (slowWrite, bool) {
	for _, w := range s.writes() {
		if w.nsg == nsg && slices.Contains(w.removed, rule) {
			return w, true
		}
	}
	return slowWrite{}, false
}

func names(rules []jit.SecurityRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name
	}
	return out
}

// grantAt is grantRule at a given priority, from a given source.
func grantAt(t *testing.T, p jit.Policy, id, source string, exp time.Time, priority int32) jit.SecurityRule {
	t.Helper()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: source, Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return p.GrantRule(id, spec, exp, priority)
}

// closeEvents indexes the successful close events by rule name.
func closeEvents(rec *recorder) map[string]audit.Event {
	out := map[string]audit.Event{}
	for _, e := range rec.all() {
		if e.Action == audit.ActionClose && e.Result == audit.ResultSuccess {
			out[e.RuleName] = e
		}
	}
	return out
}

// checkNeverEarlierThanTheLead is the bound closing ahead keeps: no grant's
// rule is gone before its expiry minus the lead jitd reports in the close's
// audit event (and, without a lead in the event, not before its expiry).
func checkNeverEarlierThanTheLead(t *testing.T, az *slowAzure, rec *recorder, nsg string, g jit.SecurityRule, exp time.Time) audit.Event {
	t.Helper()
	w, ok := az.writeOf(nsg, g.Name)
	if !ok {
		t.Fatalf("%s: not closed", g.Name)
	}
	e, ok := closeEvents(rec)[g.Name]
	if !ok {
		t.Fatalf("%s: no close event", g.Name)
	}
	lead := time.Duration(e.CloseLeadSeconds * float64(time.Second))
	if e.CloseLeadSeconds > jit.MaxCloseLead.Seconds() {
		t.Errorf("%s: reported lead %vs is over the bound %s", g.Name, e.CloseLeadSeconds, jit.MaxCloseLead)
	}
	if w.completed.Before(exp.Add(-lead)) {
		t.Errorf("%s: gone %s before its expiry, more than the lead %s jitd reports", g.Name, exp.Sub(w.completed), lead)
	}
	if w.accepted.Before(exp.Add(-lead)) {
		t.Errorf("%s: its write started %s before its expiry, more than the lead %s jitd reports", g.Name, exp.Sub(w.accepted), lead)
	}
	return e
}

// With 20s writes, jitd learns the latency from its first close and starts
// later closes that much ahead: the rule is gone at the expiry, not a write
// after it. Grants of one NSG expiring within a second share one write;
// another NSG's close is not held up by it; a write that takes longer than
// the lead is no reason to start the next ones earlier than the lead.
func TestRunClosesAheadByTheObservedWriteLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 20 * time.Second
		start := time.Now()
		web := testPolicy(t, "web", 100)
		lo, _ := web.Band.GrantRange()
		az := newSlowAzure(func(int) time.Duration { return latency })
		first := start.Add(2 * time.Minute)
		burst := start.Add(5 * time.Minute)
		warm := grantAt(t, web, "warm", "203.0.113.1", first, lo)
		b1 := grantAt(t, web, "b1", "203.0.113.2", burst, lo+1)
		b2 := grantAt(t, web, "b2", "203.0.113.3", burst, lo+2)
		b3 := grantAt(t, web, "b3", "203.0.113.4", burst.Add(time.Second), lo+3)
		loneExp, otherExp := burst.Add(3*time.Minute), burst.Add(5*time.Second)
		lone := grantAt(t, web, "lone", "203.0.113.5", loneExp, lo+4)
		other := grantAt(t, web, "other", "203.0.113.6", otherExp, lo)
		az.put("nsg-a", append(web.Rules(), warm, b1, b2, b3, lone)...)
		az.put("nsg-b", append(web.Rules(), other)...)
		d, rec := newTestDaemon(t, az.fakeAzure, Options{Interval: time.Hour})
		d.rules = az
		stop := startRun(t, d)

		// The first close: nothing observed yet, so it starts at the expiry
		// and ends a write later.
		time.Sleep(time.Until(first.Add(latency)))
		synctest.Wait()
		w, ok := az.writeOf("nsg-a", warm.Name)
		if !ok || !w.accepted.Equal(first) || !w.completed.Equal(first.Add(latency)) {
			t.Fatalf("first close: %+v, want accepted at the expiry and done a write later", w)
		}
		if e := closeEvents(rec)[warm.Name]; e.CloseLeadSeconds != 0 {
			t.Errorf("first close reports a lead of %vs", e.CloseLeadSeconds)
		}
		if got := d.leads.lead(); got != latency {
			t.Fatalf("lead after one %s write = %s", latency, got)
		}

		// While the burst's write is under way, before the expiry, the
		// status shows its grants as closing: neither open grants nor
		// closed ones.
		time.Sleep(time.Until(burst.Add(-5 * time.Second)))
		synctest.Wait()
		st, _ := d.Status(StatusFilter{NSG: "nsg-a"})
		shown := map[string]GrantStatus{}
		for _, p := range st.Policies {
			for _, pn := range p.NSGs {
				for _, pt := range pn.Ports {
					for _, g := range pt.Grants {
						shown[g.RuleName] = g
					}
				}
			}
		}
		for _, g := range []jit.SecurityRule{b1, b2, b3} {
			if s, ok := shown[g.Name]; !ok || s.Closing != string(ReasonExpired) || !strings.Contains(s.ClosingDetail, "ahead of its expiry") {
				t.Errorf("%s during its close write: shown %v as %+v, want closing ahead of its expiry", g.Name, ok, s)
			}
		}
		if st.ActiveGrants != 1 { // lone
			t.Errorf("status counts %d active grants during the burst's close, want 1", st.ActiveGrants)
		}

		time.Sleep(time.Until(loneExp.Add(time.Minute)))
		synctest.Wait()
		stop()

		// The burst: one write, started for its latest grant, done by then.
		wb1, _ := az.writeOf("nsg-a", b1.Name)
		for _, g := range []jit.SecurityRule{b2, b3} {
			if w, _ := az.writeOf("nsg-a", g.Name); !w.accepted.Equal(wb1.accepted) {
				t.Errorf("%s closed by another write than %s: %+v, %+v", g.Name, b1.Name, w, wb1)
			}
		}
		if want := burst.Add(time.Second); !wb1.accepted.Before(burst) || !wb1.completed.Equal(want) {
			t.Errorf("burst write accepted %v, done %v; want accepted before the expiry and done at the last expiry %v",
				wb1.accepted.Sub(start), wb1.completed.Sub(start), want.Sub(start))
		}
		// The other NSG's grant expires during the burst's write: its own
		// write is not held up by it.
		if w, _ := az.writeOf("nsg-b", other.Name); !w.completed.Equal(otherExp) {
			t.Errorf("other NSG's close done at %v, want at its expiry %v", w.completed.Sub(start), otherExp.Sub(start))
		}
		if w, _ := az.writeOf("nsg-a", lone.Name); !w.completed.Equal(loneExp) {
			t.Errorf("lone close done at %v, want at its expiry %v", w.completed.Sub(start), loneExp.Sub(start))
		}
		for _, g := range []struct {
			nsg  string
			rule jit.SecurityRule
			exp  time.Time
		}{{"nsg-a", b1, burst}, {"nsg-a", b2, burst}, {"nsg-a", b3, burst.Add(time.Second)}, {"nsg-a", lone, loneExp}, {"nsg-b", other, otherExp}} {
			e := checkNeverEarlierThanTheLead(t, az, rec, g.nsg, g.rule, g.exp)
			if e.CloseLeadSeconds <= 0 || e.Reason != "expired" {
				t.Errorf("%s: close event %+v, want reason expired with the lead it was closed ahead by", g.rule.Name, e)
			}
		}
		if n := len(az.writes()); n != 4 {
			t.Errorf("%d writes, want 4 (the first close, the burst, the other NSG, the lone grant)", n)
		}
	})
}

// The lead is the median of the recent close writes: one slow write (90s
// where writes take 20s) does not make jitd close 90s ahead, and however a
// write turns out (slower, or much faster than the lead), no grant's rule is
// gone earlier than its expiry minus the lead jitd reports.
func TestCloseLeadIgnoresAnOutlierAndNeverEndsAGrantMoreThanTheLeadEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		lo, _ := web.Band.GrantRange()
		// Writes: 20s, 20s, 90s (the outlier), 20s, then Azure gets fast.
		latencies := []time.Duration{20 * time.Second, 20 * time.Second, 90 * time.Second, 20 * time.Second}
		az := newSlowAzure(func(n int) time.Duration {
			if n < len(latencies) {
				return latencies[n]
			}
			return time.Second
		})
		type planted struct {
			nsg  string
			rule jit.SecurityRule
			exp  time.Time
		}
		var grants []planted
		for i := range 7 {
			nsg := fmt.Sprintf("nsg-%d", i)
			exp := start.Add(time.Duration(2+3*i) * time.Minute)
			g := grantAt(t, web, fmt.Sprintf("g%d", i), "203.0.113.7", exp, lo)
			az.put(nsg, append(web.Rules(), g)...)
			grants = append(grants, planted{nsg, g, exp})
		}
		d, rec := newTestDaemon(t, az.fakeAzure, Options{Interval: time.Hour})
		d.rules = az
		stop := startRun(t, d)
		time.Sleep(time.Until(grants[len(grants)-1].exp.Add(2 * time.Minute)))
		synctest.Wait()
		stop()

		var leads []string
		for i, g := range grants[1:] {
			e := checkNeverEarlierThanTheLead(t, az, rec, g.nsg, g.rule, g.exp)
			leads = append(leads, fmt.Sprintf("%vs", e.CloseLeadSeconds))
			if e.CloseLeadSeconds > 20 {
				t.Errorf("close %d: lead %vs, more than the 20s the writes usually take", i+1, e.CloseLeadSeconds)
			}
		}
		// The fast writes at the end: the lead follows them down.
		if got := d.leads.lead(); got != time.Second {
			t.Errorf("lead after three 1s writes = %s, want 1s", got)
		}
		t.Logf("leads reported: %s", strings.Join(leads, ", "))
	})
}
