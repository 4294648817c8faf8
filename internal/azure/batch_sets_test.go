package azure

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// Several sets of changes land in one NSG write, and a set whose Require
// names a rule that is gone fails alone.
func TestApplyRuleChangeSetsWritesOnceAndIsolatesEachSet(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 10 * time.Millisecond})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	if _, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("jit-web-g-a", "203.0.113.7", 200))},
		{Put: ptr(allowFrom("jit-web-g-b", "203.0.113.8", 201))}}); err != nil {
		t.Fatal(err)
	}
	before := srv.Counters().Requests["PUT nsg"]
	errs := c.ApplyRuleChangeSets(ctx, nsgID, [][]RuleChange{
		{{Require: "jit-web-g-a"}, {Delete: "jit-web-g-a"}},
		{{Require: "jit-web-g-gone"}, {Delete: "jit-web-g-gone"}},
		{{Require: "jit-web-g-b"}, {Delete: "jit-web-g-b"}},
	})
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("sets whose rules are there: %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], ErrRuleGone) || !reportedNotWritten(errs[1]) {
		t.Errorf("set whose rule is gone: %v, want ErrRuleGone and nothing written", errs[1])
	}
	if got := srv.Counters().Requests["PUT nsg"] - before; got != 1 {
		t.Errorf("%d NSG writes, want 1", got)
	}
	if rules, err := c.ListRules(ctx, nsgID); err != nil || len(rules) != 0 {
		t.Errorf("rules = %+v, %v; want none", rules, err)
	}
}

// A batch that a caller of ApplyRuleChangeSets says is whole is written at
// once: the gather window, which waits for the size of the last batch, does
// not hold it back (a close timed for an expiry would end that much later).
func TestGatherDoesNotHoldBackAWholeBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &batcher{lastWrite: time.Hour, expect: 10} // a window of maxGather, waiting for 10 calls
		b.pending = []*batchCall{{now: true}}
		start := time.Now()
		b.gather()
		if waited := time.Since(start); waited != 0 {
			t.Errorf("gather waited %s for a whole batch", waited)
		}
		// The same lone call from ApplyRuleChanges waits the window.
		b.pending = []*batchCall{{}}
		start = time.Now()
		b.gather()
		if waited := time.Since(start); waited != maxGather {
			t.Errorf("gather waited %s for a lone ordinary call, want the window %s", waited, maxGather)
		}
	})
}
