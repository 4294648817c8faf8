package scan

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const nsgID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func allow(name string, prio int32, proto jit.Protocol, src, dst, ports string) jit.SecurityRule {
	return rule(name, prio, jit.Allow, proto, src, dst, ports)
}

func deny(name string, prio int32, proto jit.Protocol, src, ports string) jit.SecurityRule {
	return rule(name, prio, jit.Deny, proto, src, "*", ports)
}

func rule(name string, prio int32, access jit.Access, proto jit.Protocol, src, dst, ports string) jit.SecurityRule {
	return jit.SecurityRule{Name: name, Priority: prio, Direction: jit.Inbound, Access: access, Protocol: proto,
		SourcePrefixes: strings.Split(src, ","), SourcePorts: []string{"*"},
		DestinationPrefixes: strings.Split(dst, ","), DestinationPorts: strings.Split(ports, ",")}
}

// webPolicy protects 22/Tcp of 10.0.1.4 for sources in 203.0.113.0/24.
func webPolicy(t *testing.T) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func grant(t *testing.T, p jit.Policy, src string, exp time.Time) jit.SecurityRule {
	t.Helper()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "1h", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	return p.GrantRule("k3j9x0p2ab", spec, exp, lo)
}

// summary is a finding in one comparable line.
func summary(f Finding) string {
	return strings.Join([]string{string(f.Status), f.Rule, itoa(f.Port), f.ExampleSource, strings.Join(f.Destinations, "|"), f.Policy}, " ")
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// vpnPolicy protects 22/Tcp of 10.0.1.4 for a private VPN pool and a
// public office range.
func vpnPolicy(t *testing.T) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "vpn", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"10.8.0.0/16", "203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNSG(t *testing.T) {
	p := webPolicy(t)
	vpn := vpnPolicy(t)
	withVPN := func(extra ...jit.SecurityRule) []jit.SecurityRule { return append(vpn.Rules(), extra...) }
	withPolicy := func(extra ...jit.SecurityRule) []jit.SecurityRule { return append(p.Rules(), extra...) }
	tests := []struct {
		name      string
		rules     []jit.SecurityRule
		opts      Options
		want      []string // summaries, in order
		protected []string // "port policy"
		detail    string   // substring of the first finding's detail
	}{
		{name: "ssh from the Internet tag", rules: []jit.SecurityRule{allow("ssh", 300, jit.ProtocolTCP, "Internet", "*", "22")},
			want: []string{"exposed ssh 22 203.0.113.7 * "}},
		{name: "every port from anywhere exposes every management port",
			rules: []jit.SecurityRule{allow("all", 4000, jit.ProtocolAny, "*", "*", "*")},
			want:  []string{"exposed all 22 203.0.113.7 * ", "exposed all 3389 203.0.113.7 * ", "exposed all 5985 203.0.113.7 * ", "exposed all 5986 203.0.113.7 * "}},
		{name: "a port range from 0.0.0.0/0", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{allow("range", 200, jit.ProtocolTCP, "0.0.0.0/0", "10.0.1.0/24", "20-25")},
			want:  []string{"exposed range 22 203.0.113.7 10.0.1.0/24 "}},
		{name: "private sources are not the Internet", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{
				allow("vnet", 200, jit.ProtocolTCP, "VirtualNetwork", "*", "22"),
				allow("rfc1918", 210, jit.ProtocolTCP, "10.0.0.0/8,192.168.0.0/16", "*", "22"),
				allow("lb", 220, jit.ProtocolAny, "AzureLoadBalancer", "*", "*"),
			}},
		{name: "udp is not tcp", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{allow("udp", 200, jit.ProtocolUDP, "*", "*", "22")}},
		{name: "other ports", rules: []jit.SecurityRule{allow("https", 200, jit.ProtocolTCP, "*", "*", "443,8080-8090")}},
		{name: "outbound rules do not count", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{func() jit.SecurityRule {
				r := allow("out", 200, jit.ProtocolTCP, "*", "*", "22")
				r.Direction = jit.Outbound
				return r
			}()}},
		{name: "a partial deny first: the rest of the Internet still gets in", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{
				deny("office-only", 100, jit.ProtocolTCP, "203.0.113.0/24", "22"),
				allow("ssh", 200, jit.ProtocolTCP, "*", "*", "22"),
			},
			want: []string{"exposed ssh 22 1.0.0.0 * "}},
		{name: "deny Internet first closes it", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{
				deny("no-internet", 100, jit.ProtocolTCP, "Internet", "*"),
				allow("ssh", 200, jit.ProtocolTCP, "*", "*", "22"),
			}},
		{name: "a public CIDR", opts: Options{Ports: []uint16{3389}},
			rules: []jit.SecurityRule{allow("partner", 200, jit.ProtocolTCP, "198.51.100.0/24", "10.0.1.4", "3389")},
			want:  []string{"exposed partner 3389 198.51.100.0 10.0.1.4 "}},
		{name: "ipv6 from anywhere", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{allow("v6", 200, jit.ProtocolTCP, "::/0", "*", "22")},
			want:  []string{"exposed v6 22 2001:db8::7 * "}},
		{name: "an unknown service tag is assumed public", opts: Options{Ports: []uint16{22}},
			rules:  []jit.SecurityRule{allow("cloud", 200, jit.ProtocolTCP, "AzureCloud", "*", "22")},
			want:   []string{"exposed cloud 22 1.0.0.0 * "},
			detail: "AzureCloud"},
		{name: "JIT policy with a foreign rule below its band: closed", opts: Options{Ports: []uint16{22}},
			rules:     withPolicy(allow("AllowSSHFromInternet", 300, jit.ProtocolTCP, "Internet", "*", "22")),
			protected: []string{"22 web"}},
		{name: "the foreign rule still reaches an address the policy does not protect", opts: Options{Ports: []uint16{22},
			Destinations: []netip.Addr{netip.MustParseAddr("10.0.1.5")}},
			rules: withPolicy(allow("AllowSSHFromInternet", 300, jit.ProtocolTCP, "Internet", "*", "22")),
			want:  []string{"exposed AllowSSHFromInternet 22 203.0.113.7 10.0.1.5 "}},
		{name: "JIT policy bypassed by a rule above its band", opts: Options{Ports: []uint16{22}},
			rules:  withPolicy(allow("AllowSSHFromInternet", 90, jit.ProtocolTCP, "Internet", "*", "22")),
			want:   []string{"bypassed AllowSSHFromInternet 22 203.0.113.7 10.0.1.4 web"},
			detail: "ahead of the policy's guard rule"},
		{name: "one finding per rule lists every destination", opts: Options{Ports: []uint16{22}},
			rules: []jit.SecurityRule{allow("two-vms", 200, jit.ProtocolTCP, "*", "10.0.1.4,10.0.2.4", "22")},
			want:  []string{"exposed two-vms 22 203.0.113.7 10.0.1.4|10.0.2.4 "}},
		{name: "one rule, two verdicts: bypass for the protected VM, exposure for another", opts: Options{Ports: []uint16{22},
			Destinations: []netip.Addr{netip.MustParseAddr("10.0.1.5")}},
			rules: withPolicy(allow("AllowSSHFromInternet", 90, jit.ProtocolTCP, "Internet", "*", "22")),
			want: []string{"exposed AllowSSHFromInternet 22 203.0.113.7 10.0.1.5 ",
				"bypassed AllowSSHFromInternet 22 203.0.113.7 10.0.1.4 web"}},
		{name: "an active grant is not an exposure", opts: Options{Ports: []uint16{22}},
			rules:     withPolicy(grant(t, p, "203.0.113.7", now.Add(time.Hour))),
			want:      []string{"granted jit-web-g-k3j9x0p2ab 22 203.0.113.7 10.0.1.4 web"},
			protected: []string{"22 web"}},
		{name: "standing access: a private VPN pool the policy allows, above the band", opts: Options{Ports: []uint16{22}},
			rules:  withVPN(allow("vpn-ssh", 90, jit.ProtocolTCP, "10.8.0.0/16", "10.0.1.4", "22")),
			want:   []string{"standing_access vpn-ssh 22 10.8.0.0 10.0.1.4 vpn"},
			detail: "overlapping the policy's allowed sources"},
		{name: "standing access: a public allowed range inside the band", opts: Options{Ports: []uint16{22}},
			rules:  withVPN(allow("office-ssh", 150, jit.ProtocolTCP, "203.0.113.0/25", "*", "22")),
			want:   []string{"standing_access office-ssh 22 203.0.113.7 10.0.1.4 vpn"},
			detail: "inside the policy's band"},
		{name: "no standing access below the band", opts: Options{Ports: []uint16{22}},
			rules:     withVPN(allow("vpn-ssh", 300, jit.ProtocolTCP, "10.8.0.0/16", "10.0.1.4", "22")),
			protected: []string{"22 vpn"}},
		{name: "no standing access where a foreign deny shadows the rule", opts: Options{Ports: []uint16{22}},
			rules: withVPN(deny("no-vpn", 80, jit.ProtocolTCP, "10.8.0.0/16", "22"),
				allow("vpn-ssh", 90, jit.ProtocolTCP, "10.8.0.0/16", "10.0.1.4", "22")),
			protected: []string{"22 vpn"}},
		{name: "a grant of another policy ahead is a grant, not standing access", opts: Options{Ports: []uint16{22}},
			rules: append(withVPN(), func() []jit.SecurityRule {
				other, err := jit.NewPolicy(jit.PolicyInput{Name: "other", DestinationPrefixes: []string{"10.0.1.4"},
					AllowedSources: []string{"10.8.0.0/16"}, BandStart: 3000, BandEnd: 3099,
					Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
				if err != nil {
					t.Fatal(err)
				}
				g := grant(t, other, "10.8.1.1", now.Add(time.Hour))
				g.Priority = 99 // in no band: a grant all the same, judged by jitd
				return []jit.SecurityRule{g}
			}()...),
			protected: []string{"22 vpn"}},
		{name: "an expired grant still open is", opts: Options{Ports: []uint16{22}},
			rules:  withPolicy(grant(t, p, "203.0.113.7", now.Add(-time.Minute))),
			want:   []string{"expired_grant jit-web-g-k3j9x0p2ab 22 203.0.113.7 10.0.1.4 web"},
			detail: "grant expired at 2026-11-25T11:59:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = now
			res := NSG(nsgID, tc.rules, tc.opts)
			var got []string
			for _, f := range res.Findings {
				got = append(got, summary(f))
				if f.NSGID != nsgID || f.Protocol != "Tcp" {
					t.Errorf("finding %+v: wrong NSG or protocol", f)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("findings:\n got %q\nwant %q", got, tc.want)
			}
			var prot []string
			for _, p := range res.Protected {
				prot = append(prot, itoa(p.Port)+" "+p.Policy)
			}
			if !slices.Equal(prot, tc.protected) {
				t.Errorf("protected = %q, want %q", prot, tc.protected)
			}
			if tc.detail != "" && (len(res.Findings) == 0 || !strings.Contains(res.Findings[0].Detail, tc.detail)) {
				t.Errorf("detail of %+v does not mention %q", res.Findings, tc.detail)
			}
		})
	}
}

// TestExampleSourcesReallyGetIn checks every witness the scan gives with
// the shared evaluator: the rule named really is the first match for it.
func TestExampleSourcesReallyGetIn(t *testing.T) {
	rules := []jit.SecurityRule{
		deny("a", 100, jit.ProtocolTCP, "203.0.113.0/24,1.0.0.0/8", "22"),
		deny("b", 110, jit.ProtocolAny, "2.0.0.0/7,4.0.0.0/6", "*"),
		allow("c", 200, jit.ProtocolTCP, "0.0.0.0/1", "*", "22"),
		allow("d", 210, jit.ProtocolTCP, "*", "*", "22"),
	}
	res := NSG(nsgID, rules, Options{Ports: []uint16{22}, Now: now})
	if len(res.Findings) != 2 {
		t.Fatalf("findings = %+v, want c and d", res.Findings)
	}
	for _, f := range res.Findings {
		src := netip.MustParseAddr(f.ExampleSource)
		ok, decider := jit.Allowed([][]jit.SecurityRule{rules}, jit.Flow{Protocol: jit.ProtocolTCP, Source: src,
			Destination: netip.MustParseAddr("10.0.0.4"), Port: 22})
		if !ok || decider.Name != f.Rule || !IsPublic(src) || f.Detail != "" {
			t.Errorf("finding %s from %s: evaluator says allowed=%t by %v", f.Rule, src, ok, decider)
		}
	}
	if got := res.Findings[0].ExampleSource; got != "8.0.0.0" {
		t.Errorf("example source of c = %s, want 8.0.0.0 (the first public address neither a nor b denies)", got)
	}
	if got := res.Findings[1].ExampleSource; got != "128.0.0.0" {
		t.Errorf("example source of d = %s, want 128.0.0.0 (c takes the lower half)", got)
	}
}

// TestIsPublicAgreesWithTheEvaluator keeps the scan's notion of "public" in
// step with jit.Allowed's Internet tag.
func TestIsPublicAgreesWithTheEvaluator(t *testing.T) {
	internet := []jit.SecurityRule{allow("internet", 100, jit.ProtocolTCP, "Internet", "*", "22")}
	for _, s := range []string{"203.0.113.7", "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.64.0.1", "100.128.0.0",
		"10.1.2.3", "172.15.255.255", "172.16.0.1", "172.32.0.0", "192.168.1.1", "168.63.129.16", "168.63.129.17",
		"127.0.0.1", "169.254.169.254", "0.1.2.3", "224.0.0.1", "240.0.0.1", "223.255.255.255",
		"2001:db8::7", "2606:4700::1", "fd00::1", "fe80::1", "::1", "ff02::1", "::"} {
		a := netip.MustParseAddr(s)
		_, decider := jit.Allowed([][]jit.SecurityRule{internet}, jit.Flow{Protocol: jit.ProtocolTCP, Source: a,
			Destination: netip.MustParseAddr("10.0.0.4"), Port: 22})
		// Not "allowed": Azure's AllowVnetInBound lets private sources in.
		if ok := decider.Name == "internet"; IsPublic(a) != ok {
			t.Errorf("IsPublic(%s) = %t, but the evaluator's Internet tag says %t", s, IsPublic(a), ok)
		}
	}
}

func TestStatusExposed(t *testing.T) {
	for s, want := range map[Status]bool{StatusExposed: true, StatusBypassed: true, StatusExpiredGrant: true, StatusStandingAccess: true, StatusGranted: false} {
		if s.Exposed() != want {
			t.Errorf("%s.Exposed() = %t", s, !want)
		}
	}
}

// Security admin rules are judged before the NSG: an AlwaysAllow on 22
// exposes it through an NSG that closes it, and a Deny hides an NSG's
// exposure.
func TestNSGJudgesSecurityAdminRules(t *testing.T) {
	closed := []jit.SecurityRule{{Name: "deny-ssh", Priority: 100, Direction: jit.Inbound, Access: jit.Deny, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}}
	open := []jit.SecurityRule{{Name: "allow-ssh", Priority: 100, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"Internet"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}}
	admin := func(access string) []jit.AdminRule {
		return []jit.AdminRule{{Name: "net-team", Priority: 10, Access: access, Direction: jit.Inbound, Protocol: "Tcp",
			DestinationPorts: []string{"22"}}}
	}
	exposedBy := func(res Result) []string {
		var out []string
		for _, f := range res.Findings {
			if f.Port == 22 && f.Status.Exposed() {
				out = append(out, f.Rule)
			}
		}
		return out
	}
	o := Options{Ports: []uint16{22}}
	o.AdminRules = admin(jit.AdminAlwaysAllow)
	if got := exposedBy(NSG("nsg", closed, o)); len(got) != 1 || got[0] != "admin:net-team" {
		t.Errorf("AlwaysAllow admin rule over a closed NSG: exposed by %q, want admin:net-team", got)
	}
	o.AdminRules = admin(jit.AdminDeny)
	if got := exposedBy(NSG("nsg", open, o)); len(got) != 0 {
		t.Errorf("Deny admin rule over an open NSG: exposed by %q, want nothing", got)
	}
	o.AdminRules = admin(jit.AdminAllow)
	if got := exposedBy(NSG("nsg", open, o)); len(got) != 1 || got[0] != "allow-ssh" {
		t.Errorf("Allow admin rule over an open NSG: exposed by %q, want allow-ssh", got)
	}
}
