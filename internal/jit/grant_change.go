package jit

import (
	"fmt"
	"strings"
	"time"
)

// This file decides what a grant's resource tells the user and which
// policy a grant is judged against, from what the policy's NSGs say; the
// lifecycle itself is in lifecycle.go.

// attrPolicyID is the grant's attribute naming its policy.
const attrPolicyID = "policy_id"

// GrantPolicyCheck finds the policy a grant is judged against, NSG by NSG
// in the order of the policy's id. The policy must be intact and identical
// on all of them: a grant is never judged against a policy that is missing
// or malformed somewhere (fail closed). At plan time (planning) an NSG
// without the policy is allowed when another NSG of the id holds it: the
// policy may be gaining that NSG in the same run, and the apply checks
// again once it has.
type GrantPolicyCheck struct {
	name     string
	planning bool
	first    string // the id's first NSG, where a difference is measured from
	policy   *Policy
	missing  string // an NSG without the policy, at plan time
}

// NewGrantPolicyCheck starts the check of policy name.
func NewGrantPolicyCheck(name string, planning bool) *GrantPolicyCheck {
	return &GrantPolicyCheck{name: name, planning: planning}
}

// Add judges one more NSG of the policy's id, as read (an NSG that does not
// exist reads as an empty view). A notice, an error on policy_id, refuses
// the grant: the check ends there.
func (c *GrantPolicyCheck) Add(nsgID string, view NSGView) (Notice, bool) {
	if c.first == "" {
		c.first = nsgID
	}
	refuse := func(summary, detail string) (Notice, bool) {
		return Notice{Severity: Error, Attribute: attrPolicyID, Summary: summary, Detail: detail}, true
	}
	decoded, ok := view.Policies[c.name]
	switch {
	case !ok && c.planning:
		c.missing = nsgID
		return Notice{}, false
	case !ok:
		return refuse("JIT Policy Not Found", c.notOn(nsgID))
	case decoded.Problem != "":
		return refuse("JIT Policy Is Malformed", fmt.Sprintf("Policy %q on %s does not read back consistently (%s). Grants are "+
			"refused until the policy is applied again.", c.name, nsgID, decoded.Problem))
	case c.policy != nil && !c.policy.Equal(decoded.Policy):
		return refuse("JIT Policy Differs Between NSGs", fmt.Sprintf("Policy %q on %s differs from the same policy on %s. "+
			"Apply the policy again.", c.name, nsgID, c.first))
	}
	if c.policy == nil {
		p := decoded.Policy
		c.policy = &p
	}
	return Notice{}, false
}

// Policy is the policy found once every NSG was added, or the error (on
// policy_id) when none holds it.
func (c *GrantPolicyCheck) Policy() (Policy, Notice, bool) {
	if c.policy == nil {
		return Policy{}, Notice{Severity: Error, Attribute: attrPolicyID, Summary: "JIT Policy Not Found", Detail: c.notOn(c.missing)}, false
	}
	return *c.policy, Notice{}, true
}

func (c *GrantPolicyCheck) notOn(nsgID string) string {
	return fmt.Sprintf("Policy %q is not on %s: no grant can be opened there. Apply the policy first.", c.name, nsgID)
}

// Notice is what the user is told about a create that adopts or refuses
// the request (nothing for a new window): at plan time (planning) what
// applying will do, at apply what was done.
func (d OpenDecision) Notice(planning bool) (Notice, bool) {
	switch {
	case d.Action == OpenAdopt && planning:
		return Notice{Severity: Warning, Summary: "Access Grant Already Open",
			Detail: "Applying opens nothing new: " + d.Reason + ". The window is not extended."}, true
	case d.Action == OpenAdopt:
		return Notice{Severity: Warning, Summary: "Access Grant Already Open",
			Detail: "Nothing was written: " + d.Reason + ". The window is not extended."}, true
	case d.Action == OpenRefuse && planning:
		return Notice{Severity: Warning, Summary: "Access Request Already Used",
			Detail: "Applying opens nothing: " + d.Reason + ". The grant is recorded as ended. Remove this block; to ask again, " +
				"open a new request (another justification or approval reference)."}, true
	case d.Action == OpenRefuse:
		return Notice{Severity: Warning, Summary: "Access Request Already Used",
			Detail: "Nothing was opened: " + d.Reason +
				". Remove this block; to ask again, open a new request (another justification or approval reference)."}, true
	}
	return Notice{}, false
}

// Refused is the state a refused request (OpenRefuse) is kept in, and the
// end of its window: revoked when what remained open is to be closed
// (CloseRemains), else closed, or expired once its window is over; a
// request with no window to tell (a rule of its name that does not decode)
// ends now, expired.
func (d OpenDecision) Refused(now time.Time) (GrantState, time.Time) {
	switch {
	case d.ExpiresAt.IsZero():
		return GrantExpired, now
	case d.CloseRemains:
		return GrantRevoked, d.ExpiresAt
	case !now.Before(d.ExpiresAt):
		return GrantExpired, d.ExpiresAt
	}
	return GrantClosed, d.ExpiresAt
}

