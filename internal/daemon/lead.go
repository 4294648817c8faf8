package daemon

import (
	"slices"
	"sync"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// The close lead: how long before a grant's expiry jitd starts the NSG
// write that closes it, so that the rule is gone at about the expiry rather
// than a write after it (see jit.CloseDue for the rule and its bound).
//
// It is estimated from the writes jitd itself has made, and from nothing
// else: how long its own close writes took, from the call to the answer,
// which is what a close started now will take (the NSG's read, the write,
// Azure's long-running operation, polling it). Choices:
//
//   - the median of the last leadSamples close writes, across NSGs: write
//     latency is Azure's (the region's network resource provider), not an
//     NSG's, and an NSG sees a close rarely, so one NSG's own history would
//     leave most closes with no lead at all. The median ignores one slow
//     write (a write queued behind another writer's, a retried throttle)
//     and one fast one, and follows a lasting change within a few writes;
//     with two samples it is the lower one, so one slow write is ignored
//     from the second write on.
//   - zero until a write has been seen: jitd never guesses how slow Azure
//     is; the first close after a start ends a write late, as before.
//   - at most --max-close-lead (Options.MaxCloseLead), and never more than
//     jit.MaxCloseLead (half the shortest grant): when Azure is slower than
//     that, closes end late rather than grants ending very early.
//   - only whole close writes count (ApplyRuleChangeSets, which never waits
//     for other callers); a write that failed or wrote nothing does not.
//
// Because a close write started at T carries only grants due by T + lead,
// no rule is gone more than the lead before its expiry, whatever the write
// really takes; a write that ends up faster than the lead ends its grants
// early by the difference, never by more than the lead.
const leadSamples = 5

// leadEstimator keeps the durations of the last close writes. It is safe
// for concurrent use: close writes end outside the loop.
type leadEstimator struct {
	mu      sync.Mutex
	max     time.Duration   // the cap; 0 turns closing ahead off
	samples []time.Duration // the last leadSamples, oldest first
}

func newLeadEstimator(maxLead time.Duration) *leadEstimator {
	return &leadEstimator{max: jit.ClampCloseLead(maxLead)}
}

// observe records one close write's duration.
func (l *leadEstimator) observe(d time.Duration) {
	if d < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) == leadSamples {
		l.samples = slices.Delete(l.samples, 0, 1)
	}
	l.samples = append(l.samples, d)
}

// lead is how long before an expiry its close starts now: the lower median
// of the samples, capped; zero with no sample or with the cap at zero.
func (l *leadEstimator) lead() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) == 0 || l.max <= 0 {
		return 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	return min(s[(len(s)-1)/2], l.max)
}
