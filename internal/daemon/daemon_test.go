package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// fakeAzure is an in-memory Azure for the loop: NSGs with rules, and a log
// of deletions stamped with the (bubble's) time.
type fakeAzure struct {
	mu        sync.Mutex
	nsgs      map[string][]jit.SecurityRule
	listErr   map[string]error // by NSG: the next list fails with this
	deletions []deletion
	lists     int
	readAt    map[string][]time.Time // by NSG: when each list was served
	// onDelete, when set, runs inside DeleteRule before the rule goes.
	onDelete func(ctx context.Context)
	writes   []write
	writeErr error // when set, every ApplyRuleChanges fails with it
	// beforeWrite, when set, runs inside ApplyRuleChanges before the NSG
	// is read for the write (another writer's change, say).
	beforeWrite func()
	flush       map[string]bool // by NSG: flushConnection
	admin       map[string][]jit.AdminRule
	adminReads  int
}

func (f *fakeAzure) AdminRules(_ context.Context, nsg string) ([]jit.AdminRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adminReads++
	return f.admin[nsg], nil
}

func (f *fakeAzure) FlushConnection(_ context.Context, nsg string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flush[nsg], nil
}

// write is one successful whole-NSG write.
type write struct {
	nsg  string
	puts []string
	at   time.Time
}

type deletion struct {
	nsg, rule string
	at        time.Time
}

func newFakeAzure() *fakeAzure {
	return &fakeAzure{nsgs: map[string][]jit.SecurityRule{}, listErr: map[string]error{}, readAt: map[string][]time.Time{},
		flush: map[string]bool{}}
}

func (f *fakeAzure) put(nsg string, rules ...jit.SecurityRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsgs[nsg] = append(f.nsgs[nsg], rules...)
}

func (f *fakeAzure) ListRules(_ context.Context, nsg string) ([]jit.SecurityRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	f.readAt[nsg] = append(f.readAt[nsg], time.Now())
	if err := f.listErr[nsg]; err != nil {
		delete(f.listErr, nsg)
		return nil, err
	}
	rules, ok := f.nsgs[nsg]
	if !ok {
		return nil, &azure.Error{Kind: azure.KindNotFound, Op: "list", ResourceID: nsg}
	}
	return slices.Clone(rules), nil
}

func (f *fakeAzure) DeleteRule(ctx context.Context, nsg, name string) error {
	if f.onDelete != nil {
		f.onDelete(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsgs[nsg] = slices.DeleteFunc(f.nsgs[nsg], func(r jit.SecurityRule) bool { return r.Name == name })
	f.deletions = append(f.deletions, deletion{nsg, name, time.Now()})
	return nil
}

// ApplyRuleChanges applies the changes as the azure client does: in order,
// each Choose seeing the rules as they are just before it, all or nothing.
// A write that deletes rules (jitd ending a grant and keeping its record)
// runs onDelete and records each deletion, as DeleteRule does.
func (f *fakeAzure) ApplyRuleChanges(ctx context.Context, nsg string, changes []azure.RuleChange) ([]jit.SecurityRule, error) {
	f.mu.Lock()
	hook := f.beforeWrite
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if f.onDelete != nil && slices.ContainsFunc(changes, func(ch azure.RuleChange) bool { return ch.Delete != "" }) {
		f.onDelete(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writeErr != nil {
		return nil, f.writeErr
	}
	rules, ok := f.nsgs[nsg]
	if !ok {
		return nil, &azure.Error{Kind: azure.KindNotFound, Op: "write", ResourceID: nsg}
	}
	next := slices.Clone(rules)
	var written []jit.SecurityRule
	var names []string
	var deleted []deletion
	for _, ch := range changes {
		switch {
		case ch.Put != nil || ch.Choose != nil:
			r := ch.Put
			if r == nil {
				chosen, err := ch.Choose(slices.Clone(next))
				if err != nil {
					return nil, err
				}
				r = &chosen
			}
			i := slices.IndexFunc(next, func(x jit.SecurityRule) bool { return strings.EqualFold(x.Name, r.Name) })
			if i >= 0 {
				next[i] = *r
			} else {
				next = append(next, *r)
			}
			written = append(written, *r)
			names = append(names, r.Name)
		case ch.Delete != "":
			if slices.ContainsFunc(next, func(x jit.SecurityRule) bool { return strings.EqualFold(x.Name, ch.Delete) }) {
				deleted = append(deleted, deletion{nsg, ch.Delete, time.Now()})
			}
			next = slices.DeleteFunc(next, func(x jit.SecurityRule) bool { return strings.EqualFold(x.Name, ch.Delete) })
		case ch.Require != "":
			if !slices.ContainsFunc(next, func(x jit.SecurityRule) bool { return strings.EqualFold(x.Name, ch.Require) }) {
				return nil, fmt.Errorf("%s: %w: %w", ch.Require, azure.ErrRuleGone, azure.ErrNotWritten)
			}
		}
	}
	f.deletions = append(f.deletions, deleted...)
	f.nsgs[nsg] = next
	f.writes = append(f.writes, write{nsg, names, time.Now()})
	return written, nil
}

func (f *fakeAzure) written() []write {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes)
}

// remove deletes rules by name, as someone outside jitd would.
func (f *fakeAzure) remove(nsg string, names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsgs[nsg] = slices.DeleteFunc(f.nsgs[nsg], func(r jit.SecurityRule) bool { return slices.Contains(names, r.Name) })
}

func (f *fakeAzure) rulesOf(nsg string) []jit.SecurityRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nsgs[nsg])
}

func (f *fakeAzure) NSGIDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.nsgs))
	for id := range f.nsgs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (f *fakeAzure) readTimes(nsg string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.readAt[nsg])
}

