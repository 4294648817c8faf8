package nsgrules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Security admin rules of Azure Virtual Network Manager.
//
// A network manager deploys security admin configurations to virtual
// networks; the effective admin rules of a virtual network apply to every
// flow of every VM in it, before any NSG. Azure documents the order of
// evaluation (learn.microsoft.com/azure/virtual-network-manager/
// concept-security-admins): the
// admin rules of the flow's virtual network are evaluated first, lowest
// priority number first, and the first that matches decides what happens:
//
//   - AlwaysAllow: the flow is allowed and NSGs are not evaluated, so no
//     NSG can close it;
//   - Deny: the flow is denied and NSGs are not evaluated, so no NSG can
//     open it;
//   - Allow: the flow goes on to the NSGs (subnet, then NIC inbound), which
//     decide as if there were no admin rule.
//
// With no matching admin rule the NSGs decide alone.

// Admin rule access values, as Azure spells them
// (SecurityConfigurationRuleAccess).
const (
	AdminAllow       = "Allow"
	AdminDeny        = "Deny"
	AdminAlwaysAllow = "AlwaysAllow"
)

// Address prefix types of an admin rule's sources and destinations
// (AddressPrefixType).
const (
	PrefixTypeIPPrefix     = "IPPrefix"
	PrefixTypeServiceTag   = "ServiceTag"
	PrefixTypeNetworkGroup = "NetworkGroup"
)

// Admin rule priorities lie in 1–4096, as AdminPropertiesFormat documents.
const (
	MinAdminPriority = 1
	MaxAdminPriority = 4096
)

// protocolAny is the admin rules' wildcard protocol (NSG rules say "*").
const protocolAny = "Any"

var (
	adminAccesses   = []string{AdminAllow, AdminDeny, AdminAlwaysAllow}
	adminProtocols  = []string{"Tcp", "Udp", "Icmp", "Esp", "Ah", protocolAny}
	adminPrefixKind = []string{PrefixTypeIPPrefix, PrefixTypeServiceTag, PrefixTypeNetworkGroup}
)

// AddressPrefix is one source or destination of an admin rule
// (AddressPrefixItem): a CIDR block, an address or "*" of type IPPrefix, a
// service tag of type ServiceTag, or a network group id of type
// NetworkGroup.
type AddressPrefix struct {
	Prefix string
	Type   string
}

// AdminRule is one effective security admin rule of a virtual network.
type AdminRule struct {
	Name      string
	Priority  int32
	Direction string // "Inbound" | "Outbound"
	Access    string // "Allow" | "Deny" | "AlwaysAllow"
	Protocol  string // "Tcp", "Udp", "Icmp", "Esp", "Ah", "Any"

	// Sources and Destinations: an empty list stands for any address, as
	// "*" does.
	Sources, Destinations []AddressPrefix
	// SourcePorts and DestinationPorts hold "*", "N" or "N-M"; an empty
	// list stands for any port.
	SourcePorts, DestinationPorts []string
}

