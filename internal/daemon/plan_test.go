package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

var planNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testPolicy(t *testing.T, name string, bandStart int64) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{
		Name:                name,
		DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources:      []string{"203.0.113.0/24"},
		Ports:               []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}, {Number: 3389, Protocol: "Tcp", MaxDuration: "1h"}},
		BandStart:           bandStart,
		BandEnd:             bandStart + 99,
	})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// grantRule is the rule the provider writes for a grant of port 22 from
// 203.0.113.7 expiring at exp.
func grantRule(t *testing.T, p jit.Policy, id string, exp time.Time) jit.SecurityRule {
	t.Helper()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.7", Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	lo, _ := p.Band.GrantRange()
	return p.GrantRule(id, spec, exp, lo+int32(len(id)))
}

func TestPlanNSG(t *testing.T) {
	web := testPolicy(t, "web", 100)
	base := web.Rules()
	active := grantRule(t, web, "a1", planNow.Add(time.Hour))
	with := func(extra ...jit.SecurityRule) []jit.SecurityRule { return append(slices.Clone(base), extra...) }
	// edited is a grant rule changed in place after it was written (its
	// seal no longer matches); modified is one written that way (sealed
	// again), as by an earlier policy or a grant that no longer fits it.
	edited := func(r jit.SecurityRule, mod func(*jit.SecurityRule)) jit.SecurityRule {
		r.SourcePrefixes = slices.Clone(r.SourcePrefixes)
		r.DestinationPrefixes = slices.Clone(r.DestinationPrefixes)
		r.DestinationPorts = slices.Clone(r.DestinationPorts)
		mod(&r)
		return r
	}
	modified := func(r jit.SecurityRule, mod func(*jit.SecurityRule)) jit.SecurityRule {
		return jit.SealGrantRule(edited(r, mod))
	}
	withoutDeny := func() []jit.SecurityRule {
		var out []jit.SecurityRule
		for _, r := range base {
			if !strings.Contains(r.Name, "-deny-") {
				out = append(out, r)
			}
		}
		return out
	}
	foreignBypass := jit.SecurityRule{Name: "allow-ssh-anywhere", Priority: 90, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}

	tests := []struct {
		name         string
		rules        []jit.SecurityRule
		closes       map[string]Reason // rule name → reason
		findings     []string          // "kind rule-or-policy"
		active       int
		nextExpiryIn time.Duration // 0: none
	}{
		{name: "active grant stays open and arms the timer", rules: with(active),
			active: 1, nextExpiryIn: time.Hour},
		{name: "expired at exactly now", rules: with(grantRule(t, web, "e1", planNow)),
			closes: map[string]Reason{"jit-web-g-e1": ReasonExpired}},
		{name: "expired long ago", rules: with(grantRule(t, web, "e2", planNow.Add(-48*time.Hour))),
			closes: map[string]Reason{"jit-web-g-e2": ReasonExpired}},
		{name: "earliest of several expiries", rules: with(active, grantRule(t, web, "b22", planNow.Add(10*time.Minute))),
			active: 2, nextExpiryIn: 10 * time.Minute},
		{name: "malformed description", rules: with(modified(active, func(r *jit.SecurityRule) { r.Description = "jit:v1 role=grant id=a1 exp=soon by=alice" })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonMalformed}},
		{name: "description of another grant", rules: with(modified(active, func(r *jit.SecurityRule) { r.Description = strings.Replace(r.Description, "id=a1", "id=zz", 1) })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonMalformed}},
		{name: "unknown format version", rules: with(modified(active, func(r *jit.SecurityRule) { r.Description = strings.Replace(r.Description, "jit:v1", "jit:v2", 1) })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonUnknownVersion}},
		{name: "expiry beyond the policy maximum", rules: with(grantRule(t, web, "o1", planNow.Add(5*time.Hour))),
			closes: map[string]Reason{"jit-web-g-o1": ReasonOverMax}},
		{name: "expiry beyond the tighter maximum of one of its ports", rules: with(modified(grantRule(t, web, "o2", planNow.Add(2*time.Hour)), func(r *jit.SecurityRule) {
			r.DestinationPorts = []string{"22", "3389"}
		})), closes: map[string]Reason{"jit-web-g-o2": ReasonOverMax}},
		{name: "expiry at the maximum plus clock skew stays", rules: with(grantRule(t, web, "s1", planNow.Add(3*time.Hour+ClockSkew))),
			active: 1, nextExpiryIn: 3*time.Hour + ClockSkew},
		{name: "source edited in place, still an allowed address", rules: with(edited(active, func(r *jit.SecurityRule) { r.SourcePrefixes = []string{"203.0.113.99"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonTampered}},
		{name: "expiry edited in place, within the maximum", rules: with(edited(active, func(r *jit.SecurityRule) {
			r.Description = strings.Replace(r.Description, fmt.Sprintf("exp=%d", planNow.Add(time.Hour).Unix()), fmt.Sprintf("exp=%d", planNow.Add(2*time.Hour).Unix()), 1)
		})), closes: map[string]Reason{"jit-web-g-a1": ReasonTampered}},
		{name: "source outside the allowed sources", rules: with(modified(active, func(r *jit.SecurityRule) { r.SourcePrefixes = []string{"198.51.100.7"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonSourceNotAllowed}},
		{name: "source anywhere", rules: with(modified(active, func(r *jit.SecurityRule) { r.SourcePrefixes = []string{"*"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonSourceNotAllowed}},
		{name: "two sources", rules: with(modified(active, func(r *jit.SecurityRule) { r.SourcePrefixes = []string{"203.0.113.7", "198.51.100.7"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonSourceNotAllowed}},
		{name: "port the policy does not protect", rules: with(modified(active, func(r *jit.SecurityRule) { r.DestinationPorts = []string{"443"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonOutsidePolicy}},
		{name: "port range", rules: with(modified(active, func(r *jit.SecurityRule) { r.DestinationPorts = []string{"1-65535"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonOutsidePolicy}},
		{name: "protocol the policy does not protect", rules: with(modified(active, func(r *jit.SecurityRule) { r.Protocol = jit.ProtocolUDP })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonOutsidePolicy}},
		{name: "destination the policy does not protect", rules: with(modified(active, func(r *jit.SecurityRule) { r.DestinationPrefixes = []string{"*"} })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonOutsidePolicy}},
		{name: "priority outside the grant range", rules: with(modified(active, func(r *jit.SecurityRule) { r.Priority = 90 })),
			closes: map[string]Reason{"jit-web-g-a1": ReasonOutsideRange}},
		{name: "orphan: the policy is not on the NSG", rules: []jit.SecurityRule{active},
			closes: map[string]Reason{"jit-web-g-a1": ReasonOrphan}},
		{name: "expired orphan is closed as expired", rules: []jit.SecurityRule{grantRule(t, web, "e3", planNow.Add(-time.Minute))},
			closes: map[string]Reason{"jit-web-g-e3": ReasonExpired}},
		{name: "missing deny-all rules: reported, restored from the guards, the grant stays", rules: append(withoutDeny(), active),
			active: 1, nextExpiryIn: time.Hour, findings: []string{"missing_deny web"}},
		{name: "one deny-all rule missing", rules: func() []jit.SecurityRule {
			rs := slices.DeleteFunc(with(active), func(r jit.SecurityRule) bool { return r.Name == "jit-web-deny-tcp" })
			return rs
		}(), active: 1, nextExpiryIn: time.Hour, findings: []string{"missing_deny web"}},
		{name: "tampered deny-all rule is reported, never deleted", rules: func() []jit.SecurityRule {
			rs := with(active)
			for i, r := range rs {
				if r.Name == "jit-web-deny-tcp" {
					rs[i] = modified(r, func(r *jit.SecurityRule) { r.Priority-- })
				}
			}
			return rs
		}(), closes: map[string]Reason{"jit-web-g-a1": ReasonPolicyMalformed}, findings: []string{"malformed_policy web"}},
		{name: "deny-all rule turned into an allow is closed", rules: func() []jit.SecurityRule {
			rs := with()
			for i, r := range rs {
				if r.Name == "jit-web-deny-tcp" {
					rs[i] = modified(r, func(r *jit.SecurityRule) { r.Access = jit.Allow })
				}
			}
			return rs
		}(), closes: map[string]Reason{"jit-web-deny-tcp": ReasonMalformed}, findings: []string{"missing_deny web"}},
		{name: "allow rule in the namespace with a name no grant has", rules: with(modified(active, func(r *jit.SecurityRule) { r.Name = "jit-web-backdoor" })),
			closes: map[string]Reason{"jit-web-backdoor": ReasonMalformed}},
		{name: "stray deny rule in the namespace is reported, not deleted", rules: with(jit.SecurityRule{Name: "jit-stray", Priority: 4000,
			Direction: jit.Inbound, Access: jit.Deny, Protocol: jit.ProtocolAny, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
			DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"*"}}),
			findings: []string{"malformed_rule jit-stray"}},
		{name: "foreign bypass is reported and left alone", rules: with(active, foreignBypass),
			active: 1, nextExpiryIn: time.Hour, findings: []string{"bypass allow-ssh-anywhere"}},
		{name: "foreign rules that do not bypass are ignored", rules: with(modified(foreignBypass, func(r *jit.SecurityRule) {
			r.Name, r.Priority, r.Description = "allow-https", 90, "jit:v1 role=grant id=x exp=1 by=y"
			r.DestinationPorts = []string{"443"}
		}))},
		{name: "grants of two policies judged each by its own", rules: func() []jit.SecurityRule {
			db := testPolicy(t, "db", 300)
			return append(with(active), append(db.Rules(), grantRule(t, db, "d1", planNow.Add(-time.Second)))...)
		}(), active: 1, nextExpiryIn: time.Hour, closes: map[string]Reason{"jit-db-g-d1": ReasonExpired}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanNSG("nsg-1", tc.rules, planNow, PlanOptions{Restore: true})

			got := map[string]Reason{}
			for _, c := range plan.Closes {
				got[c.Rule.Name] = c.Reason
				if !strings.HasPrefix(c.Rule.Name, jit.RuleNamePrefix) || !strings.EqualFold(string(c.Rule.Access), "Allow") {
					t.Errorf("plan closes %s (access %s): only Allow rules in the jit- namespace may be deleted", c.Rule.Name, c.Rule.Access)
				}
				if c.Reason != ReasonExpired && c.Detail == "" {
					t.Errorf("close of %s for %s has no detail", c.Rule.Name, c.Reason)
				}
			}
			want := tc.closes
			if want == nil {
				want = map[string]Reason{}
			}
			if !mapsEqual(got, want) {
				t.Errorf("closes = %v, want %v", got, want)
				for _, c := range plan.Closes {
					t.Logf("  %s: %s", c.Rule.Name, c.Detail)
				}
			}

			var findings []string
			for _, f := range plan.Findings {
				subject := f.RuleName
				if subject == "" {
					subject = f.Policy
				}
				findings = append(findings, string(f.Kind)+" "+subject)
				if f.Detail == "" {
					t.Errorf("finding %s %s has no detail", f.Kind, subject)
				}
			}
			if !slices.Equal(findings, tc.findings) {
				t.Errorf("findings = %q, want %q", findings, tc.findings)
				for _, f := range plan.Findings {
					t.Logf("  %s: %s", f.Kind, f.Detail)
				}
			}

			if len(plan.Active) != tc.active {
				t.Errorf("active grants = %d, want %d", len(plan.Active), tc.active)
			}
			var wantNext time.Time
			if tc.nextExpiryIn != 0 {
				wantNext = planNow.Add(tc.nextExpiryIn)
			}
			if !plan.NextExpiry.Equal(wantNext) {
				t.Errorf("next expiry = %v, want %v", plan.NextExpiry, wantNext)
			}
		})
	}
}

func TestPlanNSGIsPure(t *testing.T) {
	web := testPolicy(t, "web", 100)
	rules := append(web.Rules(), grantRule(t, web, "a1", planNow.Add(time.Minute)))
	before := slices.Clone(rules)
	if got := PlanNSG("n", rules, planNow, PlanOptions{}); len(got.Closes) != 0 {
		t.Fatalf("a grant a minute before expiry was closed: %+v", got.Closes)
	}
	if got := PlanNSG("n", rules, planNow.Add(time.Minute), PlanOptions{}); len(got.Closes) != 1 || got.Closes[0].Reason != ReasonExpired {
		t.Fatalf("the same rules a minute later: closes = %+v, want the grant closed as expired", got.Closes)
	}
	if !slices.EqualFunc(rules, before, func(a, b jit.SecurityRule) bool { return a.Name == b.Name && a.Description == b.Description }) {
		t.Fatal("PlanNSG modified its input")
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// twoGroupPolicy protects 22/Tcp and 53/Udp, so that one group's deny-all
// can be rebuilt from its remaining rules and the other group's.
func twoGroupPolicy(t *testing.T) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}, {Number: 53, Protocol: "Udp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanNSGRestores(t *testing.T) {
	web := testPolicy(t, "web", 100)
	two := twoGroupPolicy(t)
	active := grantRule(t, web, "a1", planNow.Add(time.Hour))
	drop := func(rules []jit.SecurityRule, names ...string) []jit.SecurityRule {
		return slices.DeleteFunc(slices.Clone(rules), func(r jit.SecurityRule) bool { return slices.Contains(names, r.Name) })
	}
	seen := func(ps ...jit.Policy) map[string]jit.Policy {
		m := map[string]jit.Policy{}
		for _, p := range ps {
			m[p.Name] = p
		}
		return m
	}
	tests := []struct {
		name     string
		rules    []jit.SecurityRule
		opts     PlanOptions
		restore  []string // rules restored
		source   jit.RestoreSource
		closes   []string
		findings []string // "kind subject"
		detail   string   // in the first finding's detail
		lastSeen []string // policies remembered afterwards
	}{
		{name: "deny-all deleted, last seen: restored, the grant stays", rules: drop(append(web.Rules(), active), "jit-web-deny-tcp"),
			opts: PlanOptions{Restore: true, LastSeen: seen(web)}, restore: []string{"jit-web-deny-tcp"}, source: jit.RestoreFromLastSeen,
			findings: []string{"missing_deny web"}, detail: "jitd restores jit-web-deny-tcp from the policy as last seen intact", lastSeen: []string{"web"}},
		{name: "restores off: reported, the grant fails closed", rules: drop(append(web.Rules(), active), "jit-web-deny-tcp"),
			opts: PlanOptions{LastSeen: seen(web)}, closes: []string{"jit-web-g-a1"}, findings: []string{"missing_deny web"}, lastSeen: []string{"web"}},
		{name: "never seen, rebuilt from the remaining rules", rules: drop(two.Rules(), "jit-web-guard-udp"),
			opts: PlanOptions{Restore: true}, restore: []string{"jit-web-guard-udp"}, source: jit.RestoreFromRules,
			findings: []string{"malformed_policy web"}, detail: "from the policy's remaining rules", lastSeen: []string{"web"}},
		{name: "never seen, the deny-all rebuilt from its guard, the grant stays", rules: drop(append(web.Rules(), active), "jit-web-deny-tcp"),
			opts: PlanOptions{Restore: true}, restore: []string{"jit-web-deny-tcp"}, source: jit.RestoreFromRules,
			findings: []string{"missing_deny web"}, detail: "from the policy's remaining rules", lastSeen: []string{"web"}},
		{name: "never seen, nothing to rebuild the allowed sources from", rules: drop(append(web.Rules(), active), "jit-web-guard-tcp"),
			opts: PlanOptions{Restore: true}, closes: []string{"jit-web-g-a1"}, findings: []string{"malformed_policy web"},
			detail: "not restored: every IPv4 guard rule is gone"},
		{name: "guard deleted", rules: drop(two.Rules(), "jit-web-guard-tcp"), opts: PlanOptions{Restore: true, LastSeen: seen(two)},
			restore: []string{"jit-web-guard-tcp"}, source: jit.RestoreFromLastSeen, findings: []string{"malformed_policy web"}, lastSeen: []string{"web"}},
		{name: "deny-all turned into an allow: closed, then restored", rules: func() []jit.SecurityRule {
			rs := web.Rules()
			for i := range rs {
				if rs[i].Name == "jit-web-deny-tcp" {
					rs[i].Access = jit.Allow
				}
			}
			return rs
		}(), opts: PlanOptions{Restore: true, LastSeen: seen(web)}, closes: []string{"jit-web-deny-tcp"},
			restore: []string{"jit-web-deny-tcp"}, source: jit.RestoreFromLastSeen, findings: []string{"missing_deny web"}, lastSeen: []string{"web"}},
		{name: "tampered, not partial: reported, remembered as last seen", rules: func() []jit.SecurityRule {
			rs := drop(two.Rules(), "jit-web-deny-udp")
			for i := range rs {
				if rs[i].Name == "jit-web-guard-tcp" {
					rs[i].SourcePrefixes = []string{"0.0.0.0/1"}
				}
			}
			return rs
		}(), opts: PlanOptions{Restore: true, LastSeen: seen(two)}, findings: []string{"malformed_policy web"},
			detail: "not restored: the remaining rules are not those of the policy last seen intact", lastSeen: []string{"web"}},
		{name: "every rule gone: reported once, forgotten", rules: []jit.SecurityRule{active},
			opts: PlanOptions{Restore: true, LastSeen: seen(web)}, closes: []string{"jit-web-g-a1"}, findings: []string{"policy_missing web"}},
		{name: "a slot held by a foreign rule: not restored", rules: append(drop(web.Rules(), "jit-web-deny-tcp"),
			jit.SecurityRule{Name: "late", Priority: 199, Direction: jit.Inbound, Access: jit.Deny, Protocol: jit.ProtocolAny,
				SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"443"}}),
			opts: PlanOptions{Restore: true, LastSeen: seen(web)}, findings: []string{"missing_deny web"}, detail: "priority 199 is held by rule \"late\"",
			lastSeen: []string{"web"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanNSG("nsg-1", tc.rules, planNow, tc.opts)
			var restored []string
			for _, r := range plan.Restores {
				restored = append(restored, ruleNames(r.Rules)...)
				if r.Source != tc.source {
					t.Errorf("restore source = %s, want %s", r.Source, tc.source)
				}
				for _, rule := range r.Rules {
					if !strings.HasPrefix(rule.Name, jit.RuleNamePrefix+r.Policy.Name+"-") || isAllow(rule) {
						t.Errorf("restore writes %+v, not a guard or deny-all rule of %s", rule, r.Policy.Name)
					}
				}
			}
			if !slices.Equal(restored, tc.restore) {
				t.Errorf("restored = %q, want %q", restored, tc.restore)
			}
			var closes []string
			for _, c := range plan.Closes {
				closes = append(closes, c.Rule.Name)
			}
			if !slices.Equal(closes, tc.closes) {
				t.Errorf("closes = %q, want %q", closes, tc.closes)
			}
			var findings []string
			for _, f := range plan.Findings {
				findings = append(findings, string(f.Kind)+" "+cmpOr(f.RuleName, f.Policy))
			}
			if !slices.Equal(findings, tc.findings) {
				t.Errorf("findings = %q, want %q", findings, tc.findings)
			}
			if tc.detail != "" && (len(plan.Findings) == 0 || !strings.Contains(plan.Findings[0].Detail, tc.detail)) {
				t.Errorf("findings %+v, want the first to say %q", plan.Findings, tc.detail)
			}
			if got := sortedKeys(plan.LastSeen); !slices.Equal(got, tc.lastSeen) && (len(got) != 0 || len(tc.lastSeen) != 0) {
				t.Errorf("last seen afterwards = %q, want %q", got, tc.lastSeen)
			}
		})
	}
}

func TestPlanNSGStandingAccess(t *testing.T) {
	web := testPolicy(t, "web", 100)
	vpn := func(name string, prio int32) jit.SecurityRule {
		return jit.SecurityRule{Name: name, Priority: prio, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"203.0.113.0/25"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"10.0.1.4"}, DestinationPorts: []string{"22"}}
	}
	for _, tc := range []struct {
		rule jit.SecurityRule
		want []string
	}{
		{vpn("vpn-above", 90), []string{"standing_access vpn-above"}},
		{vpn("vpn-inside", 150), []string{"standing_access vpn-inside"}},
		{vpn("vpn-below", 300), nil},
	} {
		plan := PlanNSG("nsg-1", append(web.Rules(), tc.rule), planNow, PlanOptions{Restore: true})
		var got []string
		for _, f := range plan.Findings {
			got = append(got, string(f.Kind)+" "+f.RuleName)
			if f.Kind == FindingStandingAccess && (f.Policy != "web" || !strings.Contains(f.Detail, "22/Tcp") || !strings.Contains(f.Detail, "203.0.113.0/25")) {
				t.Errorf("%s: finding %+v lacks policy, port or sources", tc.rule.Name, f)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: findings = %q, want %q", tc.rule.Name, got, tc.want)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// A policy that ends live sessions at expiry on an NSG whose
// flushConnection is off is reported; read on, or not read, it is not.
func TestPlanNSGReportsSessionsNotEnded(t *testing.T) {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}},
		BandStart: 100, BandEnd: 199, EndSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	for _, tc := range []struct {
		flush *bool
		want  []string
	}{
		{&off, []string{"sessions_not_ended web"}},
		{&on, nil},
		{nil, nil},
	} {
		plan := PlanNSG("nsg-1", p.Rules(), planNow, PlanOptions{FlushConnection: tc.flush})
		var got []string
		for _, f := range plan.Findings {
			got = append(got, string(f.Kind)+" "+f.Policy)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("flush %v: findings %q, want %q", tc.flush, got, tc.want)
		}
	}
}

// jitd reads flushConnection where a policy ends sessions, and reports it
// off.
func TestPassReportsSessionsNotEnded(t *testing.T) {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}},
		BandStart: 100, BandEnd: 199, EndSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	az := newFakeAzure()
	az.put("nsg-a", p.Rules()...)
	d, sink := newTestDaemon(t, az, Options{})
	d.Pass(t.Context())
	if !slices.ContainsFunc(sink.all(), func(e audit.Event) bool { return e.Kind == string(FindingSessionsNotEnded) }) {
		t.Errorf("no sessions_not_ended finding audited: %+v", sink.all())
	}
	az.flush["nsg-a"] = true
	az.put("nsg-b", p.Rules()...)
	az.flush["nsg-b"] = true
	before := len(sink.all())
	d.Pass(t.Context())
	for _, e := range sink.all()[before:] {
		if e.Kind == string(FindingSessionsNotEnded) {
			t.Errorf("finding with flushConnection on: %+v", e)
		}
	}
}

// Security admin rules that decide a protected port before the policy are
// findings; jitd reads them at most once per full resync interval.
func TestPassReportsAdminOverrides(t *testing.T) {
	p := webPorts(t, 22)
	az := newFakeAzure()
	az.put("nsg-a", p.Rules()...)
	az.put("nsg-none") // no policy: its admin rules are never read
	az.admin = map[string][]jit.AdminRule{"nsg-a": {{Name: "always-ssh", Priority: 10, Access: jit.AdminAlwaysAllow,
		Direction: jit.Inbound, Protocol: "Tcp", Sources: []string{"*"}, DestinationPorts: []string{"22"}}}}
	d, sink := newTestDaemon(t, az, Options{})
	d.Pass(t.Context())
	d.Pass(t.Context())
	var found []audit.Event
	for _, e := range sink.all() {
		if e.Kind == string(FindingAdminOverride) {
			found = append(found, e)
		}
	}
	if len(found) != 1 || !strings.Contains(found[0].Reason, "always-ssh") || found[0].Policy != "web" {
		t.Errorf("admin override findings %+v, want one about always-ssh on policy web", found)
	}
	if az.adminReads != 1 {
		t.Errorf("admin rules read %d times over two passes within the interval, want 1 (and never for nsg-none)", az.adminReads)
	}
}
