package nsgrules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Resolve returns the IPv4 prefixes that one entry of a rule's address
// list covers in this environment, as a minimal list of CIDR blocks in
// ascending order: what a packet filter needs to enforce the rule. It agrees
// with Evaluate: an IPv4 address lies in the result exactly when Evaluate
// would find it in prefix.
//
//   - "*" is 0.0.0.0/0.
//   - An IPv4 address or block is itself; an IPv4-mapped IPv6 block is the
//     IPv4 block it denotes; any other IPv6 block covers no IPv4 address
//     (nil).
//   - VirtualNetwork, AzureLoadBalancer and Internet are resolved as
//     Evaluate reads them; Internet is the complement of the excluded
//     ranges (the virtual network, private, shared, loopback, link-local,
//     multicast, reserved space and the broadcast address).
//   - Any other service tag is its IPv4 entries in ServiceTagPrefixes, or
//     nil when Env gives it no address space.
//
// An entry Azure would refuse (see ValidateRule) is an error: Evaluate lets
// such an entry match nothing, and a caller compiling rules must decide
// whether to skip it or refuse the rule.
func (e Env) Resolve(prefix string) ([]netip.Prefix, error) {
	p, ok := parsePrefix(prefix)
	if !ok {
		return nil, fmt.Errorf("%q is not an address prefix, service tag or \"*\"", prefix)
	}
	switch p.kind {
	case prefixAny:
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, nil
	case prefixIP:
		return v4Prefixes([]netip.Prefix{p.prefix}), nil
	}
	switch tag := p.tag; {
	case strings.EqualFold(tag, tagVirtualNetwork):
		return v4Prefixes(e.virtualNetwork()), nil
	case strings.EqualFold(tag, tagAzureLoadBalancer):
		return []netip.Prefix{azureLoadBalancer}, nil
	case strings.EqualFold(tag, tagInternet):
		excluded := slices.Concat(e.virtualNetwork(), notInternet, []netip.Prefix{netip.MustParsePrefix("255.255.255.255/32")})
		return complementV4(excluded), nil
	default:
		for name, ps := range e.ServiceTagPrefixes {
			if strings.EqualFold(name, tag) {
				return v4Prefixes(ps), nil
			}
		}
		return nil, nil
	}
}

// v4range is an inclusive range of IPv4 addresses as integers.
type v4range struct{ lo, hi uint32 }

func v4int(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func v4addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// v4Ranges returns the IPv4 ranges of ps (IPv4-mapped blocks normalised,
// other IPv6 blocks left out), sorted and merged.
func v4Ranges(ps []netip.Prefix) []v4range {
	var rs []v4range
	for _, p := range ps {
		p = normalisePrefix(p)
		if !p.IsValid() || !p.Addr().Is4() {
			continue
		}
		p = p.Masked()
		lo := v4int(p.Addr())
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		rs = append(rs, v4range{lo, hi})
	}
	slices.SortFunc(rs, func(a, b v4range) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var merged []v4range
	for _, r := range rs {
		if n := len(merged); n > 0 && (r.lo <= merged[n-1].hi || r.lo == merged[n-1].hi+1) {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// v4Prefixes is the minimal CIDR form of the IPv4 part of ps.
func v4Prefixes(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range v4Ranges(ps) {
		out = append(out, rangeToPrefixes(r)...)
	}
	return out
}

// complementV4 is the minimal CIDR form of every IPv4 address outside ps.
func complementV4(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	next, done := uint64(0), false
	for _, r := range v4Ranges(ps) {
		if uint64(r.lo) > next {
			out = append(out, rangeToPrefixes(v4range{uint32(next), r.lo - 1})...)
		}
		next = uint64(r.hi) + 1
		if next > 0xffffffff {
			done = true
			break
		}
	}
	if !done {
		out = append(out, rangeToPrefixes(v4range{uint32(next), 0xffffffff})...)
	}
	return out
}

// rangeToPrefixes splits an inclusive range into the fewest CIDR blocks.
func rangeToPrefixes(r v4range) []netip.Prefix {
	var out []netip.Prefix
	lo, hi := uint64(r.lo), uint64(r.hi)
	for lo <= hi {
		// The largest block that starts at lo (aligned) and ends by hi.
		bits := 32
		for bits > 0 {
			size := uint64(1) << (32 - (bits - 1))
			if lo%size != 0 || lo+size-1 > hi {
				break
			}
			bits--
		}
		out = append(out, netip.PrefixFrom(v4addr(uint32(lo)), bits))
		lo += uint64(1) << (32 - bits)
	}
	return out
}
