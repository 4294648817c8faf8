package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Azure serialises writes to one NSG: a rule PUT holds the NSG for the
// whole long-running operation, and every other write waits. One rule PUT
// per change therefore costs one write latency per change. ApplyRuleChanges
// instead gathers the changes that callers ask for while a write is under
// way and applies them together as one write of the whole NSG: read it
// (with its ETag), change its rule list, write it back with If-Match. A
// concurrent writer elsewhere makes the ETag stale; the write then fails
// with 412 and the batch is read and applied again, so no update is lost.
//
// How many writes a burst of changes takes is a property of how changes
// are gathered into writes, and the batcher bounds it. Terraform creates
// the resources of one apply a fixed number at a time (its parallelism, 10
// by default): each resource's change waits for the write that carries it,
// and only when that write ends does Terraform start the next resources.
// Changes therefore come in waves, one per write, and a wave cut in two
// stays cut: while the first part is written the second queues, and while
// the second is written the callers released by the first come back, so
// the two parts alternate for the rest of the apply (50 grants took 5 to
// 12 writes). The batcher instead learns the wave's size and waits for it:
//
//   - expected size: the most callers waiting at once (queued or carried)
//     during the last write. Before the next write, the batcher waits
//     until that many changes are queued, or for the gather window: the
//     last write's duration, or half as long again as the last wave took
//     to come back whole if that was longer (a loaded machine slows
//     Terraform down), between minGather and maxGather. A wait of about a
//     write costs about the write it saves: a caller that misses a write
//     waits for the whole next one anyway, and so does everyone behind
//     it. A wave cut by a caller slower than the window thus costs one
//     extra write and re-forms at the next one, rather than alternating,
//     and the next wait is long enough for it. The price: a short last
//     wave (or a lone change after a burst) waits the window once, and
//     the expected size then drops to what came.
//   - first write after a start: no size is known yet; the batcher waits
//     until no change has arrived for quietGather (Terraform starts its
//     first resources together), at most maxGather.
//   - changes that arrive while a write is in flight all go into the next
//     write, and a write retried after a stale ETag (412) takes the
//     changes queued meanwhile along, so a retry does not split them off.
//
// Under Terraform's default parallelism, N changes to one NSG therefore
// take N/10 writes, plus one for a wave cut by a caller slower than the
// window: 6 for 50 grants, 11 for 100 (internal/bench TestBenchWriteBound asserts this per
// run, with real terraform and a local Azure at 500 ms per write).
//
// A caller may give up (its context ends) while its changes wait in a
// batch. Nothing is then written on its behalf that it does not hear of:
// changes that no write carries yet are withdrawn, and a caller whose
// changes a write already carries waits for that write's outcome.
//
// The NSG is read and written as raw JSON, not through the SDK's model, so
// that every property this project does not know (tags, flow logs, new
// properties of newer api-versions) is written back exactly as it was read.

// nsgAPIVersion is the Microsoft.Network api-version of whole-NSG reads
// and writes, the one armnetwork/v9 uses.
const nsgAPIVersion = "2025-05-01"

// maxBatchAttempts bounds how often a batch is read and written again
// after its ETag went stale.
const maxBatchAttempts = 8

// The gather window (see the package comment above): how long a write
// waits for the changes it expects, the NSG's last write (Azure's take
// seconds) or 1.5 times the time the last wave took to come back, between
// minGather and maxGather; quietGather is the pause in arrivals that ends
// the wait when no size is expected yet (the first write: at most
// maxGather).
const (
	minGather   = 25 * time.Millisecond
	maxGather   = 2 * time.Second
	quietGather = 50 * time.Millisecond
)

