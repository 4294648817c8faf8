package jit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	nsgA = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/a"
	nsgB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/b"
	nsgC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/c"
)

var changeNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// changePolicy is a policy with a grant range of 106–193.
func changePolicy(t *testing.T) Policy {
	t.Helper()
	return mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
}

// changeGrant is grant id of p from 203.0.113.7 to port 22, ending at
// changeNow+ends, at priority prio.
func changeGrant(t *testing.T, p Policy, id string, prio int32, ends time.Duration) GrantRule {
	t.Helper()
	spec, err := p.CheckGrant(GrantInput{Ports: []int64{22}, Protocol: "Tcp", Source: "203.0.113.7", Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exp := changeNow.Add(ends)
	return GrantRule{Policy: p.Name, ID: id, Requester: spec.Requester, ExpiresAt: exp, Rule: p.GrantRule(id, spec, exp, prio)}
}

// nsg is an NSG holding p's rules (when p is not nil) and the given extra
// rules, as read.
func nsg(id string, p *Policy, extra ...SecurityRule) PolicyNSG {
	var rules []SecurityRule
	if p != nil {
		rules = append(rules, p.Rules()...)
	}
	rules = append(rules, extra...)
	return PolicyNSG{ID: id, View: ReadNSG(rules)}
}

// tampered is g's rule edited in place (its source widened): it no longer
// reads as the grant wrote it.
func tampered(g GrantRule) SecurityRule {
	r := g.Rule
	r.SourcePrefixes = list("0.0.0.0/0")
	return r
}

func grantIDs(gs []GrantRule) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID)
	}
	return out
}

func TestPolicyID(t *testing.T) {
	id := PolicyID("web", []string{nsgB, strings.ToUpper(nsgA)})
	if want := "web@" + strings.ToUpper(nsgA) + "," + nsgB; id != want {
		t.Fatalf("PolicyID = %q, want %q (NSG ids sorted case-insensitively)", id, want)
	}
	name, ids, err := ParsePolicyID(id)
	if err != nil || name != "web" || !slices.Equal(ids, []string{strings.ToUpper(nsgA), nsgB}) {
		t.Fatalf("ParsePolicyID(%q) = %q, %q, %v", id, name, ids, err)
	}
	for bad, want := range map[string]string{
		"web":                 `"web" is not a JIT policy id: expected <name>@<nsg id>[,<nsg id>...]`,
		"@" + nsgA:            "expected <name>@",
		"web@":                "expected <name>@",
		"Web@" + nsgA:         `"Web" is not a policy name`,
		"web--ssh@" + nsgA:    `"web--ssh" is not a policy name`,
		"web@" + nsgA + ",":   `"" is not a network security group id`,
		"web@/subscriptions/": "is not a network security group id",
		"web@" + strings.Replace(nsgA, "networkSecurityGroups", "virtualNetworks", 1): `segment 7 is "virtualNetworks", expected "networkSecurityGroups"`,
		"web@" + strings.TrimSuffix(nsgA, "a"):                                        "it has an empty network security group name",
	} {
		if _, _, err := ParsePolicyID(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePolicyID(%q) = %v, want an error with %q", bad, err, want)
		}
	}
}

func TestNSGsChange(t *testing.T) {
	gained, leaving := NSGsChange([]string{nsgA, nsgB}, []string{strings.ToUpper(nsgB), nsgC})
	if !slices.Equal(gained, []string{nsgC}) || !slices.Equal(leaving, []string{nsgA}) {
		t.Fatalf("gained %q, leaving %q: want [c], [a] (ids compare case-insensitively)", gained, leaving)
	}
}

