package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// How closes are made.
//
// An NSG write takes seconds, 20 s and more when Azure is slow, and writes
// to one NSG are serialised. So:
//
//   - every close an NSG's plan holds goes into one NSG write (setWriter),
//     started at once rather than after a gather window: the plan's grants
//     expiring close together (jit.CloseStart) share it.
//   - a close starts ahead of its grant's expiry by the close lead (see
//     lead.go): the rule is gone at about the expiry, not a write later.
//   - in Run, the write runs outside the loop (closeRunner): the loop goes
//     on reading and closing other NSGs meanwhile, so one NSG's slow write
//     never delays another NSG's close. At most one close write per rule is
//     under way; a read of the NSG while it is leaves the rule to it. The
//     NSG's status shows the rule as closing until the write is done.
//   - a plan that also records revoked grants or restores a policy closes
//     inside the reconcile, as before, since those writes are decided on
//     the rules as the closes leave them. So does a single pass (--once).

// setWriter is a RuleClient that applies several independent closes'
// changes in one NSG write without waiting for other callers
// (azure.Client.ApplyRuleChangeSets). Without it, jitd closes rule by rule.
type setWriter interface {
	ApplyRuleChangeSets(ctx context.Context, nsgID string, sets [][]azure.RuleChange) []error
}

// closeRunner runs close writes outside the loop and hands their outcomes
// back to it.
type closeRunner struct {
	looping              bool // loop state: Run is running, so closes run outside it
	wg                   sync.WaitGroup
	outbox[closeOutcome] // close writes done, for the loop

	mu       sync.Mutex
	inflight map[string]map[string]bool // by NSG: lower-case names of the rules whose close is under way
}

// closeOutcome is what one NSG's closes came to.
type closeOutcome struct {
	nsgID  string
	closed map[string]bool // rules gone: closed by jitd, or found gone
	n      int             // rules closed by jitd (or, dry-running, that would have been)
	failed bool
	errs   []error
}

func newCloseRunner() closeRunner {
	return closeRunner{outbox: newOutbox[closeOutcome](), inflight: map[string]map[string]bool{}}
}

// claim returns the closes whose rule no close under way is deleting, and
// marks them under way.
func (r *closeRunner) claim(nsgID string, closes []Close) []Close {
	r.mu.Lock()
	defer r.mu.Unlock()
	busy := r.inflight[nsgID]
	var out []Close
	for _, c := range closes {
		name := strings.ToLower(c.Rule.Name)
		if busy[name] {
			continue
		}
		if busy == nil {
			busy = map[string]bool{}
			r.inflight[nsgID] = busy
		}
		busy[name] = true
		out = append(out, c)
	}
	return out
}

// release ends the closes' claim.
func (r *closeRunner) release(nsgID string, closes []Close) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range closes {
		delete(r.inflight[nsgID], strings.ToLower(c.Rule.Name))
	}
	if len(r.inflight[nsgID]) == 0 {
		delete(r.inflight, nsgID)
	}
}

