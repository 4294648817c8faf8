package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Reason says why a grant rule is closed. The values are stable: they are
// metric labels and audit event kinds.
type Reason string

// Reasons for closing a rule. Every reason but ReasonExpired is a rule that
// no longer means what a grant must mean: it fails closed.
const (
	// ReasonExpired: the grant's time is up.
	ReasonExpired Reason = "expired"
	// ReasonMalformed: an Allow rule in the jit- namespace whose name or
	// description does not decode as a grant.
	ReasonMalformed Reason = "malformed"
	// ReasonUnknownVersion: a description in a format version this
	// release does not know.
	ReasonUnknownVersion Reason = "unknown_version"
	// ReasonOverMax: the expiry is further out than the policy allows for
	// the rule's ports.
	ReasonOverMax Reason = "over_max"
	// ReasonSourceNotAllowed: the source is outside the policy's allowed
	// sources.
	ReasonSourceNotAllowed Reason = "source_not_allowed"
	// ReasonOutsidePolicy: ports, protocol or destinations that the policy
	// does not grant.
	ReasonOutsidePolicy Reason = "outside_policy"
	// ReasonOutsideRange: the rule's priority is outside its policy's grant
	// range.
	ReasonOutsideRange Reason = "outside_range"
	// ReasonOrphan: the grant's policy is not on the NSG.
	ReasonOrphan Reason = "orphan"
	// ReasonPolicyMalformed: the grant's policy is on the NSG but its rules
	// do not decode exactly, so nothing can be judged against it.
	ReasonPolicyMalformed Reason = "policy_malformed"
	// ReasonTampered: the grant's rule is not as it was written (its seal
	// is broken), or no longer says what it said when jitd last saw it
	// (another source, ports, protocol, destinations, expiry or
	// requester): it is not the grant that was reviewed.
	ReasonTampered Reason = "tampered"
)

// closeReasons are every reason, for the metrics' label values.
var closeReasons = []Reason{ReasonExpired, ReasonMalformed, ReasonUnknownVersion, ReasonOverMax, ReasonSourceNotAllowed,
	ReasonOutsidePolicy, ReasonOutsideRange, ReasonOrphan, ReasonPolicyMalformed, ReasonTampered}

// FindingKind classifies what jitd reports but never changes.
type FindingKind string

// Kinds of finding.
const (
	// FindingBypass: an Allow rule outside a policy that lets a protected
	// port in from a source the policy does not allow, ahead of the
	// policy's own rules.
	FindingBypass FindingKind = "bypass"
	// FindingMissingDeny: a policy whose deny-all rules are missing, so its
	// ports are not closed.
	FindingMissingDeny FindingKind = "missing_deny"
	// FindingMalformedPolicy: a policy whose guard and deny-all rules exist
	// but do not encode a valid policy exactly (tampered with, or edited by
	// hand).
	FindingMalformedPolicy FindingKind = "malformed_policy"
	// FindingMalformedRule: a Deny rule in the jit- namespace that belongs
	// to no policy. It is left alone: deleting a Deny rule opens access.
	FindingMalformedRule FindingKind = "malformed_rule"
	// FindingStandingAccess: an Allow rule outside a policy that lets some
	// of the policy's allowed sources reach a protected port with no grant,
	// ahead of the policy's deny-all rule.
	FindingStandingAccess FindingKind = "standing_access"
	// FindingPolicyMissing: every guard and deny-all rule of a policy seen
	// intact on the NSG is gone. It is reported once, never rewritten: the
	// policy may have been removed or renamed on purpose.
	FindingPolicyMissing FindingKind = "policy_missing"
	// FindingSessionsNotEnded: a policy ends live sessions at expiry, but
	// its NSG's flushConnection is off (turned off outside the policy, for
	// example by another tool's whole-NSG write), so sessions opened during
	// a grant outlive it. Reported, not changed: the policy's next apply
	// turns it on again.
	FindingSessionsNotEnded FindingKind = "sessions_not_ended"
	// FindingAdminOverride: an Azure Virtual Network Manager security
	// admin rule decides a protected port before any NSG: AlwaysAllow (no
	// NSG can close it) or Deny for allowed sources (grants cannot work).
	// Reported, never changed: jitd does not write admin rules.
	FindingAdminOverride FindingKind = "admin_override"
)

