package jit

import (
	"strings"
	"testing"
	"time"
)

// A grant is judged only against a policy intact and identical on every
// NSG of its id; at plan time an NSG without it is allowed while another
// holds it.
func TestGrantPolicyCheck(t *testing.T) {
	p := changePolicy(t)
	other := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.5"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
	intact, differs, broken, none := ReadNSG(p.Rules()), ReadNSG(other.Rules()), ReadNSG(p.Rules()[1:]), NSGView{}
	type nsgView struct {
		id   string
		view NSGView
	}
	tests := []struct {
		name     string
		planning bool
		nsgs     []nsgView
		summary  string // "" when the policy is found
		detail   string // a fragment
	}{
		{"intact everywhere", false, []nsgView{{nsgA, intact}, {nsgB, intact}}, "", ""},
		{"missing at apply", false, []nsgView{{nsgA, intact}, {nsgB, none}}, "JIT Policy Not Found", `Policy "web" is not on ` + nsgB + ": no grant"},
		{"missing at plan, held elsewhere", true, []nsgView{{nsgA, none}, {nsgB, intact}}, "", ""},
		{"missing everywhere at plan", true, []nsgView{{nsgA, none}, {nsgB, none}}, "JIT Policy Not Found", "is not on " + nsgB},
		{"malformed", true, []nsgView{{nsgA, intact}, {nsgB, broken}}, "JIT Policy Is Malformed", "does not read back consistently"},
		{"differs", false, []nsgView{{nsgA, intact}, {nsgB, differs}}, "JIT Policy Differs Between NSGs",
			`Policy "web" on ` + nsgB + " differs from the same policy on " + nsgA},
		{"differs from the first NSG of the id, even one without it at plan", true,
			[]nsgView{{nsgC, none}, {nsgA, intact}, {nsgB, differs}}, "JIT Policy Differs Between NSGs", "same policy on " + nsgC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewGrantPolicyCheck("web", tc.planning)
			var got Notice
			refused := false
			for _, n := range tc.nsgs {
				if got, refused = c.Add(n.id, n.view); refused {
					break
				}
			}
			if !refused {
				var found Policy
				var ok bool
				if found, got, ok = c.Policy(); ok {
					if tc.summary != "" || !found.Equal(p) {
						t.Fatalf("found %+v, want %q", found, tc.summary)
					}
					return
				}
			}
			if got.Summary != tc.summary || !strings.Contains(got.Detail, tc.detail) || got.Severity != Error || got.Attribute != "policy_id" {
				t.Fatalf("%+v, want %q with %q on policy_id", got, tc.summary, tc.detail)
			}
		})
	}
}

func TestOpenDecisionRefused(t *testing.T) {
	exp := changeNow.Add(time.Hour)
	for _, tc := range []struct {
		name   string
		d      OpenDecision
		status GrantState
		ends   time.Time
	}{
		{"closed before its window ended", OpenDecision{Action: OpenRefuse, ExpiresAt: exp}, GrantClosed, exp},
		{"window over", OpenDecision{Action: OpenRefuse, ExpiresAt: changeNow}, GrantExpired, changeNow},
		{"half open: revoked", OpenDecision{Action: OpenRefuse, ExpiresAt: exp, CloseRemains: true}, GrantRevoked, exp},
		{"no window to tell: ends now", OpenDecision{Action: OpenRefuse}, GrantExpired, changeNow},
	} {
		if status, ends := tc.d.Refused(changeNow); status != tc.status || !ends.Equal(tc.ends) {
			t.Errorf("%s: %s until %s, want %s until %s", tc.name, status, ends, tc.status, tc.ends)
		}
	}
}

func TestOpenDecisionNotice(t *testing.T) {
	adopt := OpenDecision{Action: OpenAdopt, Reason: "open until T"}
	refuse := OpenDecision{Action: OpenRefuse, Reason: "ended"}
	for _, tc := range []struct {
		d        OpenDecision
		planning bool
		want     string
	}{
		{adopt, true, "Applying opens nothing new: open until T. The window is not extended."},
		{adopt, false, "Nothing was written: open until T. The window is not extended."},
		{refuse, true, "Applying opens nothing: ended. The grant is recorded as ended. Remove this block; to ask again, open a new request (another justification or approval reference)."},
		{refuse, false, "Nothing was opened: ended. Remove this block; to ask again, open a new request (another justification or approval reference)."},
	} {
		if n, ok := tc.d.Notice(tc.planning); !ok || n.Detail != tc.want || n.Severity != Warning {
			t.Errorf("Notice(%v) = %+v, want %q", tc.planning, n, tc.want)
		}
	}
	if _, ok := (OpenDecision{Action: OpenNew}).Notice(true); ok {
		t.Error("a notice for a new window")
	}
}

