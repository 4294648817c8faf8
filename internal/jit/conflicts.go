package jit

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
)

// Azure's limits per network security group.
const (
	MaxRulesPerNSG    = 1000 // inbound and outbound together
	MaxPrefixesPerNSG = 4000 // IP addresses and ranges across all rules
)

// Conflicts checks a policy against the rules already on one NSG before
// writing it there: bands of other policies that overlap this one's, rules
// outside the policy at priorities inside its band (its fixed slots would
// collide with them and they would be evaluated among its grants), and
// Azure's limits once the policy's rules are added (existing rules of this
// policy count as replaced). It returns every conflict as a *FieldError
// (errors.Join), or nil.
func Conflicts(p Policy, nsgID string, rules []SecurityRule) error {
	var errs problems
	view := ReadNSG(rules)

	overlapping := map[string]bool{}
	var others []string
	for name := range view.Policies {
		if name != p.Name {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	for _, name := range others {
		band := observedBand(view.Policies[name], rules)
		if band.Overlaps(p.Band) {
			overlapping[name] = true
			errs.add(pathBand, "band %s of policy %q overlaps band %s of policy %q on %s; bands of policies sharing an NSG must not overlap", p.Band, p.Name, band, name, nsgID)
		}
	}

	for _, r := range rules {
		if !strings.EqualFold(string(r.Direction), string(Inbound)) || !p.Band.Contains(r.Priority) {
			continue
		}
		if n, ok := parseRuleName(r.Name); ok && (n.policy == p.Name || overlapping[n.policy]) {
			continue
		}
		errs.add(pathBand, "rule %q at priority %d on %s lies inside band %s: the policy's fixed slots would collide with it and grants would be evaluated alongside it; move the rule or choose another band", r.Name, r.Priority, nsgID, p.Band)
	}

	own := func(r SecurityRule) bool {
		n, ok := parseRuleName(r.Name)
		return ok && n.policy == p.Name && (n.role == RoleGuard || n.role == RoleDeny)
	}
	count, prefixes := 0, 0
	for _, r := range rules {
		if !own(r) {
			count++
			prefixes += prefixCount(r)
		}
	}
	added := p.Rules()
	for _, r := range added {
		count++
		prefixes += prefixCount(r)
	}
	if count > MaxRulesPerNSG {
		errs.add(pathNSGs, "%s would hold %d security rules with this policy's %d, over Azure's limit of %d per NSG", nsgID, count, len(added), MaxRulesPerNSG)
	}
	if prefixes > MaxPrefixesPerNSG {
		errs.add(pathNSGs, "%s would hold %d address prefixes across its rules with this policy's, over Azure's limit of %d per NSG; fewer, wider allowed sources make a shorter guard", nsgID, prefixes, MaxPrefixesPerNSG)
	}
	return errors.Join(errs...)
}

// observedBand is a policy's band as decoded, or for a malformed policy,
// the span of its rules' priorities.
func observedBand(dp DecodedPolicy, rules []SecurityRule) Band {
	if dp.Problem == "" {
		return dp.Policy.Band
	}
	var b Band
	for _, r := range rules {
		if !slices.Contains(dp.RuleNames, r.Name) {
			continue
		}
		if b == (Band{}) {
			b = Band{r.Priority, r.Priority}
		}
		b.Start, b.End = min(b.Start, r.Priority), max(b.End, r.Priority)
	}
	return b
}

// prefixCount counts a rule's IP addresses and ranges, the entries Azure's
// per-NSG prefix limit counts ("*" and service tags are not prefixes).
func prefixCount(r SecurityRule) int {
	n := 0
	for _, list := range [][]string{r.SourcePrefixes, r.DestinationPrefixes} {
		for _, e := range list {
			if _, err := netip.ParsePrefix(e); err == nil {
				n++
			} else if _, err := netip.ParseAddr(e); err == nil {
				n++
			}
		}
	}
	return n
}
