package azuresim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

const graphPath = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"

func graphBody(query string, subs []string, top int, skipToken string) map[string]any {
	opts := map[string]any{"$top": top, "resultFormat": "objectArray"}
	if skipToken != "" {
		opts["$skipToken"] = skipToken
	}
	return map[string]any{"query": query, "subscriptions": subs, "options": opts}
}

type graphAnswer struct {
	TotalRecords    int               `json:"totalRecords"`
	Count           int               `json:"count"`
	ResultTruncated string            `json:"resultTruncated"`
	SkipToken       string            `json:"$skipToken"`
	Data            []json.RawMessage `json:"data"`
	Error           *struct {
		Code    string `json:"code"`
		Details []struct {
			Code string `json:"code"`
		} `json:"details"`
	} `json:"error"`
}

func decodeGraph(t *testing.T, b []byte) graphAnswer {
	t.Helper()
	var a graphAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return a
}

// The local Azure answers the JIT query over its NSGs with paging, and
// refuses what Resource Graph would: other queries, more than 1,000
// subscriptions, a $top over 1,000, a skip token of another query.
func TestResourceGraphAnswersTheJITQuery(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newRawClient(t, srv)
	nets := newClients(t, srv, secretCredential(t, srv), 0)
	createNSG(t, nets, "nsg-plain", tcpRule("allow-web", 4000, "Allow", "*", "443"))
	for i := range 3 {
		createNSG(t, nets, fmt.Sprintf("nsg-jit-%d", i), tcpRule("jit-p-deny-all", 200, "Deny", "*", "22"))
	}
	subs := []string{srv.SubscriptionID()}

	resp, b := c.must(http.MethodPost, graphPath, graphBody(azuresim.ResourceGraphJITQuery, subs, 2, ""))
	a := decodeGraph(t, b)
	if resp.StatusCode != http.StatusOK || a.TotalRecords != 3 || a.Count != 2 || a.SkipToken == "" || a.ResultTruncated != "false" {
		t.Fatalf("first page: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("x-ms-user-quota-remaining") != "14" || resp.Header.Get("x-ms-user-quota-resets-after") == "" {
		t.Errorf("quota headers %v", resp.Header)
	}
	var row struct {
		ID             string `json:"id"`
		SubscriptionID string `json:"subscriptionId"`
		Rules          []struct {
			Name string `json:"name"`
			Etag string `json:"etag"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(a.Data[0], &row); err != nil || !strings.Contains(row.ID, "nsg-jit-0") || row.SubscriptionID != srv.SubscriptionID() ||
		len(row.Rules) != 1 || row.Rules[0].Name != "jit-p-deny-all" || row.Rules[0].Etag == "" {
		t.Errorf("row %s (%v)", a.Data[0], err)
	}
	resp, b = c.must(http.MethodPost, graphPath, graphBody(azuresim.ResourceGraphJITQuery, subs, 2, a.SkipToken))
	if a2 := decodeGraph(t, b); resp.StatusCode != http.StatusOK || a2.Count != 1 || a2.SkipToken != "" {
		t.Errorf("second page: %d %s", resp.StatusCode, b)
	}
	// Indentation does not matter.
	reflowed := strings.ReplaceAll(azuresim.ResourceGraphJITQuery, "\n", "\n    ")
	if resp, b = c.must(http.MethodPost, graphPath, graphBody(reflowed, subs, 10, "")); resp.StatusCode != http.StatusOK {
		t.Errorf("reflowed query: %d %s", resp.StatusCode, b)
	}

	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
	}
	for name, tc := range map[string]struct {
		body   map[string]any
		detail string
	}{
		"another query":       {graphBody("Resources | project id", subs, 10, ""), "InvalidQuery"},
		"1,001 subscriptions": {graphBody(azuresim.ResourceGraphJITQuery, many, 10, ""), "InvalidSubscriptions"},
		"$top 1,001":          {graphBody(azuresim.ResourceGraphJITQuery, subs, 1001, ""), "InvalidTop"},
		"foreign skip token":  {graphBody(azuresim.ResourceGraphJITQuery, append(subs, many[0]), 2, a.SkipToken), "InvalidSkipToken"},
	} {
		resp, b := c.must(http.MethodPost, graphPath, tc.body)
		e := decodeGraph(t, b).Error
		if resp.StatusCode != http.StatusBadRequest || e == nil || e.Code != "BadRequest" || len(e.Details) != 1 || e.Details[0].Code != tc.detail {
			t.Errorf("%s: %d %s, want 400 BadRequest with detail %s", name, resp.StatusCode, b, tc.detail)
		}
	}
	if lc := srv.LimitCounters(); lc.ResourceGraphQueries != 3 || lc.ResourceGraphRejected != 4 {
		t.Errorf("counters %+v, want 3 answered and 4 rejected", lc)
	}
}

// 15 queries per 5 seconds per caller; the 16th gets 429 with Retry-After
// and the quota headers; a new window answers again.
func TestResourceGraphQuota(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	c := newRawClient(t, srv)
	body := graphBody(azuresim.ResourceGraphJITQuery, []string{srv.SubscriptionID()}, 10, "")
	for i := range azuresim.ResourceGraphQuota {
		resp, b := c.must(http.MethodPost, graphPath, body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ms-user-quota-remaining") != fmt.Sprint(azuresim.ResourceGraphQuota-1-i) {
			t.Fatalf("query %d: %d %v %s", i+1, resp.StatusCode, resp.Header, b)
		}
	}
	clock.Advance(2 * time.Second)
	resp, b := c.must(http.MethodPost, graphPath, body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" ||
		resp.Header.Get("x-ms-user-quota-remaining") != "0" || resp.Header.Get("x-ms-user-quota-resets-after") != "00:00:03" {
		t.Fatalf("over quota: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	if e := decodeGraph(t, b).Error; e == nil || e.Code != "RateLimiting" {
		t.Errorf("over quota body %s, want RateLimiting", b)
	}
	clock.Advance(3 * time.Second)
	if resp, b := c.must(http.MethodPost, graphPath, body); resp.StatusCode != http.StatusOK || resp.Header.Get("x-ms-user-quota-remaining") != "14" {
		t.Errorf("new window: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	if lc := srv.LimitCounters(); lc.ResourceGraphThrottled != 1 || lc.ResourceGraphQueries != 16 {
		t.Errorf("counters %+v, want 1 throttled, 16 answered", lc)
	}
}

// ARM's read limit, when on, is a token bucket per subscription: a read
// over it gets 429 SubscriptionRequestsThrottled with Retry-After, and
// is counted.
func TestReadLimit(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now, ReadRate: azuresim.DefaultReadRate, ReadBurst: 3})
	c := newRawClient(t, srv)
	path := "/subscriptions/" + srv.SubscriptionID() + "/providers/Microsoft.Network/networkSecurityGroups?api-version=2025-05-01"
	for i := range 3 {
		resp, b := c.must(http.MethodGet, path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ms-ratelimit-remaining-subscription-reads") != fmt.Sprint(2-i) {
			t.Fatalf("read %d: %d %v %s", i+1, resp.StatusCode, resp.Header, b)
		}
	}
	resp, b := c.must(http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "SubscriptionRequestsThrottled") {
		t.Fatalf("read over the limit: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	clock.Advance(time.Second / azuresim.DefaultReadRate)
	if resp, b := c.must(http.MethodGet, path, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("read after a refill: %d %s", resp.StatusCode, b)
	}
	if n := srv.LimitCounters().ReadThrottled; n != 1 {
		t.Errorf("ReadThrottled %d, want 1", n)
	}
}

// Off by default.
func TestReadLimitOffByDefault(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newRawClient(t, srv)
	path := "/subscriptions/" + srv.SubscriptionID() + "/resourcegroups?api-version=2021-04-01"
	for range 300 {
		if resp, b := c.must(http.MethodGet, path, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	if n := srv.LimitCounters().ReadThrottled; n != 0 {
		t.Errorf("ReadThrottled %d with the limit off", n)
	}
}

// With GraphLag, Resource Graph trails ARM: what existed before the first
// query is there at once; a change shows GraphLag after the first query
// that saw it, and not before; an NSG created later appears, and one whose
// JIT rules go disappears, each a lag later.
func TestResourceGraphLag(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	const lag = 30 * time.Second
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now, GraphLag: lag})
	c := newRawClient(t, srv)
	nets := newClients(t, srv, secretCredential(t, srv), 0)
	createNSG(t, nets, "nsg-a", tcpRule("jit-p-deny-all", 200, "Deny", "*", "22"), tcpRule("jit-p-guard", 199, "Deny", "*", "22"))
	body := graphBody(azuresim.ResourceGraphJITQuery, []string{srv.SubscriptionID()}, 100, "")
	answer := func() map[string]int { // NSG name → rules in the answer
		t.Helper()
		resp, b := c.must(http.MethodPost, graphPath, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %d %s", resp.StatusCode, b)
		}
		out := map[string]int{}
		for _, d := range decodeGraph(t, b).Data {
			var row struct {
				ID    string            `json:"id"`
				Rules []json.RawMessage `json:"rules"`
			}
			if err := json.Unmarshal(d, &row); err != nil {
				t.Fatal(err)
			}
			out[row.ID[strings.LastIndex(row.ID, "/")+1:]] = len(row.Rules)
		}
		return out
	}
	if got := answer(); got["nsg-a"] != 2 || len(got) != 1 {
		t.Fatalf("first query %v, want nsg-a with its 2 rules (it predates the first query)", got)
	}

	if err := deleteRule(t.Context(), nets, "nsg-a", "jit-p-guard"); err != nil {
		t.Fatal(err)
	}
	createNSG(t, nets, "nsg-b", tcpRule("jit-q-deny-all", 200, "Deny", "*", "3389"))
	if got := answer(); got["nsg-a"] != 2 || len(got) != 1 {
		t.Fatalf("right after the changes %v, want the old answer (nsg-a with 2 rules, no nsg-b)", got)
	}
	clock.Advance(lag - time.Second)
	if got := answer(); got["nsg-a"] != 2 || len(got) != 1 {
		t.Fatalf("a second short of the lag %v, want the old answer", got)
	}
	clock.Advance(time.Second)
	if got := answer(); got["nsg-a"] != 1 || got["nsg-b"] != 1 || len(got) != 2 {
		t.Fatalf("a lag after the changes %v, want nsg-a with 1 rule and nsg-b", got)
	}

	if err := deleteRule(t.Context(), nets, "nsg-b", "jit-q-deny-all"); err != nil {
		t.Fatal(err)
	}
	if got := answer(); got["nsg-b"] != 1 {
		t.Fatalf("right after nsg-b lost its JIT rule %v, want nsg-b still there", got)
	}
	clock.Advance(lag)
	if got := answer(); len(got) != 1 || got["nsg-a"] != 1 {
		t.Fatalf("a lag after nsg-b lost its JIT rule %v, want nsg-a only", got)
	}
}
