package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// fakeStore is an in-memory NSG for fast tests of the write ordering. It
// records every call in order.
type fakeStore struct {
	mu    sync.Mutex
	rules map[string]map[string]jit.SecurityRule // nsg -> name -> rule
	calls []string
	lists int
	fail  string // a call ("put <name>" / "delete <name>") that fails
	// failTimes is how many times that call fails before it succeeds
	// (0: always), failErr the error it fails with.
	failTimes int
	failErr   error
	flush     map[string]bool // nsg -> flushConnection
}

// failed counts the calls so far that were the failing one.
func (f *fakeStore) failed() int {
	n := 0
	for _, c := range f.calls {
		if c == f.fail {
			n++
		}
	}
	return n
}

// FlushConnection reads the fake's flushConnection setting of the NSG.
func (f *fakeStore) FlushConnection(_ context.Context, nsgID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rules[nsgID]; !ok {
		return false, &azure.Error{Kind: azure.KindNotFound, StatusCode: 404}
	}
	return f.flush[nsgID], nil
}

// NSGVirtualNetworks: the fake's NSGs are in no virtual network.
func (f *fakeStore) NSGVirtualNetworks(context.Context, string) ([]string, error) { return nil, nil }

// EffectiveAdminRules: none.
func (f *fakeStore) EffectiveAdminRules(context.Context, string) ([]jit.AdminRule, error) {
	return nil, nil
}

func newFakeStore() *fakeStore {
	return &fakeStore{rules: map[string]map[string]jit.SecurityRule{}, flush: map[string]bool{}}
}

func (f *fakeStore) ListRules(_ context.Context, nsgID string) ([]jit.SecurityRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	nsg, ok := f.rules[nsgID]
	if !ok {
		return nil, &azure.Error{Kind: azure.KindNotFound, StatusCode: 404}
	}
	var out []jit.SecurityRule
	for _, r := range nsg {
		out = append(out, r)
	}
	return out, nil
}

// ApplyRuleChanges applies the changes in order, as one write, recorded as
// one call: "put a,delete b".
func (f *fakeStore) ApplyRuleChanges(_ context.Context, nsgID string, changes []azure.RuleChange) ([]jit.SecurityRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := map[string]jit.SecurityRule{}
	for k, v := range f.rules[nsgID] {
		next[k] = v
	}
	var ops []string
	var written []jit.SecurityRule
	var flush *bool
	for _, ch := range changes {
		if ch.FlushConnection != nil {
			flush = ch.FlushConnection
			ops = append(ops, fmt.Sprintf("flush %v", *flush))
		}
		switch {
		case ch.Put != nil || ch.Choose != nil:
			r := ch.Put
			if r == nil {
				current := make([]jit.SecurityRule, 0, len(next))
				for _, x := range next {
					current = append(current, x)
				}
				chosen, err := ch.Choose(current)
				if err != nil {
					return nil, err
				}
				r = &chosen
			}
			ops = append(ops, "put "+r.Name)
			next[r.Name] = *r
			written = append(written, *r)
		case ch.Delete != "":
			ops = append(ops, "delete "+ch.Delete)
			delete(next, ch.Delete)
		}
	}
	call := strings.Join(ops, ",")
	f.calls = append(f.calls, call)
	if call == f.fail && (f.failTimes == 0 || f.failed() <= f.failTimes) {
		if f.failErr != nil {
			return nil, f.failErr
		}
		return nil, errors.New("injected failure")
	}
	f.rules[nsgID] = next
	if flush != nil {
		f.flush[nsgID] = *flush
	}
	return written, nil
}

