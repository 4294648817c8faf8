package jit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Azure Virtual Network Manager security admin rules are evaluated before
// any NSG, for every flow in the virtual networks they apply to:
//
//   - AlwaysAllow: the flow is allowed and no NSG is evaluated. No NSG rule,
//     a policy's deny-all included, can close such a port: a permanent
//     bypass.
//   - Deny: the flow is denied and no NSG is evaluated. A grant's allow
//     rule on the NSG is then useless.
//   - Allow: the flow goes on to the NSGs, which decide as usual.
//
// AdminOverrides finds the admin rules that decide a protected port before
// the policy can.

// Admin rule accesses.
const (
	AdminAllow       = "Allow"
	AdminDeny        = "Deny"
	AdminAlwaysAllow = "AlwaysAllow"
)

// AdminRule is an effective security admin rule of a virtual network, as
// Azure lists it. Prefixes are CIDRs, addresses, "*" or service tags.
type AdminRule struct {
	Name             string
	Priority         int32 // 1–4096, lower first
	Access           string
	Direction        Direction
	Protocol         Protocol // "Tcp", "Udp", "Icmp", "Esp", "Ah" or "*" (Azure's "Any")
	Sources          []string
	Destinations     []string
	SourcePorts      []string
	DestinationPorts []string
	// Scope says where Azure took it from (the network manager and its
	// configuration), for people.
	Scope string
}

// Admin override kinds.
const (
	// OverrideAlwaysAllow: an AlwaysAllow admin rule lets the port in, and
	// no NSG can close it.
	OverrideAlwaysAllow = "always_allow"
	// OverrideDeny: a Deny admin rule blocks the port from allowed sources
	// before any NSG: grants from them cannot work.
	OverrideDeny = "deny"
)

// AdminOverride is an admin rule that decides a protected port before the
// policy's rules are evaluated.
type AdminOverride struct {
	Rule   AdminRule
	Port   Port
	Kind   string // OverrideAlwaysAllow or OverrideDeny
	Reason string
}

// AdminOverrides returns, for each protected port, the admin rules that
// decide it before any NSG: inbound AlwaysAllow rules whose protocol and
// ports cover it and whose destinations may include the policy's (from any
// source: even an allowed source then needs no grant), and inbound Deny
// rules that cover it for some of the policy's allowed sources. Allow
// rules defer to the NSGs and are never overrides. Tags and "*" count as
// overlapping whatever they stand for, and a rule is listed even when an
// admin rule evaluated before it covers the same traffic: over-reporting
// an override is safe, missing one is not. Ordered by port, then by the
// order Azure evaluates the rules in.
func (p Policy) AdminOverrides(rules []AdminRule) []AdminOverride {
	ordered := slices.Clone(rules)
	slices.SortStableFunc(ordered, func(a, b AdminRule) int { return cmp.Compare(a.Priority, b.Priority) })
	var out []AdminOverride
	for _, pt := range p.Ports {
		for _, r := range ordered {
			if !strings.EqualFold(string(r.Direction), string(Inbound)) || !protocolsOverlap(normalAdminProtocol(r.Protocol), pt.Protocol) ||
				!portsCoverAny(r.DestinationPorts, pt.Number) || !p.adminDestinationsOverlap(r.Destinations) {
				continue
			}
			switch {
			case strings.EqualFold(r.Access, AdminAlwaysAllow):
				out = append(out, AdminOverride{Rule: r, Port: pt, Kind: OverrideAlwaysAllow,
					Reason: fmt.Sprintf("admin rule %q (priority %d%s) always allows %s from %s before any NSG is evaluated: "+
						"no NSG rule, the policy's deny-all included, can close it", r.Name, r.Priority, scopeText(r.Scope),
						pt, sourcesText(r.Sources))})
			case strings.EqualFold(r.Access, AdminDeny) && p.adminSourcesOverlapAllowed(r.Sources):
				out = append(out, AdminOverride{Rule: r, Port: pt, Kind: OverrideDeny,
					Reason: fmt.Sprintf("admin rule %q (priority %d%s) denies %s from %s before any NSG is evaluated: grants "+
						"from those sources cannot work", r.Name, r.Priority, scopeText(r.Scope), pt, sourcesText(r.Sources))})
			}
		}
	}
	return out
}

func sourcesText(sources []string) string {
	if len(sources) == 0 {
		return "*"
	}
	return strings.Join(sources, ", ")
}

func scopeText(scope string) string {
	if scope == "" {
		return ""
	}
	return ", " + scope
}

// normalAdminProtocol maps Azure's admin-rule "Any" to "*".
func normalAdminProtocol(p Protocol) Protocol {
	if strings.EqualFold(string(p), "Any") {
		return ProtocolAny
	}
	return p
}

// portsCoverAny is portsCover, with no port ranges meaning every port, as
// an admin rule without destination ports does.
func portsCoverAny(ranges []string, port uint16) bool {
	if len(ranges) == 0 {
		return true
	}
	return portsCover(ranges, port)
}

// adminDestinationsOverlap reports whether the admin rule's destinations may
// include a destination of the policy; none means every address.
func (p Policy) adminDestinationsOverlap(entries []string) bool {
	if len(entries) == 0 {
		return true
	}
	for _, f := range p.families() {
		if p.destinationsOverlap(entries, f) {
			return true
		}
	}
	return false
}

// adminSourcesOverlapAllowed reports whether the admin rule's sources may
// include an allowed source of the policy; none means every address.
func (p Policy) adminSourcesOverlapAllowed(entries []string) bool {
	if len(entries) == 0 || p.anySource() {
		return true
	}
	for _, e := range entries {
		rp, ok := rulePrefix(e)
		if !ok {
			return true // "*" or a service tag
		}
		if overlapsAny(p.allowedPrefixes(familyOf(rp.Addr())), rp) {
			return true
		}
	}
	return false
}
