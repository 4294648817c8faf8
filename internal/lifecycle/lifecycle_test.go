package lifecycle

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Environment variables of the suite.
const (
	envSeed  = "JIT_LIFECYCLE_SEED"  // replay one seed
	envSteps = "JIT_LIFECYCLE_STEPS" // steps per seed
	envSoak  = "JIT_SOAK"            // 1: many seeds (make test-soak)
	// envContinue=1: log a violation, repair the world (see world.heal)
	// and go on, to survey many violations in one run; the test still
	// fails.
	envContinue = "JIT_LIFECYCLE_CONTINUE"
)

// defaultSeeds run in make test: 4 × 50 steps.
var defaultSeeds = []uint64{1, 2, 3, 4}

const defaultSteps = 50

// Soak: soakSeeds seeds of soakSteps steps each (10,000 steps).
const (
	soakSeeds = 100
	soakSteps = 100
)

func envInt(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// TestLifecycle runs seeded random sequences of operations against real
// terraform, provider, jitd and local Azure processes, checking the access
// invariant after every step.
func TestLifecycle(t *testing.T) {
	env := startEnv(t)
	seeds, steps := defaultSeeds, envInt(t, envSteps, defaultSteps)
	if os.Getenv(envSoak) == "1" {
		seeds = nil
		base := uint64(time.Now().UnixNano())
		for i := range soakSeeds {
			seeds = append(seeds, base+uint64(i))
		}
		steps = envInt(t, envSteps, soakSteps)
	}
	if v := os.Getenv("JIT_LIFECYCLE_SEEDS"); v != "" {
		// A list of seeds, e.g. 5,6,7: a survey.
		seeds = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("JIT_LIFECYCLE_SEEDS=%q: want comma-separated integers", v)
			}
			seeds = append(seeds, n)
		}
	}
	if os.Getenv(envSeed) != "" {
		seeds = []uint64{envInt(t, envSeed, 0)}
	}
	var total atomic.Int64
	start := time.Now()
	// Seeds run in parallel (go test -parallel, GOMAXPROCS by default),
	// each in its own resource group, workspace and jitd; operations that
	// change the shared local Azure's latency or faults run alone.
	t.Run("seeds", func(t *testing.T) {
		for run, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runSeed(t, env, seed, int(steps), run, &total)
			})
		}
	})
	el := time.Since(start)
	t.Logf("%d steps over %d seeds in %s (%.2f steps/s)", total.Load(), len(seeds), el.Round(time.Second), float64(total.Load())/el.Seconds())
}

// simKnobs keeps exclusive operations (see op) apart from every other
// step and check of the runs going on in parallel.
var simKnobs sync.RWMutex

// runSeed runs one sequence, adding the steps it takes to total.
func runSeed(t *testing.T, env *suiteEnv, seed uint64, steps, run int, total *atomic.Int64) {
	var w *world
	withKnobs(false, func() { w = newWorld(t, env, seed, run) })
	start := time.Now()
	w.steps = append(w.steps, "setup: policy web on nsg-a, nsg-b; jitd watching")
	if p := w.lockedCheck(); len(p) > 0 {
		w.fail(p)
	}
	for n := range steps {
		o := pick(w.rng)
		var line string
		w.killedStep = false
		withKnobs(o.exclusive, func() { line = o.run(w) })
		total.Add(1)
		w.steps = append(w.steps, fmt.Sprintf("%3d %s", n+1, line))
		if testing.Verbose() {
			t.Logf("seed %d step %d: %s", seed, n+1, line)
		}
		checkStart := time.Now()
		if p := w.lockedCheck(); len(p) > 0 {
			if os.Getenv(envContinue) != "1" {
				w.fail(p)
			}
			w.violations++
			t.Logf("VIOLATION %d (seed %d, after %d steps)\nsteps:\n  %s\nproblems:\n  %s", w.violations, seed, n+1,
				strings.Join(w.steps, "\n  "), strings.Join(p, "\n  "))
			withKnobs(false, w.heal)
			if p := w.lockedCheck(); len(p) > 0 {
				w.fail(append([]string{"still failing after repair:"}, p...))
			}
			w.violationTime += time.Since(checkStart)
		}
		if t.Failed() && os.Getenv(envContinue) != "1" {
			w.fail([]string{"a step reported an error"})
		}
	}
	if w.violations > 0 {
		t.Errorf("seed %d: %d violations (logged above)", seed, w.violations)
	}
	el := time.Since(start)
	t.Logf("seed %d: %d steps in %s (%.2f steps/s; terraform %d runs, %s; %d violations, %s of it waiting out and repairing them)",
		seed, steps, el.Round(time.Millisecond), float64(steps)/el.Seconds(), w.tfRuns, w.tfTime.Round(time.Millisecond),
		w.violations, w.violationTime.Round(time.Millisecond))
}

// withKnobs runs f alone (exclusive) or beside the other runs' ordinary
// steps; deferred unlocks keep a t.Fatal inside f from blocking them.
func withKnobs(exclusive bool, f func()) {
	if exclusive {
		simKnobs.Lock()
		defer simKnobs.Unlock()
	} else {
		simKnobs.RLock()
		defer simKnobs.RUnlock()
	}
	f()
}

// lockedCheck is check while no exclusive operation runs.
func (w *world) lockedCheck() []string {
	simKnobs.RLock()
	defer simKnobs.RUnlock()
	return w.check()
}

// fail stops the run with the seed, the step list and the problems.
func (w *world) fail(problems []string) {
	w.t.Helper()
	w.t.Fatalf("access invariant violated (seed %d, after %d steps)\nreplay: %s=%d %s=%d go test ./internal/lifecycle/ -run TestLifecycle -v\nsteps:\n  %s\nproblems:\n  %s\njitd logs:\n%s",
		w.seed, len(w.steps)-1, envSeed, w.seed, envSteps, len(w.steps)-1, strings.Join(w.steps, "\n  "),
		strings.Join(problems, "\n  "), w.jitd.Logs())
}
