package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Actor names jitd in audit events.
const Actor = "jitd"

// RuleClient reads, deletes and writes NSG rules; *azure.Client is one.
// DeleteRule must treat a rule that does not exist as deleted.
// ApplyRuleChanges applies the changes in one write of the whole NSG, with
// If-Match, calling a change's Choose with the rules as they are just
// before it (see azure.Client.ApplyRuleChanges); jitd uses it only to
// restore a partial policy's guard and deny-all rules.
type RuleClient interface {
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
	DeleteRule(ctx context.Context, nsgID, name string) error
	ApplyRuleChanges(ctx context.Context, nsgID string, changes []azure.RuleChange) ([]jit.SecurityRule, error)
	// FlushConnection reads the NSG's flushConnection; asked only where a
	// policy ends live sessions at expiry.
	FlushConnection(ctx context.Context, nsgID string) (bool, error)
	// AdminRules reads the security admin rules in effect for the NSG's
	// virtual networks; asked only for NSGs holding a policy, at most once
	// per Interval each.
	AdminRules(ctx context.Context, nsgID string) ([]jit.AdminRule, error)
}

// Scope lists the NSGs to watch. It is asked at every full resync, so NSGs
// created in a watched subscription or resource group are picked up. On a
// partial failure it returns the NSGs it could list with the error.
type Scope interface {
	NSGIDs(ctx context.Context) ([]string, error)
}

// Options configure a Daemon. Rules and Scope are required.
type Options struct {
	Rules RuleClient
	Scope Scope
	// Interval is the period of the full resync. Default 5m.
	Interval time.Duration
	// Watch is how often every NSG in scope is read again between full
	// resyncs, so that a grant written after the last read is seen before
	// it expires and closed by the expiry timer, whether or not the NSG
	// held a JIT policy at the last read (a policy and a grant may both be
	// written between two reads). It must be shorter than the shortest
	// grant (jit.MinGrantDuration, 1m). Default 30s; negative turns
	// watching off (grants written between resyncs are then closed at the
	// next resync).
	Watch time.Duration
	// RetryDelay is how soon an NSG whose reconcile failed is tried again,
	// rather than waiting for the next full resync. Default 10s.
	RetryDelay time.Duration
	// Concurrency bounds the NSGs reconciled at once. Default 8.
	Concurrency int
	// DryRun plans and reports but deletes and writes nothing.
	DryRun bool
	// NoRestore only reports a policy with some of its guard and deny-all
	// rules missing, and closes the grants under it, rather than writing
	// the missing rules back.
	NoRestore bool
	// DeleteTimeout bounds a delete that is already under way when the
	// daemon is asked to stop: it is finished rather than abandoned, so a
	// rule is never left half-closed. Default 30s.
	DeleteTimeout time.Duration
	// MaxCloseLead caps the close lead: how long before a grant's expiry
	// the write that closes it starts, estimated from the durations of
	// jitd's own close writes (see lead.go), so that the rule is gone at
	// about the expiry rather than a write after it. No grant's rule is
	// gone more than the lead before its expiry. Default and most
	// jit.MaxCloseLead (30s); negative turns closing ahead off.
	MaxCloseLead time.Duration
	Audit        audit.Sink   // default audit.Discard
	Metrics      *Metrics     // default NewMetrics()
	Logger       *slog.Logger // default discards
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Version is the release's version, for jitd_build_info and the
	// status page.
	Version string
	// StatusRemote serves the status page to any client; by default it
	// answers loopback clients only (an authenticating reverse proxy on
	// the same host, or someone on the host), since it says who can reach
	// what.
	StatusRemote bool
	// RecentEvents is how many of the latest audit events the status page
	// shows. Default 100.
	RecentEvents int
	// Verify, when set, asks Network Watcher's IP flow verify about an NSG
	// after each change jitd makes or observes on it, and reports every
	// answer that breaks the promise as a verify_mismatch finding (see
	// verify.go).
	Verify VerifyClient
}

