package jit

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// restorePolicy protects TCP 22/3389 and UDP 500 on an IPv4 and an IPv6
// address, for sources of both families: every slot kind is in use.
func restorePolicy(t *testing.T) Policy {
	t.Helper()
	return mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}, {500, "Udp", "30m"}}, BandStart: 100, BandEnd: 199})
}

// without returns the rules whose names contain none of the fragments; a
// fragment ending in "$" must end the name.
func without(rules []SecurityRule, fragments ...string) []SecurityRule {
	return slices.DeleteFunc(slices.Clone(rules), func(r SecurityRule) bool {
		return slices.ContainsFunc(fragments, func(f string) bool {
			if exact, ok := strings.CutSuffix(f, "$"); ok {
				return strings.HasSuffix(r.Name, exact)
			}
			return strings.Contains(r.Name, f)
		})
	})
}

func ruleNames(rules []SecurityRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Name)
	}
	return out
}

func TestPlanRestore(t *testing.T) {
	p := restorePolicy(t)
	all := p.Rules()
	foreign := foreignRules()
	star := mustPolicy(t, PolicyInput{Name: "any", DestinationPrefixes: list("*"), AllowedSources: list("10.8.0.0/16"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 300, BandEnd: 399})
	open := mustPolicy(t, PolicyInput{Name: "open", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("*"),
		Ports: []PortInput{{22, "Tcp", "1h"}, {53, "Udp", "1h"}}, BandStart: 500, BandEnd: 599})
	changed := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "2h"}, {3389, "Tcp", "1h"}, {500, "Udp", "30m"}}, BandStart: 100, BandEnd: 199})
	tampered := func(rules []SecurityRule, name string, mod func(*SecurityRule)) []SecurityRule {
		out := slices.Clone(rules)
		for i := range out {
			if out[i].Name == name {
				out[i].SourcePrefixes = slices.Clone(out[i].SourcePrefixes)
				mod(&out[i])
			}
		}
		return out
	}

	tests := []struct {
		name     string
		policy   Policy // the policy the rules come from
		rules    []SecurityRule
		lastSeen *Policy
		want     []string      // missing rule names restored
		source   RestoreSource // when want is set
		wantErr  string        // substring, when the restore is refused
	}{
		{name: "deny-all deleted, reconstructed", policy: p, rules: without(all, "deny-tcp$"),
			want: list("jit-web-deny-tcp"), source: RestoreFromRules},
		{name: "a group's deny-all rules gone, reconstructed from its guards", policy: p, rules: without(all, "deny-tcp"),
			want: list("jit-web-deny-tcp-v6", "jit-web-deny-tcp"), source: RestoreFromRules},
		{name: "one deny-all deleted, last seen", policy: p, rules: without(all, "deny-tcp-v6"), lastSeen: &p,
			want: list("jit-web-deny-tcp-v6"), source: RestoreFromLastSeen},
		{name: "guard deleted, reconstructed from the other group's guard", policy: p, rules: without(all, "guard-tcp"),
			want: list("jit-web-guard-tcp", "jit-web-guard-tcp-v6"), source: RestoreFromRules},
		{name: "every deny-all gone, reconstructed from the guards", policy: p, rules: without(all, "-deny-"),
			want: list("jit-web-deny-udp-v6", "jit-web-deny-udp", "jit-web-deny-tcp-v6", "jit-web-deny-tcp"), source: RestoreFromRules},
		{name: "a guard whose description disagrees on the durations", policy: p,
			rules:   withDescription(without(all, "-deny-"), "jit-web-guard-tcp", "22:3h", "22:4h"),
			wantErr: "port 22/Tcp has maximum duration"},
		{name: "every deny-all gone, last seen", policy: p, rules: without(all, "-deny-"), lastSeen: &p,
			want: list("jit-web-deny-udp-v6", "jit-web-deny-udp", "jit-web-deny-tcp-v6", "jit-web-deny-tcp"), source: RestoreFromLastSeen},
		{name: "a group's deny-all rules gone, its guards left", policy: p, rules: without(all, "deny-udp"),
			want: list("jit-web-deny-udp-v6", "jit-web-deny-udp"), source: RestoreFromRules},
		{name: "every IPv4 guard gone: allowed sources unknown", policy: p, rules: without(all, "guard-tcp", "guard-udp"),
			wantErr: "every IPv4 guard rule is gone"},
		{name: "every IPv6 rule gone: destinations unknown", policy: p, rules: without(all, "-v6"),
			wantErr: "no IPv6 rule is left"},
		{name: "every IPv6 rule gone, last seen", policy: p, rules: without(all, "-v6"), lastSeen: &p,
			want: list("jit-web-guard-tcp-v6", "jit-web-guard-udp-v6", "jit-web-deny-udp-v6", "jit-web-deny-tcp-v6"), source: RestoreFromLastSeen},
		{name: "tampered guard is never restored around", policy: p, lastSeen: &p,
			rules:   tampered(without(all, "deny-tcp"), "jit-web-guard-udp", func(r *SecurityRule) { r.SourcePrefixes[0] = "0.0.0.0/2" }),
			wantErr: "source prefixes"},
		{name: "deny-all turned into an allow", policy: p, lastSeen: &p,
			rules:   tampered(without(all, "guard-tcp"), "jit-web-deny-tcp", func(r *SecurityRule) { r.Access = Allow }),
			wantErr: "want Deny"},
		{name: "changed since last seen: reconstructed from the rules", policy: changed, rules: without(changed.Rules(), "deny-udp-v6"), lastSeen: &p,
			want: list("jit-web-deny-udp-v6"), source: RestoreFromRules},
		{name: "destination *: one deny-all covers both families", policy: star, rules: without(star.Rules(), "deny-tcp"), lastSeen: &star,
			want: list("jit-any-deny-tcp"), source: RestoreFromLastSeen},
		{name: "destination *, IPv4 guard gone", policy: star, rules: without(star.Rules(), "guard-tcp$"),
			wantErr: "every IPv4 guard rule is gone"},
		{name: "destination *, IPv4 guard gone, last seen", policy: star, rules: without(star.Rules(), "guard-tcp$"), lastSeen: &star,
			want: list("jit-any-guard-tcp"), source: RestoreFromLastSeen},
		{name: "any source: no guards", policy: open, rules: without(open.Rules(), "deny-udp"),
			wantErr: "", want: nil},
		{name: "any source, one group left", policy: open, rules: without(open.Rules(), "deny-tcp"), lastSeen: &open,
			want: list("jit-open-deny-tcp"), source: RestoreFromLastSeen},
		{name: "slot taken by a foreign rule", policy: p, lastSeen: &p,
			rules:   append(without(all, "deny-tcp-v6"), rule("someone-else", 198, Allow, ProtocolTCP, list("*"), list("*"), list("80"), "")),
			wantErr: "priority 198 is held by rule \"someone-else\""},
		{name: "name taken by a foreign rule in other letter case", policy: p, lastSeen: &p,
			rules:   append(without(all, "deny-tcp-v6"), rule("JIT-web-deny-tcp-v6", 4000, Deny, ProtocolTCP, list("*"), list("*"), list("80"), "")),
			wantErr: "has its name"},
		{name: "intact", policy: p, rules: all, lastSeen: &p, wantErr: ErrNothingMissing.Error()},
		{name: "vanished", policy: p, rules: nil, lastSeen: &p, wantErr: ErrNothingLeft.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules := append(slices.Clone(foreign), tc.rules...)
			rules = append(rules, grantRule(tc.policy.Name, "g1", tc.policy.Band.Start+6, 1767225600))
			res, err := PlanRestore(tc.policy.Name, rules, tc.lastSeen)
			if tc.want == nil && tc.wantErr == "" {
				// Any source, a whole group gone: nothing says it existed.
				if !errors.Is(err, ErrNothingMissing) {
					t.Fatalf("err = %v, want ErrNothingMissing (a vanished group is invisible)", err)
				}
				return
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (restoration %+v)", err, tc.wantErr, res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ruleNames(res.Missing); !slices.Equal(got, tc.want) {
				t.Errorf("missing = %q, want %q", got, tc.want)
			}
			if res.Source != tc.source {
				t.Errorf("source = %s, want %s", res.Source, tc.source)
			}
			if !res.Policy.Equal(tc.policy) {
				t.Errorf("policy = %+v, want %+v", res.Policy, tc.policy)
			}
			// Written back, the policy reads back intact.
			dp := ReadNSG(append(rules, res.Missing...)).Policies[tc.policy.Name]
			if dp.Problem != "" || !dp.Policy.Equal(tc.policy) {
				t.Errorf("after the restore the policy reads back as %+v, problem %q", dp.Policy, dp.Problem)
			}
		})
	}
}

