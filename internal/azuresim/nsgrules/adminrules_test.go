package nsgrules

import (
	"strconv"
	"strings"
	"testing"
)

func ip(p string) AddressPrefix  { return AddressPrefix{Prefix: p, Type: PrefixTypeIPPrefix} }
func tag(p string) AddressPrefix { return AddressPrefix{Prefix: p, Type: PrefixTypeServiceTag} }

func adminRule(name string, prio int32, access, proto string, src []AddressPrefix, dports ...string) AdminRule {
	return AdminRule{Name: name, Priority: prio, Direction: "Inbound", Access: access, Protocol: proto,
		Sources: src, Destinations: []AddressPrefix{ip("*")}, DestinationPorts: dports}
}

func TestEvaluateAdmin(t *testing.T) {
	rules := []AdminRule{
		adminRule("deny-ssh", 200, AdminDeny, "Tcp", []AddressPrefix{tag("Internet")}, "22"),
		adminRule("always-bastion", 100, AdminAlwaysAllow, "Tcp", []AddressPrefix{ip("10.0.9.0/24")}, "22"),
		adminRule("allow-office", 150, AdminAllow, "Any", []AddressPrefix{ip("203.0.113.0/24")}, "22", "3389"),
		adminRule("group", 50, AdminDeny, "Any", []AddressPrefix{{Prefix: "/subscriptions/x/networkGroups/g", Type: PrefixTypeNetworkGroup}}),
		{Name: "out", Priority: 1, Direction: "Outbound", Access: AdminDeny, Protocol: "Any"},
	}
	tests := []struct {
		name       string
		f          Flow
		matched    bool
		rule       string
		access     string
		decides    bool
		allowedNSG bool // verdict when the NSGs allow everything
	}{
		{"always allow beats the rest", in("Tcp", "10.0.9.5", 22, "10.0.0.4"), true, "always-bastion", AdminAlwaysAllow, true, true},
		{"allow defers to NSGs", in("Tcp", "203.0.113.7", 22, "10.0.0.4"), true, "allow-office", AdminAllow, false, true},
		{"allow with protocol Any covers Udp", in("Udp", "203.0.113.7", 3389, "10.0.0.4"), true, "allow-office", AdminAllow, false, true},
		{"deny from the Internet", in("Tcp", "198.51.100.1", 22, "10.0.0.4"), true, "deny-ssh", AdminDeny, true, false},
		{"other port: no admin rule", in("Tcp", "198.51.100.1", 443, "10.0.0.4"), false, "", "", false, true},
		{"outbound rule ignores inbound flows", in("Icmp", "10.1.0.1", 0, "10.0.0.4"), false, "", "", false, true},
		{"outbound deny", out("Tcp", "10.0.0.4", 443, "198.51.100.1"), true, "out", AdminDeny, true, false},
	}
	allowAll := [][]Rule{{rule("allow-all", 100, "Inbound", "Allow", "*", list("*"), list("*"), "*"),
		rule("allow-all-out", 100, "Outbound", "Allow", "*", list("*"), list("*"), "*")}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := EvaluateAdmin(rules, tc.f, Env{})
			if m.Matched != tc.matched || m.RuleName != tc.rule || m.Access != tc.access || m.Decides() != tc.decides {
				t.Fatalf("EvaluateAdmin = %+v, want matched=%v %q %q decides=%v", m, tc.matched, tc.rule, tc.access, tc.decides)
			}
			d := EvaluateWithAdmin(rules, allowAll, tc.f, Env{})
			if d.Allowed != tc.allowedNSG {
				t.Errorf("EvaluateWithAdmin allowed = %v, want %v (%+v)", d.Allowed, tc.allowedNSG, d)
			}
			if tc.decides != (d.NSGIndex == -1) {
				t.Errorf("NSGIndex = %d with an admin decision %v", d.NSGIndex, tc.decides)
			}
		})
	}
}

