package jit

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// randomPolicyInput returns a valid policy input drawn from r: both
// families, destination "*" or specific prefixes, any or restricted
// sources, up to five ports of every protocol, any band.
func randomPolicyInput(r *rand.Rand) PolicyInput {
	letters := "abcdefghijklmnopqrstuvwxyz0123456789-"
	name := []byte{byte('a' + r.IntN(26))}
	for range r.IntN(12) {
		c := letters[r.IntN(len(letters))]
		if c == '-' && name[len(name)-1] == '-' {
			continue
		}
		name = append(name, c)
	}
	if name[len(name)-1] == '-' {
		name = append(name, 'z')
	}
	in := PolicyInput{Name: string(name), EndSessions: r.IntN(2) == 0}

	var families []int
	switch r.IntN(4) {
	case 0:
		in.DestinationPrefixes = []string{"*"}
		families = []int{IPv4, IPv6}
	default:
		families = [][]int{{IPv4}, {IPv6}, {IPv4, IPv6}}[r.IntN(3)]
		in.DestinationPrefixes = randomDisjoint(r, families, 1+r.IntN(3))
	}
	if r.IntN(4) == 0 {
		in.AllowedSources = []string{"*"}
	} else {
		in.AllowedSources = randomDisjoint(r, families, 1+r.IntN(4))
		if in.DestinationPrefixes[0] == "*" && r.IntN(3) == 0 {
			in.AllowedSources = randomDisjoint(r, families[:1], 1+r.IntN(3))
		}
	}

	durations := []string{"5m", "15m", "30m", "1h", "1h30m", "3h", "8h", "24h", "2h5m30s"}
	used := map[int64]bool{}
	for range 1 + r.IntN(5) {
		n := int64(1 + r.IntN(65535))
		if r.IntN(2) == 0 {
			n = []int64{22, 3389, 5985, 5986, 443}[r.IntN(5)]
		}
		if used[n] {
			continue
		}
		used[n] = true
		in.Ports = append(in.Ports, PortInput{n, []string{"Tcp", "Udp", "*"}[r.IntN(3)], durations[r.IntN(len(durations))]})
	}
	start := int64(MinPriority + r.IntN(3900))
	in.BandStart, in.BandEnd = start, min(MaxPriority, start+MinBandSize-1+int64(r.IntN(200)))
	return in
}

// randomDisjoint returns n non-overlapping prefixes (as strings) spread
// over the families, each family getting at least one.
func randomDisjoint(r *rand.Rand, families []int, n int) []string {
	var out []netip.Prefix
	for i := 0; len(out) < max(n, len(families)) && i < 100; i++ {
		p := randomPrefix(r, families[len(out)%len(families)])
		if p.Bits() == 0 && r.IntN(2) == 0 {
			continue // whole families are fine, but not every time
		}
		if !slices.ContainsFunc(out, p.Overlaps) {
			out = append(out, p)
		}
	}
	ss := make([]string, len(out))
	for i, p := range out {
		ss[i] = p.String()
	}
	return ss
}

func foreignRules() []SecurityRule {
	return []SecurityRule{
		rule("allow-web", 500, Allow, ProtocolTCP, list("Internet"), list("*"), list("443"), "web"),
		rule("jitter-test", 510, Allow, ProtocolUDP, list("10.0.0.0/8"), list("*"), list("53"), "not ours: no hyphen after jit"),
		{Name: "allow-out", Priority: 100, Direction: Outbound, Access: Allow, Protocol: ProtocolAny,
			SourcePrefixes: list("*"), DestinationPrefixes: list("*"), DestinationPorts: list("*")},
	}
}

func grantRule(policy, id string, prio int32, exp int64) SecurityRule {
	return SealGrantRule(rule(GrantRuleName(policy, id), prio, Allow, ProtocolTCP, list("203.0.113.7"), list("10.0.1.4"), list("22"),
		NewGrantDescription(id, time.Unix(exp, 0), "alice@example.com").String()))
}