func (f *fakeAzure) deleted() []deletion {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deletions)
}

// recorder is an audit sink that keeps events.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Emit(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func newTestDaemon(t *testing.T, az *fakeAzure, o Options) (*Daemon, *recorder) {
	t.Helper()
	rec := &recorder{}
	o.Rules, o.Scope, o.Audit = az, az, rec
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, rec
}

// startRun runs the daemon in the bubble and returns a func that stops it
// and waits for Run to return.
func startRun(t *testing.T, d *Daemon) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}
}

func TestRunClosesAtExpiryByTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		soon, later := start.Add(90*time.Second).Truncate(time.Second), start.Add(4*time.Minute).Truncate(time.Second)
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "soon", soon))...)
		az.put("nsg-b", append(web.Rules(), grantRule(t, web, "later", later))...)
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour})
		stop := startRun(t, d)
		defer stop()

		synctest.Wait()
		if got := az.deleted(); len(got) != 0 {
			t.Fatalf("deleted before any expiry: %+v", got)
		}
		time.Sleep(time.Until(soon))
		synctest.Wait()
		got := az.deleted()
		if len(got) != 1 || got[0].rule != "jit-web-g-soon" || !got[0].at.Equal(soon) {
			t.Fatalf("deletions at the first expiry = %+v, want jit-web-g-soon at %v", got, soon)
		}
		time.Sleep(time.Until(later))
		synctest.Wait()
		got = az.deleted()
		if len(got) != 2 || got[1].rule != "jit-web-g-later" || got[1].nsg != "nsg-b" || !got[1].at.Equal(later) {
			t.Fatalf("deletions at the second expiry = %+v, want jit-web-g-later on nsg-b at %v", got, later)
		}

		events := rec.all()
		if len(events) != 2 {
			t.Fatalf("audit events = %+v, want two closes", events)
		}
		e := events[0]
		if e.Action != audit.ActionClose || e.Result != audit.ResultSuccess || e.Actor != Actor || e.GrantID != "soon" ||
			e.Policy != "web" || e.Requester != "alice@example.com" || e.Reason != "expired" || !e.ExpiresAt.Equal(soon) ||
			!slices.Equal(e.NSGIDs, []string{"nsg-a"}) || !slices.Equal(e.Ports, []string{"22/Tcp"}) || e.Source != "203.0.113.7" {
			t.Errorf("close event = %+v", e)
		}
	})
}

// A grant written after the daemon read its NSG is still closed at its
// expiry, not at the next resync: NSGs holding a policy are watched every
// Watch (30s), shorter than the shortest grant (1m).
func TestRunWatchesProtectedNSGsForNewGrants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-a", web.Rules()...)
		d, _ := newTestDaemon(t, az, Options{Interval: 5 * time.Minute})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		// The shortest grant there is, written right after the daemon's read.
		exp := start.Add(jit.MinGrantDuration)
		az.put("nsg-a", grantRule(t, web, "new", exp))
		time.Sleep(time.Until(exp) - time.Nanosecond)
		synctest.Wait()
		if got := az.deleted(); len(got) != 0 {
			t.Fatalf("deleted before expiry: %+v", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := az.deleted()
		if len(got) != 1 || got[0].rule != "jit-web-g-new" || !got[0].at.Equal(exp) {
			t.Fatalf("deletions = %+v, want jit-web-g-new at its expiry %v", got, exp)
		}
	})
}

// An NSG that held no policy at the last read is watched all the same: its
// first policy and the shortest grant there is, written right after the
// read, are closed at the grant's expiry, not at the next full resync.
func TestRunWatchesNSGsWithoutAPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-a")
		d, _ := newTestDaemon(t, az, Options{Interval: 5 * time.Minute})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		exp := start.Add(jit.MinGrantDuration)
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "new", exp))...)
		time.Sleep(time.Until(exp) - time.Nanosecond)
		synctest.Wait()
		if got := az.deleted(); len(got) != 0 {
			t.Fatalf("deleted before expiry: %+v", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := az.deleted()
		if len(got) != 1 || got[0].rule != "jit-web-g-new" || !got[0].at.Equal(exp) {
			t.Fatalf("deletions = %+v, want jit-web-g-new at its expiry %v", got, exp)
		}
	})
}

