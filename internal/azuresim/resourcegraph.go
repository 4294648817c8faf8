package azuresim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Azure Resource Graph, as far as jitd uses it: POST
// /providers/Microsoft.ResourceGraph/resources?api-version=… with a body
//
//	{"query": "<KQL>", "subscriptions": ["…", …],
//	 "options": {"$top": 1000, "$skipToken": "…", "resultFormat": "objectArray"}}
//
// answered with {"totalRecords", "count", "resultTruncated", "$skipToken",
// "data": [{…}, …], "facets": []}.
//
// The local Azure does not evaluate KQL. It recognises the query shapes it
// knows (ResourceGraphQueries, compared with runs of white space collapsed)
// and answers them over the NSGs in its store; any other query is refused
// with Resource Graph's 400 BadRequest / InvalidQuery shape, so a client
// that changes its query finds out here rather than in Azure.
//
// What Azure documents and the local Azure enforces:
//   - at most 1,000 subscriptions per query (more: 400 BadRequest with an
//     InvalidSubscriptions detail; the detail code is not documented, so
//     this one is the local Azure's);
//   - $top at most 1,000 (default 100, as for Azure's REST API); a result
//     longer than $top carries a $skipToken for the next page, which is
//     valid only with the same query and subscriptions;
//   - resultFormat objectArray (the SDK's default since api-version
//     2021-03-01); table is refused here, as jitd never asks for it;
//   - the user quota: 15 queries per 5-second window per caller (the
//     token's object id). Every answer carries x-ms-user-quota-remaining and
//     x-ms-user-quota-resets-after (hh:mm:ss); a query over quota gets 429
//     RateLimiting with Retry-After.
//
// Resource Graph is eventually consistent in Azure (seconds to minutes
// behind ARM); the local Azure answers from its store as it is now, which is
// the freshest Azure can be. Tests of staleness fake the inventory instead.
const (
	resourceGraphMaxSubscriptions = 1000
	resourceGraphMaxTop           = 1000
	resourceGraphDefaultTop       = 100
	// ResourceGraphQuota and ResourceGraphQuotaWindow are Resource Graph's
	// default user quota.
	ResourceGraphQuota       = 15
	ResourceGraphQuotaWindow = 5 * time.Second
)

// ResourceGraphJITQuery is the query jitd sends: the network security
// groups whose rules mention "jit-" (contains is case-insensitive and
// matches a rule's name or description; the client keeps the rows with a
// rule whose name starts with jit-), with their rules, so that the client
// can tell a changed NSG from its rules' digest. Kept in step with
// internal/azure.JITQuery (a test compares them).
const ResourceGraphJITQuery = `Resources
| where type =~ 'microsoft.network/networksecuritygroups'
| where tostring(properties.securityRules) contains 'jit-'
| project id, subscriptionId, rules = properties.securityRules
| order by id asc`

// ResourceGraphQueries are the query shapes the local Azure answers.
var ResourceGraphQueries = []string{ResourceGraphJITQuery}

// graphState is Resource Graph's per-caller quota and the counters of
// Resource Graph and read throttling; its zero value is ready.
type graphState struct {
	mu        sync.Mutex
	windows   map[string]*quotaWindow // by caller
	queries   int64                   // answered 200
	throttled int64                   // refused 429 (quota)
	rejected  int64                   // refused 400

	// lag (Options.GraphLag) and the index it needs, guarded by the
	// server's mu: what each matching NSG looked like, and since when.
	lag     time.Duration
	index   map[string][]graphSnap // by store key, oldest first
	indexed bool                   // a query has built the index
}

// graphSnap is one version of an NSG's row as Resource Graph indexed it:
// seen from at on; row nil is "not in the answer" (gone, or no JIT rule).
type graphSnap struct {
	at   time.Time
	row  *graphNSGRow
	body string // the row's JSON, to tell versions apart
}

type quotaWindow struct {
	start time.Time
	used  int
}

// LimitCounters count what the local Azure's request limits did.
type LimitCounters struct {
	// ResourceGraphQueries counts Resource Graph queries answered (each page
	// is one query), ResourceGraphThrottled those refused over quota, and
	// ResourceGraphRejected those refused as invalid.
	ResourceGraphQueries   int64 `json:"resourceGraphQueries"`
	ResourceGraphThrottled int64 `json:"resourceGraphThrottled"`
	ResourceGraphRejected  int64 `json:"resourceGraphRejected"`
	// ReadThrottled counts ARM reads refused by the read limit (ReadRate).
	ReadThrottled int64 `json:"readThrottled"`
}

