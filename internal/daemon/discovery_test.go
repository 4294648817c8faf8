package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeInventory answers as Resource Graph would over a fakeAzure: the NSGs
// holding JIT rules, each with a digest of its rules. stale freezes what it
// reports of an NSG (Resource Graph's lag); hidden leaves NSGs out.
type fakeInventory struct {
	*fakeAzure
	imu     sync.Mutex
	stale   map[string]string // by NSG: the digest reported, whatever the rules
	hidden  map[string]bool
	err     error
	queries int
	wait    time.Duration // the quota wait each answer reports
}

func newFakeInventory(az *fakeAzure) *fakeInventory {
	return &fakeInventory{fakeAzure: az, stale: map[string]string{}, hidden: map[string]bool{}}
}

func (f *fakeInventory) JITNSGs(context.Context) ([]InventoryNSG, InventoryStats, error) {
	f.imu.Lock()
	defer f.imu.Unlock()
	f.queries++
	if f.err != nil {
		return nil, InventoryStats{Queries: 1, QuotaWait: f.wait}, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []InventoryNSG
	for id, rules := range f.nsgs {
		if f.hidden[id] || !holdsJITRules(rules) {
			continue
		}
		dg := fmt.Sprint(rules)
		if s, ok := f.stale[id]; ok {
			dg = s
		}
		out = append(out, InventoryNSG{ID: id, Digest: dg})
	}
	slices.SortFunc(out, func(a, b InventoryNSG) int { return compareStrings(a.ID, b.ID) })
	return out, InventoryStats{Queries: 1, QuotaWait: f.wait}, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f *fakeInventory) hide(id string, on bool) {
	f.imu.Lock()
	defer f.imu.Unlock()
	f.hidden[id] = on
}

// readCounter counts the ARM reads of each NSG since the last call.
type readCounter struct {
	az   *fakeAzure
	last map[string]int
}

func (c *readCounter) since() map[string]int {
	out := map[string]int{}
	for _, id := range []string{"nsg-a", "nsg-b", "nsg-c"} {
		n := len(c.az.readTimes(id))
		if d := n - c.last[id]; d > 0 {
			out[id] = d
		}
		c.last[id] = n
	}
	return out
}

func newInventoryDaemon(t *testing.T, inv *fakeInventory, o Options) *Daemon {
	t.Helper()
	o.Rules, o.Scope, o.Audit = inv.fakeAzure, inv, &recorder{}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if d.inventory == nil {
		t.Fatal("a Scope that is an Inventory did not switch the daemon to inventory discovery")
	}
	return d
}

// Only NSGs holding JIT rules are read, and after the first read only
// those whose digest changed: an NSG edited out of band is read (and its
// missing deny-all rule restored), an unchanged one is not.
func TestInventoryReadsOnlyChangedNSGs(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", web.Rules()...)
	az.put("nsg-b", web.Rules()...)
	az.put("nsg-c") // no JIT rule: never read
	inv := newFakeInventory(az)
	d := newInventoryDaemon(t, inv, Options{})
	reads := &readCounter{az: az, last: map[string]int{}}

	sum := d.Pass(t.Context())
	if err := sum.Err(); err != nil || sum.NSGs != 2 {
		t.Fatalf("first pass: %+v", sum)
	}
	if got := reads.since(); len(got) != 2 || got["nsg-a"] != 1 || got["nsg-b"] != 1 {
		t.Fatalf("first pass read %v, want nsg-a and nsg-b once each", got)
	}
	d.watchInventory(t.Context())
	if got := reads.since(); len(got) != 0 {
		t.Fatalf("a watch with nothing changed read %v", got)
	}

	inv.wait = 1500 * time.Millisecond // this answer and the next waited for the quota
	az.remove("nsg-a", "jit-web-deny-tcp")
	d.watchInventory(t.Context())
	if got := reads.since(); len(got) != 1 || got["nsg-a"] != 1 {
		t.Fatalf("after an edit of nsg-a the watch read %v, want nsg-a once", got)
	}
	if w := az.written(); len(w) != 1 || w[0].nsg != "nsg-a" {
		t.Fatalf("writes %+v, want the deny-all rule restored on nsg-a", w)
	}
	// jitd's own write changed the digest: one more read, then quiet.
	d.watchInventory(t.Context())
	inv.wait = 0
	reads.since()
	d.watchInventory(t.Context())
	if got := reads.since(); len(got) != 0 {
		t.Fatalf("a watch with nothing changed read %v", got)
	}
	if inv.queries != 5 {
		t.Errorf("the inventory was asked %d times, want once per pass or watch (5)", inv.queries)
	}
	// The metrics say the same: 5 queries, 2 quota waits of 1.5 s, and 4
	// NSGs read on the inventory's word (2 at first, nsg-a twice after).
	if q := testutil.ToFloat64(d.metrics.inventoryQueries); q != 5 {
		t.Errorf("jitd_inventory_queries_total = %v, want 5", q)
	}
	if r := testutil.ToFloat64(d.metrics.inventoryReads); r != 4 {
		t.Errorf("jitd_inventory_reads_total = %v, want 4", r)
	}
	if w := testutil.ToFloat64(d.metrics.inventoryWait); w != 3 {
		t.Errorf("jitd_inventory_quota_wait_seconds_total = %v, want 3 (two answers that waited 1.5 s)", w)
	}
}

// An NSG that drops out of the inventory's answer is read through ARM: kept
// while it still holds JIT rules (the inventory lags), dropped once ARM says
// they are gone.
func TestInventoryReadsNSGsThatDropOut(t *testing.T) {
	web := testPolicy(t, "web", 100)
	az := newFakeAzure()
	az.put("nsg-a", web.Rules()...)
	az.put("nsg-b", web.Rules()...)
	inv := newFakeInventory(az)
	d := newInventoryDaemon(t, inv, Options{})
	reads := &readCounter{az: az, last: map[string]int{}}
	d.Pass(t.Context())
	reads.since()

	inv.hide("nsg-b", true) // the inventory lags or misses it
	az.remove("nsg-b", "jit-web-deny-tcp")
	d.watchInventory(t.Context())
	if got := reads.since(); len(got) != 1 || got["nsg-b"] != 1 {
		t.Fatalf("the watch read %v, want nsg-b (dropped out) once", got)
	}
	if w := az.written(); len(w) != 1 || w[0].nsg != "nsg-b" {
		t.Fatalf("writes %+v, want nsg-b's deny-all rule restored though the inventory misses it", w)
	}
	if !slices.Contains(d.nsgs, "nsg-b") {
		t.Fatalf("nsg-b, still holding JIT rules, left the scope: %v", d.nsgs)
	}

	// Its JIT rules go for good: read once more, then out of scope.
	var names []string
	for _, r := range az.rulesOf("nsg-b") {
		names = append(names, r.Name)
	}
	az.remove("nsg-b", names...)
	d.watchInventory(t.Context())
	if got := reads.since(); got["nsg-b"] != 1 {
		t.Fatalf("the watch read %v, want nsg-b once", got)
	}
	if slices.Contains(d.nsgs, "nsg-b") {
		t.Fatalf("nsg-b, without JIT rules and out of the inventory, is still in scope: %v", d.nsgs)
	}
	d.watchInventory(t.Context())
	if got := reads.since(); len(got) != 0 {
		t.Fatalf("a quiet watch read %v", got)
	}
}

// An inventory that fails keeps every NSG known and reads nothing that
// merely dropped out; a full resync reads the NSGs holding grants whatever
// the inventory says.
func TestInventoryFailureAndGrantHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "g", time.Now().Add(time.Hour)))...)
		az.put("nsg-b", web.Rules()...)
		inv := newFakeInventory(az)
		d := newInventoryDaemon(t, inv, Options{})
		reads := &readCounter{az: az, last: map[string]int{}}
		d.Pass(t.Context())
		reads.since()

		d.Pass(t.Context())
		if got := reads.since(); len(got) != 1 || got["nsg-a"] != 1 {
			t.Fatalf("a full resync read %v, want only nsg-a (it holds a grant)", got)
		}

		inv.imu.Lock()
		inv.err = errors.New("resource graph unavailable")
		inv.imu.Unlock()
		d.watchInventory(t.Context())
		if got := reads.since(); len(got) != 0 {
			t.Fatalf("a failed inventory read %v", got)
		}
		if !slices.Equal(d.nsgs, []string{"nsg-a", "nsg-b"}) {
			t.Fatalf("after a failed inventory the scope is %v, want both NSGs kept", d.nsgs)
		}
	})
}