// TestRunReadCost counts the rule lists of an hour with the default
// intervals, for NSGs with and without a policy: every NSG is read at
// least once per watch interval, and the count per NSG per hour is the
// figure BENCHMARKS.md quotes.
func TestRunReadCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-empty")
		az.put("nsg-policy", web.Rules()...)
		az.put("nsg-grant", append(web.Rules(), grantRule(t, web, "g1", start.Add(2*time.Hour)))...)
		d, _ := newTestDaemon(t, az, Options{})
		stop := startRun(t, d)
		time.Sleep(time.Hour)
		synctest.Wait()
		stop()

		watch := 30 * time.Second // the default
		for _, nsg := range []string{"nsg-empty", "nsg-policy", "nsg-grant"} {
			reads := az.readTimes(nsg)
			last := start
			for _, at := range append(reads, start.Add(time.Hour)) {
				if gap := at.Sub(last); gap > watch {
					t.Errorf("%s: %s without a read (from %v), longer than the watch interval %s", nsg, gap, last.Sub(start), watch)
				}
				last = at
			}
			t.Logf("%s: %d rule lists in one hour (defaults: --interval 5m, --watch-interval 30s)", nsg, len(reads))
		}
	})
}

func TestRunRetriesAFailedNSGBeforeTheResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		exp := start.Add(30 * time.Second).Truncate(time.Second)
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g1", exp))...)
		d, _ := newTestDaemon(t, az, Options{Interval: time.Hour, RetryDelay: 10 * time.Second})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		az.mu.Lock()
		az.listErr["nsg-a"] = &azure.Error{Kind: azure.KindThrottled, Op: "list"}
		az.mu.Unlock()
		time.Sleep(time.Until(exp))
		synctest.Wait()
		if got := az.deleted(); len(got) != 0 {
			t.Fatalf("deleted although the list failed: %+v", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := az.deleted(); len(got) != 1 || !got[0].at.Equal(exp.Add(10*time.Second)) {
			t.Fatalf("deletions = %+v, want one at the retry %v", got, exp.Add(10*time.Second))
		}
	})
}

func TestRunFinishesTheInFlightDeleteOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		exp := start.Add(-time.Second).Truncate(time.Second)
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g1", exp), grantRule(t, web, "g22", exp))...)
		entered, release := make(chan struct{}), make(chan struct{})
		var first sync.Once
		var deleteCtxErr error
		az.onDelete = func(ctx context.Context) {
			first.Do(func() {
				close(entered)
				<-release
				deleteCtxErr = ctx.Err()
			})
		}
		d, _ := newTestDaemon(t, az, Options{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()

		<-entered
		cancel() // SIGTERM while the first delete is under way
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if deleteCtxErr != nil {
			t.Errorf("the in-flight delete saw its context end: %v", deleteCtxErr)
		}
		if got := az.deleted(); len(got) != 1 || got[0].rule != "jit-web-g-g1" {
			t.Fatalf("deletions = %+v, want only the in-flight one finished", got)
		}
	})
}

func TestPassReportsFindingsOnceAndDryRunDeletesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		bypass := jit.SecurityRule{Name: "allow-ssh", Priority: 90, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
		az.put("nsg-a", append(web.Rules(), bypass, grantRule(t, web, "old", time.Now().Add(-time.Minute)))...)
		d, rec := newTestDaemon(t, az, Options{DryRun: true})

		for pass := 1; pass <= 2; pass++ {
			sum := d.Pass(t.Context())
			if sum.Err() != nil || sum.Closed != 1 || sum.NSGs != 1 {
				t.Fatalf("pass %d: %+v", pass, sum)
			}
			if wantNew := map[int]int{1: 1, 2: 0}[pass]; sum.Findings != wantNew {
				t.Errorf("pass %d: new findings = %d, want %d", pass, sum.Findings, wantNew)
			}
		}
		if got := az.deleted(); len(got) != 0 {
			t.Fatalf("dry run deleted %+v", got)
		}
		var kinds []string
		for _, e := range rec.all() {
			kinds = append(kinds, string(e.Action)+"/"+string(e.Result)+"/"+e.Kind+"/"+e.RuleName)
		}
		want := []string{"close/dry_run//jit-web-g-old", "find/success/bypass/allow-ssh", "close/dry_run//jit-web-g-old"}
		if !slices.Equal(kinds, want) {
			t.Errorf("audit events = %q, want %q", kinds, want)
		}
	})
}

