package jit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A grant that has ended leaves a record on each NSG it was open on, so
// that the same request, applied again after its state was lost, replaced
// or imported, is recognised as used up instead of opening a second window
// (see GrantRequest.ID and DecideOpen). The record must never let anything
// in or keep anything out, so it is a rule no packet can match:
//
//	name         jit-<policy>-e-<grant id>
//	direction    Outbound
//	access       Deny
//	source       the grant's source
//	destination  the same address: no packet crossing an NSG has equal
//	             source and destination, so the rule matches nothing
//	ports        the grant's ports and protocol
//	description  jit:v1 role=ended id=<grant id> exp=<unix> by=<requester>
//
// Outbound priorities are separate from inbound ones, so records take no
// priority from the policy's band; they take the highest free outbound
// priorities, below anything a person would write. Each policy keeps at
// most MaxEndedRecords records per NSG: the oldest (by expiry) give way.
// Removing the policy removes its records with it.

// MaxEndedRecords is how many records of ended grants a policy keeps on one
// NSG. It bounds the rules records take (Azure allows 1000 per NSG) and so
// how far back a re-applied request is recognised.
const MaxEndedRecords = 100

// EndedRecord is a well-formed record of an ended grant.
type EndedRecord struct {
	Policy, ID, Requester string
	ExpiresAt             time.Time
	Rule                  SecurityRule
}

// EndedRuleName is the name of a grant's record: jit-<policy>-e-<id>.
func EndedRuleName(policy, id string) string { return RuleNamePrefix + policy + "-e-" + id }

func decodeEnded(r SecurityRule, n ruleName) (EndedRecord, error) {
	switch {
	case !strings.EqualFold(string(r.Direction), string(Outbound)):
		return EndedRecord{}, fmt.Errorf("rule %q has direction %q, records of ended grants are %s", r.Name, r.Direction, Outbound)
	case !strings.EqualFold(string(r.Access), string(Deny)):
		return EndedRecord{}, fmt.Errorf("rule %q has access %q, want %s", r.Name, r.Access, Deny)
	case r.UsesApplicationSecurityGroups:
		return EndedRecord{}, fmt.Errorf("rule %q uses application security groups", r.Name)
	case len(r.SourcePrefixes) != 1 || !slices.Equal(r.SourcePrefixes, r.DestinationPrefixes):
		// Equal source and destination is what makes the record inert.
		return EndedRecord{}, fmt.Errorf("rule %q: a record of an ended grant has one source, equal to its destination", r.Name)
	}
	d, err := ParseDescription(r.Description)
	if err != nil {
		return EndedRecord{}, fmt.Errorf("rule %q: %w", r.Name, err)
	}
	if d.Role != RoleEnded || d.GrantID != n.grantID {
		return EndedRecord{}, fmt.Errorf("rule %q: description %q does not record ended grant %q", r.Name, r.Description, n.grantID)
	}
	return EndedRecord{Policy: n.policy, ID: n.grantID, Requester: d.Requester, ExpiresAt: d.ExpiresAt, Rule: r}, nil
}

// EndedRule is the record grant g leaves on an NSG whose rules are rules:
// at the priority of an existing record of the same grant, else at the
// highest free outbound priority. ok is false when no outbound priority is
// free.
func EndedRule(g GrantRule, rules []SecurityRule) (SecurityRule, bool) {
	name := EndedRuleName(g.Policy, g.ID)
	used := map[int32]bool{}
	for _, r := range rules {
		if strings.EqualFold(string(r.Direction), string(Outbound)) {
			if strings.EqualFold(r.Name, name) {
				return endedRule(g, name, r.Priority), true
			}
			used[r.Priority] = true
		}
	}
	for prio := int32(MaxPriority); prio >= MinPriority; prio-- {
		if !used[prio] {
			return endedRule(g, name, prio), true
		}
	}
	return SecurityRule{}, false
}

func endedRule(g GrantRule, name string, priority int32) SecurityRule {
	src := g.Rule.SourcePrefixes
	if len(src) > 1 {
		src = src[:1] // a grant has one source; a tampered one is recorded by its first
	}
	return SecurityRule{
		Name:                name,
		Priority:            priority,
		Direction:           Outbound,
		Access:              Deny,
		Protocol:            g.Rule.Protocol,
		SourcePrefixes:      slices.Clone(src),
		SourcePorts:         []string{Any},
		DestinationPrefixes: slices.Clone(src),
		DestinationPorts:    slices.Clone(g.Rule.DestinationPorts),
		Description: Description{Role: RoleEnded, GrantID: g.ID, ExpiresAt: time.Unix(g.ExpiresAt.Unix(), 0).UTC(),
			Requester: NewGrantDescription(g.ID, g.ExpiresAt, g.Requester).Requester}.String(),
	}
}

