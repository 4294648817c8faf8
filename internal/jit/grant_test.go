package jit

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func grantPolicy(t *testing.T) Policy {
	t.Helper()
	return mustPolicy(t, PolicyInput{Name: "web-ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}, {53, "*", "30m"}}, BandStart: 100, BandEnd: 199})
}

func TestCheckGrant(t *testing.T) {
	p := grantPolicy(t)
	ok := GrantInput{Ports: []int64{22}, Source: "203.0.113.7", Duration: "2h", Requester: "alice@example.com"}
	tests := []struct {
		name string
		mod  func(*GrantInput)
		path string
		msg  string // substring; "" means valid
	}{
		{"valid", func(*GrantInput) {}, "", ""},
		{"valid CIDR inside", func(g *GrantInput) { g.Source = "203.0.113.64/26" }, "", ""},
		{"valid IPv6", func(g *GrantInput) { g.Source = "2001:db8:1:2::9" }, "", ""},
		{"udp through a * port", func(g *GrantInput) { g.Ports, g.Protocol, g.Duration = []int64{53}, "Udp", "30m" }, "", ""},
		{"duration over the policy maximum", func(g *GrantInput) { g.Duration = "4h" }, "duration",
			`duration 4h exceeds policy "web-ssh" maximum of 3h for port 22`},
		{"the tightest port limits", func(g *GrantInput) { g.Ports = []int64{22, 3389} }, "duration",
			`maximum of 1h for port 3389`},
		{"duration too short", func(g *GrantInput) { g.Duration = "30s" }, "duration", "shorter than the minimum of 1m"},
		{"duration malformed", func(g *GrantInput) { g.Duration = "1y" }, "duration", `"1y" is not a duration`},
		{"port not protected", func(g *GrantInput) { g.Ports = []int64{443} }, "ports[0]", `port 443/Tcp is not protected by policy "web-ssh"`},
		{"wrong protocol", func(g *GrantInput) { g.Protocol = "Udp" }, "ports[0]", "port 22/Udp is not protected"},
		{"port out of range", func(g *GrantInput) { g.Ports = []int64{0} }, "ports[0]", "outside the range 1–65535"},
		{"port twice", func(g *GrantInput) { g.Ports = []int64{22, 22} }, "ports[1]", "listed twice"},
		{"no ports", func(g *GrantInput) { g.Ports = nil }, "ports", "at least one port"},
		{"bad protocol", func(g *GrantInput) { g.Protocol = "Icmp" }, "protocol", `"Icmp" is not one of`},
		{"source outside", func(g *GrantInput) { g.Source = "198.51.100.1" }, "source_address_prefix", "outside policy"},
		{"source wider than allowed", func(g *GrantInput) { g.Source = "203.0.112.0/23" }, "source_address_prefix", "outside policy"},
		{"source anywhere", func(g *GrantInput) { g.Source = "0.0.0.0/0" }, "source_address_prefix", "means anywhere"},
		{"source Internet", func(g *GrantInput) { g.Source = "Internet" }, "source_address_prefix", "means anywhere"},
		{"source host bits", func(g *GrantInput) { g.Source = "203.0.113.7/24" }, "source_address_prefix", "host bits"},
		{"no requester", func(g *GrantInput) { g.Requester = " " }, "requester", "requester is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			in.Ports = slices.Clone(ok.Ports)
			tc.mod(&in)
			_, err := p.CheckGrant(in)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			for _, fe := range FieldErrors(err) {
				if fe.Path == tc.path && strings.Contains(fe.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("want %s: %q, got %v", tc.path, tc.msg, err)
		})
	}
}

func TestCheckGrantAnySourcePolicy(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "open", DestinationPrefixes: list("*"), AllowedSources: list("*"),
		Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	if _, err := p.CheckGrant(GrantInput{Ports: []int64{22}, Source: "0.0.0.0/0", Duration: "1h", Requester: "a"}); err != nil {
		t.Fatalf("a policy open to any source accepts 0.0.0.0/0: %v", err)
	}
	if _, err := p.CheckGrant(GrantInput{Ports: []int64{22}, Source: "Internet", Duration: "1h", Requester: "a"}); err == nil {
		t.Fatal("a service tag is never a grant source")
	}
}

// The grant rule lets exactly the requester in, and reads back as a grant
// of its policy.
func TestGrantRuleReadsBack(t *testing.T) {
	p := grantPolicy(t)
	g, err := p.CheckGrant(GrantInput{Ports: []int64{3389, 22}, Source: "2001:db8:1::7", Duration: "1h", Requester: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	lo, _ := p.Band.GrantRange()
	rule := p.GrantRule("abc123", g, exp, lo)
	if rule.Access != Allow || rule.Priority != lo || !slices.Equal(rule.DestinationPorts, []string{"22", "3389"}) ||
		!slices.Equal(rule.DestinationPrefixes, []string{"2001:db8::4"}) || !slices.Equal(rule.SourcePrefixes, []string{"2001:db8:1::7"}) {
		t.Fatalf("grant rule: %+v", rule)
	}
	view := ReadNSG(append(p.Rules(), rule))
	if len(view.Grants) != 1 || view.Grants[0].ID != "abc123" || !view.Grants[0].ExpiresAt.Equal(exp) ||
		view.Grants[0].Requester != "bob@example.com" || view.Grants[0].Policy != "web-ssh" {
		t.Fatalf("read back: %+v", view.Grants)
	}
	allowed, _ := Allowed([][]SecurityRule{append(p.Rules(), rule)}, Flow{Protocol: ProtocolTCP,
		Source: mustAddr(t, "2001:db8:1::7"), Destination: mustAddr(t, "2001:db8::4"), Port: 22})
	denied, _ := Allowed([][]SecurityRule{append(p.Rules(), rule)}, Flow{Protocol: ProtocolTCP,
		Source: mustAddr(t, "2001:db8:1::8"), Destination: mustAddr(t, "2001:db8::4"), Port: 22})
	if !allowed || denied {
		t.Fatalf("requester allowed=%v, neighbour allowed=%v", allowed, denied)
	}
}

func TestFreeGrantPriority(t *testing.T) {
	p := grantPolicy(t)
	lo, hi := p.Band.GrantRange()
	rules := p.Rules()
	got, ok := p.FreeGrantPriority(rules, nil)
	if !ok || got != lo {
		t.Fatalf("empty range: %d %v, want %d", got, ok, lo)
	}
	rules = append(rules, SecurityRule{Name: "x", Priority: lo, Direction: Inbound},
		SecurityRule{Name: "out", Priority: lo + 1, Direction: Outbound})
	if got, _ := p.FreeGrantPriority(rules, map[int32]bool{lo + 1: true}); got != lo+2 {
		t.Fatalf("with lo used and lo+1 taken: %d, want %d", got, lo+2)
	}
	for prio := lo; prio <= hi; prio++ {
		rules = append(rules, SecurityRule{Name: "f", Priority: prio, Direction: Inbound})
	}
	if _, ok := p.FreeGrantPriority(rules, nil); ok {
		t.Fatal("a full range has no free priority")
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