// An admin AlwaysAllow opens what every NSG denies; an admin Deny closes
// what every NSG allows; an admin Allow leaves the NSGs' verdict alone.
func TestEvaluateWithAdminAgainstNSGs(t *testing.T) {
	f := in("Tcp", "198.51.100.1", 22, "10.0.0.4")
	denyNSG := [][]Rule{{}} // the default DenyAllInBound decides
	grantNSG := [][]Rule{{rule("jit-web-g-1", 150, "Inbound", "Allow", "Tcp", list("198.51.100.1/32"), list("*"), "22")}}
	for _, tc := range []struct {
		name    string
		admin   []AdminRule
		nsgs    [][]Rule
		allowed bool
		nsgRule string
	}{
		{"AlwaysAllow beats the NSG deny", []AdminRule{adminRule("a", 10, AdminAlwaysAllow, "Tcp", nil, "22")}, denyNSG, true, ""},
		{"Deny beats the grant", []AdminRule{adminRule("d", 10, AdminDeny, "Tcp", nil, "22")}, grantNSG, false, ""},
		{"Allow defers to the NSG deny", []AdminRule{adminRule("a", 10, AdminAllow, "Tcp", nil, "22")}, denyNSG, false, "DenyAllInBound"},
		{"Allow defers to the grant", []AdminRule{adminRule("a", 10, AdminAllow, "Tcp", nil, "22")}, grantNSG, true, "jit-web-g-1"},
		{"lower number first: Deny at 5 beats AlwaysAllow at 10", []AdminRule{
			adminRule("a", 10, AdminAlwaysAllow, "Tcp", nil, "22"), adminRule("d", 5, AdminDeny, "Tcp", nil, "22")}, denyNSG, false, ""},
		{"lower number first: Allow at 5 shadows Deny at 10", []AdminRule{
			adminRule("d", 10, AdminDeny, "Tcp", nil, "22"), adminRule("a", 5, AdminAllow, "Tcp", nil, "22")}, grantNSG, true, "jit-web-g-1"},
		{"no NSG and admin Allow: not filtered", []AdminRule{adminRule("a", 10, AdminAllow, "Tcp", nil, "22")}, nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := EvaluateWithAdmin(tc.admin, tc.nsgs, f, Env{})
			if d.Allowed != tc.allowed || d.NSG.RuleName != tc.nsgRule {
				t.Errorf("got %+v, want allowed=%v by NSG rule %q", d, tc.allowed, tc.nsgRule)
			}
		})
	}
}