func TestPassReportsErrorsAndKeepsGoing(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", web.Rules()...)
	az.put("nsg-b", append(web.Rules(), grantRule(t, web, "old", time.Now().Add(-time.Minute)))...)
	az.listErr["nsg-a"] = errors.New("connection reset")
	d, _ := newTestDaemon(t, az, Options{})
	sum := d.Pass(t.Context())
	if sum.Err() == nil || !strings.Contains(sum.Err().Error(), "nsg-a") {
		t.Errorf("Err = %v, want the failure of nsg-a", sum.Err())
	}
	if sum.Closed != 1 {
		t.Errorf("closed = %d, want nsg-b's expired grant closed despite nsg-a failing", sum.Closed)
	}
	if ok, _ := d.Ready(); ok {
		t.Error("ready after a pass with errors and none before")
	}
}

func TestHandler(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", append(web.Rules(), grantRule(t, web, "old", time.Now().Add(-time.Minute)), grantRule(t, web, "new", time.Now().Add(time.Hour)))...)
	d, _ := newTestDaemon(t, az, Options{})
	h := d.Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}

	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no full resync") {
		t.Errorf("/readyz before the first pass = %d %q", code, body)
	}
	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatal(sum.Err())
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a pass = %d", code)
	}
	code, metrics := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"jitd_active_grants 1",
		`jitd_closes_total{reason="expired",result="success"} 1`,
		"jitd_expiry_to_close_lag_seconds_count 1",
		`jitd_reconcile_duration_seconds_count{scope="full"} 1`,
		"jitd_watched_nsgs 1",
		`jitd_errors_total{op="list"} 0`,
		`jitd_errors_total{op="restore"} 0`,
		`jitd_restores_total{result="success"} 0`,
		`jitd_open_findings{kind="standing_access"} 0`,
		`jitd_findings_total{kind="policy_missing"} 0`,
		"jitd_last_successful_pass_timestamp_seconds ",
		"go_goroutines ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A deny-all rule deleted out of band is written back within a watch
// interval, from the policy as last seen, audited; the grant under the
// policy stays open; nothing else on the NSG changes.
func TestRunRestoresADeletedDenyAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		foreign := jit.SecurityRule{Name: "allow-vpn-below", Priority: 300, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
			SourcePrefixes: []string{"203.0.113.0/24"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
		grant := grantRule(t, web, "g1", start.Add(time.Hour))
		az.put("nsg-a", append(web.Rules(), grant, foreign)...)
		before := az.rulesOf("nsg-a")
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		time.Sleep(10 * time.Second)
		deletedAt := time.Now()
		az.remove("nsg-a", "jit-web-deny-tcp")
		time.Sleep(30 * time.Second)
		synctest.Wait()

		w := az.written()
		if len(w) != 1 || !slices.Equal(w[0].puts, []string{"jit-web-deny-tcp"}) || w[0].at.Sub(deletedAt) > 30*time.Second {
			t.Fatalf("writes = %+v, want jit-web-deny-tcp restored within the watch interval of its deletion at %v", w, deletedAt)
		}
		after := az.rulesOf("nsg-a")
		byName := func(a, b jit.SecurityRule) int { return strings.Compare(a.Name, b.Name) }
		slices.SortFunc(before, byName)
		slices.SortFunc(after, byName)
		if !slicesEqualRules(before, after) {
			t.Errorf("rules after the restore:\n%+v\nwant as before the deletion:\n%+v", after, before)
		}
		if got := az.deleted(); len(got) != 0 {
			t.Errorf("deleted %+v; the grant must stay open", got)
		}
		var got []string
		for _, e := range rec.all() {
			got = append(got, string(e.Action)+"/"+string(e.Result)+"/"+e.Kind+"/"+cmpOr(e.RuleName, e.Policy))
		}
		// Acting comes first, then the findings of that read (as for closes).
		want := []string{"restore/success//jit-web-deny-tcp", "find/success/missing_deny/web"}
		if !slices.Equal(got, want) {
			t.Errorf("audit events = %q, want %q", got, want)
		}

		// Deleted again later: restored again, reported again.
		az.remove("nsg-a", "jit-web-deny-tcp")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if w := az.written(); len(w) != 2 {
			t.Errorf("writes = %+v, want a second restore", w)
		}
	})
}

func slicesEqualRules(a, b []jit.SecurityRule) bool {
	return slices.EqualFunc(a, b, func(x, y jit.SecurityRule) bool {
		return x.Name == y.Name && x.Priority == y.Priority && x.Access == y.Access && x.Description == y.Description &&
			slices.Equal(x.SourcePrefixes, y.SourcePrefixes) && slices.Equal(x.DestinationPrefixes, y.DestinationPrefixes) &&
			slices.Equal(x.DestinationPorts, y.DestinationPorts)
	})
}

