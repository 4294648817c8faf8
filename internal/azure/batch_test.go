package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	if !errors.Is(badErr, ErrInvalid) || !reportedNotWritten(badErr) {
		t.Errorf("bad change: %v, want ErrInvalid and nothing written", badErr)
	}
	if !reportedNotWritten(chooseErr) || !strings.Contains(chooseErr.Error(), "no free priority") {
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

// gatedTransport sends requests to the local Azure, letting a test hold,
// observe or lose them: hook (when set) is called for every request with a
// function that sends it, and returns what the client sees.
type gatedTransport struct {
	client *http.Client

	mu   sync.Mutex
	hook func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error)
}

func newGatedTransport() *gatedTransport {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		panic("http.DefaultTransport is not an *http.Transport")
	}
	return &gatedTransport{client: &http.Client{Transport: base.Clone()}}
}

func (g *gatedTransport) setHook(hook func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hook = hook
}

func (g *gatedTransport) Do(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	hook := g.hook
	g.mu.Unlock()
	// The transport may go on reading a request's body after it returned,
	// while the SDK rewinds it for a retry: send a copy.
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	send := func() (*http.Response, error) { return g.client.Do(req) }
	if hook == nil {
		return send()
	}
	return hook(req, send)
}

// isNSGWrite and isNSGRead tell whole-NSG PUTs and GETs from other requests
// (token requests, operation polls).
func isNSGWrite(req *http.Request) bool {
	return req.Method == http.MethodPut && strings.HasSuffix(strings.ToLower(req.URL.Path), "/networksecuritygroups/nsg-web")
}

func isNSGRead(req *http.Request) bool {
	return req.Method == http.MethodGet && strings.HasSuffix(strings.ToLower(req.URL.Path), "/networksecuritygroups/nsg-web")
}

// gatedClient is clientFromEnv with every request going through gate.
func gatedClient(t *testing.T, env map[string]string, gate *gatedTransport, maxRetries int) *Client {
	t.Helper()
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	c, err := NewClient(context.Background(), cfg, ClientOptions{
		UserAgent:     "terraform-provider-jit/test",
		PollFrequency: 10 * time.Millisecond,
		RetryDelay:    10 * time.Millisecond,
		MaxRetries:    maxRetries,
		Transport:     gate,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// applyResult is what one ApplyRuleChanges call reported.
type applyResult struct {
	rule    string
	written []jit.SecurityRule
	err     error
}

// checkReportedTruthfully compares the NSG, once every write has ended,
// with what the calls reported: a rule is on the NSG exactly when its call
// reported success, except after a write whose outcome the call reported
// as unknown.
func checkReportedTruthfully(t *testing.T, c *Client, nsgID string, results []applyResult) {
	t.Helper()
	rules, err := c.ListRules(context.Background(), nsgID)
	if err != nil {
		t.Fatal(err)
	}
	onNSG := map[string]bool{}
	for _, r := range rules {
		onNSG[r.Name] = true
	}
	for _, res := range results {
		switch {
		case res.err == nil && !onNSG[res.rule]:
			t.Errorf("%s: reported written, but it is not on the NSG", res.rule)
		case res.err == nil && (len(res.written) != 1 || res.written[0].Name != res.rule):
			t.Errorf("%s: reported written as %+v", res.rule, res.written)
		case res.err != nil && onNSG[res.rule] && !reportedUnknown(res.err):
			t.Errorf("%s: on the NSG, but its call reported %v", res.rule, res.err)
		}
	}
}

// waitPending waits until n calls wait for the NSG's next write.
func waitPending(c *Client, nsgID string, n int) {
	id, _ := ParseNSGID(nsgID)
	b := c.batcherFor(id)
	for {
		b.mu.Lock()
		waiting := len(b.pending)
		b.mu.Unlock()
		if waiting == n {
			return
		}
		runtime.Gosched()
	}
}

// waitIdle waits until no write to the NSG is under way or pending.
func waitIdle(c *Client, nsgID string) {
	id, _ := ParseNSGID(nsgID)
	b := c.batcherFor(id)
	for {
		b.mu.Lock()
		idle := !b.running && len(b.pending) == 0
		b.mu.Unlock()
		if idle {
			return
		}
		runtime.Gosched()
	}
}

// The reproduction: three grants with a one-second create timeout
// while NSG writes take three seconds. Whatever each call reports, the NSG
// must agree with it once the writes are over: no rule lands for a call
// that returned an error saying nothing was written.
func TestApplyRuleChangesReportsTruthfullyWhenCallersTimeOut(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 3 * time.Second})
	c := clientFromEnv(t, env)
	results := make([]applyResult, 3)
	var wg sync.WaitGroup
	for i := range results {
		results[i].rule = fmt.Sprintf("jit-web-g-%d", i)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			results[i].written, results[i].err = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{chooseFree(results[i].rule, fmt.Sprintf("203.0.113.%d", i+1))})
		})
	}
	wg.Wait()
	waitIdle(c, nsgID)
	for _, r := range results {
		t.Logf("%s: %v", r.rule, r.err)
	}
	checkReportedTruthfully(t, c, nsgID, results)
}

