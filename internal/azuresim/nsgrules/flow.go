package nsgrules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Default rule priorities: Azure's defaults sit below every rule a user can
// write (MaxPriority is 4096), so they decide only what no rule matched.
const (
	priorityAllowVnet   = 65000
	priorityAllowSecond = 65001
	priorityDenyAll     = 65500
)

// DefaultRules returns Azure's six default rules as ARM serialises them in
// defaultSecurityRules: singular fields, protocol "*", ports "*".
func DefaultRules() []Rule {
	rule := func(name string, prio int32, dir, access, src, dst, desc string) Rule {
		return Rule{
			Name: name, Priority: prio, Direction: dir, Access: access, Protocol: wildcard,
			SourcePrefixes: []string{src}, DestinationPrefixes: []string{dst},
			SourcePorts: []string{wildcard}, DestinationPorts: []string{wildcard},
			Description: desc,
		}
	}
	return []Rule{
		rule("AllowVnetInBound", priorityAllowVnet, "Inbound", "Allow", tagVirtualNetwork, tagVirtualNetwork,
			"Allow inbound traffic from all VMs in VNET"),
		rule("AllowAzureLoadBalancerInBound", priorityAllowSecond, "Inbound", "Allow", tagAzureLoadBalancer, wildcard,
			"Allow inbound traffic from azure load balancer"),
		rule("DenyAllInBound", priorityDenyAll, "Inbound", "Deny", wildcard, wildcard,
			"Deny all inbound traffic"),
		rule("AllowVnetOutBound", priorityAllowVnet, "Outbound", "Allow", tagVirtualNetwork, tagVirtualNetwork,
			"Allow outbound traffic from all VMs to all VMs in VNET"),
		rule("AllowInternetOutBound", priorityAllowSecond, "Outbound", "Allow", wildcard, tagInternet,
			"Allow outbound traffic from all VMs to Internet"),
		rule("DenyAllOutBound", priorityDenyAll, "Outbound", "Deny", wildcard, wildcard,
			"Deny all outbound traffic"),
	}
}

// Validate reports whether f can be judged: a known direction and protocol,
// IP literals for both ends and ports in 0–65535. Evaluate does not require
// it (an unreadable address simply matches only "*"), but a caller that
// answers requests should refuse such a flow instead of judging it.
func (f Flow) Validate() error {
	var errs []error
	if canonical(f.Direction, directions...) == "" {
		errs = append(errs, fmt.Errorf("direction %q is not Inbound or Outbound", f.Direction))
	}
	if p := canonical(f.Protocol, protocols...); p == "" || p == wildcard {
		errs = append(errs, fmt.Errorf("protocol %q is not one of Tcp, Udp, Icmp, Esp, Ah", f.Protocol))
	}
	for _, end := range []struct{ name, addr string }{{"source", f.Source}, {"destination", f.Destination}} {
		if a, err := netip.ParseAddr(end.addr); err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("%s %q is not an IP address", end.name, end.addr))
		}
	}
	for _, end := range []struct {
		name string
		port int
	}{{"source port", f.SourcePort}, {"destination port", f.DestinationPort}} {
		if end.port < 0 || end.port > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is outside 0-65535", end.name, end.port))
		}
	}
	return errors.Join(errs...)
}

// flow is a Flow with its addresses parsed and IPv4-mapped IPv6 addresses
// unmapped, so that ::ffff:10.0.0.4 and 10.0.0.4 are one host.
type flow struct {
	Flow
	src, dst     netip.Addr
	srcOK, dstOK bool
}

func parseFlow(f Flow) flow {
	src, err1 := netip.ParseAddr(f.Source)
	dst, err2 := netip.ParseAddr(f.Destination)
	return flow{Flow: f, src: src.Unmap(), dst: dst.Unmap(), srcOK: err1 == nil, dstOK: err2 == nil}
}

