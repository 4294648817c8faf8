package jit

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func verifyGrant(t *testing.T, p Policy, id, src string, ports []int64) GrantRule {
	t.Helper()
	spec, err := p.CheckGrant(GrantInput{Ports: ports, Protocol: "Tcp", Source: src, Duration: "30m", Requester: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	exp := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	return GrantRule{Policy: p.Name, ID: id, Requester: spec.Requester, ExpiresAt: exp, Rule: p.GrantRule(id, spec, exp, lo)}
}

func probeLines(ps []Probe) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Policy+" "+p.GrantID+" "+p.VMID+" "+p.String())
	}
	return out
}

func TestPlanProbes(t *testing.T) {
	web := mustPolicy(t, PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		BandStart: 100, BandEnd: 199, Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}, {Number: 3389, Protocol: "*", MaxDuration: "1h"}}})
	targets := []VerifyTarget{
		{VMID: "vm-b", NICID: "nic-b", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.5")}}, // not protected
		{VMID: "vm-a", NICID: "nic-a", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.4")}},
	}
	g1 := verifyGrant(t, web, "g1", "203.0.113.7", []int64{22})
	probes, skips := PlanProbes([]Policy{web}, []GrantRule{g1}, targets)
	got := probeLines(probes)
	want := []string{
		"web g1 vm-a grant 203.0.113.7:49152 -> 10.0.1.4:22/Tcp must be Allow",
		"web  vm-a outside 192.0.2.1:49152 -> 10.0.1.4:22/Tcp must be Deny",
		"web  vm-a allowed_no_grant 203.0.113.1:49152 -> 10.0.1.4:22/Tcp must be Deny",
		"web  vm-a outside 192.0.2.1:49152 -> 10.0.1.4:3389/Tcp must be Deny",
		"web  vm-a allowed_no_grant 203.0.113.1:49152 -> 10.0.1.4:3389/Tcp must be Deny",
		"web  vm-a outside 192.0.2.1:49152 -> 10.0.1.4:3389/Udp must be Deny",
		"web  vm-a allowed_no_grant 203.0.113.1:49152 -> 10.0.1.4:3389/Udp must be Deny",
	}
	if !slices.Equal(got, want) || len(skips) != 0 {
		t.Errorf("probes:\n%s\nwant:\n%s\nskips %+v", strings.Join(got, "\n"), strings.Join(want, "\n"), skips)
	}
	if probes[0].NICID != "nic-a" || probes[0].PortString() != "22/Tcp" {
		t.Errorf("first probe %+v", probes[0])
	}
}

// The allowed-without-grant address steps over grants' sources, and is
// skipped when grants cover every allowed address; the outside address is
// skipped when the policy allows every source.
func TestPlanProbesChoosesAddresses(t *testing.T) {
	small := mustPolicy(t, PolicyInput{Name: "small", DestinationPrefixes: []string{"*"}, AllowedSources: []string{"198.51.100.0/30"},
		BandStart: 100, BandEnd: 199, Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	target := []VerifyTarget{{VMID: "vm", NICID: "nic", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.4")}}}
	pick := func(p Policy, grants ...GrantRule) map[ProbeKind]string {
		probes, skips := PlanProbes([]Policy{p}, grants, target)
		out := map[ProbeKind]string{}
		for _, pr := range probes {
			if pr.Kind != ProbeGrant {
				out[pr.Kind] = pr.Remote.String()
			}
		}
		for _, s := range skips {
			out[s.Kind] = "skipped: " + s.Reason
		}
		return out
	}
	cases := []struct {
		name           string
		p              Policy
		grants         []GrantRule
		outside, noGrt string
	}{
		{"documentation address allowed", small, nil, "192.0.2.1", "198.51.100.1"},
		{"steps over grants", small, []GrantRule{
			verifyGrant(t, small, "a", "198.51.100.1", []int64{22}),
			verifyGrant(t, small, "b", "198.51.100.0", []int64{22}),
		}, "192.0.2.1", "198.51.100.2"},
		{"all covered", small, []GrantRule{verifyGrant(t, small, "a", "198.51.100.0/30", []int64{22})}, "192.0.2.1",
			"skipped: every allowed IPv4 source has a grant on this port"},
		{"a grant on another port does not count", small, []GrantRule{}, "192.0.2.1", "198.51.100.1"},
	}
	anyPolicy := mustPolicy(t, PolicyInput{Name: "open", DestinationPrefixes: []string{"10.0.1.0/24"}, AllowedSources: []string{"*"},
		BandStart: 100, BandEnd: 199, Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	cases = append(cases, struct {
		name           string
		p              Policy
		grants         []GrantRule
		outside, noGrt string
	}{"any source", anyPolicy, []GrantRule{verifyGrant(t, anyPolicy, "a", "192.0.2.1", []int64{22})},
		"skipped: the policy allows every source, so no address is outside it", "198.51.100.1"})
	docs := mustPolicy(t, PolicyInput{Name: "docs", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.0.0.0/8"},
		BandStart:      100, BandEnd: 199, Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	cases = append(cases, struct {
		name           string
		p              Policy
		grants         []GrantRule
		outside, noGrt string
	}{"every documentation address allowed", docs, nil, "0.0.0.1", "192.0.2.1"})
	for _, c := range cases {
		got := pick(c.p, c.grants...)
		if got[ProbeOutside] != c.outside || got[ProbeNoGrant] != c.noGrt {
			t.Errorf("%s: outside %q, allowed without grant %q; want %q, %q", c.name, got[ProbeOutside], got[ProbeNoGrant], c.outside, c.noGrt)
		}
	}
}

// IPv6 addresses get IPv6 probes; a grant of the other family is not
// probed against them.
func TestPlanProbesFamilies(t *testing.T) {
	p := mustPolicy(t, PolicyInput{Name: "dual", DestinationPrefixes: []string{"10.0.1.4", "fd00::4"}, AllowedSources: []string{"203.0.113.0/24", "2001:db8:1::/48"},
		BandStart: 100, BandEnd: 199, Ports: []PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	g := verifyGrant(t, p, "g", "2001:db8:1::7", []int64{22})
	probes, _ := PlanProbes([]Policy{p}, []GrantRule{g},
		[]VerifyTarget{{VMID: "vm", NICID: "nic", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.4"), netip.MustParseAddr("fd00::4")}}})
	got := probeLines(probes)
	want := []string{
		"dual  vm outside 192.0.2.1:49152 -> 10.0.1.4:22/Tcp must be Deny",
		"dual  vm allowed_no_grant 203.0.113.1:49152 -> 10.0.1.4:22/Tcp must be Deny",
		"dual g vm grant [2001:db8:1::7]:49152 -> [fd00::4]:22/Tcp must be Allow",
		"dual  vm outside [2001:db8::1]:49152 -> [fd00::4]:22/Tcp must be Deny",
		"dual  vm allowed_no_grant [2001:db8:1::]:49152 -> [fd00::4]:22/Tcp must be Deny",
	}
	if !slices.Equal(got, want) {
		t.Errorf("probes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