// A caller that gives up while its change is in a write waits for that
// write and reports it written; a caller that gives up while its change
// still waits for the next write withdraws it, and it is never written.
// The first write is held in flight by the transport, so nothing here
// depends on timing.
func TestApplyRuleChangesAccountsForCallersThatGaveUp(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	gate := newGatedTransport()
	c := gatedClient(t, env, gate, 0)
	c.gatherBatches = false

	inFlight, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	gate.setHook(func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error) {
		held := false
		if isNSGWrite(req) {
			first.Do(func() { held = true })
		}
		resp, err := send()
		if held {
			close(inFlight)
			<-release
		}
		return resp, err
	})

	results := []applyResult{{rule: "jit-web-g-a"}, {rule: "jit-web-g-b"}, {rule: "jit-web-g-c"}}
	apply := func(ctx context.Context, i int) {
		results[i].written, results[i].err = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom(results[i].rule, fmt.Sprintf("203.0.113.%d", i+1), int32(200+i)))}})
	}
	var wg sync.WaitGroup
	ctxA, cancelA := context.WithCancel(context.Background())
	wg.Go(func() { apply(ctxA, 0) })
	<-inFlight // a's write reached Azure; its answer is held
	cancelA()

	ctxB, cancelB := context.WithCancel(context.Background())
	bDone := make(chan struct{})
	wg.Go(func() { defer close(bDone); apply(ctxB, 1) })
	wg.Go(func() { apply(context.Background(), 2) })
	waitPending(c, nsgID, 2)
	cancelB()
	<-bDone // b gave up while a's write is still in flight
	close(release)
	wg.Wait()
	waitIdle(c, nsgID)

	for _, r := range results {
		t.Logf("%s: %v", r.rule, r.err)
	}
	checkReportedTruthfully(t, c, nsgID, results)
	if results[0].err != nil {
		t.Errorf("a gave up after its write was sent: got %v, want it to wait and report the write", results[0].err)
	}
	if !errors.Is(results[1].err, context.Canceled) || !reportedNotWritten(results[1].err) {
		t.Errorf("b gave up before any write carried it: got %v, want a withdrawal matching context.Canceled", results[1].err)
	}
	if results[2].err != nil {
		t.Errorf("c: %v", results[2].err)
	}
}

// The leading caller (whose call starts the NSG's writes) is withdrawn like
// any other when its context ends before the document is assembled: its
// read of the NSG is held until then, and no write follows.
func TestApplyRuleChangesWithdrawsTheLeadingCaller(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	gate := newGatedTransport()
	c := gatedClient(t, env, gate, 0)
	c.gatherBatches = false

	reading, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	gate.setHook(func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error) {
		if isNSGRead(req) {
			first.Do(func() { close(reading); <-release })
		}
		return send()
	})
	srv.ResetCounters()
	ctx, cancel := context.WithCancel(context.Background())
	res := applyResult{rule: "jit-web-g-lead"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		res.written, res.err = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom(res.rule, "203.0.113.7", 200))}})
	}()
	<-reading
	cancel()
	close(release)
	<-done
	waitIdle(c, nsgID)

	if !errors.Is(res.err, context.Canceled) || !reportedNotWritten(res.err) {
		t.Errorf("got %v, want a withdrawal matching context.Canceled", res.err)
	}
	if n := srv.Counters().Requests["PUT nsg"]; n != 0 {
		t.Errorf("%d NSG writes for a withdrawn change, want none", n)
	}
	checkReportedTruthfully(t, c, nsgID, []applyResult{res})

	// A context that has ended already withdraws the call at once.
	res = applyResult{rule: "jit-web-g-late"}
	res.written, res.err = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom(res.rule, "203.0.113.8", 201))}})
	waitIdle(c, nsgID)
	if !errors.Is(res.err, context.Canceled) || !reportedNotWritten(res.err) {
		t.Errorf("ended context: got %v, want a withdrawal matching context.Canceled", res.err)
	}
	if n := srv.Counters().Requests["PUT nsg"]; n != 0 {
		t.Errorf("%d NSG writes for withdrawn changes, want none", n)
	}
}

