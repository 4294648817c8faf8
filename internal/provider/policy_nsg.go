package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// This file holds what a policy does to one NSG, independent of Terraform's
// plumbing: make its guard and deny-all rules exactly the policy's, or remove
// them, in an order that never leaves a protected port open longer than the
// configuration asks.

// policyRuleNames is every name a policy's guard and deny-all rules can
// have, so that rules a policy no longer needs are found and removed even
// when they no longer decode.
func policyRuleNames(policy string) []string {
	var names []string
	for _, role := range []string{"guard", "deny"} {
		for _, proto := range []string{"tcp", "udp", "any"} {
			for _, family := range []string{"", "-v6"} {
				names = append(names, jit.RuleNamePrefix+policy+"-"+role+"-"+proto+family)
			}
		}
	}
	return names
}

// applyPolicyToNSG makes the policy's guard and deny-all rules on one NSG
// exactly p.Rules(): the rules that differ are written and the rules of this
// policy that p no longer has (a protocol or address family dropped) are
// deleted, all in one NSG write, so there is no moment in between where a
// newly protected port is still open or a guard is missing. The rules of
// the active grants in carry (from the policy's other NSGs, when this one
// joins the policy) are written in the same write, where missing, for their
// remaining window only (jit.Policy.MoveGrant), and so are the records of
// ended grants in records (jit.MoveRecord), so that every NSG of the policy
// holds them all. A flush that is not nil sets the NSG's flushConnection in
// the same write (sessionSettings). It returns the names of the rules it
// created (not updated), for a rollback.
func applyPolicyToNSG(ctx context.Context, store ruleStore, nsgID string, p jit.Policy, existing []jit.SecurityRule, carry []jit.GrantRule, records []jit.EndedRecord, flush *bool) (created []string, err error) {
	current := map[string]jit.SecurityRule{}
	for _, r := range existing {
		current[strings.ToLower(r.Name)] = r
	}
	var changes []azure.RuleChange
	want := map[string]bool{}
	for _, r := range p.Rules() {
		want[strings.ToLower(r.Name)] = true
		old, exists := current[strings.ToLower(r.Name)]
		if exists && sameRule(old, r) {
			continue
		}
		changes = append(changes, azure.RuleChange{Put: &r})
		if !exists {
			created = append(created, r.Name)
		}
	}
	for _, name := range policyRuleNames(p.Name) {
		if old, exists := current[name]; exists && !want[name] {
			changes = append(changes, azure.RuleChange{Delete: old.Name})
		}
	}
	for _, g := range carry {
		if _, exists := current[strings.ToLower(g.Rule.Name)]; exists {
			continue
		}
		changes = append(changes, azure.RuleChange{Choose: func(rules []jit.SecurityRule) (jit.SecurityRule, error) {
			return p.MoveGrant(g, rules)
		}})
		created = append(created, g.Rule.Name)
	}
	for _, e := range records {
		if _, exists := current[strings.ToLower(e.Rule.Name)]; exists {
			continue
		}
		changes = append(changes, azure.RuleChange{Choose: func(rules []jit.SecurityRule) (jit.SecurityRule, error) {
			r, ok := jit.MoveRecord(e, rules)
			if !ok {
				return jit.SecurityRule{}, fmt.Errorf("no outbound priority is free for the record %s", e.Rule.Name)
			}
			return r, nil
		}})
	}
	if flush != nil {
		changes = append(changes, azure.RuleChange{FlushConnection: flush})
	}
	if len(changes) == 0 {
		return nil, nil
	}
	tflog.Debug(ctx, "Writing policy rules", map[string]any{"nsg_id": nsgID, "changes": len(changes)})
	if _, err := store.ApplyRuleChanges(ctx, nsgID, changes); err != nil {
		return nil, fmt.Errorf("write the policy's rules on %s: %w", nsgID, err)
	}
	return created, nil
}

// removePolicyFromNSG deletes the policy's rules from one NSG, its grant
// rules and the records of its ended grants with them, in one NSG write, so
// the NSG is left as it was before the policy: flushConnection too, when
// the policy turned it on and no other policy there asks for it. Rules
// outside the policy's names are never touched. A missing NSG has nothing
// to remove.
func removePolicyFromNSG(ctx context.Context, store ruleStore, nsgID, policy string, grants []jit.GrantRule, sessions *sessionSettings) error {
	rules, err := store.ListRules(ctx, nsgID)
	if errors.Is(err, azure.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list rules of %s: %w", nsgID, err)
	}
	present := map[string]string{}
	for _, r := range rules {
		present[strings.ToLower(r.Name)] = r.Name
	}
	var names []string
	for _, g := range grants {
		names = append(names, strings.ToLower(g.Rule.Name))
	}
	for _, e := range jit.ReadNSG(rules).Ended {
		if e.Policy == policy {
			names = append(names, strings.ToLower(e.Rule.Name))
		}
	}
	names = append(names, policyRuleNames(policy)...)
	var changes []azure.RuleChange
	for _, name := range names {
		if actual, ok := present[name]; ok {
			changes = append(changes, azure.RuleChange{Delete: actual})
		}
	}
	if sessions != nil && sessions.knows(nsgID) {
		current, err := store.FlushConnection(ctx, nsgID)
		if err != nil {
			return fmt.Errorf("read flushConnection of %s: %w", nsgID, err)
		}
		others := len(otherPoliciesEndingSessions(jit.ReadNSG(rules), policy)) > 0
		if flush := sessions.release(nsgID, current, others); flush != nil {
			changes = append(changes, azure.RuleChange{FlushConnection: flush})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	tflog.Debug(ctx, "Deleting policy rules", map[string]any{"nsg_id": nsgID, "rules": len(changes)})
	if _, err := store.ApplyRuleChanges(ctx, nsgID, changes); err != nil && !errors.Is(err, azure.ErrNotFound) {
		return fmt.Errorf("delete the policy's rules on %s: %w", nsgID, err)
	}
	return nil
}

// sameRule reports whether writing want over have would change anything.
func sameRule(have, want jit.SecurityRule) bool {
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
	if len(a) != len(b) {
		return false
	}
	x := slices.Clone(a)
	y := slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
