package daemon

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const (
	statusNSG1 = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/networkSecurityGroups/web-nsg"
	statusNSG2 = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/networkSecurityGroups/db-nsg"
)

// requesterGrant is a grant of port 22 from source for requester.
func requesterGrant(t *testing.T, p jit.Policy, id, source, requester string, exp time.Time, priorityOffset int32) jit.SecurityRule {
	t.Helper()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: source, Duration: "1h", Requester: requester})
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	lo, _ := p.Band.GrantRange()
	return p.GrantRule(id, spec, exp, lo+priorityOffset)
}

func findPolicy(t *testing.T, st Status, name, nsg string) PolicyOnNSG {
	t.Helper()
	for _, p := range st.Policies {
		if p.Name != name {
			continue
		}
		for _, n := range p.NSGs {
			if n.NSGID == nsg {
				return n
			}
		}
	}
	t.Fatalf("policy %s on %s not in status %+v", name, nsg, st.Policies)
	return PolicyOnNSG{}
}

func findingKindsOf(st Status) []string {
	var out []string
	for _, f := range st.Findings {
		out = append(out, f.Kind+" "+f.Policy+" "+f.Rule)
	}
	return out
}

func TestBuildStatusActiveGrantsPerPort(t *testing.T) {
	web := testPolicy(t, "web", 100)
	rules := append(web.Rules(),
		requesterGrant(t, web, "a1", "203.0.113.7", "alice@example.com", planNow.Add(30*time.Minute), 1),
		requesterGrant(t, web, "b2", "203.0.113.8", "bob@example.com", planNow.Add(10*time.Minute), 2))
	on := true
	st := BuildStatus([]NSGRead{{ID: statusNSG1, Rules: rules, FlushConnection: &on, ReadAt: planNow}}, StatusOptions{Now: planNow, Restore: true})

	if !st.Complete || st.NSGsRead != 1 || st.NSGsInScope != 1 || len(st.Errors) != 0 {
		t.Fatalf("complete=%v read=%d scope=%d errors=%v", st.Complete, st.NSGsRead, st.NSGsInScope, st.Errors)
	}
	if st.NeedsAttention() {
		t.Fatalf("findings on a clean NSG: %v", findingKindsOf(st))
	}
	if st.ActiveGrants != 2 || st.NextExpiry == nil || !st.NextExpiry.Equal(planNow.Add(10*time.Minute)) {
		t.Fatalf("active=%d next=%v", st.ActiveGrants, st.NextExpiry)
	}
	pn := findPolicy(t, st, "web", statusNSG1)
	if pn.State != PolicyIntact || pn.SessionsEnded != SessionsNotEnded {
		t.Fatalf("state=%s sessions=%s", pn.State, pn.SessionsEnded)
	}
	if got := len(pn.Ports); got != 2 || pn.Ports[0].Port != "22/Tcp" || pn.Ports[1].Port != "3389/Tcp" {
		t.Fatalf("ports %+v", pn.Ports)
	}
	g := pn.Ports[0].Grants
	if len(g) != 2 || g[0].ID != "b2" || g[1].ID != "a1" {
		t.Fatalf("grants on 22 (soonest first): %+v", g)
	}
	if g[1].Requester != "alice@example.com" || g[1].Source != "203.0.113.7" || g[1].TimeLeft != 1800 ||
		g[1].OpenedAt != nil || g[1].Closing != "" || !slices.Equal(g[1].Ports, []string{"22/Tcp"}) {
		t.Fatalf("grant a1: %+v", g[1])
	}
	if len(pn.Ports[1].Grants) != 0 || pn.Ports[0].AdminRuleOverrides == nil || len(pn.Ports[0].AdminRuleOverrides) != 0 {
		t.Fatalf("3389 grants %v, admin overrides %v", pn.Ports[1].Grants, pn.Ports[0].AdminRuleOverrides)
	}
}

