package jit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func grantSpec(t *testing.T, p Policy, source string) GrantSpec {
	t.Helper()
	spec, err := p.CheckGrant(GrantInput{Ports: []int64{22}, Source: source, Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestGrantRequestID(t *testing.T) {
	p := grantPolicy(t)
	base := GrantRequest{Policy: "web-ssh", Spec: grantSpec(t, p, "203.0.113.7"), Justification: "INC-1",
		ApprovalReference: "https://example.com/pr/1"}
	id := base.ID()
	if !ValidGrantID(id) || len(id) != 10 {
		t.Fatalf("id %q is not 10 characters of [a-z0-9]", id)
	}
	if again := base.ID(); again != id {
		t.Fatalf("the same request gave %q and %q", id, again)
	}
	// Written differently, meaning the same: the same grant.
	same := base
	same.Spec.Source = grantSpec(t, p, "203.0.113.7/32").Source
	if same.ID() != id {
		t.Errorf("203.0.113.7/32 and 203.0.113.7 are one request")
	}
	changes := map[string]func(*GrantRequest){
		"policy":        func(r *GrantRequest) { r.Policy = "web" },
		"port":          func(r *GrantRequest) { r.Spec.Ports = []uint16{3389} },
		"protocol":      func(r *GrantRequest) { r.Spec.Protocol = ProtocolUDP },
		"source":        func(r *GrantRequest) { r.Spec.Source = grantSpec(t, p, "203.0.113.8").Source },
		"duration":      func(r *GrantRequest) { r.Spec.Duration = 2 * time.Hour },
		"requester":     func(r *GrantRequest) { r.Spec.Requester = "bob@example.com" },
		"justification": func(r *GrantRequest) { r.Justification = "INC-2" },
		"approval":      func(r *GrantRequest) { r.ApprovalReference = "https://example.com/pr/2" },
		// Fields are length-prefixed: moving text between two of them is
		// another request.
		"boundary": func(r *GrantRequest) { r.Justification, r.ApprovalReference = "INC-1https", "://example.com/pr/1" },
	}
	seen := map[string]string{id: "base"}
	for name, change := range changes {
		r := base
		r.Spec.Ports = slices.Clone(base.Spec.Ports)
		change(&r)
		got := r.ID()
		if other, dup := seen[got]; dup {
			t.Errorf("changing the %s gives the id of %s: %s", name, other, got)
		}
		seen[got] = name
	}
}

func TestGrantStateObserve(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	open := GrantSighting{NSGID: "a", Open: true, Rule: &GrantRule{ExpiresAt: exp}}
	missing := GrantSighting{NSGID: "b"}
	recorded := GrantSighting{NSGID: "b", Ended: &EndedRecord{ExpiresAt: exp}}
	tests := []struct {
		from      GrantState
		expires   time.Time
		sightings []GrantSighting
		now       time.Time
		want      GrantState
	}{
		{GrantActive, exp, []GrantSighting{open, open}, now, GrantActive},
		{GrantActive, exp, []GrantSighting{open, open}, exp, GrantExpired},
		{GrantActive, exp, []GrantSighting{open, missing}, now, GrantRevoked},
		{GrantActive, exp, []GrantSighting{open, missing}, exp.Add(time.Second), GrantExpired},
		{GrantActive, exp, []GrantSighting{missing, recorded}, now, GrantClosed},
		{GrantRequested, exp, []GrantSighting{open}, now, GrantActive},
		// Terminal states never change, whatever is seen.
		{GrantExpired, exp, []GrantSighting{open}, now, GrantExpired},
		{GrantRevoked, exp, []GrantSighting{open, open}, now, GrantRevoked},
		{GrantClosed, exp, []GrantSighting{open}, now, GrantClosed},
	}
	for _, tc := range tests {
		if got := tc.from.Observe(tc.expires, tc.sightings, tc.now); got != tc.want {
			t.Errorf("%s observing %+v at %s: got %s, want %s", tc.from, tc.sightings, tc.now, got, tc.want)
		}
	}
	for _, s := range []GrantState{GrantExpired, GrantRevoked, GrantClosed} {
		if !s.Terminal() {
			t.Errorf("%s is not terminal", s)
		}
	}
	if GrantActive.Terminal() || GrantRequested.Terminal() {
		t.Error("active and requested are not terminal")
	}
}

func TestDecideOpen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	open := &GrantRule{ExpiresAt: now.Add(20 * time.Minute)}
	over := &GrantRule{ExpiresAt: now.Add(-time.Minute)}
	rec := &EndedRecord{ExpiresAt: now.Add(time.Hour), Rule: SecurityRule{Name: "jit-web-e-abc"}}
	tests := []struct {
		name      string
		sightings []GrantSighting
		want      OpenAction
		expires   time.Time
	}{
		{"nothing there: a new window", []GrantSighting{{NSGID: "a"}, {NSGID: "b"}}, OpenNew, now.Add(time.Hour)},
		{"open everywhere: adopted, window kept", []GrantSighting{{NSGID: "a", Rule: open, Open: true}, {NSGID: "b", Rule: open, Open: true}}, OpenAdopt, open.ExpiresAt},
		{"open on one NSG of two: refused, the rest closed", []GrantSighting{{NSGID: "a", Rule: open, Open: true}, {NSGID: "b"}}, OpenRefuse, open.ExpiresAt},
		{"window over: refused", []GrantSighting{{NSGID: "a", Rule: over, Open: true}}, OpenRefuse, over.ExpiresAt},
		{"recorded as ended: refused", []GrantSighting{{NSGID: "a", Rule: open, Open: true}, {NSGID: "b", Ended: rec}}, OpenRefuse, rec.ExpiresAt},
		{"an undecodable rule of that name: refused", []GrantSighting{{NSGID: "a", Open: true}}, OpenRefuse, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideOpen("abc", time.Hour, tc.sightings, now)
			if d.Action != tc.want || !d.ExpiresAt.Equal(tc.expires) {
				t.Fatalf("got %+v, want action %d until %s", d, tc.want, tc.expires)
			}
			if d.Action != OpenNew && d.Reason == "" {
				t.Error("no reason given")
			}
			if partial := strings.Contains(tc.name, "one NSG of two"); d.CloseRemains != partial {
				t.Errorf("close remains = %v, want %v", d.CloseRemains, partial)
			}
		})
	}
}

func TestEndedRecords(t *testing.T) {
	p := grantPolicy(t)
	exp := time.Unix(1_800_000_000, 0).UTC()
	spec := grantSpec(t, p, "203.0.113.7")
	rules := append(p.Rules(), p.GrantRule("abc", spec, exp, 106),
		SecurityRule{Name: "AllowOut", Priority: 4096, Direction: Outbound, Access: Allow, Protocol: ProtocolAny,
			SourcePrefixes: list("*"), SourcePorts: list("*"), DestinationPrefixes: list("*"), DestinationPorts: list("*")})
	view := ReadNSG(rules)
	g := view.Grants[0]

	end := EndGrant(view, g)
	if !end.Record || !slices.Equal(end.Delete, []string{"jit-web-ssh-g-abc"}) {
		t.Fatalf("ending an open grant: %+v", end)
	}
	rec, ok := EndedRule(g, rules)
	if !ok {
		t.Fatal("no priority for the record")
	}
	if rec.Priority != 4095 || rec.Direction != Outbound || rec.Access != Deny {
		t.Errorf("record %+v: want Outbound Deny at the highest free outbound priority 4095", rec)
	}
	if !slices.Equal(rec.SourcePrefixes, rec.DestinationPrefixes) || len(rec.SourcePrefixes) != 1 {
		t.Errorf("record %+v does not have one source equal to its destination: it could match traffic", rec)
	}
	// Inert: no flow to the protected port changes when it is added.
	after := append(slices.DeleteFunc(slices.Clone(rules), func(r SecurityRule) bool { return r.Name == g.Rule.Name }), rec)
	for _, src := range []string{"203.0.113.7", "198.51.100.1"} {
		if ok, _ := Allowed([][]SecurityRule{after}, Flow{Source: mustAddr(t, src), Destination: mustAddr(t, "10.0.1.4"), Port: 22, Protocol: ProtocolTCP}); ok {
			t.Errorf("%s reaches port 22 after the grant ended", src)
		}
	}
	// It reads back, and the same grant ended again changes nothing.
	view = ReadNSG(after)
	if len(view.Ended) != 1 || view.Ended[0].ID != "abc" || !view.Ended[0].ExpiresAt.Equal(exp) || view.Ended[0].Requester != "alice@example.com" {
		t.Fatalf("record reads back as %+v", view.Ended)
	}
	if end := EndGrant(view, g); !end.Empty() {
		t.Errorf("ending an ended grant again: %+v", end)
	}
	if again, _ := EndedRule(g, after); again.Priority != rec.Priority {
		t.Errorf("a record written again moves from %d to %d", rec.Priority, again.Priority)
	}
	if s := SightGrant("a", view, "web-ssh", "abc"); s.Ended == nil || s.Open {
		t.Errorf("sighting after the end: %+v", s)
	}

	// Without its policy on the NSG, no record is left.
	if end := EndGrant(ReadNSG([]SecurityRule{g.Rule}), g); end.Record || len(end.Delete) != 1 {
		t.Errorf("ending a grant whose policy is gone: %+v", end)
	}

	// A record that could match traffic, or does not decode, is malformed.
	bad := rec
	bad.DestinationPrefixes = list("10.0.1.4")
	if v := ReadNSG([]SecurityRule{bad}); len(v.Ended) != 0 || len(v.Malformed) != 1 {
		t.Errorf("a record whose destination differs from its source: %+v", v)
	}
	bad = rec
	bad.Direction = Inbound
	if v := ReadNSG([]SecurityRule{bad}); len(v.Ended) != 0 || len(v.Malformed) != 1 {
		t.Errorf("an inbound record: %+v", v)
	}
}

func TestRecordsToEvict(t *testing.T) {
	p := grantPolicy(t)
	rules := p.Rules()
	base := time.Unix(1_800_000_000, 0)
	for i := range MaxEndedRecords + 2 {
		g := GrantRule{Policy: "web-ssh", ID: fmt.Sprintf("r%03d", i), Requester: "a", ExpiresAt: base.Add(time.Duration(MaxEndedRecords-i) * time.Minute),
			Rule: SecurityRule{Protocol: ProtocolTCP, SourcePrefixes: list("203.0.113.7"), DestinationPorts: list("22")}}
		rec, ok := EndedRule(g, rules)
		if !ok {
			t.Fatal("no priority")
		}
		rules = append(rules, rec)
	}
	evict := RecordsToEvict(ReadNSG(rules), "web-ssh")
	// 102 records, room for one more under 100: the 3 oldest go (the last
	// written have the earliest expiries here).
	want := []string{"jit-web-ssh-e-r101", "jit-web-ssh-e-r100", "jit-web-ssh-e-r099"}
	if !slices.Equal(evict, want) {
		t.Errorf("evict %v, want %v", evict, want)
	}
	if got := RecordsToEvict(ReadNSG(rules), "other"); len(got) != 0 {
		t.Errorf("another policy's records evicted: %v", got)
	}
}

func TestMoveGrant(t *testing.T) {
	p := grantPolicy(t)
	exp := time.Unix(1_800_000_000, 0).UTC()
	g := ReadNSG(append(p.Rules(), p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), exp, 110))).Grants[0]

	moved, err := p.MoveGrant(g, p.Rules())
	if err != nil {
		t.Fatal(err)
	}
	if moved.Priority != 110 || moved.Description != g.Rule.Description || !slices.Equal(moved.DestinationPrefixes, list("10.0.1.4")) {
		t.Errorf("moved to a free NSG: %+v", moved)
	}
	taken := append(p.Rules(), SecurityRule{Name: "jit-web-ssh-g-zzz", Priority: 110, Direction: Inbound})
	if moved, err = p.MoveGrant(g, taken); err != nil || moved.Priority != 106 {
		t.Errorf("moved where 110 is taken: priority %d, %v", moved.Priority, err)
	}
	full := p.Rules()
	lo, hi := p.Band.GrantRange()
	for prio := lo; prio <= hi; prio++ {
		full = append(full, SecurityRule{Name: fmt.Sprintf("x%d", prio), Priority: prio, Direction: Inbound})
	}
	if _, err := p.MoveGrant(g, full); err == nil || !strings.Contains(err.Error(), "full") {
		t.Errorf("moved into a full band: %v", err)
	}
}

