package jit

import (
	"fmt"
	"net/netip"
	"strings"
)

// StandingAccess finds the rules that give allowed sources access with no
// grant on one NSG: inbound Allow rules not belonging to this policy,
// evaluated before the policy's deny-all rule for the port's protocol and
// family, whose protocol and ports cover a protected port, whose
// destinations overlap the policy's, and whose sources overlap the allowed
// sources. Such a rule may sit above the band or inside it, between the
// guard and the deny-all: the guard stops only sources outside the allowed
// ones, so an allowed source (a VPN pool, say) that matches the rule
// reaches the port whenever it likes, and the policy's promise that a port
// opens only for a grant's window does not hold for it.
//
// A rule and port already reported by Bypasses are not repeated: a bypass
// is the worse finding. Rules using application security groups cannot be
// judged from their prefixes; like Bypasses, they are reported whenever
// protocol, ports and priority match, so one ahead of the deny-all but not
// ahead of the guard is standing access. Grant rules of other policies are
// judged like any other rule.
//
// "*" overlaps every allowed source; VirtualNetwork, Internet and
// AzureLoadBalancer are resolved as Allowed resolves them; any other
// service tag is taken to overlap, since its addresses cannot be known
// from the rules.
func (p Policy) StandingAccess(rules []SecurityRule) []Bypass {
	var out []Bypass
	for _, r := range rules {
		if !strings.EqualFold(string(r.Direction), string(Inbound)) || !strings.EqualFold(string(r.Access), string(Allow)) {
			continue
		}
		if n, ok := parseRuleName(r.Name); ok && n.policy == p.Name {
			continue
		}
		bypassed := map[Port]bool{}
		for _, b := range p.Bypasses([]SecurityRule{r}) {
			bypassed[b.Port] = true
		}
		for _, pt := range p.Ports {
			if bypassed[pt] || !protocolsOverlap(r.Protocol, pt.Protocol) || !portsCover(r.DestinationPorts, pt.Number) {
				continue
			}
			if reason := p.standingReason(r, pt); reason != "" {
				out = append(out, Bypass{Rule: r, Port: pt, Reason: reason})
			}
		}
	}
	return out
}

// standingReason explains why rule r lets allowed sources reach port pt
// with no grant, or returns "" when it does not.
func (p Policy) standingReason(r SecurityRule, pt Port) string {
	g := groupOf(pt.Protocol)
	for _, f := range p.families() {
		threshold := denyPriority(p.Band, g, f)
		if p.anyDestination() {
			// One deny-all rule covers both families, in the IPv4 slot.
			threshold = denyPriority(p.Band, g, IPv4)
		}
		if r.Priority >= threshold {
			continue
		}
		where := "ahead of"
		if p.Band.Contains(r.Priority) {
			where = "inside the policy's band, ahead of"
		}
		if r.UsesApplicationSecurityGroups {
			return fmt.Sprintf("rule %q (priority %d) allows %s using application security groups, which cannot be checked against the allowed sources, %s the policy's deny-all rule at priority %d", r.Name, r.Priority, pt, where, threshold)
		}
		if !p.destinationsOverlap(r.DestinationPrefixes, f) {
			continue
		}
		if src := p.sourceAllowed(r.SourcePrefixes, f); src != "" {
			return fmt.Sprintf("rule %q (priority %d) allows %s from %q, overlapping the policy's allowed sources, %s the policy's deny-all rule at priority %d: those sources reach the port with no grant", r.Name, r.Priority, pt, src, where, threshold)
		}
	}
	return ""
}

// sourceAllowed returns the first source entry that overlaps the allowed
// sources of family f, or "".
func (p Policy) sourceAllowed(entries []string, f int) string {
	allowed := p.allowedPrefixes(f)
	if len(allowed) == 0 {
		return ""
	}
	for _, e := range entries {
		if slicesOverlap(allowed, entryPrefixes(e, f)) {
			return e
		}
	}
	return ""
}

// entryPrefixes returns the addresses of family f a rule's source entry
// stands for: an IP or CIDR itself, "*" the whole family, the tags Allowed
// resolves their ranges, and any other tag the whole family, since what it
// holds cannot be known from the rules.
func entryPrefixes(e string, f int) []netip.Prefix {
	if rp, ok := rulePrefix(e); ok {
		if familyOf(rp.Addr()) != f {
			return nil
		}
		return []netip.Prefix{rp}
	}
	switch {
	case strings.EqualFold(e, tagVirtualNetwork):
		return virtualNetworkRanges
	case strings.EqualFold(e, tagAzureLoadBalancer):
		return []netip.Prefix{netip.PrefixFrom(azureLoadBalancerAddr, 32)}
	case strings.EqualFold(e, tagInternet):
		return Complement(append(append([]netip.Prefix(nil), virtualNetworkRanges...), neverInternet...), f)
	}
	return []netip.Prefix{wholeFamily(f)}
}

func slicesOverlap(a, b []netip.Prefix) bool {
	for _, q := range b {
		if overlapsAny(a, q) {
			return true
		}
	}
	return false
}
