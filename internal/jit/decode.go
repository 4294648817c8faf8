package jit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// NSGView is what one NSG says about JIT: every policy found on it, its
// grants, and problems.
type NSGView struct {
	Policies  map[string]DecodedPolicy // by policy name
	Grants    []GrantRule              // every well-formed grant rule (any policy), by name
	Ended     []EndedRecord            // every well-formed record of an ended grant (any policy), by name
	Malformed []Finding                // JIT-namespace rules that fail to decode (fail closed), by name
	Foreign   []SecurityRule           // rules outside the jit- namespace, as given
}

// DecodedPolicy is one policy as read back from its guard and deny-all
// rules on one NSG.
type DecodedPolicy struct {
	Policy    Policy   // meaningful only when Problem is empty
	RuleNames []string // the policy's guard and deny-all rules found, sorted
	// Problem is non-empty when the rules exist but do not encode a valid
	// policy exactly: the policy is then malformed on this NSG and nothing
	// may be granted under it until it is rewritten.
	Problem string
}

// GrantRule is a well-formed grant rule: its name and description agree.
// Whether it fits its policy is for the caller to judge.
type GrantRule struct {
	Policy, ID, Requester string
	ExpiresAt             time.Time
	Rule                  SecurityRule
}

// Finding is a JIT-namespace rule that could not be decoded, and why.
type Finding struct {
	Rule   SecurityRule
	Reason string
	// Grant is set when the rule reads as a grant but is not as its grant
	// wrote it (its seal does not match: see SealGrantRule): what it
	// claims to be, so that it can be closed and recorded as that grant.
	Grant *GrantRule
}

// ReadNSG decodes the JIT rules among an NSG's rules. It fails closed: a
// policy whose rules are not exactly what its decoded form would write is
// reported with a Problem rather than guessed at, and a JIT rule that does
// not decode at all is listed in Malformed.
func ReadNSG(rules []SecurityRule) NSGView {
	view := NSGView{Policies: map[string]DecodedPolicy{}}
	byPolicy := map[string][]SecurityRule{}
	for _, r := range rules {
		if !strings.HasPrefix(r.Name, RuleNamePrefix) {
			view.Foreign = append(view.Foreign, r)
			continue
		}
		n, ok := parseRuleName(r.Name)
		if !ok {
			view.Malformed = append(view.Malformed, Finding{Rule: r, Reason: fmt.Sprintf("rule name %q is in the %s namespace but is not a guard, deny-all or grant rule name of a valid policy", r.Name, RuleNamePrefix)})
			continue
		}
		if n.role == RoleGrant {
			g, err := decodeGrant(r, n)
			if err != nil {
				f := Finding{Rule: r, Reason: err.Error()}
				if g.ID != "" {
					f.Grant = &g
				}
				view.Malformed = append(view.Malformed, f)
				continue
			}
			view.Grants = append(view.Grants, g)
			continue
		}
		if n.role == RoleEnded {
			e, err := decodeEnded(r, n)
			if err != nil {
				view.Malformed = append(view.Malformed, Finding{Rule: r, Reason: err.Error()})
				continue
			}
			view.Ended = append(view.Ended, e)
			continue
		}
		byPolicy[n.policy] = append(byPolicy[n.policy], r)
	}
	for name, rs := range byPolicy {
		dp, findings := decodePolicy(name, rs)
		view.Policies[name] = dp
		view.Malformed = append(view.Malformed, findings...)
	}
	slices.SortFunc(view.Grants, func(a, b GrantRule) int { return strings.Compare(a.Rule.Name, b.Rule.Name) })
	slices.SortFunc(view.Ended, func(a, b EndedRecord) int { return strings.Compare(a.Rule.Name, b.Rule.Name) })
	slices.SortStableFunc(view.Malformed, func(a, b Finding) int { return strings.Compare(a.Rule.Name, b.Rule.Name) })
	return view
}

// checkRuleShape checks what every JIT rule shares: inbound, explicit
// prefixes, any source port.
func checkRuleShape(r SecurityRule, access Access) error {
	switch {
	case !strings.EqualFold(string(r.Direction), string(Inbound)):
		return fmt.Errorf("rule %q has direction %q, JIT rules are %s", r.Name, r.Direction, Inbound)
	case !strings.EqualFold(string(r.Access), string(access)):
		return fmt.Errorf("rule %q has access %q, want %s", r.Name, r.Access, access)
	case r.UsesApplicationSecurityGroups:
		return fmt.Errorf("rule %q uses application security groups, JIT rules use address prefixes only", r.Name)
	case !slices.Equal(r.SourcePorts, []string{Any}):
		return fmt.Errorf("rule %q has source ports %v, want *", r.Name, r.SourcePorts)
	}
	return nil
}

