package jit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// validInput is a policy every validation case starts from.
func validInput() PolicyInput {
	return PolicyInput{
		Name:                "ssh",
		DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources:      []string{"203.0.113.0/24"},
		Ports:               []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}},
		BandStart:           100,
		BandEnd:             199,
	}
}

func TestNewPolicyValid(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*PolicyInput)
		want   Policy
	}{
		{
			name:   "minimal",
			modify: func(*PolicyInput) {},
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name: "canonical forms: /32 and /128 plain, sorted v4 first, ports sorted, IPv6 lower-case",
			modify: func(in *PolicyInput) {
				in.Name = "a"
				in.DestinationPrefixes = []string{"2001:DB8::4/128", "10.0.2.0/24", "10.0.1.4/32"}
				in.AllowedSources = []string{"2001:db8:1::/48", "198.51.100.7/32", "203.0.113.0/24"}
				in.Ports = []PortInput{{3389, "Tcp", "90m"}, {53, "Udp", "1h0m0s"}, {22, "Tcp", "3h"}, {22, "Udp", "5m"}}
				in.BandStart, in.BandEnd = 4084, 4096
			},
			want: Policy{Name: "a",
				DestinationPrefixes: []string{"10.0.1.4", "10.0.2.0/24", "2001:db8::4"},
				AllowedSources:      []string{"198.51.100.7", "203.0.113.0/24", "2001:db8:1::/48"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}, {22, ProtocolUDP, 5 * time.Minute},
					{53, ProtocolUDP, time.Hour}, {3389, ProtocolTCP, 90 * time.Minute}},
				Band: Band{4084, 4096}},
		},
		{
			name:   "adjacent sources merge into their minimal cover",
			modify: func(in *PolicyInput) { in.AllowedSources = []string{"10.0.0.128/25", "10.0.0.0/25", "10.0.1.0/24"} },
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"10.0.0.0/23"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name:   "Any is any source",
			modify: func(in *PolicyInput) { in.AllowedSources = []string{"Any"} },
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"*"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name: "both whole families are any source",
			modify: func(in *PolicyInput) {
				in.DestinationPrefixes = []string{"*"}
				in.AllowedSources = []string{"::/0", "0.0.0.0/0"}
			},
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"*"}, AllowedSources: []string{"*"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name:   "the whole family of the only destination family is any source",
			modify: func(in *PolicyInput) { in.AllowedSources = []string{"0.0.0.0/0"} },
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"*"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name: "destination * with IPv4 sources only",
			modify: func(in *PolicyInput) {
				in.DestinationPrefixes = []string{"*"}
				in.AllowedSources = []string{"0.0.0.0/0"}
			},
			want: Policy{Name: "ssh", DestinationPrefixes: []string{"*"}, AllowedSources: []string{"0.0.0.0/0"},
				Ports: []Port{{22, ProtocolTCP, 3 * time.Hour}}, Band: Band{100, 199}},
		},
		{
			name: "40-character name, limits of durations and ports",
			modify: func(in *PolicyInput) {
				in.Name = "a" + strings.Repeat("b-", 19) + "c"
				in.Ports = []PortInput{{1, "*", "5m"}, {65535, "Udp", "24h"}}
			},
			want: Policy{Name: "a" + strings.Repeat("b-", 19) + "c", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
				Ports: []Port{{1, ProtocolAny, 5 * time.Minute}, {65535, ProtocolUDP, 24 * time.Hour}}, Band: Band{100, 199}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			got, err := NewPolicy(in)
			if err != nil {
				t.Fatalf("NewPolicy: %v", err)
			}
			if !slices.Equal(got.DestinationPrefixes, tt.want.DestinationPrefixes) || !slices.Equal(got.AllowedSources, tt.want.AllowedSources) ||
				!slices.Equal(got.Ports, tt.want.Ports) || got.Band != tt.want.Band || got.Name != tt.want.Name {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNewPolicyInvalid(t *testing.T) {
	type fe struct{ path, contains string }
	tests := []struct {
		name   string
		modify func(*PolicyInput)
		want   []fe
	}{
		{"empty name", func(in *PolicyInput) { in.Name = "" }, []fe{{"name", `name "" is invalid`}}},
		{"upper case name", func(in *PolicyInput) { in.Name = "SSH" }, []fe{{"name", `"SSH"`}}},
		{"name starting with digit", func(in *PolicyInput) { in.Name = "1ssh" }, []fe{{"name", "starting with a letter"}}},
		{"name ending with hyphen", func(in *PolicyInput) { in.Name = "ssh-" }, []fe{{"name", "ending with a letter or digit"}}},
		{"name with double hyphen", func(in *PolicyInput) { in.Name = "a--b" }, []fe{{"name", "single hyphens"}}},
		{"name of 41 characters", func(in *PolicyInput) { in.Name = strings.Repeat("a", 41) }, []fe{{"name", "1–40 characters"}}},
		{"name with underscore", func(in *PolicyInput) { in.Name = "a_b" }, []fe{{"name", `"a_b"`}}},

		{"no ports", func(in *PolicyInput) { in.Ports = nil }, []fe{{"ports", "at least one port"}}},
		{"port 0", func(in *PolicyInput) { in.Ports[0].Number = 0 }, []fe{{"ports[0].port", "port 0 is outside the range 1–65535"}}},
		{"port 65536", func(in *PolicyInput) { in.Ports[0].Number = 65536 }, []fe{{"ports[0].port", "port 65536 is outside the range 1–65535"}}},
		{"duplicate port", func(in *PolicyInput) { in.Ports = append(in.Ports, PortInput{22, "Tcp", "1h"}) },
			[]fe{{"ports[1].port", "port 22/Tcp is already listed at ports[0]"}}},
		{"port for Tcp and *", func(in *PolicyInput) { in.Ports = append(in.Ports, PortInput{22, "*", "1h"}) },
			[]fe{{"ports[1].port", "port 22/* overlaps port 22/Tcp at ports[0]"}}},
		{"port for * and Udp", func(in *PolicyInput) { in.Ports = []PortInput{{53, "*", "1h"}, {53, "Udp", "1h"}} },
			[]fe{{"ports[1].port", "port 53/Udp overlaps port 53/* at ports[0]"}}},
		{"protocol Icmp", func(in *PolicyInput) { in.Ports[0].Protocol = "Icmp" }, []fe{{"ports[0].protocol", `protocol "Icmp" has no ports`}}},
		{"protocol esp", func(in *PolicyInput) { in.Ports[0].Protocol = "esp" }, []fe{{"ports[0].protocol", `protocol "esp" has no ports`}}},
		{"protocol tcp in lower case", func(in *PolicyInput) { in.Ports[0].Protocol = "tcp" }, []fe{{"ports[0].protocol", `protocol "tcp" must be spelled "Tcp"`}}},
		{"protocol UDP in upper case", func(in *PolicyInput) { in.Ports[0].Protocol = "UDP" }, []fe{{"ports[0].protocol", `must be spelled "Udp"`}}},
		{"protocol unknown", func(in *PolicyInput) { in.Ports[0].Protocol = "Sctp" }, []fe{{"ports[0].protocol", `protocol "Sctp" is not one of Tcp, Udp, *`}}},
		{"duration 4m", func(in *PolicyInput) { in.Ports[0].MaxDuration = "4m" }, []fe{{"ports[0].max_duration", `max_duration "4m" is below the minimum of 5m`}}},
		{"duration 25h", func(in *PolicyInput) { in.Ports[0].MaxDuration = "25h" }, []fe{{"ports[0].max_duration", `max_duration "25h" exceeds the maximum of 24h`}}},
		{"duration 0", func(in *PolicyInput) { in.Ports[0].MaxDuration = "0" }, []fe{{"ports[0].max_duration", `max_duration "0" is below the minimum of 5m`}}},
		{"duration -1h", func(in *PolicyInput) { in.Ports[0].MaxDuration = "-1h" }, []fe{{"ports[0].max_duration", `max_duration "-1h" is below the minimum of 5m`}}},
		{"duration 1y", func(in *PolicyInput) { in.Ports[0].MaxDuration = "1y" }, []fe{{"ports[0].max_duration", `max_duration "1y" is not a duration`}}},
		{"duration empty", func(in *PolicyInput) { in.Ports[0].MaxDuration = "" }, []fe{{"ports[0].max_duration", "max_duration is required, between 5m and 24h"}}},
		{"duration fractional second", func(in *PolicyInput) { in.Ports[0].MaxDuration = "5m0.5s" }, []fe{{"ports[0].max_duration", "whole number of seconds"}}},

		{"no destinations", func(in *PolicyInput) { in.DestinationPrefixes = nil }, []fe{{"destination_address_prefixes", "at least one destination"}}},
		{"destination host bits", func(in *PolicyInput) { in.DestinationPrefixes = []string{"10.0.1.4/24"} },
			[]fe{{"destination_address_prefixes[0]", `"10.0.1.4/24" has host bits set (Azure refuses it): did you mean "10.0.1.0/24"?`}}},
		{"destination malformed", func(in *PolicyInput) { in.DestinationPrefixes = []string{"10.0.1.300"} },
			[]fe{{"destination_address_prefixes[0]", `"10.0.1.300" is not an IP address or CIDR`}}},
		{"destination tag", func(in *PolicyInput) { in.DestinationPrefixes = []string{"VirtualNetwork"} },
			[]fe{{"destination_address_prefixes[0]", `"VirtualNetwork" is a service tag`}}},
		{"destination * with others", func(in *PolicyInput) { in.DestinationPrefixes = []string{"10.0.1.4", "*"} },
			[]fe{{"destination_address_prefixes[1]", `"*" already means every address; remove the other entries`}}},
		{"destination * twice", func(in *PolicyInput) { in.DestinationPrefixes = []string{"*", "*"} },
			[]fe{{"destination_address_prefixes[1]", `"*" repeats "*" at destination_address_prefixes[0]`}, {"destination_address_prefixes[0]", "already means every address"}}},
		{"destination repeated", func(in *PolicyInput) { in.DestinationPrefixes = []string{"10.0.1.4", "10.0.1.4/32"} },
			[]fe{{"destination_address_prefixes[1]", `"10.0.1.4/32" repeats "10.0.1.4" at destination_address_prefixes[0]`}}},
		{"destination zone", func(in *PolicyInput) { in.DestinationPrefixes = []string{"fe80::1%eth0"} },
			[]fe{{"destination_address_prefixes[0]", `"fe80::1%eth0" has a zone`}}},
		{"destination IPv6 without IPv6 source", func(in *PolicyInput) { in.DestinationPrefixes = []string{"10.0.1.4", "2001:db8::4"} },
			[]fe{{"destination_address_prefixes[1]", "destination 2001:db8::4 is IPv6 but no allowed source is IPv6"}}},

		{"no sources", func(in *PolicyInput) { in.AllowedSources = []string{} }, []fe{{"allowed_source_address_prefixes", "at least one allowed source"}}},
		{"source Internet", func(in *PolicyInput) { in.AllowedSources = []string{"Internet"} },
			[]fe{{"allowed_source_address_prefixes[0]", `"Internet" is a service tag, not an IP address or CIDR: tags are refused because a guard rule must deny every source outside the list`}}},
		{"source VirtualNetwork", func(in *PolicyInput) { in.AllowedSources = []string{"203.0.113.9", "VirtualNetwork"} },
			[]fe{{"allowed_source_address_prefixes[1]", `"VirtualNetwork" is a service tag`}}},
		{"source shadowed", func(in *PolicyInput) { in.AllowedSources = []string{"10.0.0.0/8", "10.1.0.0/16"} },
			[]fe{{"allowed_source_address_prefixes[1]", `allowed source "10.1.0.0/16" is inside "10.0.0.0/8" at allowed_source_address_prefixes[0]`}}},
		{"source shadowing", func(in *PolicyInput) { in.AllowedSources = []string{"10.1.2.3", "10.0.0.0/8"} },
			[]fe{{"allowed_source_address_prefixes[1]", `"10.0.0.0/8" contains "10.1.2.3" at allowed_source_address_prefixes[0]`}}},
		{"source * with others", func(in *PolicyInput) { in.AllowedSources = []string{"*", "0.0.0.0/0"} },
			[]fe{{"allowed_source_address_prefixes[0]", `"*" already means every address`}}},
		{"source IPv4-mapped IPv6", func(in *PolicyInput) { in.AllowedSources = []string{"::ffff:1.2.3.4"} },
			[]fe{{"allowed_source_address_prefixes[0]", `"::ffff:1.2.3.4" is an IPv4-mapped IPv6 address; write it as IPv4 (1.2.3.4)`}}},
		{"source IPv4-mapped IPv6 range", func(in *PolicyInput) { in.AllowedSources = []string{"::ffff:0:0/96"} },
			[]fe{{"allowed_source_address_prefixes[0]", "write it as IPv4 (0.0.0.0/0)"}}},
		{"source IPv6 host bits", func(in *PolicyInput) { in.AllowedSources = []string{"2001:db8::1/64"} },
			[]fe{{"allowed_source_address_prefixes[0]", `did you mean "2001:db8::/64"?`}}},
		{"source IPv6 without IPv6 destination", func(in *PolicyInput) { in.AllowedSources = []string{"203.0.113.0/24", "2001:db8::/32"} },
			[]fe{{"allowed_source_address_prefixes[1]", "allowed source 2001:db8::/32 is IPv6 but no destination is IPv6"}}},
		{"source with space", func(in *PolicyInput) { in.AllowedSources = []string{" 203.0.113.9"} },
			[]fe{{"allowed_source_address_prefixes[0]", "is not an IP address or CIDR"}}},

		{"band below 100", func(in *PolicyInput) { in.BandStart = 99 }, []fe{{"priority_band", "start 99 is outside Azure's priorities 100–4096"}}},
		{"band above 4096", func(in *PolicyInput) { in.BandEnd = 4097 }, []fe{{"priority_band", "end 4097 is outside Azure's priorities 100–4096"}}},
		{"band start equals end", func(in *PolicyInput) { in.BandStart, in.BandEnd = 200, 200 }, []fe{{"priority_band", "start 200 must be below end 200"}}},
		{"band reversed", func(in *PolicyInput) { in.BandStart, in.BandEnd = 300, 200 }, []fe{{"priority_band", "start 300 must be below end 200"}}},
		{"band too small", func(in *PolicyInput) { in.BandStart, in.BandEnd = 100, 111 },
			[]fe{{"priority_band", "band 100-111 has 12 priorities; a band needs at least 13"}}},

		{"description too long", func(in *PolicyInput) {
			in.Ports = nil
			for i := range 20 {
				in.Ports = append(in.Ports, PortInput{int64(1000 + i), "Tcp", fmt.Sprintf("%dm", 10+i)})
			}
		}, []fe{{"ports", "the guard rule for Tcp ports would need a 223-character description, over Azure's limit of 140: use fewer distinct max_duration values"}}},

		{"every problem at once", func(in *PolicyInput) {
			in.Name = "X"
			in.Ports[0].Number = 0
			in.AllowedSources = []string{"Internet"}
			in.BandStart = 1
		}, []fe{{"name", ""}, {"priority_band", ""}, {"ports[0].port", ""}, {"allowed_source_address_prefixes[0]", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput()
			tt.modify(&in)
			p, err := NewPolicy(in)
			if err == nil {
				t.Fatalf("NewPolicy accepted %+v as %+v", in, p)
			}
			got := FieldErrors(err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got[i].Path != w.path || !strings.Contains(got[i].Message, w.contains) {
					t.Errorf("error %d = %q: %q, want %q containing %q", i, got[i].Path, got[i].Message, w.path, w.contains)
				}
			}
		})
	}
}

func TestFieldErrorsWrapped(t *testing.T) {
	_, err := NewPolicy(PolicyInput{})
	wrapped := fmt.Errorf("policy %q: %w", "x", err)
	if got, want := len(FieldErrors(wrapped)), len(FieldErrors(err)); got != want || got == 0 {
		t.Errorf("FieldErrors through a wrapper found %d, want %d (>0)", got, want)
	}
	if !strings.HasPrefix(FieldErrors(err)[0].Error(), "name: ") {
		t.Errorf("FieldError.Error() = %q, want the path first", FieldErrors(err)[0].Error())
	}
	if FieldErrors(nil) != nil {
		t.Error("FieldErrors(nil) is not empty")
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 3 * time.Hour: "3h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s",
		time.Hour + 30*time.Second: "1h30s", 24 * time.Hour: "24h", -5 * time.Minute: "-5m",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if p, err := time.ParseDuration(want); err != nil || p != d {
			t.Errorf("%q parses as %v, %v; want %v", want, p, err, d)
		}
	}
}

func TestBand(t *testing.T) {
	b := Band{100, 199}
	if !b.Contains(100) || !b.Contains(199) || b.Contains(99) || b.Contains(200) {
		t.Error("Contains is not inclusive at both ends")
	}
	if !b.Overlaps(Band{199, 300}) || !b.Overlaps(Band{150, 160}) || b.Overlaps(Band{200, 300}) || !b.Overlaps(Band{50, 100}) {
		t.Error("Overlaps is wrong at the edges")
	}
	if lo, hi := b.GrantRange(); lo != 106 || hi != 193 {
		t.Errorf("GrantRange = %d..%d, want 106..193", lo, hi)
	}
	if b.Size() != 100 || b.String() != "100-199" {
		t.Errorf("Size, String = %d, %q", b.Size(), b.String())
	}
}

func TestPolicyEqual(t *testing.T) {
	p := mustPolicy(t, validInput())
	q := p
	q.AllowedSources = []string{"203.0.113.0/25", "203.0.113.128/25"}
	if !p.Equal(q) {
		t.Error("policies with the same allowed addresses in different shapes are not Equal")
	}
	for name, change := range map[string]func(*Policy){
		"name":         func(o *Policy) { o.Name = "rdp" },
		"band":         func(o *Policy) { o.Band.End++ },
		"port":         func(o *Policy) { o.Ports = []Port{{22, ProtocolTCP, time.Hour}} },
		"destinations": func(o *Policy) { o.DestinationPrefixes = []string{"10.0.1.5"} },
		"sources":      func(o *Policy) { o.AllowedSources = []string{"203.0.113.0/25"} },
		"any source":   func(o *Policy) { o.AllowedSources = []string{"*"} },
		"odd source":   func(o *Policy) { o.AllowedSources = []string{"203.0.113.0/24", "bogus"} },
	} {
		o := p
		change(&o)
		if p.Equal(o) || o.Equal(p) {
			t.Errorf("policies differing in %s are Equal", name)
		}
	}
}

func mustPolicy(t testing.TB, in PolicyInput) Policy {
	t.Helper()
	p, err := NewPolicy(in)
	if err != nil {
		t.Fatalf("NewPolicy(%+v): %v", in, err)
	}
	return p
}
