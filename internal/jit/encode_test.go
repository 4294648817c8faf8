package jit

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// rule builds an expected inbound JIT rule with any source port.
func rule(name string, prio int32, access Access, proto Protocol, src, dst, ports []string, desc string) SecurityRule {
	return SecurityRule{Name: name, Priority: prio, Direction: Inbound, Access: access, Protocol: proto,
		SourcePrefixes: src, SourcePorts: []string{"*"}, DestinationPrefixes: dst, DestinationPorts: ports, Description: desc}
}

func list(s ...string) []string { return s }

func TestRulesGolden(t *testing.T) {
	star := list("*")
	tests := []struct {
		name string
		in   PolicyInput
		want []SecurityRule
	}{
		{
			name: "one IPv4 destination, one allowed /31, uniform durations",
			in: PolicyInput{Name: "ssh", DestinationPrefixes: list("10.0.1.4"), AllowedSources: list("203.0.113.6/31"),
				Ports: []PortInput{{22, "Tcp", "3h"}, {2222, "Tcp", "180m"}}, BandStart: 100, BandEnd: 199},
			want: []SecurityRule{
				rule("jit-ssh-guard-tcp", 100, Deny, ProtocolTCP,
					list("0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/5", "200.0.0.0/7", "202.0.0.0/8", "203.0.0.0/18",
						"203.0.64.0/19", "203.0.96.0/20", "203.0.112.0/24", "203.0.113.0/30", "203.0.113.4/31",
						"203.0.113.8/29", "203.0.113.16/28", "203.0.113.32/27", "203.0.113.64/26", "203.0.113.128/25",
						"203.0.114.0/23", "203.0.116.0/22", "203.0.120.0/21", "203.0.128.0/17", "203.1.0.0/16",
						"203.2.0.0/15", "203.4.0.0/14", "203.8.0.0/13", "203.16.0.0/12", "203.32.0.0/11", "203.64.0.0/10",
						"203.128.0.0/9", "204.0.0.0/6", "208.0.0.0/4", "224.0.0.0/3"),
					list("10.0.1.4"), list("22", "2222"), "jit:v1 role=guard band=100-199 guard=v4 max=3h"),
				rule("jit-ssh-deny-tcp", 199, Deny, ProtocolTCP, star, list("10.0.1.4"), list("22", "2222"),
					"jit:v1 role=deny band=100-199 guard=v4 max=3h"),
			},
		},
		{
			name: "both families, three protocol groups, per-port durations",
			in: PolicyInput{Name: "mgmt", DestinationPrefixes: list("2001:db8::4", "10.0.1.0/24"),
				AllowedSources: list("128.0.0.0/1", "8000::/1"),
				Ports:          []PortInput{{3389, "Tcp", "1h"}, {22, "Tcp", "3h"}, {500, "Udp", "10m"}, {5985, "*", "30m"}},
				BandStart:      1000, BandEnd: 1012},
			want: []SecurityRule{
				rule("jit-mgmt-guard-tcp", 1000, Deny, ProtocolTCP, list("0.0.0.0/1"), list("10.0.1.0/24"), list("22", "3389"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=22:3h,3389:1h"),
				rule("jit-mgmt-guard-tcp-v6", 1001, Deny, ProtocolTCP, list("::/1"), list("2001:db8::4"), list("22", "3389"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=22:3h,3389:1h"),
				rule("jit-mgmt-guard-udp", 1002, Deny, ProtocolUDP, list("0.0.0.0/1"), list("10.0.1.0/24"), list("500"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=10m"),
				rule("jit-mgmt-guard-udp-v6", 1003, Deny, ProtocolUDP, list("::/1"), list("2001:db8::4"), list("500"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=10m"),
				rule("jit-mgmt-guard-any", 1004, Deny, ProtocolAny, list("0.0.0.0/1"), list("10.0.1.0/24"), list("5985"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=30m"),
				rule("jit-mgmt-guard-any-v6", 1005, Deny, ProtocolAny, list("::/1"), list("2001:db8::4"), list("5985"), "jit:v1 role=guard band=1000-1012 guard=v4,v6 max=30m"),
				rule("jit-mgmt-deny-any-v6", 1007, Deny, ProtocolAny, star, list("2001:db8::4"), list("5985"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=30m"),
				rule("jit-mgmt-deny-any", 1008, Deny, ProtocolAny, star, list("10.0.1.0/24"), list("5985"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=30m"),
				rule("jit-mgmt-deny-udp-v6", 1009, Deny, ProtocolUDP, star, list("2001:db8::4"), list("500"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=10m"),
				rule("jit-mgmt-deny-udp", 1010, Deny, ProtocolUDP, star, list("10.0.1.0/24"), list("500"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=10m"),
				rule("jit-mgmt-deny-tcp-v6", 1011, Deny, ProtocolTCP, star, list("2001:db8::4"), list("22", "3389"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=22:3h,3389:1h"),
				rule("jit-mgmt-deny-tcp", 1012, Deny, ProtocolTCP, star, list("10.0.1.0/24"), list("22", "3389"), "jit:v1 role=deny band=1000-1012 guard=v4,v6 max=22:3h,3389:1h"),
			},
		},
		{
			name: "destination * with IPv4 sources: IPv6 guard denies all IPv6, one deny-all",
			in: PolicyInput{Name: "rdp", DestinationPrefixes: list("*"), AllowedSources: list("0.0.0.0/2", "192.0.0.0/2"),
				Ports: []PortInput{{3389, "Tcp", "1h30m"}}, BandStart: 300, BandEnd: 399},
			want: []SecurityRule{
				rule("jit-rdp-guard-tcp", 300, Deny, ProtocolTCP, list("64.0.0.0/2", "128.0.0.0/2"), star, list("3389"), "jit:v1 role=guard band=300-399 guard=v4,v6 max=1h30m"),
				rule("jit-rdp-guard-tcp-v6", 301, Deny, ProtocolTCP, list("::/0"), star, list("3389"), "jit:v1 role=guard band=300-399 guard=v4,v6 max=1h30m"),
				rule("jit-rdp-deny-tcp", 399, Deny, ProtocolTCP, star, star, list("3389"), "jit:v1 role=deny band=300-399 guard=v4,v6 max=1h30m"),
			},
		},
		{
			name: "any source: deny-all only",
			in: PolicyInput{Name: "dns", DestinationPrefixes: list("*"), AllowedSources: list("*"),
				Ports: []PortInput{{53, "Udp", "15m"}}, BandStart: 4000, BandEnd: 4096},
			want: []SecurityRule{
				rule("jit-dns-deny-udp", 4094, Deny, ProtocolUDP, star, star, list("53"), "jit:v1 role=deny band=4000-4096 guard=none max=15m"),
			},
		},
		{
			name: "a family whose allowed sources are the whole family has no guard",
			in: PolicyInput{Name: "x", DestinationPrefixes: list("10.0.0.4", "fd00::4"), AllowedSources: list("0.0.0.0/0", "fd00::/8"),
				Ports: []PortInput{{22, "Tcp", "1h"}}, BandStart: 100, BandEnd: 112},
			want: []SecurityRule{
				rule("jit-x-guard-tcp-v6", 101, Deny, ProtocolTCP, list("::/1", "8000::/2", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fc00::/8", "fe00::/7"),
					list("fd00::4"), list("22"), "jit:v1 role=guard band=100-112 guard=v6 max=1h"),
				rule("jit-x-deny-tcp-v6", 111, Deny, ProtocolTCP, star, list("fd00::4"), list("22"), "jit:v1 role=deny band=100-112 guard=v6 max=1h"),
				rule("jit-x-deny-tcp", 112, Deny, ProtocolTCP, star, list("10.0.0.4"), list("22"), "jit:v1 role=deny band=100-112 guard=v6 max=1h"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.in)
			got := p.Rules()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Rules() differ")
				for i := range max(len(got), len(tt.want)) {
					var g, w SecurityRule
					if i < len(got) {
						g = got[i]
					}
					if i < len(tt.want) {
						w = tt.want[i]
					}
					if !reflect.DeepEqual(g, w) {
						t.Errorf("rule %d:\n got  %+v\n want %+v", i, g, w)
					}
				}
			}
			names := p.GuardAndDenyNames()
			if len(names) != len(tt.want) {
				t.Fatalf("GuardAndDenyNames() = %v", names)
			}
			for i, r := range tt.want {
				if names[i] != r.Name {
					t.Errorf("GuardAndDenyNames()[%d] = %q, want %q", i, names[i], r.Name)
				}
				if len(r.Name) > MaxRuleNameLength || len(r.Description) > MaxDescriptionLength {
					t.Errorf("rule %q exceeds Azure's name or description limit", r.Name)
				}
			}
		})
	}
}

func TestLongestNamesFit(t *testing.T) {
	name := strings.Repeat("a", MaxNameLength)
	if n := len(guardName(name, groupUDP, IPv6)); n > MaxRuleNameLength {
		t.Errorf("longest guard name is %d characters", n)
	}
	if n := len(GrantRuleName(name, strings.Repeat("9", 16))); n > MaxRuleNameLength {
		t.Errorf("longest grant name is %d characters", n)
	}
}

func TestParseRuleName(t *testing.T) {
	tests := []struct {
		name string
		want ruleName
		ok   bool
	}{
		{"jit-ssh-guard-tcp", ruleName{policy: "ssh", role: RoleGuard, group: groupTCP, family: IPv4}, true},
		{"jit-ssh-deny-udp-v6", ruleName{policy: "ssh", role: RoleDeny, group: groupUDP, family: IPv6}, true},
		{"jit-a-deny-tcp-deny-any", ruleName{policy: "a-deny-tcp", role: RoleDeny, group: groupAny, family: IPv4}, true},
		{"jit-web-g-guard-tcp", ruleName{policy: "web-g", role: RoleGuard, group: groupTCP, family: IPv4}, true},
		{"jit-x-g-tcp-g-a1", ruleName{policy: "x-g-tcp", role: RoleGrant, grantID: "a1"}, true},
		{"jit-ssh-g-0123456789abcdef", ruleName{policy: "ssh", role: RoleGrant, grantID: "0123456789abcdef"}, true},
		{"jit-ssh-g-0123456789abcdefg", ruleName{}, false}, // id too long, and "ssh-g" + "0123…" is no role
		{"jit-ssh-g-A1", ruleName{}, false},
		{"jit-Ssh-deny-tcp", ruleName{}, false},
		{"jit--deny-tcp", ruleName{}, false},
		{"jit-a--b-deny-tcp", ruleName{}, false},
		{"jit-ssh-deny-icmp", ruleName{}, false},
		{"jit-ssh-deny-tcp-v4", ruleName{}, false},
		{"jit-ssh-deny-tcp ", ruleName{}, false},
		{"xjit-ssh-deny-tcp", ruleName{}, false},
		{"jit-ssh", ruleName{}, false},
	}
	for _, tt := range tests {
		got, ok := parseRuleName(tt.name)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseRuleName(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDescriptionCodec(t *testing.T) {
	exp := time.Unix(1767225600, 0).UTC()
	valid := []struct {
		s    string
		want Description
	}{
		{"jit:v1 role=guard band=100-199 guard=v4 max=3h", Description{Role: RoleGuard, Band: Band{100, 199}, Guards: []int{IPv4}, MaxDurations: []PortDuration{{0, 3 * time.Hour}}}},
		{"jit:v1 role=deny band=100-199 guard=v4 max=3h", Description{Role: RoleDeny, Band: Band{100, 199}, Guards: []int{IPv4}, MaxDurations: []PortDuration{{0, 3 * time.Hour}}}},
		{"jit:v1 role=deny band=4084-4096 guard=v4 max=22:3h,3389:1h30m", Description{Role: RoleDeny, Band: Band{4084, 4096}, Guards: []int{IPv4},
			MaxDurations: []PortDuration{{22, 3 * time.Hour}, {3389, 90 * time.Minute}}}},
		{"jit:v1 role=deny band=100-199 guard=v4 max=3h sessions=end", Description{Role: RoleDeny, Band: Band{100, 199}, Guards: []int{IPv4}, MaxDurations: []PortDuration{{0, 3 * time.Hour}}, EndSessions: true}},
		{"jit:v1 role=guard band=100-199 guard=v4 max=3h sessions=end", Description{Role: RoleGuard, Band: Band{100, 199}, Guards: []int{IPv4}, MaxDurations: []PortDuration{{0, 3 * time.Hour}}, EndSessions: true}},
		{"jit:v1 role=grant id=a1b2 exp=1767225600 sum=0123456789 by=alice@example.com", Description{Role: RoleGrant, GrantID: "a1b2", ExpiresAt: exp, Sum: "0123456789", Requester: "alice@example.com"}},
		{"jit:v1 role=grant id=x exp=1767225600 sum=abcdefghij by=", Description{Role: RoleGrant, GrantID: "x", ExpiresAt: exp, Sum: "abcdefghij"}},
		{"jit:v1 role=ended id=a1b2 exp=1767225600 by=alice@example.com", Description{Role: RoleEnded, GrantID: "a1b2", ExpiresAt: exp, Requester: "alice@example.com"}},
	}
	for _, tt := range valid {
		got, err := ParseDescription(tt.s)
		if err != nil {
			t.Errorf("ParseDescription(%q): %v", tt.s, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseDescription(%q) = %+v, want %+v", tt.s, got, tt.want)
		}
		if s := tt.want.String(); s != tt.s {
			t.Errorf("String() = %q, want %q", s, tt.s)
		}
	}

	invalid := map[string]string{
		"":                                                           "does not start with",
		"allow ssh":                                                  "does not start with",
		"jit:v2 role=guard band=100-199":                             `version "jit:v2" is not supported`,
		"jit: role=guard band=100-199":                               "not supported",
		"jit:v1":                                                     `role "" is not one of`,
		"jit:v1 role=allow band=100-199":                             `role "allow"`,
		"jit:v1 role=guard":                                          "band",
		"jit:v1 role=guard band=100-199 x=1":                         "keys role,band,x",
		"jit:v1 role=guard band=100-199":                             "keys role,band, want role,band,guard,max",
		"jit:v1 band=100-199 role=guard":                             "keys band,role",
		"jit:v1 role=guard role=guard":                               "repeats key",
		"jit:v1 role=guard band":                                     "not key=value",
		"jit:v1 role=guard  band=100-199":                            "not key=value",
		"jit:v1 role=guard band=100-199 ":                            "not key=value",
		"jit:v1 role=guard band=100-110":                             "band",
		"jit:v1 role=guard band=50-199":                              "band",
		"jit:v1 role=guard band=100-5000":                            "band",
		"jit:v1 role=guard band=+100-199 guard=v4 max=3h":            "canonical",
		"jit:v1 role=guard band=0100-199 guard=v4 max=3h":            "canonical",
		"jit:v1 role=deny band=100-199":                              "keys",
		"jit:v1 role=deny band=100-199 guard=v4 max=3h sessions=yes": `sessions "yes" is not "end"`,
		"jit:v1 role=deny band=100-199 guard=v4 max=3h sessions=":    `sessions "" is not "end"`,
		"jit:v1 role=deny band=100-199 guard=v4 sessions=end max=3h": "keys role,band,guard,sessions,max",
		"jit:v1 role=grant id=x exp=1767225600 sum=0123456789 by=a sessions=end":      "keys role,id,exp,sum,by,sessions",
		"jit:v1 role=deny band=100-199 guard=v4 max=180m":                             "canonical",
		"jit:v1 role=deny band=100-199 guard=v4 max=3h0m":                             "canonical",
		"jit:v1 role=deny band=100-199 guard=v4 max=25h":                              "not between 5m and 24h",
		"jit:v1 role=deny band=100-199 guard=v4 max=4m":                               "not between",
		"jit:v1 role=deny band=100-199 guard=v4 max=1y":                               "not between",
		"jit:v1 role=deny band=100-199 guard=v4 max=0:1h":                             "not <port>:<duration>",
		"jit:v1 role=deny band=100-199 guard=v4 max=22:1h,22:2h":                      "ascending",
		"jit:v1 role=deny band=100-199 guard=v4 max=80:1h,22:2h":                      "ascending",
		"jit:v1 role=deny band=100-199 guard=v4 max=x:1h":                             "not <port>:<duration>",
		"jit:v1 role=deny band=100-199 guard=v4 max=22:":                              "not between",
		"jit:v1 role=grant id=A1 exp=1 sum=0123456789 by=x":                           "grant id",
		"jit:v1 role=grant id=a1 exp=0 sum=0123456789 by=x":                           "expiry",
		"jit:v1 role=grant id=a1 exp=-5 sum=0123456789 by=x":                          "expiry",
		"jit:v1 role=grant id=a1 exp=01 sum=0123456789 by=x":                          "canonical",
		"jit:v1 role=grant id=a1 exp=1 sum=0123456789 by=a/b":                         "requester",
		"jit:v1 role=grant id=a1 exp=1 sum=0123456789":                                "keys",
		"jit:v1 role=grant id=a1 exp=1 by=x":                                          "keys role,id,exp,by, want role,id,exp,sum,by",
		"jit:v1 role=grant id=a1 exp=1 sum=012345678 by=x":                            "grant sum",
		"jit:v1 role=grant id=a1 exp=1 sum=012345678A by=x":                           "grant sum",
		"jit:v1 role=ended id=a1 exp=1 sum=0123456789 by=x":                           "keys role,id,exp,sum,by, want role,id,exp,by",
		"jit:v1 role=grant id=a1 exp=1 sum=0123456789 by=" + strings.Repeat("a", 120): "over the limit of 140",
	}
	for s, want := range invalid {
		if d, err := ParseDescription(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDescription(%q) = %+v, %v; want an error containing %q", s, d, err, want)
		}
	}
}

func TestNewGrantDescription(t *testing.T) {
	exp := time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.FixedZone("x", 3600))
	d := NewGrantDescription("a1", exp, "Jane Doe <jane@example.com>")
	if d.Requester != "Jane_Doe__jane@example.com_" {
		t.Errorf("Requester = %q", d.Requester)
	}
	if !d.ExpiresAt.Equal(time.Unix(exp.Unix(), 0)) {
		t.Errorf("ExpiresAt = %v, want %v truncated to seconds", d.ExpiresAt, exp)
	}
	back, err := ParseDescription(d.String())
	if err != nil || !reflect.DeepEqual(back, d) {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, d)
	}

	long := NewGrantDescription("0123456789abcdef", exp, strings.Repeat("é", 200))
	if s := long.String(); len(s) != MaxDescriptionLength {
		t.Errorf("long requester gives a %d-character description, want exactly %d", len(s), MaxDescriptionLength)
	}
	if _, err := ParseDescription(long.String()); err != nil {
		t.Errorf("truncated description does not parse: %v", err)
	}
}