// LimitCounters returns the Resource Graph and read-limit counters.
func (s *Server) LimitCounters() LimitCounters {
	s.graph.mu.Lock()
	defer s.graph.mu.Unlock()
	return LimitCounters{
		ResourceGraphQueries: s.graph.queries, ResourceGraphThrottled: s.graph.throttled,
		ResourceGraphRejected: s.graph.rejected, ReadThrottled: s.reads.throttledCount(),
	}
}

// graphRequest is the body of a Resource Graph query.
type graphRequest struct {
	Query         string   `json:"query"`
	Subscriptions []string `json:"subscriptions"`
	Options       struct {
		Top          *int   `json:"$top"`
		Skip         *int   `json:"$skip"`
		SkipToken    string `json:"$skipToken"`
		ResultFormat string `json:"resultFormat"`
	} `json:"options"`
}

// skipToken is what a $skipToken carries: where the next page starts, and
// a digest of the query and subscriptions it belongs to.
type skipToken struct {
	Offset int    `json:"o"`
	Scope  string `json:"s"`
}

// serveResourceGraph answers POST /providers/Microsoft.ResourceGraph/resources.
func (s *Server) serveResourceGraph(w http.ResponseWriter, r *http.Request) string {
	const kind = "resource-graph"
	correlation := r.Header.Get("x-ms-correlation-request-id")
	if correlation == "" {
		correlation = uuid.NewString()
	}
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("x-ms-correlation-request-id", correlation)
	if r.Method != http.MethodPost {
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested resource does not support http method '"+r.Method+"'.")
		return kind
	}
	if !s.authenticate(w, r) {
		return kind
	}
	if v := r.URL.Query().Get("api-version"); v == "" || apiVersionPattern.FindStringSubmatch(v) == nil {
		writeARMError(w, http.StatusBadRequest, "InvalidApiVersionParameter",
			fmt.Sprintf("The api-version '%s' is invalid. The supported versions are '2024-04-01,2022-10-01,2021-03-01'.", v))
		return kind
	}
	if !s.takeGraphQuota(w, callerOf(r)) {
		return kind
	}
	var q graphRequest
	raw, ok := readRawBody(w, r)
	if !ok {
		return kind
	}
	if err := json.Unmarshal(raw, &q); err != nil {
		s.graphBadRequest(w, correlation, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
		return kind
	}
	shape := normaliseQuery(q.Query)
	known := slices.ContainsFunc(ResourceGraphQueries, func(k string) bool { return normaliseQuery(k) == shape })
	switch {
	case strings.TrimSpace(q.Query) == "":
		s.graphBadRequest(w, correlation, "InvalidQuery", "The query is required.")
		return kind
	case !known:
		s.graphBadRequest(w, correlation, "InvalidQuery",
			"Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying. (The local Azure answers only the query shapes jitd sends; see internal/azuresim/resourcegraph.go.)")
		return kind
	case len(q.Subscriptions) == 0:
		s.graphBadRequest(w, correlation, "InvalidSubscriptions", "At least one subscription is required (tenant-wide queries are not served by the local Azure).")
		return kind
	case len(q.Subscriptions) > resourceGraphMaxSubscriptions:
		s.graphBadRequest(w, correlation, "InvalidSubscriptions",
			fmt.Sprintf("The number of subscriptions %d exceeds the maximum of %d allowed in one query.", len(q.Subscriptions), resourceGraphMaxSubscriptions))
		return kind
	case q.Options.ResultFormat != "" && !strings.EqualFold(q.Options.ResultFormat, "objectArray"):
		s.graphBadRequest(w, correlation, "InvalidResultFormat", "The local Azure answers resultFormat objectArray only.")
		return kind
	}
	top := resourceGraphDefaultTop
	if q.Options.Top != nil {
		top = *q.Options.Top
	}
	if top < 1 || top > resourceGraphMaxTop {
		s.graphBadRequest(w, correlation, "InvalidTop", fmt.Sprintf("$top must be between 1 and %d, not %d.", resourceGraphMaxTop, top))
		return kind
	}
	subs := make(map[string]bool, len(q.Subscriptions))
	for _, sub := range q.Subscriptions {
		subs[strings.ToLower(strings.TrimSpace(sub))] = true
	}
	scope := graphScopeDigest(shape, subs)
	offset := 0
	if q.Options.Skip != nil {
		offset = max(*q.Options.Skip, 0)
	}
	if q.Options.SkipToken != "" {
		tok, err := decodeSkipToken(q.Options.SkipToken)
		if err != nil || tok.Scope != scope || tok.Offset < 0 {
			s.graphBadRequest(w, correlation, "InvalidSkipToken", "The $skipToken is invalid, or belongs to another query or set of subscriptions.")
			return kind
		}
		offset = tok.Offset
	}

	rows := s.resourceGraphNSGs(subs)
	offset = min(offset, len(rows))
	end := min(offset+top, len(rows))
	page := rows[offset:end]
	body := map[string]any{
		"totalRecords":    len(rows),
		"count":           len(page),
		"resultTruncated": "false",
		"data":            page,
		"facets":          []any{},
	}
	if end < len(rows) {
		body["$skipToken"] = encodeSkipToken(skipToken{Offset: end, Scope: scope})
	}
	s.graph.mu.Lock()
	s.graph.queries++
	s.graph.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
	return kind
}

// graphNSGRow is one row of ResourceGraphJITQuery.
type graphNSGRow struct {
	ID             string         `json:"id"`
	SubscriptionID string         `json:"subscriptionId"`
	Rules          []securityRule `json:"rules"`
}

// resourceGraphNSGs evaluates ResourceGraphJITQuery over the store: the
// NSGs of the given (lower-case) subscriptions with a rule whose name or
// description contains "jit-" in any case, sorted by id. It is the one
// place that knows how the store keeps NSGs.
func (s *Server) resourceGraphNSGs(subs map[string]bool) []graphNSGRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleAll()
	current := map[string]*graphNSGRow{}
	for key, e := range s.nsgs {
		st := e.visible()
		if st == nil || !mentionsJIT(st) {
			continue
		}
		rules := make([]securityRule, len(st.rules))
		for i, r := range st.rules {
			rules[i] = ruleJSON(st, r)
		}
		current[key] = &graphNSGRow{ID: st.id, SubscriptionID: subscriptionOfID(st.id), Rules: rules}
	}
	if s.graph.lag > 0 {
		current = s.lagged(current)
	}
	var rows []graphNSGRow
	for _, row := range current {
		if subs[strings.ToLower(row.SubscriptionID)] {
			rows = append(rows, *row)
		}
	}
	slices.SortFunc(rows, func(a, b graphNSGRow) int { return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID)) })
	return rows
}

