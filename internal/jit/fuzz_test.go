package jit

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParseDescription: the parser never panics, accepts only what String
// produces, and a grant description built from any requester parses back.
func FuzzParseDescription(f *testing.F) {
	for _, s := range []string{
		"jit:v1 role=guard band=100-199 guard=v4 max=3h",
		"jit:v1 role=deny band=100-199 guard=v4 max=3h",
		"jit:v1 role=deny band=100-199 guard=v4 max=22:3h,3389:1h30m",
		"jit:v1 role=grant id=a1b2 exp=1767225600 sum=0123456789 by=alice@example.com",
		"jit:v1 role=ended id=a1b2 exp=1767225600 by=alice@example.com",
		"jit:v2 role=guard band=100-199",
		"jit:v1 role=deny band=100-199 guard=v4 max=22:3h,22:1h",
	} {
		f.Add(s, int64(1767225600))
	}
	f.Fuzz(func(t *testing.T, s string, exp int64) {
		if d, err := ParseDescription(s); err == nil {
			if d.String() != s {
				t.Fatalf("ParseDescription(%q) accepted a non-canonical form of %q", s, d.String())
			}
			back, err := ParseDescription(d.String())
			if err != nil || !reflect.DeepEqual(back, d) {
				t.Fatalf("parse(format(%+v)) = %+v, %v", d, back, err)
			}
		}
		if exp <= 0 {
			return
		}
		g := NewGrantDescription("a1", time.Unix(exp, 0), s)
		back, err := ParseDescription(g.String())
		if err != nil || !reflect.DeepEqual(back, g) {
			t.Fatalf("grant description for requester %q: %q parses as %+v, %v", s, g.String(), back, err)
		}
	})
}

// FuzzRoundTrip: any input NewPolicy accepts is read back Equal from its
// rules. Destinations and sources are fuzzed as comma-separated lists; the
// rest comes from a generator seeded by the fuzzer.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), "", "")
	f.Add(uint64(2), "10.0.1.4,2001:db8::4", "203.0.113.0/24,2001:db8:1::/48")
	f.Add(uint64(3), "*", "0.0.0.0/1")
	f.Add(uint64(4), "*", "::/0")
	f.Add(uint64(5), "10.0.0.0/8", "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, seed uint64, dests, sources string) {
		in := randomPolicyInput(rand.New(rand.NewPCG(seed, seed>>7)))
		if dests != "" {
			in.DestinationPrefixes = strings.Split(dests, ",")
		}
		if sources != "" {
			in.AllowedSources = strings.Split(sources, ",")
		}
		p, err := NewPolicy(in)
		if err != nil {
			return
		}
		dp, ok := ReadNSG(p.Rules()).Policies[p.Name]
		if !ok || dp.Problem != "" || !dp.Policy.Equal(p) {
			t.Fatalf("policy %+v read back as %+v (problem %q)", p, dp.Policy, dp.Problem)
		}
	})
}

// FuzzComplement: an address is in the complement exactly when no prefix
// covers it, and the complement is sorted and minimal.
func FuzzComplement(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8}, []byte{10, 1, 2, 3, 11, 0, 0, 0}, true)
	f.Add([]byte{0, 0, 0, 0, 0}, []byte{255, 255, 255, 255}, true)
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, false)
	f.Fuzz(func(t *testing.T, prefixData, probeData []byte, v4 bool) {
		family, size := IPv6, 16
		if v4 {
			family, size = IPv4, 4
		}
		addr := func(b []byte) netip.Addr {
			if v4 {
				return netip.AddrFrom4([4]byte(b))
			}
			return netip.AddrFrom16([16]byte(b))
		}
		var in []netip.Prefix
		for len(prefixData) >= size+1 && len(in) < 64 {
			bits := int(prefixData[size]) % (familyBits(family) + 1)
			in = append(in, netip.PrefixFrom(addr(prefixData[:size]), bits).Masked())
			prefixData = prefixData[size+1:]
		}
		var probes []netip.Addr
		for len(probeData) >= size && len(probes) < 64 {
			probes = append(probes, addr(probeData[:size]))
			probeData = probeData[size:]
		}
		// Probe the edges of every prefix too.
		for _, p := range in {
			r := prefixRange(p)
			probes = append(probes, fromU128(r.first, family), fromU128(r.last, family))
			if a := fromU128(r.last, family).Next(); a.IsValid() {
				probes = append(probes, a)
			}
		}
		checkComplement(t, in, family, probes)
	})
}

