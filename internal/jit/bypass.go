package jit

import (
	"fmt"
	"net/netip"
	"strings"
)

// Bypass is a rule outside the policy's control that still lets a
// protected port in from a source the policy does not allow, ahead of the
// policy's guard or deny-all rules.
type Bypass struct {
	Rule   SecurityRule
	Port   Port
	Reason string
}

// Bypasses finds the rules that defeat the policy on one NSG: inbound Allow
// rules not belonging to this policy, evaluated before the policy's guard
// for the port's protocol and family (or its deny-all when that family has
// no guard), whose protocol and ports cover a protected port, whose
// destinations overlap the policy's, and whose sources are not all inside
// the allowed sources. "*", Internet and every other service tag, and any
// prefix not contained in the allowed sources, count as outside.
//
// When the policy allows any source it has no guard, and its deny-all is
// all that keeps the ports closed; then every such Allow rule ahead of the
// deny-all is a bypass, whatever its sources: "Allow 22 from *" at priority
// 90 means port 22 is never really closed.
//
// Rules using application security groups cannot be judged from their
// prefixes; they are reported as bypasses whenever protocol, ports and
// priority match. Grant rules of other policies are judged like any other
// rule: a grant in a band evaluated before this policy's guard does let
// traffic past it.
func (p Policy) Bypasses(rules []SecurityRule) []Bypass {
	var out []Bypass
	for _, r := range rules {
		if !strings.EqualFold(string(r.Direction), string(Inbound)) || !strings.EqualFold(string(r.Access), string(Allow)) {
			continue
		}
		if n, ok := parseRuleName(r.Name); ok && n.policy == p.Name {
			continue
		}
		for _, pt := range p.Ports {
			if !protocolsOverlap(r.Protocol, pt.Protocol) || !portsCover(r.DestinationPorts, pt.Number) {
				continue
			}
			if reason := p.bypassReason(r, pt); reason != "" {
				out = append(out, Bypass{Rule: r, Port: pt, Reason: reason})
			}
		}
	}
	return out
}

// protocolsOverlap reports whether some traffic matches both protocols.
func protocolsOverlap(rule, port Protocol) bool {
	return rule == ProtocolAny || port == ProtocolAny || strings.EqualFold(string(rule), string(port))
}

// bypassReason explains why rule r lets port pt past the policy, or
// returns "" when it does not.
func (p Policy) bypassReason(r SecurityRule, pt Port) string {
	g := groupOf(pt.Protocol)
	for _, f := range p.families() {
		threshold, which := denyPriority(p.Band, g, f), "deny-all"
		if p.anyDestination() {
			threshold = denyPriority(p.Band, g, IPv4)
		}
		guarded := !p.anySource() && len(Complement(p.allowedPrefixes(f), f)) > 0
		if guarded {
			threshold, which = guardPriority(p.Band, g, f), "guard"
		}
		if r.Priority >= threshold {
			continue
		}
		if r.UsesApplicationSecurityGroups {
			return fmt.Sprintf("rule %q (priority %d) allows %s using application security groups, which cannot be checked against the allowed sources, ahead of the policy's %s rule at priority %d", r.Name, r.Priority, pt, which, threshold)
		}
		if !p.destinationsOverlap(r.DestinationPrefixes, f) {
			continue
		}
		if src := p.sourceOutside(r.SourcePrefixes, f); src != "" {
			if p.anySource() {
				return fmt.Sprintf("rule %q (priority %d) allows %s from %q ahead of the policy's deny-all rule at priority %d, so the port is never closed", r.Name, r.Priority, pt, src, threshold)
			}
			return fmt.Sprintf("rule %q (priority %d) allows %s from %q, outside the policy's allowed sources, ahead of the policy's %s rule at priority %d", r.Name, r.Priority, pt, src, which, threshold)
		}
	}
	return ""
}

// destinationsOverlap reports whether a rule's destinations may include a
// policy destination of family f. Tags count as overlapping: the
// VirtualNetwork tag covers the VMs' private addresses.
func (p Policy) destinationsOverlap(entries []string, f int) bool {
	for _, e := range entries {
		rp, ok := rulePrefix(e)
		if !ok {
			return true // "*" or a service tag
		}
		if familyOf(rp.Addr()) != f {
			continue
		}
		if p.anyDestination() {
			return true
		}
		for _, d := range p.destinations(f) {
			if dp, err := parseAddressPrefix(d); err == nil && dp.Overlaps(rp) {
				return true
			}
		}
	}
	return false
}

// sourceOutside returns the first source entry of family f (or of no
// family: "*", tags) not inside the allowed sources, or "".
func (p Policy) sourceOutside(entries []string, f int) string {
	outside := Complement(p.allowedPrefixes(f), f)
	for _, e := range entries {
		rp, ok := rulePrefix(e)
		if !ok {
			return e
		}
		if familyOf(rp.Addr()) != f {
			continue
		}
		if p.anySource() || overlapsAny(outside, rp) {
			return e
		}
	}
	return ""
}

func overlapsAny(ps []netip.Prefix, q netip.Prefix) bool {
	for _, p := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