// lagged is Resource Graph's answer GraphLag behind the store: each NSG as
// it was GraphLag ago, by the index. The index learns a version when a
// query first sees it, so a change shows GraphLag after the first query
// that could have seen it (a little later than on Azure, which is told of
// each write; never earlier). What the store held before the first query
// counts as indexed long ago, as for a tenant whose resources predate the
// caller. Called with s.mu held.
func (s *Server) lagged(current map[string]*graphNSGRow) map[string]*graphNSGRow {
	g := &s.graph
	now := s.now()
	at := now
	if !g.indexed {
		at, g.indexed = time.Time{}, true
	}
	if g.index == nil {
		g.index = map[string][]graphSnap{}
	}
	keys := map[string]bool{}
	for k := range current {
		keys[k] = true
	}
	for k := range g.index {
		keys[k] = true
	}
	horizon := now.Add(-g.lag)
	out := map[string]*graphNSGRow{}
	for k := range keys {
		snap := graphSnap{at: at, row: current[k]}
		if snap.row != nil {
			b, _ := json.Marshal(snap.row)
			snap.body = string(b)
		}
		hist := g.index[k]
		if len(hist) == 0 || hist[len(hist)-1].body != snap.body {
			hist = append(hist, snap)
		}
		// The answer is the newest version at least GraphLag old; older
		// ones are no longer needed.
		i := -1
		for j, h := range hist {
			if !h.at.After(horizon) {
				i = j
			}
		}
		if i > 0 {
			hist = hist[i:]
			i = 0
		}
		if len(hist) == 1 && hist[0].row == nil && i == 0 {
			delete(g.index, k) // gone long enough: forgotten
			continue
		}
		g.index[k] = hist
		if i == 0 && hist[0].row != nil {
			out[k] = hist[0].row
		}
	}
	return out
}

