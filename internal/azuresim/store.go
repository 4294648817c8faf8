package azuresim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// nsgEntry is one NSG: its committed state, the operation, if any, that
// is changing it, and the writes queued behind that operation. Only one
// operation runs per NSG, as on Azure; see BusyQueue for what happens to
// the writes that arrive meanwhile.
type nsgEntry struct {
	state *nsgState  // committed; nil while the NSG is being created
	op    *operation // running write; nil when idle
	// queue holds writes accepted while op runs, in the order they run;
	// each starts when the one before it ends. Empty whenever op is nil.
	queue []*operation
}

// tail is the last write accepted for the NSG (queued or running); nil
// when idle.
func (e *nsgEntry) tail() *operation {
	if n := len(e.queue); n > 0 {
		return e.queue[n-1]
	}
	return e.op
}

// base is the state the next accepted write changes: the state the last
// accepted write will commit, else the committed one. nil when the NSG is
// being deleted (or does not exist).
func (e *nsgEntry) base() *nsgState {
	if t := e.tail(); t != nil {
		return t.next
	}
	return e.state
}

// visible is what reads return: the state as the last accepted write shows
// it (provisioningState Updating or Deleting), else the committed one. With
// writes queued, reads and ETags show all of them, so a client that reads
// and writes back with If-Match builds on the queued changes rather than
// losing them.
func (e *nsgEntry) visible() *nsgState {
	if t := e.tail(); t != nil {
		return t.visible
	}
	return e.state
}

// etag is what preconditions are checked against; empty when there is no
// NSG, so that e may be nil.
func (e *nsgEntry) etag() string {
	if e == nil || e.visible() == nil {
		return ""
	}
	return e.visible().etag
}

// running is the operation the NSG is busy with; nil when idle or absent.
func (e *nsgEntry) running() *operation {
	if e == nil {
		return nil
	}
	return e.op
}

// carryPending marks on visible, what reads will show once a new write is
// accepted, the changes of the writes accepted before it that have not
// completed: their rules stay Updating and the NSG keeps its state.
func (e *nsgEntry) carryPending(visible *nsgState) {
	t := e.tail()
	if t == nil || t.visible == nil {
		return
	}
	if t.visible.provisioningState != statusSucceeded {
		visible.provisioningState = t.visible.provisioningState
	}
	for _, r := range t.visible.rules {
		if r.props.ProvisioningState != "Updating" {
			continue
		}
		if i := visible.findRule(r.name); i >= 0 && visible.rules[i].props.ProvisioningState == statusSucceeded {
			visible.rules[i].props.ProvisioningState = "Updating"
		}
	}
}

// nsgState is a network security group as stored.
type nsgState struct {
	id                string // as the client created it
	sub, rg, name     string
	location          string
	etag              string // shared by the NSG and its rules, as on Azure
	guid              string
	provisioningState string
	// top and props hold what this package does not model (tags,
	// flushConnection, …) verbatim, so clients read back what they wrote.
	top   map[string]json.RawMessage
	props map[string]json.RawMessage
	rules []*ruleEntry // in creation order, as Azure lists them
}

type ruleEntry struct {
	name  string
	props ruleProperties
}

func (st *nsgState) clone() *nsgState {
	c := *st
	c.top = cloneRaw(st.top)
	c.props = cloneRaw(st.props)
	c.rules = make([]*ruleEntry, len(st.rules))
	for i, r := range st.rules {
		c.rules[i] = &ruleEntry{name: r.name, props: r.props.clone()}
	}
	return &c
}

// findRule returns the index of the rule named name (case-insensitively).
func (st *nsgState) findRule(name string) int {
	return slices.IndexFunc(st.rules, func(r *ruleEntry) bool { return strings.EqualFold(r.name, name) })
}

// withProvisioningState sets the state on the NSG and all its rules.
func (st *nsgState) withProvisioningState(ps string) *nsgState {
	st.provisioningState = ps
	for _, r := range st.rules {
		r.props.ProvisioningState = ps
	}
	return st
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// nsgKey is the case-insensitive identity of an NSG: its subscription,
// resource group and name.
func nsgKey(sub, rg, name string) string { return scopeKey(sub, rg) + "/" + strings.ToLower(name) }

// nsgID builds an NSG id in the case the client used.
func nsgID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/networkSecurityGroups", name)
}

// operation is one long-running write. It completes at due; completion is
// applied lazily by settle, so no goroutine or timer runs per operation and
// a zero latency completes at the first look.
type operation struct {
	id         string
	name       string // PutSecurityRuleOperation, DeleteSecurityRuleOperation, …
	key        string // the NSG's key
	resourceID string
	location   string
	accepted   time.Time
	due        time.Time
	fail       bool
	visible    *nsgState // what reads show meanwhile; nil: nothing
	next       *nsgState // committed on success; nil deletes the NSG
	status     string    // InProgress, Succeeded, Failed
	err        *armError
	event      int // index into Server.events; -1 for operations that are not NSG writes
	// result is what the Location URL answers once the operation
	// succeeded, for actions that return a result (ipFlowVerify); nil
	// answers 204.
	result any
}

