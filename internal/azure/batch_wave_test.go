package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// waveNSG is an NSG served from memory whose whole-NSG writes take latency
// (of the synctest bubble's clock) and are counted.
type waveNSG struct {
	mu      sync.Mutex
	rules   []json.RawMessage
	etag    int
	puts    int
	latency time.Duration
	// staleOnce makes the first PUT meet a write by someone else: it is
	// answered 412 after staleAfter.
	staleOnce  bool
	staleAfter time.Duration
}

func (n *waveNSG) Do(req *http.Request) (*http.Response, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if req.Method == http.MethodPut {
		var doc struct {
			Properties struct {
				SecurityRules []json.RawMessage `json:"securityRules"`
			} `json:"properties"`
		}
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, err
		}
		if n.staleOnce {
			n.staleOnce = false
			n.mu.Unlock()
			time.Sleep(n.staleAfter)
			n.mu.Lock()
			n.etag++
		}
		if req.Header.Get("If-Match") != n.etagString() {
			return n.answer(req, http.StatusPreconditionFailed, `{"error":{"code":"PreconditionFailed","message":"stale"}}`), nil
		}
		n.mu.Unlock()
		time.Sleep(n.latency) // Azure serialises the writes of one NSG
		n.mu.Lock()
		n.puts++
		n.etag++
		n.rules = doc.Properties.SecurityRules
	}
	body, _ := json.Marshal(map[string]any{
		"id": testNSG, "name": "nsg", "location": "westeurope", "etag": n.etagString(),
		"properties": map[string]any{"securityRules": n.rules, "provisioningState": "Succeeded"},
	})
	return n.answer(req, http.StatusOK, string(body)), nil
}

func (n *waveNSG) etagString() string { return fmt.Sprintf(`W/"%d"`, n.etag) }

func (n *waveNSG) answer(req *http.Request, status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewBufferString(body)), Request: req}
}

// TestApplyRuleChangesWaveBound: changes made as Terraform makes them,
// ten at a time, each caller starting its next change only once its last
// was written and after a delay of its own (0 to 190 ms: Terraform's
// bookkeeping, the resource's reads), take at most one write per ten
// changes plus one. Before the batcher waited for the batch it expects, a
// wave cut in two stayed cut and 50 changes took 10 writes.
func TestApplyRuleChangesWaveBound(t *testing.T) {
	for _, tc := range []struct{ changes, bound int }{{50, 6}, {100, 11}} {
		t.Run(fmt.Sprint(tc.changes), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nsg := &waveNSG{latency: 500 * time.Millisecond}
				c := newWaveClient(t, nsg)
				var mu sync.Mutex
				next := 0
				var wg sync.WaitGroup
				for range 10 {
					wg.Go(func() {
						for {
							mu.Lock()
							i := next
							next++
							mu.Unlock()
							if i >= tc.changes {
								return
							}
							time.Sleep(time.Duration(i*37%20) * 10 * time.Millisecond)
							if _, err := c.ApplyRuleChanges(context.Background(), testNSG, []RuleChange{chooseFree(fmt.Sprintf("jit-g-%03d", i), "203.0.113.7")}); err != nil {
								t.Errorf("change %d: %v", i, err)
								return
							}
						}
					})
				}
				wg.Wait()
				if len(nsg.rules) != tc.changes || nsg.puts > tc.bound {
					t.Errorf("%d changes took %d writes and left %d rules; want at most %d writes, %d rules",
						tc.changes, nsg.puts, len(nsg.rules), tc.bound, tc.changes)
				}
				t.Logf("%d changes: %d writes", tc.changes, nsg.puts)
				// Let the writer see that nothing more comes, and end.
				time.Sleep(time.Second)
			})
		})
	}
}

func newWaveClient(t *testing.T, nsg *waveNSG) *Client {
	t.Helper()
	c, err := NewClient(context.Background(), Config{SubscriptionID: testSub}, ClientOptions{
		PollFrequency: time.Millisecond,
		RetryDelay:    time.Microsecond,
		Transport:     nsg,
		Credential:    staticCredential{token: fakeJWT(`{"tid":"t","oid":"o","appid":"a"}`)},
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// TestApplyRuleChangesRetryTakesQueuedChangesAlong: changes queued while a
// write is refused for a stale ETag go into its retry, rather than into a
// write of their own after it.
func TestApplyRuleChangesRetryTakesQueuedChangesAlong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nsg := &waveNSG{latency: 500 * time.Millisecond, staleOnce: true, staleAfter: 100 * time.Millisecond}
		c := newWaveClient(t, nsg)
		var wg sync.WaitGroup
		change := func(i int) {
			if _, err := c.ApplyRuleChanges(context.Background(), testNSG, []RuleChange{chooseFree(fmt.Sprintf("jit-g-%03d", i), "203.0.113.7")}); err != nil {
				t.Errorf("change %d: %v", i, err)
			}
		}
		for i := range 3 {
			wg.Go(func() { change(i) })
		}
		// The first write is sent after the gather (a pause of quietGather),
		// and answered 412 100 ms later; these three arrive meanwhile.
		time.Sleep(quietGather + 50*time.Millisecond)
		for i := 3; i < 6; i++ {
			wg.Go(func() { change(i) })
		}
		wg.Wait()
		if nsg.puts != 1 || len(nsg.rules) != 6 {
			t.Errorf("%d writes landed, leaving %d rules; want the retry to carry all 6 changes in 1", nsg.puts, len(nsg.rules))
		}
		time.Sleep(time.Second)
	})
}
