package azuresim

import (
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

// The shared ARM resource engine: what every stored resource kind does the
// same way as ARM, so that each kind's file holds only its own model.
//
//   - Entries (resourceEntry): a resource's committed state and the writes
//     accepted for it, in the order they run; reads see the last accepted
//     write's state (visible), new writes build on what the accepted ones
//     will commit (latest). NSGs, virtual networks and network interfaces
//     all live in them; subnets and security rules are written through
//     their parent's entry.
//   - Long-running operations (operation, startWrite, completeWrite,
//     settleNet): a write is accepted, shows its resource Updating or
//     Deleting, and commits (or fails, failing the writes queued behind
//     it) when due. Due operations are applied lazily, when anything looks
//     at the resource, so no goroutine or timer runs per operation.
//     serveOperation answers their Azure-AsyncOperation and Location URLs
//     (asyncURLs).
//   - Preconditions (If-Match, If-None-Match against the resource's ETag)
//     and busy answers: NSGs queue a write that meets a running one or
//     refuse it, by BusyMode (nsgWritable); other kinds refuse it
//     (writable); both answer ARM's busy error (writeBusy).
//   - GET, list, PUT and DELETE of a top-level kind (netType), paged by
//     writeList (handlers.go).

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

// operation is one long-running write (or an action answered like one).
// It completes at due; completion is applied lazily when its resource is
// next looked at (settle, settleNet), so no goroutine or timer runs per
// operation and a zero latency completes at the first look. The states it
// shows and commits are its pendingWrite's.
type operation struct {
	id         string
	name       string // PutSecurityRuleOperation, DeleteSecurityRuleOperation, …
	key        string // the store key of the resource it writes
	resourceID string
	location   string
	accepted   time.Time
	due        time.Time
	fail       bool
	status     string // InProgress, Succeeded, Failed
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

// writable applies the request's preconditions to etag (empty when the
// resource does not exist), then refuses the write if running, the operation
// the resource is busy with, is not nil. Preconditions come first, as on
// Azure, so a stale If-Match fails with 412 even on a busy resource.
func (s *Server) writable(w http.ResponseWriter, r *http.Request, q armRequest, etag string, running *operation, attempted string) bool {
	if !checkPreconditions(w, r, etag) {
		return false
	}
	if running != nil {
		s.writeBusy(w, r, q, running, attempted)
		return false
	}
	return true
}

// nsgWritable is writable for a write to an NSG or one of its rules, whose
// busy answer depends on the server's BusyMode: BusyRefuse refuses it while
// e runs an operation, as writable does; BusyQueue accepts it into the
// NSG's queue (startOperation then runs it after the writes before it) and
// refuses it only when the queue holds WriteQueue writes already.
func (s *Server) nsgWritable(w http.ResponseWriter, r *http.Request, q armRequest, etag string, e *nsgEntry, attempted string) bool {
	running := e.running()
	if s.busyMode == BusyRefuse || running == nil {
		return s.writable(w, r, q, etag, running, attempted)
	}
	if !checkPreconditions(w, r, etag) {
		return false
	}
	if e.queued() >= s.writeQueue {
		s.counters.queueFull++
		s.writeBusy(w, r, q, running, attempted)
		return false
	}
	s.counters.queued++
	return true
}

// childETag is what a PUT of the child at index i of its parent checks
// preconditions against: children share their parent's ETag, as on Azure,
// and a child that does not exist yet (i < 0) has none.
func childETag(parentETag string, i int) string {
	if i < 0 {
		return ""
	}
	return parentETag
}

// childDeletable starts the DELETE of the child at index i of its parent
// (a security rule, a subnet), answering for it when the child does not
// exist or the write is refused.
func (s *Server) childDeletable(w http.ResponseWriter, r *http.Request, q armRequest, parentETag string, i int, running *operation, attempted string) bool {
	if i < 0 {
		writeDeleteAbsent(w, r)
		return false
	}
	return s.writable(w, r, q, parentETag, running, attempted)
}

// ruleDeletable is childDeletable for a security rule of the NSG e.
func (s *Server) ruleDeletable(w http.ResponseWriter, r *http.Request, q armRequest, parentETag string, i int, e *nsgEntry, attempted string) bool {
	if i < 0 {
		writeDeleteAbsent(w, r)
		return false
	}
	return s.nsgWritable(w, r, q, parentETag, e, attempted)
}

// resourceEntry is one stored resource: its committed state and the
// writes accepted for it, in the order they run. Only one write runs per
// resource, as on Azure: writes[0] is running, and each later one starts
// when the one before it ends. What a write meets while another runs is
// the kind's choice: NSGs queue it (BusyQueue) or refuse it (BusyRefuse,
// nsgWritable); other kinds refuse it (writable), so they hold at most one.
type resourceEntry[T any] struct {
	state  *T // committed; nil while being created
	writes []pendingWrite[T]
}

// pendingWrite is an accepted write and the states it shows and commits.
type pendingWrite[T any] struct {
	op      *operation
	visible *T // what reads show once it is accepted; nil: nothing
	next    *T // committed when op succeeds; nil deletes the resource
}

// running is the operation the resource is busy with; nil when idle or
// absent, so that e may be nil.
func (e *resourceEntry[T]) running() *operation {
	if e == nil || len(e.writes) == 0 {
		return nil
	}
	return e.writes[0].op
}

// queued is the number of writes waiting behind the running one.
func (e *resourceEntry[T]) queued() int { return max(len(e.writes)-1, 0) }

// tail is the last write accepted (queued or running); nil when idle.
func (e *resourceEntry[T]) tail() *pendingWrite[T] {
	if len(e.writes) == 0 {
		return nil
	}
	return &e.writes[len(e.writes)-1]
}

// visible is what reads return: the state as the last accepted write shows
// it (provisioningState Updating or Deleting), else the committed one. With
// writes queued, reads and ETags show all of them, so a client that reads
// and writes back with If-Match builds on the queued changes rather than
// losing them.
func (e *resourceEntry[T]) visible() *T {
	if t := e.tail(); t != nil {
		return t.visible
	}
	return e.state
}

// latest is the state once the accepted writes complete: what a new write
// changes and is validated against, so that two quick writes cannot both
// take one address or both miss each other's reference. nil when the
// resource is being deleted (or does not exist).
func (e *resourceEntry[T]) latest() *T {
	if t := e.tail(); t != nil {
		return t.next
	}
	return e.state
}

// entryETag is what preconditions are checked against: the visible state's
// ETag; empty when there is no resource, so that e may be nil.
func entryETag[T any, P netResource[T]](e *resourceEntry[T]) string {
	if e == nil || e.visible() == nil {
		return ""
	}
	return P(e.visible()).meta().etag
}

// startWrite records a write that Azure would run asynchronously and marks
// the resource busy until it completes. A write accepted while another
// runs is queued behind the last one accepted: it runs when that one ends
// and takes the write latency of its own acceptance, so its due time is
// known now. ev, when not nil, is recorded as the write's Event (NSG and
// rule writes). Callers hold s.mu.
func startWrite[T any](s *Server, key string, e *resourceEntry[T], name, resourceID, location string, visible, next *T, ev *Event, fail bool) *operation {
	now := s.now()
	event := -1
	if ev != nil {
		ev.Seq = s.nextEventSeq()
		ev.Accepted = now
		ev.Result = statusInProgress
		s.events = append(s.events, *ev)
		event = len(s.events) - 1
	}
	start := now
	if t := e.tail(); t != nil && t.op.due.After(now) {
		start = t.op.due
	}
	op := &operation{
		id: uuid.NewString(), name: name, key: key, resourceID: resourceID,
		location: normaliseLocation(location),
		accepted: now, due: start.Add(s.writeLatency), fail: fail,
		status: statusInProgress, event: event,
	}
	e.writes = append(e.writes, pendingWrite[T]{op: op, visible: visible, next: next})
	s.pruneOperations(now)
	s.ops[op.id] = op
	return op
}

// completeWrite applies e's running write, which is due: it commits its
// state, or fails, and the next queued write runs (its due time was set
// when it was accepted). A failed write fails the writes queued behind it
// too: they were accepted on top of its changes, which are not applied.
// The resource leaves m when it is gone. Callers hold s.mu.
func completeWrite[T any](s *Server, m map[string]*resourceEntry[T], key string, e *resourceEntry[T]) *operation {
	w := e.writes[0]
	e.writes[0] = pendingWrite[T]{}
	e.writes = e.writes[1:]
	op := w.op
	if op.fail {
		for _, q := range e.writes {
			q.op.fail = true
		}
		op.status = statusFailed
		op.err = &armError{Code: "InternalServerError", Message: "An error occurred while processing the operation. The changes were not applied."}
	} else {
		op.status = statusSucceeded
		e.state = w.next
	}
	if op.event >= 0 {
		ev := &s.events[op.event]
		ev.Completed = op.due
		ev.Result = op.status
	}
	if len(e.writes) == 0 {
		e.writes = nil
		if e.state == nil {
			delete(m, key)
		}
	}
	return op
}

// settleNet completes the entry's writes that are due and returns the
// entry, or nil when there is no such resource. Callers hold s.mu.
func settleNet[T any](s *Server, m map[string]*resourceEntry[T], key string) *resourceEntry[T] {
	e := m[key]
	if e == nil {
		return nil
	}
	now := s.now()
	for op := e.running(); op != nil && !now.Before(op.due); op = e.running() {
		completeWrite(s, m, key, e)
	}
	if e.state == nil && len(e.writes) == 0 {
		delete(m, key)
		return nil
	}
	return e
}

// settleNetworkOperation settles the resource a network operation writes, so
// that polling its status shows the outcome.
func (s *Server) settleNetworkOperation(op *operation) {
	switch {
	case strings.HasPrefix(op.key, "vnet:"):
		settleNet(s, s.vnets, op.key)
	case strings.HasPrefix(op.key, "nic:"):
		settleNet(s, s.nics, op.key)
	}
}

// resourceMeta is what every resource kind on the engine stores alike, so
// that their handlers can be shared.
type resourceMeta struct {
	id, sub, rg, name, location   string
	etag, guid, provisioningState string
}

func (m *resourceMeta) meta() *resourceMeta { return m }

// netResource is what the shared handlers need of a stored virtual network
// or network interface.
type netResource[T any] interface {
	*T
	meta() *resourceMeta
	clone() *T
	withProvisioningState(ps string) *T
}

// resourceRef is ARM's reference to another resource: {"id": "..."}.
type resourceRef struct {
	ID string `json:"id"`
}

// netStates returns the latest state (for validation) or current state (for
// rendering) of every resource in m, sorted by id. Callers hold s.mu.
func netStates[T any, P netResource[T]](s *Server, m map[string]*resourceEntry[T], latest bool) []*T {
	var out []*T
	for k := range m {
		e := settleNet(s, m, k)
		if e == nil {
			continue
		}
		st := e.visible()
		if latest {
			st = e.latest()
		}
		if st != nil {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b *T) int {
		return strings.Compare(strings.ToLower(P(a).meta().id), strings.ToLower(P(b).meta().id))
	})
	return out
}

// netType describes a top-level network resource type to the handlers its
// GET, list, PUT and DELETE share.
type netType[T any, P netResource[T]] struct {
	typ     string // for 404s
	entries func(*Server) map[string]*resourceEntry[T]
	key     func(sub, rg, name string) string
	name    func(armRequest) string // the resource's name in the request path
	render  func(*Server, *T) map[string]any
	// build builds and validates the state a PUT body describes, replacing
	// cur (nil on create).
	build func(s *Server, sub, rg, name string, raw []byte, cur *T) (*T, *armError)
	// inUse refuses a deletion Azure refuses; nil when nothing can.
	inUse           func(*Server, *T) *armError
	putOp, deleteOp string
}

// find returns the settled entry the request names, answering 404 when
// there is none. Callers hold s.mu.
func (k *netType[T, P]) find(s *Server, w http.ResponseWriter, q armRequest) *resourceEntry[T] {
	e := settleNet(s, k.entries(s), k.key(q.sub, q.rg, k.name(q)))
	if e == nil || e.visible() == nil {
		notFoundResource(w, k.typ, k.name(q), q.rg)
		return nil
	}
	return e
}

func (k *netType[T, P]) get(s *Server, w http.ResponseWriter, _ *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := k.find(s, w, q); e != nil {
		writeWithETag(w, P(e.visible()).meta().etag, k.render(s, e.visible()))
	}
}

// list answers the resources of a resource group or of the subscription.
func (k *netType[T, P]) list(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		var items []any
		for _, st := range netStates[T, P](s, k.entries(s), false) {
			if m := P(st).meta(); strings.EqualFold(m.sub, q.sub) && (q.rg == "" || strings.EqualFold(m.rg, q.rg)) {
				items = append(items, k.render(s, st))
			}
		}
		return items, true
	})
}