// FuzzPlanRestore removes any subset of a random policy's rules. With the
// policy last seen, exactly the removed rules come back (none when nothing
// or everything was removed). Without it, a restoration that succeeds writes
// only removed rules, reads back intact, and is the original policy whenever
// every protocol group and address family kept a rule.
func FuzzPlanRestore(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, uint64(1)<<i)
	}
	f.Add(uint64(9), uint64(0xaaaa))
	f.Fuzz(func(t *testing.T, seed, mask uint64) {
		p, err := NewPolicy(randomPolicyInput(rand.New(rand.NewPCG(seed, seed>>7))))
		if err != nil {
			return
		}
		all := p.Rules()
		var kept, removed []SecurityRule
		for i, r := range all {
			if mask&(1<<(i%64)) != 0 {
				removed = append(removed, r)
			} else {
				kept = append(kept, r)
			}
		}
		// Foreign rules share the NSG, outside the band (a foreign rule on
		// a slot is a refusal, tested above).
		rules := slices.DeleteFunc(foreignRules(), func(r SecurityRule) bool { return p.Band.Contains(r.Priority) })
		rules = append(rules, kept...)

		res, err := PlanRestore(p.Name, rules, &p)
		switch {
		case len(kept) == 0:
			if !errors.Is(err, ErrNothingLeft) {
				t.Fatalf("everything removed: err = %v, want ErrNothingLeft", err)
			}
		case len(removed) == 0:
			if !errors.Is(err, ErrNothingMissing) {
				t.Fatalf("nothing removed: err = %v, want ErrNothingMissing", err)
			}
		case err != nil:
			t.Fatalf("with the policy last seen, removing %q: %v", ruleNames(removed), err)
		case !slices.Equal(ruleNames(res.Missing), ruleNames(removed)) || !res.Policy.Equal(p):
			t.Fatalf("with the policy last seen, removing %q restores %q", ruleNames(removed), ruleNames(res.Missing))
		}

		res, err = PlanRestore(p.Name, rules, nil)
		if err != nil {
			return
		}
		for _, m := range res.Missing {
			if !slices.ContainsFunc(removed, func(r SecurityRule) bool { return r.Name == m.Name && sameRule(r, m) == nil }) {
				t.Fatalf("restores %+v, which is not a removed rule (removed %q)", m, ruleNames(removed))
			}
		}
		dp := ReadNSG(append(rules, res.Missing...)).Policies[p.Name]
		if dp.Problem != "" || !dp.Policy.Equal(res.Policy) {
			t.Fatalf("restored policy reads back as %+v, problem %q", dp.Policy, dp.Problem)
		}
		groups, families := map[protoGroup]bool{}, map[int]bool{}
		for _, r := range kept {
			n, _ := parseRuleName(r.Name)
			groups[n.group], families[n.family] = true, true
		}
		if len(groups) == len(p.groups()) && (p.anyDestination() || len(families) == len(p.families())) && !res.Policy.Equal(p) {
			t.Fatalf("every group and family kept a rule, yet %+v was restored as %+v", p, res.Policy)
		}
	})
}