func TestReadNSGRoundTrip(t *testing.T) {
	other := mustPolicy(t, PolicyInput{Name: "other", DestinationPrefixes: list("*"), AllowedSources: list("10.0.0.0/8"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 4000, BandEnd: 4096})
	check := func(t *testing.T, p Policy) {
		t.Helper()
		var rules []SecurityRule
		rules = append(rules, foreignRules()...)
		rules = append(rules, grantRule(p.Name, "g1", p.Band.Start+6, 1767225600))
		rules = append(rules, p.Rules()...)
		rules = append(rules, grantRule("other", "zz9", 4010, 1767225601))
		if p.Name != other.Name && !p.Band.Overlaps(other.Band) {
			rules = append(rules, other.Rules()...)
		}
		view := ReadNSG(rules)
		dp, ok := view.Policies[p.Name]
		switch {
		case !ok:
			t.Fatalf("policy %q not found in %+v", p.Name, view)
		case dp.Problem != "":
			t.Fatalf("policy %+v read back with problem: %s", p, dp.Problem)
		case !dp.Policy.Equal(p):
			t.Fatalf("read back\n %+v\nwant\n %+v", dp.Policy, p)
		case !slices.Equal(dp.RuleNames, sortedCopy(p.GuardAndDenyNames())):
			t.Fatalf("RuleNames = %v, want %v", dp.RuleNames, p.GuardAndDenyNames())
		case len(view.Malformed) != 0:
			t.Fatalf("Malformed = %+v", view.Malformed)
		case len(view.Foreign) != 3:
			t.Fatalf("Foreign = %+v", view.Foreign)
		case len(view.Grants) != 2:
			t.Fatalf("Grants = %+v", view.Grants)
		}
		if _, ok := view.Policies["other"]; ok != (p.Name != other.Name && !p.Band.Overlaps(other.Band)) && p.Name != "other" {
			t.Fatalf("other policy presence = %v", ok)
		}
	}

	t.Run("table", func(t *testing.T) {
		for _, in := range []PolicyInput{
			validInput(),
			{Name: "mgmt", DestinationPrefixes: list("2001:db8::4", "10.0.1.0/24"), AllowedSources: list("128.0.0.0/1", "8000::/1"),
				Ports: []PortInput{{3389, "Tcp", "1h"}, {22, "Tcp", "3h"}, {500, "Udp", "10m"}, {5985, "*", "30m"}}, BandStart: 1000, BandEnd: 1012},
			{Name: "rdp", DestinationPrefixes: list("*"), AllowedSources: list("0.0.0.0/2", "192.0.0.0/2"),
				Ports: []PortInput{{3389, "Tcp", "1h30m"}}, BandStart: 300, BandEnd: 399},
			{Name: "v6only", DestinationPrefixes: list("*"), AllowedSources: list("::/0"),
				Ports: []PortInput{{22, "Tcp", "1h"}, {22, "Udp", "2h"}}, BandStart: 300, BandEnd: 399},
			{Name: "dns", DestinationPrefixes: list("*"), AllowedSources: list("*"), Ports: []PortInput{{53, "Udp", "15m"}}, BandStart: 200, BandEnd: 299},
			{Name: "x", DestinationPrefixes: list("10.0.0.4", "fd00::4"), AllowedSources: list("0.0.0.0/0", "fd00::/8"),
				Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 112},
			{Name: "other", DestinationPrefixes: list("10.0.0.4"), AllowedSources: list("10.0.0.0/8"),
				Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 112},
		} {
			check(t, mustPolicy(t, in))
		}
	})
	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 11))
		for range 500 {
			in := randomPolicyInput(r)
			p, err := NewPolicy(in)
			if err != nil {
				t.Fatalf("random input %+v is invalid: %v", in, err)
			}
			check(t, p)
		}
	})
}

