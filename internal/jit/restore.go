package jit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A policy's rules on an NSG change only as a whole: the provider writes
// every guard and deny-all rule of a policy in one NSG write. A policy with
// some of those rules missing was therefore changed by someone else — a
// portal click, or another tool writing back a stale copy of the whole NSG —
// and its ports may be open. PlanRestore decides whether the missing rules
// can be written back without guessing.

// RestoreSource says where a restoration's policy comes from.
type RestoreSource string

// Sources of a restoration.
const (
	// RestoreFromLastSeen: the policy as the caller last saw it intact on
	// this NSG.
	RestoreFromLastSeen RestoreSource = "last_seen"
	// RestoreFromRules: the policy reconstructed from its remaining rules
	// alone.
	RestoreFromRules RestoreSource = "remaining_rules"
)

// Restoration is how to make a partial policy whole again.
type Restoration struct {
	Policy Policy
	// Missing are the guard and deny-all rules to write, by priority.
	Missing []SecurityRule
	Source  RestoreSource
}

// Errors of PlanRestore that are not a refusal: there is nothing to restore.
var (
	// ErrNothingMissing: every guard and deny-all rule the policy writes is
	// on the NSG.
	ErrNothingMissing = errors.New("every guard and deny-all rule of the policy is present")
	// ErrNothingLeft: no guard or deny-all rule of the policy is on the NSG,
	// so there is nothing to restore from; a vanished policy is reported,
	// never rewritten (it may have been removed on purpose).
	ErrNothingLeft = errors.New("no guard or deny-all rule of the policy is left")
)

// PlanRestore decides how to write back the missing guard and deny-all
// rules of policy name on an NSG with the given rules. lastSeen, when not
// nil, is the policy as last read intact from this NSG.
//
// It never guesses. Every remaining rule of the policy must be exactly a
// rule the restored policy writes (same name, priority, shape, prefixes,
// ports and description); otherwise the policy was tampered with rather
// than partly deleted, and PlanRestore returns the difference as an error.
// The policy is lastSeen when the remaining rules fit it; otherwise it is
// rebuilt from the remaining rules alone, which works only when they carry
// everything the policy needs: the band (any rule's description), the ports
// and maximum durations of each protocol group that has rules left (its
// deny-all rule of either family), the guarded families (a deny-all
// description), the destinations of each family in use and the allowed
// sources of each guarded family (a remaining rule of that family).
//
// The missing rules must be writable without touching anything else: no
// other rule may have a missing rule's name (in any letter case) or hold
// its priority.
//
// A protocol group or address family none of whose rules remain is
// invisible in the remaining rules; without lastSeen it is not restored
// (the encoding cannot tell it ever existed, as ReadNSG cannot).
func PlanRestore(name string, rules []SecurityRule, lastSeen *Policy) (Restoration, error) {
	var present []SecurityRule
	var names []ruleName
	var descs []Description
	for _, r := range rules {
		n, ok := parseRuleName(r.Name)
		if !ok || n.policy != name || n.role == RoleGrant || n.role == RoleEnded {
			continue
		}
		err := checkRuleShape(r, Deny)
		var d Description
		if err == nil {
			d, err = ParseDescription(r.Description)
			if err != nil {
				err = fmt.Errorf("rule %q: %w", r.Name, err)
			}
		}
		if err == nil && d.Role != n.role {
			err = fmt.Errorf("rule %q is named as a %s rule but its description says role %s", r.Name, n.role, d.Role)
		}
		if err != nil {
			return Restoration{}, err
		}
		present, names, descs = append(present, r), append(names, n), append(descs, d)
	}
	if len(present) == 0 {
		return Restoration{}, ErrNothingLeft
	}

	var res Restoration
	var lastErr error
	if lastSeen != nil && lastSeen.Name == name {
		if lastErr = rulesWithin(lastSeen.Rules(), present); lastErr == nil {
			res.Policy, res.Source = *lastSeen, RestoreFromLastSeen
		}
	}
	if res.Source == "" {
		p, err := reconstructPolicy(name, present, names, descs)
		if err != nil {
			if lastErr != nil {
				return Restoration{}, fmt.Errorf("the remaining rules are not those of the policy last seen intact (%w), and %w", lastErr, err)
			}
			return Restoration{}, err
		}
		res.Policy, res.Source = p, RestoreFromRules
	}

	have := map[string]bool{}
	for _, r := range present {
		have[r.Name] = true
	}
	for _, w := range res.Policy.Rules() {
		if !have[w.Name] {
			res.Missing = append(res.Missing, w)
		}
	}
	if len(res.Missing) == 0 {
		return Restoration{}, ErrNothingMissing
	}
	for _, m := range res.Missing {
		for _, r := range rules {
			if have[r.Name] {
				continue
			}
			if strings.EqualFold(r.Name, m.Name) {
				return Restoration{}, fmt.Errorf("missing rule %q cannot be restored: rule %q has its name and is not one the policy writes", m.Name, r.Name)
			}
			if r.Priority == m.Priority && strings.EqualFold(string(r.Direction), string(Inbound)) {
				return Restoration{}, fmt.Errorf("missing rule %q cannot be restored: its priority %d is held by rule %q", m.Name, m.Priority, r.Name)
			}
		}
	}
	return res, nil
}

