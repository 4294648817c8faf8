package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// JITQuery is the Azure Resource Graph query jitd sends to find the
// network security groups that hold JIT rules, over at most
// MaxGraphSubscriptions subscriptions at a time:
//
//	Resources
//	| where type =~ 'microsoft.network/networksecuritygroups'
//	| where tostring(properties.securityRules) contains 'jit-'
//	| project id, subscriptionId, rules = properties.securityRules
//	| order by id asc
//
// contains is case-insensitive and also matches a description, so the
// query may return an NSG without a JIT rule; the client keeps only the
// NSGs with a rule whose name starts with jit- (jit.RuleNamePrefix). It
// asks for the rules themselves, not only the ids, so that the client can
// tell an NSG that changed since jitd last read it through ARM: the digest
// of the rules as Resource Graph holds them (with each rule's etag, which
// ARM renews on every write of the NSG) changes whenever they do. It uses
// only operators Resource Graph documents (where, project, order by,
// tostring, =~, contains), no mv-apply.
//
// The local Azure (internal/azuresim/resourcegraph.go) answers exactly this
// text, with runs of white space collapsed, and refuses any other query.
const JITQuery = `Resources
| where type =~ 'microsoft.network/networksecuritygroups'
| where tostring(properties.securityRules) contains 'jit-'
| project id, subscriptionId, rules = properties.securityRules
| order by id asc`

// Resource Graph's documented limits.
const (
	// MaxGraphSubscriptions is the most subscriptions one query may name.
	MaxGraphSubscriptions = 1000
	// MaxGraphPage is the largest page ($top) Resource Graph returns.
	MaxGraphPage = 1000
)

// GraphNSG is a network security group holding JIT rules, as Resource
// Graph reports it.
type GraphNSG struct {
	ID             string
	SubscriptionID string
	// Digest is a hex SHA-256 of the NSG's securityRules as Resource Graph
	// holds them (canonical JSON): equal digests mean unchanged rules.
	Digest string
	// JITRules is how many of its rules are in the jit- namespace.
	JITRules int
}

// GraphStats counts what one JITNSGs call did.
type GraphStats struct {
	Queries int           // requests sent (pages), retries not counted
	Batches int           // subscription batches
	Waited  time.Duration // time spent waiting for the user quota
}

// graphQuota is what Resource Graph's last answer said of the caller's
// quota: when it is spent, the next query waits for the window to reset
// rather than meeting a 429.
type graphQuota struct {
	mu        sync.Mutex
	exhausted bool
	resetsAt  time.Time
}

// graphClock is the clock and the wait of the quota, replaceable in tests.
type graphClock struct {
	now  func() time.Time
	wait func(ctx context.Context, d time.Duration) error
}

// graph returns the Resource Graph client, built once over the same
// pipeline options (cloud, credential, retries, user agent) as the
// armnetwork clients.
func (c *Client) graph() (*armresourcegraph.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.graphClient == nil {
		gc, err := armresourcegraph.NewClient(c.cred, c.armOptions)
		if err != nil {
			return nil, &Error{Kind: KindInvalid, Op: "prepare", Message: err.Error(), Err: err}
		}
		c.graphClient = gc
	}
	return c.graphClient, nil
}

// clockForGraph is the quota's clock: the system clock and a timer unless
// a test set others.
func (c *Client) clockForGraph() graphClock {
	c.mu.Lock()
	defer c.mu.Unlock()
	clock := c.graphClock
	if clock.now == nil {
		clock.now = time.Now
	}
	if clock.wait == nil {
		clock.wait = waitContext
	}
	return clock
}

// SetGraphClock replaces the clock and the wait used for Resource Graph's
// quota (tests; nil keeps the default).
func (c *Client) SetGraphClock(now func() time.Time, wait func(ctx context.Context, d time.Duration) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now != nil {
		c.graphClock.now = now
	}
	if wait != nil {
		c.graphClock.wait = wait
	}
}

