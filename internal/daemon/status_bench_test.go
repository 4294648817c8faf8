package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// benchReads are 2,000 NSGs, each with policy web and 10 valid grants of
// port 22 from distinct sources.
func benchReads(b *testing.B) []NSGRead {
	const n, grants = 2000, 10
	b.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		Ports:     []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}, {Number: 3389, Protocol: "Tcp", MaxDuration: "1h"}},
		BandStart: 100, BandEnd: 199})
	if err != nil {
		b.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	reads := make([]NSGRead, n)
	for i := range reads {
		rules := p.Rules()
		for g := range grants {
			spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: fmt.Sprintf("203.0.113.%d", 10+g), Duration: "1h",
				Requester: fmt.Sprintf("user%d@example.com", g)})
			if err != nil {
				b.Fatal(err)
			}
			rules = append(rules, p.GrantRule(fmt.Sprintf("g%dn%d", g, i), spec, planNow.Add(time.Duration(10+g)*time.Minute), lo+int32(g)))
		}
		reads[i] = NSGRead{ID: fmt.Sprintf("/subscriptions/s/resourceGroups/rg%d/providers/Microsoft.Network/networkSecurityGroups/nsg-%d", i/100, i),
			Rules: rules, ReadAt: planNow}
	}
	return reads
}

// The status of 2,000 NSGs with 10 grants each: the model, the page and
// the JSON. Figures are printed (go test -bench Status -run '^$'); there
// is no threshold.
func BenchmarkStatus2000x10(b *testing.B) {
	reads := benchReads(b)
	o := StatusOptions{Now: planNow, Restore: true}
	st := BuildStatus(reads, o)
	if st.ActiveGrants != 20000 || !st.Complete {
		b.Fatalf("active %d, complete %v", st.ActiveGrants, st.Complete)
	}
	b.Run("model", func(b *testing.B) {
		for b.Loop() {
			BuildStatus(reads, o)
		}
	})
	b.Run("page", func(b *testing.B) {
		cw := &countingWriter{}
		for b.Loop() {
			cw.n = 0
			if err := RenderPage(cw, st, nil, "bench"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cw.n), "bytes/page")
	})
	b.Run("model+page", func(b *testing.B) {
		for b.Loop() {
			if err := RenderPage(io.Discard, BuildStatus(reads, o), nil, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if err := json.NewEncoder(io.Discard).Encode(st); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// A page view through a running daemon watching 2,000 NSGs with 10 grants
// each: the first view judges every NSG, the next ones reuse what did not
// change.
func BenchmarkStatusPageView2000x10(b *testing.B) {
	reads := benchReads(b)
	az := newFakeAzure()
	for _, rd := range reads {
		az.put(rd.ID, rd.Rules...)
	}
	d, err := New(Options{Rules: az, Scope: az, Now: func() time.Time { return planNow }})
	if err != nil {
		b.Fatal(err)
	}
	if sum := d.Pass(b.Context()); sum.Err() != nil || sum.ActiveGrants != 20000 {
		b.Fatalf("pass: %v, %d active", sum.Err(), sum.ActiveGrants)
	}
	view := func() {
		st, events := d.Status(StatusFilter{})
		if err := RenderPage(io.Discard, st, events, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			d.statusMu.Lock()
			for _, e := range d.reads {
				e.part = nil
			}
			d.statusMu.Unlock()
			view()
		}
	})
	b.Run("next", func(b *testing.B) {
		view()
		for b.Loop() {
			view()
		}
	})
}
