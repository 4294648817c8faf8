package jit

import (
	"cmp"
	"errors"
	"math/bits"
	"net/netip"
	"slices"
)

// Address families, as the family argument of Complement and in the
// encoding's slot layout.
const (
	IPv4 = 4
	IPv6 = 6
)

// familyOf returns IPv4 or IPv6 for a (non-mapped) address.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// familyBits is the address length of a family in bits.
func familyBits(family int) int {
	if family == IPv4 {
		return 32
	}
	return 128
}

// wholeFamily is the prefix covering every address of the family.
func wholeFamily(family int) netip.Prefix {
	if family == IPv4 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// u128 is an address as an unsigned 128-bit number, so that IPv4 and IPv6
// ranges share one arithmetic. IPv4 addresses occupy the low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) addOne() u128 {
	lo, carry := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + carry, lo}
}

func (a u128) subOne() u128 {
	lo, borrow := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - borrow, lo}
}

// trailingZeros counts the zero bits at the low end (128 for zero).
func (a u128) trailingZeros() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	return 64 + bits.TrailingZeros64(a.hi)
}

// lowMask has the n lowest bits set (0 ≤ n ≤ 128).
func lowMask(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{0, 1<<uint(n) - 1}
	case n < 128:
		return u128{1<<uint(n-64) - 1, ^uint64(0)}
	default:
		return u128{^uint64(0), ^uint64(0)}
	}
}

func (a u128) or(b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v u128
	for i := range 8 {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[i+8])
	}
	return v
}

func fromU128(v u128, family int) netip.Addr {
	if family == IPv4 {
		return netip.AddrFrom4([4]byte{byte(v.lo >> 24), byte(v.lo >> 16), byte(v.lo >> 8), byte(v.lo)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ first, last u128 }

func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	first := toU128(p.Addr())
	return addrRange{first, first.or(lowMask(familyBits(familyOf(p.Addr())) - p.Bits()))}
}

// mergedRanges returns the union of the family's prefixes as sorted,
// disjoint, non-adjacent ranges. Prefixes of the other family are ignored.
func mergedRanges(prefixes []netip.Prefix, family int) []addrRange {
	rs := make([]addrRange, 0, len(prefixes))
	for _, p := range prefixes {
		if p.IsValid() && familyOf(p.Addr()) == family {
			rs = append(rs, prefixRange(p))
		}
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.cmp(b.first) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			// Overlapping or adjacent: extend. The last address of the
			// family has no successor, so test "r.first ≤ last+1" as
			// "r.first-1 ≤ last" (r.first > 0 here since it sorts after).
			if r.first.cmp(last.last) <= 0 || r.first.subOne().cmp(last.last) <= 0 {
				if r.last.cmp(last.last) > 0 {
					last.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// rangePrefixes appends the fewest prefixes that cover exactly r.
func rangePrefixes(dst []netip.Prefix, r addrRange, family int) []netip.Prefix {
	width := familyBits(family)
	for {
		// The largest aligned block starting at r.first that ends within r.
		size := min(r.first.trailingZeros(), width)
		for size > 0 && r.first.or(lowMask(size)).cmp(r.last) > 0 {
			size--
		}
		dst = append(dst, netip.PrefixFrom(fromU128(r.first, family), width-size))
		end := r.first.or(lowMask(size))
		if end.cmp(r.last) >= 0 {
			return dst
		}
		r.first = end.addOne()
	}
}

// Cover returns the fewest prefixes of the family covering exactly the union
// of the given prefixes (of that family), sorted by address. Adjacent and
// overlapping inputs are merged: 10.0.0.0/25 and 10.0.0.128/25 give
// 10.0.0.0/24.
func Cover(prefixes []netip.Prefix, family int) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range mergedRanges(prefixes, family) {
		out = rangePrefixes(out, r, family)
	}
	return out
}

// Complement returns the CIDRs covering every address of the family that
// none of the prefixes covers, minimal and sorted. family: 4 or 6; prefixes
// of the other family are ignored. The complement of nothing is the whole
// family (0.0.0.0/0 or ::/0); the complement of the whole family is empty.
//
// A guard rule's sources are the complement of the policy's allowed
// sources, and reading a policy back takes the complement again, so this
// function is its own inverse on minimal inputs.
func Complement(prefixes []netip.Prefix, family int) []netip.Prefix {
	if family != IPv4 && family != IPv6 {
		return nil
	}
	var out []netip.Prefix
	next := u128{} // first address not yet accounted for
	done := false  // the family's last address has been covered
	for _, r := range mergedRanges(prefixes, family) {
		if r.first.cmp(next) > 0 {
			out = rangePrefixes(out, addrRange{next, r.first.subOne()}, family)
		}
		if r.last == lowMask(familyBits(family)) {
			done = true
			break
		}
		next = r.last.addOne()
	}
	if !done {
		out = rangePrefixes(out, addrRange{next, lowMask(familyBits(family))}, family)
	}
	return out
}

// formatPrefix writes a prefix in the canonical form this project stores:
// a single address as a plain IP, anything else as a CIDR.
func formatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// comparePrefixes orders prefixes IPv4 first, then by address, then
// shorter (wider) prefixes first.
func comparePrefixes(a, b netip.Prefix) int {
	if c := cmp.Compare(familyOf(a.Addr()), familyOf(b.Addr())); c != 0 {
		return c
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// parseAddressPrefix reads an IP address or CIDR in the strict form this
// project accepts: no zones, no IPv4-mapped IPv6, no host bits. A plain IP
// is a single-address prefix. It does not judge "*" or service tags.
func parseAddressPrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, errZone
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errNotPrefix
		}
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, &mappedError{p}
	}
	if p.Masked() != p {
		return netip.Prefix{}, &hostBitsError{p}
	}
	return p, nil
}

// ParseAddressPrefix reads an IP address or CIDR as this project accepts it
// everywhere (no zones, no IPv4-mapped IPv6, no host bits set): a plain IP
// is a single-address prefix.
func ParseAddressPrefix(s string) (netip.Prefix, error) {
	p, err := parseAddressPrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New(describePrefixError(s, err, pathGrantSource))
	}
	return p, nil
}