// SetGraphPageSize sets $top (1..MaxGraphPage; default MaxGraphPage), for
// tests of paging.
func (c *Client) SetGraphPageSize(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.graphPage = min(max(n, 1), MaxGraphPage)
}

// JITNSGs runs JITQuery over the subscriptions, in batches of at most
// MaxGraphSubscriptions, following every page's $skipToken, and returns the
// NSGs holding JIT rules, each once. It honours Resource Graph's user quota:
// when an answer says none is left (x-ms-user-quota-remaining: 0), the next
// query waits x-ms-user-quota-resets-after; a 429 that comes anyway is
// retried after its Retry-After by the pipeline.
func (c *Client) JITNSGs(ctx context.Context, subscriptions []string) ([]GraphNSG, GraphStats, error) {
	const op = "query Azure Resource Graph for network security groups holding JIT rules in"
	var stats GraphStats
	gc, err := c.graph()
	if err != nil {
		return nil, stats, err
	}
	subs := dedupeFold(subscriptions)
	if len(subs) == 0 {
		return nil, stats, nil
	}
	c.mu.Lock()
	page := c.graphPage
	c.mu.Unlock()
	if page <= 0 {
		page = MaxGraphPage
	}
	var out []GraphNSG
	seen := map[string]bool{}
	for start := 0; start < len(subs); start += MaxGraphSubscriptions {
		batch := subs[start:min(start+MaxGraphSubscriptions, len(subs))]
		stats.Batches++
		scope := fmt.Sprintf("%d subscription(s) (%s…)", len(batch), batch[0])
		req := armresourcegraph.QueryRequest{
			Query:         to.Ptr(JITQuery),
			Subscriptions: to.SliceOfPtrs(batch...),
			Options: &armresourcegraph.QueryRequestOptions{
				Top:          to.Ptr(int32(page)),
				ResultFormat: to.Ptr(armresourcegraph.ResultFormatObjectArray),
			},
		}
		for {
			waited, err := c.waitGraphQuota(ctx)
			stats.Waited += waited
			if err != nil {
				return out, stats, newError(op, scope, err)
			}
			var raw *http.Response
			resp, err := gc.Resources(policy.WithCaptureResponse(ctx, &raw), req, nil)
			stats.Queries++
			c.noteGraphQuota(raw)
			if err != nil {
				return out, stats, newError(op, scope, err)
			}
			rows, err := graphRows(resp.Data)
			if err != nil {
				return out, stats, &Error{Kind: KindInvalid, Op: op, ResourceID: scope, Message: err.Error(), Err: err}
			}
			for _, n := range rows {
				if k := strings.ToLower(n.ID); n.JITRules > 0 && !seen[k] {
					seen[k] = true
					out = append(out, n)
				}
			}
			if resp.SkipToken == nil || *resp.SkipToken == "" {
				break
			}
			req.Options.SkipToken = resp.SkipToken
		}
	}
	return out, stats, nil
}

