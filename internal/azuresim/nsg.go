package azuresim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Network security groups: their state, their write queue (one operation
// runs per NSG; later writes queue behind it or are refused, BusyMode), and
// their GET, list, PUT, PATCH (tags) and DELETE. Their security rules are
// in rules.go.

const (
	nsgType         = "Microsoft.Network/networkSecurityGroups"
	ruleType        = "Microsoft.Network/networkSecurityGroups/securityRules"
	defaultRuleType = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
	maxBodyBytes    = 8 << 20
)

// nsgEntry is one NSG on the engine: its committed state and its write
// queue (see BusyQueue for what happens to the writes that arrive while one
// runs).
type nsgEntry = resourceEntry[nsgState]

// nsgETag is the NSG's ETag; empty when e is nil.
func nsgETag(e *nsgEntry) string { return entryETag(e) }

// carryPending marks on visible, what reads will show once a new write is
// accepted, the changes of the writes accepted before it that have not
// completed: their rules stay Updating and the NSG keeps its state.
func carryPending(e *nsgEntry, visible *nsgState) {
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
	// resourceMeta's id is as the client created it; its etag is shared by
	// the NSG and its rules, as on Azure.
	resourceMeta
	// top and props hold what this package does not model (tags,
	// flushConnection, …) verbatim, so clients read back what they wrote.
	top   map[string]json.RawMessage
	props map[string]json.RawMessage
	rules []*ruleEntry // in creation order, as Azure lists them
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

// withProvisioningState sets the state on the NSG and all its rules.
func (st *nsgState) withProvisioningState(ps string) *nsgState {
	st.provisioningState = ps
	for _, r := range st.rules {
		r.props.ProvisioningState = ps
	}
	return st
}

// nsgKey is the case-insensitive identity of an NSG: its subscription,
// resource group and name.
func nsgKey(sub, rg, name string) string { return scopeKey(sub, rg) + "/" + strings.ToLower(name) }

// nsgID builds an NSG id in the case the client used.
func nsgID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/networkSecurityGroups", name)
}

// entry returns the NSG at key with any due operation settled; nil when
// there is no such NSG at all.
func (s *Server) entry(key string) *nsgEntry {
	s.expireJITRequests()
	e := s.nsgs[key]
	if e == nil {
		return nil
	}
	s.settle(key, e)
	if e.state == nil && e.running() == nil {
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
	op := e.running()
	if op == nil || s.now().Before(op.due) {
		return
	}
	if len(s.conns.live) > 0 {
		s.settleAll()
		return
	}
	now := s.now()
	for op := e.running(); op != nil && !now.Before(op.due); op = e.running() {
		s.complete(key, e)
	}
}

// complete applies e's running write, which is due (completeWrite), then
// re-evaluates the connections through the NSG if the commit asks for it.
// Callers hold s.mu.
func (s *Server) complete(key string, e *nsgEntry) {
	op := completeWrite(s, s.nsgs, key, e)
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
		for _, w := range e.writes {
			if now.Before(w.op.due) {
				break
			}
			due = append(due, w.op)
		}
	}
	slices.SortFunc(due, func(a, b *operation) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.event, b.event)
	})
	for _, op := range due {
		if e := s.nsgs[op.key]; e != nil && e.running() == op {
			s.complete(op.key, e)
		}
	}
}

// startOperation starts an NSG or rule write (startWrite), recording ev.
func (s *Server) startOperation(key string, e *nsgEntry, name, resourceID, location string, visible, next *nsgState, ev Event, fail bool) *operation {
	return startWrite(s, key, e, name, resourceID, location, visible, next, &ev, fail)
}

// nsgComputed are the NSG members the server computes; a client's values
// for them are ignored rather than stored.
var nsgComputed = map[string]bool{"id": true, "name": true, "etag": true, "type": true, "location": true, "properties": true}

var nsgPropsComputed = map[string]bool{
	"securityRules": true, "defaultSecurityRules": true, "provisioningState": true, "resourceGuid": true,
	"networkInterfaces": true, "subnets": true, "flowLogs": true,
}

