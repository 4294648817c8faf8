package jit

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestStandingAccess(t *testing.T) {
	// A VPN pool may ask for grants; nobody else may.
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {53, "Udp", "1h"}}, BandStart: 100, BandEnd: 199})
	private := mustPolicy(t, PolicyInput{Name: "db", DestinationPrefixes: list("*"), AllowedSources: list("10.8.0.0/16"),
		Ports: []PortInput{{5432, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	anySource := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("*"), AllowedSources: list("*"),
		Ports: []PortInput{{443, "Tcp", "1h"}}, BandStart: 200, BandEnd: 299})
	allow := func(name string, prio int32, proto Protocol, src, dst, ports []string) SecurityRule {
		return rule(name, prio, Allow, proto, src, dst, ports, "")
	}
	asg := func(prio int32) SecurityRule {
		return SecurityRule{Name: "asg", Priority: prio, Direction: Inbound, Access: Allow, Protocol: ProtocolTCP,
			DestinationPorts: list("22"), UsesApplicationSecurityGroups: true}
	}
	tests := []struct {
		name   string
		policy Policy
		rule   SecurityRule
		want   []string // "<port>: <reason fragment>", one per finding
	}{
		{"VPN pool above the band", p, allow("vpn", 90, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: rule "vpn" (priority 90) allows 22/Tcp from "203.0.113.0/24", overlapping the policy's allowed sources, ahead of the policy's deny-all rule at priority 199: those sources reach the port with no grant`}},
		{"VPN pool inside the band", p, allow("vpn", 150, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: rule "vpn" (priority 150) allows 22/Tcp from "203.0.113.0/24", overlapping the policy's allowed sources, inside the policy's band, ahead of the policy's deny-all rule at priority 199`}},
		{"one allowed address above the band", p, allow("a", 90, ProtocolTCP, list("203.0.113.7"), list("*"), list("22")),
			[]string{`22/Tcp: from "203.0.113.7"`}},
		{"a range containing the pool is a bypass, not repeated", p, allow("a", 90, ProtocolTCP, list("203.0.0.0/16"), list("*"), list("22")), nil},
		{"the same range inside the band: the guard stops the rest", p, allow("a", 150, ProtocolTCP, list("203.0.0.0/16"), list("*"), list("22")),
			[]string{`22/Tcp: from "203.0.0.0/16"`}},
		{"* above the guard is a bypass, not repeated", p, allow("a", 90, ProtocolTCP, list("*"), list("*"), list("22")), nil},
		{"* inside the band", p, allow("a", 150, ProtocolTCP, list("*"), list("*"), list("22")),
			[]string{`22/Tcp: from "*", overlapping the policy's allowed sources, inside the policy's band`}},
		{"an outsider and the pool above the guard is a bypass, not repeated", p,
			allow("a", 90, ProtocolTCP, list("198.51.100.1", "203.0.113.9"), list("10.0.1.4"), list("22")), nil},
		{"an outsider and the pool inside the band", p,
			allow("a", 150, ProtocolTCP, list("198.51.100.1", "203.0.113.9"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: from "203.0.113.9"`}},
		{"outsiders only, inside the band, are the guard's business", p, allow("a", 150, ProtocolTCP, list("198.51.100.0/24"), list("*"), list("22")), nil},
		{"below the deny-all", p, allow("a", 300, ProtocolTCP, list("203.0.113.0/24"), list("*"), list("22")), nil},
		{"at the deny-all's priority", p, allow("a", 199, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22")), nil},
		{"IPv4 just above the IPv4 deny-all", p, allow("a", 198, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: from "203.0.113.0/24", overlapping the policy's allowed sources, inside the policy's band, ahead of the policy's deny-all rule at priority 199`}},
		{"IPv6 at the IPv6 deny-all's priority", p, allow("a", 198, ProtocolTCP, list("2001:db8:1::/64"), list("2001:db8::4"), list("22")), nil},
		{"IPv6 just above the IPv6 deny-all", p, allow("a", 197, ProtocolTCP, list("2001:db8:1::/64"), list("2001:db8::4"), list("22")),
			[]string{`22/Tcp: from "2001:db8:1::/64", overlapping the policy's allowed sources, inside the policy's band, ahead of the policy's deny-all rule at priority 198`}},
		{"Udp deny-all slot", p, allow("a", 196, ProtocolUDP, list("203.0.113.0/24"), list("10.0.1.4"), list("53")),
			[]string{`53/Udp: ahead of the policy's deny-all rule at priority 197`}},
		{"Deny rules never", p, rule("d", 90, Deny, ProtocolTCP, list("203.0.113.0/24"), list("*"), list("22"), ""), nil},
		{"outbound rules never", p, SecurityRule{Name: "o", Priority: 90, Direction: Outbound, Access: Allow, Protocol: ProtocolAny,
			SourcePrefixes: list("203.0.113.0/24"), DestinationPrefixes: list("*"), DestinationPorts: list("*")}, nil},
		{"protocol and port * cover every port", p, allow("a", 150, ProtocolAny, list("203.0.113.0/24"), list("*"), list("*")),
			[]string{"22/Tcp: ", "53/Udp: "}},
		{"Udp does not cover Tcp", p, allow("a", 150, ProtocolUDP, list("203.0.113.0/24"), list("*"), list("22")), nil},
		{"another port", p, allow("a", 150, ProtocolTCP, list("203.0.113.0/24"), list("*"), list("23-52")), nil},
		{"destination not overlapping", p, allow("a", 150, ProtocolTCP, list("203.0.113.0/24"), list("10.0.2.0/24"), list("22")), nil},
		{"destination tag overlaps", p, allow("a", 150, ProtocolTCP, list("203.0.113.0/24"), list("VirtualNetwork"), list("22")), []string{"22/Tcp: "}},
		{"Internet includes a public pool", p, allow("a", 150, ProtocolTCP, list("Internet"), list("*"), list("22")), []string{`22/Tcp: from "Internet"`}},
		{"VirtualNetwork excludes a public pool", p, allow("a", 150, ProtocolTCP, list("VirtualNetwork"), list("*"), list("22")), nil},
		{"VirtualNetwork includes a private pool", private, allow("a", 150, ProtocolTCP, list("VirtualNetwork"), list("*"), list("5432")),
			[]string{`5432/Tcp: from "VirtualNetwork"`}},
		{"Internet excludes a private pool", private, allow("a", 150, ProtocolTCP, list("Internet"), list("*"), list("5432")), nil},
		{"AzureLoadBalancer is one address", private, allow("a", 150, ProtocolTCP, list("AzureLoadBalancer"), list("*"), list("5432")), nil},
		{"other tags cannot be resolved and count", p, allow("a", 150, ProtocolTCP, list("AzureCloud"), list("*"), list("22")), []string{`22/Tcp: from "AzureCloud"`}},
		{"destination * policy: IPv4 pool inside the band", private, allow("a", 150, ProtocolTCP, list("10.8.1.0/24"), list("*"), list("5432")),
			[]string{`5432/Tcp: ahead of the policy's deny-all rule at priority 199`}},
		{"destination * policy: no IPv6 source is allowed", private, allow("a", 150, ProtocolTCP, list("::/0"), list("*"), list("5432")), nil},
		{"application security groups inside the band", p, asg(150),
			[]string{`22/Tcp: rule "asg" (priority 150) allows 22/Tcp using application security groups, which cannot be checked against the allowed sources, inside the policy's band, ahead of the policy's deny-all rule at priority 199`}},
		{"application security groups above the guard are a bypass, not repeated", p, asg(90), nil},
		{"the policy's own grant never", p, grantRule("ssh", "a1", 106, 1767225600), nil},
		{"the policy's own rules never", p, allow("jit-ssh-deny-tcp", 150, ProtocolTCP, list("203.0.113.0/24"), list("*"), list("22")), nil},
		{"another policy's grant from an allowed source, in a band above", mustPolicyAt(t, p, 300, 399), grantRule("web", "a1", 206, 1767225600),
			[]string{`22/Tcp: rule "jit-web-g-a1" (priority 206) allows 22/Tcp from "203.0.113.7", overlapping`}},
		{"another policy's grant below the deny-all", p, grantRule("web", "a1", 206, 1767225600), nil},
		{"any-source policy: everything ahead of the deny-all is already a bypass", anySource,
			allow("a", 250, ProtocolTCP, list("10.9.9.9"), list("*"), list("443")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.policy.StandingAccess([]SecurityRule{tt.rule})
			if len(got) != len(tt.want) {
				t.Fatalf("StandingAccess = %+v, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				port, reason, _ := strings.Cut(w, ": ")
				if got[i].Port.String() != port || !strings.Contains(got[i].Reason, reason) || got[i].Rule.Name != tt.rule.Name {
					t.Errorf("finding %d = %s %q, want %s containing %q", i, got[i].Port, got[i].Reason, port, reason)
				}
			}
		})
	}
}

// TestStandingAccessOnAWholeNSG: on an NSG holding the policy's own rules,
// a grant, a bypass and unrelated rules, only the VPN rules are reported,
// each once per port, in rule order.
func TestStandingAccessOnAWholeNSG(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	rules := append(p.Rules(),
		grantRule("ssh", "a1", 106, 1767225600),
		rule("vpn-above", 90, Allow, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.0/24"), list("22", "3389"), ""),
		rule("open-ssh", 95, Allow, ProtocolTCP, list("*"), list("*"), list("22"), ""),
		rule("vpn-in-band", 150, Allow, ProtocolTCP, list("203.0.113.128/25"), list("*"), list("3389"), ""),
		rule("web", 300, Allow, ProtocolTCP, list("Internet"), list("*"), list("443"), ""),
	)
	got := p.StandingAccess(rules)
	var names []string
	for _, b := range got {
		names = append(names, b.Rule.Name+" "+b.Port.String())
	}
	want := []string{"vpn-above 22/Tcp", "vpn-above 3389/Tcp", "vpn-in-band 3389/Tcp"}
	if strings.Join(names, ", ") != strings.Join(want, ", ") {
		t.Fatalf("StandingAccess = %v, want %v", names, want)
	}
	if b := p.Bypasses(rules); len(b) != 1 || b[0].Rule.Name != "open-ssh" {
		t.Fatalf("Bypasses = %+v, want open-ssh only", b)
	}
}

// TestStandingAccessExplainsEveryOpenFlow checks the two findings against
// flow evaluation: whenever a flow from any source to a protected port is
// let in by a rule that is not a grant of the policy, that rule is reported
// as a bypass or as standing access for the port.
func TestStandingAccessExplainsEveryOpenFlow(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {53, "Udp", "1h"}}, BandStart: 100, BandEnd: 199})
	sources := list("*", "Internet", "VirtualNetwork", "203.0.113.0/24", "203.0.113.7", "203.0.0.0/16", "198.51.100.0/24",
		"2001:db8:1::/64", "2001:db8::/32", "::/0", "10.0.0.0/8")
	dests := list("*", "10.0.1.4", "10.0.0.0/16", "2001:db8::4", "10.0.2.0/24", "VirtualNetwork")
	protos := []Protocol{ProtocolTCP, ProtocolUDP, ProtocolAny}
	ports := list("22", "53", "*", "20-60", "80")
	probes := list("203.0.113.7", "203.0.113.200", "198.51.100.1", "10.1.2.3", "2001:db8:1::9", "2001:db8:2::9")
	rng := rand.New(rand.NewPCG(10, 4))
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	for i := range 2000 {
		r := rule("foreign", int32(80+rng.IntN(140)), Allow, protos[rng.IntN(len(protos))],
			list(pick(sources)), list(pick(dests)), list(pick(ports)), "")
		nsg := append(p.Rules(), r)
		reported := map[Port]bool{}
		for _, b := range append(p.Bypasses(nsg), p.StandingAccess(nsg)...) {
			if b.Rule.Name == r.Name {
				reported[b.Port] = true
			}
		}
		for _, pt := range p.Ports {
			for _, src := range probes {
				for _, dst := range list("10.0.1.4", "2001:db8::4") {
					s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
					if s.Is4() != d.Is4() {
						continue
					}
					ok, by := Allowed([][]SecurityRule{nsg}, Flow{pt.Protocol, s, d, pt.Number})
					if ok && by.Name == r.Name && !reported[pt] {
						t.Fatalf("case %d: %+v lets %s → %s:%s in, but is reported as neither bypass nor standing access", i, r, src, dst, pt)
					}
				}
			}
		}
	}
}