// graphRows decodes an objectArray page of JITQuery.
func graphRows(data any) ([]GraphNSG, error) {
	items, ok := data.([]any)
	if !ok && data != nil {
		return nil, fmt.Errorf("data of type %T from Resource Graph, want an object array", data)
	}
	out := make([]GraphNSG, 0, len(items))
	for _, it := range items {
		row, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a row of type %T from Resource Graph, want an object", it)
		}
		id, _ := row["id"].(string)
		if _, err := ParseNSGID(id); err != nil {
			return nil, fmt.Errorf("a row from Resource Graph without a network security group id: %w", err)
		}
		sub, _ := row["subscriptionId"].(string)
		rules, _ := row["rules"].([]any)
		// encoding/json sorts map keys: the digest is of canonical JSON.
		canon, err := json.Marshal(rules)
		if err != nil {
			return nil, fmt.Errorf("encoding the rules of %s: %w", id, err)
		}
		sum := sha256.Sum256(canon)
		n := GraphNSG{ID: id, SubscriptionID: sub, Digest: hex.EncodeToString(sum[:])}
		for _, r := range rules {
			if m, ok := r.(map[string]any); ok {
				if name, _ := m["name"].(string); strings.HasPrefix(name, jit.RuleNamePrefix) {
					n.JITRules++
				}
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// waitGraphQuota waits, when the last answer spent the quota, until the
// window resets. It returns how long it waited.
func (c *Client) waitGraphQuota(ctx context.Context) (time.Duration, error) {
	clock := c.clockForGraph()
	q := &c.graphQuota
	q.mu.Lock()
	exhausted, at := q.exhausted, q.resetsAt
	q.mu.Unlock()
	if !exhausted {
		return 0, nil
	}
	d := at.Sub(clock.now())
	if d <= 0 {
		return 0, nil
	}
	if err := clock.wait(ctx, d); err != nil {
		return 0, err
	}
	return d, nil
}

// noteGraphQuota reads the quota headers of an answer (any status).
func (c *Client) noteGraphQuota(resp *http.Response) {
	if resp == nil {
		return
	}
	remaining, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("x-ms-user-quota-remaining")))
	if err != nil {
		return
	}
	resets, ok := parseQuotaReset(resp.Header.Get("x-ms-user-quota-resets-after"))
	now := c.clockForGraph().now()
	q := &c.graphQuota
	q.mu.Lock()
	defer q.mu.Unlock()
	q.exhausted = remaining <= 0 && ok
	q.resetsAt = now.Add(resets)
}

// parseQuotaReset parses Resource Graph's hh:mm:ss.
func parseQuotaReset(v string) (time.Duration, bool) {
	parts := strings.Split(strings.TrimSpace(v), ":")
	if len(parts) != 3 {
		return 0, false
	}
	var total time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		n, err := strconv.ParseFloat(parts[i], 64)
		if err != nil || n < 0 {
			return 0, false
		}
		total += time.Duration(n * float64(unit))
	}
	return total, true
}

// subscriptionsAPIVersion is the Subscriptions API version of GET
// /subscriptions.
const subscriptionsAPIVersion = "2022-12-01"

// ListSubscriptions returns the ids of the subscriptions the credential
// can see (GET /subscriptions, every page) that can be read: those Enabled,
// Warned or PastDue, not Disabled or Deleted. It is one plain request
// through the client's ARM pipeline rather than the armsubscriptions
// module: one endpoint, one field, not worth a dependency.
func (c *Client) ListSubscriptions(ctx context.Context) ([]string, error) {
	const op = "list subscriptions"
	pipeline, endpoint, err := c.rawClient()
	if err != nil {
		return nil, err
	}
	next := strings.TrimSuffix(endpoint, "/") + "/subscriptions?api-version=" + subscriptionsAPIVersion
	var out []string
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, &Error{Kind: KindInvalid, Op: op, Message: "more than 1,000 pages of subscriptions: refusing to follow nextLink further"}
		}
		req, err := runtime.NewRequest(ctx, http.MethodGet, next)
		if err != nil {
			return nil, newError(op, "", err)
		}
		resp, err := pipeline.Do(req)
		if err != nil {
			return nil, newError(op, "", err)
		}
		if !runtime.HasStatusCode(resp, http.StatusOK) {
			return nil, newError(op, "", runtime.NewResponseError(resp))
		}
		var body struct {
			Value []struct {
				SubscriptionID string `json:"subscriptionId"`
				State          string `json:"state"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := runtime.UnmarshalAsJSON(resp, &body); err != nil {
			return nil, newError(op, "", err)
		}
		for _, s := range body.Value {
			switch strings.ToLower(s.State) {
			case "disabled", "deleted":
				continue
			}
			if s.SubscriptionID != "" {
				out = append(out, s.SubscriptionID)
			}
		}
		next = body.NextLink
	}
	return dedupeFold(out), nil
}

// dedupeFold drops empty and case-insensitively repeated values, keeping
// the first spelling and the order.
func dedupeFold(in []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for _, v := range in {
		v = strings.TrimSpace(v)
		if k := strings.ToLower(v); v != "" && !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}