// Under Run, a grant's expiry closes it on time through ARM whatever the
// inventory reports (here: a digest frozen since before the grant was
// written, as a lagging Resource Graph would), because the timer comes from
// the daemon's own ARM read; and a grant written later is seen at the
// first watch after the inventory shows it.
func TestInventoryRunClosesAtExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		web := testPolicy(t, "web", 100)
		az := newFakeAzure()
		exp := start.Add(90 * time.Second).Truncate(time.Second)
		az.put("nsg-a", append(web.Rules(), grantRule(t, web, "soon", exp))...)
		az.put("nsg-b", web.Rules()...)
		inv := newFakeInventory(az)
		d := newInventoryDaemon(t, inv, Options{Interval: time.Hour, Watch: 30 * time.Second})
		stop := startRun(t, d)
		defer stop()
		synctest.Wait()

		// Frozen from now on: the inventory keeps reporting nsg-a as it was.
		inv.imu.Lock()
		inv.mu.Lock()
		inv.stale["nsg-a"] = fmt.Sprint(inv.nsgs["nsg-a"])
		inv.mu.Unlock()
		inv.imu.Unlock()
		time.Sleep(time.Until(exp))
		synctest.Wait()
		got := az.deleted()
		if len(got) != 1 || got[0].rule != "jit-web-g-soon" || !got[0].at.Equal(exp) {
			t.Fatalf("deletions = %+v, want jit-web-g-soon at %v", got, exp)
		}

		// A grant written on nsg-b: the next watch sees it changed, reads it,
		// and its timer closes it at expiry.
		exp2 := time.Now().Add(2 * time.Minute).Truncate(time.Second)
		az.put("nsg-b", grantRule(t, web, "later", exp2))
		time.Sleep(time.Until(exp2))
		synctest.Wait()
		got = az.deleted()
		if len(got) != 2 || got[1].rule != "jit-web-g-later" || got[1].nsg != "nsg-b" || !got[1].at.Equal(exp2) {
			t.Fatalf("deletions = %+v, want jit-web-g-later on nsg-b at %v", got, exp2)
		}
	})
}
