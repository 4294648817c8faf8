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
	const rg = "e2e-graph"
	w := newGraphWorld(t, la, rg, 6*time.Second)
	grant, exp, expiring := w.grant, w.exp, w.expiring
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

	deny := w.deleteDenyAll(t, 30*time.Second)

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
	const rg = "e2e-graph-lag"
	w := newGraphWorld(t, la, rg, 8*time.Second)
	p, expiring := w.policy, w.expiring
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

	w.deleteDenyAll(t, 60*time.Second)
	d.stop(t)
}

// graphWorld is a resource group with two NSGs holding the web policy: one
// with a grant for 203.0.113.9 expiring after the given time, one with the
// policy alone.
type graphWorld struct {
	la                *localAzure
	rg                string
	policy            jit.Policy
	grant             jit.SecurityRule
	exp               time.Time
	expiring, guarded string
}

func newGraphWorld(t *testing.T, la *localAzure, rg string, expiresIn time.Duration) graphWorld {
	t.Helper()
	p := webPolicy(t, 100)
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.9", Duration: "5m", Requester: "e2e@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	w := graphWorld{la: la, rg: rg, policy: p, exp: time.Now().Truncate(time.Second).Add(expiresIn)}
	w.grant = p.GrantRule("g1", spec, w.exp, lo)
	w.expiring = la.createNSG(t, rg, "nsg-grant", append(p.Rules(), w.grant)...)
	w.guarded = la.createNSG(t, rg, "nsg-policy", p.Rules()...)
	return w
}

// deleteDenyAll deletes the guarded NSG's deny-all rule out of band and
// waits, up to within, for jitd to write it back so that a source outside
// the policy is denied again. It returns the rule's name.
func (w graphWorld) deleteDenyAll(t *testing.T, within time.Duration) string {
	t.Helper()
	const deny = "jit-web-deny-tcp"
	poller, err := w.la.rules.BeginDelete(t.Context(), w.rg, "nsg-policy", deny, nil)
	if err == nil {
		_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("delete %s: %v", deny, err)
	}
	if err := poll(within, func() bool {
		return slices.Contains(w.la.ruleNames(t, w.guarded), deny) && !w.la.reachable(t, w.guarded, "203.0.113.7")
	}); err != nil {
		t.Fatalf("%s not restored: %v", deny, err)
	}
	return deny
}
