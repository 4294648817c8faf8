package jit

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPolicyRuleNames(t *testing.T) {
	names := PolicyRuleNames("web")
	if len(names) != 12 {
		t.Fatalf("%d names, want 12 (guard and deny × tcp, udp, any × v4, v6)", len(names))
	}
	for _, r := range changePolicy(t).Rules() {
		if !slices.Contains(names, strings.ToLower(r.Name)) {
			t.Errorf("rule %s of the policy is not among its names", r.Name)
		}
	}
}

func TestWriteOn(t *testing.T) {
	p := changePolicy(t)
	wider := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}, {53, "Udp", "1h"}}, BandStart: 100, BandEnd: 199})
	g1 := changeGrant(t, p, "g1", 106, time.Hour)
	rec, _ := EndedRule(changeGrant(t, p, "e1", 107, -time.Hour), nil)
	records := ReadNSG([]SecurityRule{rec}).Ended
	foreign := rule("allow-https", 300, Allow, ProtocolTCP, list("*"), list("*"), list("443"), "")

	// On an empty NSG: every rule is created, carried grants and records too.
	w := p.WriteOn([]SecurityRule{foreign}, []GrantRule{g1}, records)
	if len(w.Put) != len(p.Rules()) || len(w.Delete) != 0 || len(w.Grants) != 1 || len(w.Records) != 1 {
		t.Fatalf("WriteOn(empty) = %+v", w)
	}
	if !slices.Contains(w.Created, g1.Rule.Name) || len(w.Created) != len(p.Rules())+1 {
		t.Fatalf("created %q, want the policy's rules and the grant's", w.Created)
	}
	// Where the policy, the grant and the record already are: nothing.
	if w := p.WriteOn(append(p.Rules(), foreign, g1.Rule, rec), []GrantRule{g1}, records); !w.Empty() {
		t.Fatalf("WriteOn(as it is) = %+v, want nothing", w)
	}
	// A protocol added: its rules are put, none deleted; dropped again: deleted, named as on the NSG.
	w = wider.WriteOn(p.Rules(), nil, nil)
	if len(w.Delete) != 0 || len(w.Put) == 0 || w.Empty() {
		t.Fatalf("WriteOn(udp added) = %+v", w)
	}
	shouted := wider.Rules()
	for i := range shouted {
		shouted[i].Name = strings.ToUpper(shouted[i].Name)
	}
	w = p.WriteOn(shouted, nil, nil)
	for _, name := range w.Delete {
		if name != strings.ToUpper(name) || !strings.Contains(name, "UDP") {
			t.Errorf("deleted %q, want only the udp rules, as named on the NSG", name)
		}
	}
	if len(w.Delete) == 0 || len(w.Created) != 0 {
		t.Fatalf("WriteOn(udp dropped) = %+v: want deletes and nothing created", w)
	}
	// A rule of the policy edited out of band is put back.
	edited := p.Rules()
	edited[0].SourcePrefixes = list("10.0.0.0/8")
	if w := p.WriteOn(edited, nil, nil); len(w.Put) != 1 || w.Put[0].Name != edited[0].Name || len(w.Created) != 0 {
		t.Fatalf("WriteOn(edited) = %+v, want the edited rule put back", w)
	}
}

