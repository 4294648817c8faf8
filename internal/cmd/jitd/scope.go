package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// scopeClient is what the scope needs of *azure.Client.
type scopeClient interface {
	ListNSGIDs(ctx context.Context, subscriptionID, resourceGroup string) ([]string, error)
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
}

// resourceGroupRef is a resource group of a subscription.
type resourceGroupRef struct{ subscription, name string }

func (r resourceGroupRef) String() string { return r.subscription + "/" + r.name }

// scope is what jitd watches: whole subscriptions, resource groups and
// single NSGs. It implements daemon.Scope.
type scope struct {
	client         scopeClient
	subscriptions  []string
	resourceGroups []resourceGroupRef
	nsgs           []string
	// all covers every subscription the credential can see, listed again
	// at most every subscriptionsTTL (graphscope.go) through lister.
	all    bool
	lister subscriptionLister
	listed subscriptionCache
}

// newScope builds the scope from the flags. With no scope flag it is the
// default subscription, as for the provider.
func newScope(o options, defaultSubscription string) (*scope, error) {
	s := &scope{subscriptions: o.subscriptions, nsgs: o.nsgs, all: o.allSubscriptions}
	if s.all && len(o.subscriptions)+len(o.resourceGroups)+len(o.nsgs) > 0 {
		return nil, errors.New("--all-subscriptions covers every subscription jitd can see: give it alone, without --subscription, --resource-group or --nsg")
	}
	for _, v := range o.resourceGroups {
		sub, name, ok := strings.Cut(v, "/")
		if !ok {
			sub, name = defaultSubscription, v
			if sub == "" {
				return nil, fmt.Errorf("--resource-group %q names no subscription and there is no default one: write <subscription id>/%s or set %s", v, v, azure.EnvSubscriptionID)
			}
		}
		if sub == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("--resource-group %q: want <subscription id>/<resource group> or a resource group name", v)
		}
		s.resourceGroups = append(s.resourceGroups, resourceGroupRef{sub, name})
	}
	for _, id := range s.nsgs {
		if _, err := azure.ParseNSGID(id); err != nil {
			return nil, fmt.Errorf("--nsg: %w", err)
		}
	}
	if len(s.subscriptions)+len(s.resourceGroups)+len(s.nsgs) == 0 && !s.all {
		if defaultSubscription == "" {
			return nil, fmt.Errorf("nothing to watch: give --subscription, --resource-group or --nsg, or set %s", azure.EnvSubscriptionID)
		}
		s.subscriptions = []string{defaultSubscription}
	}
	return s, nil
}

func (s *scope) String() string {
	var parts []string
	if s.all {
		parts = append(parts, "every subscription it can see")
	}
	for _, v := range s.subscriptions {
		parts = append(parts, "subscription "+v)
	}
	for _, v := range s.resourceGroups {
		parts = append(parts, "resource group "+v.String())
	}
	for _, v := range s.nsgs {
		parts = append(parts, "nsg "+v)
	}
	return strings.Join(parts, ", ")
}

// check reads every part of the scope once, so that jitd refuses to start
// on a scope it cannot read (a typo, a missing role assignment) instead of
// logging errors forever.
func (s *scope) check(ctx context.Context) error {
	var errs []error
	subs, err := s.wholeSubscriptions(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	_, listErrs := s.listParts(ctx, subs)
	for i, err := range listErrs {
		switch {
		case err == nil:
		case i < len(subs):
			errs = append(errs, fmt.Errorf("cannot read --subscription %s: %w (jitd needs Microsoft.Network/networkSecurityGroups/read there)", subs[i], err))
		default:
			rg := s.resourceGroups[i-len(subs)]
			errs = append(errs, fmt.Errorf("cannot read --resource-group %s: %w (jitd needs Microsoft.Network/networkSecurityGroups/read there)", rg, missingGroup(rg, err)))
		}
	}
	for _, id := range s.nsgs {
		if _, err := s.client.ListRules(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("cannot read --nsg %s: %w (jitd needs Microsoft.Network/networkSecurityGroups/securityRules/read there)", id, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("refusing to start on a scope it cannot read:\n%w", errors.Join(errs...))
	}
	return nil
}

// listConcurrency bounds how many parts of a scope (a subscription or a
// resource group) are listed at once. ARM limits reads per subscription,
// so listings of different subscriptions do not compete: one after the
// other, a thousand subscriptions took longer than jitd's start-up allows.
const listConcurrency = 8

// listParts lists the NSGs of each subscription in subs and then of each
// of the scope's resource groups, listConcurrency at a time, and returns
// each part's ids and error in that order.
func (s *scope) listParts(ctx context.Context, subs []string) (ids [][]string, errs []error) {
	type part struct{ sub, rg string }
	parts := make([]part, 0, len(subs)+len(s.resourceGroups))
	for _, sub := range subs {
		parts = append(parts, part{sub, ""})
	}
	for _, rg := range s.resourceGroups {
		parts = append(parts, part{rg.subscription, rg.name})
	}
	ids, errs = make([][]string, len(parts)), make([]error, len(parts))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, p := range parts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ids[i], errs[i] = s.client.ListNSGIDs(ctx, p.sub, p.rg)
		})
	}
	wg.Wait()
	return ids, errs
}

// NSGIDs implements daemon.Scope: every NSG of every part of the scope,
// each once (ARM ids are case-insensitive). A part that cannot be listed is
// an error; the others are still returned.
func (s *scope) NSGIDs(ctx context.Context) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(ids ...string) {
		for _, id := range ids {
			if k := strings.ToLower(id); !seen[k] {
				seen[k] = true
				out = append(out, id)
			}
		}
	}
	subs, err := s.wholeSubscriptions(ctx)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	partIDs, partErrs := s.listParts(ctx, subs)
	for i, ids := range partIDs {
		if err := partErrs[i]; err != nil {
			if i < len(subs) {
				errs = append(errs, fmt.Errorf("subscription %s: %w", subs[i], err))
			} else {
				rg := s.resourceGroups[i-len(subs)]
				errs = append(errs, fmt.Errorf("resource group %s: %w", rg, missingGroup(rg, err)))
			}
		}
		add(ids...)
	}
	add(s.nsgs...)
	return out, errors.Join(errs...)
}