// findingKinds are every kind, for the metrics' label values.
var findingKinds = []FindingKind{FindingBypass, FindingMissingDeny, FindingMalformedPolicy, FindingMalformedRule,
	FindingStandingAccess, FindingPolicyMissing, FindingSessionsNotEnded, FindingAdminOverride, FindingVerifyMismatch}

// ClockSkew is how much further out than its policy's maximum a grant's
// expiry may be before it counts as over the maximum. The provider stamps
// the expiry from its own clock; without this margin a provider whose clock
// runs a little ahead of jitd's would have every full-length grant closed
// the moment it opens.
const ClockSkew = 30 * time.Second

// Close is a rule the plan deletes.
type Close struct {
	Rule   jit.SecurityRule
	Reason Reason
	Detail string         // why, for people: empty for ReasonExpired
	Grant  *jit.GrantRule // the decoded grant; nil when the rule does not decode as one
	// End is what ending the grant changes on the NSG (jit.EndGrant): its
	// rule goes and, where its policy is, a record of it stays, so that the
	// same request applied again is never opened again.
	End jit.GrantEnd
}

// Restore is a partial policy's missing guard and deny-all rules, which the
// plan writes back (see jit.PlanRestore).
type Restore struct {
	Policy jit.Policy
	Rules  []jit.SecurityRule // the missing rules, by priority
	Source jit.RestoreSource
	// Problem is what the policy's rules showed before the restore.
	Problem string
}

// Finding is something the plan reports and leaves alone.
type Finding struct {
	Kind     FindingKind
	Policy   string // the policy concerned, when there is one
	RuleName string // the offending rule, when there is one
	Detail   string
}

// key identifies a finding across passes, so that one that persists is
// reported once rather than on every resync.
func (f Finding) key() string { return string(f.Kind) + "\x00" + f.Policy + "\x00" + f.RuleName }

// NSGPlan is what to do about one NSG.
type NSGPlan struct {
	NSGID    string
	Closes   []Close
	Findings []Finding
	// Active are the grants that stay open.
	Active []jit.GrantRule
	// NextExpiry is the earliest expiry among Active; zero when none.
	NextExpiry time.Time
	// Protected is true when a JIT policy or a grant is on the NSG.
	Protected bool
	// Restores are partial policies to make whole again; empty unless
	// PlanOptions.Restore.
	Restores []Restore
	// Revoked are grants seen open at the last read whose rule has since
	// been deleted by someone else before its expiry. They have ended
	// (revoked is terminal): the plan keeps a record of each where its
	// policy is, so that the same request applied again is never opened
	// again.
	Revoked []Revoked
	// LastSeen is what to remember of the NSG's policies after this plan,
	// for the next: each policy intact now (or as restored), and a policy
	// remembered before that is partial now and not restored. A policy
	// none of whose rules remain is forgotten once reported.
	LastSeen map[string]jit.Policy
}

// Revoked is a grant whose rule was deleted out of band before its expiry,
// and what recording its end changes on the NSG.
type Revoked struct {
	Grant jit.GrantRule
	End   jit.GrantEnd
}

