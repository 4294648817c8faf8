package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// Write bound (issue 15 item 1): grants applied together to one NSG at
// Terraform's default parallelism (10) take at most writeBound(grants) NSG
// writes in every run: 6 for 50 grants, 11 for 100. A product guarantee of
// the provider's gathering (internal/azure/batch.go), so a count, asserted
// per run, not a timing.
func writeBound(grants int) int { return grants/10 + 1 }

// TestBenchWriteBound applies 50 grants ten times, then 100 ten times, each
// run on a fresh NSG, with 500 ms per write, under both busy modes of the
// local Azure, and prints the NSG writes of every run. (make test checks
// the same bound in seconds: internal/azure TestApplyRuleChangesWaveBound
// drives the batcher with Terraform-shaped waves on a synctest clock.)
func TestBenchWriteBound(t *testing.T) {
	requireEnabled(t)
	for _, mode := range []string{azuresim.BusyQueue, azuresim.BusyRefuse} {
		t.Run(mode, func(t *testing.T) {
			for _, grants := range []int{50, 100} {
				checkWriteBound(t, mode, grants, 10, armWriteLatency)
			}
		})
	}
}

// checkWriteBound applies grants grants to a fresh NSG, runs times, and
// fails if any apply took more than writeBound(grants) NSG writes.
func checkWriteBound(t *testing.T, mode string, grants, runs int, latency time.Duration) {
	t.Helper()
	env := newEnv(t, azuresim.Options{BusyMode: mode})
	bound := writeBound(grants)
	var counts []string
	worst := 0
	for run := range runs {
		// A fresh NSG and workspace each run: every run creates its grants
		// from nothing.
		env.Sim.SetWriteLatency(0)
		id := env.CreateNSG(fmt.Sprintf("nsg-bound-%d-%d", grants, run))
		ws := newWorkspace(t, env.Sim, []string{id})
		ws.apply(0) // the policy, before the emulated latency
		env.Sim.SetWriteLatency(latency)
		n, wall := nsgWrites(t, env.Sim, func() time.Duration { return ws.apply(grants) })
		counts = append(counts, fmt.Sprint(n))
		worst = max(worst, n)
		if n > bound {
			t.Errorf("busy mode %s, run %d: %d grants took %d NSG writes; the bound is %d", mode, run+1, grants, n, bound)
		}
		t.Logf("busy mode %s, run %d: %d grants: %d NSG writes (apply %s)", mode, run+1, grants, n, wall.Round(time.Millisecond))
	}
	t.Logf("FIGURE write-bound (busy mode %s, %s per write, -parallelism=10, %d runs): %d grants on one NSG took NSG writes [%s]; bound %d per run: %s",
		mode, latency, runs, grants, strings.Join(counts, " "), bound, metOrNot(worst <= bound))
}

// nsgWrites runs apply and counts the NSG writes the local Azure accepted
// meanwhile (whole-NSG PUTs and rule PUTs and DELETEs; refused ones are
// not writes). It fails the test if a write did not succeed.
func nsgWrites(t *testing.T, sim *azuresim.Server, apply func() time.Duration) (int, time.Duration) {
	t.Helper()
	seq := lastSeq(sim)
	wall := apply()
	n := 0
	for _, e := range eventsAfter(sim.Events(), seq) {
		if e.Result != "Succeeded" {
			t.Errorf("write %s of %s: %s", e.Operation, e.NSGID, e.Result)
		}
		n++
	}
	return n, wall
}