// rulesWithin reports the first rule of got that is not exactly the rule of
// the same name in want.
func rulesWithin(want, got []SecurityRule) error {
	byName := make(map[string]SecurityRule, len(want))
	for _, w := range want {
		byName[w.Name] = w
	}
	for _, g := range got {
		w, ok := byName[g.Name]
		if !ok {
			return fmt.Errorf("rule %q is not one the policy writes", g.Name)
		}
		if err := sameRule(w, g); err != nil {
			return err
		}
	}
	return nil
}

// reconstructPolicy rebuilds a policy from some of its guard and deny-all
// rules (already checked for shape and role), refusing whenever a part of
// the policy cannot be read from them.
func reconstructPolicy(name string, rules []SecurityRule, names []ruleName, descs []Description) (Policy, error) {
	in := PolicyInput{Name: name}
	band := descs[0].Band
	for i, d := range descs {
		if d.Band != band {
			return Policy{}, fmt.Errorf("rule %q says band %s but rule %q says band %s", rules[0].Name, band, rules[i].Name, d.Band)
		}
	}
	in.BandStart, in.BandEnd = int64(band.Start), int64(band.End)
	// Every rule must say the same (the rules are compared with the ones
	// the policy writes afterwards); the first one tells.
	in.EndSessions = descs[0].EndSessions

	// Guarded families, from the descriptions (guard and deny-all rules
	// carry the same); they must agree.
	guards := descs[0].Guards
	for i, d := range descs {
		if !slices.Equal(guards, d.Guards) {
			return Policy{}, fmt.Errorf("rules %q and %q disagree on the guarded address families (%s and %s)", rules[0].Name, rules[i].Name, formatGuards(guards), formatGuards(d.Guards))
		}
	}

	// Destinations per family, from every remaining rule.
	destAny := false
	dests := map[int][]string{}
	for i, r := range rules {
		if len(r.DestinationPrefixes) == 1 && r.DestinationPrefixes[0] == Any {
			destAny = true
			continue
		}
		for _, d := range r.DestinationPrefixes {
			p, err := parseAddressPrefix(d)
			if err != nil || familyOf(p.Addr()) != names[i].family {
				return Policy{}, fmt.Errorf("rule %q has destination %q, not an IPv%d address or CIDR", r.Name, d, names[i].family)
			}
			if s := formatPrefix(p); !slices.Contains(dests[names[i].family], s) {
				dests[names[i].family] = append(dests[names[i].family], s)
			}
		}
	}
	switch {
	case destAny && len(dests) > 0:
		return Policy{}, errors.New("some rules cover destination * and others specific addresses")
	case destAny:
		in.DestinationPrefixes = []string{Any}
	default:
		for _, f := range guards {
			if len(dests[f]) == 0 {
				return Policy{}, fmt.Errorf("the deny-all rules say IPv%d has a guard, but no IPv%d rule is left, so the policy's IPv%d destinations cannot be read back", f, f, f)
			}
		}
		in.DestinationPrefixes = append(slices.Clone(dests[IPv4]), dests[IPv6]...)
	}
	families := []int{IPv4, IPv6}
	if !destAny {
		families = nil
		for _, f := range []int{IPv4, IPv6} {
			if len(dests[f]) > 0 {
				families = append(families, f)
			}
		}
	}

	// Ports and maximum durations per protocol group, from any of its
	// remaining rules.
	type portKey struct {
		number uint16
		proto  Protocol
	}
	durations := map[portKey]PortDuration{}
	var portOrder []portKey
	for i, r := range rules {
		proto := names[i].group.protocol()
		var numbers []uint16
		for _, s := range r.DestinationPorts {
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
				return Policy{}, fmt.Errorf("rule %q has destination port %q, not a single port number", r.Name, s)
			}
			numbers = append(numbers, uint16(n))
		}
		maxes := descs[i].MaxDurations
		perPort := len(maxes) != 1 || maxes[0].Port != 0
		if perPort && len(maxes) != len(numbers) {
			return Policy{}, fmt.Errorf("rule %q lists %d ports but its description gives %d maximum durations", r.Name, len(numbers), len(maxes))
		}
		for _, n := range numbers {
			pd := PortDuration{n, maxes[0].MaxDuration}
			if perPort {
				j := slices.IndexFunc(maxes, func(m PortDuration) bool { return m.Port == n })
				if j < 0 {
					return Policy{}, fmt.Errorf("rule %q protects port %d but its description gives no maximum duration for it", r.Name, n)
				}
				pd = maxes[j]
			}
			k := portKey{n, proto}
			if old, seen := durations[k]; seen {
				if old.MaxDuration != pd.MaxDuration {
					return Policy{}, fmt.Errorf("port %d/%s has maximum duration %s on one rule and %s on another", n, proto, FormatDuration(old.MaxDuration), FormatDuration(pd.MaxDuration))
				}
				continue
			}
			durations[k] = pd
			portOrder = append(portOrder, k)
		}
	}
	for _, k := range portOrder {
		in.Ports = append(in.Ports, PortInput{Number: int64(k.number), Protocol: string(k.proto), MaxDuration: FormatDuration(durations[k].MaxDuration)})
	}

	// Allowed sources: "*" when no family is guarded; else per family in
	// use, the complement of its guards' sources (a remaining guard of the
	// family is needed), or the whole family when it has no guard.
	if len(guards) == 0 {
		in.AllowedSources = []string{Any}
	} else {
		guardSources := map[int][]netip.Prefix{}
		for i, r := range rules {
			f := names[i].family
			if names[i].role != RoleGuard || guardSources[f] != nil {
				continue
			}
			guardSources[f] = []netip.Prefix{}
			for _, s := range r.SourcePrefixes {
				p, err := parseAddressPrefix(s)
				if err != nil || familyOf(p.Addr()) != f {
					return Policy{}, fmt.Errorf("rule %q has source %q, not an IPv%d address or CIDR", r.Name, s, f)
				}
				guardSources[f] = append(guardSources[f], p)
			}
		}
		for _, f := range families {
			allowed := []netip.Prefix{wholeFamily(f)}
			if slices.Contains(guards, f) {
				g, ok := guardSources[f]
				if !ok {
					return Policy{}, fmt.Errorf("every IPv%d guard rule is gone, so the policy's allowed IPv%d sources cannot be read back", f, f)
				}
				allowed = Complement(g, f)
			}
			for _, a := range allowed {
				in.AllowedSources = append(in.AllowedSources, formatPrefix(a))
			}
		}
		if len(in.AllowedSources) == 0 {
			return Policy{}, errors.New("the guard rules deny every source, so no grant could ever be made")
		}
	}

	p, err := NewPolicy(in)
	if err != nil {
		return Policy{}, errors.New("the remaining rules decode to an invalid policy: " + strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if !slices.Equal(p.guardFamilies(), guards) {
		return Policy{}, fmt.Errorf("the deny-all rules say the guarded families are %s, but the policy read back guards %s", formatGuards(guards), formatGuards(p.guardFamilies()))
	}
	if err := rulesWithin(p.Rules(), rules); err != nil {
		return Policy{}, err
	}
	return p, nil
}