// Operation status values as ARM reports them.
const (
	statusInProgress = "InProgress"
	statusSucceeded  = "Succeeded"
	statusFailed     = "Failed"
)

// entry returns the NSG at key with any due operation settled; nil when
// there is no such NSG at all.
func (s *Server) entry(key string) *nsgEntry {
	s.expireJITRequests()
	e := s.nsgs[key]
	if e == nil {
		return nil
	}
	s.settle(key, e)
	if e.state == nil && e.op == nil {
		return nil
	}
	return e
}

// settle completes e's operations that are due. Callers hold s.mu.
//
// While connections are tracked, a commit to an NSG with flushConnection on
// re-evaluates them against every NSG on their path as it was at that
// moment, so then every due operation completes, in the order they came
// due; with no connection the order of completions cannot be observed and
// only e's are completed.
func (s *Server) settle(key string, e *nsgEntry) {
	op := e.op
	if op == nil || s.now().Before(op.due) {
		return
	}
	if len(s.conns.live) > 0 {
		s.settleAll()
		return
	}
	now := s.now()
	for e.op != nil && !now.Before(e.op.due) {
		s.complete(key, e)
	}
}

// complete applies e's operation, which is due, and starts the first
// queued write (its due time was set when it was accepted: it starts when
// this one ends). Callers hold s.mu.
func (s *Server) complete(key string, e *nsgEntry) {
	op := e.op
	e.op = nil
	if len(e.queue) > 0 {
		e.op = e.queue[0]
		e.queue = e.queue[1:]
		if op.fail {
			// The queued writes were accepted on top of this one's changes,
			// which are not applied: they fail too rather than land them.
			e.op.fail = true
			for _, q := range e.queue {
				q.fail = true
			}
		}
	}
	ev := &s.events[op.event]
	ev.Completed = op.due
	if op.fail {
		op.status = statusFailed
		op.err = &armError{Code: "InternalServerError", Message: "An error occurred while processing the operation. The changes were not applied."}
		ev.Result = statusFailed
	} else {
		op.status = statusSucceeded
		e.state = op.next
		ev.Result = statusSucceeded
	}
	if e.state == nil && e.op == nil {
		delete(s.nsgs, key)
	}
	if op.status == statusSucceeded && e.state != nil && e.state.flushConnection() {
		s.flushConnections(key, op.due)
	}
}

// settleAll completes every due operation, in the order they came due (then
// in the order they were accepted); used before snapshots of the whole store
// and whenever connections must see each commit in its turn.
func (s *Server) settleAll() {
	s.expireJITRequests()
	now := s.now()
	// An NSG's operations come due in the order they run, so sorting every
	// due operation keeps each NSG's in its order.
	var due []*operation
	for _, e := range s.nsgs {
		if e.op == nil || now.Before(e.op.due) {
			continue
		}
		due = append(due, e.op)
		for _, op := range e.queue {
			if now.Before(op.due) {
				break
			}
			due = append(due, op)
		}
	}
	slices.SortFunc(due, func(a, b *operation) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.event, b.event)
	})
	for _, op := range due {
		if e := s.nsgs[op.key]; e != nil && e.op == op {
			s.complete(op.key, e)
		}
	}
}

// startOperation records a write that Azure would run asynchronously and
// marks the NSG busy until it completes. A write accepted while another
// runs is queued behind the last one accepted: it runs when that one ends
// and takes the write latency of its own acceptance, so its due time is
// known now.
func (s *Server) startOperation(key string, e *nsgEntry, name, resourceID, location string, visible, next *nsgState, ev Event, fail bool) *operation {
	now := s.now()
	ev.Seq = s.nextEventSeq()
	ev.Accepted = now
	ev.Result = statusInProgress
	s.events = append(s.events, ev)
	start := now
	if t := e.tail(); t != nil && t.due.After(now) {
		start = t.due
	}
	op := &operation{
		id: uuid.NewString(), name: name, key: key, resourceID: resourceID,
		location: normaliseLocation(location),
		accepted: now, due: start.Add(s.writeLatency), fail: fail,
		visible: visible, next: next, status: statusInProgress,
		event: len(s.events) - 1,
	}
	if e.op != nil {
		e.queue = append(e.queue, op)
	} else {
		e.op = op
	}
	s.pruneOperations(now)
	s.ops[op.id] = op
	return op
}

func (s *Server) nextEventSeq() int64 {
	s.eventSeq++
	return s.eventSeq
}

// pruneOperations forgets finished operations an hour old once many have
// accumulated, so a long-running simulator does not grow without bound.
func (s *Server) pruneOperations(now time.Time) {
	if len(s.ops) < 10000 {
		return
	}
	for id, op := range s.ops {
		if op.status != statusInProgress && now.Sub(op.due) > time.Hour {
			delete(s.ops, id)
		}
	}
}

// asyncURLs are the polling URLs of op, on the host the client used.
func (s *Server) asyncURLs(r *http.Request, op *operation, apiVersion string) (asyncOp, location string) {
	sub := s.servedSubscription(subscriptionOf(op.resourceID))
	if sub == "" {
		sub = s.subscriptionID
	}
	base := s.baseURL(r) + "/subscriptions/" + sub + "/providers/Microsoft.Network/locations/" + op.location
	v := "?api-version=" + apiVersion
	return base + "/operations/" + op.id + v, base + "/operationResults/" + op.id + v
}