// RuleChange is one change to an NSG's rules.
type RuleChange struct {
	// Put writes the rule, replacing one of the same name.
	Put *jit.SecurityRule
	// Choose, when Put is nil, is called with the NSG's rules as they will
	// be just before this change (other changes of the batch included) and
	// returns the rule to put: a grant chooses a free priority this way.
	// An error fails the call that made the change, and only it.
	Choose func(current []jit.SecurityRule) (jit.SecurityRule, error)
	// Delete removes the rule of this name; a missing rule is no error.
	Delete string
	// Require, when set, fails the call with ErrRuleGone (and
	// ErrNotWritten) unless a rule of this name is on the NSG at this point
	// of the write: a close whose rule someone else has deleted already
	// then writes nothing and does not claim the close.
	Require string
	// FlushConnection, when not nil, sets the NSG's flushConnection
	// property (Azure then re-evaluates established flows whenever the
	// NSG's rules change) in the same write. It is not a rule change, but
	// it travels with them so that a policy's rules and the setting it
	// asks for land together.
	FlushConnection *bool
}

// Every error of ApplyRuleChanges says what the call's changes came to on
// the NSG: errors.Is(err, ErrNotWritten) when none of them was written, and
// errors.Is(err, ErrOutcomeUnknown) when a write carrying them was sent and
// its outcome is not known. Errors of the Azure kinds (ErrInvalid, ...)
// match as well.
var (
	ErrNotWritten     = errors.New("nothing was written")
	ErrOutcomeUnknown = errors.New("the write's outcome is unknown: the changes may have been written")
	// ErrRuleGone: a change's Require named a rule that is not there.
	ErrRuleGone = errors.New("the rule is no longer on the NSG")
)

// maxWriteTime bounds one NSG write (its reads, its PUT with Azure's busy
// and throttled retries, and polling its operation). Callers that gave up
// wait for the write they are part of, so it must end; an NSG write takes
// seconds, and one still unfinished after this is reported as of unknown
// outcome.
const maxWriteTime = 5 * time.Minute

// ApplyRuleChanges applies the changes to the NSG in one write, together
// with the changes other goroutines ask for meanwhile, and returns the
// rules the Put and Choose changes wrote (in order). The changes of one
// call succeed or fail together, and the result says what happened to
// them, whether or not ctx ended first:
//
//   - nil error: all of them were written. This holds even when ctx ended
//     meanwhile: a call whose changes a write already carried when ctx
//     ended waits for that write (at most maxWriteTime) and reports it, and
//     the caller must then treat the changes as made (record them, or undo
//     them).
//   - errors.Is(err, ErrNotWritten): none of them was written. Either ctx
//     ended before a write carried them, and they were withdrawn (then
//     errors.Is(err, ctx.Err()) too), or their own Choose failed, or Azure
//     refused the write, or it could not be attempted (the NSG could not be
//     read, or does not exist: errors.Is(err, ErrNotFound)).
//   - errors.Is(err, ErrOutcomeUnknown): a write carrying them was sent,
//     and whether it landed is not known (the connection failed, Azure
//     failed the operation, or it did not finish within maxWriteTime). The
//     changes may be on the NSG now or later: read it, or undo them.
//
// Exactly one of the three holds. Writes are made on behalf of callers
// still waiting for them only: no change is written after its call
// returned.
func (c *Client) ApplyRuleChanges(ctx context.Context, nsgID string, changes []RuleChange) ([]jit.SecurityRule, error) {
	id, err := ParseNSGID(nsgID)
	if err != nil {
		return nil, &outcomeError{outcome: ErrNotWritten, err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, withdrawnError(nsgID, err)
	}
	call := &batchCall{ctx: ctx, nsgID: nsgID, changes: changes, done: make(chan struct{})}
	b := c.batcherFor(id)
	b.mu.Lock()
	b.pending = append(b.pending, call)
	b.arrivedLocked()
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		// The writer is a goroutine of its own, not this caller: it writes
		// batches until none is pending, and the caller that started it
		// may give up like any other.
		go c.drain(ctx, id, b)
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		// Withdrawn unless a write already carries the changes; then the
		// write's outcome is the answer.
		b.withdraw(call)
		<-call.done
	}
	return call.written, call.err
}

// outcomeError is an ApplyRuleChanges error: its cause, and what it means
// for the NSG (ErrNotWritten or ErrOutcomeUnknown).
type outcomeError struct {
	outcome error
	note    string // said after the cause, e.g. "withdrawn: nothing was written"
	err     error
}

