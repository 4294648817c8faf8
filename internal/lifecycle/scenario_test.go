package lifecycle

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// regressionSeeds are generated runs that found violations on the main
// branch of 2026-11-29 (see SOAK.md, "Lifecycle suite"), replayed as they
// were: the same seed and number of steps.
var regressionSeeds = []struct {
	seed  uint64
	steps int
	item  string // issue 10's item
}{
	{1, 2, "4: standing access from an allowed range above the band is not reported"},
	{2, 8, "1: a policy that loses an NSG re-opens an expired grant on the NSGs it keeps"},
	{3, 19, "6: applying an imported active grant fails (invalid result object: unknown open/status)"},
	{4, 5, "5: a deleted deny-all rule stays deleted; the office reaches 22 through the rule below the band"},
	{5, 5, "1: state rm and re-apply doubles a grant (the old rule stays open, untracked)"},
	{6, 2, "5: a deleted guard rule is not restored"},
	{8, 3, "2: a timed-out create leaves an open rule that state does not know and no audit recorded"},
	{11, 6, "1: a policy cannot gain an existing NSG while a grant is in state (JIT Policy Not Found)"},
	{22, 22, "5: a deny-all deleted right after a policy update, before jitd read it, is not restored"},
	{1795996623346657019, 22, "soak class A: a grant rule's source edited before jitd first read it passes as the grant"},
}

// TestLifecycleRegressions replays the seeds that found violations.
func TestLifecycleRegressions(t *testing.T) {
	env := startEnv(t)
	if os.Getenv(envSeed) != "" {
		t.Skip("replaying one seed: see TestLifecycle")
	}
	var total atomic.Int64
	for run, r := range regressionSeeds {
		t.Run(fmt.Sprintf("seed=%d", r.seed), func(t *testing.T) {
			t.Logf("issue 10 item %s", r.item)
			runSeed(t, env, r.seed, r.steps, 1000+run, &total)
		})
	}
}

// scenario is a short, fixed sequence of steps: the minimal form of a
// violation the generator found, one per item of issue 10 it reaches.
type scenario struct {
	name  string
	item  string
	steps []func(w *world) string
}

func req(source, duration, justification string) request {
	return request{Ports: []int{22}, Source: source, Duration: duration, Requester: "alice@example.com", Justification: justification}
}

// lastBlock is the block the previous step added.
func lastBlock(w *world) *block { return w.blocks[len(w.blocks)-1] }

// denyRule is the name of the policy's TCP deny-all rule.
func denyRule(w *world) string {
	for _, n := range w.protect.ruleNames {
		if strings.Contains(n, "-deny-") {
			return n
		}
	}
	return "jit-" + w.cfg.name + "-deny-tcp"
}