// Daemon closes expired and invalid grant rules in a scope. Run and Pass
// must not be called concurrently; Ready and Handler may be used from any
// goroutine.
type Daemon struct {
	adminMu sync.Mutex
	admin   map[string]adminRead // by lower-case NSG id

	rules       RuleClient
	scope       Scope
	interval    time.Duration
	watch       time.Duration
	retryDelay  time.Duration
	concurrency int
	dryRun      bool
	restore     bool
	delTimeout  time.Duration
	audit       audit.Sink
	metrics     *Metrics
	log         *slog.Logger
	now         func() time.Time

	// State of the loop, touched only by the goroutine running Run or Pass.
	nsgs     []string                         // scope at the last full resync
	due      map[string]time.Time             // by NSG: when it must be reconciled next
	active   map[string]int                   // by NSG: active grants
	reported map[string]map[string]Finding    // by NSG: findings already reported, by key
	seen     map[string]map[string]jit.Policy // by NSG: policies last seen intact (or restored), by name
	open     map[string][]jit.GrantRule       // by NSG: grants open at its last read
	verifier VerifyClient                     // nil: no verification
	verified map[string][]Finding             // by NSG: mismatches found by its last verification
	verifyFP map[string]string                // by NSG: what its last complete verification saw (verifyFingerprint)
	verifies verifyRunner                     // verifications under way, outside the loop
	closer   closeRunner                      // close writes under way, outside the loop
	leads    *leadEstimator                   // the close lead, from jitd's own close writes
	// inventory is set when the Scope is an Inventory (discovery.go).
	inventory *inventoryState

	lastSuccess atomic.Int64 // unix nanoseconds of the last full resync without error

	// What the status page shows, written by the loop and read by the
	// page's handler: guarded by statusMu.
	statusMu     sync.Mutex
	reads        map[string]*statusEntry // by NSG: its latest read, as the plan's closes and restores left it
	inScope      int                     // NSGs in scope at the last full resync
	scopeErr     string                  // the last full resync's discovery error
	passes       int                     // full resyncs done
	events       []audit.Event           // the latest audit events, oldest first
	recentEvents int
	version      string
	statusRemote bool
}

// New returns a daemon; it starts nothing.
func New(o Options) (*Daemon, error) {
	if o.Rules == nil || o.Scope == nil {
		return nil, errors.New("daemon: a rule client and a scope are required")
	}
	d := &Daemon{
		rules: o.Rules, scope: o.Scope,
		interval: o.Interval, watch: o.Watch, retryDelay: o.RetryDelay, concurrency: o.Concurrency,
		dryRun: o.DryRun, restore: !o.NoRestore, delTimeout: o.DeleteTimeout,
		audit: o.Audit, metrics: o.Metrics, log: o.Logger, now: o.Now,
		due: map[string]time.Time{}, active: map[string]int{}, reported: map[string]map[string]Finding{},
		seen: map[string]map[string]jit.Policy{}, open: map[string][]jit.GrantRule{},
		verifier: o.Verify, verified: map[string][]Finding{}, verifyFP: map[string]string{}, verifies: newVerifyRunner(o.Concurrency),
		closer: newCloseRunner(),
		reads:  map[string]*statusEntry{}, recentEvents: o.RecentEvents, version: o.Version, statusRemote: o.StatusRemote,
		inventory: newInventoryState(o.Scope),
	}
	if d.recentEvents <= 0 {
		d.recentEvents = 100
	}
	if d.version == "" {
		d.version = "dev"
	}
	if d.interval <= 0 {
		d.interval = 5 * time.Minute
	}
	if d.watch == 0 {
		d.watch = 30 * time.Second
	}
	if d.retryDelay <= 0 {
		d.retryDelay = 10 * time.Second
	}
	if d.concurrency <= 0 {
		d.concurrency = 8
	}
	if d.delTimeout <= 0 {
		d.delTimeout = 30 * time.Second
	}
	switch {
	case o.MaxCloseLead == 0:
		d.leads = newLeadEstimator(jit.MaxCloseLead)
	case o.MaxCloseLead < 0:
		d.leads = newLeadEstimator(0)
	default:
		d.leads = newLeadEstimator(o.MaxCloseLead)
	}
	if d.audit == nil {
		d.audit = audit.Discard{}
	}
	if d.metrics == nil {
		d.metrics = NewMetrics()
	}
	d.metrics.SetVersion(d.version)
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d, nil
}

// Summary is the outcome of a full pass.
type Summary struct {
	NSGs         int // NSGs in scope
	Closed       int // rules deleted (or, in a dry run, that would have been)
	Restored     int // guard and deny-all rules written back (or, in a dry run, that would have been)
	Findings     int // findings reported for the first time
	ActiveGrants int // grants left open
	Errors       []error
}

// Err joins the pass's errors; nil when everything succeeded.
func (s Summary) Err() error { return errors.Join(s.Errors...) }

