package provider

import (
	"context"
	"strings"
	"sync"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ruleStore is what the resources need of Azure: the rules of an NSG, and
// changes to them, applied together in one NSG write (with the changes
// other resources ask for at the same moment). *azure.Client implements it;
// unit tests use a fake.
type ruleStore interface {
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
	ApplyRuleChanges(ctx context.Context, nsgID string, changes []azure.RuleChange) ([]jit.SecurityRule, error)
	// FlushConnection reads the NSG's flushConnection property.
	FlushConnection(ctx context.Context, nsgID string) (bool, error)
	// NSGVirtualNetworks and EffectiveAdminRules find the security admin
	// rules in effect for an NSG's traffic.
	NSGVirtualNetworks(ctx context.Context, nsgID string) ([]string, error)
	EffectiveAdminRules(ctx context.Context, vnetID string) ([]jit.AdminRule, error)
}

// cachedRules lists each NSG's rules at most once per provider process —
// that is, once per Terraform plan or apply — however many resources read
// them, and forgets an NSG's rules as soon as this process writes to it.
type cachedRules struct {
	store ruleStore

	mu      sync.Mutex
	entries map[string]*cacheEntry // by lower-case NSG id
	admin   map[string][]vnetAdminRules
}

type cacheEntry struct {
	once  sync.Once
	rules []jit.SecurityRule
	err   error

	// view is the rules decoded, once, for the resources that only need to
	// know which policies and grants are on the NSG.
	viewOnce sync.Once
	view     jit.NSGView
}

func newCachedRules(store ruleStore) *cachedRules {
	return &cachedRules{store: store, entries: map[string]*cacheEntry{}}
}

func (c *cachedRules) ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error) {
	e, err := c.entry(ctx, nsgID)
	if err != nil {
		return nil, err
	}
	return append([]jit.SecurityRule(nil), e.rules...), nil
}

// View is the NSG's rules decoded (jit.ReadNSG), once per listing however
// many grants and policies ask. Callers must not modify it.
func (c *cachedRules) View(ctx context.Context, nsgID string) (jit.NSGView, error) {
	e, err := c.entry(ctx, nsgID)
	if err != nil {
		return jit.NSGView{}, err
	}
	e.viewOnce.Do(func() { e.view = jit.ReadNSG(e.rules) })
	return e.view, nil
}

// entry returns the NSG's listed rules, listing them on first use.
func (c *cachedRules) entry(ctx context.Context, nsgID string) (*cacheEntry, error) {
	key := strings.ToLower(nsgID)
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &cacheEntry{}
		c.entries[key] = e
	}
	c.mu.Unlock()

	e.once.Do(func() { e.rules, e.err = c.store.ListRules(ctx, nsgID) })
	if e.err != nil {
		// A failure is not worth remembering: the next caller tries again.
		c.forget(nsgID, e)
		return nil, e.err
	}
	return e, nil
}

func (c *cachedRules) ApplyRuleChanges(ctx context.Context, nsgID string, changes []azure.RuleChange) ([]jit.SecurityRule, error) {
	defer c.forget(nsgID, nil)
	return c.store.ApplyRuleChanges(ctx, nsgID, changes)
}

// forget drops the NSG's entry (only if it is still e, when e is given).
func (c *cachedRules) forget(nsgID string, e *cacheEntry) {
	key := strings.ToLower(nsgID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e == nil || c.entries[key] == e {
		delete(c.entries, key)
	}
}

// FlushConnection reads the NSG's flushConnection property, uncached: only
// policies that end sessions at expiry ask, once per NSG per run.
func (c *cachedRules) FlushConnection(ctx context.Context, nsgID string) (bool, error) {
	return c.store.FlushConnection(ctx, nsgID)
}

// vnetAdminRules are the admin rules in effect for one virtual network.
type vnetAdminRules struct {
	vnetID string
	rules  []jit.AdminRule
}

// AdminRules returns the security admin rules in effect for each virtual
// network the NSG's traffic passes through, read once per run per NSG.
func (c *cachedRules) AdminRules(ctx context.Context, nsgID string) ([]vnetAdminRules, error) {
	key := strings.ToLower(nsgID)
	c.mu.Lock()
	if c.admin == nil {
		c.admin = map[string][]vnetAdminRules{}
	}
	if v, ok := c.admin[key]; ok {
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	vnets, err := c.store.NSGVirtualNetworks(ctx, nsgID)
	if err != nil {
		return nil, err
	}
	out := make([]vnetAdminRules, 0, len(vnets))
	for _, v := range vnets {
		rules, err := c.store.EffectiveAdminRules(ctx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, vnetAdminRules{vnetID: v, rules: rules})
	}
	c.mu.Lock()
	c.admin[key] = out
	c.mu.Unlock()
	return out, nil
}

// NSGVirtualNetworks passes through, uncached (AdminRules caches).
func (c *cachedRules) NSGVirtualNetworks(ctx context.Context, nsgID string) ([]string, error) {
	return c.store.NSGVirtualNetworks(ctx, nsgID)
}

// EffectiveAdminRules passes through, uncached (AdminRules caches).
func (c *cachedRules) EffectiveAdminRules(ctx context.Context, vnetID string) ([]jit.AdminRule, error) {
	return c.store.EffectiveAdminRules(ctx, vnetID)
}