func TestPassRestoreDryRunAndNoRestoreWriteNothing(t *testing.T) {
	web := testPolicy(t, "web", 100)
	for _, o := range []Options{{DryRun: true}, {NoRestore: true}} {
		az := newFakeAzure()
		az.put("nsg-a", web.Rules()...)
		d, rec := newTestDaemon(t, az, o)
		d.Pass(t.Context())
		az.remove("nsg-a", "jit-web-deny-tcp")
		sum := d.Pass(t.Context())
		if w := az.written(); len(w) != 0 {
			t.Errorf("%+v: wrote %+v", o, w)
		}
		var got []string
		for _, e := range rec.all() {
			got = append(got, string(e.Action)+"/"+string(e.Result)+"/"+e.Kind)
		}
		want := []string{"find/success/missing_deny"}
		if o.DryRun {
			want = append([]string{"restore/dry_run/"}, want...)
		}
		if !slices.Equal(got, want) || sum.Restored != map[bool]int{true: 1, false: 0}[o.DryRun] {
			t.Errorf("%+v: audit events = %q, restored %d; want %q", o, got, sum.Restored, want)
		}
	}
}

// When the NSG changes between jitd's read and its write, the restore
// writes nothing and the NSG is read again soon.
func TestRunRestoreChecksTheNSGAtTheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		two := twoGroupPolicy(t)
		az := newFakeAzure()
		az.put("nsg-a", two.Rules()...)
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour, RetryDelay: 10 * time.Second})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		az.remove("nsg-a", "jit-web-deny-tcp")
		first := true
		az.mu.Lock()
		az.beforeWrite = func() {
			if first {
				first = false
				az.remove("nsg-a", "jit-web-guard-udp") // another writer, meanwhile
			}
		}
		az.mu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if w := az.written(); len(w) != 0 {
			t.Fatalf("wrote %+v over a change made after the read", w)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		w := az.written()
		if len(w) != 1 || !slices.Equal(w[0].puts, []string{"jit-web-guard-udp", "jit-web-deny-tcp"}) {
			t.Fatalf("writes = %+v, want both rules restored at the retry", w)
		}
		for _, e := range rec.all() {
			if e.Action == audit.ActionRestore && e.Result != audit.ResultSuccess {
				t.Errorf("audit event %+v for a restore that did not write", e)
			}
		}
	})
}

func TestRunRestoreFailureIsAuditedAndRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-a", web.Rules()...)
		az.writeErr = &azure.Error{Kind: azure.KindForbidden, Op: "write", ResourceID: "nsg-a"} // before Run: no race
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour, RetryDelay: 10 * time.Second})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()
		az.remove("nsg-a", "jit-web-deny-tcp")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		az.mu.Lock()
		az.writeErr = nil
		az.mu.Unlock()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		var got []string
		for _, e := range rec.all() {
			got = append(got, string(e.Action)+"/"+string(e.Result))
		}
		want := []string{"restore/failure", "find/success", "restore/success"}
		if !slices.Equal(got, want) {
			t.Errorf("audit events = %q, want %q", got, want)
		}
		if w := az.written(); len(w) != 1 {
			t.Errorf("writes = %+v, want one after the failure", w)
		}
	})
}

// A policy whose every rule vanished is reported once, not rewritten.
func TestRunReportsAVanishedPolicyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-b", web.Rules()...)
		d, rec := newTestDaemon(t, az, Options{Interval: time.Hour})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()
		az.remove("nsg-b", web.GuardAndDenyNames()...)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		var got []string
		for _, e := range rec.all() {
			got = append(got, string(e.Action)+"/"+e.Kind+"/"+e.Policy)
		}
		if want := []string{"find/policy_missing/web"}; !slices.Equal(got, want) {
			t.Errorf("audit events = %q, want %q", got, want)
		}
		if w := az.written(); len(w) != 0 {
			t.Errorf("wrote %+v", w)
		}
	})
}