func TestBuildStatusFindings(t *testing.T) {
	web := testPolicy(t, "web", 100)
	bypass := jit.SecurityRule{Name: "allow-ssh-anywhere", Priority: 90, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	vpn := jit.SecurityRule{Name: "vpn-rdp", Priority: 95, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"203.0.113.0/25"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"3389"}}
	expired := requesterGrant(t, web, "e1", "203.0.113.9", "eve@example.com", planNow.Add(-time.Minute), 3)
	rules := append(web.Rules(), bypass, vpn, expired)
	var noDeny []jit.SecurityRule
	for _, r := range testPolicy(t, "db", 300).Rules() {
		if !strings.Contains(r.Name, "-deny-") {
			noDeny = append(noDeny, r)
		}
	}
	st := BuildStatus([]NSGRead{
		{ID: statusNSG1, Rules: rules, ReadAt: planNow},
		{ID: statusNSG2, Rules: noDeny, ReadAt: planNow},
	}, StatusOptions{Now: planNow, Restore: false})

	got := findingKindsOf(st)
	want := []string{
		"missing_deny db ",
		"bypass web allow-ssh-anywhere",
		"expired web jit-web-g-e1",
		"standing_access web vpn-rdp",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("findings\n got %q\nwant %q", got, want)
	}
	pn := findPolicy(t, st, "web", statusNSG1)
	if b := pn.Ports[0].Bypasses; len(b) != 1 || b[0].Name != "allow-ssh-anywhere" || b[0].Priority != 90 {
		t.Fatalf("bypasses on 22: %+v", b)
	}
	if s := pn.Ports[1].StandingAccess; len(s) != 1 || s[0].Name != "vpn-rdp" {
		t.Fatalf("standing access on 3389: %+v", s)
	}
	if g := pn.Ports[0].Grants; len(g) != 1 || g[0].Closing != string(ReasonExpired) || g[0].TimeLeft != -60 {
		t.Fatalf("expired grant: %+v", g)
	}
	if st.ActiveGrants != 0 || st.NextExpiry != nil {
		t.Fatalf("an expired grant counted as active: %d %v", st.ActiveGrants, st.NextExpiry)
	}
	if db := findPolicy(t, st, "db", statusNSG2); db.State != PolicyPartial || db.Problem == "" || len(db.Ports) != 0 {
		t.Fatalf("db: %+v", db)
	}
}

func TestBuildStatusMissingPolicy(t *testing.T) {
	web := testPolicy(t, "web", 100)
	gone := testPolicy(t, "gone", 300)
	orphan := requesterGrant(t, gone, "o1", "203.0.113.10", "olly@example.com", planNow.Add(time.Hour), 0)
	st := BuildStatus([]NSGRead{{ID: statusNSG1, Rules: append(web.Rules(), orphan), ReadAt: planNow,
		LastSeen: map[string]jit.Policy{"web": web, "gone": gone}}}, StatusOptions{Now: planNow, Restore: true})
	pn := findPolicy(t, st, "gone", statusNSG1)
	if pn.State != PolicyMissing || len(pn.OtherGrants) != 1 || pn.OtherGrants[0].Closing != string(ReasonOrphan) {
		t.Fatalf("missing policy: %+v", pn)
	}
	got := findingKindsOf(st)
	if !slices.Contains(got, "policy_missing gone ") || !slices.Contains(got, "orphan gone jit-gone-g-o1") {
		t.Fatalf("findings %q", got)
	}
}

func TestBuildStatusSessionsAtExpiry(t *testing.T) {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "ends", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}, BandStart: 100, BandEnd: 199, EndSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	for _, tc := range []struct {
		flush   *bool
		want    string
		finding bool
	}{{&on, SessionsEnded, false}, {&off, SessionsNotEnded, true}, {nil, SessionsUnknown, false}} {
		st := BuildStatus([]NSGRead{{ID: statusNSG1, Rules: p.Rules(), FlushConnection: tc.flush}}, StatusOptions{Now: planNow})
		pn := findPolicy(t, st, "ends", statusNSG1)
		if !pn.EndSessions || pn.SessionsEnded != tc.want || st.NeedsAttention() != tc.finding {
			t.Errorf("flush %v: sessions %s (%s), findings %v", tc.flush, pn.SessionsEnded, pn.SessionsDetail, findingKindsOf(st))
		}
	}
}

