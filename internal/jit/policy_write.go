package jit

import (
	"fmt"
	"slices"
	"strings"
)

// This file decides what a policy does to one NSG: make its guard and
// deny-all rules exactly the policy's, or remove them, in one NSG write,
// so that there is no moment in between where a newly protected port is
// still open or a guard is missing. Rules outside the policy's names are
// never touched.

// PolicyRuleNames is every name a guard or deny-all rule of policy can
// have, so that rules a policy no longer needs are found and removed even
// when they no longer decode.
func PolicyRuleNames(policy string) []string {
	var names []string
	for _, role := range []string{"guard", "deny"} {
		for _, proto := range []string{"tcp", "udp", "any"} {
			for _, family := range []string{"", "-v6"} {
				names = append(names, RuleNamePrefix+policy+"-"+role+"-"+proto+family)
			}
		}
	}
	return names
}

// PolicyWrite is what writing a policy on one NSG changes, all in one NSG
// write, in this order: Put, Delete, then Grants and Records (each placed
// against the NSG as it is at the moment of the write: Policy.MoveGrant,
// MoveRecordRule).
type PolicyWrite struct {
	Put     []SecurityRule // guard and deny-all rules missing or different
	Delete  []string       // rules of the policy it no longer has (a protocol or family dropped), as named on the NSG
	Grants  []GrantRule    // carried grants whose rules are missing here
	Records []EndedRecord  // records of ended grants missing here
	// Created names the rules the write creates (not updates), for a
	// rollback of a failed create.
	Created []string
}

// Empty reports whether the write changes nothing.
func (w PolicyWrite) Empty() bool {
	return len(w.Put) == 0 && len(w.Delete) == 0 && len(w.Grants) == 0 && len(w.Records) == 0
}

// WriteOn decides what makes p's guard and deny-all rules on an NSG whose
// rules are existing exactly p.Rules(), and opens there the grants of carry
// and the records of records that it does not hold yet (an NSG joining the
// policy holds them all afterwards, for the grants' remaining window only).
func (p Policy) WriteOn(existing []SecurityRule, carry []GrantRule, records []EndedRecord) PolicyWrite {
	current := map[string]SecurityRule{}
	for _, r := range existing {
		current[strings.ToLower(r.Name)] = r
	}
	var w PolicyWrite
	want := map[string]bool{}
	for _, r := range p.Rules() {
		want[strings.ToLower(r.Name)] = true
		old, exists := current[strings.ToLower(r.Name)]
		if exists && SameRule(old, r) {
			continue
		}
		w.Put = append(w.Put, r)
		if !exists {
			w.Created = append(w.Created, r.Name)
		}
	}
	for _, name := range PolicyRuleNames(p.Name) {
		if old, exists := current[name]; exists && !want[name] {
			w.Delete = append(w.Delete, old.Name)
		}
	}
	for _, g := range carry {
		if _, exists := current[strings.ToLower(g.Rule.Name)]; exists {
			continue
		}
		w.Grants = append(w.Grants, g)
		w.Created = append(w.Created, g.Rule.Name)
	}
	for _, e := range records {
		if _, exists := current[strings.ToLower(e.Rule.Name)]; !exists {
			w.Records = append(w.Records, e)
		}
	}
	return w
}

// MoveRecordRule is MoveRecord, failing when no outbound priority is free.
func MoveRecordRule(e EndedRecord, rules []SecurityRule) (SecurityRule, error) {
	r, ok := MoveRecord(e, rules)
	if !ok {
		return SecurityRule{}, fmt.Errorf("no outbound priority is free for the record %s", e.Rule.Name)
	}
	return r, nil
}

// RemovalNames names the rules that removing policy from an NSG whose rules
// are rules deletes, as named there: the grant rules of grants, the records
// of the policy's ended grants, and its guard and deny-all rules, those
// present only. Rules outside these names are never touched.
func RemovalNames(policy string, rules []SecurityRule, grants []GrantRule) []string {
	present := map[string]string{}
	for _, r := range rules {
		present[strings.ToLower(r.Name)] = r.Name
	}
	var names []string
	for _, g := range grants {
		names = append(names, strings.ToLower(g.Rule.Name))
	}
	for _, e := range ReadNSG(rules).Ended {
		if e.Policy == policy {
			names = append(names, strings.ToLower(e.Rule.Name))
		}
	}
	names = append(names, PolicyRuleNames(policy)...)
	var out []string
	for _, name := range names {
		if actual, ok := present[name]; ok {
			out = append(out, actual)
		}
	}
	return out
}

// SameRule reports whether writing want over have would change nothing. A
// rule using application security groups is never the same as one of the
// policy's, which never does.
func SameRule(have, want SecurityRule) bool {
	return strings.EqualFold(have.Name, want.Name) &&
		have.Priority == want.Priority &&
		have.Direction == want.Direction &&
		have.Access == want.Access &&
		strings.EqualFold(string(have.Protocol), string(want.Protocol)) &&
		sameSet(have.SourcePrefixes, want.SourcePrefixes) &&
		sameSet(have.SourcePorts, want.SourcePorts) &&
		sameSet(have.DestinationPrefixes, want.DestinationPrefixes) &&
		sameSet(have.DestinationPorts, want.DestinationPorts) &&
		have.Description == want.Description &&
		!have.UsesApplicationSecurityGroups
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && slices.Equal(sortedCopy(a), sortedCopy(b))
}

// FlushKept decides the flushConnection value to write on an NSG that has
// (or keeps) policy p, given found (the values each NSG had before a policy
// turned the setting on, by lower-case NSG id, updated here), the NSG's
// current value and whether another policy there asks for it; nil when
// nothing is to be written. When p ends sessions, the current value is
// remembered the first time; when it no longer does, the remembered value
// is put back (FlushReleased).
func FlushKept(found map[string]bool, nsgID string, endSessions, current, othersAsk bool) *bool {
	key := strings.ToLower(nsgID)
	if endSessions {
		if _, ok := found[key]; !ok {
			found[key] = current
		}
		if !current {
			return ptrTo(true)
		}
		return nil
	}
	return FlushReleased(found, nsgID, current, othersAsk)
}

// FlushReleased decides the flushConnection value to put back on an NSG a
// policy leaves (or stops ending sessions on), and forgets the value found
// there: nil when nothing is to be written (the value found is not known,
// it is the current one, or another policy there asks for it).
func FlushReleased(found map[string]bool, nsgID string, current, othersAsk bool) *bool {
	key := strings.ToLower(nsgID)
	was, ok := found[key]
	if !ok {
		return nil
	}
	delete(found, key)
	if othersAsk || was == current {
		return nil
	}
	return ptrTo(was)
}

func ptrTo[T any](v T) *T { return &v }