// Run reconciles the scope until ctx ends: a full pass at once and then
// every Interval, and in between each NSG again at its next grant expiry
// (or RetryDelay after a failure). It returns nil when ctx ends; a delete
// under way at that moment is finished first.
func (d *Daemon) Run(ctx context.Context) error {
	d.verifies.looping, d.closer.looping = true, true
	defer func() { d.verifies.looping, d.closer.looping = false, false }()
	d.Pass(ctx)
	resync := time.NewTicker(d.interval)
	defer resync.Stop()
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	// With an inventory, the watch asks it (discovery.go) rather than
	// reading every NSG.
	var inventoryWatch <-chan time.Time
	if d.inventory != nil && d.watch > 0 {
		t := time.NewTicker(d.watch)
		defer t.Stop()
		inventoryWatch = t.C
	}
	for {
		var wake <-chan time.Time
		if at, ok := d.nextWake(); ok {
			timer.Reset(max(0, at.Sub(d.now())))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			// Close writes under way are finished (they do not end with
			// ctx) and reported.
			d.closer.wg.Wait()
			d.collectCloses()
			return nil
		case <-resync.C:
			d.Pass(ctx)
		case <-wake:
			d.reconcileDue(ctx)
		case <-d.verifies.ready:
			d.collectVerifications(ctx)
		case <-d.closer.ready:
			d.collectCloses()
		case <-inventoryWatch:
			d.watchInventory(ctx)
		}
		timer.Stop()
	}
}