// Standing access is a finding like a bypass: audited once, counted, left
// alone.
func TestPassReportsStandingAccess(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	vpn := jit.SecurityRule{Name: "vpn-ssh", Priority: 150, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"203.0.113.0/25"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	az.put("nsg-b", append(web.Rules(), vpn)...)
	d, rec := newTestDaemon(t, az, Options{})
	for range 2 {
		if sum := d.Pass(t.Context()); sum.Err() != nil {
			t.Fatal(sum.Err())
		}
	}
	events := rec.all()
	if len(events) != 1 || events[0].Action != audit.ActionFind || events[0].Kind != "standing_access" || events[0].RuleName != "vpn-ssh" ||
		events[0].Policy != "web" || !strings.Contains(events[0].Reason, "203.0.113.0/25") {
		t.Fatalf("audit events = %+v, want one standing_access finding for vpn-ssh", events)
	}
	if len(az.deleted()) != 0 || len(az.written()) != 0 {
		t.Errorf("changed the NSG: deleted %+v, wrote %+v", az.deleted(), az.written())
	}
	rec2 := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec2, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`jitd_findings_total{kind="standing_access"} 1`, `jitd_open_findings{kind="standing_access"} 1`} {
		if !strings.Contains(rec2.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A grant closed at expiry leaves its record on the NSG, so that the same
// request applied again (after its workspace lost its state) is refused;
// a grant whose policy is gone leaves none.
func TestPassKeepsARecordOfEndedGrants(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	exp := time.Now().Add(-time.Minute).Truncate(time.Second)
	az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g1", exp))...)
	az.put("nsg-b", grantRule(t, web, "g2", exp)) // an orphan: no policy here
	d, _ := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 2 {
		t.Fatalf("pass: %+v", sum)
	}
	view := jit.ReadNSG(az.rulesOf("nsg-a"))
	if len(view.Grants) != 0 || len(view.Ended) != 1 || view.Ended[0].ID != "g1" || !view.Ended[0].ExpiresAt.Equal(exp) {
		t.Fatalf("nsg-a after the close: grants %v, records %v", view.Grants, view.Ended)
	}
	if d := jit.DecideOpen("g1", time.Hour, []jit.GrantSighting{jit.SightGrant("nsg-a", view, "web", "g1")}, time.Now()); d.Action != jit.OpenRefuse {
		t.Errorf("the same request applied again: %+v, want refused", d)
	}
	if rules := az.rulesOf("nsg-b"); len(rules) != 0 {
		t.Errorf("nsg-b after closing an orphan: %v, want nothing", rules)
	}
}

// A grant whose rule someone else deletes before its expiry is revoked:
// jitd, having seen it open, keeps its record, so the same request applied
// again is refused.
func TestPassRecordsAGrantRevokedOutOfBand(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	grant := grantRule(t, web, "g1", time.Now().Add(time.Hour).Truncate(time.Second))
	az.put("nsg-a", append(web.Rules(), grant)...)
	d, rec := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.ActiveGrants != 1 {
		t.Fatalf("first pass: %+v", sum)
	}
	az.remove("nsg-a", grant.Name) // a portal click
	if sum := d.Pass(t.Context()); sum.Err() != nil {
		t.Fatalf("second pass: %+v", sum.Err())
	}
	view := jit.ReadNSG(az.rulesOf("nsg-a"))
	if len(view.Ended) != 1 || view.Ended[0].ID != "g1" {
		t.Fatalf("records after the revocation: %v", view.Ended)
	}
	if !slices.ContainsFunc(rec.all(), func(e audit.Event) bool {
		return e.Action == audit.ActionDrift && e.Kind == "revoked" && e.GrantID == "g1"
	}) {
		t.Errorf("no audit event for the revocation: %+v", rec.all())
	}
	// Recorded once: the next pass changes nothing.
	writes := len(az.written())
	d.Pass(t.Context())
	if len(az.written()) != writes {
		t.Errorf("a third pass wrote again")
	}
}

// The policy is rewritten as another version of itself between jitd's read
// and its write, with the same rule still missing: the old version's rule
// is not written into the new version.
func TestRunRestoreDoesNotMixPolicyVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		two := twoGroupPolicy(t)
		longer, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
			AllowedSources: []string{"203.0.113.0/24"}, BandStart: 100, BandEnd: 199,
			Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}, {Number: 53, Protocol: "Udp", MaxDuration: "2h"}}})
		if err != nil {
			t.Fatal(err)
		}
		az := newFakeAzure()
		az.put("nsg-b", two.Rules()...)
		d, _ := newTestDaemon(t, az, Options{Interval: time.Hour, RetryDelay: 10 * time.Second})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		az.remove("nsg-b", "jit-web-guard-udp")
		first := true
		az.mu.Lock()
		az.beforeWrite = func() {
			if first {
				first = false
				az.mu.Lock()
				az.nsgs["nsg-b"] = slices.DeleteFunc(longer.Rules(), func(r jit.SecurityRule) bool { return r.Name == "jit-web-guard-udp" })
				az.mu.Unlock()
			}
		}
		az.mu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if w := az.written(); len(w) != 0 {
			t.Fatalf("wrote %+v into another version of the policy", w)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		dp := jit.ReadNSG(az.rulesOf("nsg-b")).Policies["web"]
		if dp.Problem != "" || !dp.Policy.Equal(longer) {
			t.Errorf("policy after the retry = %+v, problem %q; want the new version restored", dp.Policy, dp.Problem)
		}
	})
}