// PlanOptions are what PlanNSG knows besides the NSG's rules.
type PlanOptions struct {
	// SeenElsewhere are the policies last seen intact on any NSG in scope,
	// by name: a restore falls back on them when this NSG's own memory is
	// older than the rules left on it.
	SeenElsewhere map[string][]jit.Policy
	// LastActive are the grants open on this NSG at its last read.
	LastActive []jit.GrantRule
	// Elsewhere are the grants open on any NSG in scope at its last read:
	// a grant's rule must say on this NSG what it says there (source,
	// ports, protocol, expiry, requester).
	Elsewhere []jit.GrantRule
	// LastSeen are the policies last read intact from this NSG, by name.
	LastSeen map[string]jit.Policy
	// AdminRules are the security admin rules in effect for the NSG's
	// virtual networks, as last read (jitd reads them at most once per
	// full resync interval, for NSGs holding a policy).
	AdminRules []jit.AdminRule
	// FlushConnection is the NSG's flushConnection when it was read (jitd
	// reads it where a policy ends sessions at expiry); nil when not.
	FlushConnection *bool
	// Lead closes, as expired, the grants that expire within it (see
	// jit.CloseDue): jitd's close lead, the time its close writes take, so
	// that a write started now is done by their expiry. Zero closes at the
	// expiry only.
	Lead time.Duration
	// Restore plans the restoration of partial policies; grants under a
	// policy being restored are judged against the restored policy. When
	// false, partial policies are only reported and grants under them fail
	// closed.
	Restore bool
}

