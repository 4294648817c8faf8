package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// graphAzure starts a local Azure holding withJIT NSGs with a jit- rule and
// without NSGs with only a foreign rule, and a client for it.
func graphAzure(t *testing.T, opts azuresim.Options, withJIT, without int) (*azuresim.Server, *Client, []string) {
	t.Helper()
	type rule struct {
		Name       string         `json:"name"`
		Properties map[string]any `json:"properties"`
	}
	type nsg struct {
		ID         string `json:"id"`
		Location   string `json:"location"`
		Properties struct {
			SecurityRules []rule `json:"securityRules"`
		} `json:"properties"`
	}
	props := func(prio int) map[string]any {
		return map[string]any{"priority": prio, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
			"sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22"}
	}
	var seed struct {
		NSGs []nsg `json:"networkSecurityGroups"`
	}
	var jitIDs []string
	for i := range withJIT + without {
		n := nsg{ID: fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-%d/providers/Microsoft.Network/networkSecurityGroups/nsg-%03d",
			azuresim.DefaultSubscriptionID, i%3, i), Location: "westeurope"}
		n.Properties.SecurityRules = []rule{{Name: "allow-web", Properties: props(4000)}}
		if i < withJIT {
			n.Properties.SecurityRules = append(n.Properties.SecurityRules, rule{Name: "jit-p-deny-all", Properties: props(200)})
			jitIDs = append(jitIDs, n.ID)
		}
		seed.NSGs = append(seed.NSGs, n)
	}
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	opts.SeedFile = path
	srv := simtest.Start(t, opts)
	return srv, clientFromEnv(t, srv.Environ(simtest.CAFile())), jitIDs
}

func graphIDs(ns []GraphNSG) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	slices.Sort(out)
	return out
}

func TestJITQueryIsTheLocalAzures(t *testing.T) {
	if JITQuery != azuresim.ResourceGraphJITQuery {
		t.Fatalf("the local Azure answers\n%s\nbut the client sends\n%s", azuresim.ResourceGraphJITQuery, JITQuery)
	}
}

// Pages of $top rows are followed by their $skipToken to the end; NSGs
// without a jit- rule are not returned.
func TestJITNSGsFollowsSkipTokens(t *testing.T) {
	srv, c, want := graphAzure(t, azuresim.Options{}, 7, 5)
	c.SetGraphPageSize(3)
	got, stats, err := c.JITNSGs(t.Context(), []string{azuresim.DefaultSubscriptionID})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(graphIDs(got), want) {
		t.Errorf("got NSGs %v, want %v", graphIDs(got), want)
	}
	if stats.Queries != 3 || stats.Batches != 1 {
		t.Errorf("stats %+v, want 3 queries (pages of 3, 3 and 1) in 1 batch", stats)
	}
	if q := srv.LimitCounters().ResourceGraphQueries; q != 3 {
		t.Errorf("the local Azure answered %d queries, want 3", q)
	}
	for _, n := range got {
		if n.JITRules != 1 || len(n.Digest) != 64 || !strings.EqualFold(n.SubscriptionID, azuresim.DefaultSubscriptionID) {
			t.Errorf("row %+v: want 1 JIT rule, a SHA-256 digest and the subscription", n)
		}
	}
}

// More than 1,000 subscriptions are asked in batches of at most 1,000.
func TestJITNSGsBatchesSubscriptions(t *testing.T) {
	srv, c, want := graphAzure(t, azuresim.Options{}, 2, 1)
	subs := []string{azuresim.DefaultSubscriptionID}
	for i := range 1000 {
		subs = append(subs, fmt.Sprintf("00000000-0000-0000-0000-%012d", i))
	}
	got, stats, err := c.JITNSGs(t.Context(), subs)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(graphIDs(got), want) {
		t.Errorf("got NSGs %v, want %v", graphIDs(got), want)
	}
	if stats.Batches != 2 || stats.Queries != 2 {
		t.Errorf("stats %+v, want 2 batches (1,000 + 1 subscriptions), 2 queries", stats)
	}
	if lc := srv.LimitCounters(); lc.ResourceGraphQueries != 2 || lc.ResourceGraphRejected != 0 {
		t.Errorf("the local Azure counted %+v, want 2 queries answered and none rejected", lc)
	}
}

// fakeClock is a clock that moves only when waited on.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) wait(_ context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	f.t = f.t.Add(d)
	return nil
}

// When an answer says the quota is spent, the next query waits until the
// window resets instead of meeting a 429. The local Azure's clock is the
// same fake clock, so nothing sleeps.
func TestJITNSGsWaitsForTheQuota(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	srv, c, want := graphAzure(t, azuresim.Options{Now: clock.now}, 20, 0)
	c.SetGraphClock(clock.now, clock.wait)
	c.SetGraphPageSize(1)
	got, stats, err := c.JITNSGs(t.Context(), []string{azuresim.DefaultSubscriptionID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || stats.Queries != 20 {
		t.Fatalf("got %d NSGs in %d queries, want %d in 20", len(got), stats.Queries, len(want))
	}
	lc := srv.LimitCounters()
	if lc.ResourceGraphThrottled != 0 {
		t.Errorf("%d queries were refused over quota; the client should have waited", lc.ResourceGraphThrottled)
	}
	// 15 queries spend the window; the 16th waits for the next one.
	if len(clock.waits) != 1 || clock.waits[0] <= 0 || clock.waits[0] > azuresim.ResourceGraphQuotaWindow {
		t.Errorf("waits %v, want one wait of at most %s", clock.waits, azuresim.ResourceGraphQuotaWindow)
	}
	if stats.Waited != clock.waits[0] {
		t.Errorf("stats say %s waited, the clock %v", stats.Waited, clock.waits)
	}
}

func TestParseQuotaReset(t *testing.T) {
	for in, want := range map[string]time.Duration{"00:00:05": 5 * time.Second, "00:01:02": 62 * time.Second, "01:00:00": time.Hour, "00:00:00.5": 500 * time.Millisecond} {
		if got, ok := parseQuotaReset(in); !ok || got != want {
			t.Errorf("parseQuotaReset(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "5", "00:05", "aa:00:00", "-1:00:00"} {
		if _, ok := parseQuotaReset(bad); ok {
			t.Errorf("parseQuotaReset(%q) accepted", bad)
		}
	}
}

// ListSubscriptions lists what GET /subscriptions shows.
func TestListSubscriptions(t *testing.T) {
	_, c, _ := graphAzure(t, azuresim.Options{}, 0, 1)
	subs, err := c.ListSubscriptions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 1 || !strings.EqualFold(subs[0], azuresim.DefaultSubscriptionID) {
		t.Errorf("subscriptions %v, want the local Azure's one", subs)
	}
}