// A write whose answer is lost may have landed: the SDK sends it again,
// Azure refuses the repeat (the ETag moved on), and the batch is read and
// written again. The caller, gone meanwhile, must not be told its change
// was withdrawn: it is on the NSG.
func TestApplyRuleChangesDoesNotWithdrawAWriteThatMayHaveLanded(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	gate := newGatedTransport()
	c := gatedClient(t, env, gate, 0)
	c.gatherBatches = false

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first sync.Once
	gate.setHook(func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error) {
		resp, err := send()
		lost := false
		if isNSGWrite(req) {
			first.Do(func() { lost = true })
		}
		if lost && err == nil {
			resp.Body.Close()
			cancel() // the caller gives up while the answer is on its way
			return nil, errors.New("connection reset by peer")
		}
		return resp, err
	})
	res := applyResult{rule: "jit-web-g-lost"}
	res.written, res.err = c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom(res.rule, "203.0.113.7", 200))}})
	waitIdle(c, nsgID)
	t.Logf("%s: %v", res.rule, res.err)
	checkReportedTruthfully(t, c, nsgID, []applyResult{res})
	if res.err != nil {
		t.Errorf("got %v, want the write reported", res.err)
	}
}

// reportedNotWritten and reportedUnknown check that an error says one
// thing about the NSG, and not the other.
func reportedNotWritten(err error) bool {
	return errors.Is(err, ErrNotWritten) && !errors.Is(err, ErrOutcomeUnknown)
}

func reportedUnknown(err error) bool {
	return errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, ErrNotWritten)
}

// A write whose every answer is lost may or may not have landed: the call
// says so, and does not claim that nothing was written. (Here the first
// try did land.)
func TestApplyRuleChangesReportsAnUnknownOutcome(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	gate := newGatedTransport()
	c := gatedClient(t, env, gate, 2)
	c.gatherBatches = false
	gate.setHook(func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error) {
		if !isNSGWrite(req) {
			return send()
		}
		if resp, err := send(); err == nil {
			resp.Body.Close()
		}
		return nil, errors.New("connection reset by peer")
	})
	res := applyResult{rule: "jit-web-g-unknown"}
	res.written, res.err = c.ApplyRuleChanges(context.Background(), nsgID, []RuleChange{{Put: ptr(allowFrom(res.rule, "203.0.113.7", 200))}})
	waitIdle(c, nsgID)
	t.Log(res.err)
	if !reportedUnknown(res.err) || res.written != nil {
		t.Errorf("got %+v, %v; want an unknown outcome", res.written, res.err)
	}
	checkReportedTruthfully(t, c, nsgID, []applyResult{res})
}

