package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

func allowFrom(name, source string, priority int32) jit.SecurityRule {
	return jit.SecurityRule{Name: name, Priority: priority, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{source}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"10.0.0.4"}, DestinationPorts: []string{"22"}}
}

// chooseFree puts a rule at the lowest priority from 200 that no rule uses,
// as a grant does.
func chooseFree(name, source string) RuleChange {
	return RuleChange{Choose: func(current []jit.SecurityRule) (jit.SecurityRule, error) {
		used := map[int32]bool{}
		for _, r := range current {
			used[r.Priority] = true
		}
		for p := int32(200); p < 4096; p++ {
			if !used[p] {
				return allowFrom(name, source, p), nil
			}
		}
		return jit.SecurityRule{}, errors.New("full")
	}}
}

// Concurrent changes to one NSG, from one client and from a second one (as
// another process would), all land, each at its own priority: no update is
// lost to the whole-NSG writes, whose ETag makes the later writer read again.
func TestApplyRuleChangesLosesNoUpdateUnderConcurrency(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 50 * time.Millisecond})
	a, b := clientFromEnv(t, env), clientFromEnv(t, env)
	ctx := context.Background()
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		c := a
		if i%3 == 0 {
			c = b
		}
		wg.Go(func() {
			_, errs[i] = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{chooseFree(fmt.Sprintf("jit-web-g-%02d", i), fmt.Sprintf("203.0.113.%d", i+1))})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("change %d: %v", i, err)
		}
	}
	rules, err := a.ListRules(ctx, nsgID)
	if err != nil {
		t.Fatal(err)
	}
	priorities := map[int32]string{}
	for _, r := range rules {
		if other, dup := priorities[r.Priority]; dup {
			t.Errorf("%s and %s share priority %d", r.Name, other, r.Priority)
		}
		priorities[r.Priority] = r.Name
	}
	if len(rules) != n {
		t.Fatalf("%d rules on the NSG, want %d", len(rules), n)
	}
	for i := range n {
		if v, _ := srv.VerifyFlow(azuresim.Flow{NSGIDs: []string{nsgID}, Protocol: "Tcp", Source: fmt.Sprintf("203.0.113.%d", i+1),
			Destination: "10.0.0.4", DestinationPort: 22}); !v.Allowed {
			t.Errorf("203.0.113.%d cannot reach the port its rule opens", i+1)
		}
	}
	c := srv.Counters()
	t.Logf("%d changes: %d NSG writes, %d refused for a stale ETag", n, c.Requests["PUT nsg"], c.Responses["PUT nsg 412"])
}

// Changes asked for while a write is in flight are written together: the
// next write carries all of them, not one each. The in-flight write is
// stood in for by marking the NSG's batcher busy, so the test does not
// depend on timing.
func TestApplyRuleChangesWritesWaitingChangesTogether(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	c.gatherBatches = false
	ctx := context.Background()
	id, err := ParseNSGID(nsgID)
	if err != nil {
		t.Fatal(err)
	}
	b := c.batcherFor(id)
	b.mu.Lock()
	b.running = true
	b.mu.Unlock()

	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{chooseFree(fmt.Sprintf("jit-web-g-%02d", i), fmt.Sprintf("203.0.113.%d", i+1))})
		})
	}
	for {
		b.mu.Lock()
		waiting := len(b.pending)
		b.mu.Unlock()
		if waiting == n {
			break
		}
		runtime.Gosched()
	}
	srv.ResetCounters()
	c.drain(ctx, id, b) // what the in-flight writer does when its write ends
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("change %d: %v", i, err)
		}
	}
	if got := srv.Counters().Requests["PUT nsg"]; got != 1 {
		t.Errorf("%d waiting changes took %d NSG writes, want 1", n, got)
	}
	rules, err := c.ListRules(ctx, nsgID)
	if err != nil || len(rules) != n {
		t.Fatalf("%d rules on the NSG (%v), want %d", len(rules), err, n)
	}
	for i := range n {
		if v, _ := srv.VerifyFlow(azuresim.Flow{NSGIDs: []string{nsgID}, Protocol: "Tcp", Source: fmt.Sprintf("203.0.113.%d", i+1),
			Destination: "10.0.0.4", DestinationPort: 22}); !v.Allowed {
			t.Errorf("203.0.113.%d cannot reach the port its rule opens", i+1)
		}
	}
}