// A rule edited in place makes a grant that has not ended revoked; one that
// has ended stays as it ended.
func TestObserveGrant(t *testing.T) {
	p := changePolicy(t)
	g := changeGrant(t, p, "g1", 106, time.Hour)
	sight := func(rules ...SecurityRule) []GrantSighting {
		return []GrantSighting{SightGrant(nsgA, ReadNSG(append(p.Rules(), rules...)), p.Name, g.ID)}
	}
	if status, why := ObserveGrant(GrantActive, g.ExpiresAt, sight(g.Rule), g.Rule, changeNow); status != GrantActive || why != "" {
		t.Fatalf("intact: %s %q", status, why)
	}
	status, why := ObserveGrant(GrantActive, g.ExpiresAt, sight(tampered(g)), g.Rule, changeNow)
	if status != GrantRevoked || why == "" {
		t.Fatalf("tampered: %s %q, want revoked with why", status, why)
	}
	if reason := DriftReason(status, sight(tampered(g)), why); !strings.HasPrefix(reason, "revoked; 1 of 1 rules still open; tampered: on "+nsgA) {
		t.Fatalf("DriftReason = %q", reason)
	}
	if status, _ := ObserveGrant(GrantExpired, g.ExpiresAt, sight(tampered(g)), g.Rule, changeNow); status != GrantExpired {
		t.Fatalf("an ended grant tampered afterwards: %s, want it to stay expired", status)
	}
	if status, _ := ObserveGrant(GrantActive, g.ExpiresAt, sight(), g.Rule, changeNow); status != GrantRevoked {
		t.Fatalf("rule deleted early: %s, want revoked", status)
	}
	if AnyOpen(sight()) || !AnyOpen(sight(tampered(g))) {
		t.Fatal("AnyOpen: a tampered rule is open, a deleted one is not")
	}
}

func TestEndedGrantNotice(t *testing.T) {
	base := EndedGrant{Status: GrantExpired, GrantID: "g1", Source: "203.0.113.7", ExpiresAt: "2026-11-30T13:00:00Z", Recorded: true}
	n := base.Notice()
	want := "Access grant g1 for 203.0.113.7 expired at 2026-11-30T13:00:00Z. Remove this block; to ask again, open a new request.\n\n" +
		"This grant will not open again: nothing in a plan re-opens an expired, revoked or closed grant."
	if n.Summary != "Access Grant Expired" || n.Detail != want || n.Severity != Warning {
		t.Fatalf("expired: %+v", n)
	}
	revoked := base
	revoked.Status, revoked.Open, revoked.Recorded = GrantRevoked, true, false
	n = revoked.Notice()
	if n.Summary != "Access Grant Revoked" || !strings.Contains(n.Detail, "was revoked before its expiry (2026-11-30T13:00:00Z)") ||
		!strings.HasSuffix(n.Detail, "this apply deletes it.\n\nThe NSGs do not all record that this grant ended; this apply writes the records.") {
		t.Fatalf("revoked, open, unrecorded: %+v", n)
	}
	closed := base
	closed.Status = GrantClosed
	if n := closed.Notice(); n.Summary != "Access Grant Closed" || !strings.Contains(n.Detail, "was closed before its expiry") {
		t.Fatalf("closed: %+v", n)
	}
}

func TestGrantImportNotice(t *testing.T) {
	p := changePolicy(t)
	g := changeGrant(t, p, "g1", 106, time.Hour)
	sightTampered := []GrantSighting{SightGrant(nsgA, ReadNSG(append(p.Rules(), tampered(g))), p.Name, g.ID)}
	if n := GrantImportNotice(p.Name, g.ID, sightTampered, list(nsgA)); n.Summary != "Access Grant Tampered" ||
		!strings.HasPrefix(n.Detail, "Rule jit-web-g-g1 cannot be imported: it is not as its grant wrote it, on "+nsgA) {
		t.Fatalf("tampered: %+v", n)
	}
	sightNone := []GrantSighting{SightGrant(nsgA, ReadNSG(p.Rules()), p.Name, g.ID), SightGrant(nsgB, ReadNSG(p.Rules()), p.Name, g.ID)}
	if n := GrantImportNotice(p.Name, g.ID, sightNone, list(nsgA, nsgB)); n.Summary != "Access Grant Not Found" ||
		n.Detail != "Neither rule jit-web-g-g1 nor a record of it was found on "+nsgA+", "+nsgB+"." {
		t.Fatalf("not found: %+v", n)
	}
}

func TestGrantRulePolicy(t *testing.T) {
	if got := GrantRulePolicy(GrantRuleName("web-ssh", "abc123"), "abc123"); got != "web-ssh" {
		t.Fatalf("GrantRulePolicy = %q", got)
	}
}

func TestFullRangeDetail(t *testing.T) {
	p := changePolicy(t)
	g := changeGrant(t, p, "g1", 106, time.Hour)
	got := p.FullRangeDetail(nsgA, append(p.Rules(), g.Rule))
	want := `The grant range 106–193 of policy "web" (band 100-199) on ` + nsgA + " is full: every priority is taken. Grants holding it:\n" +
		"  - g1 by alice@example.com, until 2026-11-30T13:00:00Z\n\nWait for grants to expire, or widen the policy's priority_band."
	if got != want {
		t.Fatalf("FullRangeDetail =\n%s\nwant\n%s", got, want)
	}
}

func TestNewWindow(t *testing.T) {
	now := time.Date(2026, 11, 30, 13, 0, 0, 999_000_000, time.FixedZone("CET", 3600))
	start, end := NewWindow(now, 30*time.Minute)
	if want := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC); !start.Equal(want) || start.Location() != time.UTC || !end.Equal(want.Add(30*time.Minute)) {
		t.Fatalf("NewWindow = %s – %s, want from %s, whole seconds, UTC", start, end, want)
	}
}
