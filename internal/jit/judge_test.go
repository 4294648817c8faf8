package jit

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestBypasses(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.7", "2001:db8:1::/48"),
		Ports:          []PortInput{{22, "Tcp", "3h"}, {53, "Udp", "1h"}}, BandStart: 100, BandEnd: 199})
	other := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: list("*"), AllowedSources: list("*"),
		Ports: []PortInput{{443, "Tcp", "1h"}}, BandStart: 200, BandEnd: 299})
	allow := func(name string, prio int32, proto Protocol, src, dst, ports []string) SecurityRule {
		return rule(name, prio, Allow, proto, src, dst, ports, "")
	}
	tests := []struct {
		name   string
		policy Policy
		rule   SecurityRule
		want   []string // "<port>: <reason fragment>", one per bypass
	}{
		{"22 from Internet ahead of the guard", p, allow("a", 90, ProtocolTCP, list("Internet"), list("*"), list("22")),
			[]string{`22/Tcp: rule "a" (priority 90) allows 22/Tcp from "Internet", outside the policy's allowed sources, ahead of the policy's guard rule at priority 100`}},
		{"22 from Internet below the deny-all", p, allow("a", 300, ProtocolTCP, list("Internet"), list("*"), list("22")), nil},
		{"22 from Internet between guard and deny-all is the band's business", p, allow("a", 150, ProtocolTCP, list("Internet"), list("*"), list("22")), nil},
		{"from an allowed address", p, allow("a", 90, ProtocolTCP, list("203.0.113.7"), list("10.0.1.4"), list("22")), nil},
		{"from an allowed IPv6 subnet", p, allow("a", 90, ProtocolTCP, list("2001:db8:1:2::/64"), list("*"), list("22")), nil},
		{"from a prefix wider than the allowed address", p, allow("a", 90, ProtocolTCP, list("203.0.113.0/24"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: from "203.0.113.0/24"`}},
		{"from a list with one outsider", p, allow("a", 90, ProtocolTCP, list("203.0.113.7", "198.51.100.1"), list("10.0.1.4"), list("22")),
			[]string{`22/Tcp: from "198.51.100.1"`}},
		{"Deny rules never", p, rule("d", 90, Deny, ProtocolTCP, list("*"), list("*"), list("22"), ""), nil},
		{"outbound rules never", p, SecurityRule{Name: "o", Priority: 90, Direction: Outbound, Access: Allow, Protocol: ProtocolAny,
			SourcePrefixes: list("*"), DestinationPrefixes: list("*"), DestinationPorts: list("*")}, nil},
		{"port range covers 22", p, allow("a", 90, ProtocolTCP, list("*"), list("*"), list("20-30")), []string{"22/Tcp: "}},
		{"port * covers every port", p, allow("a", 90, ProtocolAny, list("*"), list("*"), list("*")), []string{"22/Tcp: ", "53/Udp: "}},
		{"protocol * covers Tcp", p, allow("a", 90, ProtocolAny, list("*"), list("*"), list("22")), []string{"22/Tcp: "}},
		{"Udp does not cover Tcp", p, allow("a", 90, ProtocolUDP, list("*"), list("*"), list("22")), nil},
		{"Icmp covers no port", p, allow("a", 90, ProtocolICMP, list("*"), list("*"), list("*")), nil},
		{"another port", p, allow("a", 90, ProtocolTCP, list("*"), list("*"), list("23-3388")), nil},
		{"destination not overlapping", p, allow("a", 90, ProtocolTCP, list("*"), list("10.0.2.0/24"), list("22")), nil},
		{"destination subnet overlapping", p, allow("a", 90, ProtocolTCP, list("*"), list("10.0.0.0/16"), list("22")), []string{"22/Tcp: "}},
		{"destination tag overlaps", p, allow("a", 90, ProtocolTCP, list("*"), list("VirtualNetwork"), list("22")), []string{"22/Tcp: "}},
		{"IPv6 only, ahead of the IPv6 guard", p, allow("a", 100, ProtocolTCP, list("::/0"), list("2001:db8::/64"), list("22")),
			[]string{`22/Tcp: rule "a" (priority 100) allows 22/Tcp from "::/0", outside the policy's allowed sources, ahead of the policy's guard rule at priority 101`}},
		{"application security groups are judged conservatively", p,
			SecurityRule{Name: "asg", Priority: 90, Direction: Inbound, Access: Allow, Protocol: ProtocolTCP, DestinationPorts: list("22"), UsesApplicationSecurityGroups: true},
			[]string{"22/Tcp: using application security groups"}},
		{"the policy's own grant never", p, grantRule("ssh", "a1", 106, 1767225600), nil},
		{"the policy's own rules never", p, allow("jit-ssh-deny-tcp", 90, ProtocolTCP, list("*"), list("*"), list("22")), nil},
		{"another policy's grant above the guard", mustPolicyAt(t, p, 300, 399),
			rule("jit-web-g-a1", 206, Allow, ProtocolTCP, list("198.51.100.9"), list("10.0.1.4"), list("22"), ""),
			[]string{`22/Tcp: rule "jit-web-g-a1" (priority 206) allows 22/Tcp from "198.51.100.9", outside`}},
		{"another policy's grant from an allowed source", mustPolicyAt(t, p, 300, 399), grantRule("web", "a1", 206, 1767225600), nil},
		{"another policy's grant below the deny-all", p, grantRule("web", "a1", 206, 1767225600), nil},
		{"another policy's deny never", p, other.Rules()[0], nil},
		{"any-source policy: Allow * ahead of the deny-all", other, allow("a", 150, ProtocolTCP, list("*"), list("*"), list("443")),
			[]string{`443/Tcp: rule "a" (priority 150) allows 443/Tcp from "*" ahead of the policy's deny-all rule at priority 299, so the port is never closed`}},
		{"any-source policy: Allow from one address ahead of the deny-all", other, allow("a", 150, ProtocolTCP, list("10.9.9.9"), list("*"), list("443")),
			[]string{`443/Tcp: from "10.9.9.9"`}},
		{"any-source policy: below the deny-all", other, allow("a", 300, ProtocolTCP, list("*"), list("*"), list("443")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.policy.Bypasses([]SecurityRule{tt.rule})
			if len(got) != len(tt.want) {
				t.Fatalf("Bypasses = %+v, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				port, reason, _ := strings.Cut(w, ": ")
				if got[i].Port.String() != port || !strings.Contains(got[i].Reason, reason) || got[i].Rule.Name != tt.rule.Name {
					t.Errorf("bypass %d = %s %q, want %s containing %q", i, got[i].Port, got[i].Reason, port, reason)
				}
			}
		})
	}
}

// mustPolicyAt returns p moved to another band.
func mustPolicyAt(t *testing.T, p Policy, start, end int32) Policy {
	t.Helper()
	p.Band = Band{start, end}
	return p
}

func TestAllowed(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4", "2001:db8::4"),
		AllowedSources: list("203.0.113.0/24", "2001:db8:1::/48"), Ports: []PortInput{{22, "Tcp", "3h"}}, BandStart: 100, BandEnd: 199})
	nsg := append(p.Rules(),
		grantRule("ssh", "a1", 106, 1767225600), // 203.0.113.7 → 10.0.1.4:22
		rule("jit-ssh-g-evil", 107, Allow, ProtocolTCP, list("198.51.100.9"), list("10.0.1.4"), list("22"), ""),
		rule("web", 300, Allow, ProtocolTCP, list("Internet"), list("*"), list("443"), ""),
		rule("dns", 310, Allow, ProtocolUDP, list("VirtualNetwork"), list("*"), list("53"), ""),
		rule("ping", 320, Allow, ProtocolICMP, list("*"), list("*"), list("*"), ""),
		rule("v6-web", 330, Allow, ProtocolTCP, list("2001:db8::/32"), list("2001:db8::4"), list("8000-8080"), ""),
		rule("asg", 340, Allow, ProtocolAny, nil, nil, list("*"), ""),
	)
	nsg[len(nsg)-1].UsesApplicationSecurityGroups = true
	flow := func(proto Protocol, src, dst string, port uint16) Flow {
		return Flow{proto, netip.MustParseAddr(src), netip.MustParseAddr(dst), port}
	}
	tests := []struct {
		name    string
		nsgs    [][]SecurityRule
		flow    Flow
		allowed bool
		rule    string
	}{
		{"granted source", [][]SecurityRule{nsg}, flow(ProtocolTCP, "203.0.113.7", "10.0.1.4", 22), true, "jit-ssh-g-a1"},
		{"allowed source without a grant hits the deny-all", [][]SecurityRule{nsg}, flow(ProtocolTCP, "203.0.113.8", "10.0.1.4", 22), false, "jit-ssh-deny-tcp"},
		{"outsider's grant is stopped by the guard", [][]SecurityRule{nsg}, flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 22), false, "jit-ssh-guard-tcp"},
		{"IPv6 outsider stopped by the IPv6 guard", [][]SecurityRule{nsg}, flow(ProtocolTCP, "2001:db8:2::1", "2001:db8::4", 22), false, "jit-ssh-guard-tcp-v6"},
		{"IPv6 allowed source hits the IPv6 deny-all", [][]SecurityRule{nsg}, flow(ProtocolTCP, "2001:db8:1::1", "2001:db8::4", 22), false, "jit-ssh-deny-tcp-v6"},
		{"IPv6 port range", [][]SecurityRule{nsg}, flow(ProtocolTCP, "2001:db8:1::1", "2001:db8::4", 8080), true, "v6-web"},
		{"Udp on a Tcp port is not the policy's", [][]SecurityRule{nsg}, flow(ProtocolUDP, "198.51.100.9", "10.0.1.4", 22), false, "DenyAllInBound"},
		{"Internet tag", [][]SecurityRule{nsg}, flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 443), true, "web"},
		{"Internet tag excludes private sources", [][]SecurityRule{nsg}, flow(ProtocolTCP, "10.9.0.1", "10.0.1.4", 443), true, "AllowVnetInBound"},
		{"VirtualNetwork tag", [][]SecurityRule{nsg}, flow(ProtocolUDP, "10.9.0.1", "10.0.1.4", 53), true, "dns"},
		{"Icmp ignores ports", [][]SecurityRule{nsg}, flow(ProtocolICMP, "198.51.100.9", "10.0.1.4", 0), true, "ping"},
		{"default: load balancer", [][]SecurityRule{nsg}, flow(ProtocolTCP, "168.63.129.16", "20.1.1.1", 8080), true, "AllowAzureLoadBalancerInBound"},
		{"load balancer is in VirtualNetwork", [][]SecurityRule{nsg}, flow(ProtocolTCP, "168.63.129.16", "10.0.1.4", 8080), true, "AllowVnetInBound"},
		{"default: deny all", [][]SecurityRule{nsg}, flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 8080), false, "DenyAllInBound"},
		{"empty NSG: default rules", [][]SecurityRule{nil}, flow(ProtocolTCP, "10.1.0.1", "10.0.1.4", 22), true, "AllowVnetInBound"},
		{"path: subnet allows, NIC denies", [][]SecurityRule{{rule("any", 100, Allow, ProtocolAny, list("*"), list("*"), list("*"), "")}, nsg},
			flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 22), false, "jit-ssh-guard-tcp"},
		{"path: subnet denies first", [][]SecurityRule{nil, nsg}, flow(ProtocolTCP, "203.0.113.7", "10.0.1.4", 22), false, "DenyAllInBound"},
		{"path: both allow, the last decides", [][]SecurityRule{{rule("any", 100, Allow, ProtocolAny, list("*"), list("*"), list("*"), "")}, nsg},
			flow(ProtocolTCP, "203.0.113.7", "10.0.1.4", 22), true, "jit-ssh-g-a1"},
		{"no NSG on the path", nil, flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 22), true, ""},
		{"first match by priority, not by order", [][]SecurityRule{{
			rule("late-deny", 200, Deny, ProtocolTCP, list("*"), list("*"), list("22"), ""),
			rule("early-allow", 150, Allow, ProtocolTCP, list("0.0.0.0/0"), list("10.0.0.0/8"), list("22"), ""),
		}}, flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 22), true, "early-allow"},
		{"outbound rules ignored", [][]SecurityRule{{{Name: "out", Priority: 100, Direction: Outbound, Access: Allow, Protocol: ProtocolAny,
			SourcePrefixes: list("*"), DestinationPrefixes: list("*"), DestinationPorts: list("*")}}},
			flow(ProtocolTCP, "198.51.100.9", "10.0.1.4", 22), false, "DenyAllInBound"},
		{"invalid flow addresses only meet *", [][]SecurityRule{nsg}, Flow{Protocol: ProtocolTCP, Port: 22}, false, "DenyAllInBound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, r := Allowed(tt.nsgs, tt.flow)
			name := ""
			if r != nil {
				name = r.Name
			}
			if ok != tt.allowed || name != tt.rule {
				t.Errorf("Allowed = %v by %q, want %v by %q", ok, name, tt.allowed, tt.rule)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	for s, want := range map[string]portRange{"*": {0, 65535}, "22": {22, 22}, "20-30": {20, 30}} {
		if got, ok := parsePortRange(s); !ok || got != want {
			t.Errorf("parsePortRange(%q) = %v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "x", "30-20", "1-x", "70000", "-1"} {
		if got, ok := parsePortRange(s); ok {
			t.Errorf("parsePortRange(%q) = %v, want refusal", s, got)
		}
	}
}

func TestConflicts(t *testing.T) {
	const nsgID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"
	p := mustPolicy(t, validInput()) // band 100-199
	other := func(start, end int64) []SecurityRule {
		return mustPolicy(t, PolicyInput{Name: "rdp", DestinationPrefixes: list("*"), AllowedSources: list("*"),
			Ports: []PortInput{{3389, "Tcp", "1h"}}, BandStart: start, BandEnd: end}).Rules()
	}
	many := func(n int, prefixes int) []SecurityRule {
		var rs []SecurityRule
		for i := range n {
			src := make([]string, prefixes)
			for j := range src {
				src[j] = fmt.Sprintf("198.51.%d.%d", j/256, j%256)
			}
			rs = append(rs, rule(fmt.Sprintf("r%d", i), int32(1000+i), Allow, ProtocolTCP, src, list("*"), list("443"), ""))
		}
		return rs
	}
	type fe struct{ path, contains string }
	tests := []struct {
		name  string
		rules []SecurityRule
		want  []fe
	}{
		{"empty NSG", nil, nil},
		{"own rules and grants are not conflicts", append(p.Rules(), grantRule("ssh", "a1", 106, 1)), nil},
		{"another policy in its own band", other(200, 299), nil},
		{"overlapping bands", other(150, 249),
			[]fe{{"priority_band", `band 100-199 of policy "ssh" overlaps band 150-249 of policy "rdp" on ` + nsgID}}},
		{"overlapping malformed policy", func() []SecurityRule {
			rs := mustPolicy(t, PolicyInput{Name: "rdp", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("10.0.0.0/8"),
				Ports: []PortInput{{3389, "Tcp", "1h"}}, BandStart: 190, BandEnd: 299}).Rules()
			rs[0].Description = "jit:v9"
			return rs
		}(), []fe{{"priority_band", `overlaps band 190-299 of policy "rdp"`}}},
		{"foreign rule inside the band", []SecurityRule{rule("allow-bastion", 150, Allow, ProtocolTCP, list("10.0.0.0/26"), list("*"), list("22"), "")},
			[]fe{{"priority_band", `rule "allow-bastion" at priority 150 on ` + nsgID + " lies inside band 100-199"}}},
		{"outbound rule inside the band is not a conflict", []SecurityRule{{Name: "o", Priority: 150, Direction: Outbound, Access: Allow}}, nil},
		{"rule count", many(998, 1), []fe{{"network_security_group_ids", nsgID + " would hold 1000 security rules"}}[:0]},
		{"over the rule limit", many(999, 1), []fe{{"network_security_group_ids", nsgID + " would hold 1001 security rules with this policy's 2, over Azure's limit of 1000"}}},
		{"over the prefix limit", many(4, 1000),
			[]fe{{"network_security_group_ids", " would hold 4026 address prefixes across its rules with this policy's, over Azure's limit of 4000"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FieldErrors(Conflicts(p, nsgID, tt.rules))
			if len(got) != len(tt.want) {
				t.Fatalf("Conflicts = %v, want %d errors", got, len(tt.want))
			}
			for i, w := range tt.want {
				if got[i].Path != w.path || !strings.Contains(got[i].Message, w.contains) {
					t.Errorf("error %d = %s: %s, want %s containing %q", i, got[i].Path, got[i].Message, w.path, w.contains)
				}
			}
		})
	}
}