// FuzzEndedRecord: whatever grant rule ends, its record decodes as the
// record of that grant, matches no packet (one source, equal to its
// destination, outbound), and once it is there ending the grant again
// changes nothing; and no sighting moves a terminal state.
func FuzzEndedRecord(f *testing.F) {
	f.Add("web", "abc", "203.0.113.7", "22", "Tcp", int64(1_800_000_000), "alice@example.com", uint8(0))
	f.Add("a-b", "z9", "2001:db8::1", "3389", "*", int64(1), "x y<>", uint8(3))
	f.Fuzz(func(t *testing.T, policy, id, source, port, proto string, exp int64, requester string, state uint8) {
		if !validPolicyName(policy) || !ValidGrantID(id) || exp <= 0 || exp > 1<<40 {
			t.Skip()
		}
		p := mustPolicy(t, PolicyInput{Name: policy, DestinationPrefixes: list("*"), AllowedSources: list("*"),
			Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
		g := GrantRule{Policy: policy, ID: id, Requester: requester, ExpiresAt: time.Unix(exp, 0),
			Rule: SecurityRule{Name: GrantRuleName(policy, id), Protocol: Protocol(proto), SourcePrefixes: list(source),
				DestinationPorts: list(port)}}
		rules := append(p.Rules(), g.Rule)
		rec, ok := EndedRule(g, rules)
		if !ok {
			t.Fatal("no outbound priority free on a nearly empty NSG")
		}
		if rec.Direction != Outbound || len(rec.SourcePrefixes) != 1 || !slices.Equal(rec.SourcePrefixes, rec.DestinationPrefixes) {
			t.Fatalf("record %+v could match traffic", rec)
		}
		view := ReadNSG(append(p.Rules(), rec))
		if len(view.Malformed) > 0 {
			// A source or requester no grant could have had: the record is
			// malformed, and a malformed jit- Deny rule is left alone.
			return
		}
		if len(view.Ended) != 1 || view.Ended[0].ID != id || view.Ended[0].ExpiresAt.Unix() != exp {
			t.Fatalf("record %+v reads back as %+v", rec, view.Ended)
		}
		if end := EndGrant(view, g); !end.Empty() {
			t.Fatalf("ending the grant again changes %+v", end)
		}
		terminal := []GrantState{GrantExpired, GrantRevoked, GrantClosed}[int(state)%3]
		s := SightGrant("a", view, policy, id)
		if got := terminal.Observe(time.Unix(exp, 0), []GrantSighting{s, {NSGID: "b", Open: true, Rule: &g}}, time.Unix(0, 0)); got != terminal {
			t.Fatalf("%s became %s", terminal, got)
		}
	})
}

func TestTampered(t *testing.T) {
	p := grantPolicy(t)
	exp := time.Unix(1_800_000_000, 0).UTC()
	g := ReadNSG(append(p.Rules(), p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), exp, 106))).Grants[0]
	want := SecurityRule{Protocol: ProtocolTCP, SourcePrefixes: list("203.0.113.7/32"), DestinationPorts: list("22")}
	if why := Tampered([]GrantSighting{{NSGID: "a", Rule: &g, Open: true}, {NSGID: "b"}}, want); why != "" {
		t.Errorf("the rule as written is tampered: %s", why)
	}
	for name, edit := range map[string]func(*GrantRule){
		"source":   func(g *GrantRule) { g.Rule.SourcePrefixes = list("203.0.113.99") },
		"ports":    func(g *GrantRule) { g.Rule.DestinationPorts = list("22", "3389") },
		"protocol": func(g *GrantRule) { g.Rule.Protocol = ProtocolAny },
	} {
		x := g
		edit(&x)
		if why := Tampered([]GrantSighting{{NSGID: "a", Rule: &g}, {NSGID: "b", Rule: &x}}, want); !strings.Contains(why, "on b") {
			t.Errorf("an edited %s is not seen: %q", name, why)
		}
	}
}

func TestMoveRecord(t *testing.T) {
	p := grantPolicy(t)
	g := ReadNSG(append(p.Rules(), p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), time.Unix(1_800_000_000, 0), 106))).Grants[0]
	rec, _ := EndedRule(g, nil)
	e := ReadNSG([]SecurityRule{rec}).Ended[0]
	if moved, ok := MoveRecord(e, p.Rules()); !ok || moved.Priority != rec.Priority || moved.Description != rec.Description {
		t.Errorf("moved to a free NSG: %+v", moved)
	}
	taken := []SecurityRule{{Name: "AllowOut", Direction: Outbound, Priority: rec.Priority}}
	if moved, ok := MoveRecord(e, taken); !ok || moved.Priority != rec.Priority-1 {
		t.Errorf("moved where %d is taken: %+v", rec.Priority, moved)
	}
	if v := ReadNSG([]SecurityRule{func() SecurityRule { m, _ := MoveRecord(e, taken); return m }()}); len(v.Ended) != 1 {
		t.Errorf("a moved record does not read back: %+v", v)
	}
}