// ValidateAdminRule reports why Azure would refuse r as a security admin
// rule, or nil: a name, a priority in 1–4096, a known direction, access and
// protocol, prefixes that read as their type says, and port ranges.
func ValidateAdminRule(r AdminRule) error {
	var errs []error
	if r.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if r.Priority < MinAdminPriority || r.Priority > MaxAdminPriority {
		errs = append(errs, fmt.Errorf("priority %d is outside %d-%d", r.Priority, MinAdminPriority, MaxAdminPriority))
	}
	if canonical(r.Direction, directions...) == "" {
		errs = append(errs, fmt.Errorf("direction %q is not Inbound or Outbound", r.Direction))
	}
	if canonical(r.Access, adminAccesses...) == "" {
		errs = append(errs, fmt.Errorf("access %q is not Allow, Deny or AlwaysAllow", r.Access))
	}
	if canonical(r.Protocol, adminProtocols...) == "" {
		errs = append(errs, fmt.Errorf("protocol %q is not one of Tcp, Udp, Icmp, Esp, Ah, Any", r.Protocol))
	}
	for _, side := range []struct {
		name  string
		items []AddressPrefix
	}{{"source", r.Sources}, {"destination", r.Destinations}} {
		for _, it := range side.items {
			if err := validateAddressPrefix(it); err != nil {
				errs = append(errs, fmt.Errorf("%s %w", side.name, err))
			}
		}
	}
	for _, ports := range [][]string{r.SourcePorts, r.DestinationPorts} {
		for _, p := range ports {
			if _, ok := parsePortRange(p); !ok {
				errs = append(errs, fmt.Errorf("port range %q is not *, N or N-M within 0-65535", p))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("security admin rule %q: %w", r.Name, err)
	}
	return nil
}

func validateAddressPrefix(it AddressPrefix) error {
	switch canonical(it.Type, adminPrefixKind...) {
	case PrefixTypeIPPrefix:
		if p, ok := parsePrefix(it.Prefix); !ok || p.kind == prefixTag {
			return fmt.Errorf("%q is not an IP address, CIDR block or *", it.Prefix)
		}
	case PrefixTypeServiceTag:
		if p, ok := parsePrefix(it.Prefix); !ok || p.kind != prefixTag {
			return fmt.Errorf("%q is not a service tag", it.Prefix)
		}
	case PrefixTypeNetworkGroup:
		if it.Prefix == "" {
			return errors.New("network group id is empty")
		}
	default:
		return fmt.Errorf("%q has type %q, not IPPrefix, ServiceTag or NetworkGroup", it.Prefix, it.Type)
	}
	return nil
}

// AdminMatch is the admin rule that matched a flow, if any.
type AdminMatch struct {
	// Matched is false when no admin rule of the flow's direction matched.
	Matched  bool
	Index    int    // the rule's index in the list given
	RuleName string // the rule's Name
	Access   string // canonical: Allow, Deny or AlwaysAllow
	Priority int32
}

// Decides reports whether the match settles the flow without NSGs
// (AlwaysAllow or Deny).
func (m AdminMatch) Decides() bool {
	return m.Matched && (m.Access == AdminAlwaysAllow || m.Access == AdminDeny)
}

// EvaluateAdmin returns the first admin rule of the flow's direction that
// matches it, lowest priority number first; equal priorities (possible
// across configurations) go in the order given.
//
// A rule matches when its protocol is "Any" or the flow's, the flow's
// source and destination lie in its sources and destinations (an empty list
// is any address), and for TCP and UDP the ports lie in its port ranges (an
// empty list is any port). A NetworkGroup prefix matches no address: the
// simulator does not know group membership, and a rule it cannot judge must
// not decide by accident. A rule with an access or protocol it does not know
// matches nothing; ValidateAdminRule refuses such rules.
func EvaluateAdmin(rules []AdminRule, f Flow, env Env) AdminMatch {
	pf := parseFlow(f)
	order := make([]int, 0, len(rules))
	for i, r := range rules {
		if strings.EqualFold(r.Direction, f.Direction) {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return int(rules[a].Priority) - int(rules[b].Priority)
	})
	for _, i := range order {
		r := rules[i]
		access := canonical(r.Access, adminAccesses...)
		if access == "" || !adminRuleMatches(r, pf, env) {
			continue
		}
		return AdminMatch{Matched: true, Index: i, RuleName: r.Name, Access: access, Priority: r.Priority}
	}
	return AdminMatch{Index: -1}
}

func adminRuleMatches(r AdminRule, f flow, env Env) bool {
	switch p := canonical(r.Protocol, adminProtocols...); {
	case p == "":
		return false
	case p != protocolAny && !strings.EqualFold(p, f.Protocol):
		return false
	}
	if !adminPrefixesContain(r.Sources, f, true, env) || !adminPrefixesContain(r.Destinations, f, false, env) {
		return false
	}
	if portless(f.Protocol) {
		return true
	}
	return adminPortsContain(r.SourcePorts, f.SourcePort) && adminPortsContain(r.DestinationPorts, f.DestinationPort)
}

func adminPrefixesContain(items []AddressPrefix, f flow, source bool, env Env) bool {
	if len(items) == 0 {
		return true
	}
	a, valid := f.dst, f.dstOK
	if source {
		a, valid = f.src, f.srcOK
	}
	for _, it := range items {
		p, ok := parsePrefix(it.Prefix)
		if !ok {
			continue
		}
		switch canonical(it.Type, adminPrefixKind...) {
		case PrefixTypeIPPrefix:
			if p.kind == prefixAny || (valid && p.kind == prefixIP && p.prefix.Contains(a)) {
				return true
			}
		case PrefixTypeServiceTag:
			if valid && p.kind == prefixTag && env.tagContains(p.tag, a) {
				return true
			}
		}
	}
	return false
}

func adminPortsContain(ranges []string, port int) bool {
	return len(ranges) == 0 || portsContain(ranges, port)
}

// Decision is how the admin rules and NSGs on a flow's path judged it.
type Decision struct {
	Allowed bool
	// Admin is the admin rule that matched, if any. When Admin.Decides()
	// it decided alone and NSGIndex is -1.
	Admin AdminMatch
	// NSGIndex is the deciding NSG's index (see EvaluatePath), -1 when an
	// admin rule decided or there is no NSG; NSG is its match.
	NSGIndex int
	NSG      Match
}

// EvaluateWithAdmin judges a flow as Azure's data plane does: the admin
// rules of the flow's virtual network first (EvaluateAdmin); if none
// decides (no match, or Allow), the NSGs on the path (EvaluatePath).
func EvaluateWithAdmin(admin []AdminRule, nsgs [][]Rule, f Flow, env Env) Decision {
	am := EvaluateAdmin(admin, f, env)
	if am.Decides() {
		return Decision{Allowed: am.Access == AdminAlwaysAllow, Admin: am, NSGIndex: -1}
	}
	i, m := EvaluatePath(nsgs, f, env)
	return Decision{Allowed: m.Allowed, Admin: am, NSGIndex: i, NSG: m}
}
