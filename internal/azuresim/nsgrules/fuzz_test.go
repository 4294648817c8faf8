package nsgrules

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// splitList turns a comma-separated fuzz input into a rule field: one entry
// is the singular form, several the plural one.
func splitList(s string) (entries []string, plural bool) {
	if s == "" {
		return nil, false
	}
	entries = strings.Split(s, ",")
	return entries, len(entries) > 1
}

func fuzzRule(name string, prio int32, dir, access, proto, src, dst, sports, dports, desc string) Rule {
	r := Rule{Name: name, Priority: prio, Direction: dir, Access: access, Protocol: proto, Description: desc}
	r.SourcePrefixes, r.SourcePrefixesPlural = splitList(src)
	r.DestinationPrefixes, r.DestinationPrefixesPlural = splitList(dst)
	r.SourcePorts, r.SourcePortsPlural = splitList(sports)
	r.DestinationPorts, r.DestinationPortsPlural = splitList(dports)
	return r
}

// FuzzValidateRule: validation never panics, every refusal is a complete
// 400, and an accepted rule is one Evaluate can read entirely.
func FuzzValidateRule(f *testing.F) {
	f.Add("jit-web-g-1", int32(150), "Inbound", "Allow", "Tcp", "203.0.113.7/32", "10.0.0.4", "*", "22", "jit:v1")
	f.Add("r", int32(4096), "outbound", "deny", "*", "2001:db8::/32,2001:db8:1::1", "*", "0-65535", "22,3389-3390", "")
	f.Add("r_", int32(99), "Inbound", "Allow", "Udp", "VirtualNetwork", "Storage.WestEurope", "*", "*", "x")
	f.Add("a.b", int32(100), "Inbound", "Allow", "Icmp", "10.0.0.1/24", "fd00::1", "1-", "65536", "é")
	f.Fuzz(func(t *testing.T, name string, prio int32, dir, access, proto, src, dst, sports, dports, desc string) {
		r := fuzzRule(name, prio, dir, access, proto, src, dst, sports, dports, desc)
		err := ValidateRule(testNSG, r, []Rule{validRule()})
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Code == "" || err.Message == "" || err.Target == "" {
				t.Fatalf("incomplete error %+v", err)
			}
			return
		}
		for _, s := range append(append([]string{}, r.SourcePrefixes...), r.DestinationPrefixes...) {
			if _, ok := parsePrefix(s); !ok {
				t.Fatalf("accepted rule has unreadable prefix %q", s)
			}
		}
		for _, s := range append(append([]string{}, r.SourcePorts...), r.DestinationPorts...) {
			if _, ok := parsePortRange(s); !ok {
				t.Fatalf("accepted rule has unreadable port range %q", s)
			}
		}
		if r.Priority < MinPriority || r.Priority > MaxPriority {
			t.Fatalf("accepted priority %d", r.Priority)
		}
	})
}

// naiveMatch is an independent reading of a user rule (only "*", IP
// addresses and CIDR blocks) built on package net instead of net/netip.
func naiveMatch(r Rule, f Flow) bool {
	if r.Protocol != "*" && !strings.EqualFold(r.Protocol, f.Protocol) {
		return false
	}
	if !naiveAddrIn(r.SourcePrefixes, f.Source) || !naiveAddrIn(r.DestinationPrefixes, f.Destination) {
		return false
	}
	p := strings.ToLower(f.Protocol)
	if p == "icmp" || p == "esp" || p == "ah" {
		return true
	}
	return naivePortIn(r.SourcePorts, f.SourcePort) && naivePortIn(r.DestinationPorts, f.DestinationPort)
}

func naiveAddrIn(prefixes []string, addr string) bool {
	ip := net.ParseIP(addr)
	for _, p := range prefixes {
		if p == "*" {
			return true
		}
		if ip == nil || strings.Contains(addr, "%") {
			continue
		}
		if !strings.Contains(p, "/") {
			if pip := net.ParseIP(p); pip != nil && pip.Equal(ip) {
				return true
			}
			continue
		}
		if _, n, err := net.ParseCIDR(p); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

func naivePortIn(ranges []string, port int) bool {
	for _, s := range ranges {
		if s == "*" {
			return true
		}
		lo, hi, ok := strings.Cut(s, "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && l <= port && port <= h {
			return true
		}
	}
	return false
}

// FuzzEvaluate compares Evaluate with naiveMatch on two valid user rules,
// and checks that a Deny-everything rule at priority 100 denies every flow.
func FuzzEvaluate(f *testing.F) {
	f.Add(int32(150), "Allow", "Tcp", "203.0.113.0/24", "10.0.0.4", "22",
		int32(200), "Deny", "*", "*", "*", "*",
		true, "Tcp", "203.0.113.7", 50000, "10.0.0.4", 22)
	f.Add(int32(300), "Deny", "Udp", "2001:db8::/32", "fd00::4", "53,1000-2000",
		int32(301), "Allow", "*", "2001:db8::1", "*", "1500",
		true, "Udp", "2001:db8::1", 1, "fd00::4", 1500)
	f.Add(int32(4096), "Allow", "Icmp", "0.0.0.0/0", "10.0.0.0/8", "8",
		int32(1000), "Allow", "Tcp", "*", "10.1.0.0/16", "0-1023",
		false, "Icmp", "::ffff:10.1.2.3", 0, "10.1.0.9", 0)
	f.Fuzz(func(t *testing.T,
		p1 int32, a1, proto1, src1, dst1, ports1 string,
		p2 int32, a2, proto2, src2, dst2, ports2 string,
		inbound bool, proto, src string, sport int, dst string, dport int,
	) {
		dir := "Outbound"
		if inbound {
			dir = "Inbound"
		}
		rules := []Rule{
			fuzzRule("r1", p1, dir, a1, proto1, src1, dst1, "*", ports1, ""),
			fuzzRule("r2", p2, dir, a2, proto2, src2, dst2, "*", ports2, ""),
		}
		for i, r := range rules {
			if err := ValidateRule(testNSG, r, rules[:i]); err != nil {
				t.Skip("not a rule Azure accepts")
			}
			for _, s := range append(append([]string{}, r.SourcePrefixes...), r.DestinationPrefixes...) {
				if p, _ := parsePrefix(s); p.kind == prefixTag {
					t.Skip("service tags are outside the naive model")
				}
			}
		}
		fl := Flow{Direction: dir, Protocol: proto, Source: src, SourcePort: sport, Destination: dst, DestinationPort: dport}

		got := Evaluate(rules, fl, Env{})
		var want *Rule
		for i := range rules {
			if naiveMatch(rules[i], fl) && (want == nil || rules[i].Priority < want.Priority) {
				want = &rules[i]
			}
		}
		switch {
		case want == nil && !got.Default:
			t.Fatalf("Evaluate() = %+v, naive model: no user rule matches", got)
		case want != nil && (got.RuleName != want.Name || got.Allowed != strings.EqualFold(want.Access, "Allow")):
			t.Fatalf("Evaluate() = %+v, naive model: %s", got, want.Name)
		}

		denyAll := fuzzRule("deny-all", MinPriority, dir, "Deny", "*", "*", "*", "*", "*", "")
		if m := Evaluate(append(rules, denyAll), fl, Env{}); m.Allowed && p1 != MinPriority && p2 != MinPriority {
			t.Fatalf("Evaluate() with Deny * at %d = %+v", MinPriority, m)
		}
	})
}