func TestReadNSGGrants(t *testing.T) {
	good := grantRule("ssh", "a1", 110, 1767225600)
	view := ReadNSG([]SecurityRule{good})
	want := GrantRule{Policy: "ssh", ID: "a1", Requester: "alice@example.com", ExpiresAt: time.Unix(1767225600, 0).UTC(), Rule: good}
	if len(view.Grants) != 1 || view.Grants[0].Policy != want.Policy || view.Grants[0].ID != want.ID ||
		view.Grants[0].Requester != want.Requester || !view.Grants[0].ExpiresAt.Equal(want.ExpiresAt) || view.Grants[0].Rule.Name != good.Name {
		t.Fatalf("Grants = %+v, want [%+v]", view.Grants, want)
	}

	bad := map[string]func(*SecurityRule){
		"tampered description": func(r *SecurityRule) {
			r.Description = strings.Replace(r.Description, "exp=1767225600", "exp=1767225600 ", 1)
		},
		"description of another grant": func(r *SecurityRule) {
			r.Description = SealGrantRule(SecurityRule{Name: GrantRuleName("ssh", "b2"),
				Description: NewGrantDescription("b2", time.Unix(1, 0), "x").String()}).Description
		},
		"guard description":   func(r *SecurityRule) { r.Description = "jit:v1 role=guard band=100-199" },
		"future version":      func(r *SecurityRule) { r.Description = strings.Replace(r.Description, "jit:v1", "jit:v2", 1) },
		"deny access":         func(r *SecurityRule) { r.Access = Deny },
		"outbound":            func(r *SecurityRule) { r.Direction = Outbound },
		"application groups":  func(r *SecurityRule) { r.UsesApplicationSecurityGroups = true },
		"source port":         func(r *SecurityRule) { r.SourcePorts = list("1024-65535") },
		"no source":           func(r *SecurityRule) { r.SourcePrefixes = nil },
		"over-long":           func(r *SecurityRule) { r.Description += strings.Repeat("x", 100) },
		"policy name invalid": func(r *SecurityRule) { r.Name = "jit-Ssh-g-a1" },
	}
	for name, tamper := range bad {
		r := good
		tamper(&r)
		view := ReadNSG([]SecurityRule{r})
		if len(view.Grants) != 0 || len(view.Malformed) != 1 || view.Malformed[0].Reason == "" {
			t.Errorf("%s: Grants %+v, Malformed %+v; want one malformed rule", name, view.Grants, view.Malformed)
		}
	}
}

