package daemon

import (
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
)

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
)

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
}

// PlanNSG decides what to do about one NSG's rules at time now. It is pure:
// the same rules and time always give the same plan.
//
// A grant stays open only when it has not expired, its policy is on the
// NSG and decodes exactly, its priority is in the policy's grant range, and
// the rule is exactly what the policy would write for such a grant (ports
// and protocol it protects, a source inside its allowed sources, its
// destinations) with an expiry no further out than the policy's maximum for
// those ports. Every other Allow rule in the jit- namespace is closed.
func PlanNSG(nsgID string, rules []jit.SecurityRule, now time.Time) NSGPlan {
	plan := NSGPlan{NSGID: nsgID}
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
		reason := ReasonMalformed
		if hasUnknownVersion(m.Rule.Description) {
			reason = ReasonUnknownVersion
		}
		plan.Closes = append(plan.Closes, Close{Rule: m.Rule, Reason: reason, Detail: m.Reason})
		closing[m.Rule.Name] = true
	}

	for _, g := range view.Grants {
		reason, detail := judgeGrant(g, view, now)
		if reason == "" {
			plan.Active = append(plan.Active, g)
			if plan.NextExpiry.IsZero() || g.ExpiresAt.Before(plan.NextExpiry) {
				plan.NextExpiry = g.ExpiresAt
			}
			continue
		}
		plan.Closes = append(plan.Closes, Close{Rule: g.Rule, Reason: reason, Detail: detail, Grant: &g})
		closing[g.Rule.Name] = true
	}

	// Findings describe the NSG as the plan leaves it: a deny-all rule
	// turned into an Allow is closed above, and what remains is a policy
	// whose deny-all is missing.
	remaining := rules
	if len(closing) > 0 {
		remaining = slices.DeleteFunc(slices.Clone(rules), func(r jit.SecurityRule) bool { return closing[r.Name] })
		view = jit.ReadNSG(remaining)
	}
	for _, name := range sortedKeys(view.Policies) {
		dp := view.Policies[name]
		if dp.Problem != "" {
			kind := FindingMalformedPolicy
			if missingDeny(name, dp) {
				kind = FindingMissingDeny
			}
			plan.Findings = append(plan.Findings, Finding{Kind: kind, Policy: name, Detail: dp.Problem})
			continue
		}
		plan.Findings = append(plan.Findings, bypassFindings(dp.Policy, remaining)...)
	}
	return plan
}

// judgeGrant returns why a well-formed grant rule must be closed, or an
// empty reason when it may stay open.
func judgeGrant(g jit.GrantRule, view jit.NSGView, now time.Time) (Reason, string) {
	if !g.ExpiresAt.After(now) {
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

// bypassFindings reports the rules that defeat a policy, one finding per
// rule.
func bypassFindings(p jit.Policy, rules []jit.SecurityRule) []Finding {
	var out []Finding
	index := map[string]int{}
	for _, b := range p.Bypasses(rules) {
		if i, seen := index[b.Rule.Name]; seen {
			out[i].Detail += "; " + b.Port.String() + ": " + b.Reason
			continue
		}
		index[b.Rule.Name] = len(out)
		out = append(out, Finding{Kind: FindingBypass, Policy: p.Name, RuleName: b.Rule.Name,
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