func TestBuildStatusIncomplete(t *testing.T) {
	web := testPolicy(t, "web", 100)
	st := BuildStatus([]NSGRead{
		{ID: statusNSG1, Rules: web.Rules()},
		{ID: statusNSG2, Err: "403 AuthorizationFailed"},
	}, StatusOptions{Now: planNow})
	if st.Complete || st.NSGsRead != 1 || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "AuthorizationFailed") {
		t.Fatalf("complete=%v read=%d errors=%v", st.Complete, st.NSGsRead, st.Errors)
	}
	st = BuildStatus([]NSGRead{{ID: statusNSG1, Rules: web.Rules()}}, StatusOptions{Now: planNow, InScope: 3})
	if st.Complete || st.NSGsInScope != 3 {
		t.Fatalf("3 in scope, 1 read: complete=%v", st.Complete)
	}
	st = BuildStatus([]NSGRead{{ID: statusNSG1, Rules: web.Rules()}}, StatusOptions{Now: planNow, ScopeErrors: []string{"subscription x: 403"}})
	if st.Complete {
		t.Fatal("a scope error left the status complete")
	}
}

func TestBuildStatusFilters(t *testing.T) {
	web := testPolicy(t, "web", 100)
	db := testPolicy(t, "db", 300)
	reads := []NSGRead{
		{ID: statusNSG1, Rules: append(web.Rules(),
			requesterGrant(t, web, "a1", "203.0.113.7", "alice@example.com", planNow.Add(time.Hour), 1),
			requesterGrant(t, web, "b1", "203.0.113.8", "bob@example.com", planNow.Add(time.Hour), 2))},
		{ID: statusNSG2, Rules: append(db.Rules(),
			requesterGrant(t, db, "a2", "203.0.113.7", "Alice@Example.com", planNow.Add(time.Hour), 1))},
	}
	names := func(st Status) []string {
		var out []string
		for _, p := range st.Policies {
			for _, n := range p.NSGs {
				for _, pt := range n.Ports {
					for _, g := range pt.Grants {
						out = append(out, p.Name+"/"+g.ID)
					}
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		filter StatusFilter
		want   []string
	}{
		{StatusFilter{}, []string{"db/a2", "web/a1", "web/b1"}},
		{StatusFilter{Policy: "WEB"}, []string{"web/a1", "web/b1"}},
		{StatusFilter{Requester: "alice@example.com"}, []string{"db/a2", "web/a1"}},
		{StatusFilter{NSG: "db-nsg"}, []string{"db/a2"}},
		{StatusFilter{NSG: "net/web-nsg"}, []string{"web/a1", "web/b1"}},
		{StatusFilter{NSG: statusNSG2}, []string{"db/a2"}},
		{StatusFilter{NSG: "other/web-nsg"}, nil},
		{StatusFilter{Requester: "nobody"}, nil},
	} {
		st := BuildStatus(reads, StatusOptions{Now: planNow, Filter: tc.filter})
		if got := names(st); !slices.Equal(got, tc.want) {
			t.Errorf("filter %+v: got %v, want %v", tc.filter, got, tc.want)
		}
		if !st.Complete {
			t.Errorf("filter %+v made the status incomplete", tc.filter)
		}
	}
}

// TestBuildStatusJSONShape pins the field names `jitd status --json`
// promises, and that empty lists are [] rather than null.
func TestBuildStatusJSONShape(t *testing.T) {
	web := testPolicy(t, "web", 100)
	st := BuildStatus([]NSGRead{{ID: statusNSG1, Rules: append(web.Rules(),
		requesterGrant(t, web, "a1", "203.0.113.7", "alice@example.com", planNow.Add(time.Hour), 1))}}, StatusOptions{Now: planNow})
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"complete":true`, `"findings":[]`, `"errors":[]`, `"grant_id":"a1"`, `"requester":"alice@example.com"`,
		`"opened_at":null`, `"time_left_seconds":3600`, `"admin_rule_overrides":[]`, `"standing_access":[]`, `"bypasses":[]`,
		`"sessions_ended_at_expiry":"no"`, `"state":"intact"`, `"active_grants":1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
}
