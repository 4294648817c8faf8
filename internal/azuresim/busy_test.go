package azuresim_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// queueRule is the i-th rule of the queue tests.
func queueRule(i int) *armnetwork.SecurityRule {
	return tcpRule(fmt.Sprintf("jit-q-%d", i), int32(300+i), armnetwork.SecurityRuleAccessAllow, "203.0.113.7", "22")
}

// TestBusyQueueRunsWritesInTurn: by default a write to a busy NSG is
// accepted and waits its turn, as on today's ARM; each queued write then
// takes the write latency, and reads show every accepted change at once.
func TestBusyQueueRunsWritesInTurn(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	c := newClients(t, srv, nil, -1) // no retries: a refusal would show
	ctx := context.Background()
	createNSG(t, c, "nsg-q")
	srv.SetWriteLatency(time.Minute)
	srv.ResetCounters()

	const n = 3
	pollers := make([]*runtime.Poller[armnetwork.SecurityRulesClientCreateOrUpdateResponse], n)
	for i := range n {
		p, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-q", *queueRule(i).Name, *queueRule(i), nil)
		if err != nil {
			t.Fatalf("write %d to the busy NSG: %v, want it queued", i, err)
		}
		pollers[i] = p
	}
	if cs := srv.Counters(); cs.Queued != n-1 || cs.Busy != 0 || cs.QueueFull != 0 {
		t.Errorf("counters: queued %d, busy %d, queue full %d; want %d, 0, 0", cs.Queued, cs.Busy, cs.QueueFull, n-1)
	}
	// Reads (and their ETag) show all three changes, still Updating.
	nsg, err := c.groups.Get(ctx, testRG, "nsg-q", nil)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, r := range nsg.Properties.SecurityRules {
		states = append(states, *r.Name+":"+string(*r.Properties.ProvisioningState))
	}
	if want := []string{"jit-q-0:Updating", "jit-q-1:Updating", "jit-q-2:Updating"}; !slices.Equal(states, want) {
		t.Errorf("rules while queued: %v, want %v", states, want)
	}

	// They complete one write latency apart, in the order accepted.
	for i := range n {
		clock.Advance(time.Minute)
		var done []string
		for _, ev := range writesTo(srv, "nsg-q") {
			if !ev.Completed.IsZero() {
				done = append(done, ev.RuleName)
			}
		}
		if len(done) != i+1 || done[i] != fmt.Sprintf("jit-q-%d", i) {
			t.Errorf("after %d write latencies completed %v", i+1, done)
		}
	}
	// One poll each (PollUntilDone would first wait the Retry-After of the
	// answer to the PUT, in real time).
	for i, p := range pollers {
		if _, err := p.Poll(ctx); err != nil || !p.Done() {
			t.Errorf("queued write %d: done %t, %v", i, p.Done(), err)
			continue
		}
		if _, err := p.Result(ctx); err != nil {
			t.Errorf("queued write %d: %v", i, err)
		}
	}
	evs := writesTo(srv, "nsg-q")
	for i, ev := range evs {
		if got, want := ev.Completed.Sub(evs[0].Accepted), time.Duration(i+1)*time.Minute; ev.Result != "Succeeded" || got != want {
			t.Errorf("write %d: %s after %s, want Succeeded after %s", i, ev.Result, got, want)
		}
	}
}

// writesTo returns the rule writes of the NSG named nsg, in order.
func writesTo(srv *azuresim.Server, nsg string) []azuresim.Event {
	var out []azuresim.Event
	for _, ev := range srv.Events() {
		if ev.RuleName != "" && strings.HasSuffix(strings.ToLower(ev.NSGID), "/"+nsg) {
			out = append(out, ev)
		}
	}
	return out
}