func (e *outcomeError) Error() string {
	if e.note == "" {
		return e.err.Error()
	}
	return e.err.Error() + " (" + e.note + ")"
}

func (e *outcomeError) Unwrap() []error { return []error{e.outcome, e.err} }

func withdrawnError(nsgID string, ctxErr error) error {
	return &outcomeError{outcome: ErrNotWritten, note: "withdrawn before any write: nothing was written",
		err: newError("change security rules of", nsgID, ctxErr)}
}

type batcher struct {
	mu        sync.Mutex
	pending   []*batchCall
	running   bool
	lastWrite time.Duration // how long the NSG's last write took
	// maxWrite, when set, replaces maxWriteTime (tests).
	maxWrite time.Duration

	// carrying is how many calls the write under way carries; peak the
	// most calls waiting at once (carried and queued) since it started;
	// expect the peak of the last write, the size of batch the next write
	// waits for (0: none known yet).
	carrying, peak, expect int
	// lastArrival is when the last call was queued; arrived is closed then
	// (and replaced), waking a gathering writer.
	lastArrival time.Time
	arrived     chan struct{}
	// released is when the last write ended, returned how many calls have
	// arrived since, and comeback how long the last wave took to arrive
	// whole (expect calls after a write ended).
	released time.Time
	returned int
	comeback time.Duration
}

// arrivedLocked records that a call was queued; b.mu is held.
func (b *batcher) arrivedLocked() {
	b.peak = max(b.peak, b.carrying+len(b.pending))
	b.lastArrival = time.Now()
	if !b.released.IsZero() {
		b.returned++
		if b.returned == b.expect {
			b.comeback = b.lastArrival.Sub(b.released)
		}
	}
	if b.arrived != nil {
		close(b.arrived)
	}
	b.arrived = make(chan struct{})
}

// gatherWindow is the longest a write waits for the calls it expects; b.mu
// is held.
func (b *batcher) gatherWindowLocked() time.Duration {
	if b.lastWrite == 0 {
		return maxGather
	}
	return min(max(b.lastWrite, b.comeback*3/2, minGather), maxGather)
}

// gather waits, before a write, for the batch it expects: until b.expect
// calls are queued, or (none expected yet) until arrivals pause for
// quietGather, and at most the gather window.
func (b *batcher) gather() {
	b.mu.Lock()
	defer b.mu.Unlock()
	deadline := time.Now().Add(b.gatherWindowLocked())
	for {
		if slices.ContainsFunc(b.pending, func(c *batchCall) bool { return c.now }) {
			return // a caller that knows its batch is whole (ApplyRuleChangeSets)
		}
		n := len(b.pending)
		if b.expect > 0 && n >= b.expect {
			return
		}
		wait := time.Until(deadline)
		if b.expect == 0 && n > 0 {
			wait = min(wait, time.Until(b.lastArrival.Add(quietGather)))
		}
		if wait <= 0 {
			return
		}
		if b.arrived == nil {
			b.arrived = make(chan struct{})
		}
		arrived := b.arrived
		b.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-arrived:
		case <-timer.C:
		}
		timer.Stop()
		b.mu.Lock()
	}
}

// take moves the queued calls into the write under way; b.mu is held.
func (b *batcher) takeLocked() []*batchCall {
	batch := b.pending
	b.pending = nil
	b.carrying += len(batch)
	return batch
}

func (b *batcher) writeTime() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxWrite > 0 {
		return b.maxWrite
	}
	return maxWriteTime
}

// A batchCall is one ApplyRuleChanges call. Its state is guarded by its
// batcher's mu: queued (neither carried nor finished; its caller may
// withdraw it), carried by a write under way, finished.
type batchCall struct {
	ctx     context.Context
	nsgID   string
	changes []RuleChange
	// now: the write is not to wait for other callers (see gather).
	now bool

	// carried: a write carrying the changes is being sent, or was sent and
	// its answer is not in yet.
	carried bool
	// mayHaveLanded: a write that carried the changes may have been
	// applied, though it seemed to fail: its answer was lost, or the SDK
	// sent it again after a failed try and Azure refused the repeat. The
	// call can no longer be withdrawn, and a failure is of unknown outcome.
	mayHaveLanded bool
	finished      bool

	written []jit.SecurityRule
	err     error
	done    chan struct{}
}

