package jit

import (
	"fmt"
	"slices"
	"strings"
)

// policyIDSep separates a policy id's name from its NSG ids.
const policyIDSep = "@"

// PolicyID is a jit_policy's id, "<name>@<nsg id>,<nsg id>...": the
// policy's name and its NSGs, all a grant needs to find it on Azure. The
// NSG ids are sorted (case-insensitively), so the id does not depend on the
// order they were listed in.
func PolicyID(name string, nsgIDs []string) string {
	ids := slices.Clone(nsgIDs)
	slices.SortStableFunc(ids, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return name + policyIDSep + strings.Join(ids, ",")
}

// ParsePolicyID reads a PolicyID back into the policy's name and NSG ids,
// in the order the id lists them. The name must be a policy's
// (ValidPolicyName) and every NSG id one (CheckNSGID).
func ParsePolicyID(id string) (name string, nsgIDs []string, err error) {
	name, rest, ok := strings.Cut(id, policyIDSep)
	if !ok || name == "" || rest == "" {
		return "", nil, fmt.Errorf("%q is not a JIT policy id: expected <name>@<nsg id>[,<nsg id>...]", id)
	}
	if !ValidPolicyName(name) {
		return "", nil, fmt.Errorf("%q is not a JIT policy id: %q is not a policy name", id, name)
	}
	ids := strings.Split(rest, ",")
	for _, nsgID := range ids {
		if err := CheckNSGID(nsgID); err != nil {
			return "", nil, fmt.Errorf("%q is not a JIT policy id: %w", id, err)
		}
	}
	return name, ids, nil
}

// CheckNSGID reports what is wrong with id as the ARM id of a network
// security group
// (/subscriptions/S/resourceGroups/G/providers/Microsoft.Network/networkSecurityGroups/N),
// or nil. ARM matches the segment names case-insensitively, and so does
// this.
func CheckNSGID(id string) error {
	parts := strings.Split(id, "/")
	// "", subscriptions, S, resourceGroups, G, providers, Microsoft.Network, networkSecurityGroups, N
	if len(parts) != 9 || parts[0] != "" {
		return fmt.Errorf("%q is not a network security group id", id)
	}
	for _, s := range []struct {
		i    int
		name string
	}{{1, "subscriptions"}, {3, "resourceGroups"}, {5, "providers"}, {6, "Microsoft.Network"}, {7, "networkSecurityGroups"}} {
		if !strings.EqualFold(parts[s.i], s.name) {
			return fmt.Errorf("%q is not a network security group id: segment %d is %q, expected %q", id, s.i, parts[s.i], s.name)
		}
	}
	for _, s := range []struct {
		i    int
		what string
	}{{2, "subscription id"}, {4, "resource group name"}, {8, "network security group name"}} {
		if parts[s.i] == "" {
			return fmt.Errorf("%q is not a network security group id: it has an empty %s", id, s.what)
		}
	}
	return nil
}

// NSGsChange compares a policy's NSGs before and after a change (ids match
// case-insensitively): gained are the NSGs only after has, in its order,
// leaving those only before has, in its order.
func NSGsChange(before, after []string) (gained, leaving []string) {
	for _, id := range after {
		if !containsFold(before, id) {
			gained = append(gained, id)
		}
	}
	for _, id := range before {
		if !containsFold(after, id) {
			leaving = append(leaving, id)
		}
	}
	return gained, leaving
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
