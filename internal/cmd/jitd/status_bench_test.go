package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// `jitd status` over 2,000 NSGs with 10 grants each, Azure's reads
// excluded (a fake client answers at once): judging and the table, and
// the JSON. Figures are printed; there is no threshold.
func BenchmarkStatusCommand2000x10(b *testing.B) {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}, BandStart: 100, BandEnd: 199})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	lo, _ := p.Band.GrantRange()
	client := fakeStatusClient{fakeRules: fakeRules{rules: map[string][]jit.SecurityRule{}}}
	var ids []string
	for i := range 2000 {
		id := nsgIDOf(fmt.Sprintf("rg%d", i/100), fmt.Sprintf("nsg-%d", i))
		rules := p.Rules()
		for g := range 10 {
			spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: fmt.Sprintf("203.0.113.%d", 10+g), Duration: "1h",
				Requester: fmt.Sprintf("user%d@example.com", g)})
			if err != nil {
				b.Fatal(err)
			}
			rules = append(rules, p.GrantRule(fmt.Sprintf("g%dn%d", g, i), spec, now.Add(time.Duration(10+g)*time.Minute), lo+int32(g)))
		}
		client.rules[id] = rules
		ids = append(ids, id)
	}
	sc := &scope{client: client, nsgs: ids}
	o := statusOptions{concurrency: 8}
	clock := func() time.Time { return now }
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			for b.Loop() {
				st := readStatus(b.Context(), sc, client, o, clock, io.Discard)
				if st.ActiveGrants != 20000 {
					b.Fatalf("%d active", st.ActiveGrants)
				}
				if err := writeStatus(io.Discard, st, format); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
