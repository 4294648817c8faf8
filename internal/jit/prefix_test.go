package jit

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestComplement(t *testing.T) {
	tests := []struct {
		name   string
		in     []netip.Prefix
		family int
		want   []netip.Prefix
	}{
		{"empty v4 is the whole family", nil, IPv4, prefixes("0.0.0.0/0")},
		{"empty v6 is the whole family", nil, IPv6, prefixes("::/0")},
		{"whole v4 is empty", prefixes("0.0.0.0/0"), IPv4, nil},
		{"whole v6 is empty", prefixes("::/0"), IPv6, nil},
		{"single address", prefixes("0.0.0.1/32"), IPv4, prefixes(
			"0.0.0.0/32", "0.0.0.2/31", "0.0.0.4/30", "0.0.0.8/29", "0.0.0.16/28", "0.0.0.32/27", "0.0.0.64/26", "0.0.0.128/25",
			"0.0.1.0/24", "0.0.2.0/23", "0.0.4.0/22", "0.0.8.0/21", "0.0.16.0/20", "0.0.32.0/19", "0.0.64.0/18", "0.0.128.0/17",
			"0.1.0.0/16", "0.2.0.0/15", "0.4.0.0/14", "0.8.0.0/13", "0.16.0.0/12", "0.32.0.0/11", "0.64.0.0/10", "0.128.0.0/9",
			"1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/5", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1")},
		{"first half", prefixes("0.0.0.0/1"), IPv4, prefixes("128.0.0.0/1")},
		{"second half", prefixes("128.0.0.0/1"), IPv4, prefixes("0.0.0.0/1")},
		{"adjacent halves are everything", prefixes("128.0.0.0/1", "0.0.0.0/1"), IPv4, nil},
		{"adjacent quarters merge", prefixes("64.0.0.0/2", "128.0.0.0/2"), IPv4, prefixes("0.0.0.0/2", "192.0.0.0/2")},
		{"overlapping and nested", prefixes("10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "0.0.0.0/1"), IPv4, prefixes("128.0.0.0/1")},
		{"other family ignored", prefixes("2001:db8::/32", "0.0.0.0/1"), IPv4, prefixes("128.0.0.0/1")},
		{"unmasked input is masked", prefixes("10.1.2.3/1"), IPv4, prefixes("128.0.0.0/1")},
		{"IPv6 halves", prefixes("8000::/1"), IPv6, prefixes("::/1")},
		{"IPv6 last address", prefixes("::/1", "8000::/2", "c000::/3"), IPv6, prefixes("e000::/3")},
		{"bad family", nil, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Complement(tt.in, tt.family)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Complement(%v, %d) = %v, want %v", tt.in, tt.family, got, tt.want)
			}
		})
	}
}

func TestComplementOfLastAddress(t *testing.T) {
	got := Complement(prefixes("255.255.255.255/32"), IPv4)
	if len(got) != 32 || got[0] != netip.MustParsePrefix("0.0.0.0/1") || got[31] != netip.MustParsePrefix("255.255.255.254/32") {
		t.Errorf("Complement(255.255.255.255) = %v, want 0.0.0.0/1 … 255.255.255.254/32 (32 prefixes)", got)
	}
	got = Complement(prefixes("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), IPv6)
	if len(got) != 128 || got[127] != netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128") {
		t.Errorf("Complement(last IPv6 address) has %d prefixes, last %v", len(got), got[len(got)-1])
	}
}

func TestCover(t *testing.T) {
	got := Cover(prefixes("10.0.0.128/25", "10.0.0.0/25", "10.0.1.0/24", "10.0.3.0/24", "2001:db8::/32"), IPv4)
	if want := prefixes("10.0.0.0/23", "10.0.3.0/24"); !slices.Equal(got, want) {
		t.Errorf("Cover = %v, want %v", got, want)
	}
}

// randomPrefix returns a prefix of the family biased towards long and
// clustered prefixes, so that random sets overlap and touch each other.
func randomPrefix(r *rand.Rand, family int) netip.Prefix {
	width := familyBits(family)
	bits := width - r.IntN(min(width, 12)+1)
	if r.IntN(4) == 0 {
		bits = r.IntN(width + 1)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	b[0] = byte(r.IntN(4)) << 6 // cluster the top bits
	var a netip.Addr
	if family == IPv4 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	} else {
		a = netip.AddrFrom16(b)
	}
	return netip.PrefixFrom(a, bits).Masked()
}

func randomAddrNear(r *rand.Rand, ps []netip.Prefix, family int) netip.Addr {
	if len(ps) > 0 && r.IntN(2) == 0 {
		p := ps[r.IntN(len(ps))]
		a := p.Addr()
		// The first or last address of a prefix, or one step outside.
		if r.IntN(2) == 0 {
			last := fromU128(prefixRange(p).last, family)
			a = last
		}
		switch r.IntN(3) {
		case 0:
			if n := a.Next(); n.IsValid() {
				a = n
			}
		case 1:
			if n := a.Prev(); n.IsValid() {
				a = n
			}
		}
		return a
	}
	return randomPrefix(r, family).Addr()
}

// checkComplement asserts the membership property and minimality.
func checkComplement(t testing.TB, in []netip.Prefix, family int, probes []netip.Addr) {
	t.Helper()
	comp := Complement(in, family)
	for i, c := range comp {
		if !c.IsValid() || familyOf(c.Addr()) != family || c.Masked() != c {
			t.Fatalf("Complement(%v) has invalid entry %v", in, c)
		}
		if i == 0 {
			continue
		}
		prev := comp[i-1]
		if prefixRange(prev).last.cmp(prefixRange(c).first) >= 0 {
			t.Fatalf("Complement(%v) is not sorted and disjoint: %v then %v", in, prev, c)
		}
		// Two siblings (same length, same parent) could be one prefix.
		if prev.Bits() == c.Bits() && c.Bits() > 0 {
			parent, _ := prev.Addr().Prefix(prev.Bits() - 1)
			if parent.Contains(c.Addr()) {
				t.Fatalf("Complement(%v) is not minimal: %v and %v are siblings", in, prev, c)
			}
		}
	}
	for _, a := range probes {
		inSet := slices.ContainsFunc(in, func(p netip.Prefix) bool { return p.Contains(a) })
		inComp := slices.ContainsFunc(comp, func(p netip.Prefix) bool { return p.Contains(a) })
		if inSet == inComp {
			t.Fatalf("address %v: in prefixes %v, in complement %v (prefixes %v, complement %v)", a, inSet, inComp, in, comp)
		}
	}
	// The complement of the complement is the minimal cover of the input.
	if back := Complement(comp, family); !slices.Equal(back, Cover(in, family)) {
		t.Fatalf("Complement(Complement(%v)) = %v, want %v", in, back, Cover(in, family))
	}
}

func TestComplementProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		family := []int{IPv4, IPv6}[r.IntN(2)]
		in := make([]netip.Prefix, r.IntN(8))
		for i := range in {
			in[i] = randomPrefix(r, family)
		}
		probes := make([]netip.Addr, 40)
		for i := range probes {
			probes[i] = randomAddrNear(r, in, family)
		}
		checkComplement(t, in, family, probes)
	}
}