// A whole-NSG write keeps every property it does not change, including
// ones the SDK does not model, exactly as read.
func TestApplyRuleChangesPreservesUnknownProperties(t *testing.T) {
	sub := azuresim.DefaultSubscriptionID
	nsgID := "/subscriptions/" + sub + "/resourceGroups/rg-jit/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	seed := filepath.Join(t.TempDir(), "seed.json")
	body := fmt.Sprintf(`{"networkSecurityGroups":[{"id":%q,"location":"westeurope","tags":{"owner":"platform","cost-center":"42"},
	  "properties":{"futureFeature":{"mode":"strict","levels":[1,2,3]},"flushConnection":true,
	  "securityRules":[{"name":"AllowHTTPS","properties":{"priority":300,"direction":"Inbound","access":"Allow","protocol":"Tcp",
	  "sourceAddressPrefix":"*","sourcePortRange":"*","destinationAddressPrefix":"*","destinationPortRange":"443",
	  "description":"kept","futureRuleFlag":"on"}}]}}]}`, nsgID)
	if err := os.WriteFile(seed, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: seed})
	c := clientFromEnv(t, srv.Environ(simtest.CAFile()))
	ctx := context.Background()
	before := rawGet(t, c, nsgID)

	if _, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("jit-web-g-1", "203.0.113.7", 200))}}); err != nil {
		t.Fatal(err)
	}
	after := rawGet(t, c, nsgID)
	for _, key := range []string{"tags", "location"} {
		if string(before[key]) != string(after[key]) {
			t.Errorf("%s changed: %s -> %s", key, before[key], after[key])
		}
	}
	bp, _ := before.properties()
	ap, _ := after.properties()
	for _, key := range []string{"futureFeature", "flushConnection"} {
		if string(bp[key]) != string(ap[key]) {
			t.Errorf("properties.%s changed: %s -> %s", key, bp[key], ap[key])
		}
	}
	if !strings.Contains(string(ap["securityRules"]), `"futureRuleFlag":"on"`) {
		t.Errorf("an untouched rule lost a property: %s", ap["securityRules"])
	}
}

// One bad change fails only the caller that made it; the others land.
func TestApplyRuleChangesIsolatesABadChange(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 50 * time.Millisecond})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	bad := allowFrom("bad", "300.1.2.3", 210) // Azure refuses the prefix
	var wg sync.WaitGroup
	var goodErr, badErr, chooseErr error
	wg.Go(func() {
		_, goodErr = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("good", "203.0.113.7", 200))}})
	})
	wg.Go(func() { _, badErr = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: &bad}}) })
	wg.Go(func() {
		_, chooseErr = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Choose: func([]jit.SecurityRule) (jit.SecurityRule, error) {
			return jit.SecurityRule{}, errors.New("no free priority")
		}}})
	})
	wg.Wait()
	if goodErr != nil {
		t.Errorf("good change: %v", goodErr)
	}
	if !errors.Is(badErr, ErrInvalid) {
		t.Errorf("bad change: %v, want ErrInvalid", badErr)
	}
	if chooseErr == nil || !strings.Contains(chooseErr.Error(), "no free priority") {
		t.Errorf("failed choice: %v", chooseErr)
	}
	rules, err := c.ListRules(ctx, nsgID)
	if err != nil || len(rules) != 1 || rules[0].Name != "good" {
		t.Fatalf("rules = %+v, %v; want only the good one", rules, err)
	}
}

// The changes of one call land together, in one write: a policy swaps its
// rules without a moment where a port is open in between.
func TestApplyRuleChangesOfOneCallLandTogether(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	if _, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("old", "203.0.113.7", 200))}}); err != nil {
		t.Fatal(err)
	}
	srv.ResetCounters()
	written, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{
		{Put: ptr(allowFrom("new-a", "203.0.113.8", 201))},
		{Put: ptr(allowFrom("new-b", "203.0.113.9", 202))},
		{Delete: "old"},
		{Delete: "never-existed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || written[0].Name != "new-a" || written[1].Name != "new-b" {
		t.Errorf("written = %+v", written)
	}
	if got := srv.Counters().Requests["PUT nsg"]; got != 1 {
		t.Errorf("%d NSG writes, want 1", got)
	}
	rules, _ := c.ListRules(ctx, nsgID)
	if len(rules) != 2 {
		t.Errorf("rules = %+v", rules)
	}
}

func rawGet(t *testing.T, c *Client, nsgID string) rawNSG {
	t.Helper()
	id, _ := ParseNSGID(nsgID)
	pipeline, endpoint, err := c.rawClient()
	if err != nil {
		t.Fatal(err)
	}
	doc, _, err := c.getRawNSG(context.Background(), pipeline, strings.TrimSuffix(endpoint, "/")+nsgID+"?api-version="+nsgAPIVersion, id)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip to drop read-only noise like provisioningState changes.
	b, _ := json.Marshal(doc)
	var out rawNSG
	_ = json.Unmarshal(b, &out)
	return out
}
