package dataplane_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestRandomRuleSetsAgree writes seeded random rules to both NSGs through
// ARM, deletes some, and after every change checks that the kernel's
// verdicts equal the local Azure's flow verification. JITDP_SEED replays a
// run; JITDP_STEPS sets its length.
func TestRandomRuleSetsAgree(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("JITDP_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("JITDP_SEED=%q: %v", s, err)
		}
	}
	steps := 15
	if s := os.Getenv("JITDP_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("JITDP_STEPS=%q is not a positive number", s)
		}
		steps = n
	}
	t.Logf("seed %d (replay: JITDP_SEED=%d go test ./internal/dataplane -run TestRandomRuleSetsAgree)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e := start(t, -1)

	type placed struct {
		nsg  string
		name string
		prio int32
	}
	var live []placed
	var lat, applied []time.Duration
	pick := func(vs ...[]string) []string { return vs[rng.IntN(len(vs))] }
	for step := range steps {
		var what string
		if len(live) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(live))
			p := live[i]
			e.del(t, p.nsg, p.name)
			live = slices.Delete(live, i, i+1)
			what = fmt.Sprintf("delete %s from %s", p.name, nsgName(p.nsg))
		} else {
			nsg := []string{e.subnetNSG, e.nicNSG}[rng.IntN(2)]
			var prio int32
			for taken := true; taken; {
				prio = int32(100 + rng.IntN(40)*100)
				taken = slices.ContainsFunc(live, func(p placed) bool { return p.nsg == nsg && p.prio == prio })
			}
			r := rule{
				name:     "r" + strconv.Itoa(step),
				prio:     prio,
				access:   []string{"Allow", "Deny"}[rng.IntN(2)],
				protocol: []string{"Tcp", "*", "Tcp", "Udp"}[rng.IntN(4)],
				src: pick([]string{"203.0.113.10"}, []string{"203.0.113.11/32"}, []string{"198.51.100.7"},
					[]string{"10.0.2.5"}, []string{"203.0.113.0/24"}, []string{"198.51.100.0/25"}, []string{"10.0.0.0/8"},
					[]string{"Internet"}, []string{"VirtualNetwork"}, []string{"AzureLoadBalancer"}, []string{"*"},
					[]string{"203.0.113.10", "198.51.100.0/24"}, []string{"10.0.2.5", "203.0.113.11"}),
				dst:    pick([]string{"*"}, []string{"*"}, []string{"*"}, []string{"10.0.1.4"}, []string{"10.0.1.0/24"}, []string{"10.0.9.9"}, []string{"VirtualNetwork"}, []string{"Internet"}),
				sports: pick([]string{"*"}, []string{"*"}, []string{"1024-65535"}, []string{"0-1023"}),
				dports: pick([]string{"22"}, []string{"3389"}, []string{"443"}, []string{"*"}, []string{"20-25"},
					[]string{"400-3400"}, []string{"22", "443"}),
			}
			e.put(t, nsg, r)
			live = append(live, placed{nsg, r.name, prio})
			what = fmt.Sprintf("put %s on %s: %s prio %d %s src %v dst %v sports %v dports %v",
				r.name, nsgName(nsg), r.access, r.prio, r.protocol, r.src, r.dst, r.sports, r.dports)
		}
		before := e.dp.Ruleset()
		lat = append(lat, e.sync(t))
		if before != e.dp.Ruleset() {
			applied = append(applied, lat[len(lat)-1])
		}
		e.checkGrid(t, fmt.Sprintf("seed %d step %d (%s)", seed, step, what))
	}
	logLatencies(t, "Sync latency, all changes", lat)
	logLatencies(t, "Sync latency, changes that altered the ruleset", applied)
}
