package jit

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Flow is one inbound connection attempt to judge: protocol, source and
// destination addresses, destination port. Source ports are not modelled:
// every rule this project meets allows any source port.
type Flow struct {
	Protocol            Protocol
	Source, Destination netip.Addr
	Port                uint16
}

// Azure's default inbound rules, evaluated after every user rule.
var defaultInboundRules = []SecurityRule{
	{Name: "AllowVnetInBound", Priority: 65000, Direction: Inbound, Access: Allow, Protocol: ProtocolAny,
		SourcePrefixes: []string{tagVirtualNetwork}, SourcePorts: []string{Any},
		DestinationPrefixes: []string{tagVirtualNetwork}, DestinationPorts: []string{Any}},
	{Name: "AllowAzureLoadBalancerInBound", Priority: 65001, Direction: Inbound, Access: Allow, Protocol: ProtocolAny,
		SourcePrefixes: []string{tagAzureLoadBalancer}, SourcePorts: []string{Any},
		DestinationPrefixes: []string{Any}, DestinationPorts: []string{Any}},
	{Name: "DenyAllInBound", Priority: 65500, Direction: Inbound, Access: Deny, Protocol: ProtocolAny,
		SourcePrefixes: []string{Any}, SourcePorts: []string{Any},
		DestinationPrefixes: []string{Any}, DestinationPorts: []string{Any}},
}

// Service tags the evaluator resolves.
const (
	tagInternet          = "Internet"
	tagVirtualNetwork    = "VirtualNetwork"
	tagAzureLoadBalancer = "AzureLoadBalancer"
)

// Without knowledge of the virtual network's address space, the
// VirtualNetwork tag is taken to be every private range a virtual network
// may use (plus the platform address Azure includes in it), and Internet
// every other public address. Documentation ranges (203.0.113.0/24,
// 2001:db8::/32, …) count as Internet, which is what tests want.
var (
	azureLoadBalancerAddr = netip.MustParseAddr("168.63.129.16")
	virtualNetworkRanges  = mustPrefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "168.63.129.16/32")
	neverInternet         = mustPrefixes("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3",
		"::/128", "::1/128", "fe80::/10", "ff00::/8")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func anyContains(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

// Allowed evaluates a flow the way Azure does, through a path of NSGs in
// the order the traffic meets them (for inbound traffic: the subnet's NSG,
// then the NIC's). In each NSG the inbound rules, then Azure's default
// rules, are tried by ascending priority and the first match decides. The
// flow passes only if every NSG allows it. It returns the deciding rule:
// the first denying one, or when all allow, the last NSG's allowing one;
// with no NSG on the path nothing filters and the rule is nil.
//
// Service tags beyond *, Internet, VirtualNetwork and AzureLoadBalancer,
// and rules using application security groups, match nothing: they cannot
// be judged from the rules alone. ICMP, ESP and AH flows ignore ports.
func Allowed(nsgs [][]SecurityRule, f Flow) (bool, *SecurityRule) {
	var decider *SecurityRule
	for _, rules := range nsgs {
		r := firstMatch(rules, f)
		decider = &r
		if !strings.EqualFold(string(r.Access), string(Allow)) {
			return false, decider
		}
	}
	return true, decider
}

func firstMatch(rules []SecurityRule, f Flow) SecurityRule {
	// Sort pointers, not rules: a rule is a large struct.
	candidates := make([]*SecurityRule, 0, len(rules)+len(defaultInboundRules))
	for i := range rules {
		if strings.EqualFold(string(rules[i].Direction), string(Inbound)) {
			candidates = append(candidates, &rules[i])
		}
	}
	for i := range defaultInboundRules {
		candidates = append(candidates, &defaultInboundRules[i])
	}
	// Stable: Azure refuses equal priorities, but if given, the first wins.
	slices.SortStableFunc(candidates, func(a, b *SecurityRule) int { return int(a.Priority) - int(b.Priority) })
	for _, r := range candidates {
		if matches(r, f) {
			return *r
		}
	}
	return defaultInboundRules[len(defaultInboundRules)-1]
}

// matches reports whether rule r applies to flow f; the cheap tests first.
func matches(r *SecurityRule, f Flow) bool {
	if r.UsesApplicationSecurityGroups {
		return false
	}
	if r.Protocol != ProtocolAny && !strings.EqualFold(string(r.Protocol), string(f.Protocol)) {
		return false
	}
	switch f.Protocol {
	case ProtocolICMP, ProtocolESP, ProtocolAH:
	default:
		if !portsCover(r.DestinationPorts, f.Port) {
			return false
		}
	}
	return entriesContain(r.SourcePrefixes, f.Source) && entriesContain(r.DestinationPrefixes, f.Destination)
}

// entriesContain reports whether any address entry of a rule ("*", a
// service tag, an IP or CIDR) contains a.
func entriesContain(entries []string, a netip.Addr) bool {
	for _, e := range entries {
		switch {
		case e == Any:
			return true
		case !a.IsValid():
		case strings.EqualFold(e, tagVirtualNetwork):
			if anyContains(virtualNetworkRanges, a) {
				return true
			}
		case strings.EqualFold(e, tagAzureLoadBalancer):
			if a == azureLoadBalancerAddr {
				return true
			}
		case strings.EqualFold(e, tagInternet):
			if !anyContains(virtualNetworkRanges, a) && !anyContains(neverInternet, a) {
				return true
			}
		default:
			if p, ok := rulePrefix(e); ok && p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// rulePrefix reads an IP or CIDR entry of a rule, tolerating host bits.
func rulePrefix(s string) (netip.Prefix, bool) {
	// Choose the parser by shape: a failed parse allocates its error, and
	// this runs for every entry of every rule a flow meets.
	if !strings.Contains(s, "/") {
		if !strings.ContainsAny(s, ".:") {
			return netip.Prefix{}, false // "*" or a service tag
		}
		a, err := netip.ParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen()), err == nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err == nil
}

// portRange is an inclusive range of ports from a rule.
type portRange struct{ lo, hi int }

// parsePortRange reads "*", "22" or "20-30".
func parsePortRange(s string) (portRange, bool) {
	if s == Any {
		return portRange{0, 65535}, true
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil {
		return portRange{}, false
	}
	hi := lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return portRange{}, false
		}
	}
	if lo < 0 || hi > 65535 || lo > hi {
		return portRange{}, false
	}
	return portRange{lo, hi}, true
}

func portsCover(entries []string, port uint16) bool {
	return slices.ContainsFunc(entries, func(e string) bool {
		r, ok := parsePortRange(e)
		return ok && r.lo <= int(port) && int(port) <= r.hi
	})
}