// PlanNSG decides what to do about one NSG's rules at time now. It is pure:
// the same rules, time and options always give the same plan.
//
// A grant stays open only when it has not expired, its policy is on the
// NSG and decodes exactly (or is being restored), its priority is in the
// policy's grant range, and the rule is exactly what the policy would write
// for such a grant (ports and protocol it protects, a source inside its
// allowed sources, its destinations) with an expiry no further out than the
// policy's maximum for those ports. Every other Allow rule in the jit-
// namespace is closed.
//
// A policy some of whose guard and deny-all rules are missing is restored
// when jit.PlanRestore can do so without guessing, from o.LastSeen or from
// the remaining rules; either way it is reported as a finding (the rules
// were changed by someone else), with what jitd does about it.
func PlanNSG(nsgID string, rules []jit.SecurityRule, now time.Time, o PlanOptions) NSGPlan {
	plan := NSGPlan{NSGID: nsgID, LastSeen: map[string]jit.Policy{}}
	view := jit.ReadNSG(rules)
	plan.Protected = len(view.Policies) > 0 || len(view.Grants) > 0
	closing := map[string]bool{}

	for _, m := range view.Malformed {
		if !isAllow(m.Rule) {
			// Part of a malformed policy (reported below with the policy)
			// or a stray Deny rule: either way deleting it would open
			// access.
			if _, ofPolicy := view.Policies[policyOfRuleName(m.Rule.Name)]; !ofPolicy {
				plan.Findings = append(plan.Findings, Finding{Kind: FindingMalformedRule, RuleName: m.Rule.Name, Detail: m.Reason})
			}
			continue
		}
		if m.Grant != nil {
			// A grant's rule edited in place (its seal is broken): not
			// the grant that was reviewed. Closed, and the grant it
			// claims to be recorded as ended, as when it is seen edited.
			plan.Closes = append(plan.Closes, Close{Rule: m.Rule, Reason: ReasonTampered, Detail: m.Reason, Grant: m.Grant, End: jit.EndGrant(view, *m.Grant)})
			closing[m.Rule.Name] = true
			continue
		}
		reason := ReasonMalformed
		if hasUnknownVersion(m.Rule.Description) {
			reason = ReasonUnknownVersion
		}
		plan.Closes = append(plan.Closes, Close{Rule: m.Rule, Reason: reason, Detail: m.Reason})
		closing[m.Rule.Name] = true
	}

	// Restorations are decided on the rules as the closes above leave
	// them (a deny-all turned into an Allow is deleted, then restored), and
	// before grants are judged, so that a grant under a policy being
	// restored is judged against that policy rather than failing closed.
	restored := map[string]jit.Policy{}
	notRestored := map[string]string{}
	if o.Restore {
		base := withoutNames(rules, closing)
		for _, name := range sortedKeys(view.Policies) {
			if view.Policies[name].Problem == "" {
				continue
			}
			var last *jit.Policy
			if p, ok := o.LastSeen[name]; ok {
				last = &p
			}
			res, err := jit.PlanRestore(name, base, last)
			// The policy as last seen intact on another NSG in scope: one
			// changed here right after an update jitd had not read yet is
			// still whole there. PlanRestore takes it only if every rule
			// left here is exactly that policy's.
			for _, p := range o.SeenElsewhere[name] {
				if err == nil || errors.Is(err, jit.ErrNothingMissing) || errors.Is(err, jit.ErrNothingLeft) {
					break
				}
				if r, e := jit.PlanRestore(name, base, &p); e == nil {
					res, err = r, nil
				}
			}
			if err != nil {
				if !errors.Is(err, jit.ErrNothingMissing) && !errors.Is(err, jit.ErrNothingLeft) {
					notRestored[name] = err.Error()
				}
				continue
			}
			restored[name] = res.Policy
			view.Policies[name] = jit.DecodedPolicy{Policy: res.Policy}
			plan.Restores = append(plan.Restores, Restore{Policy: res.Policy, Rules: res.Missing, Source: res.Source})
		}
	}

	for _, g := range view.Grants {
		reason, detail := judgeGrant(g, view, now, o.Lead)
		if reason == "" {
			reason, detail = judgeAgainstLastSeen(g, o.LastActive, true)
		}
		if reason == "" {
			reason, detail = judgeAgainstLastSeen(g, o.Elsewhere, false)
		}
		if reason == "" {
			plan.Active = append(plan.Active, g)
			if plan.NextExpiry.IsZero() || g.ExpiresAt.Before(plan.NextExpiry) {
				plan.NextExpiry = g.ExpiresAt
			}
			continue
		}
		plan.Closes = append(plan.Closes, Close{Rule: g.Rule, Reason: reason, Detail: detail, Grant: &g, End: jit.EndGrant(view, g)})
		closing[g.Rule.Name] = true
	}

	// Findings describe the NSG as the plan leaves it: a deny-all rule
	// turned into an Allow is closed above, and what remains is a policy
	// whose deny-all is missing.
	// (The view is read again when a restore replaced policies in it, so
	// that the finding says what the rules showed.)
	remaining := withoutNames(rules, closing)
	if len(closing) > 0 || len(plan.Restores) > 0 {
		view = jit.ReadNSG(remaining)
	}
	// A valid grant of another policy whose band comes first does let its
	// source in ahead of this policy's deny-all, but for the grant's window
	// only: that is what a grant is, not standing access.
	activeGrants := map[string]bool{}
	for _, g := range plan.Active {
		activeGrants[g.Rule.Name] = true
	}
	for i, r := range plan.Restores {
		dp := view.Policies[r.Policy.Name]
		plan.Restores[i].Problem = dp.Problem
		kind := FindingMalformedPolicy
		if missingDeny(r.Policy.Name, dp) {
			kind = FindingMissingDeny
		}
		plan.Findings = append(plan.Findings, Finding{Kind: kind, Policy: r.Policy.Name,
			Detail: fmt.Sprintf("%s; jitd restores %s from %s", dp.Problem, strings.Join(ruleNames(r.Rules), ", "), restoreSourceText(r.Source))})
	}
	for _, name := range sortedKeys(view.Policies) {
		dp := view.Policies[name]
		if p, ok := restored[name]; ok {
			dp = jit.DecodedPolicy{Policy: p}
		}
		if dp.Problem != "" {
			kind := FindingMalformedPolicy
			if missingDeny(name, dp) {
				kind = FindingMissingDeny
			}
			detail := dp.Problem
			if why, ok := notRestored[name]; ok {
				detail += "; not restored: " + why
			}
			plan.Findings = append(plan.Findings, Finding{Kind: kind, Policy: name, Detail: detail})
			if p, ok := o.LastSeen[name]; ok {
				plan.LastSeen[name] = p
			}
			continue
		}
		plan.LastSeen[name] = dp.Policy
		if dp.Policy.EndSessions && o.FlushConnection != nil && !*o.FlushConnection {
			plan.Findings = append(plan.Findings, Finding{Kind: FindingSessionsNotEnded, Policy: name,
				Detail: fmt.Sprintf("policy %q ends live sessions at expiry, but flushConnection is off on this NSG, so sessions "+
					"opened during a grant outlive it; the policy's next apply turns it on again", name)})
		}
		for _, ov := range dp.Policy.AdminOverrides(o.AdminRules) {
			plan.Findings = append(plan.Findings, Finding{Kind: FindingAdminOverride, Policy: name,
				RuleName: "admin:" + ov.Rule.Name + " " + ov.Port.String(), Detail: ov.Reason})
		}
		plan.Findings = append(plan.Findings, ruleFindings(FindingBypass, dp.Policy.Name, dp.Policy.Bypasses(remaining))...)
		plan.Findings = append(plan.Findings, ruleFindings(FindingStandingAccess, dp.Policy.Name,
			dp.Policy.StandingAccess(withoutNames(remaining, activeGrants)))...)
	}
	for _, name := range sortedKeys(o.LastSeen) {
		if _, there := view.Policies[name]; !there {
			plan.Findings = append(plan.Findings, Finding{Kind: FindingPolicyMissing, Policy: name,
				Detail: fmt.Sprintf("every guard and deny-all rule of policy %q is gone from this NSG, so its ports are no longer closed by it; jitd does not rewrite a policy that vanished entirely (it may have been removed or renamed on purpose)", name)})
		}
	}
	plan.Revoked = revokedGrants(o.LastActive, view, rules, now)
	return plan
}

