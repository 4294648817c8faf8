package jit

import (
	"strings"
	"testing"
)

func TestAdminOverrides(t *testing.T) {
	p, err := NewPolicy(PolicyInput{Name: "web", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.0/24"),
		Ports: []PortInput{{22, "Tcp", "1h"}, {3389, "Tcp", "1h"}}, BandStart: 100, BandEnd: 199})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(name, access string, prio int32, src, dst []string, ports ...string) AdminRule {
		return AdminRule{Name: name, Priority: prio, Access: access, Direction: Inbound, Protocol: "Tcp",
			Sources: src, Destinations: dst, SourcePorts: list("0-65535"), DestinationPorts: ports}
	}
	for _, tc := range []struct {
		name string
		rule AdminRule
		want []string // "kind port"
	}{
		{"always allow from the Internet on 22", rule("ssh-anywhere", AdminAlwaysAllow, 10, list("Internet"), list("*"), "22"), []string{"always_allow 22/Tcp"}},
		{"always allow on every port of the VM", rule("all", AdminAlwaysAllow, 10, list("10.0.0.0/8"), list("10.0.1.0/24")), []string{"always_allow 22/Tcp", "always_allow 3389/Tcp"}},
		{"always allow to another VM", rule("other-vm", AdminAlwaysAllow, 10, list("*"), list("10.0.2.4"), "22"), nil},
		{"always allow on another port", rule("https", AdminAlwaysAllow, 10, list("*"), list("*"), "443"), nil},
		{"deny from an allowed range blocks grants", rule("no-ssh", AdminDeny, 10, list("203.0.113.0/25"), list("*"), "22"), []string{"deny 22/Tcp"}},
		{"deny from outside the allowed sources changes nothing", rule("no-ssh-partner", AdminDeny, 10, list("198.51.100.0/24"), list("*"), "22"), nil},
		{"deny from a service tag may include them", rule("no-internet", AdminDeny, 10, list("Internet"), list("*"), "22-23"), []string{"deny 22/Tcp"}},
		{"allow defers to the NSGs", rule("allow-ssh", AdminAllow, 10, list("*"), list("*"), "22"), nil},
		{"outbound rules do not count", func() AdminRule {
			r := rule("out", AdminAlwaysAllow, 10, list("*"), list("*"), "22")
			r.Direction = Outbound
			return r
		}(), nil},
		{"Any protocol", func() AdminRule {
			r := rule("any", AdminAlwaysAllow, 10, list("*"), list("*"), "22")
			r.Protocol = "Any"
			return r
		}(), []string{"always_allow 22/Tcp"}},
		{"Udp only", func() AdminRule {
			r := rule("udp", AdminAlwaysAllow, 10, list("*"), list("*"), "22")
			r.Protocol = "Udp"
			return r
		}(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, o := range p.AdminOverrides([]AdminRule{tc.rule}) {
				got = append(got, o.Kind+" "+o.Port.String())
				if !strings.Contains(o.Reason, tc.rule.Name) {
					t.Errorf("reason %q does not name the rule", o.Reason)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("overrides %q, want %q", got, tc.want)
			}
		})
	}
}
