package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// TestBenchResourceGraph (issue 15 item 4): jitd over 100,000 NSGs in
// 1,000 subscriptions (100 each), 2,000 of them (2 per subscription)
// holding 10 JIT rules (a policy's guard and deny-all rules and 8 active
// grants), every NSG one foreign rule; the local Azure enforces Resource
// Graph's quota (15 queries per 5 s) and ARM's read limits (250 burst,
// 25/s per subscription). Measured, with --discovery resource-graph
// --all-subscriptions:
//
//   - a cold full resync (jitd --once): wall time, ARM reads, Resource
//     Graph queries, throttled requests, peak RSS;
//   - the steady watch (jitd running, --watch-interval 5s) and the steady
//     full resync (--interval 10s): requests per cycle, and from them the
//     cost per hour at the defaults (watch 30s, resync 5m);
//
// and the same cold full resync with --discovery arm over 10 of the
// subscriptions, scaled to the 1,000, for comparison, with its cost per
// hour computed from its per-pass counts.
func TestBenchResourceGraph(t *testing.T) {
	requireEnabled(t)
	const subsN, perSub, jitPerSub = 1000, 100, 2
	_, jitd := binaries(t)
	jitRules := tenJITRules(t, benchPolicy(t))
	foreign := jit.SecurityRule{Name: "allow-web", Priority: 4000, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"443"}}
	subs := append([]string{azuresim.DefaultSubscriptionID}, azuresim.ExtraSubscriptionIDs(subsN-1)...)
	seed := map[string][]jit.SecurityRule{}
	withJIT := append(append([]jit.SecurityRule{}, jitRules...), foreign)
	for _, sub := range subs {
		for i := range perSub {
			id := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-%d/providers/Microsoft.Network/networkSecurityGroups/nsg-%03d", sub, i%4, i)
			if i < jitPerSub {
				seed[id] = withJIT
			} else {
				seed[id] = []jit.SecurityRule{foreign}
			}
		}
	}
	nsgs, jitNSGs := subsN*perSub, subsN*jitPerSub
	seedStart := time.Now()
	sim := simtest.Start(t, azuresim.Options{
		SeedFile: writeSeedFile(t, seed), Subscriptions: subs[1:],
		ReadRate: azuresim.DefaultReadRate, ReadBurst: azuresim.DefaultReadBurst,
	})
	t.Logf("local Azure seeded with %d NSGs in %d subscriptions in %s", nsgs, subsN, time.Since(seedStart).Round(time.Millisecond))
	graphArgs := []string{"--discovery", "resource-graph", "--all-subscriptions"}

	// A cold full resync.
	sim.ResetCounters()
	lc0 := sim.LimitCounters()
	wall, rss, out, err := runJitdOnce(t, sim, jitd, graphArgs...)
	c, lc := sim.Counters(), sim.LimitCounters()
	if err != nil {
		t.Fatalf("%v\n%s", err, testproc.Tail(out))
	}
	graphQ := lc.ResourceGraphQueries - lc0.ResourceGraphQueries
	throttled := throttledCount(c, lc0, lc)
	if throttled != 0 {
		t.Errorf("%d requests were throttled; want none within Resource Graph's quota and ARM's read limits (%s)", throttled, statusBreakdown(c))
	}
	if w := armWrites(c); w != 0 {
		t.Errorf("a resync with nothing expired wrote %d times", w)
	}
	t.Logf("FIGURE resource-graph-resync (jitd --once --discovery resource-graph --all-subscriptions, %d NSGs in %d subscriptions, %d with 10 JIT rules): wall %s, ARM reads %d (%.2f per NSG holding JIT rules), Resource Graph queries %d, throttled %d, peak RSS %.1f MiB",
		nsgs, subsN, jitNSGs, wall.Round(time.Millisecond), armReads(c), float64(armReads(c))/float64(jitNSGs), graphQ, throttled, float64(rss)/1024)
	t.Logf("FIGURE resource-graph-resync requests by kind: %s", requestBreakdown(c))
	subscriptionPages := c.Requests["GET subscription-list"]

	// The steady watch: jitd running, a watch every 5 s, nothing changing.
	const watches = 6
	perWatchARM, perWatchGraph, watchRSS := measureCycles(t, sim, "inventory watch done", watches,
		append(graphArgs, "--interval", "1h", "--watch-interval", "5s", "--log-level", "debug")...)
	t.Logf("FIGURE resource-graph-watch (steady, nothing changed, %d watches): per watch ARM reads %.1f, Resource Graph queries %.1f; jitd peak RSS (VmHWM) %.1f MiB",
		watches, perWatchARM, perWatchGraph, float64(watchRSS)/1024)

	// The steady full resync: a full resync every 10 s, no watch between.
	perResyncARM, perResyncGraph, _ := measureCycles(t, sim, "full resync done", 2,
		append(graphArgs, "--interval", "10s", "--watch-interval", "0")...)
	t.Logf("FIGURE resource-graph-steady-resync (nothing changed): per full resync ARM reads %.1f (the NSGs holding grants), Resource Graph queries %.1f",
		perResyncARM, perResyncGraph)

	// Per hour at the defaults: 120 watches (30 s), 12 full resyncs (5 m),
	// and the subscriptions listed again every 5 m.
	armPerHour := 120*perWatchARM + 12*perResyncARM + 12*float64(subscriptionPages)
	graphPerHour := 120*perWatchGraph + 12*perResyncGraph
	t.Logf("FIGURE resource-graph-watch-cost (per hour at --watch-interval 30s --interval 5m, from the per-cycle counts): ARM reads %.0f, Resource Graph queries %.0f (quota allows %d per hour per caller)",
		armPerHour, graphPerHour, 3600/5*azuresim.ResourceGraphQuota)

	if os.Getenv("JIT_BENCH_SKIP_ARM_COMPARISON") == "1" {
		return
	}
	// Today's ARM discovery, for comparison, over 10 of the subscriptions
	// (1,000 NSGs, 20 holding JIT rules), scaled to the 1,000: over all of
	// them, its start-up check alone (one NSG listing per subscription, in
	// turn) outlasts its 2-minute limit against the local Azure, whose
	// listing scans its whole store.
	const sample = 10
	args := []string{"--concurrency", "8"}
	for _, sub := range subs[:sample] {
		args = append(args, "--subscription", sub)
	}
	sim.ResetCounters()
	lc0 = sim.LimitCounters()
	wall, rss, out, err = runJitdOnce(t, sim, jitd, args...)
	c, lc = sim.Counters(), sim.LimitCounters()
	if err != nil {
		t.Fatalf("%v\n%s", err, testproc.Tail(out))
	}
	reads := armReads(c)
	scale := float64(subsN) / sample
	t.Logf("FIGURE arm-discovery-resync (jitd --once --discovery arm over %d subscriptions, %d NSGs, %d with 10 JIT rules): wall %s, ARM reads %d, throttled %d, peak RSS %.1f MiB; scaled to %d NSGs: wall ~%s, ARM reads ~%.0f",
		sample, sample*perSub, sample*jitPerSub, wall.Round(time.Millisecond), reads, throttledCount(c, lc0, lc), float64(rss)/1024,
		nsgs, time.Duration(float64(wall)*scale).Round(time.Second), float64(reads)*scale)
	t.Logf("FIGURE arm-discovery-resync requests by kind: %s", requestBreakdown(c))
	t.Logf("FIGURE arm-discovery-watch-cost (computed: every NSG read at each of 120 watches, listed and read at each of 12 full resyncs): ARM reads per hour ~%.0f",
		120*float64(nsgs)+12*float64(reads)*scale)
}

