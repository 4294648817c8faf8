package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// This file writes what a policy does to one NSG, as the domain decides it
// (jit.Policy.WriteOn, jit.RemovalNames): make its guard and deny-all rules
// exactly the policy's, or remove them, each in one NSG write.

// applyPolicyToNSG writes on one NSG what jit.Policy.WriteOn decides: the
// policy's guard and deny-all rules that differ, the deletion of those p no
// longer has, and the rules of the carried grants and records of ended
// grants missing there (each placed against the NSG as it is at the moment
// of the write: jit.Policy.MoveGrant, jit.MoveRecordRule), all in one NSG
// write. A flush that is not nil sets the NSG's flushConnection in the same
// write (sessionSettings). It returns the names of the rules it created
// (not updated), for a rollback.
func applyPolicyToNSG(ctx context.Context, store ruleStore, nsgID string, p jit.Policy, existing []jit.SecurityRule, carry []jit.GrantRule, records []jit.EndedRecord, flush *bool) (created []string, err error) {
	w := p.WriteOn(existing, carry, records)
	var changes []azure.RuleChange
	for _, r := range w.Put {
		changes = append(changes, azure.RuleChange{Put: &r})
	}
	for _, name := range w.Delete {
		changes = append(changes, azure.RuleChange{Delete: name})
	}
	for _, g := range w.Grants {
		changes = append(changes, azure.RuleChange{Choose: func(rules []jit.SecurityRule) (jit.SecurityRule, error) {
			return p.MoveGrant(g, rules)
		}})
	}
	for _, e := range w.Records {
		changes = append(changes, azure.RuleChange{Choose: func(rules []jit.SecurityRule) (jit.SecurityRule, error) {
			return jit.MoveRecordRule(e, rules)
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
	return w.Created, nil
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
	var changes []azure.RuleChange
	for _, name := range jit.RemovalNames(policy, rules, grants) {
		changes = append(changes, azure.RuleChange{Delete: name})
	}
	if sessions != nil && sessions.knows(nsgID) {
		current, err := store.FlushConnection(ctx, nsgID)
		if err != nil {
			return fmt.Errorf("read flushConnection of %s: %w", nsgID, err)
		}
		others := len(jit.ReadNSG(rules).PoliciesEndingSessions(policy)) > 0
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
