package azure

import "context"

// ApplyRuleChangeSets applies several independent sets of changes to the
// NSG in one write, as if each set were one ApplyRuleChanges call made at
// the same instant, and returns each set's outcome (nil, or an error as
// ApplyRuleChanges describes it): one set failing (its Require names a rule
// that is gone, its Choose fails) does not fail the others.
//
// Unlike ApplyRuleChanges it does not wait for other callers' changes: the
// caller knows its batch is whole, so the write starts as soon as the NSG
// is free (after a write under way, which ARM serialises anyway), without
// the gather window. jitd closes grants this way: a close that waited up to
// a gather window would end that much after the expiry it was timed for.
func (c *Client) ApplyRuleChangeSets(ctx context.Context, nsgID string, sets [][]RuleChange) []error {
	errs := make([]error, len(sets))
	if len(sets) == 0 {
		return errs
	}
	id, err := ParseNSGID(nsgID)
	if err != nil {
		for i := range errs {
			errs[i] = &outcomeError{outcome: ErrNotWritten, err: err}
		}
		return errs
	}
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = withdrawnError(nsgID, err)
		}
		return errs
	}
	calls := make([]*batchCall, len(sets))
	b := c.batcherFor(id)
	b.mu.Lock()
	for i, changes := range sets {
		calls[i] = &batchCall{ctx: ctx, nsgID: nsgID, changes: changes, done: make(chan struct{}), now: true}
		b.pending = append(b.pending, calls[i])
		b.arrivedLocked()
	}
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go c.drain(ctx, id, b)
	}
	for i, call := range calls {
		select {
		case <-call.done:
		case <-ctx.Done():
			b.withdraw(call)
			<-call.done
		}
		errs[i] = call.err
	}
	return errs
}