// The records of ended grants belong to the policy's name but are not its
// guard or deny-all rules: a partial policy with records beside it is
// restored, not refused (found by the lifecycle suite, seeds 1 and 4).
func TestPlanRestoreIgnoresRecordsOfEndedGrants(t *testing.T) {
	p := grantPolicy(t)
	exp := time.Unix(1_800_000_000, 0).UTC()
	grant := ReadNSG(append(p.Rules(), p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), exp, 106))).Grants[0]
	rec, _ := EndedRule(grant, p.Rules())
	var rules []SecurityRule
	var deny SecurityRule
	for _, r := range p.Rules() {
		if strings.HasPrefix(r.Name, "jit-web-ssh-deny-tcp") && deny.Name == "" {
			deny = r
			continue
		}
		rules = append(rules, r)
	}
	rules = append(rules, rec)
	for _, last := range []*Policy{&p, nil} {
		res, err := PlanRestore(p.Name, rules, last)
		if err != nil {
			t.Fatalf("restore with a record beside the policy (last seen %v): %v", last != nil, err)
		}
		if len(res.Missing) != 1 || res.Missing[0].Name != deny.Name {
			t.Errorf("missing %v, want %s", res.Missing, deny.Name)
		}
	}
}

// withDescription replaces old with repl in the description of the rule
// named name.
func withDescription(rules []SecurityRule, name, old, repl string) []SecurityRule {
	out := slices.Clone(rules)
	for i := range out {
		if out[i].Name == name {
			out[i].Description = strings.Replace(out[i].Description, old, repl, 1)
		}
	}
	return out
}

// A policy that ends live sessions keeps the option through a restoration
// from its remaining rules, and rules that disagree about it do not decode.
func TestEndSessionsSurvivesRestoreAndMustAgree(t *testing.T) {
	p, err := NewPolicy(PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199, EndSessions: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := PlanRestore("web", without(p.Rules(), "deny-tcp$"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Policy.EndSessions || !res.Policy.Equal(p) {
		t.Errorf("restored %+v, want %+v", res.Policy, p)
	}
	rules := withDescription(p.Rules(), "jit-web-guard-tcp", " sessions=end", "")
	if dp := ReadNSG(rules).Policies["web"]; dp.Problem == "" {
		t.Errorf("guard without sessions=end beside a deny-all with it read back as %+v, want a problem", dp.Policy)
	}
}