// validateRules checks every rule of a prospective NSG state as a PUT of
// each would be checked, then the NSG-wide limits.
func validateRules(st *nsgState) *armError {
	all := make([]nsgrules.Rule, len(st.rules))
	for i, r := range st.rules {
		all[i] = toNSGRule(r.name, &r.props)
	}
	for i, r := range all {
		others := slices.Concat(all[:i], all[i+1:])
		if err := nsgrules.ValidateRule(st.id, r, others); err != nil {
			return fromNSGRulesError(err)
		}
	}
	if err := nsgrules.ValidateLimits(st.id, all); err != nil {
		return fromNSGRulesError(err)
	}
	return nil
}

func notFoundNSG(w http.ResponseWriter, q armRequest) {
	writeARMError(w, http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("The Resource 'Microsoft.Network/networkSecurityGroups/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", q.nsg, q.rg))
}

// nsgJSON renders an NSG as ARM does.
func (s *Server) nsgJSON(st *nsgState) map[string]any {
	props := make(map[string]any, len(st.props)+4)
	for k, v := range st.props {
		props[k] = v
	}
	rules := make([]any, len(st.rules))
	for i, r := range st.rules {
		rules[i] = ruleJSON(st, r)
	}
	props["securityRules"] = rules
	props["defaultSecurityRules"] = defaultRulesJSON(st)
	props["provisioningState"] = st.provisioningState
	props["resourceGuid"] = st.guid
	s.addNSGReferences(props, st.id)
	doc := make(map[string]any, len(st.top)+6)
	for k, v := range st.top {
		doc[k] = v
	}
	doc["name"], doc["id"], doc["etag"], doc["type"] = st.name, st.id, st.etag, nsgType
	doc["location"] = st.location
	doc["properties"] = props
	return doc
}

// nsgForRequest returns the settled entry of the request's NSG, answering
// 404 when there is none. Callers hold s.mu.
func (s *Server) nsgForRequest(w http.ResponseWriter, q armRequest) *nsgEntry {
	e := s.entry(nsgKey(q.sub, q.rg, q.nsg))
	if e == nil {
		notFoundNSG(w, q)
	}
	return e
}

func (s *Server) getNSG(w http.ResponseWriter, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.nsgForRequest(w, q); e != nil {
		st := e.visible()
		writeWithETag(w, st.etag, s.nsgJSON(st))
	}
}

// listNSGs answers the NSGs of a resource group or of the subscription,
// sorted by id and paged with nextLink.
func (s *Server) listNSGs(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		s.settleAll()
		var states []*nsgState
		for _, e := range s.nsgs {
			st := e.visible()
			if st != nil && strings.EqualFold(st.sub, q.sub) && (q.rg == "" || strings.EqualFold(st.rg, q.rg)) {
				states = append(states, st)
			}
		}
		slices.SortFunc(states, func(a, b *nsgState) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
		items := make([]any, len(states))
		for i, st := range states {
			items[i] = s.nsgJSON(st)
		}
		return items, true
	})
}

// nsgBody is an NSG PUT body.
type nsgBody struct {
	Name       string        `json:"name"`
	Location   string        `json:"location"`
	Properties *nsgBodyProps `json:"properties"`
}

type nsgBodyProps struct {
	SecurityRules []securityRule `json:"securityRules"`
}

// putNSG creates or replaces an NSG. Its security rules become exactly the
// body's, as on Azure (which is why inline rules in a template remove rules
// written by others).
func (s *Server) putNSG(w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := nsgKey(q.sub, q.rg, q.nsg)
	e := s.entry(key)
	if !s.nsgWritable(w, r, q, nsgETag(e), e, "PutNetworkSecurityGroupOperation") {
		return
	}
	var cur *nsgState
	if e != nil {
		cur = e.visible()
	}
	next, err := s.newNSGState(q.sub, q.rg, q.nsg, raw, cur)
	if err != nil {
		writeARMErrorBody(w, http.StatusBadRequest, err)
		return
	}
	visible := next.clone().withProvisioningState("Updating")
	next.withProvisioningState(statusSucceeded)
	if e == nil {
		e = &nsgEntry{}
		s.nsgs[key] = e
	}
	s.ensureGroup(next.sub, next.rg, next.location)
	op := s.startOperation(key, e, "PutNetworkSecurityGroupOperation", next.id, next.location, visible, next,
		Event{Operation: "PutNetworkSecurityGroupOperation", NSGID: next.id, RemovedRules: removedRules(cur, next)}, q.failLRO)
	s.writeAccepted(w, r, q, op, putStatus(cur == nil), s.nsgJSON(visible))
}

