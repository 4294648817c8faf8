package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// gatedLister lists one NSG per subscription, but only once want listings
// are under way at the same time: a scope that lists its parts one after
// another never gets an answer (synctest reports the deadlock).
type gatedLister struct {
	want int

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	released bool
}

func newGatedLister(want int) *gatedLister {
	g := &gatedLister{want: want}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gatedLister) ListNSGIDs(_ context.Context, sub, rg string) ([]string, error) {
	g.mu.Lock()
	g.inflight++
	if g.inflight >= g.want {
		g.released = true
		g.cond.Broadcast()
	}
	for !g.released {
		g.cond.Wait()
	}
	g.inflight--
	g.mu.Unlock()
	if sub == "denied" {
		return nil, errors.New("AuthorizationFailed")
	}
	if rg == "" {
		rg = "rg"
	}
	return []string{fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/nsg", sub, rg)}, nil
}

func (g *gatedLister) ListRules(context.Context, string) ([]jit.SecurityRule, error) { return nil, nil }

// TestScopeListsSubscriptionsConcurrently: at a thousand subscriptions,
// listing them one after another kept jitd from starting within its
// start-up limit. The parts of a scope are listed listConcurrency at a
// time, and still reported in order, each error naming its part.
func TestScopeListsSubscriptionsConcurrently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var subs []string
		for i := range 2 * listConcurrency {
			subs = append(subs, fmt.Sprintf("s%02d", i))
		}
		subs = append(subs, "denied")
		s := &scope{client: newGatedLister(listConcurrency), subscriptions: subs, resourceGroups: []resourceGroupRef{{"s00", "extra"}}}

		ids, err := s.NSGIDs(t.Context())
		if len(ids) != 2*listConcurrency+1 {
			t.Fatalf("NSGIDs = %d ids, want one per readable subscription and one for the resource group: %v", len(ids), ids)
		}
		for i, id := range ids[:2*listConcurrency] {
			if !strings.Contains(id, "/subscriptions/"+subs[i]+"/") {
				t.Errorf("id %d is %s, want subscription %s's: the order of the scope's parts", i, id, subs[i])
			}
		}
		if !strings.Contains(ids[len(ids)-1], "/resourceGroups/extra/") {
			t.Errorf("last id %s, want the resource group's", ids[len(ids)-1])
		}
		if err == nil || !strings.Contains(err.Error(), "subscription denied") {
			t.Errorf("NSGIDs error = %v, want one naming subscription denied", err)
		}
		if err := s.check(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot read --subscription denied") {
			t.Errorf("check = %v, want a refusal naming --subscription denied", err)
		}
	})
}
