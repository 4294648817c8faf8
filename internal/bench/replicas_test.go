package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// TestBenchReplicas: what a second jitd replica costs, and that two close
// each expired grant once. 100 NSGs carry a policy; 20 grants on them
// expire during the window. One jitd, then two side by side, each run for
// the same window with --watch-interval 5s: the ARM requests they make, the
// writes, the If-Match conflicts, and the close events each replica audits.
// It asserts only behaviour: every expired grant closed and unreachable.
func TestBenchReplicas(t *testing.T) {
	requireEnabled(t)
	binaries(t)
	const nsgs, grants, rg = 100, 20, "bench-replicas"
	const window = 40 * time.Second
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			p := benchPolicy(t)
			lo, _ := p.Band.GrantRange()
			seed := map[string][]jit.SecurityRule{}
			for i := range nsgs {
				seed[nsgID(rg, fmt.Sprintf("nsg-%03d", i))] = p.Rules()
			}
			base := time.Now().Add(20 * time.Second)
			type planted struct {
				nsgID, source string
			}
			var all []planted
			for i := range grants {
				id := nsgID(rg, fmt.Sprintf("nsg-%03d", i*nsgs/grants))
				spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: grantSource(i), Duration: "1h", Requester: "bench@example.com"})
				if err != nil {
					t.Fatal(err)
				}
				seed[id] = append(seed[id], p.GrantRule(fmt.Sprintf("r%03d", i), spec, base.Add(time.Duration(i)*500*time.Millisecond), lo))
				all = append(all, planted{id, grantSource(i)})
			}
			env := newEnv(t, azuresim.Options{SeedFile: writeSeedFile(t, seed)})
			var audits []string
			var procs []*jitdProcess
			for r := range replicas {
				audit := filepath.Join(t.TempDir(), fmt.Sprintf("audit-%d.jsonl", r))
				audits = append(audits, audit)
				procs = append(procs, startJitd(t, env.Sim, "--resource-group", env.Sim.SubscriptionID()+"/"+rg,
					"--interval", "5m", "--watch-interval", "5s", "--audit-log", audit))
			}
			if time.Now().After(base) {
				t.Fatalf("jitd was ready only %s after the first expiry; the machine is too slow for this measurement", time.Since(base))
			}
			env.Sim.ResetCounters()
			// The measurement window: a fixed time, not a synchronisation.
			time.Sleep(window)
			c := env.Sim.Counters()
			for _, g := range all {
				if env.Reachable([]string{g.nsgID}, g.source, destination, 22, "Tcp") {
					t.Errorf("%s still reaches %s:22 after its grant expired", g.source, g.nsgID)
				}
			}
			var closes []int
			for _, a := range audits {
				b, err := os.ReadFile(a)
				if err != nil {
					t.Fatal(err)
				}
				closes = append(closes, strings.Count(string(b), `"action":"close"`))
			}
			total := 0
			for _, n := range closes {
				total += n
			}
			if total < grants {
				t.Errorf("%d close events for %d expired grants\n%s", total, grants, testproc.Tail(procs[0].Logs()))
			}
			t.Logf("FIGURE replicas (%d jitd, %d NSGs, --watch-interval 5s, %s window, %d grants expiring in it): ARM reads %d (%.1f per NSG per minute), writes %d, close events per replica %v",
				replicas, nsgs, window, grants, armReads(c), float64(armReads(c))/nsgs/window.Minutes(), armWrites(c), closes)
			t.Logf("FIGURE replicas (%d jitd) non-2xx answers: %s", replicas, statusBreakdown(c))
		})
	}
}
