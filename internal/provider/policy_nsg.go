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
// exactly p.Rules(): deny-all rules first, so a newly protected port is
// closed before anything else changes; then guards; then the rules of this
// policy that p no longer has (a protocol or address family dropped), which
// is the only step that opens anything, as the configuration asks. It returns
// the names of the rules it created (not updated), for a rollback.
func applyPolicyToNSG(ctx context.Context, store ruleStore, nsgID string, p jit.Policy, existing []jit.SecurityRule) (created []string, err error) {
	current := map[string]jit.SecurityRule{}
	for _, r := range existing {
		current[strings.ToLower(r.Name)] = r
	}
	// Deny-all rules first, then guards: policyRuleNames lists guards before
	// deny-all rules.
	names := policyRuleNames(p.Name)
	isDeny := map[string]bool{}
	for _, n := range names[6:] {
		isDeny[n] = true
	}
	desired := p.Rules()
	ordered := make([]jit.SecurityRule, 0, len(desired))
	for _, deny := range []bool{true, false} {
		for _, r := range desired {
			if isDeny[strings.ToLower(r.Name)] == deny {
				ordered = append(ordered, r)
			}
		}
	}
	want := map[string]bool{}
	for _, r := range ordered {
		want[strings.ToLower(r.Name)] = true
		old, exists := current[strings.ToLower(r.Name)]
		if exists && sameRule(old, r) {
			continue
		}
		tflog.Debug(ctx, "Writing policy rule", map[string]any{"nsg_id": nsgID, "rule": r.Name, "priority": r.Priority})
		if _, err := store.PutRule(ctx, nsgID, r); err != nil {
			return created, fmt.Errorf("write rule %s on %s: %w", r.Name, nsgID, err)
		}
		if !exists {
			created = append(created, r.Name)
		}
	}
	for _, name := range names {
		if want[name] {
			continue
		}
		if _, exists := current[name]; !exists {
			continue
		}
		tflog.Debug(ctx, "Deleting policy rule no longer needed", map[string]any{"nsg_id": nsgID, "rule": name})
		if err := store.DeleteRule(ctx, nsgID, current[name].Name); err != nil {
			return created, fmt.Errorf("delete rule %s on %s: %w", name, nsgID, err)
		}
	}
	return created, nil
}

// removePolicyFromNSG deletes the policy's rules from one NSG: its (expired)
// grant rules first, then guards, then deny-all rules. Rules outside the
// policy's names are never touched. A missing NSG has nothing to remove.
func removePolicyFromNSG(ctx context.Context, store ruleStore, nsgID, policy string, grants []jit.GrantRule) error {
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
	var order []string
	for _, g := range grants {
		order = append(order, strings.ToLower(g.Rule.Name))
	}
	names := policyRuleNames(policy)
	order = append(order, names[:6]...) // guards
	order = append(order, names[6:]...) // deny-all
	for _, name := range order {
		actual, ok := present[name]
		if !ok {
			continue
		}
		tflog.Debug(ctx, "Deleting policy rule", map[string]any{"nsg_id": nsgID, "rule": actual})
		if err := store.DeleteRule(ctx, nsgID, actual); err != nil {
			return fmt.Errorf("delete rule %s on %s: %w", actual, nsgID, err)
		}
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