func mustPolicy(t *testing.T, ports ...jit.PortInput) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, Ports: ports, BandStart: 100, BandEnd: 199})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyPolicyWritesEachChangeAsOneNSGWrite(t *testing.T) {
	const nsg = "nsg"
	ctx := context.Background()
	store := newFakeStore()
	foreign := jit.SecurityRule{Name: "AllowHTTPS", Priority: 300, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"443"}}
	store.rules[nsg] = map[string]jit.SecurityRule{foreign.Name: foreign}

	tcp := jit.PortInput{Number: 22, Protocol: "Tcp", MaxDuration: "3h"}
	udp := jit.PortInput{Number: 53, Protocol: "Udp", MaxDuration: "1h"}

	steps := []struct {
		policy jit.Policy
		want   []string // calls in order
	}{
		// Each step is one write: the NSG never shows half a policy.
		{mustPolicy(t, tcp), []string{"put jit-web-guard-tcp,put jit-web-deny-tcp"}},
		{mustPolicy(t, tcp, udp), []string{"put jit-web-guard-udp,put jit-web-deny-udp"}},
		{mustPolicy(t, tcp), []string{"delete jit-web-guard-udp,delete jit-web-deny-udp"}},
		{mustPolicy(t, tcp), nil}, // nothing to do: no write at all
	}
	for i, step := range steps {
		store.calls = nil
		rules, _ := store.ListRules(ctx, nsg)
		if _, err := applyPolicyToNSG(ctx, store, nsg, step.policy, rules, nil, nil, nil); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if strings.Join(store.calls, ";") != strings.Join(step.want, ";") {
			t.Errorf("step %d: calls %v, want %v", i, store.calls, step.want)
		}
		if store.rules[nsg]["AllowHTTPS"].Name == "" {
			t.Fatalf("step %d: the foreign rule was removed", i)
		}
	}
}

func TestRemovePolicyTouchesOnlyItsRules(t *testing.T) {
	const nsg = "nsg"
	ctx := context.Background()
	store := newFakeStore()
	p := mustPolicy(t, jit.PortInput{Number: 22, Protocol: "Tcp", MaxDuration: "3h"})
	other, err := jit.NewPolicy(jit.PolicyInput{Name: "web-db", DestinationPrefixes: []string{"*"},
		AllowedSources: []string{"*"}, Ports: []jit.PortInput{{Number: 5432, Protocol: "Tcp", MaxDuration: "1h"}},
		BandStart: 300, BandEnd: 399})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(p.Rules(), other.Rules()...) {
		_, _ = store.ApplyRuleChanges(ctx, nsg, []azure.RuleChange{{Put: &r}})
	}
	store.calls = nil
	if err := removePolicyFromNSG(ctx, store, nsg, "web", nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Rules() {
		if _, ok := store.rules[nsg][r.Name]; ok {
			t.Errorf("%s survived", r.Name)
		}
	}
	for _, r := range other.Rules() {
		if _, ok := store.rules[nsg][r.Name]; !ok {
			t.Errorf("another policy's rule %s was removed", r.Name)
		}
	}
	if err := removePolicyFromNSG(ctx, store, "missing-nsg", "web", nil, nil); err != nil {
		t.Errorf("a missing NSG has nothing to remove: %v", err)
	}
}

func TestCachedRulesListsOncePerNSGUntilWritten(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	store.rules["a"] = map[string]jit.SecurityRule{}
	c := newCachedRules(store)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.ListRules(ctx, "a"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if store.lists != 1 {
		t.Fatalf("20 concurrent reads made %d list calls, want 1", store.lists)
	}
	if _, err := c.ApplyRuleChanges(ctx, "a", []azure.RuleChange{{Put: &jit.SecurityRule{Name: "x"}}}); err != nil {
		t.Fatal(err)
	}
	rules, err := c.ListRules(ctx, "a")
	if err != nil || len(rules) != 1 || store.lists != 2 {
		t.Fatalf("after a write: %d rules, %d lists, %v; want the write seen through a fresh list", len(rules), store.lists, err)
	}
	if _, err := c.ListRules(ctx, "missing"); !errors.Is(err, azure.ErrNotFound) {
		t.Fatalf("missing NSG: %v", err)
	}
	if _, err := c.ListRules(ctx, "missing"); err == nil || store.lists != 4 {
		t.Fatalf("a failed list must not be cached: %d lists", store.lists)
	}
}

// View decodes the same listing the rules come from, and a write through
// the cache is seen by the next View.
func TestCachedRulesViewFollowsWrites(t *testing.T) {
	ctx := context.Background()
	store := newFakeStore()
	store.rules["a"] = map[string]jit.SecurityRule{}
	c := newCachedRules(store)
	if v, err := c.View(ctx, "a"); err != nil || len(v.Policies) != 0 {
		t.Fatalf("empty NSG: %+v, %v", v, err)
	}
	p := mustPolicy(t, jit.PortInput{Number: 22, Protocol: "Tcp", MaxDuration: "3h"})
	if _, err := applyPolicyToNSG(ctx, c, "a", p, nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	v, err := c.View(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Policies["web"]; !ok || got.Problem != "" || !got.Policy.Equal(p) {
		t.Fatalf("after the write the view holds %+v", v.Policies)
	}
	if store.lists != 2 {
		t.Fatalf("%d lists, want 2 (one before and one after the write)", store.lists)
	}
}