func TestRemovalNames(t *testing.T) {
	p := changePolicy(t)
	other := mustPolicy(t, PolicyInput{Name: "db", DestinationPrefixes: list("*"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 300, BandEnd: 399})
	g1 := changeGrant(t, p, "g1", 106, time.Hour)
	rec, _ := EndedRule(changeGrant(t, p, "e1", 107, -time.Hour), nil)
	otherRec, _ := EndedRule(changeGrant(t, other, "e2", 306, -time.Hour), []SecurityRule{rec})
	foreign := rule("jitter", 300, Allow, ProtocolTCP, list("*"), list("*"), list("443"), "")
	rules := append(append(p.Rules(), other.Rules()...), g1.Rule, rec, otherRec, foreign)
	got := RemovalNames(p.Name, rules, []GrantRule{g1})
	want := []string{g1.Rule.Name, rec.Name}
	for _, r := range p.Rules() {
		want = append(want, r.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("RemovalNames = %q\nwant %q (never another policy's or a foreign rule)", got, want)
	}
	if got := RemovalNames(p.Name, nil, []GrantRule{g1}); len(got) != 0 {
		t.Fatalf("RemovalNames on an empty NSG = %q, want none", got)
	}
}

func TestSameRule(t *testing.T) {
	r := changePolicy(t).Rules()[0]
	reordered := r
	reordered.DestinationPorts = slices.Clone(r.DestinationPorts)
	slices.Reverse(reordered.DestinationPorts)
	reordered.Name = strings.ToUpper(r.Name)
	if !SameRule(reordered, r) {
		t.Error("the same rule, name case and list order aside, differs")
	}
	for name, mod := range map[string]func(*SecurityRule){
		"priority":    func(x *SecurityRule) { x.Priority++ },
		"access":      func(x *SecurityRule) { x.Access = Allow },
		"sources":     func(x *SecurityRule) { x.SourcePrefixes = list("*") },
		"description": func(x *SecurityRule) { x.Description += " " },
		"asg":         func(x *SecurityRule) { x.UsesApplicationSecurityGroups = true },
	} {
		have := r
		have.SourcePrefixes = slices.Clone(r.SourcePrefixes)
		mod(&have)
		if SameRule(have, r) {
			t.Errorf("a rule with another %s is the same", name)
		}
	}
}

// flushConnection is remembered the first time a policy turns it on and
// put back when it stops asking, unless another policy there still asks.
func TestFlushKeptReleased(t *testing.T) {
	found := map[string]bool{}
	if got := FlushKept(found, "NSG-A", true, false, false); got == nil || !*got {
		t.Fatalf("keep on an NSG with flush off = %v, want true", got)
	}
	if got := FlushKept(found, "nsg-a", true, true, false); got != nil {
		t.Fatalf("keep again = %v, want nothing to write", *got)
	}
	if was, ok := found["nsg-a"]; !ok || was || len(found) != 1 {
		t.Fatalf("found %v, want off remembered for nsg-a, by its lower-case id", found)
	}
	if got := FlushKept(found, "nsg-a", false, true, true); got != nil {
		t.Fatalf("stop asking while another policy asks = %v, want nothing", *got)
	}
	FlushKept(found, "nsg-a", true, false, false)
	if got := FlushReleased(found, "nsg-a", true, false); got == nil || *got {
		t.Fatalf("release = %v, want false put back", got)
	}
	if got := FlushReleased(found, "nsg-a", true, false); got != nil {
		t.Fatalf("release of an NSG whose value is not known = %v, want nothing", *got)
	}
	FlushKept(found, "nsg-b", true, true, false)
	if got := FlushReleased(found, "nsg-b", true, false); got != nil {
		t.Fatalf("release where flush was on before = %v, want nothing", *got)
	}
}

func TestMoveRecordRule(t *testing.T) {
	rec, _ := EndedRule(changeGrant(t, changePolicy(t), "e1", 107, -time.Hour), nil)
	e := ReadNSG([]SecurityRule{rec}).Ended[0]
	full := make([]SecurityRule, 0, MaxPriority-MinPriority+1)
	for prio := int32(MinPriority); prio <= MaxPriority; prio++ {
		full = append(full, SecurityRule{Name: "o", Priority: prio, Direction: Outbound})
	}
	if _, err := MoveRecordRule(e, full); err == nil || !strings.Contains(err.Error(), "no outbound priority is free for the record jit-web-e-e1") {
		t.Fatalf("MoveRecordRule(full) = %v", err)
	}
	if r, err := MoveRecordRule(e, nil); err != nil || r.Priority != rec.Priority {
		t.Fatalf("MoveRecordRule(empty) = %+v, %v", r, err)
	}
}