// finishLocked ends the call; b.mu is held.
func (call *batchCall) finishLocked(written []jit.SecurityRule, err error) {
	if call.finished {
		return
	}
	call.finished = true
	call.written, call.err = written, err
	close(call.done)
}

// withdraw finishes the call as withdrawn if no write carries it, and
// takes it out of the queue.
func (b *batcher) withdraw(call *batchCall) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if call.finished || call.carried || call.mayHaveLanded {
		return
	}
	b.pending = slices.DeleteFunc(b.pending, func(p *batchCall) bool { return p == call })
	call.finishLocked(nil, withdrawnError(call.nsgID, call.ctx.Err()))
}

// succeed finishes the calls as written.
func (b *batcher) succeed(calls []*batchCall, written map[*batchCall][]jit.SecurityRule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, call := range calls {
		call.finishLocked(written[call], nil)
	}
}

// fail finishes the call with err, which says whether the changes may have
// been written by what the call went through, not by err alone.
func (b *batcher) fail(call *batchCall, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if call.finished {
		return
	}
	outcome, note := ErrNotWritten, ""
	if call.carried || call.mayHaveLanded {
		outcome, note = ErrOutcomeUnknown, ErrOutcomeUnknown.Error()
	}
	var oe *outcomeError
	if errors.As(err, &oe) {
		err = oe.err
	}
	call.finishLocked(nil, &outcomeError{outcome: outcome, note: note, err: err})
}

func (c *Client) batcherFor(id NSGID) *batcher {
	key := strings.ToLower(id.String())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batchers == nil {
		c.batchers = map[string]*batcher{}
	}
	b := c.batchers[key]
	if b == nil {
		b = &batcher{}
		c.batchers[key] = b
	}
	return b
}

func (c *Client) drain(ctx context.Context, id NSGID, b *batcher) {
	// The writer serves every caller of the NSG: it must not be cut short
	// because the caller that started it gives up. Each write is bounded
	// by maxWriteTime instead.
	// Its writes are recorded for each caller they carry, not for the one
	// that started it (see writeNSG).
	ctx = withoutWriteRecorder(context.WithoutCancel(ctx))
	for {
		// Each write waits for the batch it expects (see the package
		// comment); after a write, that is the callers it released coming
		// back with their next changes.
		if c.gatherBatches {
			b.gather()
		}
		b.mu.Lock()
		b.carrying = 0
		batch := b.takeLocked()
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.peak = len(batch)
		b.mu.Unlock()
		start := time.Now()
		c.writeBatch(ctx, id, b, batch)
		b.mu.Lock()
		b.lastWrite = time.Since(start)
		b.expect, b.carrying = b.peak, 0
		b.released, b.returned = time.Now(), len(b.pending)
		b.mu.Unlock()
	}
}

// writeBatch applies the calls' changes in one NSG write and finishes every
// call. When Azure refuses the write as invalid and the batch holds several
// calls, each call is tried alone, so that one bad change fails only its
// own caller.
func (c *Client) writeBatch(ctx context.Context, id NSGID, b *batcher, batch []*batchCall) {
	err := c.writeNSG(ctx, id, b, &batch, true)
	if err == nil {
		return
	}
	if len(batch) > 1 && (errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict)) {
		for _, call := range batch {
			if err := c.writeNSG(ctx, id, b, &[]*batchCall{call}, false); err != nil {
				b.fail(call, err)
			}
		}
		return
	}
	for _, call := range batch {
		b.fail(call, err)
	}
}

// carry picks the calls the next write carries, at the moment its document
// is assembled: a call whose caller has gone is withdrawn instead, unless
// an earlier write may have applied its changes already.
func (b *batcher) carry(batch []*batchCall) []*batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*batchCall
	for _, call := range batch {
		switch {
		case call.finished:
		case call.ctx.Err() != nil && !call.mayHaveLanded:
			call.finishLocked(nil, withdrawnError(call.nsgID, call.ctx.Err()))
		default:
			call.carried = true
			out = append(out, call)
		}
	}
	return out
}