// A role without networkSecurityGroups/write still closes grants: the NSG
// write that would keep the record is refused, and the rule is deleted.
func TestPassClosesWithoutWritePermission(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g1", time.Now().Add(-time.Minute).Truncate(time.Second)))...)
	az.writeErr = fmt.Errorf("%w: %w", azure.ErrNotWritten, &azure.Error{Kind: azure.KindForbidden, Op: "write", ResourceID: "nsg-a"})
	d, _ := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 1 {
		t.Fatalf("pass: %+v", sum)
	}
	if view := jit.ReadNSG(az.rulesOf("nsg-a")); len(view.Grants) != 0 {
		t.Fatalf("grant still open: %v", view.Grants)
	}
}

// A grant's rule edited in place after jitd saw it (its source moved to
// another allowed address) is not the grant that was reviewed: closed.
// Found by the lifecycle suite (seed 2).
func TestPassClosesAGrantTamperedSinceLastSeen(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	grant := grantRule(t, web, "g1", time.Now().Add(time.Hour).Truncate(time.Second))
	az.put("nsg-a", append(web.Rules(), grant)...)
	d, rec := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.ActiveGrants != 1 || sum.Closed != 0 {
		t.Fatalf("first pass: %+v", sum)
	}
	tampered := grant
	tampered.SourcePrefixes = []string{"203.0.113.99"} // inside the allowed sources
	tampered = jit.SealGrantRule(tampered)             // even sealed again: jitd saw it before
	az.remove("nsg-a", grant.Name)
	az.put("nsg-a", tampered)
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 1 {
		t.Fatalf("second pass: %+v", sum)
	}
	if view := jit.ReadNSG(az.rulesOf("nsg-a")); len(view.Grants) != 0 {
		t.Fatalf("tampered grant still open: %v", view.Grants)
	}
	if !slices.ContainsFunc(rec.all(), func(e audit.Event) bool {
		return e.Action == audit.ActionClose && e.Kind == string(ReasonTampered) && strings.Contains(e.Reason, "203.0.113.99")
	}) {
		t.Errorf("no audited close for the tampered grant: %+v", rec.all())
	}
}

// A grant's rule edited in place before jitd ever read it, on the only NSG
// that holds it, is not the grant that was reviewed: its seal shows it on
// the first read. jitd closes it and records the grant as ended, so the
// same request applied again is refused. Found by the lifecycle soak
// (seeds 1795996623346657025 step 98, 1795996623346657019 step 22).
func TestPassClosesAGrantEditedBeforeItsFirstRead(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	grant := grantRule(t, web, "g1", time.Now().Add(time.Hour).Truncate(time.Second))
	edited := grant
	edited.SourcePrefixes = []string{"203.0.113.99"} // inside the allowed sources
	az.put("nsg-a", append(web.Rules(), edited)...)
	d, rec := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 1 || sum.ActiveGrants != 0 {
		t.Fatalf("first pass: %+v, want the edited rule closed", sum)
	}
	view := jit.ReadNSG(az.rulesOf("nsg-a"))
	if len(view.Grants) != 0 || len(view.Malformed) != 0 {
		t.Fatalf("edited rule still there: %+v", view)
	}
	if len(view.Ended) != 1 || view.Ended[0].ID != "g1" {
		t.Errorf("records = %+v, want grant g1 recorded as ended", view.Ended)
	}
	if !slices.ContainsFunc(rec.all(), func(e audit.Event) bool {
		return e.Action == audit.ActionClose && e.Kind == string(ReasonTampered) && e.GrantID == "g1" && strings.Contains(e.Reason, "203.0.113.99")
	}) {
		t.Errorf("no audited close of grant g1 as tampered: %+v", rec.all())
	}
}

// A grant's copy on one NSG edited before jitd read that NSG again is
// judged against its copy on another NSG: the policy moves a grant's rule
// unchanged, so a copy that differs was edited. Found by the lifecycle
// suite (seed 5: a tamper right after the policy gained the NSG).
func TestPassClosesAGrantWhoseCopiesDisagree(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	grant := grantRule(t, web, "g1", time.Now().Add(time.Hour).Truncate(time.Second))
	az.put("nsg-a", append(web.Rules(), grant)...)
	az.put("nsg-b", web.Rules()...)
	d, _ := newTestDaemon(t, az, Options{})
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.ActiveGrants != 1 {
		t.Fatalf("first pass: %+v", sum)
	}
	moved := grant
	moved.SourcePrefixes = []string{"203.0.113.99"} // moved to nsg-b and edited there before jitd read it
	az.put("nsg-b", jit.SealGrantRule(moved))       // even sealed again: its copy on nsg-a tells

	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 1 || sum.ActiveGrants != 1 {
		t.Fatalf("second pass: %+v, want the edited copy closed and the other kept", sum)
	}
	if view := jit.ReadNSG(az.rulesOf("nsg-b")); len(view.Grants) != 0 {
		t.Fatalf("edited copy still open: %v", view.Grants)
	}
}

