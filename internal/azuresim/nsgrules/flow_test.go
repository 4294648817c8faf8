package nsgrules

import (
	"net/netip"
	"strconv"
	"testing"
)

// rule builds a valid rule in the singular form (plural when a side has
// several entries).
func rule(name string, prio int32, dir, access, proto string, src, dst []string, dstPorts ...string) Rule {
	if len(dstPorts) == 0 {
		dstPorts = []string{"*"}
	}
	return Rule{
		Name: name, Priority: prio, Direction: dir, Access: access, Protocol: proto,
		SourcePrefixes: src, DestinationPrefixes: dst,
		SourcePrefixesPlural: len(src) > 1, DestinationPrefixesPlural: len(dst) > 1,
		SourcePorts: []string{"*"}, DestinationPorts: dstPorts, DestinationPortsPlural: len(dstPorts) > 1,
	}
}

func in(proto, src string, dport int, dst string) Flow {
	return Flow{Direction: "Inbound", Protocol: proto, Source: src, SourcePort: 50000, Destination: dst, DestinationPort: dport}
}

func out(proto, src string, dport int, dst string) Flow {
	return Flow{Direction: "Outbound", Protocol: proto, Source: src, SourcePort: 50000, Destination: dst, DestinationPort: dport}
}

func list(s ...string) []string { return s }