// settle records what a write that failed means for the calls it carried:
// none of them was written when Azure refused it, and any may have been
// otherwise.
func (b *batcher) settle(calls []*batchCall, refused bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, call := range calls {
		call.carried = false
		call.mayHaveLanded = call.mayHaveLanded || !refused
	}
}

// writeNSG reads the NSG, applies the calls' changes and writes it back
// with If-Match, again from the read when the ETag went stale; the write
// takes at most the batcher's write time. Calls whose own changes fail (a
// Choose error) are finished at once, calls whose callers have gone
// before the document is assembled are withdrawn, and the others are
// finished when the write succeeds. A returned error is for the calls not
// finished yet. With merge, a write read again after a stale ETag takes the
// calls queued meanwhile along (added to *batch), so the retry does not
// split them into a write of their own.
func (c *Client) writeNSG(ctx context.Context, id NSGID, b *batcher, batchp *[]*batchCall, merge bool) (err error) {
	const op = "write network security group"
	bound := b.writeTime()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("the write did not end within %s: %w", bound, err)
		}
	}()
	pipeline, endpoint, err := c.rawClient()
	if err != nil {
		return err
	}
	nsgURL := strings.TrimSuffix(endpoint, "/") + id.String() + "?api-version=" + url.QueryEscape(nsgAPIVersion)
	var lastErr error
	for attempt := range maxBatchAttempts {
		if merge && attempt > 0 {
			b.mu.Lock()
			*batchp = append(*batchp, b.takeLocked()...)
			b.mu.Unlock()
		}
		batch := *batchp
		doc, etag, err := c.getRawNSG(ctx, pipeline, nsgURL, id)
		if err != nil {
			return err
		}
		rules, err := doc.rules()
		if err != nil {
			return &Error{Kind: KindInvalid, Op: op, ResourceID: id.String(), Message: err.Error(), Err: err}
		}
		var pending []*batchCall
		written := map[*batchCall][]string{}
		var flush *bool
		for _, call := range b.carry(batch) {
			callFlush := flush
			next, names, err := applyChanges(rules, call.changes, &callFlush)
			if err != nil {
				b.settle([]*batchCall{call}, true) // not in this write
				b.fail(call, err)
				continue
			}
			rules, flush = next, callFlush
			written[call] = names
			pending = append(pending, call)
		}
		if len(pending) == 0 {
			return nil
		}
		if err := doc.setRules(rules, flush); err != nil {
			b.settle(pending, true)
			return &Error{Kind: KindInvalid, Op: op, ResourceID: id.String(), Message: err.Error(), Err: err}
		}
		putCtx, rec := WithWriteRecorder(ctx)
		result, refused, err := c.putRawNSG(putCtx, pipeline, nsgURL, id, doc, etag)
		for _, call := range pending {
			writeRecorderFrom(call.ctx).add(rec.Writes()...)
		}
		if err != nil {
			b.settle(pending, refused)
			if errors.Is(err, ErrPreconditionFailed) {
				lastErr = err
				continue // someone else wrote the NSG: read it again
			}
			return err
		}
		stored, _ := result.rules()
		out := make(map[*batchCall][]jit.SecurityRule, len(pending))
		for _, call := range pending {
			out[call] = pickRules(stored, rules, written[call])
		}
		b.succeed(pending, out)
		return nil
	}
	return lastErr
}

