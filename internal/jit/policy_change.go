package jit

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// This file decides what a change to a policy — creating it, changing it,
// giving it NSGs or taking them away, deleting it — must carry along,
// move, or refuse, from what the policy's NSGs say now. The provider reads
// the NSGs, asks here, and writes what it is told.

// PolicyNSG is one NSG of a policy as read now. An NSG that no longer
// exists is left out by the reader: it holds nothing.
type PolicyNSG struct {
	ID   string
	View NSGView
}

// NSGGrant is a grant rule on one NSG.
type NSGGrant struct {
	NSGID string
	Grant GrantRule
}

// PolicyGrants returns the grant rules of policy on the NSG, in the view's
// order (by rule name).
func (v NSGView) PolicyGrants(policy string) []GrantRule {
	var out []GrantRule
	for _, g := range v.Grants {
		if g.Policy == policy {
			out = append(out, g)
		}
	}
	return out
}

// OtherPolicies names the policies on the NSG other than name, sorted.
func (v NSGView) OtherPolicies(name string) []string {
	var out []string
	for n := range v.Policies {
		if n != name {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// PoliciesEndingSessions names the intact policies on the NSG other than
// name that end sessions at expiry (they ask for flushConnection), sorted.
func (v NSGView) PoliciesEndingSessions(name string) []string {
	var out []string
	for n, dp := range v.Policies {
		if n != name && dp.Problem == "" && dp.Policy.EndSessions {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// ActiveAt reports whether the grant's window has not ended at now: its
// rule still admits traffic that only expiry (not a revocation) will end.
func (g GrantRule) ActiveAt(now time.Time) bool { return g.ExpiresAt.After(now) }

// ActiveGrants returns the grant rules of policy on the NSGs that have not
// expired at now, NSG by NSG in the order given. A policy with any is not
// deleted: its deny-all rules are what closes the ports again after them.
func ActiveGrants(policy string, nsgs []PolicyNSG, now time.Time) []NSGGrant {
	var out []NSGGrant
	for _, n := range nsgs {
		for _, g := range n.View.PolicyGrants(policy) {
			if g.ActiveAt(now) {
				out = append(out, NSGGrant{NSGID: n.ID, Grant: g})
			}
		}
	}
	return out
}

// DeletePolicyNotice refuses deleting policy while it has active grants
// (ActiveGrants), naming each; it reports false when the policy may go.
func DeletePolicyNotice(policy string, active []NSGGrant) (Notice, bool) {
	if len(active) == 0 {
		return Notice{}, false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Policy %q still has %d active grant(s); removing it would leave their allow rules with no deny rule after them:\n", policy, len(active))
	for _, a := range active {
		fmt.Fprintf(&b, "  - grant %s (rule %s) by %s, until %s, on %s\n", a.Grant.ID, a.Grant.Rule.Name, a.Grant.Requester,
			rfc3339(a.Grant.ExpiresAt), a.NSGID)
	}
	b.WriteString("\nRemove those jit_access_grant resources (or wait until they expire and jitd closes them), then apply again.")
	return Notice{Severity: Error, Summary: "JIT Policy Has Active Grants", Detail: b.String()}, true
}

// MovableGrants returns the grants of policy that may move to an NSG
// joining it: open, unexpired at now and well-formed on every NSG of nsgs
// that still holds the policy, one per rule name, sorted by lower-case
// name. A grant missing from one of them was revoked there (or closed as
// tampered: a rule that no longer reads as its grant wrote it is not a
// well-formed grant), and an ended grant is never opened anywhere again.
// NSGs that no longer hold the policy say nothing either way.
func MovableGrants(policy string, nsgs []PolicyNSG, now time.Time) []GrantRule {
	count := map[string]int{}
	first := map[string]GrantRule{}
	holders := 0
	for _, n := range nsgs {
		if _, ok := n.View.Policies[policy]; !ok {
			continue
		}
		holders++
		for _, g := range n.View.PolicyGrants(policy) {
			if !g.ActiveAt(now) {
				continue
			}
			key := strings.ToLower(g.Rule.Name)
			count[key]++
			if _, seen := first[key]; !seen {
				first[key] = g
			}
		}
	}
	var out []GrantRule
	for _, key := range slices.Sorted(maps.Keys(first)) {
		if count[key] == holders {
			out = append(out, first[key])
		}
	}
	return out
}

// PolicyRecords is the union of the records of policy's ended grants on
// the NSGs, newest first (then by rule name), at most MaxEndedRecords: what
// every NSG the policy keeps or gains must hold, so that no record is lost
// with an NSG the policy leaves.
func PolicyRecords(policy string, nsgs []PolicyNSG) []EndedRecord {
	byName := map[string]EndedRecord{}
	for _, n := range nsgs {
		for _, e := range n.View.Ended {
			if e.Policy == policy {
				byName[strings.ToLower(e.Rule.Name)] = e
			}
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b EndedRecord) int {
		return cmp.Or(b.ExpiresAt.Compare(a.ExpiresAt), strings.Compare(a.Rule.Name, b.Rule.Name))
	})
	return out[:min(len(out), MaxEndedRecords)]
}

// PolicyUpdate is what an update of a policy starts from.
type PolicyUpdate struct {
	// Old is the policy as it was; nil when it cannot be known (then the
	// policy is checked on every NSG as if changed).
	Old *Policy
	New Policy
	// OldNSGs are every NSG the policy had, those found changed out of
	// band included: they are not "gained", nothing revoked there may come
	// back. NewNSGs are the NSGs it has after the update.
	OldNSGs, NewNSGs []string
	// Had are the NSGs of OldNSGs that exist, as read now. They are needed
	// only when the NSGs change (NSGsChange): otherwise nothing moves.
	Had []PolicyNSG
	Now time.Time
}

// UpdatePlan is what an update writes, moves and checks.
type UpdatePlan struct {
	// Gained are the NSGs joining the policy, Leaving those leaving it:
	// the policy's rules, the grants' rules there and its records go with it.
	Gained, Leaving []string
	// Check are the NSGs where the policy is written anew, to be checked
	// for conflicts (Conflicts) before anything is written: every NSG when
	// the policy changes, else only the NSGs it gains, so that a change of
	// a flag alone does not fail on a foreign rule already reported.
	Check []string
	// Carry are the grants that move to each gained NSG, for their
	// remaining window only (MovableGrants, Policy.MoveGrant).
	Carry []GrantRule
	// Records are the records of ended grants that every NSG the policy
	// keeps or gains must hold (PolicyRecords); none when the NSGs do not
	// change.
	Records []EndedRecord
}

// PlanPolicyUpdate decides what updating a policy writes, moves and checks.
func PlanPolicyUpdate(u PolicyUpdate) UpdatePlan {
	var plan UpdatePlan
	plan.Gained, plan.Leaving = NSGsChange(u.OldNSGs, u.NewNSGs)
	if len(plan.Gained) > 0 {
		plan.Carry = MovableGrants(u.New.Name, u.Had, u.Now)
	}
	if len(plan.Gained) > 0 || len(plan.Leaving) > 0 {
		plan.Records = PolicyRecords(u.New.Name, u.Had)
	}
	plan.Check = u.NewNSGs
	if u.Old != nil && u.Old.Equal(u.New) {
		plan.Check = plan.Gained
	}
	return plan
}

// CarryTo returns the grants whose rules are to be opened on nsgID with the
// policy's: the carried grants on a gained NSG, none elsewhere.
func (p UpdatePlan) CarryTo(nsgID string) []GrantRule {
	if containsFold(p.Gained, nsgID) {
		return p.Carry
	}
	return nil
}

// GrantMovedReason is the audited reason of a grant's rule opened on an
// NSG that policy gained.
func GrantMovedReason(policy string, g GrantRule) string {
	return fmt.Sprintf("policy %s gained this NSG: the grant's rule moved with it, "+
		"for its remaining window until %s", policy, rfc3339(g.ExpiresAt))
}

// GrantLeftReason is the audited reason of an active grant's rule removed
// from an NSG that policy left.
func GrantLeftReason(policy string) string {
	return fmt.Sprintf("policy %s left this NSG: the grant's rule there went with it", policy)
}

// GrantsOutsideBand refuses a band change that would leave an active grant
// of p on the NSG outside p's new grant range: one error per grant, on
// priority_band. Expired grants do not count: they are closing anyway.
func (p Policy) GrantsOutsideBand(nsgID string, view NSGView, now time.Time) []Notice {
	lo, hi := p.Band.GrantRange()
	var out []Notice
	for _, g := range view.PolicyGrants(p.Name) {
		if (g.Rule.Priority >= lo && g.Rule.Priority <= hi) || !g.ActiveAt(now) {
			continue
		}
		out = append(out, Notice{Severity: Error, Attribute: pathBand, Summary: "Active Grant Outside the New Band",
			Detail: fmt.Sprintf("Grant %s (rule %s, priority %d, by %s, until %s) on %s would fall outside the new grant range %d–%d. "+
				"Wait until it expires or remove it, then change the band.",
				g.ID, g.Rule.Name, g.Rule.Priority, g.Requester, rfc3339(g.ExpiresAt), nsgID, lo, hi)})
	}
	return out
}

// ExistingPolicyNotice judges a policy of p's name already on an NSG that
// creating p would write to: exactly p and intact, it is adopted (a
// warning: most likely an apply interrupted after Azure accepted the write
// and before Terraform saved state, and taking it over converges);
// anything else refuses the create (an error on name). id is the policy's
// PolicyID, for the import command the error suggests. It reports false
// when no policy of that name is there.
func ExistingPolicyNotice(p Policy, nsgID string, view NSGView, id string) (Notice, bool) {
	existing, ok := view.Policies[p.Name]
	if !ok {
		return Notice{}, false
	}
	if existing.Problem == "" && existing.Policy.Equal(p) {
		return Notice{Severity: Warning, Summary: "Adopting Existing JIT Policy",
			Detail: fmt.Sprintf("Policy %q is already on %s exactly as configured (left by an interrupted apply, or written "+
				"by another configuration). This resource takes it over. If another configuration manages it, remove "+
				"one of the two.", p.Name, nsgID)}, true
	}
	return Notice{Severity: Error, Attribute: pathName, Summary: "JIT Policy Already Exists",
		Detail: fmt.Sprintf("A JIT policy named %q is already on %s (rules %s), written by another configuration or left behind. "+
			"Import it (terraform import <address> '%s') or choose another name.",
			p.Name, nsgID, strings.Join(existing.RuleNames, ", "), id)}, true
}

// SessionNotices warns where flushConnection, an NSG-wide setting, reaches
// beyond policy p on the NSG: another policy there has its sessions cut
// too when p ends sessions, or p's sessions are cut because another policy
// asks for it.
func (p Policy) SessionNotices(nsgID string, view NSGView) []Notice {
	switch others := view.OtherPolicies(p.Name); {
	case p.EndSessions && len(others) > 0:
		return []Notice{{Severity: Warning, Summary: "Live Sessions End for the Whole NSG",
			Detail: fmt.Sprintf("end_sessions_at_expiry sets flushConnection on %s, which applies to the whole NSG: sessions admitted "+
				"by policy %s and by every other rule there are re-evaluated too whenever the NSG's rules change, and cut when "+
				"they are no longer allowed.", nsgID, strings.Join(others, ", "))}}
	case !p.EndSessions:
		if asking := view.PoliciesEndingSessions(p.Name); len(asking) > 0 {
			return []Notice{{Severity: Warning, Summary: "Live Sessions End at Expiry on This NSG",
				Detail: fmt.Sprintf("Policy %s on %s ends live sessions at expiry (flushConnection), so the sessions this policy's "+
					"grants admit there are cut at expiry too, although end_sessions_at_expiry is false here.",
					strings.Join(asking, ", "), nsgID)}}
		}
	}
	return nil
}

// SessionsOffNotice warns that policy name ends sessions at expiry but
// flushConnection was found off on the NSG: sessions opened there during a
// grant would outlive it until the next apply turns it on again.
func SessionsOffNotice(name, nsgID string) Notice {
	return Notice{Severity: Warning, Summary: "Live Sessions No Longer End at Expiry",
		Detail: fmt.Sprintf("Policy %q ends live sessions at expiry, but flushConnection is off on %s (turned off outside "+
			"Terraform, for example by a whole-NSG write from another tool): sessions opened there during a grant "+
			"would outlive it. The next apply turns it on again.", name, nsgID)}
}

// PolicyStatus is how one NSG holds a policy, as read back.
type PolicyStatus int

// Policy statuses on one NSG.
const (
	PolicyIntact       PolicyStatus = iota // the policy, well-formed, as on the other intact NSGs
	PolicyMissing                          // none of its guard and deny-all rules are there
	PolicyInconsistent                     // its rules are there but do not encode a policy exactly (Problem says why)
	PolicyDiffers                          // well-formed, but not the policy wanted, or not the one found first
)

// PolicyOnNSG is how one NSG holds a policy.
type PolicyOnNSG struct {
	NSGID   string
	Status  PolicyStatus
	Problem string // for PolicyInconsistent
}

// PolicyReadBack is a policy as read back from its NSGs.
type PolicyReadBack struct {
	// Found is the policy found intact: the first well-formed one that is
	// as wanted, or, when none is, what was wanted (the plan then writes it
	// again on every NSG, rather than forgetting the policy). Nil when
	// nothing was found and nothing was wanted (after an import).
	Found *Policy
	// Intact are the NSGs holding Found, in the order given.
	Intact []string
	// NSGs says how each NSG read holds the policy, in the order given.
	NSGs []PolicyOnNSG
}

// ReadBackPolicy reads policy name back from its NSGs. want is the policy
// the state describes, nil when it does not (right after an import): then
// any well-formed policy of that name is taken, and every NSG must hold the
// same one to count as intact. It fails closed: an NSG whose rules are
// inconsistent, or differ from what is wanted, is not intact, so the plan
// writes the policy there again.
func ReadBackPolicy(name string, want *Policy, nsgs []PolicyNSG) PolicyReadBack {
	var out PolicyReadBack
	for _, n := range nsgs {
		on := PolicyOnNSG{NSGID: n.ID}
		decoded, ok := n.View.Policies[name]
		switch {
		case !ok:
			on.Status = PolicyMissing
		case decoded.Problem != "":
			on.Status, on.Problem = PolicyInconsistent, decoded.Problem
		case want != nil && !decoded.Policy.Equal(*want):
			on.Status = PolicyDiffers
		default:
			if out.Found == nil {
				p := decoded.Policy
				out.Found = &p
			}
			if out.Found.Equal(decoded.Policy) {
				out.Intact = append(out.Intact, n.ID)
			} else {
				on.Status = PolicyDiffers
			}
		}
		out.NSGs = append(out.NSGs, on)
	}
	if out.Found == nil && want != nil {
		p := *want
		out.Found = &p
	}
	return out
}

// PolicyNotFoundNotice is the error of reading back a policy found on none
// of its NSGs, with nothing to write it again from.
func PolicyNotFoundNotice(name string, nsgIDs []string) Notice {
	return Notice{Severity: Error, Summary: "JIT Policy Not Found",
		Detail: fmt.Sprintf("No intact JIT policy named %q was found on %s.", name, strings.Join(nsgIDs, ", "))}
}

// PlanCheck is how a plan of a policy stands to its state.
type PlanCheck struct {
	// Creating is set when the policy is being created: a policy of its
	// name already on an NSG is adopted or refuses the plan
	// (ExistingPolicyNotice), and ID is its id, for the import it suggests.
	Creating bool
	ID       string
	// Unchanged is set when the policy and its NSGs are as in the state:
	// nothing is written, so what would only stop a write (a foreign rule
	// planted in the band, another policy's band, an active grant outside a
	// new band) does not fail the plan; what the rules let in is still
	// reported.
	Unchanged bool
	Now       time.Time
}

// CheckPlanOn judges a plan of p on one NSG whose rules are rules (view
// is ReadNSG(rules)), and adds to f what the rules let in around p. It
// returns what the user must read: conflicts (Conflicts), active grants
// outside a new band (GrantsOutsideBand), and how far flushConnection
// reaches (SessionNotices).
func (p Policy) CheckPlanOn(c PlanCheck, nsgID string, rules []SecurityRule, view NSGView, f *PolicyFindings) []Notice {
	if c.Creating {
		if n, ok := ExistingPolicyNotice(p, nsgID, view, c.ID); ok {
			return []Notice{n}
		}
	}
	var out []Notice
	if !c.Unchanged {
		out = append(out, ConflictNotices(Conflicts(p, nsgID, rules))...)
		if !c.Creating {
			out = append(out, p.GrantsOutsideBand(nsgID, view, c.Now)...)
		}
	}
	out = append(out, p.SessionNotices(nsgID, view)...)
	f.AddNSG(p, nsgID, rules)
	return out
}

// ConflictNotices are the conflicts Conflicts returns (err), each an error
// on the attribute it names.
func ConflictNotices(err error) []Notice {
	if err == nil {
		return nil
	}
	const summary = "JIT Policy Conflicts With Network Security Group"
	var out []Notice
	for _, problem := range unjoin(err) {
		n := Notice{Severity: Error, Summary: summary, Detail: problem.Error()}
		var fe *FieldError
		if errors.As(problem, &fe) {
			n.Attribute, n.Detail = fe.Path, fe.Path+": "+fe.Message
		}
		out = append(out, n)
	}
	return out
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}