func restoreSourceText(s jit.RestoreSource) string {
	if s == jit.RestoreFromLastSeen {
		return "the policy as last seen intact on this NSG"
	}
	return "the policy's remaining rules"
}

func withoutNames(rules []jit.SecurityRule, names map[string]bool) []jit.SecurityRule {
	if len(names) == 0 {
		return rules
	}
	return slices.DeleteFunc(slices.Clone(rules), func(r jit.SecurityRule) bool { return names[r.Name] })
}

func ruleNames(rules []jit.SecurityRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name
	}
	return out
}

// judgeGrant returns why a well-formed grant rule must be closed, or an
// empty reason when it may stay open.
func judgeGrant(g jit.GrantRule, view jit.NSGView, now time.Time, lead time.Duration) (Reason, string) {
	if jit.CloseDue(g.ExpiresAt, now, lead) {
		return ReasonExpired, ""
	}
	dp, ok := view.Policies[g.Policy]
	switch {
	case !ok:
		return ReasonOrphan, fmt.Sprintf("policy %q has no rules on this NSG", g.Policy)
	case dp.Problem != "":
		return ReasonPolicyMalformed, fmt.Sprintf("policy %q is malformed on this NSG: %s", g.Policy, dp.Problem)
	}
	p := dp.Policy
	if lo, hi := p.Band.GrantRange(); g.Rule.Priority < lo || g.Rule.Priority > hi {
		return ReasonOutsideRange, fmt.Sprintf("priority %d is outside policy %q grant range %d-%d", g.Rule.Priority, p.Name, lo, hi)
	}
	return judgeAgainstPolicy(g, p, now)
}