// nextWake is the earliest time an NSG is due.
func (d *Daemon) nextWake() (time.Time, bool) {
	var at time.Time
	for _, t := range d.due {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// closeStart is when the close write of an NSG's next grants to expire
// starts: the lead before their expiry (see jit.CloseStart).
func closeStart(open []jit.GrantRule, lead time.Duration) (time.Time, bool) {
	expiries := make([]time.Time, len(open))
	for i, g := range open {
		expiries[i] = g.ExpiresAt
	}
	return jit.CloseStart(expiries, lead)
}

// retimeCloses brings forward the NSGs whose next close starts earlier
// with the lead as it is now than when they were read (the lead grows as
// jitd sees its close writes take longer). Called by the loop.
func (d *Daemon) retimeCloses() {
	lead := d.leads.lead()
	for id, open := range d.open {
		if at, ok := closeStart(open, lead); ok {
			if due, set := d.due[id]; !set || at.Before(due) {
				d.due[id] = at
			}
		}
	}
}

// Pass runs one full resync: discover the scope, reconcile every NSG in
// it. The summary's Err is non-nil if anything failed; Pass never stops at
// the first failure.
func (d *Daemon) Pass(ctx context.Context) Summary {
	start := d.now()
	var sum Summary
	// With ARM discovery read is ids; with an inventory, only what it says
	// changed (discovery.go). Either way, on an error the NSGs known before
	// stay in scope.
	ids, read, err := d.discover(ctx, true)
	if err != nil {
		d.metrics.errors.WithLabelValues(opDiscover).Inc()
		d.log.Error("listing the network security groups in scope failed", "error", err)
		sum.Errors = append(sum.Errors, fmt.Errorf("discover network security groups: %w", err))
	}
	d.forget(ids)
	d.nsgs = ids
	d.metrics.nsgs.Set(float64(len(ids)))
	d.statusMu.Lock()
	d.inScope, d.scopeErr = len(ids), ""
	if err != nil {
		d.scopeErr = err.Error()
	}
	d.statusMu.Unlock()

	results := d.reconcile(ctx, read)
	for _, r := range results {
		sum.Closed += r.closed
		sum.Restored += r.restored
		sum.Errors = append(sum.Errors, r.errs...)
		sum.Findings += d.record(ctx, r)
	}
	d.afterInventoryRead(results)
	sum.Findings += d.collectVerifications(ctx)
	for !d.verifies.looping && len(d.verifies.inflight) > 0 {
		// A pass on its own (--once) ends with its verifications; in Run
		// they report when they are done, never holding up the loop.
		d.verifies.wg.Wait()
		sum.Findings += d.collectVerifications(ctx)
	}
	for _, n := range d.active {
		sum.ActiveGrants += n
	}
	sum.NSGs = len(ids)
	d.statusMu.Lock()
	d.passes++
	d.statusMu.Unlock()
	elapsed := d.now().Sub(start)
	d.metrics.observeDuration("full", elapsed)
	if len(sum.Errors) == 0 && ctx.Err() == nil {
		end := d.now()
		d.lastSuccess.Store(end.UnixNano())
		d.metrics.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
	d.log.Info("full resync done", "nsgs", sum.NSGs, "closed", sum.Closed, "restored", sum.Restored, "new_findings", sum.Findings,
		"active_grants", sum.ActiveGrants, "errors", len(sum.Errors), "duration", elapsed.String())
	return sum
}

// reconcileDue reconciles the NSGs whose time has come.
func (d *Daemon) reconcileDue(ctx context.Context) {
	start := d.now()
	var ids []string
	for id, t := range d.due {
		if !t.After(start) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, r := range d.reconcile(ctx, ids) {
		d.record(ctx, r)
	}
	d.metrics.observeDuration("nsg", d.now().Sub(start))
}

// forget drops the state of NSGs no longer in scope.
func (d *Daemon) forget(ids []string) {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	for id := range d.due {
		if !keep[id] {
			delete(d.due, id)
		}
	}
	for id := range d.active {
		if !keep[id] {
			delete(d.active, id)
		}
	}
	for id := range d.reported {
		if !keep[id] {
			delete(d.reported, id)
		}
	}
	for id := range d.open {
		if !keep[id] {
			delete(d.open, id)
		}
	}
	for id := range d.verified {
		if !keep[id] {
			delete(d.verified, id)
			delete(d.verifyFP, id)
		}
	}
	for id := range d.verifies.latest {
		if !keep[id] {
			delete(d.verifies.latest, id)
		}
	}
	for id := range d.seen {
		if !keep[id] {
			delete(d.seen, id)
		}
	}
	d.statusMu.Lock()
	for id := range d.reads {
		if !keep[id] {
			delete(d.reads, id)
		}
	}
	d.statusMu.Unlock()
	d.updateGauges()
}

// nsgResult is the outcome of reconciling one NSG.
type nsgResult struct {
	nsgID    string
	listed   bool // the rules were read and planned
	gone     bool // the NSG no longer exists
	plan     NSGPlan
	closed   int
	restored int  // rules written back
	failed   bool // a delete or a restore failed, or a restore found the NSG changed
	errs     []error
	// read is the NSG as the plan's closes and restores left it, for the
	// status page; set when listed.
	read NSGRead
}

// reconcile observes, plans and applies the NSGs, at most Concurrency at a
// time, and returns their results in the order given.
func (d *Daemon) reconcile(ctx context.Context, ids []string) []nsgResult {
	results := make([]nsgResult, len(ids))
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	// Grants seen open anywhere in scope: a grant's copy on one NSG tells
	// what its copy on another must say (the policy moves rules unchanged).
	elsewhere := indexGrants(d.open)
	policies := map[string][]jit.Policy{}
	for _, nsgID := range slices.Sorted(maps.Keys(d.seen)) {
		for name, p := range d.seen[nsgID] {
			policies[name] = append(policies[name], p)
		}
	}
	lead := d.leads.lead()
	d.metrics.closeLead.Set(lead.Seconds())
	for i, id := range ids {
		if ctx.Err() != nil {
			results[i] = nsgResult{nsgID: id}
			continue
		}
		sem <- struct{}{}
		seen, open := d.seen[id], d.open[id] // read here: only this goroutine writes them, after wg.Wait
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = d.reconcileNSG(ctx, id, seen, open, elsewhere, policies, lead)
		})
	}
	wg.Wait()
	d.startVerifications(ctx, results)
	return results
}

// reconcileNSG is one reconcile step of one NSG: observe, plan, apply.
// seen are the policies last seen intact on it.
func (d *Daemon) reconcileNSG(ctx context.Context, nsgID string, seen map[string]jit.Policy, open []jit.GrantRule, elsewhere grantIndex, policies map[string][]jit.Policy,
	lead time.Duration) nsgResult {
	res := nsgResult{nsgID: nsgID}
	readBegan := time.Now() // a close's duration counts from here (see closeAll)
	rules, err := d.rules.ListRules(ctx, nsgID)
	switch {
	case errors.Is(err, azure.ErrNotFound):
		d.log.Warn("network security group no longer exists", "nsg_id", nsgID)
		res.gone = true
		return res
	case err != nil:
		if ctx.Err() == nil {
			d.metrics.errors.WithLabelValues(opList).Inc()
			d.log.Error("listing rules failed", "nsg_id", nsgID, "error", err)
			res.errs = append(res.errs, fmt.Errorf("list rules of %s: %w", nsgID, err))
		}
		return res
	}
	res.listed = true
	opts := PlanOptions{LastSeen: seen, Restore: d.restore, LastActive: open, Elsewhere: elsewhere.matching(rules), SeenElsewhere: policies, Lead: lead}
	// What the NSG's policies ask for decides what else is read: decoded
	// once here (PlanNSG decodes again, on its own).
	view := jit.ReadNSG(rules)
	if len(view.Policies) > 0 {
		opts.AdminRules = d.adminRules(ctx, nsgID)
	}
	if EndsSessions(view) {
		on, err := d.rules.FlushConnection(ctx, nsgID)
		if err != nil {
			// The rest of the plan does not depend on it: go on, report.
			d.metrics.errors.WithLabelValues(opList).Inc()
			d.log.Error("reading flushConnection failed", "nsg_id", nsgID, "error", err)
		} else {
			opts.FlushConnection = &on
		}
	}
	readAt := d.now()
	res.plan = PlanNSG(nsgID, rules, readAt, opts)
	// A rule whose close is under way (started by an earlier read) is left
	// to it.
	closes := d.closer.claim(nsgID, res.plan.Closes)
	closed := map[string]bool{}
	if d.closer.looping && len(res.plan.Revoked) == 0 && len(res.plan.Restores) == 0 && len(closes) > 0 {
		d.startCloses(ctx, nsgID, closes, readBegan)
	} else {
		o := d.closeAll(ctx, nsgID, closes, readBegan)
		d.closer.release(nsgID, closes)
		closed, res.closed, res.errs = o.closed, o.n, o.errs
		res.failed = o.failed
	}
	after := withoutNames(rules, closed)
	for _, rv := range res.plan.Revoked {
		if ctx.Err() != nil {
			break
		}
		if err := d.recordRevoked(ctx, nsgID, rv); err != nil {
			res.failed = true
			res.errs = append(res.errs, err)
		}
	}
	for _, r := range res.plan.Restores {
		if ctx.Err() != nil {
			break
		}
		n, err := d.restorePolicy(ctx, nsgID, r)
		res.restored += n
		if n > 0 && err == nil && !d.dryRun {
			after = append(slices.Clone(after), r.Rules...)
		}
		if err != nil {
			res.failed = true
			if !errors.Is(err, errRestoreStale) {
				res.errs = append(res.errs, err)
			}
		}
	}
	res.read = NSGRead{ID: nsgID, Rules: after, FlushConnection: opts.FlushConnection, AdminRules: opts.AdminRules, ReadAt: readAt,
		Closing: d.closer.closing(nsgID)}
	return res
}

// Outcomes of the check a restore makes on the NSG as it is just before
// its write.
var (
	errRestoreUnneeded = errors.New("the policy's rules are all present again")
	errRestoreStale    = errors.New("the NSG changed since it was read")
)

// restorePolicy writes a partial policy's missing guard and deny-all rules
// back (unless dry-running) and reports it; it returns the number of rules
// written. The write is one whole-NSG write with If-Match, and its first
// change checks the NSG as it is just before the write: when the policy's
// rules are no longer what the plan saw, nothing is written and the NSG is
// read again soon (errRestoreStale).
func (d *Daemon) restorePolicy(ctx context.Context, nsgID string, r Restore) (int, error) {
	names := ruleNames(r.Rules)
	log := d.log.With("nsg_id", nsgID, "policy", r.Policy.Name, "rules", names, "from", string(r.Source))
	if d.dryRun {
		log.Info("would restore missing policy rules (dry run)")
		d.metrics.restores.WithLabelValues(string(audit.ResultDryRun)).Inc()
		for _, rule := range r.Rules {
			d.emit(ctx, restoreEvent(d.now(), nsgID, r, rule, audit.ResultDryRun, nil))
		}
		return len(r.Rules), nil
	}
	check := func(current []jit.SecurityRule) (jit.SecurityRule, error) {
		again, err := jit.PlanRestore(r.Policy.Name, current, &r.Policy)
		switch {
		case errors.Is(err, jit.ErrNothingMissing):
			return jit.SecurityRule{}, errRestoreUnneeded
		case err != nil:
			return jit.SecurityRule{}, fmt.Errorf("%w: %w", errRestoreStale, err)
		case !again.Policy.Equal(r.Policy):
			return jit.SecurityRule{}, fmt.Errorf("%w: the policy's remaining rules are now those of another version of it", errRestoreStale)
		case !slices.Equal(ruleNames(again.Missing), names):
			return jit.SecurityRule{}, fmt.Errorf("%w: the rules missing now are %s", errRestoreStale, strings.Join(ruleNames(again.Missing), ", "))
		}
		return r.Rules[0], nil
	}
	changes := []azure.RuleChange{{Choose: check}}
	for i := 1; i < len(r.Rules); i++ {
		changes = append(changes, azure.RuleChange{Put: &r.Rules[i]})
	}
	// A write that has started is finished even if ctx ends meanwhile, as
	// a delete is.
	// Its ARM writes are named in the events (see emit).
	ctx, _ = azure.WithWriteRecorder(ctx)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.delTimeout)
	defer cancel()
	_, err := d.rules.ApplyRuleChanges(wctx, nsgID, changes)
	done := d.now()
	switch {
	case errors.Is(err, errRestoreUnneeded):
		log.Info("policy rules already restored (by another replica or writer)")
		return 0, nil
	case errors.Is(err, errRestoreStale):
		log.Warn("not restoring: the policy's rules changed since they were read; reading the NSG again", "detail", err.Error())
		return 0, err
	case err != nil:
		d.metrics.errors.WithLabelValues(opRestore).Inc()
		d.metrics.restores.WithLabelValues(string(audit.ResultFailure)).Inc()
		log.Error("restoring policy rules failed", "error", err)
		for _, rule := range r.Rules {
			d.emit(ctx, restoreEvent(done, nsgID, r, rule, audit.ResultFailure, err))
		}
		return 0, fmt.Errorf("restore %s of policy %s on %s: %w", strings.Join(names, ", "), r.Policy.Name, nsgID, err)
	}
	d.metrics.restores.WithLabelValues(string(audit.ResultSuccess)).Inc()
	log.Info("restored missing policy rules")
	for _, rule := range r.Rules {
		d.emit(ctx, restoreEvent(done, nsgID, r, rule, audit.ResultSuccess, nil))
	}
	return len(r.Rules), nil
}

// close deletes one rule (unless dry-running) and reports it. It returns
// an error matching azure.ErrRuleGone, and reports nothing, when the rule
// was gone by the time of the write.
func (d *Daemon) close(ctx context.Context, nsgID string, c Close) error {
	if d.dryRun {
		log := d.log.With("nsg_id", nsgID, "rule", c.Rule.Name, "reason", string(c.Reason))
		if c.Detail != "" {
			log = log.With("detail", c.Detail)
		}
		log.Info("would close rule (dry run)")
		d.metrics.closes.WithLabelValues(string(c.Reason), string(audit.ResultDryRun)).Inc()
		d.emit(ctx, closeEvent(d.now(), nsgID, c, audit.ResultDryRun, nil))
		return nil
	}
	// A delete that has started is finished even if ctx ends meanwhile:
	// SIGTERM must not leave the outcome of a close unknown. Its ARM
	// writes are named in the event (see emit).
	ctx, _ = azure.WithWriteRecorder(ctx)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.delTimeout)
	defer cancel()
	start, began := d.now(), time.Now()
	err := d.end(dctx, nsgID, c, true)
	if err == nil {
		d.observeCloseWrite(time.Since(began))
	}
	return d.reportClose(ctx, nsgID, c, err, start, d.now())
}