// RecordsToEvict names the records of policy on an NSG (described by view)
// that must go so that one more fits under MaxEndedRecords: the oldest by
// expiry, then by name.
func RecordsToEvict(view NSGView, policy string) []string {
	var mine []EndedRecord
	for _, e := range view.Ended {
		if e.Policy == policy {
			mine = append(mine, e)
		}
	}
	over := len(mine) - (MaxEndedRecords - 1)
	if over <= 0 {
		return nil
	}
	slices.SortFunc(mine, func(a, b EndedRecord) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.Rule.Name, b.Rule.Name))
	})
	names := make([]string, over)
	for i := range over {
		names[i] = mine[i].Rule.Name
	}
	return names
}

// GrantEnd is what ending a grant changes on one NSG.
type GrantEnd struct {
	// Delete names the rules to delete: the grant's rule when it is there,
	// and the oldest records of its policy when one more would not fit.
	Delete []string
	// Record is true when the grant's record must be written (EndedRule,
	// chosen against the NSG's rules at the moment of the write).
	Record bool
}

// Empty reports whether there is nothing to change.
func (e GrantEnd) Empty() bool { return len(e.Delete) == 0 && !e.Record }

// EndGrant decides what ending grant g changes on an NSG whose rules read
// as view: its rule goes, and, when its policy is on the NSG, a record of it
// stays (records live and go with their policy, so that removing a policy
// leaves the NSG as it was). A grant already closed and recorded there
// changes nothing.
func EndGrant(view NSGView, g GrantRule) GrantEnd {
	var end GrantEnd
	name := GrantRuleName(g.Policy, g.ID)
	for _, r := range append(grantRules(view.Grants), malformedRules(view.Malformed)...) {
		if strings.EqualFold(r.Name, name) {
			end.Delete = append(end.Delete, r.Name)
		}
	}
	if _, ok := view.Policies[g.Policy]; !ok {
		return end
	}
	recorded := slices.ContainsFunc(view.Ended, func(e EndedRecord) bool {
		return strings.EqualFold(e.Rule.Name, EndedRuleName(g.Policy, g.ID))
	})
	if !recorded {
		end.Record = true
		end.Delete = append(end.Delete, RecordsToEvict(view, g.Policy)...)
	}
	return end
}

func grantRules(gs []GrantRule) []SecurityRule {
	out := make([]SecurityRule, len(gs))
	for i, g := range gs {
		out[i] = g.Rule
	}
	return out
}

func malformedRules(fs []Finding) []SecurityRule {
	out := make([]SecurityRule, len(fs))
	for i, f := range fs {
		out[i] = f.Rule
	}
	return out
}

// MoveGrant is grant g's rule for another NSG of the same policy, given
// that NSG's rules: the same source, ports, expiry and requester (so only
// its remaining window), the policy's destinations, at g's priority when it
// is free there, else at the lowest free priority of the grant range.
func (p Policy) MoveGrant(g GrantRule, rules []SecurityRule) (SecurityRule, error) {
	r := g.Rule
	r.SourcePrefixes = slices.Clone(r.SourcePrefixes)
	r.DestinationPorts = slices.Clone(r.DestinationPorts)
	if len(r.SourcePrefixes) != 1 {
		return SecurityRule{}, fmt.Errorf("grant %s has %d sources, a grant has one", g.ID, len(r.SourcePrefixes))
	}
	src, err := parseAddressPrefix(r.SourcePrefixes[0])
	if err != nil {
		return SecurityRule{}, fmt.Errorf("grant %s: %w", g.ID, err)
	}
	r.DestinationPrefixes = p.destinations(familyOf(src.Addr()))
	lo, hi := p.Band.GrantRange()
	free := r.Priority >= lo && r.Priority <= hi
	for _, x := range rules {
		if (x.Direction == Inbound || x.Direction == "") && x.Priority == r.Priority && !strings.EqualFold(x.Name, r.Name) {
			free = false
		}
	}
	if !free {
		prio, ok := p.FreeGrantPriority(rules, nil)
		if !ok {
			return SecurityRule{}, fmt.Errorf("the grant range %d–%d of policy %q is full", lo, hi, p.Name)
		}
		r.Priority = prio
	}
	return r, nil
}

// MoveRecord is record e for another NSG of its policy, given that NSG's
// rules: at e's priority when it is free among the outbound rules there,
// else at the highest free outbound priority. A policy's records go with
// it to every NSG it holds, so that none is lost when it leaves one.
func MoveRecord(e EndedRecord, rules []SecurityRule) (SecurityRule, bool) {
	r := e.Rule
	r.SourcePrefixes = slices.Clone(r.SourcePrefixes)
	r.DestinationPrefixes = slices.Clone(r.DestinationPrefixes)
	r.DestinationPorts = slices.Clone(r.DestinationPorts)
	used := map[int32]bool{}
	for _, x := range rules {
		if strings.EqualFold(string(x.Direction), string(Outbound)) && !strings.EqualFold(x.Name, r.Name) {
			used[x.Priority] = true
		}
	}
	if !used[r.Priority] && r.Priority >= MinPriority && r.Priority <= MaxPriority {
		return r, true
	}
	for prio := int32(MaxPriority); prio >= MinPriority; prio-- {
		if !used[prio] {
			r.Priority = prio
			return r, true
		}
	}
	return SecurityRule{}, false
}