func TestReadNSGFailsClosed(t *testing.T) {
	base := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}, {53, "*", "30m"}}, BandStart: 100, BandEnd: 199})
	byName := func(rules []SecurityRule, name string) *SecurityRule {
		for i := range rules {
			if rules[i].Name == name {
				return &rules[i]
			}
		}
		t.Fatalf("no rule %q", name)
		return nil
	}
	tests := []struct {
		name      string
		tamper    func([]SecurityRule) []SecurityRule
		problem   string // in DecodedPolicy.Problem
		malformed bool   // also listed in Malformed
	}{
		// Without its IPv6 guard the rules would otherwise read back as a
		// policy allowing every IPv6 source: the deny-all descriptions say
		// which guards must exist, so the policy is malformed instead.
		{"deleted guard", func(rs []SecurityRule) []SecurityRule {
			return slices.DeleteFunc(rs, func(r SecurityRule) bool { return r.Name == "jit-ssh-guard-tcp-v6" })
		}, `rule "jit-ssh-guard-tcp-v6" is missing`, false},
		{"unknown version", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").Description = "jit:v2 role=guard band=100-199"
			return rs
		}, `version "jit:v2" is not supported`, true},
		{"tampered maximum duration on one family", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp-v6").Description = "jit:v1 role=deny band=100-199 guard=v4,v6 max=22:24h,3389:1h"
			return rs
		}, "port 22/Tcp has maximum duration", false},
		{"tampered maximum duration everywhere", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-any").Description = "jit:v1 role=deny band=100-199 guard=v4 max=25h"
			return rs
		}, "not between 5m and 24h", true},
		{"priority off its slot", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").Priority = 102
			return rs
		}, `rule "jit-ssh-guard-tcp" has priority 102, the policy's encoding says 100`, false},
		{"band mismatch", func(rs []SecurityRule) []SecurityRule {
			r := byName(rs, "jit-ssh-guard-any")
			r.Description = strings.Replace(r.Description, "band=100-199", "band=100-299", 1)
			return rs
		}, "band 100-299", false},
		{"tampered maximum duration on a guard", func(rs []SecurityRule) []SecurityRule {
			r := byName(rs, "jit-ssh-guard-tcp")
			r.Description = strings.Replace(r.Description, "22:3h", "22:24h", 1)
			return rs
		}, `rule "jit-ssh-guard-tcp" has description`, false},
		{"consistent but moved band", func(rs []SecurityRule) []SecurityRule {
			for i := range rs {
				rs[i].Description = strings.Replace(rs[i].Description, "band=100-199", "band=100-198", 1)
			}
			return rs
		}, "priority", false},
		{"over-long description", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").Description = "jit:v1 role=deny band=100-199 guard=v4 max=" + strings.Repeat("1h", 60)
			return rs
		}, "over the limit of 140", true},
		{"guard that allows", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").Access = Allow
			return rs
		}, `has access "Allow", want Deny`, true},
		{"outbound deny", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").Direction = Outbound
			return rs
		}, `direction "Outbound"`, true},
		{"guard with deny description", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").Description = "jit:v1 role=deny band=100-199 guard=v4 max=3h"
			return rs
		}, "named as a guard rule but its description says role deny", true},
		{"guard narrowed", func(rs []SecurityRule) []SecurityRule {
			g := byName(rs, "jit-ssh-guard-tcp")
			g.SourcePrefixes = g.SourcePrefixes[1:]
			return rs
		}, "source prefixes", false},
		{"guard with a foreign-family source", func(rs []SecurityRule) []SecurityRule {
			g := byName(rs, "jit-ssh-guard-tcp")
			g.SourcePrefixes = append(g.SourcePrefixes, "2001:db8::/32")
			return rs
		}, `has source "2001:db8::/32", not an IPv4`, false},
		{"guard with a tag", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").SourcePrefixes = list("Internet")
			return rs
		}, `has source "Internet"`, false},
		{"extra guard", func(rs []SecurityRule) []SecurityRule {
			g := *byName(rs, "jit-ssh-guard-tcp")
			g.Name, g.Priority, g.Protocol = "jit-ssh-guard-udp", 102, ProtocolUDP
			return append(rs, g)
		}, `rule "jit-ssh-guard-udp" does not belong`, false},
		{"deny-all rules deleted", func(rs []SecurityRule) []SecurityRule {
			return slices.DeleteFunc(rs, func(r SecurityRule) bool { return strings.Contains(r.Name, "-deny-") })
		}, "no deny-all rule", false},
		{"one deny-all deleted", func(rs []SecurityRule) []SecurityRule {
			return slices.DeleteFunc(rs, func(r SecurityRule) bool { return r.Name == "jit-ssh-deny-any-v6" })
		}, `rule "jit-ssh-deny-any-v6" is missing`, false},
		{"deny-all destination of the wrong family", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").DestinationPrefixes = list("2001:db8::4")
			return rs
		}, `has destination "2001:db8::4", not an IPv4`, false},
		{"deny-all destination widened to *", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").DestinationPrefixes = list("*")
			return rs
		}, "destination * and others specific", false},
		{"deny-all with a port range", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").DestinationPorts = list("20-30")
			return rs
		}, `destination port "20-30", not a single port`, false},
		{"deny-all with a port missing from the description", func(rs []SecurityRule) []SecurityRule {
			d := byName(rs, "jit-ssh-deny-tcp")
			d.DestinationPorts = append(d.DestinationPorts, "8080")
			return rs
		}, "lists 3 ports but its description gives 2", false},
		{"deny-all with a port the description does not name", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").DestinationPorts = list("22", "8080")
			return rs
		}, "protects port 8080 but its description gives no maximum", false},
		{"protocol changed", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").Protocol = ProtocolAny
			return rs
		}, "protocol", false},
		{"application security groups", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").UsesApplicationSecurityGroups = true
			return rs
		}, "application security groups", true},
		{"source ports narrowed", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-deny-tcp").SourcePorts = list("1-1023")
			return rs
		}, "source ports", true},
		{"guard denying every source", func(rs []SecurityRule) []SecurityRule {
			byName(rs, "jit-ssh-guard-tcp").SourcePrefixes = list("0.0.0.0/0")
			byName(rs, "jit-ssh-guard-any").SourcePrefixes = list("0.0.0.0/0")
			return rs
		}, "no allowed source is IPv4", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := tt.tamper(base.Rules())
			view := ReadNSG(rules)
			dp := view.Policies["ssh"]
			if dp.Problem == "" {
				t.Fatalf("tampered policy read back without a problem: %+v", dp.Policy)
			}
			if !strings.Contains(dp.Problem, tt.problem) {
				t.Errorf("Problem = %q, want it to contain %q", dp.Problem, tt.problem)
			}
			if (len(view.Malformed) > 0) != tt.malformed {
				t.Errorf("Malformed = %+v, want malformed = %v", view.Malformed, tt.malformed)
			}
			if len(dp.RuleNames) != len(rules) {
				t.Errorf("RuleNames = %v, want all %d rules", dp.RuleNames, len(rules))
			}
		})
	}
}