// removedRules names the rules of cur that next no longer has.
func removedRules(cur, next *nsgState) []string {
	if cur == nil {
		return nil
	}
	kept := map[string]bool{}
	for _, r := range next.rules {
		kept[strings.ToLower(r.name)] = true
	}
	var out []string
	for _, r := range cur.rules {
		if !kept[strings.ToLower(r.name)] {
			out = append(out, r.name)
		}
	}
	return out
}

// newNSGState builds the state an NSG PUT body describes, replacing cur (nil
// on create), and validates it as Azure does. Callers hold s.mu.
func (s *Server) newNSGState(sub, rg, name string, raw []byte, cur *nsgState) (*nsgState, *armError) {
	var body nsgBody
	var top map[string]json.RawMessage
	if err := decodeJSON(raw, &body); err != nil {
		return nil, err
	}
	if err := decodeJSON(raw, &top); err != nil {
		return nil, err
	}
	var props map[string]json.RawMessage
	if p, ok := top["properties"]; ok && string(p) != "null" {
		if err := decodeJSON(p, &props); err != nil {
			return nil, err
		}
	}
	if !validName(name) {
		return nil, invalidNameError(name)
	}
	if body.Name != "" && !strings.EqualFold(body.Name, name) {
		return nil, nameMismatch(body.Name, name)
	}
	sub = s.sub(sub)
	next := &nsgState{resourceMeta: resourceMeta{id: nsgID(sub, rg, name), sub: sub, rg: rg, name: name, guid: uuid.NewString(), location: body.Location}}
	if g := s.groups[scopeKey(sub, rg)]; g != nil {
		next.id, next.rg = nsgID(sub, g.name, name), g.name
	}
	switch {
	case cur != nil:
		next.id, next.sub, next.rg, next.name, next.guid = cur.id, cur.sub, cur.rg, cur.name, cur.guid
		if err := sameLocation(cur.name, cur.rg, cur.location, &next.location); err != nil {
			return nil, err
		}
	case body.Location == "":
		return nil, &armError{Code: "LocationRequired", Message: "The location property is required for this definition."}
	}
	next.top = map[string]json.RawMessage{}
	for k, v := range top {
		if !nsgComputed[k] {
			next.top[k] = v
		}
	}
	next.props = map[string]json.RawMessage{}
	for k, v := range props {
		if !nsgPropsComputed[k] {
			next.props[k] = v
		}
	}
	if err := checkFlushConnection(next.props["flushConnection"]); err != nil {
		return nil, err
	}
	if body.Properties != nil {
		seen := map[string]bool{}
		for _, sr := range body.Properties.SecurityRules {
			if seen[strings.ToLower(sr.Name)] {
				return nil, &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
					"The security rule name '%s' appears more than once in network security group %s.", sr.Name, next.id)}
			}
			seen[strings.ToLower(sr.Name)] = true
			p := sr.Properties.clone()
			p.ProvisioningState = ""
			next.rules = append(next.rules, &ruleEntry{name: sr.Name, props: p})
		}
	}
	if err := validateRules(next); err != nil {
		return nil, err
	}
	next.etag = newETag()
	return next, nil
}

// checkFlushConnection refuses a flushConnection that is not a boolean, as
// ARM's request parser does; absent or null means false.
func checkFlushConnection(raw json.RawMessage) *armError {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "true", "false":
		return nil
	}
	return &armError{
		Code: "InvalidRequestFormat", Message: "Cannot parse the request.",
		Details: []armError{{Code: "InvalidJson", Message: fmt.Sprintf(
			"Could not convert %s to boolean. Path 'properties.flushConnection'.", raw)}},
	}
}

// flushConnection is the NSG's flushConnection property: whether the
// commit of a write to it re-evaluates the connections through it (see
// connections.go). It was checked when written.
func (st *nsgState) flushConnection() bool {
	return string(bytes.TrimSpace(st.props["flushConnection"])) == "true"
}