// A caller that gave up waits for the write carrying its change, but not
// forever: a write that Azure does not finish within its bound is reported
// as of unknown outcome (and one that the bound cut short before it was
// sent, as not written).
func TestApplyRuleChangesBoundsTheWaitForAWrite(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: time.Hour})
	gate := newGatedTransport()
	c := gatedClient(t, env, gate, 0)
	c.gatherBatches = false
	if _, err := c.ListRules(context.Background(), nsgID); err != nil { // a token, a connection
		t.Fatal(err)
	}
	id, _ := ParseNSGID(nsgID)
	b := c.batcherFor(id)
	b.mu.Lock()
	b.maxWrite = time.Second
	b.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Bool
	gate.setHook(func(req *http.Request, send func() (*http.Response, error)) (*http.Response, error) {
		if !isNSGWrite(req) {
			return send()
		}
		sent.Store(true)
		resp, err := send()
		cancel() // the caller gives up once Azure has the write
		return resp, err
	})
	_, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("jit-web-g-slow", "203.0.113.7", 200))}})
	t.Log(err)
	switch {
	case !sent.Load():
		if !reportedNotWritten(err) {
			t.Errorf("the bound ended the write before it was sent: got %v, want nothing written", err)
		}
		t.Log("the write was not sent within its bound: the case this test is about was not reached")
	case !reportedUnknown(err):
		t.Errorf("got %v, want an unknown outcome", err)
	}
}

// Every error says what it means for the NSG, and keeps its Azure kind.
func TestApplyRuleChangesErrorsSayWhatWasWritten(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	missing := strings.Replace(nsgID, "nsg-web", "nsg-gone", 1)
	_, err := c.ApplyRuleChanges(ctx, missing, []RuleChange{{Delete: "jit-web-g-1"}})
	if !errors.Is(err, ErrNotFound) || !reportedNotWritten(err) {
		t.Errorf("missing NSG: %v, want ErrNotFound and nothing written", err)
	}
	_, err = c.ApplyRuleChanges(ctx, "not-an-nsg-id", []RuleChange{{Delete: "jit-web-g-1"}})
	if !reportedNotWritten(err) {
		t.Errorf("malformed id: %v, want nothing written", err)
	}
}

// FlushConnection travels with rule changes: set and cleared in the same
// write as the rules, every other property kept, and read back by GetNSG.
func TestApplyRuleChangesSetsFlushConnection(t *testing.T) {
	_, nsgID, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	on, off := true, false
	for _, tc := range []struct {
		changes []RuleChange
		want    bool
	}{
		{[]RuleChange{{Put: ptr(allowFrom("jit-web-g-1", "203.0.113.7", 200)), FlushConnection: &on}}, true},
		{[]RuleChange{{Delete: "jit-web-g-1"}}, true}, // nil: unchanged
		{[]RuleChange{{FlushConnection: &off}}, false},
	} {
		if _, err := c.ApplyRuleChanges(ctx, nsgID, tc.changes); err != nil {
			t.Fatal(err)
		}
		nsg, err := c.GetNSG(ctx, nsgID)
		if err != nil {
			t.Fatal(err)
		}
		if nsg.FlushConnection != tc.want {
			t.Errorf("after %+v: flushConnection %v, want %v", tc.changes, nsg.FlushConnection, tc.want)
		}
	}
}

// A change that requires a rule fails its call, and writes nothing, when
// the rule is gone: jitd's close of a rule someone else has just closed.
func TestApplyRuleChangesRequireFailsWhenTheRuleIsGone(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 10 * time.Millisecond})
	c := clientFromEnv(t, env)
	ctx := context.Background()
	if _, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Put: ptr(allowFrom("jit-web-g-a1", "203.0.113.7", 200))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Require: "jit-web-g-a1"}, {Delete: "jit-web-g-a1"}}); err != nil {
		t.Fatalf("close of a rule that is there: %v", err)
	}
	before := srv.Counters()
	_, err := c.ApplyRuleChanges(ctx, nsgID, []RuleChange{{Require: "jit-web-g-a1"}, {Delete: "jit-web-g-a1"},
		{Put: ptr(allowFrom("unrelated", "203.0.113.8", 201))}})
	if !errors.Is(err, ErrRuleGone) || !reportedNotWritten(err) {
		t.Errorf("close of a rule already gone: %v, want ErrRuleGone and nothing written", err)
	}
	if after := srv.Counters(); after.Requests["PUT nsg"] != before.Requests["PUT nsg"] {
		t.Errorf("%d NSG writes for a call that required a missing rule", after.Requests["PUT nsg"]-before.Requests["PUT nsg"])
	}
	if rules, err := c.ListRules(ctx, nsgID); err != nil || len(rules) != 0 {
		t.Errorf("rules = %+v, %v; want none", rules, err)
	}
}