// A grant moves to a joining NSG only when it is open and unexpired on
// every NSG that holds the policy: anywhere it is missing it was revoked,
// and a revoked grant never opens again.
func TestMovableGrants(t *testing.T) {
	p := changePolicy(t)
	other := mustPolicy(t, PolicyInput{Name: "db", DestinationPrefixes: list("*"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 300, BandEnd: 399})
	g1 := changeGrant(t, p, "g1", 106, time.Hour)
	g2 := changeGrant(t, p, "g2", 107, time.Hour)
	ended := changeGrant(t, p, "old", 108, -time.Minute)
	atNow := changeGrant(t, p, "now", 109, 0)
	foreign := changeGrant(t, other, "x", 306, time.Hour)
	tests := []struct {
		name string
		nsgs []PolicyNSG
		want []string
	}{
		{"open on every NSG", []PolicyNSG{nsg(nsgA, &p, g1.Rule, g2.Rule), nsg(nsgB, &p, g2.Rule, g1.Rule)}, list("g1", "g2")},
		{"missing on one NSG: revoked there, not carried",
			[]PolicyNSG{nsg(nsgA, &p, g1.Rule, g2.Rule), nsg(nsgB, &p, g2.Rule)}, list("g2")},
		{"tampered on one NSG: not moved", []PolicyNSG{nsg(nsgA, &p, g1.Rule, g2.Rule), nsg(nsgB, &p, tampered(g1), g2.Rule)}, list("g2")},
		{"tampered on the only NSG: not moved", []PolicyNSG{nsg(nsgA, &p, tampered(g1))}, nil},
		{"expired, or ending right now, never moves", []PolicyNSG{nsg(nsgA, &p, ended.Rule, atNow.Rule, g1.Rule)}, list("g1")},
		{"an NSG that lost the policy says nothing", []PolicyNSG{nsg(nsgA, &p, g1.Rule), nsg(nsgB, nil)}, list("g1")},
		{"another policy's grants stay", []PolicyNSG{nsg(nsgA, &p, g1.Rule, foreign.Rule)}, list("g1")},
		{"no NSG holds the policy", []PolicyNSG{nsg(nsgA, nil, g1.Rule)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := grantIDs(MovableGrants(p.Name, tc.nsgs, changeNow)); !slices.Equal(got, tc.want) {
				t.Errorf("MovableGrants = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanPolicyUpdate(t *testing.T) {
	p := changePolicy(t)
	wider := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	g1 := changeGrant(t, p, "g1", 106, time.Hour)
	rec, _ := EndedRule(changeGrant(t, p, "e1", 107, -time.Hour), nil)
	had := []PolicyNSG{nsg(nsgA, &p, g1.Rule, rec), nsg(nsgB, &p, g1.Rule)}
	tests := []struct {
		name               string
		old                *Policy
		oldNSGs, newNSGs   []string
		gained, leaving    []string
		check              []string
		carry, records     int
		carryToC, carryToA bool
	}{
		{"flag-only change: nothing written anew, nothing checked", &p, list(nsgA, nsgB), list(nsgA, nsgB), nil, nil, nil, 0, 0, false, false},
		{"policy changed: every NSG checked", &p, list(nsgA, nsgB), list(nsgA, nsgB), nil, nil, list(nsgA, nsgB), 0, 0, false, false},
		{"old policy unknown: every NSG checked", nil, list(nsgA, nsgB), list(nsgA, nsgB), nil, nil, list(nsgA, nsgB), 0, 0, false, false},
		{"NSG gained: checked there only, grants carried there only", &p, list(nsgA, nsgB), list(nsgA, nsgB, nsgC), list(nsgC), nil, list(nsgC), 1, 1, true, false},
		{"NSG leaving: records kept, nothing carried", &p, list(nsgA, nsgB), list(nsgA), nil, list(nsgB), nil, 0, 1, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			newPolicy := p
			if strings.HasPrefix(tc.name, "policy changed") {
				newPolicy = wider
			}
			plan := PlanPolicyUpdate(PolicyUpdate{Old: tc.old, New: newPolicy, OldNSGs: tc.oldNSGs, NewNSGs: tc.newNSGs, Had: had, Now: changeNow})
			if !slices.Equal(plan.Gained, tc.gained) || !slices.Equal(plan.Leaving, tc.leaving) {
				t.Errorf("gained %q leaving %q, want %q %q", plan.Gained, plan.Leaving, tc.gained, tc.leaving)
			}
			if !slices.Equal(plan.Check, tc.check) {
				t.Errorf("check %q, want %q", plan.Check, tc.check)
			}
			if len(plan.Carry) != tc.carry || len(plan.Records) != tc.records {
				t.Errorf("carry %d records %d, want %d %d", len(plan.Carry), len(plan.Records), tc.carry, tc.records)
			}
			if got := len(plan.CarryTo(strings.ToUpper(nsgC))) > 0; got != tc.carryToC {
				t.Errorf("CarryTo(c) carries %v, want %v", got, tc.carryToC)
			}
			if got := len(plan.CarryTo(nsgA)) > 0; got != tc.carryToA {
				t.Errorf("CarryTo(a) carries %v, want %v", got, tc.carryToA)
			}
		})
	}
}

func TestPolicyRecords(t *testing.T) {
	p := changePolicy(t)
	var a, b []SecurityRule
	for i := range MaxEndedRecords + 5 {
		g := changeGrant(t, p, "e"+string(rune('a'+i%26))+string(rune('a'+i/26)), 106, -time.Duration(i+1)*time.Minute)
		r, _ := EndedRule(g, nil)
		r.Priority = int32(4096 - i)
		if i%2 == 0 {
			a = append(a, r)
		} else {
			b = append(b, r)
		}
	}
	same, _ := EndedRule(changeGrant(t, p, "ea", 106, -time.Minute), nil) // on both NSGs: one record
	b = append(b, same)
	got := PolicyRecords(p.Name, []PolicyNSG{nsg(nsgA, &p, a...), nsg(nsgB, &p, b...)})
	if len(got) != MaxEndedRecords {
		t.Fatalf("%d records, want at most %d", len(got), MaxEndedRecords)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ExpiresAt.After(got[i-1].ExpiresAt) {
			t.Fatalf("record %d (%s) is newer than record %d (%s): want newest first", i, got[i].ExpiresAt, i-1, got[i-1].ExpiresAt)
		}
	}
	if got[0].ID != "ea" || got[1].ID == "ea" {
		t.Fatalf("records start %s, %s: want the newest, once", got[0].ID, got[1].ID)
	}
}

// Deleting a policy is refused while any of its grants is active; the
// message names each one.
func TestDeletePolicyNotice(t *testing.T) {
	p := changePolicy(t)
	g1 := changeGrant(t, p, "g1", 106, time.Hour)
	ended := changeGrant(t, p, "g0", 107, -time.Hour)
	nsgs := []PolicyNSG{nsg(nsgA, &p, g1.Rule, ended.Rule), nsg(nsgB, &p)}
	active := ActiveGrants(p.Name, nsgs, changeNow)
	if len(active) != 1 || active[0].NSGID != nsgA || active[0].Grant.ID != "g1" {
		t.Fatalf("ActiveGrants = %+v, want g1 on a", active)
	}
	n, refused := DeletePolicyNotice(p.Name, active)
	want := `Policy "web" still has 1 active grant(s); removing it would leave their allow rules with no deny rule after them:
  - grant g1 (rule jit-web-g-g1) by alice@example.com, until 2026-11-30T13:00:00Z, on ` + nsgA + `

Remove those jit_access_grant resources (or wait until they expire and jitd closes them), then apply again.`
	if !refused || n.Severity != Error || n.Summary != "JIT Policy Has Active Grants" || n.Detail != want {
		t.Fatalf("DeletePolicyNotice = %v %+v\nwant detail:\n%s", refused, n, want)
	}
	if _, refused := DeletePolicyNotice(p.Name, ActiveGrants(p.Name, nsgs, changeNow.Add(2*time.Hour))); refused {
		t.Fatal("refused once every grant has expired")
	}
}

// A band change may not leave an active grant outside the new grant range;
// an expired one does not count.
func TestGrantsOutsideBand(t *testing.T) {
	p := changePolicy(t)
	moved := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 110, BandEnd: 199}) // grant range 116–193
	inside := changeGrant(t, p, "in", 120, time.Hour)
	outside := changeGrant(t, p, "out", 106, time.Hour)
	expired := changeGrant(t, p, "exp", 107, -time.Hour)
	view := ReadNSG(append(p.Rules(), inside.Rule, outside.Rule, expired.Rule))
	got := moved.GrantsOutsideBand(nsgA, view, changeNow)
	want := "Grant out (rule jit-web-g-out, priority 106, by alice@example.com, until 2026-11-30T13:00:00Z) on " + nsgA +
		" would fall outside the new grant range 116–193. Wait until it expires or remove it, then change the band."
	if len(got) != 1 || got[0].Severity != Error || got[0].Attribute != "priority_band" ||
		got[0].Summary != "Active Grant Outside the New Band" || got[0].Detail != want {
		t.Fatalf("GrantsOutsideBand = %+v\nwant one error with detail:\n%s", got, want)
	}
	if got := p.GrantsOutsideBand(nsgA, view, changeNow); len(got) != 0 {
		t.Fatalf("unchanged band: %+v, want none", got)
	}
}

func TestExistingPolicyNotice(t *testing.T) {
	p := changePolicy(t)
	other := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.5"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
	id := PolicyID(p.Name, list(nsgA))
	if _, ok := ExistingPolicyNotice(p, nsgA, ReadNSG(nil), id); ok {
		t.Fatal("a notice for an NSG without the policy")
	}
	n, ok := ExistingPolicyNotice(p, nsgA, ReadNSG(p.Rules()), id)
	if !ok || n.Severity != Warning || n.Summary != "Adopting Existing JIT Policy" {
		t.Fatalf("the same policy: %+v, want it adopted", n)
	}
	n, ok = ExistingPolicyNotice(p, nsgA, ReadNSG(other.Rules()), id)
	if !ok || n.Severity != Error || n.Attribute != "name" || n.Summary != "JIT Policy Already Exists" ||
		!strings.Contains(n.Detail, "terraform import <address> '"+id+"'") {
		t.Fatalf("another policy of the name: %+v, want it refused with the import id", n)
	}
	broken := ReadNSG(p.Rules()[1:])
	if n, _ := ExistingPolicyNotice(p, nsgA, broken, id); n.Severity != Error {
		t.Fatalf("a policy inconsistent on the NSG: %+v, want it refused, not adopted", n)
	}
}

// Bypasses and standing access are gathered across NSGs and reported in
// one message each; the fail switches make them errors on their attribute.
func TestPolicyFindingsNotices(t *testing.T) {
	p := changePolicy(t)
	internet := rule("allow-ssh-internet", 90, Allow, ProtocolTCP, list("Internet"), list("*"), list("22"), "")
	vpnAbove := rule("vpn-above", 95, Allow, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22", "3389"), "")
	vpnInside := rule("vpn-inside", 150, Allow, ProtocolTCP, list("203.0.113.8"), list("10.0.1.4"), list("22"), "")
	below := rule("below", 300, Allow, ProtocolTCP, list("*"), list("*"), list("22"), "")
	asg := SecurityRule{Name: "asg", Priority: 150, Direction: Inbound, Access: Allow, Protocol: ProtocolTCP,
		DestinationPorts: list("22"), UsesApplicationSecurityGroups: true}
	f := PolicyFindings{Policy: p.Name}
	f.AddNSG(p, nsgA, append(p.Rules(), internet, below))
	f.AddNSG(p, nsgB, append(p.Rules(), vpnAbove, vpnInside))

	if len(f.Bypasses) != 1 || f.Bypasses[0].NSGID != nsgA || f.Bypasses[0].Rule.Name != "allow-ssh-internet" {
		t.Fatalf("bypasses %+v, want the foreign Internet rule on a only", f.Bypasses)
	}
	n, ok := f.BypassNotice(false)
	wantLine := "  - allow-ssh-internet (priority 90) on " + nsgA + ": port 22/Tcp: " + f.Bypasses[0].Reason + "\n"
	if !ok || n.Severity != Warning || n.Attribute != "" || n.Summary != "Protected Ports Are Still Reachable" ||
		!strings.HasPrefix(n.Detail, `These rules let ports that policy "web" protects in from sources it does not allow, ahead of its deny rules, so those ports are NOT closed:`+"\n"+wantLine) ||
		!strings.HasSuffix(n.Detail, "\nThe provider never modifies rules outside the jit- namespace. Remove or narrow them, or move them below the policy's band.") {
		t.Fatalf("BypassNotice(false) = %+v", n)
	}
	failed, _ := f.BypassNotice(true)
	if failed.Severity != Error || failed.Attribute != "fail_on_bypass" ||
		failed.Detail != n.Detail+"\n\nfail_on_bypass is true, so nothing was written. Remove or narrow those rules, or set fail_on_bypass = false." {
		t.Fatalf("BypassNotice(true) = %+v", failed)
	}

	var names []string
	for _, s := range f.Standing {
		names = append(names, s.NSGID[len(s.NSGID)-1:]+":"+s.Rule.Name)
	}
	if !slices.Equal(names, list("b:vpn-above", "b:vpn-inside")) {
		t.Fatalf("standing access %q, want the VPN rules above and inside the band on b", names)
	}
	n, ok = f.StandingNotice(false)
	wantLine = "  - vpn-above (priority 95) on " + nsgB + ": port 22/Tcp, sources 203.0.113.0/24, ports 22,3389: " + f.Standing[0].Reason + "\n"
	if !ok || n.Severity != Warning || n.Summary != "Allowed Sources Have Standing Access" || !strings.Contains(n.Detail, wantLine) {
		t.Fatalf("StandingNotice(false) = %+v\nwant the line %q", n, wantLine)
	}
	failed, _ = f.StandingNotice(true)
	if failed.Severity != Error || failed.Attribute != "fail_on_standing_access" || !strings.HasPrefix(failed.Detail, n.Detail+"\n\nfail_on_standing_access is true") {
		t.Fatalf("StandingNotice(true) = %+v", failed)
	}

	var asgOnly PolicyFindings
	asgOnly.AddNSG(p, nsgA, append(p.Rules(), asg))
	if n, ok := asgOnly.StandingNotice(false); !ok || !strings.Contains(n.Detail, "asg (priority 150) on "+nsgA+": port 22/Tcp, sources (application security groups), ports 22: ") {
		t.Fatalf("a rule with application security groups inside the band names them: %+v", n)
	}
	if _, ok := (PolicyFindings{Policy: "web"}).BypassNotice(true); ok {
		t.Fatal("a notice with no bypass")
	}
	if _, ok := (PolicyFindings{Policy: "web"}).StandingNotice(true); ok {
		t.Fatal("a notice with no standing access")
	}
	if _, ok := (PolicyFindings{Policy: "web"}).AdminNotice(true); ok {
		t.Fatal("a notice with no admin override")
	}
}

func TestAdminNotice(t *testing.T) {
	p := changePolicy(t)
	var f PolicyFindings
	f.AddAdmin(p, nsgA, "vnet-1", []AdminRule{{Name: "open-ssh", Priority: 10, Access: AdminAlwaysAllow, Direction: Inbound, Protocol: ProtocolTCP,
		Sources: list("*"), Destinations: list("*"), SourcePorts: list("*"), DestinationPorts: list("22")}})
	if len(f.Admin) != 1 {
		t.Fatalf("admin overrides %+v, want the AlwaysAllow rule", f.Admin)
	}
	n, ok := f.AdminNotice(false)
	want := "Azure Virtual Network Manager security admin rules are evaluated before any NSG. For policy \"web\":\n" +
		"  - " + nsgA + " (virtual network vnet-1): " + f.Admin[0].Reason
	if !ok || n.Severity != Warning || n.Summary != "Security Admin Rules Decide Protected Ports" || n.Detail != want {
		t.Fatalf("AdminNotice(false) = %+v\nwant detail %q", n, want)
	}
	if n, _ := f.AdminNotice(true); n.Severity != Error || n.Attribute != "fail_on_admin_override" {
		t.Fatalf("AdminNotice(true) = %+v", n)
	}
}

func TestSessionNotices(t *testing.T) {
	view := func(endSessions bool) NSGView {
		return NSGView{Policies: map[string]DecodedPolicy{"db": {Policy: Policy{Name: "db", EndSessions: endSessions}},
			"web": {Policy: Policy{Name: "web"}}}}
	}
	for _, tc := range []struct {
		mine, theirs bool
		want         string
	}{
		{true, false, "Live Sessions End for the Whole NSG"},
		{true, true, "Live Sessions End for the Whole NSG"},
		{false, true, "Live Sessions End at Expiry on This NSG"},
		{false, false, ""},
	} {
		got := Policy{Name: "web", EndSessions: tc.mine}.SessionNotices("nsg-a", view(tc.theirs))
		if (tc.want == "" && len(got) != 0) || (tc.want != "" && (len(got) != 1 || got[0].Summary != tc.want || !strings.Contains(got[0].Detail, "db"))) {
			t.Errorf("mine %v theirs %v: %+v, want %q", tc.mine, tc.theirs, got, tc.want)
		}
	}
}

// Read-back fails closed: only NSGs holding the policy exactly, and the
// same one everywhere, are intact.
func TestReadBackPolicy(t *testing.T) {
	p := changePolicy(t)
	other := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.5"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
	nsgs := []PolicyNSG{nsg(nsgA, &p), nsg(nsgB, &other), {ID: nsgC, View: ReadNSG(p.Rules()[1:])}, nsg("d", nil)}
	statuses := func(b PolicyReadBack) []PolicyStatus {
		var out []PolicyStatus
		for _, on := range b.NSGs {
			out = append(out, on.Status)
		}
		return out
	}
	// As the state wants it.
	b := ReadBackPolicy("web", &p, nsgs)
	if b.Found == nil || !b.Found.Equal(p) || !slices.Equal(b.Intact, list(nsgA)) ||
		!slices.Equal(statuses(b), []PolicyStatus{PolicyIntact, PolicyDiffers, PolicyInconsistent, PolicyMissing}) || b.NSGs[2].Problem == "" {
		t.Fatalf("ReadBackPolicy(want p) = %+v", b)
	}
	// After an import: the first found is taken, the others must match it.
	b = ReadBackPolicy("web", nil, []PolicyNSG{nsgs[1], nsgs[0]})
	if b.Found == nil || !b.Found.Equal(other) || !slices.Equal(b.Intact, list(nsgB)) || b.NSGs[1].Status != PolicyDiffers {
		t.Fatalf("ReadBackPolicy(nil) = %+v", b)
	}
	// Nowhere intact: what the state wants, on no NSG, so the plan writes it again.
	b = ReadBackPolicy("web", &p, nsgs[1:])
	if b.Found == nil || !b.Found.Equal(p) || len(b.Intact) != 0 {
		t.Fatalf("ReadBackPolicy(nowhere intact) = %+v", b)
	}
	if b := ReadBackPolicy("web", nil, nsgs[2:]); b.Found != nil {
		t.Fatalf("ReadBackPolicy(nothing to go on) = %+v, want nothing found", b)
	}
	if n := PolicyNotFoundNotice("web", list(nsgA, nsgB)); n.Detail != `No intact JIT policy named "web" was found on `+nsgA+", "+nsgB+"." {
		t.Fatalf("PolicyNotFoundNotice = %+v", n)
	}
}

func TestMergedSourcesNotice(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("*"), AllowedSources: list("203.0.113.0/25", "203.0.113.128/25"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
	n, ok := MergedSourcesNotice(list("203.0.113.0/25", "203.0.113.128/25"), p)
	if !ok || n.Attribute != "allowed_source_address_prefixes" || !strings.Contains(n.Detail, "as 203.0.113.0/24 (adjacent") {
		t.Fatalf("MergedSourcesNotice = %v %+v", ok, n)
	}
	if _, ok := MergedSourcesNotice(list("203.0.113.0/24"), p); ok {
		t.Fatal("a notice for sources written as they read back")
	}
}

// A plan is judged on each NSG as the state allows: a create adopts or
// refuses a policy of its name already there, an unchanged policy is not
// refused for what would only stop a write, and what the rules let in is
// always gathered.
func TestCheckPlanOn(t *testing.T) {
	p := changePolicy(t)
	planted := rule("planted", 150, Allow, ProtocolTCP, list("203.0.113.9"), list("10.0.1.4"), list("22"), "")
	outside := changeGrant(t, p, "g1", 106, time.Hour)
	moved := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 110, BandEnd: 199})
	summaries := func(ns []Notice) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Summary)
		}
		return out
	}
	onNSG := func(pol Policy, c PlanCheck, rules []SecurityRule) ([]string, PolicyFindings) {
		f := PolicyFindings{Policy: pol.Name}
		return summaries(pol.CheckPlanOn(c, nsgA, rules, ReadNSG(rules), &f)), f
	}
	conflict := "JIT Policy Conflicts With Network Security Group"

	got, f := onNSG(p, PlanCheck{Creating: true, Now: changeNow}, []SecurityRule{planted})
	if !slices.Equal(got, list(conflict)) || len(f.Standing) != 1 {
		t.Fatalf("create beside a planted rule: %q, %d standing; want a conflict and the rule as standing access", got, len(f.Standing))
	}
	if got, _ := onNSG(p, PlanCheck{Unchanged: true, Now: changeNow}, append(p.Rules(), planted)); len(got) != 0 {
		t.Fatalf("unchanged policy beside a planted rule: %q, want no error", got)
	}
	if got, _ := onNSG(p, PlanCheck{Creating: true, Now: changeNow}, append(p.Rules(), planted)); !slices.Equal(got, list("Adopting Existing JIT Policy")) {
		t.Fatalf("create over the same policy: %q, want it adopted and nothing else judged", got)
	}
	if got, _ := onNSG(moved, PlanCheck{Now: changeNow}, append(p.Rules(), outside.Rule)); !slices.Equal(got, list("Active Grant Outside the New Band")) {
		t.Fatalf("band moved past an active grant: %q", got)
	}
}