// throttledCount is every 429 the local Azure answered plus its limit
// counters' throttling since lc0.
func throttledCount(c azuresim.Counters, lc0, lc azuresim.LimitCounters) int64 {
	var n int64
	for k, v := range c.Responses {
		if strings.HasSuffix(k, " 429") {
			n += v
		}
	}
	if d := (lc.ReadThrottled - lc0.ReadThrottled) + (lc.ResourceGraphThrottled - lc0.ResourceGraphThrottled); d > n {
		n = d
	}
	return n
}

// measureCycles starts jitd, waits for its first full resync, then counts
// the ARM reads and Resource Graph queries over the next cycles (log lines
// with msg marker), snapshotting the counters right after each marker. It
// returns the per-cycle averages and jitd's peak RSS in KiB.
func measureCycles(t *testing.T, sim *azuresim.Server, marker string, cycles int, args ...string) (armPer, graphPer float64, hwmKiB int64) {
	t.Helper()
	_, bin := binaries(t)
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--audit-log", filepath.Join(t.TempDir(), "audit.jsonl")}, args...)...)
	cmd.Env = environ(sim)
	p := testproc.StartJitd(t, cmd, 5*time.Minute, func(p *testproc.Jitd) {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := <-p.Exited; err != nil {
				t.Logf("jitd exited with %v after SIGTERM", err)
			}
		}
	})
	count := func() int { return strings.Count(p.Logs(), `"msg":"`+marker+`"`) }
	wait := func(n int) {
		if err := poll(5*time.Minute, func() bool { return count() >= n }); err != nil {
			t.Fatalf("waiting for %q #%d: %v\n%s", marker, n, err, testproc.Tail(p.Logs()))
		}
	}
	coldHWM := vmHWM(cmd.Process.Pid)
	t.Logf("jitd's peak RSS (VmHWM) after its first full resync: %.1f MiB", float64(coldHWM)/1024)
	first := count() + 1
	wait(first)
	a0, g0 := armReads(sim.Counters()), sim.LimitCounters().ResourceGraphQueries
	wait(first + cycles)
	a1, g1 := armReads(sim.Counters()), sim.LimitCounters().ResourceGraphQueries
	hwmKiB = vmHWM(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.Exited; err != nil {
		t.Logf("jitd exited with %v after SIGTERM", err)
	}
	return float64(a1-a0) / float64(cycles), float64(g1-g0) / float64(cycles), hwmKiB
}

// vmHWM reads a process's peak resident set size (KiB) from /proc.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