func TestEvaluate(t *testing.T) {
	jit := []Rule{
		rule("jit-web-guard-tcp", 100, "Inbound", "Deny", "Tcp", list("0.0.0.0/1", "128.0.0.0/2"), list("10.0.0.4"), "22", "3389"),
		rule("jit-web-g-1", 150, "Inbound", "Allow", "Tcp", list("203.0.113.7"), list("10.0.0.4"), "22"),
		rule("jit-web-deny-tcp", 199, "Inbound", "Deny", "Tcp", list("*"), list("10.0.0.4"), "22", "3389"),
		rule("allow-https", 300, "Inbound", "Allow", "*", list("*"), list("10.0.0.0/24"), "443"),
		rule("v6-ssh", 400, "Inbound", "Allow", "Tcp", list("2001:db8::/32"), list("fd00::4"), "22"),
		rule("deny-vnet", 500, "Inbound", "Deny", "Udp", list("VirtualNetwork"), list("*"), "53"),
		rule("asg", 600, "Inbound", "Allow", "*", nil, list("*")),
		rule("block-storage", 700, "Outbound", "Deny", "Tcp", list("*"), list("Storage.WestEurope"), "443"),
		rule("icmp", 800, "Inbound", "Allow", "Icmp", list("Internet"), list("*"), "8"),
		rule("ports-range", 900, "Inbound", "Allow", "Udp", list("Internet"), list("*"), "1000-2000"),
		rule("mapped", 1000, "Inbound", "Deny", "Udp", list("::ffff:198.51.100.0/120"), list("*"), "7"),
		rule("block-sql", 1100, "Outbound", "Deny", "Tcp", list("*"), list("Sql"), "1433"),
	}
	jit[6].SourceASGs = 1

	env := Env{
		VirtualNetworkPrefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/48")},
		ServiceTagPrefixes:     map[string][]netip.Prefix{"storage.westeurope": {netip.MustParsePrefix("20.38.0.0/16")}},
	}

	tests := []struct {
		name string
		flow Flow
		want Match
	}{
		{"granted source opens port", in("Tcp", "203.0.113.7", 22, "10.0.0.4"), Match{true, "jit-web-g-1", 150, false}},
		{"protocol case-insensitive", in("tcp", "203.0.113.7", 22, "10.0.0.4"), Match{true, "jit-web-g-1", 150, false}},
		{"guard stops outside source", in("Tcp", "8.8.8.8", 22, "10.0.0.4"), Match{false, "jit-web-guard-tcp", 100, false}},
		{"deny-all closes other sources", in("Tcp", "198.51.100.1", 3389, "10.0.0.4"), Match{false, "jit-web-deny-tcp", 199, false}},
		{"grant is for one port only", in("Tcp", "203.0.113.7", 3389, "10.0.0.4"), Match{false, "jit-web-deny-tcp", 199, false}},
		{"ipv4-mapped rule prefix matches ipv4", in("Udp", "198.51.100.9", 7, "10.0.0.4"), Match{false, "mapped", 1000, false}},
		{"ipv4-mapped source is the same host", in("Tcp", "::ffff:203.0.113.7", 22, "10.0.0.4"), Match{true, "jit-web-g-1", 150, false}},
		{"protocol star matches udp", in("Udp", "198.51.100.1", 443, "10.0.0.9"), Match{true, "allow-https", 300, false}},
		{"cidr destination", in("Tcp", "198.51.100.1", 443, "10.0.0.255"), Match{true, "allow-https", 300, false}},
		{"outside cidr falls to default deny", in("Tcp", "198.51.100.1", 443, "10.0.1.1"), Match{false, "DenyAllInBound", 65500, true}},
		{"ipv6 allowed", in("Tcp", "2001:db8::7", 22, "fd00::4"), Match{true, "v6-ssh", 400, false}},
		{"ipv6 source outside prefix", in("Tcp", "2001:db9::7", 22, "fd00::4"), Match{false, "DenyAllInBound", 65500, true}},
		{"ipv6 from internet", in("Tcp", "2a00::1", 22, "fd00::4"), Match{false, "DenyAllInBound", 65500, true}},
		{"ipv6 rule port", in("Tcp", "2001:db8::7", 23, "fd00::4"), Match{false, "DenyAllInBound", 65500, true}},
		{"ipv6 vnet default allow", in("Tcp", "fd00::7", 23, "fd00::4"), Match{true, "AllowVnetInBound", 65000, true}},
		{"vnet tag from env", in("Udp", "10.0.3.3", 53, "10.0.0.4"), Match{false, "deny-vnet", 500, false}},
		{"vnet tag excludes other private space", in("Udp", "192.168.1.1", 53, "10.0.0.4"), Match{false, "DenyAllInBound", 65500, true}},
		{"vnet tag includes the load balancer", in("Udp", "168.63.129.16", 53, "10.0.0.4"), Match{false, "deny-vnet", 500, false}},
		{"vnet to vnet default allow", in("Tcp", "10.0.5.5", 8080, "10.0.0.4"), Match{true, "AllowVnetInBound", 65000, true}},
		{"load balancer is in the vnet tag", in("Tcp", "168.63.129.16", 8080, "10.0.0.4"), Match{true, "AllowVnetInBound", 65000, true}},
		{"load balancer probe other port", in("Tcp", "168.63.129.16", 80, "10.1.0.4"), Match{true, "AllowAzureLoadBalancerInBound", 65001, true}},
		{"asg rule never matches", in("Esp", "198.51.100.1", 0, "10.5.0.4"), Match{false, "DenyAllInBound", 65500, true}},
		{"portless protocol ignores rule ports", in("Esp", "198.51.100.1", 0, "10.0.0.4"), Match{true, "allow-https", 300, false}},
		{"icmp ignores ports", in("Icmp", "198.51.100.1", 0, "10.9.9.9"), Match{true, "icmp", 800, false}},
		{"internet tag excludes private", in("Icmp", "192.168.7.7", 0, "10.9.9.9"), Match{false, "DenyAllInBound", 65500, true}},
		{"internet tag excludes loopback", in("Icmp", "127.0.0.1", 0, "10.9.9.9"), Match{false, "DenyAllInBound", 65500, true}},
		{"port range low end", in("Udp", "198.51.100.1", 1000, "10.9.9.9"), Match{true, "ports-range", 900, false}},
		{"port range high end", in("Udp", "198.51.100.1", 2000, "10.9.9.9"), Match{true, "ports-range", 900, false}},
		{"port range just above", in("Udp", "198.51.100.1", 2001, "10.9.9.9"), Match{false, "DenyAllInBound", 65500, true}},
		{"outbound service tag from env", out("Tcp", "10.0.0.4", 443, "20.38.1.1"), Match{false, "block-storage", 700, false}},
		{"tag unknown to env matches nothing", out("Tcp", "10.0.0.4", 1433, "20.38.1.1"), Match{true, "AllowInternetOutBound", 65001, true}},
		{"outbound internet default allow", out("Tcp", "10.0.0.4", 443, "8.8.8.8"), Match{true, "AllowInternetOutBound", 65001, true}},
		{"outbound vnet default allow", out("Udp", "10.0.0.4", 53, "10.0.9.9"), Match{true, "AllowVnetOutBound", 65000, true}},
		{"outbound private non-vnet denied", out("Udp", "10.0.0.4", 53, "172.16.0.1"), Match{false, "DenyAllOutBound", 65500, true}},
		{"outbound ipv6 internet", out("Tcp", "fd00::4", 443, "2a00::1"), Match{true, "AllowInternetOutBound", 65001, true}},
		{"outbound multicast is not internet", out("Udp", "10.0.0.4", 5353, "224.0.0.251"), Match{false, "DenyAllOutBound", 65500, true}},
		{"inbound rules ignored outbound", out("Tcp", "10.0.0.4", 22, "203.0.113.7"), Match{true, "AllowInternetOutBound", 65001, true}},
		{"unparsable source matches only wildcard", in("Tcp", "not-an-ip", 22, "10.0.0.4"), Match{false, "jit-web-deny-tcp", 199, false}},
		{"unknown direction matches nothing", Flow{Direction: "Sideways", Protocol: "Tcp", Source: "10.0.0.1", Destination: "10.0.0.2"}, Match{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(jit, tt.flow, env); got != tt.want {
				t.Errorf("Evaluate() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEvaluateDefaultEnv(t *testing.T) {
	tests := []struct {
		name string
		flow Flow
		want string
	}{
		{"rfc1918 is vnet", in("Tcp", "172.20.0.1", 22, "10.0.0.4"), "AllowVnetInBound"},
		{"cgnat is vnet", in("Tcp", "100.64.0.1", 22, "192.168.0.4"), "AllowVnetInBound"},
		{"ula is vnet", in("Tcp", "fd12::1", 22, "fd00::4"), "AllowVnetInBound"},
		{"public is not", in("Tcp", "198.51.100.1", 22, "10.0.0.4"), "DenyAllInBound"},
		{"documentation range is internet", out("Tcp", "10.0.0.4", 22, "203.0.113.7"), "AllowInternetOutBound"},
		{"link-local is not internet", out("Tcp", "10.0.0.4", 22, "169.254.169.254"), "DenyAllOutBound"},
		{"broadcast is not internet", out("Udp", "10.0.0.4", 67, "255.255.255.255"), "DenyAllOutBound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(nil, tt.flow, Env{}); got.RuleName != tt.want {
				t.Errorf("Evaluate() = %+v, want %s", got, tt.want)
			}
		})
	}
}

// Lower numbers win whatever order the rules are given in.
func TestEvaluatePriorityOrder(t *testing.T) {
	allow := rule("allow", 200, "Inbound", "Allow", "Tcp", list("*"), list("*"), "22")
	deny := rule("deny", 4096, "Inbound", "Deny", "*", list("*"), list("*"))
	f := in("Tcp", "198.51.100.1", 22, "10.0.0.4")
	for _, rules := range [][]Rule{{allow, deny}, {deny, allow}} {
		if got := Evaluate(rules, f, Env{}); got.RuleName != "allow" {
			t.Errorf("Evaluate(%s first) = %+v, want allow", rules[0].Name, got)
		}
	}
	deny.Priority = 100
	if got := Evaluate([]Rule{allow, deny}, f, Env{}); got.RuleName != "deny" || got.Allowed {
		t.Errorf("Evaluate() = %+v, want deny", got)
	}
}

func TestEvaluatePath(t *testing.T) {
	subnet := []Rule{rule("subnet-ssh", 100, "Inbound", "Allow", "Tcp", list("203.0.113.0/24"), list("*"), "22")}
	nicOpen := []Rule{rule("nic-ssh", 100, "Inbound", "Allow", "Tcp", list("*"), list("10.0.0.4"), "22")}
	nicClosed := []Rule{rule("nic-deny", 100, "Inbound", "Deny", "Tcp", list("*"), list("*"), "22")}
	f := in("Tcp", "203.0.113.7", 22, "10.0.0.4")

	tests := []struct {
		name    string
		nsgs    [][]Rule
		flow    Flow
		index   int
		allowed bool
		rule    string
	}{
		{"no nsg filters nothing", nil, f, -1, true, ""},
		{"both allow", [][]Rule{subnet, nicOpen}, f, 1, true, "nic-ssh"},
		{"nic denies", [][]Rule{subnet, nicClosed}, f, 1, false, "nic-deny"},
		{"subnet denies first", [][]Rule{subnet, nicOpen}, in("Tcp", "198.51.100.1", 22, "10.0.0.4"), 0, false, "DenyAllInBound"},
		{"empty nsg still has defaults", [][]Rule{{}}, f, 0, false, "DenyAllInBound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, m := EvaluatePath(tt.nsgs, tt.flow, Env{})
			if i != tt.index || m.Allowed != tt.allowed || m.RuleName != tt.rule {
				t.Errorf("EvaluatePath() = %d, %+v; want %d, allowed=%v rule=%q", i, m, tt.index, tt.allowed, tt.rule)
			}
		})
	}
}

func TestFlowValidate(t *testing.T) {
	good := in("Tcp", "203.0.113.7", 22, "10.0.0.4")
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	tests := []struct {
		name   string
		change func(*Flow)
	}{
		{"direction", func(f *Flow) { f.Direction = "Up" }},
		{"protocol star", func(f *Flow) { f.Protocol = "*" }},
		{"protocol unknown", func(f *Flow) { f.Protocol = "Sctp" }},
		{"source", func(f *Flow) { f.Source = "203.0.113.0/24" }},
		{"destination zone", func(f *Flow) { f.Destination = "fe80::1%eth0" }},
		{"source port", func(f *Flow) { f.SourcePort = -1 }},
		{"destination port", func(f *Flow) { f.DestinationPort = 65536 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			tt.change(&f)
			if err := f.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want an error", f)
			}
		})
	}
}

// BenchmarkEvaluate prints the cost of judging one flow against a full NSG.
func BenchmarkEvaluate(b *testing.B) {
	rules := make([]Rule, 0, MaxRules)
	for i := range MaxRules {
		rules = append(rules, rule("r"+strconv.Itoa(i), int32(MinPriority+i), "Inbound", "Deny", "Tcp",
			list("198.51.100."+strconv.Itoa(i%256)), list("10.0.0.4"), strconv.Itoa(1000+i)))
	}
	f := in("Tcp", "203.0.113.7", 22, "10.0.0.4")
	for b.Loop() {
		if m := Evaluate(rules, f, Env{}); m.Allowed {
			b.Fatal("unexpected allow")
		}
	}
}