func TestValidateAdminRule(t *testing.T) {
	good := AdminRule{Name: "deny-ssh", Priority: 100, Direction: "Inbound", Access: "AlwaysAllow", Protocol: "Tcp",
		Sources: []AddressPrefix{ip("10.0.0.0/8"), tag("VirtualNetwork")}, Destinations: []AddressPrefix{ip("*")},
		SourcePorts: []string{"0-65535"}, DestinationPorts: []string{"22", "3389-3390"}}
	if err := ValidateAdminRule(good); err != nil {
		t.Fatalf("valid rule refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*AdminRule)
		want string
	}{
		{"no name", func(r *AdminRule) { r.Name = "" }, "name"},
		{"priority 0", func(r *AdminRule) { r.Priority = 0 }, "priority"},
		{"priority 4097", func(r *AdminRule) { r.Priority = 4097 }, "priority"},
		{"access Block", func(r *AdminRule) { r.Access = "Block" }, "access"},
		{"protocol *", func(r *AdminRule) { r.Protocol = "*" }, "protocol"},
		{"direction", func(r *AdminRule) { r.Direction = "Both" }, "direction"},
		{"tag as IPPrefix", func(r *AdminRule) { r.Sources = []AddressPrefix{ip("Internet")} }, "source"},
		{"CIDR as ServiceTag", func(r *AdminRule) { r.Destinations = []AddressPrefix{tag("10.0.0.0/8")} }, "destination"},
		{"unknown type", func(r *AdminRule) { r.Sources = []AddressPrefix{{Prefix: "10.0.0.1", Type: "Range"}} }, "type"},
		{"host bits", func(r *AdminRule) { r.Sources = []AddressPrefix{ip("10.0.0.1/8")} }, "source"},
		{"port", func(r *AdminRule) { r.DestinationPorts = []string{"22-21"} }, "port range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			err := ValidateAdminRule(r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidateAdminRule = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func naiveAdminItems(items []AddressPrefix, addr string) bool {
	if len(items) == 0 {
		return true
	}
	var prefixes []string
	for _, it := range items {
		prefixes = append(prefixes, it.Prefix)
	}
	return naiveAddrIn(prefixes, addr)
}

func naiveAdminMatch(r AdminRule, f Flow) bool {
	if !strings.EqualFold(r.Protocol, "Any") && !strings.EqualFold(r.Protocol, f.Protocol) {
		return false
	}
	if !naiveAdminItems(r.Sources, f.Source) || !naiveAdminItems(r.Destinations, f.Destination) {
		return false
	}
	p := strings.ToLower(f.Protocol)
	if p == "icmp" || p == "esp" || p == "ah" {
		return true
	}
	anyPort := func(ranges []string, port int) bool { return len(ranges) == 0 || naivePortIn(ranges, port) }
	return anyPort(r.SourcePorts, f.SourcePort) && anyPort(r.DestinationPorts, f.DestinationPort)
}

// FuzzEvaluateWithAdmin compares EvaluateAdmin with a naive reading of two
// valid IP-prefix admin rules, and checks the layering: an AlwaysAllow or
// Deny match decides alone, anything else is the NSGs' verdict.
func FuzzEvaluateWithAdmin(f *testing.F) {
	f.Add(int32(100), "Deny", "Tcp", "0.0.0.0/0", "22",
		int32(50), "AlwaysAllow", "Any", "10.0.9.0/24", "",
		"Tcp", "10.0.9.4", 50000, "10.0.0.4", 22, true)
	f.Add(int32(4096), "Allow", "Udp", "2001:db8::/32", "53,1000-2000",
		int32(1), "Deny", "Icmp", "*", "*",
		"Udp", "2001:db8::1", 1, "fd00::4", 1500, false)
	f.Fuzz(func(t *testing.T,
		p1 int32, a1, proto1, src1, ports1 string,
		p2 int32, a2, proto2, src2, ports2 string,
		proto, src string, sport int, dst string, dport int, nsgAllows bool,
	) {
		mk := func(name string, p int32, a, proto, src, ports string) AdminRule {
			r := AdminRule{Name: name, Priority: p, Direction: "Inbound", Access: a, Protocol: proto}
			if src != "" {
				for _, s := range strings.Split(src, ",") {
					r.Sources = append(r.Sources, ip(s))
				}
			}
			if ports != "" {
				r.DestinationPorts = strings.Split(ports, ",")
			}
			return r
		}
		rules := []AdminRule{mk("r1", p1, a1, proto1, src1, ports1), mk("r2", p2, a2, proto2, src2, ports2)}
		for _, r := range rules {
			if ValidateAdminRule(r) != nil {
				t.Skip("not a rule Azure accepts")
			}
		}
		fl := Flow{Direction: "Inbound", Protocol: proto, Source: src, SourcePort: sport, Destination: dst, DestinationPort: dport}
		got := EvaluateAdmin(rules, fl, Env{})
		var want *AdminRule
		for i := range rules {
			if naiveAdminMatch(rules[i], fl) && (want == nil || rules[i].Priority < want.Priority) {
				want = &rules[i]
			}
		}
		switch {
		case want == nil && got.Matched:
			t.Fatalf("EvaluateAdmin() = %+v, naive model: no match", got)
		case want != nil && (!got.Matched || got.Priority != want.Priority):
			t.Fatalf("EvaluateAdmin() = %+v, naive model: %s", got, want.Name)
		}

		access := "Deny"
		if nsgAllows {
			access = "Allow"
		}
		nsgs := [][]Rule{{rule("nsg", 100, "Inbound", access, "*", list("*"), list("*"), "*")}}
		d := EvaluateWithAdmin(rules, nsgs, fl, Env{})
		_, nsgMatch := EvaluatePath(nsgs, fl, Env{})
		switch {
		case got.Matched && got.Access == AdminAlwaysAllow && (!d.Allowed || d.NSGIndex != -1):
			t.Fatalf("AlwaysAllow match, decision %+v", d)
		case got.Matched && got.Access == AdminDeny && (d.Allowed || d.NSGIndex != -1):
			t.Fatalf("Deny match, decision %+v", d)
		case !got.Decides() && (d.Allowed != nsgMatch.Allowed || d.NSG != nsgMatch):
			t.Fatalf("no deciding admin rule, decision %+v, NSGs %+v", d, nsgMatch)
		}
	})
}

// BenchmarkEvaluateWithAdmin prints the cost of judging one flow that no
// admin rule decides: 100 admin rules (none matching), then two full NSGs.
func BenchmarkEvaluateWithAdmin(b *testing.B) {
	admin := make([]AdminRule, 0, 100)
	for i := range 100 {
		admin = append(admin, adminRule("a"+strconv.Itoa(i), int32(1+i), AdminDeny, "Tcp",
			[]AddressPrefix{ip("198.51.100." + strconv.Itoa(i))}, strconv.Itoa(2000+i)))
	}
	nsg := make([]Rule, 0, MaxRules)
	for i := range MaxRules {
		nsg = append(nsg, rule("r"+strconv.Itoa(i), int32(MinPriority+i), "Inbound", "Deny", "Tcp",
			list("198.51.100."+strconv.Itoa(i%256)), list("10.0.0.4"), strconv.Itoa(1000+i)))
	}
	f := in("Tcp", "203.0.113.7", 22, "10.0.0.4")
	for b.Loop() {
		if d := EvaluateWithAdmin(admin, [][]Rule{nsg, nsg}, f, Env{}); d.Allowed || d.Admin.Matched {
			b.Fatal("unexpected verdict")
		}
	}
}