// setRetryAfter tells the client when op will be done: Retry-After in whole
// seconds as ARM sends it, and retry-after-ms, which azcore prefers, so
// clients poll right when the operation completes rather than a second late.
func setRetryAfter(h http.Header, remaining time.Duration) {
	if remaining <= 0 {
		return
	}
	h.Set("Retry-After", strconv.Itoa(int(math.Ceil(remaining.Seconds()))))
	h.Set("retry-after-ms", strconv.FormatInt(int64(math.Ceil(float64(remaining)/float64(time.Millisecond))), 10))
}

// writeBusy refuses a write to an NSG whose operation op is still running
// (BusyRefuse) or whose queue is full (BusyQueue), as Azure does: 429
// RetryableErrorDueToAnotherOperation (which SDKs retry) or 409
// AnotherOperationInProgress (which they do not).
func (s *Server) writeBusy(w http.ResponseWriter, r *http.Request, q armRequest, op *operation, attempted string) {
	s.counters.busy++
	setRetryAfter(w.Header(), op.due.Sub(s.now()))
	asyncOp, _ := s.asyncURLs(r, op, q.apiVersion)
	if s.busyStatus == http.StatusConflict {
		writeARMError(w, http.StatusConflict, "AnotherOperationInProgress",
			fmt.Sprintf("Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: %s.", asyncOp))
		return
	}
	writeARMError(w, http.StatusTooManyRequests, "RetryableErrorDueToAnotherOperation",
		fmt.Sprintf("Operation %s (%s) is retryable because another operation %s (%s) on the resource %s is in progress.",
			attempted, uuid.NewString(), op.name, op.id, s.nsgIDForKey(op)))
}

func (s *Server) nsgIDForKey(op *operation) string {
	if e := s.nsgs[op.key]; e != nil {
		if st := e.visible(); st != nil {
			return st.id
		}
	}
	return op.resourceID
}

// checkPreconditions applies If-Match and If-None-Match to the current ETag
// (empty when the resource does not exist). It answers 412 on failure.
func checkPreconditions(w http.ResponseWriter, r *http.Request, etag string) bool {
	if m := r.Header.Get("If-Match"); m != "" {
		ok := false
		for _, t := range strings.Split(m, ",") {
			t = strings.TrimSpace(t)
			ok = ok || (etag != "" && (t == "*" || t == etag))
		}
		if !ok {
			writeARMError(w, http.StatusPreconditionFailed, "PreconditionFailed",
				fmt.Sprintf("The condition specified using HTTP conditional header(s) is not met. If-Match: %s.", m))
			return false
		}
	}
	if m := r.Header.Get("If-None-Match"); m != "" {
		fail := false
		for _, t := range strings.Split(m, ",") {
			t = strings.TrimSpace(t)
			fail = fail || (etag != "" && (t == "*" || t == etag))
		}
		if fail {
			writeARMError(w, http.StatusPreconditionFailed, "PreconditionFailed",
				fmt.Sprintf("The condition specified using HTTP conditional header(s) is not met. If-None-Match: %s.", m))
			return false
		}
	}
	return true
}

func newETag() string { return `W/"` + uuid.NewString() + `"` }

// normaliseLocation turns "West Europe" into "westeurope", as ARM does.
func normaliseLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(l, " ", ""))
}

// serveOperation answers the Azure-AsyncOperation URL (status document)
// and the Location URL (202 until done, then 204 or the error).
func (s *Server) serveOperation(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.ops[strings.ToLower(q.operation)]
	if op == nil || !strings.EqualFold(op.location, q.location) {
		writeARMError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("Operation %s was not found in location %s.", q.operation, q.location))
		return
	}
	if e := s.nsgs[op.key]; e != nil {
		s.settle(op.key, e)
	}
	s.settleNetworkOperation(op)
	remaining := op.due.Sub(s.now())
	if q.kind == "operation-result" {
		switch op.status {
		case statusInProgress:
			_, loc := s.asyncURLs(r, op, q.apiVersion)
			w.Header().Set("Location", loc)
			setRetryAfter(w.Header(), remaining)
			w.WriteHeader(http.StatusAccepted)
		case statusSucceeded:
			if op.result != nil {
				writeJSON(w, http.StatusOK, op.result)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			writeARMErrorBody(w, http.StatusInternalServerError, op.err)
		}
		return
	}
	body := map[string]any{
		"id":        strings.TrimSuffix(r.URL.Path, "/"),
		"name":      op.id,
		"status":    op.status,
		"startTime": op.accepted.UTC().Format(time.RFC3339Nano),
	}
	if op.status == statusInProgress {
		setRetryAfter(w.Header(), remaining)
	} else {
		body["endTime"] = op.due.UTC().Format(time.RFC3339Nano)
	}
	if op.err != nil {
		body["error"] = op.err
	}
	writeJSON(w, http.StatusOK, body)
}