// recordRevoked keeps the record of a grant whose rule someone else deleted
// before its expiry (unless dry-running), and reports it.
func (d *Daemon) recordRevoked(ctx context.Context, nsgID string, rv Revoked) error {
	g := rv.Grant
	log := d.log.With("nsg_id", nsgID, "rule", g.Rule.Name, "grant_id", g.ID, "policy", g.Policy)
	e := closeEvent(d.now(), nsgID, Close{Rule: g.Rule, Grant: &g}, audit.ResultSuccess, nil)
	e.Action, e.Kind = audit.ActionDrift, "revoked"
	e.Reason = "revoked: the grant's rule was deleted by someone else before its expiry; its record is kept so that the same request is never opened again"
	if d.dryRun {
		log.Info("would record a revoked grant (dry run)")
		e.Result = audit.ResultDryRun
		d.emit(ctx, e)
		return nil
	}
	ctx, _ = azure.WithWriteRecorder(ctx)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.delTimeout)
	defer cancel()
	if err := d.end(dctx, nsgID, Close{Rule: g.Rule, Grant: &g, End: rv.End}, false); err != nil {
		d.metrics.errors.WithLabelValues(opDelete).Inc()
		log.Error("recording a revoked grant failed", "error", err)
		return fmt.Errorf("record revoked grant %s on %s: %w", g.ID, nsgID, err)
	}
	log.Info("recorded a revoked grant")
	d.emit(ctx, e)
	return nil
}

