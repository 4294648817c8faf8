package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// TestBenchVerify measures `jitd verify` against the local Azure process:
// IP flow verify calls per grant and per protected port, the other ARM
// requests it makes, and its wall time over 20 NSGs (each protecting 2
// ports of one VM behind it, with 5 grants on one port). It prints FIGURE
// lines and runs only with JIT_BENCH=1. The local Azure answers IP flow
// verify at once; Azure takes seconds per call, so on Azure the wall time
// is about calls × that latency ÷ --concurrency.
func TestBenchVerify(t *testing.T) {
	if os.Getenv("JIT_BENCH") == "" {
		t.Skip("a measurement; set JIT_BENCH=1 to run it")
	}
	la := startLocalAzure(t)
	const nsgs, grantsPerNSG = 20, 5
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		BandStart: 100, BandEnd: 199, Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}, {Number: 3389, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	var args []string
	for i := range nsgs {
		rg := fmt.Sprintf("bench-verify-%02d", i)
		rules := p.Rules()
		for g := range grantsPerNSG {
			rules = append(rules, grantOf(t, p, fmt.Sprintf("b%d", g), fmt.Sprintf("203.0.113.%d", 10+g), "bench@example.com", exp, int32(g)))
		}
		la.createVerifyWorld(t, rg, la.createNSG(t, rg, "nsg-web", rules...), "")
		args = append(args, "--resource-group", rg)
	}
	for _, concurrency := range []int{1, 8, 8} {
		la.resetCounters(t)
		cmd := exec.Command(la.jitd, append([]string{"verify", "--json", "--concurrency", fmt.Sprint(concurrency)}, args...)...)
		cmd.Env = la.environ()
		start := time.Now()
		out, err := cmd.Output()
		wall := time.Since(start)
		if err != nil {
			t.Fatalf("jitd verify: %v\n%s", err, out)
		}
		var rep verifyReport
		if err := json.Unmarshal(out, &rep); err != nil || !rep.Complete || len(rep.Mismatches) != 0 {
			t.Fatalf("report: %v\n%s", err, out)
		}
		kinds := map[string]int{}
		for _, v := range rep.NSGs {
			for _, pr := range v.Probes {
				kinds[pr.Kind]++
			}
		}
		requests := la.counters(t)
		calls := requests["POST ip-flow-verify"]
		var other []string
		otherN := int64(0)
		for k, n := range requests {
			if k != "POST ip-flow-verify" && k != "POST sim" && !strings.HasSuffix(k, " token") && !strings.Contains(k, "openid") {
				other = append(other, fmt.Sprintf("%s %d", k, n))
				otherN += n
			}
		}
		slices.Sort(other)
		grants := nsgs * grantsPerNSG
		fmt.Printf("FIGURE verify: %d NSGs x (1 VM, 2 protected ports, %d grants), --concurrency %d: %d probes (%d grant, %d outside, %d allowed_no_grant), "+
			"%d IP flow verify calls = %.2f per grant + %.2f per protected port; %d other ARM requests (%s); wall %s\n",
			nsgs, grantsPerNSG, concurrency, rep.Probes, kinds["grant"], kinds["outside"], kinds["allowed_no_grant"], calls,
			float64(kinds["grant"])/float64(grants), float64(kinds["outside"]+kinds["allowed_no_grant"])/float64(2*nsgs),
			otherN, strings.Join(other, ", "), wall.Round(time.Millisecond))
		if calls != int64(rep.Probes) {
			t.Errorf("%d IP flow verify calls for %d probes", calls, rep.Probes)
		}
	}
}

// counters returns the local Azure's request counters by "METHOD kind".
func (la *localAzure) counters(t *testing.T) map[string]int64 {
	t.Helper()
	resp, err := la.http.Get(la.url + "/_sim/counters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Requests map[string]int64 `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c.Requests
}

func (la *localAzure) resetCounters(t *testing.T) {
	t.Helper()
	resp, err := la.http.Post(la.url+"/_sim/counters/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("reset counters: %s", resp.Status)
	}
}
