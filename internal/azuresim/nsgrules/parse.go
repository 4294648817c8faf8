package nsgrules

import (
	"net/netip"
	"strconv"
	"strings"
)

// wildcard is Azure's wildcard for addresses, ports and protocols.
const wildcard = "*"

// family of an address prefix, for the rule that one rule cannot mix IPv4
// and IPv6.
type family int

const (
	familyNone family = iota // "*" and service tags: both families
	familyIPv4
	familyIPv6
)

// prefixKind classifies one address prefix as Azure would read it.
type prefixKind int

const (
	prefixInvalid prefixKind = iota
	prefixAny
	prefixTag
	prefixIP
)

// parsedPrefix is one valid entry of a rule's address list.
type parsedPrefix struct {
	kind   prefixKind
	tag    string       // for prefixTag
	prefix netip.Prefix // for prefixIP, normalised (IPv4-mapped → IPv4)
	family family       // as written: a mapped "::ffff:a.b.c.d" is IPv6
}

// parsePrefix reads one address prefix: "*", a service tag, an IP address
// or a CIDR block. Azure refuses a CIDR block with host bits set
// (10.0.0.1/24): it answers SecurityRuleInvalidAddressPrefix rather than
// masking it, and so does this function. Zones, ranges ("a-b"), comma
// lists and surrounding spaces are refused as well.
func parsePrefix(s string) (parsedPrefix, bool) {
	if s == wildcard {
		return parsedPrefix{kind: prefixAny}, true
	}
	if isServiceTag(s) {
		return parsedPrefix{kind: prefixTag, tag: s}, true
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil || p != p.Masked() {
			return parsedPrefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return parsedPrefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	f := familyIPv4
	if p.Addr().Is6() {
		f = familyIPv6
	}
	return parsedPrefix{kind: prefixIP, prefix: normalisePrefix(p), family: f}, true
}

// normalisePrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104)
// into the IPv4 prefix it denotes, so that it matches IPv4 flows, which are
// always unmapped before matching.
func normalisePrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi int }

func (r portRange) contains(p int) bool { return r.lo <= p && p <= r.hi }

// parsePortRange reads "*", "N" or "N-M" with 0 ≤ N ≤ M ≤ 65535. Only
// decimal digits are accepted: no signs, spaces or comma lists, which Azure
// answers with SecurityRuleInvalidPortRange.
func parsePortRange(s string) (portRange, bool) {
	if s == wildcard {
		return portRange{0, 65535}, true
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, ok1 := parsePort(lo)
	h, ok2 := parsePort(hi)
	if !ok1 || !ok2 || l > h {
		return portRange{}, false
	}
	return portRange{l, h}, true
}

// ParsePortRange is parsePortRange for other packages (the test
// dataplane compiles rules with it): the bounds of "*", "N" or "N-M".
func ParsePortRange(s string) (lo, hi int, ok bool) {
	r, ok := parsePortRange(s)
	return r.lo, r.hi, ok
}

func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, false
	}
	return n, true
}

// canonical returns the spelling Azure uses for a case-insensitive enum
// value, or "" when v is none of them.
func canonical(v string, allowed ...string) string {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	return ""
}

// Enum values as Azure spells them.
var (
	directions = []string{"Inbound", "Outbound"}
	accesses   = []string{"Allow", "Deny"}
	protocols  = []string{"Tcp", "Udp", "Icmp", "Esp", "Ah", wildcard}
)

// portless protocols carry no ports: a rule's port ranges do not constrain
// such a flow.
func portless(protocol string) bool {
	switch strings.ToLower(protocol) {
	case "icmp", "esp", "ah":
		return true
	}
	return false
}
