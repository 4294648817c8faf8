package azuresim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Security rules, the child resources of an NSG (and its default rules):
// written one at a time through the NSG's write queue, sharing its ETag.

type ruleEntry struct {
	name  string
	props ruleProperties
}

// findRule returns the index of the rule named name (case-insensitively).
func (st *nsgState) findRule(name string) int {
	return slices.IndexFunc(st.rules, func(r *ruleEntry) bool { return strings.EqualFold(r.name, name) })
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

func fromNSGRulesError(e *nsgrules.Error) *armError {
	return &armError{Code: e.Code, Message: e.Message, Target: e.Target}
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

func notFoundRule(w http.ResponseWriter, st *nsgState, name string) {
	writeARMError(w, http.StatusNotFound, "NotFound",
		fmt.Sprintf("Resource %s not found.", nsgrules.RuleID(st.id, name)))
}

func (s *Server) getRule(w http.ResponseWriter, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nsgForRequest(w, q)
	if e == nil {
		return
	}
	st := e.visible()
	i := st.findRule(q.rule)
	if i < 0 {
		notFoundRule(w, st, q.rule)
		return
	}
	writeWithETag(w, st.etag, ruleJSON(st, st.rules[i]))
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		e := s.nsgForRequest(w, q)
		if e == nil {
			return nil, false
		}
		st := e.visible()
		items := make([]any, len(st.rules))
		for i, rule := range st.rules {
			items[i] = ruleJSON(st, rule)
		}
		return items, true
	})
}

func (s *Server) getDefaultRule(w http.ResponseWriter, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nsgForRequest(w, q)
	if e == nil {
		return
	}
	st := e.visible()
	for _, d := range defaultRulesJSON(st) {
		if strings.EqualFold(d.Name, q.rule) {
			writeJSON(w, http.StatusOK, d)
			return
		}
	}
	writeARMError(w, http.StatusNotFound, "NotFound",
		fmt.Sprintf("Resource %s/defaultSecurityRules/%s not found.", st.id, q.rule))
}

func (s *Server) listDefaultRules(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		e := s.nsgForRequest(w, q)
		if e == nil {
			return nil, false
		}
		defaults := defaultRulesJSON(e.visible())
		items := make([]any, len(defaults))
		for i, d := range defaults {
			items[i] = d
		}
		return items, true
	})
}

// putRule creates or updates one security rule: validated as Azure does,
// then applied by a long-running operation during which the NSG is busy.
func (s *Server) putRule(w http.ResponseWriter, r *http.Request, q armRequest) {
	var body securityRule
	if !readBody(w, r, &body) {
		return
	}
	if body.Name != "" && !strings.EqualFold(body.Name, q.rule) {
		writeARMErrorBody(w, http.StatusBadRequest, nameMismatch(body.Name, q.rule))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	key := nsgKey(q.sub, q.rg, q.nsg)
	e := s.nsgForRequest(w, q)
	if e == nil {
		return
	}
	cur := e.visible()
	i := cur.findRule(q.rule)
	if !s.nsgWritable(w, r, q, childETag(cur.etag, i), e, "PutSecurityRuleOperation") {
		return
	}
	base := e.latest()
	if base == nil { // a queued write deletes the NSG
		notFoundNSG(w, q)
		return
	}
	next := base.clone()
	props := body.Properties.clone()
	props.ProvisioningState = ""
	name := q.rule
	if i >= 0 {
		name = next.rules[i].name // ids keep the case the rule was created with
		next.rules[i].props = props
	} else {
		next.rules = append(next.rules, &ruleEntry{name: name, props: props})
	}
	if err := s.validateRulePut(next, name); err != nil {
		writeARMErrorBody(w, http.StatusBadRequest, err)
		return
	}
	next.etag = newETag()
	visible := next.clone()
	visible.rules[visible.findRule(name)].props.ProvisioningState = "Updating"
	next.rules[next.findRule(name)].props.ProvisioningState = statusSucceeded
	carryPending(e, visible)

	op := s.startOperation(key, e, "PutSecurityRuleOperation", nsgrules.RuleID(next.id, name), next.location, visible, next,
		Event{Operation: "PutSecurityRuleOperation", NSGID: next.id, RuleName: name, Rule: snapshotRule(&props)}, q.failLRO)
	vs := visible.rules[visible.findRule(name)]
	s.writeAccepted(w, r, q, op, putStatus(i < 0), ruleJSON(visible, vs))
}

// validateRulePut validates the rule named name against the others in st
// and the NSG-wide limits on the result.
func (s *Server) validateRulePut(st *nsgState, name string) *armError {
	var target nsgrules.Rule
	all := make([]nsgrules.Rule, 0, len(st.rules))
	others := make([]nsgrules.Rule, 0, len(st.rules))
	for _, r := range st.rules {
		nr := toNSGRule(r.name, &r.props)
		all = append(all, nr)
		if strings.EqualFold(r.name, name) {
			target = nr
		} else {
			others = append(others, nr)
		}
	}
	if err := nsgrules.ValidateRule(st.id, target, others); err != nil {
		return fromNSGRulesError(err)
	}
	if err := nsgrules.ValidateLimits(st.id, all); err != nil {
		return fromNSGRulesError(err)
	}
	return nil
}

// deleteRule deletes one security rule through a long-running operation;
// deleting a rule that does not exist answers 204 at once.
func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := nsgKey(q.sub, q.rg, q.nsg)
	e := s.nsgForRequest(w, q)
	if e == nil {
		return
	}
	cur := e.visible()
	i := cur.findRule(q.rule)
	if !s.ruleDeletable(w, r, q, cur.etag, i, e, "DeleteSecurityRuleOperation") {
		return
	}
	base := e.latest()
	if base == nil || base.findRule(q.rule) < 0 { // a queued write deletes the NSG or the rule
		writeDeleteAbsent(w, r)
		return
	}
	i = base.findRule(q.rule)
	old := base.rules[i]
	next := base.clone()
	next.rules = append(next.rules[:i], next.rules[i+1:]...)
	next.etag = newETag()
	visible := base.clone()
	visible.etag = next.etag
	visible.rules[i].props.ProvisioningState = "Deleting"
	carryPending(e, visible)
	op := s.startOperation(key, e, "DeleteSecurityRuleOperation", nsgrules.RuleID(next.id, old.name), next.location, visible, next,
		Event{Operation: "DeleteSecurityRuleOperation", NSGID: next.id, RuleName: old.name, Rule: snapshotRule(&old.props)}, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}