// ObserveGrant is a grant's state after looking at its NSGs at time now
// (GrantState.Observe), and why its rule is tampered ("" when it is not,
// Tampered): a grant whose rule was edited in place is not the grant that
// was reviewed, so one that has not ended counts as revoked, and the plan
// closes the rule.
func ObserveGrant(previous GrantState, expiresAt time.Time, sightings []GrantSighting, want SecurityRule, now time.Time) (GrantState, string) {
	status := previous.Observe(expiresAt, sightings, now)
	tampered := Tampered(sightings, want)
	if tampered != "" && !status.Terminal() {
		status = GrantRevoked
	}
	return status, tampered
}

// DriftReason is the audited reason of a grant found ended (status) when
// it was not: how many of its rules are still open, and why it is tampered
// when it is.
func DriftReason(status GrantState, sightings []GrantSighting, tampered string) string {
	present := 0
	for _, s := range sightings {
		if s.Open {
			present++
		}
	}
	reason := fmt.Sprintf("%s; %d of %d rules still open", status, present, len(sightings))
	if tampered != "" {
		reason += "; tampered: " + tampered
	}
	return reason
}

// AnyOpen reports whether a rule of the grant's name is on any of the NSGs.
func AnyOpen(sightings []GrantSighting) bool {
	for _, s := range sightings {
		if s.Open {
			return true
		}
	}
	return false
}

// EndedGrant is what the user is told about a grant that has ended.
type EndedGrant struct {
	Status    GrantState // expired, revoked or closed
	GrantID   string
	Source    string
	ExpiresAt string // as the state records it
	// Open is set when a rule of the grant is still open on Azure: the
	// apply deletes it. Recorded is false when the NSGs do not all record
	// that it ended: the apply writes the records.
	Open, Recorded bool
}

// Notice warns that the grant has ended and will not open again, and says
// what the apply still does about it.
func (e EndedGrant) Notice() Notice {
	what := fmt.Sprintf("expired at %s", e.ExpiresAt)
	switch e.Status {
	case GrantRevoked:
		what = fmt.Sprintf("was revoked before its expiry (%s): its rule was deleted outside Terraform", e.ExpiresAt)
	case GrantClosed:
		what = fmt.Sprintf("was closed before its expiry (%s): this exact request was destroyed or closed before, "+
			"or jitd closed it just ahead of its expiry (it starts a close by the time its NSG writes take, at most %s, "+
			"so that the rule is gone by then)", e.ExpiresAt, MaxCloseLead)
	}
	detail := fmt.Sprintf("Access grant %s for %s %s. Remove this block; to ask again, open a new request.\n\n"+
		"This grant will not open again: nothing in a plan re-opens an expired, revoked or closed grant.",
		e.GrantID, e.Source, what)
	if e.Open {
		detail += "\n\nA rule of this grant is still open on Azure; this apply deletes it."
	}
	if !e.Recorded {
		detail += "\n\nThe NSGs do not all record that this grant ended; this apply writes the records."
	}
	status := string(e.Status)
	if status != "" {
		status = strings.ToUpper(status[:1]) + status[1:]
	}
	return Notice{Severity: Warning, Summary: "Access Grant " + status, Detail: detail}
}

// GrantImportNotice is the error of importing grant id of policy when
// neither its rule nor its record reads back from the NSGs: tampered (not as
// its grant wrote it), or not found.
func GrantImportNotice(policy, id string, sightings []GrantSighting, nsgIDs []string) Notice {
	if why := Tampered(sightings, SecurityRule{}); why != "" {
		return Notice{Severity: Error, Summary: "Access Grant Tampered",
			Detail: fmt.Sprintf("Rule %s cannot be imported: it is not as its grant wrote it, %s. jitd closes it.",
				GrantRuleName(policy, id), why)}
	}
	return Notice{Severity: Error, Summary: "Access Grant Not Found",
		Detail: fmt.Sprintf("Neither rule %s nor a record of it was found on %s.", GrantRuleName(policy, id), strings.Join(nsgIDs, ", "))}
}

// GrantRulePolicy is the policy name in grant id's rule name (GrantRuleName):
// the rule keeps the name it was written with, under a policy since renamed
// too.
func GrantRulePolicy(ruleName, id string) string {
	return strings.TrimSuffix(strings.TrimPrefix(ruleName, RuleNamePrefix), "-g-"+id)
}

// FullRangeDetail explains that p's grant range on an NSG whose rules are
// rules is full, naming the grants of p holding it.
func (p Policy) FullRangeDetail(nsgID string, rules []SecurityRule) string {
	lo, hi := p.Band.GrantRange()
	var b strings.Builder
	fmt.Fprintf(&b, "The grant range %d–%d of policy %q (band %s) on %s is full: every priority is taken.", lo, hi, p.Name, p.Band, nsgID)
	if grants := ReadNSG(rules).Grants; len(grants) > 0 {
		b.WriteString(" Grants holding it:\n")
		for _, g := range grants {
			if g.Policy == p.Name {
				fmt.Fprintf(&b, "  - %s by %s, until %s\n", g.ID, g.Requester, rfc3339(g.ExpiresAt))
			}
		}
	}
	b.WriteString("\nWait for grants to expire, or widen the policy's priority_band.")
	return b.String()
}

// NewWindow is the window a newly opened grant of duration d gets at now:
// from now, to the second (a grant's rule records its expiry in whole
// seconds, so the window read back is the window granted), in UTC.
func NewWindow(now time.Time, d time.Duration) (start, end time.Time) {
	start = now.UTC().Truncate(time.Second)
	return start, start.Add(d)
}