func TestConflictNotices(t *testing.T) {
	if ConflictNotices(nil) != nil {
		t.Fatal("notices without a conflict")
	}
	other := mustPolicy(t, PolicyInput{Name: "db", DestinationPrefixes: list("*"), AllowedSources: list("10.0.0.0/8"),
		Ports: []PortInput{{5432, "Tcp", "1h"}}, BandStart: 150, BandEnd: 249})
	got := ConflictNotices(Conflicts(changePolicy(t), nsgA, other.Rules()))
	if len(got) != 1 || got[0].Attribute != "priority_band" || got[0].Severity != Error ||
		!strings.HasPrefix(got[0].Detail, `priority_band: band 100-199 of policy "web" overlaps band 150-249 of policy "db"`) {
		t.Fatalf("ConflictNotices = %+v", got)
	}
	if got := ConflictNotices(errors.New("plain")); len(got) != 1 || got[0].Attribute != "" || got[0].Detail != "plain" {
		t.Fatalf("a plain error: %+v", got)
	}
}

func TestMoveReasons(t *testing.T) {
	g := changeGrant(t, changePolicy(t), "g1", 106, time.Hour)
	if got := GrantMovedReason("web", g); got != "policy web gained this NSG: the grant's rule moved with it, for its remaining window until 2026-11-30T13:00:00Z" {
		t.Errorf("GrantMovedReason = %q", got)
	}
	if got := GrantLeftReason("web"); got != "policy web left this NSG: the grant's rule there went with it" {
		t.Errorf("GrantLeftReason = %q", got)
	}
	if n := SessionsOffNotice("web", nsgA); n.Severity != Warning || n.Summary != "Live Sessions No Longer End at Expiry" ||
		!strings.Contains(n.Detail, `Policy "web" ends live sessions at expiry, but flushConnection is off on `+nsgA) {
		t.Errorf("SessionsOffNotice = %+v", n)
	}
}