func (s *Server) deleteNSG(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := nsgKey(q.sub, q.rg, q.nsg)
	e := s.entry(key)
	if e == nil {
		writeDeleteAbsent(w, r)
		return
	}
	if !s.nsgWritable(w, r, q, nsgETag(e), e, "DeleteNetworkSecurityGroupOperation") {
		return
	}
	base := e.latest()
	if base == nil { // a queued write deletes it already
		writeDeleteAbsent(w, r)
		return
	}
	if err := s.nsgInUse(base); err != nil {
		writeARMErrorBody(w, http.StatusBadRequest, err)
		return
	}
	visible := base.clone()
	visible.provisioningState = "Deleting"
	op := s.startOperation(key, e, "DeleteNetworkSecurityGroupOperation", base.id, base.location, visible, nil,
		Event{Operation: "DeleteNetworkSecurityGroupOperation", NSGID: base.id}, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}

// patchNSGTags is UpdateTags: a synchronous PATCH that replaces the tags.
// Being synchronous, it is refused while the NSG is busy in either
// BusyMode rather than queued.
func (s *Server) patchNSGTags(w http.ResponseWriter, r *http.Request, q armRequest) {
	var body struct {
		Tags json.RawMessage `json:"tags"`
	}
	if !readBody(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nsgForRequest(w, q)
	if e == nil || !s.writable(w, r, q, nsgETag(e), e.running(), "UpdateNetworkSecurityGroupTagsOperation") {
		return
	}
	next := e.state.clone()
	if len(body.Tags) == 0 || string(body.Tags) == "null" {
		delete(next.top, "tags")
	} else {
		next.top["tags"] = body.Tags
	}
	next.etag = newETag()
	e.state = next
	writeJSON(w, http.StatusOK, s.nsgJSON(next))
}

// lookupNSG resolves an NSG reference to the NSG as it stands; nil when
// there is none. Callers hold s.mu.
func (s *Server) lookupNSG(id string) *nsgState {
	q := parseARMPath(http.MethodGet, id)
	if q.kind != "nsg" || s.servedSubscription(q.sub) == "" {
		return nil
	}
	e := s.entry(nsgKey(q.sub, q.rg, q.nsg))
	if e == nil {
		return nil
	}
	return e.visible()
}

// checkNSGReference validates an NSG association of resource from in
// location and returns the NSG's canonical id. The NSG must be in from's
// region and subscription.
func (s *Server) checkNSGReference(ref *resourceRef, from, location string) (string, *armError) {
	if ref == nil || ref.ID == "" {
		return "", nil
	}
	nsg := s.lookupNSG(ref.ID)
	if nsg == nil || normaliseLocation(nsg.location) != normaliseLocation(location) || !inSubscription(from, nsg.sub) {
		return "", invalidReference(ref.ID, from)
	}
	return nsg.id, nil
}

// nsgUsers returns the subnets and network interfaces associated with an
// NSG. Callers hold s.mu.
func (s *Server) nsgUsers(nsgID string, latest bool) (subnets, nics []string) {
	for _, v := range netStates(s, s.vnets, latest) {
		for _, sn := range v.subnets {
			if strings.EqualFold(sn.nsgID, nsgID) {
				subnets = append(subnets, v.subnetID(sn.name))
			}
		}
	}
	for _, n := range s.nicStates(latest) {
		if strings.EqualFold(n.nsgID, nsgID) {
			nics = append(nics, n.id)
		}
	}
	slices.SortFunc(subnets, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return subnets, nics
}

// nsgInUse refuses the deletion of an NSG still associated with a subnet or
// a network interface, as Azure does. Callers hold s.mu.
func (s *Server) nsgInUse(st *nsgState) *armError {
	subnets, nics := s.nsgUsers(st.id, true)
	users := slices.Concat(subnets, nics)
	if len(users) == 0 {
		return nil
	}
	return &armError{Code: "InUseNetworkSecurityGroupCannotBeDeleted", Message: fmt.Sprintf(
		"Network security group %s cannot be deleted because it is in use by the following resources: %s. In order to delete the Network security group, remove the association with the resource(s). To learn how to do this, see aka.ms/deletensg.",
		st.id, strings.Join(users, ", "))}
}

// addNSGReferences lists the NSG's subnets and network interfaces in its
// properties, as Azure shows them. Callers hold s.mu.
func (s *Server) addNSGReferences(props map[string]any, nsgID string) {
	subnets, nics := s.nsgUsers(nsgID, false)
	refs := func(ids []string) []resourceRef {
		out := make([]resourceRef, len(ids))
		for i, id := range ids {
			out[i] = resourceRef{ID: id}
		}
		return out
	}
	if len(subnets) > 0 {
		props["subnets"] = refs(subnets)
	}
	if len(nics) > 0 {
		props["networkInterfaces"] = refs(nics)
	}
}
