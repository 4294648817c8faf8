package main

import (
	"context"
	"slices"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

type fakeGraph struct {
	subs   []string
	asked  [][]string
	lists  int
	answer []azure.GraphNSG
}

func (f *fakeGraph) ListSubscriptions(context.Context) ([]string, error) {
	f.lists++
	return f.subs, nil
}

func (f *fakeGraph) JITNSGs(_ context.Context, subs []string) ([]azure.GraphNSG, azure.GraphStats, error) {
	f.asked = append(f.asked, subs)
	return f.answer, azure.GraphStats{Queries: 1, Batches: 1}, nil
}

func nsgIn(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/networkSecurityGroups/" + name
}

// Resource Graph is asked about every subscription of the scope, and its
// answer is kept to the scope: whole subscriptions, resource groups, NSGs.
func TestGraphScopeFiltersToTheScope(t *testing.T) {
	in := []string{nsgIn("s1", "any", "a"), nsgIn("s2", "rg", "b"), nsgIn("S2", "RG", "c"), nsgIn("s2", "other", "d"), nsgIn("s3", "x", "e"), nsgIn("s3", "x", "f")}
	f := &fakeGraph{}
	for _, id := range in {
		f.answer = append(f.answer, azure.GraphNSG{ID: id, Digest: "d"})
	}
	sc, err := newScope(options{subscriptions: listFlag{"s1"}, resourceGroups: listFlag{"s2/rg"}, nsgs: listFlag{in[4]}}, "")
	if err != nil {
		t.Fatal(err)
	}
	sc.lister = f
	g := &graphScope{scope: sc, graph: f}
	ids, err := g.NSGIDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{in[0], in[1], in[2], in[4]}; !slices.Equal(ids, want) {
		t.Errorf("NSGs %v, want %v", ids, want)
	}
	if len(f.asked) != 1 || !slices.Equal(f.asked[0], []string{"s1", "s2", "s3"}) {
		t.Errorf("asked about %v, want s1, s2 and s3", f.asked)
	}
}

// --all-subscriptions lists the subscriptions, once per subscriptionsTTL,
// and stands alone.
func TestAllSubscriptions(t *testing.T) {
	if _, err := newScope(options{allSubscriptions: true, subscriptions: listFlag{"s1"}}, ""); err == nil {
		t.Error("--all-subscriptions with --subscription accepted")
	}
	sc, err := newScope(options{allSubscriptions: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGraph{subs: []string{"s1", "s2"}, answer: []azure.GraphNSG{{ID: nsgIn("s2", "rg", "a")}}}
	sc.lister = f
	g := &graphScope{scope: sc, graph: f}
	for range 3 {
		ids, err := g.NSGIDs(t.Context())
		if err != nil || len(ids) != 1 {
			t.Fatalf("NSGs %v, %v", ids, err)
		}
	}
	if f.lists != 1 {
		t.Errorf("subscriptions listed %d times, want once within %s", f.lists, subscriptionsTTL)
	}
	if !slices.Equal(f.asked[0], []string{"s1", "s2"}) {
		t.Errorf("asked about %v", f.asked[0])
	}
}

func TestDiscoveryFlag(t *testing.T) {
	for _, v := range []string{discoveryARM, discoveryGraph} {
		if o, err := parseFlags([]string{"--discovery", v}, func(string) string { return "" }); err != nil || o.discovery != v {
			t.Errorf("--discovery %s: %v", v, err)
		}
	}
	if o, _ := parseFlags(nil, func(string) string { return "" }); o.discovery != discoveryARM {
		t.Errorf("default discovery %q, want %s", o.discovery, discoveryARM)
	}
	if _, err := parseFlags([]string{"--discovery", "graph"}, func(string) string { return "" }); err == nil {
		t.Error("--discovery graph accepted")
	}
}
