package azuresim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

const (
	nsgType         = "Microsoft.Network/networkSecurityGroups"
	ruleType        = "Microsoft.Network/networkSecurityGroups/securityRules"
	defaultRuleType = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
	maxBodyBytes    = 8 << 20
)

// nsgComputed are the NSG members the server computes; a client's values
// for them are ignored rather than stored.
var nsgComputed = map[string]bool{"id": true, "name": true, "etag": true, "type": true, "location": true, "properties": true}

var nsgPropsComputed = map[string]bool{
	"securityRules": true, "defaultSecurityRules": true, "provisioningState": true, "resourceGuid": true,
	"networkInterfaces": true, "subnets": true, "flowLogs": true,
}

// toNSGRule converts a stored rule to nsgrules' model.
func toNSGRule(name string, p *ruleProperties) nsgrules.Rule {
	r := nsgrules.Rule{
		Name: name, Direction: p.Direction, Access: p.Access, Protocol: p.Protocol, Description: p.Description,
		SourcePrefixes: p.sourcePrefixes(), DestinationPrefixes: p.destinationPrefixes(),
		SourcePorts: p.sourcePorts(), DestinationPorts: p.destinationPorts(),
		SourcePrefixesPlural:       p.SourceAddressPrefix == "" && len(p.SourceAddressPrefixes) > 0,
		DestinationPrefixesPlural:  p.DestinationAddressPrefix == "" && len(p.DestinationAddressPrefixes) > 0,
		SourcePortsPlural:          p.SourcePortRange == "" && len(p.SourcePortRanges) > 0,
		DestinationPortsPlural:     p.DestinationPortRange == "" && len(p.DestinationPortRanges) > 0,
		BothSourcePrefixForms:      p.SourceAddressPrefix != "" && len(p.SourceAddressPrefixes) > 0,
		BothDestinationPrefixForms: p.DestinationAddressPrefix != "" && len(p.DestinationAddressPrefixes) > 0,
		SourceASGs:                 len(p.SourceApplicationSecurityGroups),
		DestinationASGs:            len(p.DestinationApplicationSecurityGroups),
	}
	if p.Priority != nil {
		r.Priority = *p.Priority
	}
	return r
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

func fromNSGRulesError(e *nsgrules.Error) *armError {
	return &armError{Code: e.Code, Message: e.Message, Target: e.Target}
}

// validName applies Azure's resource name rule, which NSGs and resource
// groups share with security rules. nsgrules checks the name before anything
// else, so any other failure of this otherwise empty rule means the name is
// fine.
func validName(name string) bool {
	err := nsgrules.ValidateRule("", nsgrules.Rule{Name: name}, nil)
	return err == nil || err.Code != nsgrules.CodeInvalidResourceName
}

func invalidNameError(name string) *armError {
	return &armError{Code: "InvalidResourceName", Message: fmt.Sprintf(
		"Resource name %s is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.", name)}
}

func notFoundNSG(w http.ResponseWriter, q armRequest) {
	writeARMError(w, http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("The Resource 'Microsoft.Network/networkSecurityGroups/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", q.nsg, q.rg))
}

// readBody reads a JSON request body into v, answering 400
// InvalidRequestFormat when it does not decode.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, ok := readRawBody(w, r)
	if !ok {
		return false
	}
	if err := decodeJSON(raw, v); err != nil {
		writeARMErrorBody(w, http.StatusBadRequest, err)
		return false
	}
	return true
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

func ruleJSON(st *nsgState, r *ruleEntry) securityRule {
	return securityRule{ID: nsgrules.RuleID(st.id, r.name), Name: r.name, Etag: st.etag, Type: ruleType, Properties: r.props}
}

func defaultRulesJSON(st *nsgState) []securityRule {
	defaults := nsgrules.DefaultRules()
	out := make([]securityRule, len(defaults))
	for i, d := range defaults {
		prio := d.Priority
		out[i] = securityRule{
			ID: st.id + "/defaultSecurityRules/" + d.Name, Name: d.Name, Etag: st.etag, Type: defaultRuleType,
			Properties: ruleProperties{
				Description: d.Description, Protocol: d.Protocol,
				SourcePortRange: d.SourcePorts[0], DestinationPortRange: d.DestinationPorts[0],
				SourceAddressPrefix: d.SourcePrefixes[0], DestinationAddressPrefix: d.DestinationPrefixes[0],
				Access: d.Access, Priority: &prio, Direction: d.Direction, ProvisioningState: statusSucceeded,
			},
		}
	}
	return out
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

// writePage answers one page of a list, with a nextLink to the rest.
func writePage(w http.ResponseWriter, r *http.Request, items []any, pageSize int) {
	start, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	start = min(max(start, 0), len(items))
	end := min(start+pageSize, len(items))
	body := map[string]any{"value": items[start:end]}
	if end < len(items) {
		q := r.URL.Query()
		q.Set("$skiptoken", strconv.Itoa(end))
		u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
		body["nextLink"] = u.String()
	}
	writeJSON(w, http.StatusOK, body)
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
	if !s.nsgWritable(w, r, q, e.etag(), e, "PutNetworkSecurityGroupOperation") {
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
	next := &nsgState{id: nsgID(sub, rg, name), sub: sub, rg: rg, name: name, guid: uuid.NewString(), location: body.Location}
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

// writeAccepted answers a PUT whose operation was started: the resource as
// it is now, with the polling headers.
func (s *Server) writeAccepted(w http.ResponseWriter, r *http.Request, q armRequest, op *operation, status int, body any) {
	asyncOp, _ := s.asyncURLs(r, op, q.apiVersion)
	w.Header().Set("Azure-AsyncOperation", asyncOp)
	w.Header().Set("x-ms-request-id", op.id)
	s.recordWriteIDs(w, op)
	setRetryAfter(w.Header(), op.due.Sub(s.now()))
	writeJSON(w, status, body)
}

// recordWriteIDs keeps the ids a write is answered with in its event.
// s.mu is held.
func (s *Server) recordWriteIDs(w http.ResponseWriter, op *operation) {
	if op.event >= 0 && op.event < len(s.events) {
		s.events[op.event].CorrelationRequestID = w.Header().Get("x-ms-correlation-request-id")
		s.events[op.event].RequestID = w.Header().Get("x-ms-request-id")
	}
}

// writeDeleteAccepted answers a DELETE whose operation was started.
func (s *Server) writeDeleteAccepted(w http.ResponseWriter, r *http.Request, q armRequest, op *operation) {
	asyncOp, loc := s.asyncURLs(r, op, q.apiVersion)
	w.Header().Set("Azure-AsyncOperation", asyncOp)
	w.Header().Set("Location", loc)
	w.Header().Set("x-ms-request-id", op.id)
	s.recordWriteIDs(w, op)
	setRetryAfter(w.Header(), op.due.Sub(s.now()))
	w.WriteHeader(http.StatusAccepted)
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
	if !s.nsgWritable(w, r, q, e.etag(), e, "DeleteNetworkSecurityGroupOperation") {
		return
	}
	base := e.base()
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
	if e == nil || !s.writable(w, r, q, e.etag(), e.op, "UpdateNetworkSecurityGroupTagsOperation") {
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

func readRawBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestFormat", "Cannot read the request body.")
		return nil, false
	}
	return b, true
}

// decodeJSON decodes a request body, describing a failure as ARM does.
func decodeJSON(raw []byte, v any) *armError {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("x") // report an empty body as unparseable
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &armError{
			Code: "InvalidRequestFormat", Message: "Cannot parse the request.",
			Details: []armError{{Code: "InvalidJson", Message: "Error parsing the request body: " + err.Error()}},
		}
	}
	return nil
}