// put creates or replaces a resource through a long-running operation; the
// body describes all of it, so that, for example, a virtual network's
// subnets become exactly the body's.
func (k *netType[T, P]) put(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, key := k.entries(s), k.key(q.sub, q.rg, k.name(q))
	e := settleNet(s, m, key)
	var cur *T
	var running *operation
	if e != nil {
		cur, running = e.visible(), e.running()
	}
	etag := ""
	if cur != nil {
		etag = P(cur).meta().etag
	}
	if !s.writable(w, r, q, etag, running, k.putOp) {
		return
	}
	// No operation runs, so cur is the committed state, whose dynamic
	// addresses a network interface keeps.
	next, aerr := k.build(s, q.sub, q.rg, k.name(q), raw, cur)
	if aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if e == nil {
		e = &resourceEntry[T]{}
		m[key] = e
	}
	meta := P(next).meta()
	s.ensureGroup(meta.sub, meta.rg, meta.location)
	visible := P(P(next).clone()).withProvisioningState("Updating")
	P(next).withProvisioningState(statusSucceeded)
	op := startWrite(s, key, e, k.putOp, meta.id, meta.location, visible, next, nil, q.failLRO)
	s.writeAccepted(w, r, q, op, putStatus(cur == nil), k.render(s, visible))
}

