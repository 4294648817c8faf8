package daemon

import (
	"context"
	"strings"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Inventory is a Scope that can also say, in a few requests for a whole
// tenant, which NSGs in scope hold JIT rules and whether their rules
// changed: Azure Resource Graph (see azure.JITQuery). A Scope that
// implements it switches the daemon to inventory discovery:
//
//   - a full resync (Interval) and a watch (Watch) each ask the inventory,
//     instead of listing and reading every NSG through ARM;
//   - an NSG is read through ARM only when it is new to the daemon, when its
//     digest differs from the one the inventory reported when the daemon
//     last read it, when it drops out of the inventory's answer (its JIT
//     rules may be gone, or the inventory may lag: ARM says which), and, at
//     a full resync, when it held grants at its last read;
//   - every NSG is still read through ARM at each of its grants' expiries
//     (the timer), as with ARM discovery.
//
// Resource Graph is eventually consistent (seconds to minutes behind ARM),
// and the daemon stays safe with that: a grant's close never waits on the
// inventory, because its expiry is known from the daemon's own ARM read and
// the close re-reads the NSG through ARM first; a tampered or deleted JIT
// rule is seen within one inventory lag plus one Watch; a known NSG missing
// from an answer is read through ARM rather than forgotten; an inventory
// that fails keeps every known NSG and its timers. What it gives up is a
// grant written between two watches being seen within Watch: it is seen
// within the inventory's lag plus Watch, so a grant shorter than that may
// be closed late by up to the lag. ARM discovery (the default) keeps that
// bound.
type Inventory interface {
	Scope
	// JITNSGs lists the NSGs in scope that hold JIT rules, each with a
	// digest of its rules that changes whenever they do, and what asking
	// cost. On a partial failure it returns what it could list with the
	// error.
	JITNSGs(ctx context.Context) ([]InventoryNSG, InventoryStats, error)
}

// InventoryStats is what one inventory answer cost: the queries sent (for
// Resource Graph, pages) and the time spent waiting for a quota to reset.
type InventoryStats struct {
	Queries   int
	QuotaWait time.Duration
}

// InventoryNSG is an NSG as the inventory reports it.
type InventoryNSG struct {
	ID     string
	Digest string
}

// inventoryState is the loop's memory of the inventory.
type inventoryState struct {
	inv Inventory
	// digest is, by lower-case NSG id, the digest the inventory reported
	// when the daemon last read the NSG through ARM successfully.
	digest map[string]string
	// pending are the digests of the NSGs being read now; found the NSGs
	// of the inventory's last answer (lower-case ids); complete whether
	// that answer was.
	pending  map[string]string
	found    map[string]bool
	complete bool
}

func newInventoryState(s Scope) *inventoryState {
	inv, ok := s.(Inventory)
	if !ok {
		return nil
	}
	return &inventoryState{inv: inv, digest: map[string]string{}}
}

// discover returns the NSGs in scope and those of them to read through ARM
// now. With ARM discovery they are the same: every NSG of the scope. With
// an inventory (full: a full resync, else a watch), see Inventory. On an
// error the NSGs known before stay in scope.
func (d *Daemon) discover(ctx context.Context, full bool) (scope, read []string, err error) {
	if d.inventory == nil {
		ids, err := d.scope.NSGIDs(ctx)
		if err != nil {
			// Keep watching what we knew: a transient listing failure must
			// not drop NSGs whose grants are about to expire.
			ids = union(ids, d.nsgs)
		}
		return ids, ids, err
	}
	st := d.inventory
	found, stats, err := st.inv.JITNSGs(ctx)
	d.metrics.observeInventory(stats)
	defer func() { d.metrics.inventoryReads.Add(float64(len(read))) }()
	st.pending = map[string]string{}
	st.found = make(map[string]bool, len(found))
	st.complete = err == nil
	marked := map[string]bool{}
	add := func(id string) {
		if k := strings.ToLower(id); !marked[k] {
			marked[k] = true
			read = append(read, id)
		}
	}
	for _, n := range found {
		k := strings.ToLower(n.ID)
		if st.found[k] {
			continue
		}
		st.found[k] = true
		scope = append(scope, n.ID)
		if dg, ok := st.digest[k]; !ok || dg != n.Digest {
			st.pending[k] = n.Digest
			add(n.ID)
		}
	}
	for _, id := range d.nsgs {
		if st.found[strings.ToLower(id)] {
			continue
		}
		scope = append(scope, id)
		if st.complete {
			// Dropped out of the answer: ARM says whether its JIT rules
			// are gone or the inventory lags.
			add(id)
		}
	}
	if full {
		for _, id := range scope {
			if d.active[id] > 0 {
				add(id)
			}
		}
	}
	inScope := make(map[string]bool, len(scope))
	for _, id := range scope {
		inScope[strings.ToLower(id)] = true
	}
	for k := range st.digest {
		if !inScope[k] {
			delete(st.digest, k)
		}
	}
	return scope, read, err
}

// afterInventoryRead records the digests of the NSGs just read and drops
// from the scope those that left the inventory's answer and, read through
// ARM, hold no JIT rule any more. A no-op with ARM discovery.
func (d *Daemon) afterInventoryRead(results []nsgResult) {
	st := d.inventory
	if st == nil {
		return
	}
	drop := map[string]bool{}
	for _, r := range results {
		k := strings.ToLower(r.nsgID)
		switch {
		case r.gone:
			delete(st.digest, k)
			drop[r.nsgID] = true
		case r.listed:
			if dg, ok := st.pending[k]; ok {
				st.digest[k] = dg
			}
			if st.complete && !st.found[k] && !holdsJITRules(r.read.Rules) {
				delete(st.digest, k)
				drop[r.nsgID] = true
			}
		}
	}
	st.pending = nil
	if len(drop) == 0 {
		return
	}
	keep := make([]string, 0, len(d.nsgs))
	for _, id := range d.nsgs {
		if !drop[id] {
			keep = append(keep, id)
		}
	}
	d.forget(keep)
	d.nsgs = keep
	d.setInScope(len(keep))
}

// watchInventory is one watch with an inventory: ask it, read through ARM
// what it says changed (or dropped out), reconcile those.
func (d *Daemon) watchInventory(ctx context.Context) {
	start := d.now()
	ids, read, err := d.discover(ctx, false)
	if err != nil {
		d.metrics.errors.WithLabelValues(opDiscover).Inc()
		d.log.Error("asking the inventory for the network security groups holding JIT rules failed", "error", err)
	}
	d.forget(ids)
	d.nsgs = ids
	d.setInScope(len(ids))
	results := d.reconcile(ctx, read)
	for _, r := range results {
		d.record(ctx, r)
	}
	d.afterInventoryRead(results)
	d.metrics.observeDuration("watch", d.now().Sub(start))
	d.log.Debug("inventory watch done", "nsgs", len(d.nsgs), "read", len(read), "duration", d.now().Sub(start).String())
}

// setInScope updates the NSG gauge and the status page's count.
func (d *Daemon) setInScope(n int) {
	d.metrics.nsgs.Set(float64(n))
	d.statusMu.Lock()
	d.inScope = n
	d.statusMu.Unlock()
}

// holdsJITRules reports whether any rule is in the jit- namespace.
func holdsJITRules(rules []jit.SecurityRule) bool {
	for _, r := range rules {
		if strings.HasPrefix(r.Name, jit.RuleNamePrefix) {
			return true
		}
	}
	return false
}