// applyChanges returns the rule list after the changes, and the names of the
// rules they put; the flushConnection setting they ask for is set on flush.
func applyChanges(rules []rawRule, changes []RuleChange, flush **bool) ([]rawRule, []string, error) {
	next := append([]rawRule(nil), rules...)
	var names []string
	for _, ch := range changes {
		if ch.FlushConnection != nil {
			*flush = ch.FlushConnection
		}
		switch {
		case ch.Put != nil || ch.Choose != nil:
			r := ch.Put
			if r == nil {
				current := make([]jit.SecurityRule, len(next))
				for i, raw := range next {
					current[i] = raw.rule
				}
				chosen, err := ch.Choose(current)
				if err != nil {
					return nil, nil, err
				}
				r = &chosen
			}
			if r.Name == "" || r.UsesApplicationSecurityGroups {
				return nil, nil, &Error{Kind: KindInvalid, Op: "put security rule", ResourceID: r.Name,
					Message: "a rule needs a name, and rules with application security groups cannot be written"}
			}
			raw, err := newRawRule(*r)
			if err != nil {
				return nil, nil, err
			}
			next = putRaw(next, raw)
			names = append(names, r.Name)
		case ch.Delete != "":
			next = deleteRaw(next, ch.Delete)
		case ch.Require != "":
			if !slices.ContainsFunc(next, func(r rawRule) bool { return strings.EqualFold(r.rule.Name, ch.Require) }) {
				return nil, nil, fmt.Errorf("%s: %w", ch.Require, ErrRuleGone)
			}
		}
	}
	return next, names, nil
}

func putRaw(rules []rawRule, r rawRule) []rawRule {
	for i := range rules {
		if strings.EqualFold(rules[i].rule.Name, r.rule.Name) {
			rules[i] = r
			return rules
		}
	}
	return append(rules, r)
}

func deleteRaw(rules []rawRule, name string) []rawRule {
	out := rules[:0:0]
	for _, r := range rules {
		if !strings.EqualFold(r.rule.Name, name) {
			out = append(out, r)
		}
	}
	return out
}

// pickRules returns the named rules as Azure stored them, or as written
// when the response did not list them.
func pickRules(stored, written []rawRule, names []string) []jit.SecurityRule {
	out := make([]jit.SecurityRule, 0, len(names))
	for _, name := range names {
		found := false
		for _, list := range [][]rawRule{stored, written} {
			for _, r := range list {
				if !found && strings.EqualFold(r.rule.Name, name) {
					out = append(out, r.rule)
					found = true
				}
			}
		}
	}
	return out
}

// rawNSG is an NSG document as ARM returned it.
type rawNSG map[string]json.RawMessage

// rawRule is one rule of the document: the JSON as read (or built), and
// what it means.
type rawRule struct {
	json json.RawMessage
	rule jit.SecurityRule
}

func newRawRule(r jit.SecurityRule) (rawRule, error) {
	b, err := json.Marshal(ruleToARM(r))
	if err != nil {
		return rawRule{}, fmt.Errorf("encode rule %s: %w", r.Name, err)
	}
	return rawRule{json: b, rule: r}, nil
}

func (d rawNSG) properties() (map[string]json.RawMessage, error) {
	props := map[string]json.RawMessage{}
	if raw, ok := d["properties"]; ok {
		if err := json.Unmarshal(raw, &props); err != nil {
			return nil, fmt.Errorf("decode the NSG's properties: %w", err)
		}
	}
	return props, nil
}

func (d rawNSG) rules() ([]rawRule, error) {
	props, err := d.properties()
	if err != nil {
		return nil, err
	}
	var list []json.RawMessage
	if raw, ok := props["securityRules"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("decode the NSG's security rules: %w", err)
		}
	}
	out := make([]rawRule, 0, len(list))
	for _, raw := range list {
		var sr armnetwork.SecurityRule
		if err := json.Unmarshal(raw, &sr); err != nil {
			return nil, fmt.Errorf("decode a security rule: %w", err)
		}
		out = append(out, rawRule{json: raw, rule: ruleFromARM(&sr)})
	}
	return out, nil
}

// setRules sets the document's rule list, and its flushConnection property
// when flush is not nil.
func (d rawNSG) setRules(rules []rawRule, flush *bool) error {
	props, err := d.properties()
	if err != nil {
		return err
	}
	if flush != nil {
		props["flushConnection"] = json.RawMessage(strconv.FormatBool(*flush))
	}
	list := make([]json.RawMessage, len(rules))
	for i, r := range rules {
		list[i] = r.json
	}
	if props["securityRules"], err = json.Marshal(list); err != nil {
		return fmt.Errorf("encode the NSG's security rules: %w", err)
	}
	d["properties"], err = json.Marshal(props)
	return err
}