// remove deletes a resource through a long-running operation unless it is
// in use.
func (k *netType[T, P]) remove(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := k.key(q.sub, q.rg, k.name(q))
	e := settleNet(s, k.entries(s), key)
	if e == nil {
		writeDeleteAbsent(w, r)
		return
	}
	if !s.writable(w, r, q, P(e.visible()).meta().etag, e.running(), k.deleteOp) {
		return
	}
	if k.inUse != nil {
		if aerr := k.inUse(s, e.state); aerr != nil {
			writeARMErrorBody(w, http.StatusBadRequest, aerr)
			return
		}
	}
	st := P(e.state)
	visible := P(st.clone()).withProvisioningState("Deleting")
	op := startWrite(s, key, e, k.deleteOp, st.meta().id, st.meta().location, visible, nil, nil, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}

// newResourceMeta checks what every network resource PUT body shares (its
// name, and its location against cur, nil on create) once the type's own
// body has decoded, and returns the new state's identity, its unmodelled
// top-level members and its properties. id builds the id of a new resource.
// Callers hold s.mu.
func newResourceMeta[T any, P netResource[T]](s *Server, sub, rg, name string, raw []byte, bodyName, location string, cur *T,
	id func(sub, rg, name string) string,
) (meta resourceMeta, top, props map[string]json.RawMessage, err *armError) {
	top, props, err = splitBody(raw)
	if err != nil {
		return meta, nil, nil, err
	}
	if !validName(name) {
		return meta, nil, nil, invalidNameError(name)
	}
	if bodyName != "" && !strings.EqualFold(bodyName, name) {
		return meta, nil, nil, nameMismatch(bodyName, name)
	}
	sub, rg = s.sub(sub), s.groupName(sub, rg)
	meta = resourceMeta{id: id(sub, rg, name), sub: sub, rg: rg, name: name, location: location, guid: uuid.NewString()}
	if cur != nil {
		c := P(cur).meta()
		meta.id, meta.sub, meta.rg, meta.name, meta.guid = c.id, c.sub, c.rg, c.name, c.guid
		if err := sameLocation(c.name, c.rg, c.location, &meta.location); err != nil {
			return meta, nil, nil, err
		}
	} else if location == "" {
		return meta, nil, nil, &armError{Code: "LocationRequired", Message: "The location property is required for this definition."}
	}
	return meta, keepUnmodelled(top, nsgComputed), props, nil
}

// sameLocation refuses moving an existing resource to another region; an
// empty body location keeps the current one.
func sameLocation(name, rg, cur string, body *string) *armError {
	if *body == "" {
		*body = cur
		return nil
	}
	if normaliseLocation(*body) != normaliseLocation(cur) {
		return &armError{Code: "InvalidResourceLocation", Message: fmt.Sprintf(
			"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Please select a new resource name.",
			name, normaliseLocation(cur), rg, normaliseLocation(*body))}
	}
	return nil
}