func decodeGrant(r SecurityRule, n ruleName) (GrantRule, error) {
	if err := checkRuleShape(r, Allow); err != nil {
		return GrantRule{}, err
	}
	d, err := ParseDescription(r.Description)
	if err != nil {
		return GrantRule{}, fmt.Errorf("rule %q: %w", r.Name, err)
	}
	if d.Role != RoleGrant || d.GrantID != n.grantID {
		return GrantRule{}, fmt.Errorf("rule %q: description %q does not describe grant %q", r.Name, r.Description, n.grantID)
	}
	if len(r.SourcePrefixes) == 0 || len(r.DestinationPrefixes) == 0 || len(r.DestinationPorts) == 0 {
		return GrantRule{}, fmt.Errorf("rule %q has no source, destination or port", r.Name)
	}
	g := GrantRule{Policy: n.policy, ID: n.grantID, Requester: d.Requester, ExpiresAt: d.ExpiresAt, Rule: r}
	if err := checkSeal(r, d); err != nil {
		// Returned with the error: the grant the rule claims to be.
		return g, err
	}
	return g, nil
}

// decodePolicy reads one policy from its guard and deny-all rules. It
// rebuilds the policy's input from the rules, validates it with NewPolicy,
// and then requires that the policy's own encoding reproduces the observed
// rules exactly: anything else (a priority off its slot, a band that
// disagrees, a guard that is not the complement it should be, an extra or
// missing rule) is a Problem.
func decodePolicy(name string, rules []SecurityRule) (DecodedPolicy, []Finding) {
	dp := DecodedPolicy{Policy: Policy{Name: name}}
	for _, r := range rules {
		dp.RuleNames = append(dp.RuleNames, r.Name)
	}
	slices.Sort(dp.RuleNames)

	var findings []Finding
	descs := make([]Description, len(rules))
	names := make([]ruleName, len(rules))
	for i, r := range rules {
		names[i], _ = parseRuleName(r.Name)
		err := checkRuleShape(r, Deny)
		if err == nil {
			descs[i], err = ParseDescription(r.Description)
			if err != nil {
				err = fmt.Errorf("rule %q: %w", r.Name, err)
			}
		}
		if err == nil && descs[i].Role != names[i].role {
			err = fmt.Errorf("rule %q is named as a %s rule but its description says role %s", r.Name, names[i].role, descs[i].Role)
		}
		if err != nil {
			findings = append(findings, Finding{Rule: r, Reason: err.Error()})
		}
	}
	if len(findings) > 0 {
		dp.Problem = findings[0].Reason
		return dp, findings
	}

	in, err := policyInputFromRules(name, rules, names, descs)
	if err != nil {
		dp.Problem = err.Error()
		return dp, nil
	}
	p, err := NewPolicy(in)
	if err != nil {
		dp.Problem = "the rules decode to an invalid policy: " + strings.ReplaceAll(err.Error(), "\n", "; ")
		return dp, nil
	}
	dp.Policy = p
	if err := sameRules(p.Rules(), rules); err != nil {
		dp.Problem = err.Error()
	}
	return dp, nil
}