var scenarios = []scenario{
	{"a grant rule's source edited before jitd first reads it passes as the grant", "soak class A", []func(*world) string{
		func(w *world) string { return doTamperUnseen(w, req("203.0.113.10", "20m", "INC-1"), 0) },
	}},
	{"a grant rule's expiry pushed out within the maximum before jitd first reads it keeps it open past its window", "soak class A", []func(*world) string{
		func(w *world) string { return doTamperUnseen(w, req("203.0.113.10", "20m", "INC-1"), 30*time.Minute) },
		func(w *world) string { return doClock(w, 25*time.Minute) },
	}},
	{"expired grant re-opens when the policy gains an NSG unknown at plan", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "1m", "INC-1")) },
		func(w *world) string { return doClock(w, 2*time.Minute) },
		func(w *world) string { return doPolicyNSG(w, true, 2, true) },
	}},
	{"policy cannot gain an existing NSG while a grant is active", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "20m", "INC-1")) },
		func(w *world) string { return doPolicyNSG(w, true, 2, false) },
	}},
	{"apply -replace gives a grant a second window", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "5m", "INC-1")) },
		func(w *world) string { return doClock(w, 3*time.Minute) },
		func(w *world) string { return doReplace(w, lastBlock(w)) },
		func(w *world) string { return doClock(w, 3*time.Minute) },
	}},
	{"state rm and re-apply doubles a grant and gives it a second window", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "5m", "INC-1")) },
		func(w *world) string { return doClock(w, 3*time.Minute) },
		func(w *world) string { return doStateRmReapply(w, lastBlock(w)) },
		func(w *world) string { return doClock(w, 3*time.Minute) },
	}},
	{"closed grant asked again identically opens again", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "5m", "INC-1")) },
		func(w *world) string { return doRemoveGrant(w, lastBlock(w)) },
		func(w *world) string {
			return doReadd(w, w.grant(req("203.0.113.10", "5m", "INC-1")))
		},
	}},
	{"renaming the policy does not re-open an expired grant", "1", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "1m", "INC-1")) },
		func(w *world) string { return doClock(w, 2*time.Minute) },
		func(w *world) string { return doPolicyOther(w, 4) },
	}},
	{"timed-out creates leave untracked open rules", "2", []func(*world) string{
		func(w *world) string {
			return doTimeout(w, []request{req("203.0.113.10", "20m", "INC-1"), req("203.0.113.11", "20m", "INC-2"), req("203.0.113.12", "20m", "INC-3")})
		},
	}},
	{"a newly protected NSG closes late", "3", []func(*world) string{
		func(w *world) string { return doPolicyNSG(w, true, 2, false) },
		func(w *world) string { return doGrant(w, req("203.0.113.10", "1m", "INC-1")) },
		func(w *world) string { return doClock(w, 2*time.Minute) },
	}},
	{"standing access above the band is not reported", "4", []func(*world) string{
		func(w *world) string { return doForeign(w, 0, "above", 150, true) },
	}},
	{"standing access inside the band is not reported", "4", []func(*world) string{
		func(w *world) string { return doForeign(w, 0, "inside", 250, true) },
	}},
	{"a deleted deny-all rule stays deleted", "5", []func(*world) string{
		func(w *world) string { return doDeletePolicyRule(w, 0, denyRule(w)) },
	}},
	{"importing an active grant closes it", "6", []func(*world) string{
		func(w *world) string { return doGrant(w, req("203.0.113.10", "20m", "INC-1")) },
		func(w *world) string { return doImportGrant(w, lastBlock(w)) },
	}},
	{"a saved plan applied late opens the grant from apply, for its duration", "1", []func(*world) string{
		func(w *world) string {
			b := w.addBlock(req("203.0.113.10", "1m", "INC-1"), "")
			_, err := w.terraform("plan", "-input=false", "-no-color", "-lock=false", "-out=saved.tfplan")
			d := doClock(w, 2*time.Minute)
			_, err2 := w.terraform("apply", "-auto-approve", "-input=false", "-no-color", "-lock=false", "saved.tfplan")
			a, _ := w.stateGrant(b.name)
			return fmt.Sprintf("savedPlan %s: plan -out %s, %s, apply %s (state: starts_at %s expires_at %s status %s)",
				describe(b), result(err), d, result(err2), str(a["starts_at"]), str(a["expires_at"]), str(a["status"]))
		},
	}},
	{"an imported policy does not plan empty", "6", []func(*world) string{
		func(w *world) string { return doPolicyOther(w, 1) },
		func(w *world) string { return doPolicyOther(w, 1) },
		opImportPolicy,
	}},
}

// TestLifecycleScenarios runs the minimal step lists of the violations
// found, each in a fresh world, checked after every step like the
// generated runs.
func TestLifecycleScenarios(t *testing.T) {
	env := startEnv(t)
	for n, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			w := newWorld(t, env, uint64(n), 2000)
			w.steps = append(w.steps, "setup: policy web on nsg-a, nsg-b; jitd watching")
			for i, step := range sc.steps {
				w.steps = append(w.steps, fmt.Sprintf("%3d %s", i+1, step(w)))
				if p := w.check(); len(p) > 0 {
					t.Fatalf("issue 10 item %s: %s\nsteps:\n  %s\nproblems:\n  %s", sc.item, sc.name,
						strings.Join(w.steps, "\n  "), strings.Join(p, "\n  "))
				}
			}
			t.Logf("steps:\n  %s", strings.Join(w.steps, "\n  "))
		})
	}
}