// TestBusyQueueOverflow: a write finding the queue full meets ARM's busy
// error, 429 RetryableErrorDueToAnotherOperation or, with BusyStatus 409,
// 409 AnotherOperationInProgress, and is counted.
func TestBusyQueueOverflow(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{{http.StatusTooManyRequests, "RetryableErrorDueToAnotherOperation"}, {http.StatusConflict, "AnotherOperationInProgress"}} {
		t.Run(tc.code, func(t *testing.T) {
			clock := simtest.NewClock(time.Now())
			srv := simtest.Start(t, azuresim.Options{Now: clock.Now, WriteQueue: 2, BusyStatus: tc.status})
			c := newClients(t, srv, nil, -1)
			ctx := context.Background()
			createNSG(t, c, "nsg-full")
			srv.SetWriteLatency(time.Minute)
			srv.ResetCounters()
			for i := range 3 { // one running, two queued
				if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-full", *queueRule(i).Name, *queueRule(i), nil); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			_, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-full", *queueRule(3).Name, *queueRule(3), nil)
			if status, code := errorCode(err); status != tc.status || code != tc.code {
				t.Errorf("write to a full queue: %d %s (%v), want %d %s", status, code, err, tc.status, tc.code)
			}
			if cs := srv.Counters(); cs.Queued != 2 || cs.QueueFull != 1 || cs.Busy != 1 {
				t.Errorf("counters: queued %d, queue full %d, busy %d; want 2, 1, 1", cs.Queued, cs.QueueFull, cs.Busy)
			}
			// Once the running write ends, the queue has room again.
			clock.Advance(time.Minute)
			if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-full", *queueRule(3).Name, *queueRule(3), nil); err != nil {
				t.Errorf("write after the queue moved: %v", err)
			}
		})
	}
}

// TestBusyQueueWholeNSGWriteKeepsQueuedChanges: a client that reads the NSG
// while rule writes are queued and writes it back with If-Match builds on
// them: nothing queued is lost, and a stale ETag still fails.
func TestBusyQueueWholeNSGWriteKeepsQueuedChanges(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	c := newClients(t, srv, nil, -1)
	ctx := context.Background()
	stale := *createNSG(t, c, "nsg-w").Etag
	srv.SetWriteLatency(time.Minute)
	for i := range 2 {
		if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-w", *queueRule(i).Name, *queueRule(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	nsg, err := c.groups.Get(ctx, testRG, "nsg-w", nil)
	if err != nil {
		t.Fatal(err)
	}
	nsg.Properties.SecurityRules = append(nsg.Properties.SecurityRules, queueRule(2))
	ifMatch := func(etag string) context.Context {
		return policy.WithHTTPHeader(ctx, http.Header{"If-Match": {etag}})
	}
	if _, err := c.groups.BeginCreateOrUpdate(ifMatch(*nsg.Etag), testRG, "nsg-w", nsg.SecurityGroup, nil); err != nil {
		t.Fatalf("whole-NSG write with the queued ETag: %v", err)
	}
	_, err = c.groups.BeginCreateOrUpdate(ifMatch(stale), testRG, "nsg-w", nsg.SecurityGroup, nil)
	if status, _ := errorCode(err); status != http.StatusPreconditionFailed {
		t.Errorf("whole-NSG write with a stale ETag: %v, want 412", err)
	}
	clock.Advance(3 * time.Minute)
	got, err := c.groups.Get(ctx, testRG, "nsg-w", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got.Properties.SecurityRules {
		names = append(names, *r.Name+":"+string(*r.Properties.ProvisioningState))
	}
	if want := []string{"jit-q-0:Succeeded", "jit-q-1:Succeeded", "jit-q-2:Succeeded"}; !slices.Equal(names, want) {
		t.Errorf("rules: %v, want %v", names, want)
	}
}

// TestBusyModeControl: /_sim/config shows the busy mode (queue by default)
// and switches it; a write to a busy NSG is then refused.
func TestBusyModeControl(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	raw := newRawClient(t, srv)
	if _, b := raw.must(http.MethodGet, "/_sim/config", nil); !strings.Contains(string(b), `"busyMode":"queue"`) {
		t.Errorf("default config: %s", b)
	}
	if resp, _ := raw.must(http.MethodPut, "/_sim/config", map[string]any{"busyMode": "wait"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("busy mode wait accepted: %d", resp.StatusCode)
	}
	if resp, b := raw.must(http.MethodPut, "/_sim/config", map[string]any{"busyMode": "refuse"}); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"busyMode":"refuse"`) {
		t.Errorf("PUT busy mode refuse: %d %s", resp.StatusCode, b)
	}
	c := newClients(t, srv, nil, -1)
	createNSG(t, c, "nsg-ctl")
	srv.SetWriteLatency(time.Minute)
	ctx := context.Background()
	if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-ctl", *queueRule(0).Name, *queueRule(0), nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-ctl", *queueRule(1).Name, *queueRule(1), nil)
	if status, code := errorCode(err); status != http.StatusTooManyRequests || code != "RetryableErrorDueToAnotherOperation" {
		t.Errorf("write to a busy NSG under refuse: %d %s (%v)", status, code, err)
	}
}