// Lifecycle seed 22: a policy on one NSG only is updated, and its deny-all
// rule is deleted before jitd reads the update. The version jitd remembers
// does not fit, no other NSG holds the policy, and the guard alone must
// carry what the deny-all needs: it does, so the ports close again.
func TestPassRestoresADeletedDenyAllFromItsGuard(t *testing.T) {
	v1, v2 := webPorts(t, 22), webPorts(t, 22, 3389)
	az := newFakeAzure()
	az.put("nsg-a", v1.Rules()...)
	d, _ := newTestDaemon(t, az, Options{})
	d.Pass(t.Context())
	az.remove("nsg-a", v1.GuardAndDenyNames()...)
	az.put("nsg-a", v2.Rules()...)
	az.remove("nsg-a", "jit-web-deny-tcp")
	d.Pass(t.Context())
	if dp := jit.ReadNSG(az.rulesOf("nsg-a")).Policies["web"]; dp.Problem != "" || !dp.Policy.Equal(v2) {
		t.Fatalf("nsg-a after the pass: %+v, problem %q; want v2 restored", dp.Policy, dp.Problem)
	}
}

// A guard deleted on one NSG right after the policy was updated, before
// jitd read that NSG again, is restored from the new version jitd has seen
// intact on another NSG. Found by the lifecycle suite (seed 23).
func TestPassRestoresFromThePolicySeenOnAnotherNSG(t *testing.T) {
	v1, v2 := webPorts(t, 22), webPorts(t, 22, 3389)
	az := newFakeAzure()
	az.put("nsg-a", v1.Rules()...)
	az.put("nsg-b", v1.Rules()...)
	d, _ := newTestDaemon(t, az, Options{})
	d.Pass(t.Context())
	// The policy is updated on both; on nsg-b its guard is then deleted.
	for _, nsg := range []string{"nsg-a", "nsg-b"} {
		az.remove(nsg, v1.GuardAndDenyNames()...)
		az.put(nsg, v2.Rules()...)
	}
	az.remove("nsg-b", "jit-web-guard-tcp")
	d.Pass(t.Context()) // reads v2 intact on nsg-a; nsg-b fits neither v1 nor what remains
	d.Pass(t.Context())
	if dp := jit.ReadNSG(az.rulesOf("nsg-b")).Policies["web"]; dp.Problem != "" || !dp.Policy.Equal(v2) {
		t.Fatalf("nsg-b after the passes: %+v, problem %q; want v2 restored", dp.Policy, dp.Problem)
	}
}

// webPorts is policy "web" protecting the given TCP ports of 10.0.1.4.
func webPorts(t *testing.T, ports ...int64) jit.Policy {
	t.Helper()
	var in []jit.PortInput
	for _, p := range ports {
		in = append(in, jit.PortInput{Number: p, Protocol: "Tcp", MaxDuration: "1h"})
	}
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, Ports: in, BandStart: 100, BandEnd: 199})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Two jitd replicas (or jitd and the grant's workspace) may both set out to
// close the same expired grant. The one whose write finds the rule gone
// writes nothing and reports no close: there is one audited close per
// close made. Found by the two-replica measurement (BENCHMARKS.md §10).
func TestPassDoesNotClaimACloseMadeByAnotherWriter(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	grant := grantRule(t, web, "g1", time.Now().Add(-time.Minute).Truncate(time.Second))
	az.put("nsg-a", append(web.Rules(), grant)...)
	d, rec := newTestDaemon(t, az, Options{})
	other := jit.ReadNSG(az.rulesOf("nsg-a")).Grants[0]
	az.mu.Lock()
	az.beforeWrite = func() {
		// The other replica's close lands between this pass's read and
		// its write: the rule goes, the record stays.
		az.mu.Lock()
		defer az.mu.Unlock()
		az.beforeWrite = nil
		rec, _ := jit.EndedRule(other, az.nsgs["nsg-a"])
		az.nsgs["nsg-a"] = append(slices.DeleteFunc(az.nsgs["nsg-a"], func(r jit.SecurityRule) bool { return r.Name == grant.Name }), rec)
	}
	az.mu.Unlock()
	if sum := d.Pass(t.Context()); sum.Err() != nil || sum.Closed != 0 {
		t.Fatalf("pass: %+v, want no close claimed and no error", sum)
	}
	if w := az.written(); len(w) != 0 {
		t.Errorf("wrote %+v over a rule already closed", w)
	}
	for _, e := range rec.all() {
		if e.Action == audit.ActionClose {
			t.Errorf("audited a close this jitd did not make: %+v", e)
		}
	}
	if view := jit.ReadNSG(az.rulesOf("nsg-a")); len(view.Grants) != 0 || len(view.Ended) != 1 {
		t.Errorf("NSG after the pass: %d grants, %d records; want 0 and 1", len(view.Grants), len(view.Ended))
	}
}