// end deletes a closed rule. A grant whose policy is on the NSG also
// leaves its record, in the same NSG write (see jit.EndGrant); with
// require, that write is made only if the rule is still there when it is
// assembled, and otherwise end returns azure.ErrRuleGone.
func (d *Daemon) end(ctx context.Context, nsgID string, c Close, require bool) error {
	if c.Grant == nil || !c.End.Record {
		return d.rules.DeleteRule(ctx, nsgID, c.Rule.Name)
	}
	changes := endChanges(c, require)
	_, err := d.rules.ApplyRuleChanges(ctx, nsgID, changes)
	switch {
	case errors.Is(err, azure.ErrNotFound):
		return nil
	case errors.Is(err, azure.ErrForbidden) && errors.Is(err, azure.ErrNotWritten):
		// A role without networkSecurityGroups/write still closes: the
		// rule goes, without its record.
		d.log.Warn("no permission to write the NSG: closing the grant without keeping its record",
			"nsg_id", nsgID, "rule", c.Rule.Name, "error", err)
		return d.rules.DeleteRule(ctx, nsgID, c.Rule.Name)
	}
	return err
}

// record folds one NSG's result into the loop state: when it is due next,
// its active grants, and its findings (reporting the new ones). It returns
// the number of new findings.
func (d *Daemon) record(ctx context.Context, r nsgResult) int {
	defer d.updateGauges()
	now := d.now()
	switch {
	case r.gone:
		d.statusMu.Lock()
		delete(d.reads, r.nsgID)
		d.statusMu.Unlock()
		delete(d.due, r.nsgID)
		delete(d.active, r.nsgID)
		delete(d.reported, r.nsgID)
		delete(d.seen, r.nsgID)
		delete(d.open, r.nsgID)
		delete(d.verified, r.nsgID)
		delete(d.verifyFP, r.nsgID)
		delete(d.verifies.latest, r.nsgID)
		return 0
	case !r.listed:
		if len(r.errs) > 0 {
			d.due[r.nsgID] = now.Add(d.retryDelay)
			d.statusMu.Lock()
			var rd NSGRead
			if e := d.reads[r.nsgID]; e != nil {
				rd = e.read
			}
			rd.ID, rd.Err = r.nsgID, errors.Join(r.errs...).Error()
			d.reads[r.nsgID] = &statusEntry{read: rd}
			d.statusMu.Unlock()
		}
		return 0
	}
	d.statusMu.Lock()
	d.reads[r.nsgID] = &statusEntry{read: r.read}
	d.statusMu.Unlock()
	d.active[r.nsgID] = len(r.plan.Active)
	if len(r.plan.Active) > 0 {
		d.open[r.nsgID] = r.plan.Active
	} else {
		delete(d.open, r.nsgID)
	}
	if len(r.plan.LastSeen) > 0 {
		d.seen[r.nsgID] = r.plan.LastSeen
	} else {
		delete(d.seen, r.nsgID)
	}
	// Its next grants to expire are due when their close write starts: the
	// close lead before their expiry.
	next, _ := closeStart(r.plan.Active, d.leads.lead())
	// Every NSG is watched, not only those holding a policy at this read:
	// the NSG's first policy and a short grant under it may be written
	// right after this read, and must not wait for the next full resync.
	// With an inventory, the watch asks it instead (discovery.go).
	if d.watch > 0 && d.inventory == nil {
		if watch := now.Add(d.watch); next.IsZero() || watch.Before(next) {
			next = watch
		}
	}
	if r.failed {
		if retry := now.Add(d.retryDelay); next.IsZero() || retry.Before(next) {
			next = retry
		}
	}
	if next.IsZero() {
		delete(d.due, r.nsgID)
	} else {
		d.due[r.nsgID] = next
	}

	// A verification's mismatches stand until the NSG is verified again.
	findings := slices.Concat(r.plan.Findings, d.verified[r.nsgID])
	current := make(map[string]Finding, len(findings))
	seen := d.reported[r.nsgID]
	added := 0
	for _, f := range findings {
		k := f.key()
		current[k] = f
		if _, old := seen[k]; old {
			continue
		}
		added++
		d.metrics.findings.WithLabelValues(string(f.Kind)).Inc()
		d.log.Warn("finding", "nsg_id", r.nsgID, "kind", string(f.Kind), "policy", f.Policy, "rule", f.RuleName, "detail", f.Detail)
		d.emit(ctx, findingEvent(now, r.nsgID, f))
	}
	d.reported[r.nsgID] = current
	return added
}