// policyInputFromRules gathers what the rules claim: band and durations
// from the descriptions, ports and destinations from the deny-all rules,
// allowed sources from the guards' complement.
func policyInputFromRules(name string, rules []SecurityRule, names []ruleName, descs []Description) (PolicyInput, error) {
	in := PolicyInput{Name: name}
	band := descs[0].Band
	for i, d := range descs {
		if d.Band != band {
			return in, fmt.Errorf("rule %q says band %s but rule %q says band %s", rules[0].Name, band, rules[i].Name, d.Band)
		}
	}
	in.BandStart, in.BandEnd = int64(band.Start), int64(band.End)
	// Every rule must say the same (the rules are compared with the ones
	// the policy writes afterwards); the first one tells.
	in.EndSessions = descs[0].EndSessions

	type portKey struct {
		number uint16
		proto  Protocol
	}
	durations := map[portKey]PortDuration{}
	var portOrder []portKey
	destAny := false
	var dests []string
	families := map[int]bool{}
	for i, r := range rules {
		if names[i].role != RoleDeny {
			continue
		}
		proto := names[i].group.protocol()
		if len(r.DestinationPrefixes) == 1 && r.DestinationPrefixes[0] == Any {
			destAny = true
			families[IPv4], families[IPv6] = true, true
		} else {
			for _, d := range r.DestinationPrefixes {
				p, err := netip.ParsePrefix(d)
				if a, aerr := netip.ParseAddr(d); aerr == nil {
					p, err = netip.PrefixFrom(a, a.BitLen()), nil
				}
				if err != nil || familyOf(p.Addr()) != names[i].family {
					return in, fmt.Errorf("rule %q has destination %q, not an IPv%d address or CIDR", r.Name, d, names[i].family)
				}
				families[names[i].family] = true
				if s := formatPrefix(p); !slices.Contains(dests, s) {
					dests = append(dests, s)
				}
			}
		}
		var numbers []uint16
		for _, s := range r.DestinationPorts {
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
				return in, fmt.Errorf("rule %q has destination port %q, not a single port number", r.Name, s)
			}
			numbers = append(numbers, uint16(n))
		}
		maxes := descs[i].MaxDurations
		perPort := len(maxes) != 1 || maxes[0].Port != 0
		if perPort && len(maxes) != len(numbers) {
			return in, fmt.Errorf("rule %q lists %d ports but its description gives %d maximum durations", r.Name, len(numbers), len(maxes))
		}
		for _, n := range numbers {
			pd := PortDuration{n, maxes[0].MaxDuration}
			if perPort {
				j := slices.IndexFunc(maxes, func(m PortDuration) bool { return m.Port == n })
				if j < 0 {
					return in, fmt.Errorf("rule %q protects port %d but its description gives no maximum duration for it", r.Name, n)
				}
				pd = maxes[j]
			}
			k := portKey{n, proto}
			if old, seen := durations[k]; seen {
				if old.MaxDuration != pd.MaxDuration {
					return in, fmt.Errorf("port %d/%s has maximum duration %s on one deny-all rule and %s on another", n, proto, FormatDuration(old.MaxDuration), FormatDuration(pd.MaxDuration))
				}
				continue
			}
			durations[k] = pd
			portOrder = append(portOrder, k)
		}
	}
	if len(portOrder) == 0 {
		return in, errors.New("the policy has guard rules but no deny-all rule, so its ports are not closed")
	}
	for _, k := range portOrder {
		in.Ports = append(in.Ports, PortInput{Number: int64(k.number), Protocol: string(k.proto), MaxDuration: FormatDuration(durations[k].MaxDuration)})
	}
	switch {
	case destAny && len(dests) > 0:
		return in, errors.New("some deny-all rules cover destination * and others specific addresses")
	case destAny:
		in.DestinationPrefixes = []string{Any}
	default:
		in.DestinationPrefixes = dests
	}

	// Allowed sources: any, unless there is a guard; then per family in
	// use, the complement of its guards' sources (the whole family when
	// the family has no guard).
	guarded := map[int][]netip.Prefix{}
	for i, r := range rules {
		if names[i].role != RoleGuard {
			continue
		}
		f := names[i].family
		if guarded[f] == nil {
			guarded[f] = []netip.Prefix{}
		}
		for _, s := range r.SourcePrefixes {
			p, err := parseAddressPrefix(s)
			if err != nil || familyOf(p.Addr()) != f {
				return in, fmt.Errorf("rule %q has source %q, not an IPv%d address or CIDR", r.Name, s, f)
			}
			guarded[f] = append(guarded[f], p)
		}
	}
	if len(guarded) == 0 {
		in.AllowedSources = []string{Any}
		return in, nil
	}
	for _, f := range []int{IPv4, IPv6} {
		if !families[f] {
			continue
		}
		allowed := []netip.Prefix{wholeFamily(f)}
		if g, ok := guarded[f]; ok {
			allowed = Complement(g, f)
		}
		for _, a := range allowed {
			in.AllowedSources = append(in.AllowedSources, formatPrefix(a))
		}
	}
	if len(in.AllowedSources) == 0 {
		return in, errors.New("the guard rules deny every source, so no grant could ever be made")
	}
	return in, nil
}

// sameRules reports the first difference between the rules a policy
// writes and the rules found.
func sameRules(want, got []SecurityRule) error {
	found := make(map[string]SecurityRule, len(got))
	for _, r := range got {
		found[r.Name] = r
	}
	for _, w := range want {
		g, ok := found[w.Name]
		if !ok {
			return fmt.Errorf("rule %q is missing", w.Name)
		}
		delete(found, w.Name)
		if err := sameRule(w, g); err != nil {
			return err
		}
	}
	for name := range found {
		return fmt.Errorf("rule %q does not belong to the policy its other rules describe", name)
	}
	return nil
}

func sameRule(w, g SecurityRule) error {
	field := func(what string, want, got any) error {
		return fmt.Errorf("rule %q has %s %v, the policy's encoding says %v", w.Name, what, got, want)
	}
	switch {
	case w.Priority != g.Priority:
		return field("priority", w.Priority, g.Priority)
	case !strings.EqualFold(string(w.Protocol), string(g.Protocol)):
		return field("protocol", w.Protocol, g.Protocol)
	case !slices.Equal(canonicalPrefixSet(w.SourcePrefixes), canonicalPrefixSet(g.SourcePrefixes)):
		return field("source prefixes", w.SourcePrefixes, g.SourcePrefixes)
	case !slices.Equal(canonicalPrefixSet(w.DestinationPrefixes), canonicalPrefixSet(g.DestinationPrefixes)):
		return field("destination prefixes", w.DestinationPrefixes, g.DestinationPrefixes)
	case !slices.Equal(sortedCopy(w.DestinationPorts), sortedCopy(g.DestinationPorts)):
		return field("destination ports", w.DestinationPorts, g.DestinationPorts)
	case w.Description != g.Description:
		return field("description", w.Description, g.Description)
	}
	return nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