// mentionsJIT is `tostring(properties.securityRules) contains 'jit-'` over
// the rules' free-text fields (names and descriptions; contains ignores
// case).
func mentionsJIT(st *nsgState) bool {
	for _, r := range st.rules {
		if containsFold(r.name, "jit-") || containsFold(r.props.Description, "jit-") {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool { return strings.Contains(strings.ToLower(s), sub) }

// subscriptionOfID is the subscription id in a resource id.
func subscriptionOfID(id string) string {
	parts := strings.SplitN(strings.TrimPrefix(id, "/"), "/", 3)
	if len(parts) >= 2 && strings.EqualFold(parts[0], "subscriptions") {
		return parts[1]
	}
	return ""
}

// takeGraphQuota applies the user quota and sets the quota headers.
func (s *Server) takeGraphQuota(w http.ResponseWriter, caller string) bool {
	now := s.now()
	s.graph.mu.Lock()
	if s.graph.windows == nil {
		s.graph.windows = map[string]*quotaWindow{}
	}
	win := s.graph.windows[caller]
	if win == nil || !now.Before(win.start.Add(ResourceGraphQuotaWindow)) {
		win = &quotaWindow{start: now}
		s.graph.windows[caller] = win
	}
	resets := win.start.Add(ResourceGraphQuotaWindow).Sub(now)
	allowed := win.used < ResourceGraphQuota
	if allowed {
		win.used++
	} else {
		s.graph.throttled++
	}
	remaining := ResourceGraphQuota - win.used
	s.graph.mu.Unlock()
	w.Header().Set("x-ms-user-quota-remaining", fmt.Sprint(remaining))
	w.Header().Set("x-ms-user-quota-resets-after", formatQuotaReset(resets))
	if allowed {
		return true
	}
	w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(resets.Seconds()))))
	writeARMError(w, http.StatusTooManyRequests, "RateLimiting",
		"Please provide below info when asking for support: timestamp = "+now.UTC().Format(time.RFC3339)+
			". Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help.")
	return false
}

// formatQuotaReset renders a duration as Resource Graph's hh:mm:ss,
// rounded up to whole seconds so that a client waiting that long finds a
// new window.
func formatQuotaReset(d time.Duration) string {
	secs := int(math.Ceil(max(d, 0).Seconds()))
	return fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
}

// callerOf is who a request's quota is counted for: the object id of its
// token (already verified by authenticate).
func callerOf(r *http.Request) string {
	_, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil {
			var c struct {
				OID string `json:"oid"`
			}
			if json.Unmarshal(payload, &c) == nil && c.OID != "" {
				return c.OID
			}
		}
	}
	return "anonymous"
}

// graphBadRequest answers Resource Graph's 400 shape: a BadRequest whose
// message asks for the correlation id, with the reason in details.
func (s *Server) graphBadRequest(w http.ResponseWriter, correlation, code, message string) {
	s.graph.mu.Lock()
	s.graph.rejected++
	s.graph.mu.Unlock()
	writeARMErrorBody(w, http.StatusBadRequest, &armError{
		Code: "BadRequest",
		Message: "Please provide below info when asking for support: timestamp = " + s.now().UTC().Format(time.RFC3339) +
			", correlationId = " + correlation + ".",
		Details: []armError{{Code: code, Message: message}},
	})
}

// normaliseQuery collapses runs of white space, so that indentation and
// line breaks do not matter.
func normaliseQuery(q string) string { return strings.Join(strings.Fields(q), " ") }

func graphScopeDigest(shape string, subs map[string]bool) string {
	keys := make([]string, 0, len(subs))
	for k := range subs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.Sum256([]byte(shape + "\n" + strings.Join(keys, ",")))
	return hex.EncodeToString(h[:8])
}

func encodeSkipToken(t skipToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSkipToken(s string) (skipToken, error) {
	var t skipToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	return t, err
}
