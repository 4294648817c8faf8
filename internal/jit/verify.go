package jit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// This file decides which flows `jitd verify` asks Azure Network Watcher's
// IP flow verify about, and what the answer must be for the promise to
// hold. It is pure: the caller finds the VMs behind an NSG and asks Azure.
//
// For every intact policy on the NSG, every protected port (TCP and UDP for
// a port of protocol "*", as IP flow verify asks one protocol at a time)
// and every VM address behind the NSG that the policy protects:
//
//   - each active grant of the policy that covers the port, from the first
//     address of the grant's source, must be allowed (ProbeGrant);
//   - an address outside the policy's allowed sources must be denied
//     (ProbeOutside): the first of the documentation addresses 192.0.2.1,
//     198.51.100.1, 203.0.113.1 (IPv4; 2001:db8::1, 3fff::1 for IPv6) that
//     no allowed source and no grant contains, else the first usable
//     address of the complement of the allowed sources; skipped when the
//     policy allows every source;
//   - an allowed address with no grant must be denied (ProbeNoGrant): the
//     first of the same documentation addresses that an allowed source
//     contains and no grant on the port does, else the first address of
//     the first allowed source (in canonical order) that no grant on the
//     port contains; skipped when grants cover every allowed address.
//
// The remote port is ProbeRemotePort: an NSG rule that names source ports
// is rare and is judged at that one port only.

// ProbeKind says why a flow is probed.
type ProbeKind string

// Kinds of probe.
const (
	ProbeGrant   ProbeKind = "grant"            // an active grant's source: must be allowed
	ProbeOutside ProbeKind = "outside"          // a source outside the policy: must be denied
	ProbeNoGrant ProbeKind = "allowed_no_grant" // an allowed source without a grant: must be denied
)

// ProbeRemotePort is the source port of every probe: the first port of the
// dynamic range (RFC 6335), as a client's would be.
const ProbeRemotePort = 49152

// VerifyTarget is a VM network interface behind an NSG, as IP flow verify
// addresses it: the VM, the NIC and the NIC's private addresses whose
// traffic the NSG filters.
type VerifyTarget struct {
	VMID, NICID string
	Region      string // the VM's: IP flow verify is asked of that region's watcher
	Addresses   []netip.Addr
}

// Probe is one IP flow verify question (inbound) and the answer the
// promise requires.
type Probe struct {
	Kind     ProbeKind
	Policy   string
	GrantID  string // for ProbeGrant
	Port     uint16
	Protocol Protocol // ProtocolTCP or ProtocolUDP
	VMID     string
	NICID    string
	Region   string
	Local    netip.Addr // the VM's address
	Remote   netip.Addr // the source
	Expect   Access
}

func (p Probe) String() string {
	return fmt.Sprintf("%s %s -> %s/%s must be %s", p.Kind, netip.AddrPortFrom(p.Remote, ProbeRemotePort),
		netip.AddrPortFrom(p.Local, p.Port), p.Protocol, p.Expect)
}

// ProbeSkip is a probe that could not be chosen, and why.
type ProbeSkip struct {
	Kind     ProbeKind
	Policy   string
	Port     uint16
	Protocol Protocol
	Family   int
	Reason   string
}

// PlanProbes returns the probes for an NSG's intact policies, the grants
// judged active on it, and the targets behind it, in a stable order, and
// the probes it had to skip. Grants of policies not given are ignored.
func PlanProbes(policies []Policy, active []GrantRule, targets []VerifyTarget) ([]Probe, []ProbeSkip) {
	policies = slices.Clone(policies)
	slices.SortFunc(policies, func(a, b Policy) int { return cmp.Compare(a.Name, b.Name) })
	targets = slices.Clone(targets)
	slices.SortFunc(targets, func(a, b VerifyTarget) int {
		return cmp.Or(cmp.Compare(a.VMID, b.VMID), cmp.Compare(a.NICID, b.NICID))
	})
	grants := slices.Clone(active)
	slices.SortFunc(grants, func(a, b GrantRule) int { return cmp.Compare(a.Rule.Name, b.Rule.Name) })

	var probes []Probe
	var skips []ProbeSkip
	skipped := map[ProbeSkip]bool{}
	skip := func(s ProbeSkip) {
		if !skipped[s] {
			skipped[s] = true
			skips = append(skips, s)
		}
	}
	for _, p := range policies {
		for _, pt := range p.Ports {
			for _, proto := range probeProtocols(pt.Protocol) {
				var covering []GrantRule
				var grantSources []netip.Prefix
				for _, g := range grants {
					if src, ok := grantCovers(g, p.Name, pt.Number, proto); ok {
						covering = append(covering, g)
						grantSources = append(grantSources, src)
					}
				}
				for _, t := range targets {
					for _, local := range t.Addresses {
						local = local.Unmap()
						if !p.protects(local) {
							continue
						}
						family := familyOf(local)
						base := Probe{Policy: p.Name, Port: pt.Number, Protocol: proto, VMID: t.VMID, NICID: t.NICID, Region: t.Region, Local: local}
						for i, g := range covering {
							if familyOf(grantSources[i].Addr()) != family {
								continue
							}
							pr := base
							pr.Kind, pr.GrantID, pr.Remote, pr.Expect = ProbeGrant, g.ID, grantSources[i].Masked().Addr(), Allow
							probes = append(probes, pr)
						}
						if a, ok := p.outsideAddress(family, grantSources); ok {
							pr := base
							pr.Kind, pr.Remote, pr.Expect = ProbeOutside, a, Deny
							probes = append(probes, pr)
						} else {
							skip(ProbeSkip{Kind: ProbeOutside, Policy: p.Name, Port: pt.Number, Protocol: proto, Family: family,
								Reason: "the policy allows every source, so no address is outside it"})
						}
						if a, ok := p.allowedWithoutGrant(family, grantSources); ok {
							pr := base
							pr.Kind, pr.Remote, pr.Expect = ProbeNoGrant, a, Deny
							probes = append(probes, pr)
						} else {
							skip(ProbeSkip{Kind: ProbeNoGrant, Policy: p.Name, Port: pt.Number, Protocol: proto, Family: family,
								Reason: fmt.Sprintf("every allowed IPv%d source has a grant on this port", family)})
						}
					}
				}
			}
		}
	}
	return probes, skips
}