// updateGauges recomputes the gauges from the loop state.
func (d *Daemon) updateGauges() {
	total := 0
	for _, n := range d.active {
		total += n
	}
	d.metrics.activeGrants.Set(float64(total))
	byPolicy := map[string]int{}
	for _, ps := range d.seen {
		for name := range ps {
			byPolicy[name] += 0
		}
	}
	var next time.Time
	for _, gs := range d.open {
		for _, g := range gs {
			byPolicy[g.Policy]++
			if next.IsZero() || g.ExpiresAt.Before(next) {
				next = g.ExpiresAt
			}
		}
	}
	d.metrics.activeByPolicy.Reset()
	for name, n := range byPolicy {
		d.metrics.activeByPolicy.WithLabelValues(name).Set(float64(n))
	}
	if next.IsZero() {
		d.metrics.nextExpiry.Set(0)
	} else {
		d.metrics.nextExpiry.Set(float64(next.UnixNano()) / 1e9)
	}
	byKind := map[FindingKind]int{}
	for _, k := range findingKinds {
		byKind[k] = 0
	}
	for _, fs := range d.reported {
		for _, f := range fs {
			byKind[f.Kind]++
		}
	}
	for k, n := range byKind {
		d.metrics.openFindings.WithLabelValues(string(k)).Set(float64(n))
	}
}

// emit sends an audit event. Enforcement never waits on auditing beyond
// the sink's own write, and a failed write is logged and counted, not
// fatal: the rule is closed either way.
//
// An event made under a context that records ARM writes
// (azure.WithWriteRecorder) names the writes made for it.
func (d *Daemon) emit(ctx context.Context, e audit.Event) {
	if e.ARMWrites == nil {
		e.ARMWrites = azure.RecordedWrites(ctx, e.NSGIDs...)
	}
	d.statusMu.Lock()
	if len(d.events) >= d.recentEvents {
		d.events = slices.Delete(d.events, 0, len(d.events)-d.recentEvents+1)
	}
	d.events = append(d.events, e)
	d.statusMu.Unlock()
	if err := d.audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		d.metrics.errors.WithLabelValues(opAudit).Inc()
		d.log.Error("writing audit event failed", "error", err, "action", string(e.Action), "rule", e.RuleName)
	}
}