func TestReadNSGNamespace(t *testing.T) {
	rules := []SecurityRule{
		rule("jit-ssh", 100, Deny, ProtocolTCP, list("*"), list("*"), list("22"), ""),
		rule("jit-ssh-deny-icmp", 101, Deny, ProtocolICMP, list("*"), list("*"), list("*"), ""),
		rule("JIT-ssh-deny-tcp", 102, Allow, ProtocolTCP, list("*"), list("*"), list("22"), ""),
		rule("ssh-jit-deny-tcp", 103, Allow, ProtocolTCP, list("*"), list("*"), list("22"), ""),
	}
	view := ReadNSG(rules)
	if len(view.Malformed) != 2 || view.Malformed[0].Rule.Name != "jit-ssh" || view.Malformed[1].Rule.Name != "jit-ssh-deny-icmp" {
		t.Errorf("Malformed = %+v", view.Malformed)
	}
	if len(view.Foreign) != 2 || len(view.Policies) != 0 || len(view.Grants) != 0 {
		t.Errorf("view = %+v", view)
	}
}

// The encoding is read back from rules as Azure returns them: a singular
// prefix may come back as a /32 CIDR, and list order is not promised.
func TestReadNSGToleratesAzureShapes(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{3389, "Tcp", "1h"}, {22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	rules := p.Rules()
	for i := range rules {
		rules[i].DestinationPrefixes = list("10.0.1.4/32")
		slices.Reverse(rules[i].DestinationPorts)
		slices.Reverse(rules[i].SourcePrefixes)
		rules[i].Protocol = "TCP"
		rules[i].Access = "deny"
	}
	dp := ReadNSG(rules).Policies["ssh"]
	if dp.Problem != "" || !dp.Policy.Equal(p) {
		t.Errorf("read back %+v, problem %q; want %+v", dp.Policy, dp.Problem, p)
	}
}

func ExamplePolicy_Rules() {
	p, err := NewPolicy(PolicyInput{Name: "ssh", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"0.0.0.0/1"},
		Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}}, BandStart: 100, BandEnd: 199})
	if err != nil {
		panic(err)
	}
	for _, r := range p.Rules() {
		fmt.Println(r.Priority, r.Name, r.Access, r.SourcePrefixes, r.DestinationPorts, r.Description)
	}
	// Output:
	// 100 jit-ssh-guard-tcp Deny [128.0.0.0/1] [22] jit:v1 role=guard band=100-199 guard=v4 max=3h
	// 199 jit-ssh-deny-tcp Deny [*] [22] jit:v1 role=deny band=100-199 guard=v4 max=3h
}
