package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// TestEndToEndResourceGraphDiscovery: jitd with --discovery resource-graph
// finds the NSGs holding JIT rules through the local Azure's Resource
// Graph, closes a grant at its expiry, and restores a deny-all deleted out
// of band, seen at the next watch because the NSG's rules changed.
func TestEndToEndResourceGraphDiscovery(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	const rg = "e2e-graph"
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.9", Duration: "5m", Requester: "e2e@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Truncate(time.Second).Add(6 * time.Second)
	grant := p.GrantRule("g1", spec, exp, lo)
	expiring := la.createNSG(t, rg, "nsg-grant", append(p.Rules(), grant)...)
	guarded := la.createNSG(t, rg, "nsg-policy", p.Rules()...)
	la.createNSG(t, rg, "nsg-plain") // no JIT rule: not in Resource Graph's answer
	if !la.reachable(t, expiring, "203.0.113.9") {
		t.Fatal("the grant does not open 203.0.113.9 → 10.0.1.4:22")
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--discovery", "resource-graph", "--resource-group", la.subscription()+"/"+rg,
		"--interval", "1h", "--watch-interval", "1s")
	if n := d.metric("jitd_watched_nsgs"); n != 2 {
		t.Errorf("jitd_watched_nsgs = %v, want 2 (the NSGs holding JIT rules)", n)
	}

	if err := poll(60*time.Second, func() bool { return !la.reachable(t, expiring, "203.0.113.9") }); err != nil {
		t.Fatalf("the grant still opens the port after its expiry: %v", err)
	}
	if e, ok := la.deleteEvents(t)[strings.ToLower(expiring)+"/"+grant.Name]; !ok {
		t.Error("no delete of the grant's rule in the local Azure's event log")
	} else {
		t.Logf("grant closed %s after its expiry", e.Completed.Sub(exp).Round(time.Millisecond))
	}

	deny := "jit-web-deny-tcp"
	poller, err := la.rules.BeginDelete(t.Context(), rg, "nsg-policy", deny, nil)
	if err == nil {
		_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("delete %s: %v", deny, err)
	}
	if err := poll(30*time.Second, func() bool {
		return slices.Contains(la.ruleNames(t, guarded), deny) && !la.reachable(t, guarded, "203.0.113.7")
	}); err != nil {
		t.Fatalf("%s not restored: %v", deny, err)
	}

	var got []string
	if err := poll(30*time.Second, func() bool {
		events, err := audit.ReadFile(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range events {
			got = append(got, string(e.Action)+" "+string(e.Result)+" "+e.RuleName)
		}
		return slices.Contains(got, "close success "+grant.Name) && slices.Contains(got, "restore success "+deny)
	}); err != nil {
		t.Errorf("audit events = %q, want the grant's close and the deny-all's restore", got)
	}
	d.stop(t)
}

// TestEndToEndResourceGraphLagDelaysNoClose: with Resource Graph trailing
// ARM (the local Azure's graphLag), jitd still closes a grant at its
// expiry from its own ARM read and timer, while Resource Graph still lists
// the grant's rule; a deny-all deleted out of band is restored once
// Resource Graph shows the change.
func TestEndToEndResourceGraphLagDelaysNoClose(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	const rg = "e2e-graph-lag"
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.9", Duration: "5m", Requester: "e2e@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Truncate(time.Second).Add(8 * time.Second)
	grant := p.GrantRule("g1", spec, exp, lo)
	expiring := la.createNSG(t, rg, "nsg-grant", append(p.Rules(), grant)...)
	guarded := la.createNSG(t, rg, "nsg-policy", p.Rules()...)
	// The NSGs predate the lag: Resource Graph's index holds them already.
	la.setConfig(t, "graphLag", 10*time.Second)
	t.Cleanup(func() { la.setConfig(t, "graphLag", 0) })

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--discovery", "resource-graph", "--resource-group", la.subscription()+"/"+rg,
		"--interval", "1h", "--watch-interval", "1s")
	if err := poll(60*time.Second, func() bool { return !la.reachable(t, expiring, "203.0.113.9") }); err != nil {
		t.Fatalf("the grant still opens the port after its expiry: %v", err)
	}
	listed, _, err := la.client.JITNSGs(t.Context(), []string{la.subscription()})
	if err != nil {
		t.Fatal(err)
	}
	graphRules := -1
	for _, n := range listed {
		if strings.EqualFold(n.ID, expiring) {
			graphRules = n.JITRules
		}
	}
	if want := len(p.Rules()) + 1; graphRules != want {
		t.Errorf("Resource Graph lists %d JIT rules on %s when jitd has closed the grant, want %d (the grant's still there): "+
			"the close must not wait for Resource Graph", graphRules, expiring, want)
	}

	deny := "jit-web-deny-tcp"
	poller, err := la.rules.BeginDelete(t.Context(), rg, "nsg-policy", deny, nil)
	if err == nil {
		_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("delete %s: %v", deny, err)
	}
	if err := poll(60*time.Second, func() bool {
		return slices.Contains(la.ruleNames(t, guarded), deny) && !la.reachable(t, guarded, "203.0.113.7")
	}); err != nil {
		t.Fatalf("%s not restored once Resource Graph showed the change: %v", deny, err)
	}
	d.stop(t)
}