// rawClient returns the ARM pipeline (credential, retries, busy-NSG
// retries, user agent) and endpoint for raw requests, built once. Raw
// requests carry the full resource id, so one serves every subscription.
func (c *Client) rawClient() (runtime.Pipeline, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.raw == nil {
		opts := *c.armOptions
		opts.PerRetryPolicies = append(slices.Clone(opts.PerRetryPolicies), uncertainTryPolicy{})
		client, err := arm.NewClient("jit-nsg-batch", "v1.0.0", c.cred, &opts)
		if err != nil {
			return runtime.Pipeline{}, "", &Error{Kind: KindInvalid, Op: "prepare", Message: err.Error(), Err: err}
		}
		c.raw = client
	}
	return c.raw.Pipeline(), c.raw.Endpoint(), nil
}

func (c *Client) getRawNSG(ctx context.Context, pipeline runtime.Pipeline, nsgURL string, id NSGID) (rawNSG, string, error) {
	const op = "read network security group"
	req, err := runtime.NewRequest(ctx, http.MethodGet, nsgURL)
	if err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := pipeline.Do(req)
	if err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, "", newError(op, id.String(), runtime.NewResponseError(resp))
	}
	var doc rawNSG
	if err := runtime.UnmarshalAsJSON(resp, &doc); err != nil {
		return nil, "", newError(op, id.String(), err)
	}
	var etag string
	if raw, ok := doc["etag"]; ok {
		_ = json.Unmarshal(raw, &etag)
	}
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	return doc, etag, nil
}

// putRawNSG writes the NSG document with If-Match and waits for the
// write's operation. refused, with an error, says that Azure did not apply
// the write: it answered a request that was never retried after a failure
// that might have applied it with a 4xx (412 included).
func (c *Client) putRawNSG(ctx context.Context, pipeline runtime.Pipeline, nsgURL string, id NSGID, doc rawNSG, etag string) (result rawNSG, refused bool, err error) {
	const op = "write network security group"
	tries := &writeTries{}
	req, err := runtime.NewRequest(context.WithValue(ctx, writeTriesKey{}, tries), http.MethodPut, nsgURL)
	if err != nil {
		return nil, true, newError(op, id.String(), err)
	}
	if etag != "" {
		req.Raw().Header.Set("If-Match", etag)
	}
	if err := runtime.MarshalAsJSON(req, doc); err != nil {
		return nil, true, newError(op, id.String(), err)
	}
	resp, err := pipeline.Do(req)
	if err != nil {
		return nil, false, newError(op, id.String(), err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK, http.StatusCreated) {
		refused := resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && !tries.uncertain.Load()
		return nil, refused, newError(op, id.String(), runtime.NewResponseError(resp))
	}
	poller, err := runtime.NewPoller[rawNSG](resp, pipeline, nil)
	if err != nil {
		return nil, false, newError(op, id.String(), err)
	}
	// A failed operation is not taken as refused either: Azure may keep a
	// failed write's rules as the NSG's goal state.
	result, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: c.pollFrequency})
	if err != nil {
		return nil, false, newError(op, id.String(), err)
	}
	return result, false, nil
}

// writeTries records, for one raw NSG write, whether any of its tries may
// have been applied without the client seeing it succeed.
type writeTries struct{ uncertain atomic.Bool }

type writeTriesKey struct{}

// uncertainTryPolicy sees every try of a request (after the busy-NSG
// retries) and marks, for a raw NSG write, a try that failed in transport
// or that Azure answered 408 or 5xx: such a try may have been applied, so a
// later try's 412 (the ETag moved on) does not mean nothing was written.
type uncertainTryPolicy struct{}

func (uncertainTryPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if tries, ok := req.Raw().Context().Value(writeTriesKey{}).(*writeTries); ok {
		if err != nil || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500 {
			tries.uncertain.Store(true)
		}
	}
	return resp, err
}
