package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
)

// Discovery modes (--discovery).
const (
	// discoveryARM lists every NSG of the scope through ARM at each full
	// resync and reads each through ARM at each watch: exact and fresh,
	// and one ARM read per NSG per watch interval.
	discoveryARM = "arm"
	// discoveryGraph asks Azure Resource Graph which NSGs hold JIT rules
	// and which of them changed (azure.JITQuery), and reads through ARM
	// only those (see daemon.Inventory): a few queries per watch for a
	// whole tenant, at the price of Resource Graph's lag for grants written
	// between watches.
	discoveryGraph = "resource-graph"
)

// subscriptionLister lists the subscriptions the credential can see;
// *azure.Client is one.
type subscriptionLister interface {
	ListSubscriptions(ctx context.Context) ([]string, error)
}

// subscriptionsTTL is how long a listing of every subscription
// (--all-subscriptions) is used before it is listed again: subscriptions
// come and go rarely, and the watch asks for them every Watch.
const subscriptionsTTL = 5 * time.Minute

// subscriptionCache is the last listing of every subscription.
type subscriptionCache struct {
	mu  sync.Mutex
	ids []string
	at  time.Time
}

// wholeSubscriptions are the subscriptions watched whole: --subscription's,
// or with --all-subscriptions every subscription the credential can see.
// A failed listing keeps the last one, with the error.
func (s *scope) wholeSubscriptions(ctx context.Context) ([]string, error) {
	if !s.all {
		return s.subscriptions, nil
	}
	if s.lister == nil {
		return nil, errors.New("--all-subscriptions: no client to list subscriptions with")
	}
	c := &s.listed
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids != nil && time.Since(c.at) < subscriptionsTTL {
		return c.ids, nil
	}
	ids, err := s.lister.ListSubscriptions(ctx)
	switch {
	case err != nil && c.ids != nil:
		return c.ids, fmt.Errorf("listing the subscriptions jitd can see (keeping the %d listed before): %w", len(c.ids), err)
	case err != nil:
		return nil, fmt.Errorf("listing the subscriptions jitd can see: %w", err)
	}
	c.ids, c.at = ids, time.Now()
	return ids, nil
}

// inventoryClient is what Resource Graph discovery needs of *azure.Client.
type inventoryClient interface {
	JITNSGs(ctx context.Context, subscriptions []string) ([]azure.GraphNSG, azure.GraphStats, error)
}

// graphScope is the scope discovered through Azure Resource Graph: it
// implements daemon.Inventory. The subscriptions queried are those of every
// part of the scope; the answer is filtered to the scope (resource groups,
// single NSGs) here, so that jitd sends one query shape only.
type graphScope struct {
	*scope
	graph inventoryClient
	log   *slog.Logger
}

var _ daemon.Inventory = (*graphScope)(nil)

// querySubscriptions are the subscriptions to ask Resource Graph about.
func (g *graphScope) querySubscriptions(ctx context.Context) ([]string, error) {
	subs, err := g.wholeSubscriptions(ctx)
	subs = slices.Clone(subs)
	for _, rg := range g.resourceGroups {
		subs = append(subs, rg.subscription)
	}
	for _, id := range g.nsgs {
		if p, perr := azure.ParseNSGID(id); perr == nil {
			subs = append(subs, p.SubscriptionID)
		}
	}
	return subs, err
}

// covers reports whether an NSG is in the scope.
func (g *graphScope) covers(id string, whole map[string]bool) bool {
	p, err := azure.ParseNSGID(id)
	if err != nil {
		return false
	}
	if whole[strings.ToLower(p.SubscriptionID)] {
		return true
	}
	for _, rg := range g.resourceGroups {
		if strings.EqualFold(rg.subscription, p.SubscriptionID) && strings.EqualFold(rg.name, p.ResourceGroup) {
			return true
		}
	}
	return slices.ContainsFunc(g.nsgs, func(n string) bool { return strings.EqualFold(n, id) })
}

// JITNSGs implements daemon.Inventory.
func (g *graphScope) JITNSGs(ctx context.Context) ([]daemon.InventoryNSG, daemon.InventoryStats, error) {
	subs, listErr := g.querySubscriptions(ctx)
	whole := map[string]bool{}
	wholeSubs, _ := g.wholeSubscriptions(ctx)
	for _, s := range wholeSubs {
		whole[strings.ToLower(s)] = true
	}
	found, stats, err := g.graph.JITNSGs(ctx, subs)
	if g.log != nil {
		g.log.Debug("asked Azure Resource Graph", "subscriptions", len(subs), "batches", stats.Batches, "queries", stats.Queries,
			"nsgs_with_jit_rules", len(found), "quota_wait", stats.Waited.String())
	}
	out := make([]daemon.InventoryNSG, 0, len(found))
	for _, n := range found {
		if g.covers(n.ID, whole) {
			out = append(out, daemon.InventoryNSG{ID: n.ID, Digest: n.Digest})
		}
	}
	return out, daemon.InventoryStats{Queries: stats.Queries, QuotaWait: stats.Waited}, errors.Join(listErr, err)
}

// NSGIDs implements daemon.Scope: the NSGs in scope holding JIT rules.
func (g *graphScope) NSGIDs(ctx context.Context) ([]string, error) {
	ns, _, err := g.JITNSGs(ctx)
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return ids, err
}

// check makes sure jitd can read the scope through Resource Graph before
// it starts: the subscriptions given exist for the credential, the resource
// groups and NSGs given can be read, and one query succeeds.
func (g *graphScope) check(ctx context.Context) error {
	var errs []error
	if len(g.subscriptions) > 0 || g.all {
		var visible []string
		var err error
		if g.all {
			visible, err = g.wholeSubscriptions(ctx) // listed once for the check and the first pass
		} else {
			visible, err = g.lister.ListSubscriptions(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot list the subscriptions jitd can see: %w", err))
		}
		for _, sub := range g.subscriptions {
			if err == nil && !slices.ContainsFunc(visible, func(v string) bool { return strings.EqualFold(v, sub) }) {
				errs = append(errs, fmt.Errorf("cannot see --subscription %s: it is not among the subscriptions the credential can read (jitd needs Reader, or Microsoft.Network/networkSecurityGroups/read, there)", sub))
			}
		}
		if err == nil && g.all && len(visible) == 0 {
			errs = append(errs, errors.New("--all-subscriptions: the credential can see no subscription"))
		}
	}
	if len(g.resourceGroups)+len(g.nsgs) > 0 {
		part := &scope{client: g.client, resourceGroups: g.resourceGroups, nsgs: g.nsgs}
		if err := part.check(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if _, _, err := g.JITNSGs(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot query Azure Resource Graph: %w (jitd needs read access to the NSGs; Resource Graph answers only for what the credential can read)", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("refusing to start on a scope it cannot read:\n%w", errors.Join(errs...))
	}
	return nil
}