// Evaluate runs one NSG's rules plus Azure's default rules on a flow and
// returns the first match by priority among the rules of the flow's
// direction, as Azure does.
//
// A rule matches when its protocol is "*" or the flow's (case-insensitive),
// the flow's addresses lie in one of its source and destination prefixes,
// and, for TCP and UDP flows only, the flow's ports lie in its port ranges
// (ICMP, ESP and AH carry no ports). A side given as application security
// groups never matches here: the simulator does not know which NICs belong
// to which group, and a rule that cannot be judged must not open or close
// anything by accident. The rules are assumed valid (ValidateRule); an
// invalid prefix or port range in a rule matches nothing. A flow whose
// direction is neither Inbound nor Outbound matches no rule and is denied
// with an empty RuleName.
func Evaluate(rules []Rule, f Flow, env Env) Match {
	pf := parseFlow(f)
	candidates := make([]Rule, 0, len(rules)+3)
	for _, r := range rules {
		if strings.EqualFold(r.Direction, f.Direction) {
			candidates = append(candidates, r)
		}
	}
	userRules := len(candidates)
	for _, r := range DefaultRules() {
		if strings.EqualFold(r.Direction, f.Direction) {
			candidates = append(candidates, r)
		}
	}
	order := make([]int, len(candidates))
	for i := range order {
		order[i] = i
	}
	// Stable, so that equal priorities (which Azure refuses) still give a
	// deterministic answer: the rule given first.
	slices.SortStableFunc(order, func(a, b int) int {
		return int(candidates[a].Priority) - int(candidates[b].Priority)
	})
	for _, i := range order {
		r := candidates[i]
		if ruleMatches(r, pf, env) {
			return Match{
				Allowed:  strings.EqualFold(r.Access, "Allow"),
				RuleName: r.Name,
				Priority: r.Priority,
				Default:  i >= userRules,
			}
		}
	}
	return Match{}
}

func ruleMatches(r Rule, f flow, env Env) bool {
	if r.Protocol != wildcard && !strings.EqualFold(r.Protocol, f.Protocol) {
		return false
	}
	if r.SourceASGs > 0 || r.DestinationASGs > 0 {
		return false
	}
	if !prefixesContain(r.SourcePrefixes, f.src, f.srcOK, env) ||
		!prefixesContain(r.DestinationPrefixes, f.dst, f.dstOK, env) {
		return false
	}
	if portless(f.Protocol) {
		return true
	}
	return portsContain(r.SourcePorts, f.SourcePort) && portsContain(r.DestinationPorts, f.DestinationPort)
}

func prefixesContain(prefixes []string, a netip.Addr, valid bool, env Env) bool {
	for _, s := range prefixes {
		p, ok := parsePrefix(s)
		switch {
		case !ok:
		case p.kind == prefixAny:
			return true
		case !valid:
		case p.kind == prefixTag && env.tagContains(p.tag, a):
			return true
		case p.kind == prefixIP && p.prefix.Contains(a):
			return true
		}
	}
	return false
}

// portsContain: "*" matches any port, even one outside 0–65535, so that a
// malformed flow still meets the default deny-all rules.
func portsContain(ranges []string, port int) bool {
	for _, s := range ranges {
		if s == wildcard {
			return true
		}
		if r, ok := parsePortRange(s); ok && r.contains(port) {
			return true
		}
	}
	return false
}

// EvaluatePath judges a flow that crosses several NSGs, e.g. a subnet's and
// a NIC's. nsgs must be in the order the traffic meets them: for inbound
// traffic the subnet's NSG first, then the NIC's; for outbound the NIC's
// first. Every entry is an NSG (default rules apply); leave out a subnet or
// NIC that has none. The first NSG that denies decides; the flow passes
// only if every NSG allows it.
//
// It returns the index of the deciding NSG and its match: the first denying
// NSG, or, when all allow, the last one. With no NSG on the path Azure does
// not filter at all: (-1, Match{Allowed: true}).
func EvaluatePath(nsgs [][]Rule, f Flow, env Env) (index int, m Match) {
	index, m = -1, Match{Allowed: true}
	for i, rules := range nsgs {
		index, m = i, Evaluate(rules, f, env)
		if !m.Allowed {
			return index, m
		}
	}
	return index, m
}