// judgeAgainstPolicy checks a grant rule with the same check the provider
// applies to a request (jit.Policy.CheckGrant), taking the time left as the
// duration, and then requires that the rule is exactly what the policy
// would write for that request.
func judgeAgainstPolicy(g jit.GrantRule, p jit.Policy, now time.Time) (Reason, string) {
	r := g.Rule
	if len(r.SourcePrefixes) != 1 {
		return ReasonSourceNotAllowed, fmt.Sprintf("a grant has exactly one source, the rule has %d: %s", len(r.SourcePrefixes), strings.Join(r.SourcePrefixes, ", "))
	}
	ports := make([]int64, 0, len(r.DestinationPorts))
	for _, s := range r.DestinationPorts {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || strconv.FormatInt(n, 10) != s {
			return ReasonOutsidePolicy, fmt.Sprintf("destination port %q is not a single port number", s)
		}
		ports = append(ports, n)
	}
	// The minimum grant duration is a rule for new requests; a grant in
	// its last minute is still valid.
	left := g.ExpiresAt.Sub(now) - ClockSkew
	left = max(left.Truncate(time.Second), jit.MinGrantDuration)
	spec, err := p.CheckGrant(jit.GrantInput{
		Ports:     ports,
		Protocol:  string(r.Protocol),
		Source:    r.SourcePrefixes[0],
		Duration:  left.String(),
		Requester: "jitd", // the grammar already bounds the requester; the check wants one
	})
	if err != nil {
		return grantCheckReason(err, g.ExpiresAt.Sub(now))
	}
	want := p.GrantRule(g.ID, spec, g.ExpiresAt, r.Priority)
	switch {
	case !strings.EqualFold(string(want.Protocol), string(r.Protocol)):
		return ReasonOutsidePolicy, fmt.Sprintf("protocol %s, the policy would write %s", r.Protocol, want.Protocol)
	case !sameSet(want.DestinationPrefixes, r.DestinationPrefixes):
		return ReasonOutsidePolicy, fmt.Sprintf("destinations %s, policy %q protects %s",
			strings.Join(r.DestinationPrefixes, ", "), p.Name, strings.Join(want.DestinationPrefixes, ", "))
	case !sameSet(want.SourcePrefixes, r.SourcePrefixes):
		return ReasonSourceNotAllowed, fmt.Sprintf("source %s is not in the form a grant writes (%s)", r.SourcePrefixes[0], want.SourcePrefixes[0])
	}
	return "", ""
}

// grantCheckReason maps CheckGrant's field errors to a reason; the first
// field in a fixed order wins so that the reason is deterministic.
func grantCheckReason(err error, left time.Duration) (Reason, string) {
	fields := jit.FieldErrors(err)
	pick := func(match func(path string) bool) (string, bool) {
		var msgs []string
		for _, f := range fields {
			if match(f.Path) {
				msgs = append(msgs, f.Message)
			}
		}
		return strings.Join(msgs, "; "), len(msgs) > 0
	}
	if msg, ok := pick(func(p string) bool { return p == "source_address_prefix" }); ok {
		return ReasonSourceNotAllowed, msg
	}
	if msg, ok := pick(func(p string) bool { return strings.HasPrefix(p, "ports") || p == "protocol" }); ok {
		return ReasonOutsidePolicy, msg
	}
	if msg, ok := pick(func(p string) bool { return p == "duration" }); ok {
		return ReasonOverMax, fmt.Sprintf("expires in %s: %s", left.Truncate(time.Second), msg)
	}
	var msgs []string
	for _, f := range fields {
		msgs = append(msgs, f.Error())
	}
	if len(msgs) == 0 {
		msgs = append(msgs, err.Error())
	}
	return ReasonOutsidePolicy, strings.Join(msgs, "; ")
}

// ruleFindings reports the rules found (bypasses or standing access) as
// findings of one kind, one per rule, its ports joined.
func ruleFindings(kind FindingKind, policy string, found []jit.Bypass) []Finding {
	var out []Finding
	index := map[string]int{}
	for _, b := range found {
		if i, seen := index[b.Rule.Name]; seen {
			out[i].Detail += "; " + b.Port.String() + ": " + b.Reason
			continue
		}
		index[b.Rule.Name] = len(out)
		out = append(out, Finding{Kind: kind, Policy: policy, RuleName: b.Rule.Name,
			Detail: b.Port.String() + ": " + b.Reason})
	}
	return out
}

// missingDeny reports whether a malformed policy's problem is that deny-all
// rules are missing: none found at all, or the decoder naming a missing
// deny-all rule. Missing deny-all rules mean open ports, which deserves its
// own finding kind rather than a generic "malformed".
func missingDeny(policy string, dp jit.DecodedPolicy) bool {
	denyPrefix := jit.RuleNamePrefix + policy + "-deny-"
	if !slices.ContainsFunc(dp.RuleNames, func(n string) bool { return strings.HasPrefix(n, denyPrefix) }) {
		return true
	}
	return strings.HasPrefix(dp.Problem, `rule "`+denyPrefix) && strings.HasSuffix(dp.Problem, `" is missing`)
}

