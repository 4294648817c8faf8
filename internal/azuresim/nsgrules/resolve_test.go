package nsgrules

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// resolveEnvs are the environments the agreement tests run in: Azure's
// defaults and one with a declared address space and service tags.
var resolveEnvs = []Env{
	{},
	{
		VirtualNetworkPrefixes: mustPrefixes("10.0.0.0/16", "192.168.7.0/24"),
		ServiceTagPrefixes: map[string][]netip.Prefix{
			"Storage":                mustPrefixes("20.38.0.0/16", "2603:1000::/40"),
			"Sql.WestEurope":         mustPrefixes("40.68.0.0/16", "::ffff:52.0.0.0/104"),
			"AzureCloud":             mustPrefixes("20.0.0.0/8", "20.38.0.0/16"),
			"AzureFrontDoor.Backend": nil,
		},
	},
}

var resolveInputs = []string{
	"*", "Internet", "internet", "VirtualNetwork", "AzureLoadBalancer", "Storage", "storage",
	"Sql.WestEurope", "Sql.NorthEurope", "AzureCloud", "AzureFrontDoor.Backend", "Storage.EastUS",
	"203.0.113.7", "203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0", "255.255.255.255", "::ffff:10.0.0.0/104",
	"::ffff:203.0.113.7", "2001:db8::/32", "::/0", "168.63.129.16",
}

// probeAddrs returns addresses worth asking about for an environment: the
// edges of every range either side may draw, and random ones.
func probeAddrs(rng *rand.Rand, env Env, got []netip.Prefix) []netip.Addr {
	var all []netip.Prefix
	all = append(all, got...)
	all = append(all, env.virtualNetwork()...)
	all = append(all, notInternet...)
	for _, ps := range env.ServiceTagPrefixes {
		all = append(all, ps...)
	}
	var addrs []netip.Addr
	for _, r := range v4Ranges(all) {
		for _, n := range []uint64{uint64(r.lo) - 1, uint64(r.lo), uint64(r.hi), uint64(r.hi) + 1} {
			if n <= 0xffffffff {
				addrs = append(addrs, v4addr(uint32(n)))
			}
		}
	}
	for range 2000 {
		addrs = append(addrs, v4addr(rng.Uint32()))
	}
	for _, s := range []string{"0.0.0.0", "255.255.255.255", "203.0.113.7", "198.51.100.7", "10.0.2.5", "168.63.129.16", "8.8.8.8"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	return addrs
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestResolveAgreesWithEvaluate: for every input and environment, an IPv4
// address lies in Resolve's answer exactly when the evaluator finds it in
// the prefix, and the answer is minimal, sorted, disjoint IPv4 CIDR.
func TestResolveAgreesWithEvaluate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for ei, env := range resolveEnvs {
		for _, in := range resolveInputs {
			got, err := env.Resolve(in)
			if err != nil {
				t.Fatalf("env %d: Resolve(%q): %v", ei, in, err)
			}
			checkCanonical(t, in, got)
			for _, a := range probeAddrs(rng, env, got) {
				want := prefixesContain([]string{in}, a, true, env)
				if inPrefixes(got, a) != want {
					t.Fatalf("env %d: %s in Resolve(%q) = %v, evaluator says %v (resolved %v)", ei, a, in, !want, want, got)
				}
			}
		}
	}
}

func checkCanonical(t *testing.T, in string, ps []netip.Prefix) {
	t.Helper()
	for i, p := range ps {
		if !p.Addr().Is4() || p != p.Masked() {
			t.Fatalf("Resolve(%q)[%d] = %v: not a masked IPv4 block", in, i, p)
		}
		if i == 0 {
			continue
		}
		prev := ps[i-1]
		prevEnd := uint64(v4int(prev.Addr())) + uint64(1)<<(32-prev.Bits())
		if uint64(v4int(p.Addr())) < prevEnd {
			t.Fatalf("Resolve(%q): %v overlaps or precedes %v", in, p, prev)
		}
	}
}

func TestResolveTable(t *testing.T) {
	tests := []struct {
		env  Env
		in   string
		want []string
	}{
		{Env{}, "*", []string{"0.0.0.0/0"}},
		{Env{}, "203.0.113.7", []string{"203.0.113.7/32"}},
		{Env{}, "::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}},
		{Env{}, "2001:db8::/32", nil},
		{Env{}, "AzureLoadBalancer", []string{"168.63.129.16/32"}},
		{Env{}, "VirtualNetwork", []string{"10.0.0.0/8", "100.64.0.0/10", "168.63.129.16/32", "172.16.0.0/12", "192.168.0.0/16"}},
		{Env{}, "Storage", nil},
		{resolveEnvs[1], "AzureCloud", []string{"20.0.0.0/8"}},
		{resolveEnvs[1], "Sql.WestEurope", []string{"40.68.0.0/16", "52.0.0.0/8"}},
	}
	for _, tt := range tests {
		got, err := tt.env.Resolve(tt.in)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", tt.in, err)
		}
		var gs []string
		for _, p := range got {
			gs = append(gs, p.String())
		}
		if !slices.Equal(gs, tt.want) {
			t.Errorf("Resolve(%q) = %v, want %v", tt.in, gs, tt.want)
		}
	}
}

func TestResolveInternetExcludes(t *testing.T) {
	got, err := Env{}.Resolve("Internet")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"203.0.113.7", "198.51.100.7", "8.8.8.8", "1.1.1.1"} {
		if !inPrefixes(got, netip.MustParseAddr(s)) {
			t.Errorf("Internet leaves out %s", s)
		}
	}
	for _, s := range []string{"10.0.2.5", "168.63.129.16", "127.0.0.1", "255.255.255.255", "224.0.0.1", "0.1.2.3"} {
		if inPrefixes(got, netip.MustParseAddr(s)) {
			t.Errorf("Internet covers %s", s)
		}
	}
}

func TestResolveRefusesInvalid(t *testing.T) {
	for _, in := range []string{"", "any", "10.0.0.1/24", "10.0.0.0/33", "Internet.WestEurope", " 10.0.0.1", "fe80::1%eth0"} {
		if got, err := (Env{}).Resolve(in); err == nil {
			t.Errorf("Resolve(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzResolve: whatever the entry and address, Resolve and the evaluator
// agree, and an entry Resolve refuses is one the evaluator never matches.
func FuzzResolve(f *testing.F) {
	for _, in := range resolveInputs {
		f.Add(in, uint32(0xcb007107))
	}
	f.Add("10.0.0.1/24", uint32(0x0a000001))
	f.Fuzz(func(t *testing.T, in string, n uint32) {
		a := v4addr(n)
		for ei, env := range resolveEnvs {
			got, err := env.Resolve(in)
			want := prefixesContain([]string{in}, a, true, env)
			if err != nil {
				if want {
					t.Fatalf("env %d: Resolve(%q) refused, evaluator matches %s", ei, in, a)
				}
				continue
			}
			checkCanonical(t, in, got)
			if inPrefixes(got, a) != want {
				t.Fatalf("env %d: %s in Resolve(%q) = %v, evaluator says %v", ei, a, in, !want, want)
			}
		}
	})
}