// closing returns the names of the NSG's rules whose close is under way.
func (r *closeRunner) closing(nsgID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for name := range r.inflight[nsgID] {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// startCloses runs the closes in the background (Run) and returns at once.
func (d *Daemon) startCloses(ctx context.Context, nsgID string, closes []Close, readBegan time.Time) {
	d.closer.wg.Go(func() {
		o := d.closeAll(ctx, nsgID, closes, readBegan)
		d.closer.release(nsgID, closes)
		d.closer.deliver(o)
	})
}

// collectCloses folds the close writes that are done into the loop state:
// the NSG's status loses the closed rules, and an NSG whose close failed is
// tried again after RetryDelay. Called by the loop.
func (d *Daemon) collectCloses() {
	now := d.now()
	for _, o := range d.closer.take() {
		d.statusMu.Lock()
		if e := d.reads[o.nsgID]; e != nil {
			rd := e.read
			rd.Rules = withoutNames(rd.Rules, o.closed)
			rd.Closing = d.closer.closing(o.nsgID)
			d.reads[o.nsgID] = &statusEntry{read: rd}
		}
		d.statusMu.Unlock()
		if o.failed {
			if retry := now.Add(d.retryDelay); d.due[o.nsgID].IsZero() || retry.Before(d.due[o.nsgID]) {
				d.due[o.nsgID] = retry
			}
		}
		if o.n > 0 || len(o.errs) > 0 {
			d.log.Info("close write done", "nsg_id", o.nsgID, "closed", o.n, "errors", len(o.errs))
		}
	}
	d.retimeCloses()
}

// closeAll makes the closes of one NSG: in one NSG write when the client
// can (setWriter), otherwise rule by rule. A close whose rule someone else
// deleted first is not claimed (azure.ErrRuleGone) but counts as gone.
//
// The write's duration, for the lead, counts from readBegan, when the NSG's
// read that planned the closes began: jitd wakes the lead before an expiry
// and then reads, plans and writes, so the read is part of what the lead
// must cover. (The bound holds all the same: the plan closes grants due by
// the read's time plus the lead, and the write starts after the read.)
func (d *Daemon) closeAll(ctx context.Context, nsgID string, closes []Close, readBegan time.Time) closeOutcome {
	out := closeOutcome{nsgID: nsgID, closed: map[string]bool{}}
	add := func(c Close, err error) {
		switch {
		case errors.Is(err, azure.ErrRuleGone):
			out.closed[c.Rule.Name] = true // gone, but not closed by this write
		case err != nil:
			out.failed = true
			out.errs = append(out.errs, err)
		default:
			out.n++
			if !d.dryRun {
				out.closed[c.Rule.Name] = true
			}
		}
	}
	sw, batched := d.rules.(setWriter)
	if d.dryRun || !batched || len(closes) == 0 {
		for _, c := range closes {
			// Stop starting deletes once asked to stop; the next run
			// closes what is left.
			if ctx.Err() != nil {
				break
			}
			add(c, d.close(ctx, nsgID, c))
		}
		return out
	}
	if ctx.Err() != nil {
		return out
	}
	// A write that has started is finished even if ctx ends meanwhile:
	// SIGTERM must not leave the outcome of a close unknown. Its ARM writes
	// are named in the events (see emit).
	ctx, _ = azure.WithWriteRecorder(ctx)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.delTimeout)
	defer cancel()
	sets := make([][]azure.RuleChange, len(closes))
	for i, c := range closes {
		sets[i] = endChanges(c, true)
	}
	start := d.now()
	errs := sw.ApplyRuleChangeSets(wctx, nsgID, sets)
	took, done := time.Since(readBegan), d.now()
	wrote := false
	for i, c := range closes {
		err := errs[i]
		switch {
		case err == nil:
			wrote = true
		case errors.Is(err, azure.ErrNotFound):
			err = nil // the NSG is gone, and its rules with it
		case errors.Is(err, azure.ErrForbidden) && errors.Is(err, azure.ErrNotWritten):
			// A role without networkSecurityGroups/write still closes: the
			// rule goes, without its record.
			d.log.Warn("no permission to write the NSG: closing the grant without keeping its record",
				"nsg_id", nsgID, "rule", c.Rule.Name, "error", err)
			err = d.rules.DeleteRule(wctx, nsgID, c.Rule.Name)
			done = d.now()
		}
		add(c, d.reportClose(ctx, nsgID, c, err, start, done))
	}
	if wrote {
		d.observeCloseWrite(took)
	}
	return out
}

// observeCloseWrite feeds a close write's duration to the lead.
func (d *Daemon) observeCloseWrite(took time.Duration) {
	d.leads.observe(took)
	d.metrics.closeLead.Set(d.leads.lead().Seconds())
}

// endChanges are the changes that end a close's rule: it goes and, for a
// grant whose policy is on the NSG, its record stays (jit.EndGrant), in the
// same write. With require, nothing is written unless the rule is there
// when the write is assembled (azure.ErrRuleGone otherwise).
func endChanges(c Close, require bool) []azure.RuleChange {
	changes := make([]azure.RuleChange, 0, len(c.End.Delete)+3)
	if require {
		changes = append(changes, azure.RuleChange{Require: c.Rule.Name})
	}
	changes = append(changes, azure.RuleChange{Delete: c.Rule.Name})
	for _, name := range c.End.Delete {
		if !strings.EqualFold(name, c.Rule.Name) {
			changes = append(changes, azure.RuleChange{Delete: name})
		}
	}
	if c.Grant != nil && c.End.Record {
		g := *c.Grant
		changes = append(changes, azure.RuleChange{Choose: func(current []jit.SecurityRule) (jit.SecurityRule, error) {
			rec, ok := jit.EndedRule(g, current)
			if !ok {
				return jit.SecurityRule{}, errors.New("no outbound priority is free for the record of the ended grant")
			}
			return rec, nil
		}})
	}
	return changes
}

// reportClose logs, counts and audits the outcome of a close whose write
// started at start and ended at done (the daemon's clock). It returns err,
// wrapped, for a failure; an error matching azure.ErrRuleGone, reporting
// nothing, when the rule was gone by the time of the write.
func (d *Daemon) reportClose(ctx context.Context, nsgID string, c Close, err error, start, done time.Time) error {
	log := d.log.With("nsg_id", nsgID, "rule", c.Rule.Name, "reason", string(c.Reason))
	if c.Detail != "" {
		log = log.With("detail", c.Detail)
	}
	if errors.Is(err, azure.ErrRuleGone) {
		// Someone else closed it between this pass's read and its write
		// (another jitd replica, the grant's workspace): nothing was
		// written, and the close is theirs to report.
		log.Info("rule already closed by someone else")
		return err
	}
	if err != nil {
		d.metrics.errors.WithLabelValues(opDelete).Inc()
		d.metrics.closes.WithLabelValues(string(c.Reason), string(audit.ResultFailure)).Inc()
		log.Error("closing rule failed", "error", err)
		d.emit(ctx, closeEvent(done, nsgID, c, audit.ResultFailure, err))
		return fmt.Errorf("close %s on %s: %w", c.Rule.Name, nsgID, err)
	}
	d.metrics.closes.WithLabelValues(string(c.Reason), string(audit.ResultSuccess)).Inc()
	e := closeEvent(done, nsgID, c, audit.ResultSuccess, nil)
	attrs := []any{}
	if c.Grant != nil && c.Reason == ReasonExpired {
		lag := done.Sub(c.Grant.ExpiresAt)
		d.metrics.closeLag.Observe(lag.Seconds())
		// lag in seconds, a number, so that a log pipeline can aggregate it;
		// negative when the close ended ahead of the expiry.
		attrs = append(attrs, "expired_at", c.Grant.ExpiresAt, "lag", lag.Seconds())
		if ahead := c.Grant.ExpiresAt.Sub(start); ahead > 0 {
			e.CloseLeadSeconds = ahead.Round(time.Millisecond).Seconds()
			attrs = append(attrs, "started_ahead", ahead.Seconds())
		}
	}
	log.Info("closed rule", attrs...)
	d.emit(ctx, e)
	return nil
}