// policyOfRuleName returns the policy part of a guard or deny-all rule name
// (jit-<policy>-guard-…, jit-<policy>-deny-…), or "".
func policyOfRuleName(name string) string {
	rest, ok := strings.CutPrefix(name, jit.RuleNamePrefix)
	if !ok {
		return ""
	}
	for _, role := range []string{"-guard-", "-deny-"} {
		if i := strings.LastIndex(rest, role); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// hasUnknownVersion reports whether a description is in the project's
// format family but a version this release does not know.
func hasUnknownVersion(desc string) bool {
	tag, _, _ := strings.Cut(desc, " ")
	return strings.HasPrefix(tag, "jit:") && tag != jit.DescriptionVersion
}

func isAllow(r jit.SecurityRule) bool {
	return strings.EqualFold(string(r.Access), string(jit.Allow))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// revokedGrants are the grants of last that are gone from rules before
// their expiry, under a policy still on the NSG and with no record yet.
func revokedGrants(last []jit.GrantRule, view jit.NSGView, rules []jit.SecurityRule, now time.Time) []Revoked {
	var out []Revoked
	for _, g := range last {
		if !g.ExpiresAt.After(now) || slices.ContainsFunc(rules, func(r jit.SecurityRule) bool { return strings.EqualFold(r.Name, g.Rule.Name) }) {
			continue
		}
		if end := jit.EndGrant(view, g); end.Record {
			out = append(out, Revoked{Grant: g, End: end})
		}
	}
	return out
}

// judgeAgainstLastSeen closes a grant whose rule changed since jitd last
// saw it open: nothing the product does edits a grant's rule in place (a
// grant that moves to another NSG is a new rule there), so a change is
// someone else's, and fails closed. The seal (jit.SealGrantRule) already
// shows an edit of the source, ports, protocol, expiry or requester on the
// first read; this adds what the seal leaves out (destinations), and a
// rule edited and sealed again by someone who knows the grammar.
//
// Copies on other NSGs (sameNSG false) are compared without their
// destinations, which are each NSG's policy's.
func judgeAgainstLastSeen(g jit.GrantRule, last []jit.GrantRule, sameNSG bool) (Reason, string) {
	for _, prev := range last {
		if !strings.EqualFold(prev.Rule.Name, g.Rule.Name) {
			continue
		}
		was, is := prev.Rule, g.Rule
		if !sameNSG {
			was.DestinationPrefixes = is.DestinationPrefixes
		}
		switch {
		case !sameSet(was.SourcePrefixes, is.SourcePrefixes):
			return ReasonTampered, fmt.Sprintf("its source changed from %s to %s", strings.Join(was.SourcePrefixes, ","), strings.Join(is.SourcePrefixes, ","))
		case !sameSet(was.DestinationPorts, is.DestinationPorts) || !strings.EqualFold(string(was.Protocol), string(is.Protocol)):
			return ReasonTampered, fmt.Sprintf("its ports changed from %s/%s to %s/%s", strings.Join(was.DestinationPorts, ","), was.Protocol,
				strings.Join(is.DestinationPorts, ","), is.Protocol)
		case !sameSet(was.DestinationPrefixes, is.DestinationPrefixes):
			return ReasonTampered, fmt.Sprintf("its destinations changed from %s to %s", strings.Join(was.DestinationPrefixes, ","), strings.Join(is.DestinationPrefixes, ","))
		case !prev.ExpiresAt.Equal(g.ExpiresAt) || prev.Requester != g.Requester:
			return ReasonTampered, fmt.Sprintf("its description changed from %q to %q", was.Description, is.Description)
		}
	}
	return "", ""
}