// probeProtocols are the protocols IP flow verify is asked for a port.
func probeProtocols(p Protocol) []Protocol {
	switch p {
	case ProtocolTCP, ProtocolUDP:
		return []Protocol{p}
	}
	return []Protocol{ProtocolTCP, ProtocolUDP}
}

// grantCovers reports whether an active grant of policy opens port/proto,
// and returns its source.
func grantCovers(g GrantRule, policy string, port uint16, proto Protocol) (netip.Prefix, bool) {
	if g.Policy != policy || len(g.Rule.SourcePrefixes) != 1 || !portsCover(g.Rule.DestinationPorts, port) {
		return netip.Prefix{}, false
	}
	if g.Rule.Protocol != ProtocolAny && g.Rule.Protocol != proto {
		return netip.Prefix{}, false
	}
	src, err := parseAddressPrefix(g.Rule.SourcePrefixes[0])
	if err != nil {
		return netip.Prefix{}, false
	}
	return src, true
}

// protects reports whether the policy protects the VM address a.
func (p Policy) protects(a netip.Addr) bool {
	if p.anyDestination() {
		return true
	}
	for _, d := range p.DestinationPrefixes {
		if pf, err := parseAddressPrefix(d); err == nil && pf.Contains(a) {
			return true
		}
	}
	return false
}

// documentationAddresses are the probe sources tried first, per family:
// addresses reserved for documentation (RFC 5737, RFC 3849, RFC 9637),
// which no real client has.
var documentationAddresses = map[int][]netip.Addr{
	IPv4: {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")},
	IPv6: {netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("3fff::1")},
}

// outsideAddress chooses a source outside the policy's allowed sources
// (and outside every grant's, which a valid grant never is).
func (p Policy) outsideAddress(family int, grants []netip.Prefix) (netip.Addr, bool) {
	allowed := p.allowedPrefixes(family)
	for _, a := range documentationAddresses[family] {
		if !anyContains(allowed, a) && !anyContains(grants, a) {
			return a, true
		}
	}
	for _, c := range Complement(append(slices.Clone(allowed), grants...), family) {
		if a, ok := firstUsable(c); ok {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// allowedWithoutGrant chooses an allowed source that no grant on the port
// contains.
func (p Policy) allowedWithoutGrant(family int, grants []netip.Prefix) (netip.Addr, bool) {
	allowed := p.allowedPrefixes(family)
	for _, a := range documentationAddresses[family] {
		if anyContains(allowed, a) && !anyContains(grants, a) {
			return a, true
		}
	}
	for _, pf := range allowed {
		r := prefixRange(pf)
		cur := r.first
		if a := fromU128(cur, family); a.IsUnspecified() {
			cur = cur.addOne()
		}
	walk:
		for cur.cmp(r.last) <= 0 {
			for _, g := range grants {
				if familyOf(g.Addr()) != family {
					continue
				}
				gr := prefixRange(g)
				if gr.first.cmp(cur) <= 0 && cur.cmp(gr.last) <= 0 {
					if gr.last.cmp(r.last) >= 0 {
						break walk
					}
					cur = gr.last.addOne()
					continue walk
				}
			}
			return fromU128(cur, family), true
		}
	}
	return netip.Addr{}, false
}

// firstUsable is a prefix's first address, or its second when the first is
// the unspecified address (not a source IP flow verify can be asked about).
func firstUsable(pf netip.Prefix) (netip.Addr, bool) {
	a := pf.Masked().Addr()
	if !a.IsUnspecified() {
		return a, true
	}
	if pf.Bits() == a.BitLen() {
		return netip.Addr{}, false
	}
	return a.Next(), true
}

// PortString formats a probe's port as the audit schema does: "22/Tcp".
func (p Probe) PortString() string { return strconv.Itoa(int(p.Port)) + "/" + string(p.Protocol) }