// benchRules returns n rules as an NSG shared by many policies might hold.
func benchRules(n int) []SecurityRule {
	var rules []SecurityRule
	for i := 0; len(rules) < n; i++ {
		start := int64(100 + 40*(i%99))
		p, err := NewPolicy(PolicyInput{Name: "p" + string(rune('a'+i%26)) + binaryName(i), DestinationPrefixes: []string{"10.0.1.4", "2001:db8::4"},
			AllowedSources: []string{"203.0.113.0/24", "2001:db8:1::/48"},
			Ports:          []PortInput{{22, "Tcp", "3h"}, {3389, "Tcp", "1h"}}, BandStart: start, BandEnd: start + 39})
		if err != nil {
			panic(err)
		}
		rules = append(rules, p.Rules()...)
		rules = append(rules, grantRule(p.Name, "g1", int32(start)+6, 1767225600))
		rules = append(rules, rule("foreign"+binaryName(i), int32(4096-i%3000), Allow, ProtocolTCP, list("Internet"), list("*"), list("443"), ""))
	}
	return rules[:n]
}

func binaryName(i int) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return strings.TrimLeft(strings.Map(func(r rune) rune { return 'a' + r%26 }, string(b[:])), "a")
}

func BenchmarkReadNSG1000(b *testing.B) {
	rules := benchRules(1000)
	b.ReportAllocs()
	for b.Loop() {
		if v := ReadNSG(rules); len(v.Policies) == 0 {
			b.Fatal("no policies")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/rule")
}

func BenchmarkAllowed10000Flows(b *testing.B) {
	rules := benchRules(300)
	r := rand.New(rand.NewPCG(1, 1))
	flows := make([]Flow, 10000)
	for i := range flows {
		flows[i] = Flow{Protocol: ProtocolTCP, Source: randomPrefix(r, IPv4).Addr(), Destination: netip.MustParseAddr("10.0.1.4"), Port: []uint16{22, 443, 3389, 8080}[i%4]}
	}
	nsgs := [][]SecurityRule{rules}
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range flows {
			Allowed(nsgs, f)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(flows)), "ns/flow")
}

func BenchmarkComplement50(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	in := make([]netip.Prefix, 50)
	for i := range in {
		in[i] = randomPrefix(r, IPv6)
	}
	b.ReportAllocs()
	for b.Loop() {
		Complement(in, IPv6)
	}
}

// FuzzReadNSG: the decoder never panics on arbitrary rules, and never
// reads back a policy it does not flag as malformed unless that policy's
// own encoding is exactly on the NSG (fail closed). The input is a valid
// policy's rules with one field of one rule replaced by fuzzed text.
func FuzzReadNSG(f *testing.F) {
	f.Add(0, "name", "jit-web-guard-tcp", int32(100))
	f.Add(1, "description", "jit:v1 role=deny band=100-199 guard=v4 max=24h", int32(199))
	f.Add(1, "priority", "", int32(150))
	f.Add(0, "source", "0.0.0.0/0", int32(100))
	f.Add(2, "name", "jit-web-g-abc", int32(120))
	p, err := NewPolicy(PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
		Ports: []PortInput{{22, "Tcp", "3h"}, {53, "Udp", "30m"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, index int, field, value string, priority int32) {
		rules := p.Rules()
		if index < 0 {
			index = -index
		}
		r := &rules[index%len(rules)]
		switch field {
		case "name":
			r.Name = value
		case "description":
			r.Description = value
		case "priority":
			r.Priority = priority
		case "source":
			r.SourcePrefixes = strings.Split(value, ",")
		default:
			r.DestinationPorts = strings.Split(value, ",")
		}
		view := ReadNSG(rules)
		for name, dp := range view.Policies {
			if dp.Problem != "" {
				continue
			}
			present := map[string]SecurityRule{}
			for _, x := range rules {
				present[x.Name] = x
			}
			for _, want := range dp.Policy.Rules() {
				got, ok := present[want.Name]
				if !ok || got.Priority != want.Priority || got.Description != want.Description || got.Access != want.Access {
					t.Fatalf("policy %q read back without a problem, but its rule %s is not on the NSG as encoded: %+v", name, want.Name, got)
				}
			}
		}
	})
}