// Ready reports whether a full resync has succeeded recently: within three
// intervals, so that one slow or failed pass does not flap readiness.
func (d *Daemon) Ready() (bool, string) {
	last := d.lastSuccess.Load()
	if last == 0 {
		return false, "no full resync has succeeded yet"
	}
	age := d.now().Sub(time.Unix(0, last))
	if age > 3*d.interval {
		return false, fmt.Sprintf("the last successful full resync was %s ago", age.Truncate(time.Second))
	}
	return true, "ok"
}

func closeEvent(at time.Time, nsgID string, c Close, result audit.Result, err error) audit.Event {
	e := audit.Event{
		Time: at, Action: audit.ActionClose, Result: result, Actor: Actor,
		NSGIDs: []string{nsgID}, RuleName: c.Rule.Name, Ports: portStrings(c.Rule),
		Source: strings.Join(c.Rule.SourcePrefixes, ","), Reason: string(c.Reason),
	}
	if c.Reason != ReasonExpired {
		// Fail-closed closes carry their reason as the kind too, so a log
		// pipeline can group them with findings.
		e.Kind = string(c.Reason)
		e.Reason = string(c.Reason) + ": " + c.Detail
	}
	if c.Grant != nil {
		e.GrantID, e.Policy, e.Requester, e.ExpiresAt = c.Grant.ID, c.Grant.Policy, c.Grant.Requester, c.Grant.ExpiresAt
	}
	if err != nil {
		e.Reason += " (delete failed: " + err.Error() + ")"
	}
	return e
}

func restoreEvent(at time.Time, nsgID string, r Restore, rule jit.SecurityRule, result audit.Result, err error) audit.Event {
	e := audit.Event{
		Time: at, Action: audit.ActionRestore, Result: result, Actor: Actor,
		NSGIDs: []string{nsgID}, Policy: r.Policy.Name, RuleName: rule.Name, Ports: portStrings(rule),
		Reason: fmt.Sprintf("missing rule restored from %s (%s)", restoreSourceText(r.Source), r.Problem),
	}
	if err != nil {
		e.Reason += " (write failed: " + err.Error() + ")"
	}
	return e
}

func findingEvent(at time.Time, nsgID string, f Finding) audit.Event {
	return audit.Event{
		Time: at, Action: audit.ActionFind, Result: audit.ResultSuccess, Actor: Actor,
		NSGIDs: []string{nsgID}, Policy: f.Policy, RuleName: f.RuleName, Kind: string(f.Kind), Reason: f.Detail,
	}
}

// portStrings formats a rule's ports as the audit schema wants: "22/Tcp".
func portStrings(r jit.SecurityRule) []string {
	out := make([]string, len(r.DestinationPorts))
	for i, p := range r.DestinationPorts {
		out[i] = p + "/" + string(r.Protocol)
	}
	return out
}

// union returns a's elements followed by b's that are not in a.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// EndsSessions reports whether a policy on the NSG ends live sessions at
// expiry: only then is its flushConnection read.
func EndsSessions(view jit.NSGView) bool {
	for _, dp := range view.Policies {
		if dp.Problem == "" && dp.Policy.EndSessions {
			return true
		}
	}
	return false
}

// adminRules returns the security admin rules in effect for an NSG that
// holds a policy, read at most once per full resync interval (they change
// rarely, and are another request per virtual network). A failed read
// keeps the last rules read and is logged: it does not stop the NSG's
// reconcile (the permission it needs is optional).
func (d *Daemon) adminRules(ctx context.Context, nsgID string) []jit.AdminRule {
	key := strings.ToLower(nsgID)
	d.adminMu.Lock()
	cached, ok := d.admin[key]
	d.adminMu.Unlock()
	if ok && d.now().Sub(cached.readAt) < d.interval {
		return cached.rules
	}
	read, err := d.rules.AdminRules(ctx, nsgID)
	if err != nil {
		if ctx.Err() == nil {
			d.metrics.errors.WithLabelValues(opAdmin).Inc()
			d.log.Warn("reading the security admin rules in effect failed", "nsg_id", nsgID, "error", err)
		}
		return cached.rules
	}
	d.adminMu.Lock()
	if d.admin == nil {
		d.admin = map[string]adminRead{}
	}
	d.admin[key] = adminRead{rules: read, readAt: d.now()}
	d.adminMu.Unlock()
	return read
}

// adminRead is an NSG's security admin rules as last read.
type adminRead struct {
	rules  []jit.AdminRule
	readAt time.Time
}
