package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// NSGRead is one NSG as read from Azure: the input of BuildStatus. jitd
// keeps the latest one of each NSG in scope (its rules as its own closes
// and restores left them); `jitd status` reads them afresh.
type NSGRead struct {
	ID    string
	Rules []jit.SecurityRule
	// FlushConnection is the NSG's flushConnection; nil when it was not
	// read (it is read only where a policy ends sessions at expiry).
	FlushConnection *bool
	// ReadAt is when the rules were read.
	ReadAt time.Time
	// Err is non-empty when the last read failed: Rules are then those of
	// an earlier read (or none), and the status is incomplete.
	Err string
	// AdminRules are the security admin rules in effect for the NSG's
	// virtual networks, when they were read.
	AdminRules []jit.AdminRule
	// LastSeen are the policies last seen intact on the NSG (jitd's
	// memory), so that a policy all of whose rules are gone is shown as
	// missing; nil for a fresh read.
	LastSeen map[string]jit.Policy
	// Closing are the lower-case names of rules whose close jitd has
	// started and not yet seen end (jitd closes a grant ahead of its
	// expiry, by the time its writes take): they are shown as closing, not
	// as closed nor as open grants. Nil for a fresh read.
	Closing []string
}

// StatusFilter narrows a status to one policy, NSG or requester; empty
// fields match everything. Matching ignores case, as ARM and the grant
// grammar do for these.
type StatusFilter struct {
	Policy string
	// NSG is a resource id, or "<resource group>/<name>", or a name.
	NSG       string
	Requester string
}

// StatusOptions are what BuildStatus knows besides the reads.
type StatusOptions struct {
	Now time.Time
	// Restore judges grants under a partial policy that jitd would
	// restore against the restored policy, as jitd does (see PlanOptions).
	Restore bool
	// InScope is the number of NSGs in scope; when more than the reads
	// given, the status is incomplete. Zero means len(reads).
	InScope int
	// ScopeErrors are parts of the scope that could not be listed: the
	// status is incomplete.
	ScopeErrors []string
	Filter      StatusFilter
}

// Policy states on one NSG.
const (
	PolicyIntact    = "intact"    // every guard and deny-all rule as the policy writes it
	PolicyPartial   = "partial"   // some rules missing (deny-all rules, or ones jitd restores)
	PolicyMalformed = "malformed" // rules that do not encode a policy exactly
	PolicyMissing   = "missing"   // no rule of the policy on the NSG, yet grants (or jitd's memory) name it
)

// Whether live sessions end at a grant's expiry on one NSG.
const (
	SessionsEnded    = "yes"     // the policy ends sessions and flushConnection is on
	SessionsNotEnded = "no"      // the policy does not ask, or flushConnection is off
	SessionsUnknown  = "unknown" // the policy asks but flushConnection was not read
)

// Status is who can reach what, now, through the NSGs in scope: the model
// behind `jitd status` and jitd's status page. Field names are stable
// (`jitd status --json`).
type Status struct {
	Now time.Time `json:"now"`
	// Complete is true only when every NSG in scope was read: only then
	// does an empty list of grants mean that nothing is open.
	Complete    bool     `json:"complete"`
	NSGsInScope int      `json:"nsgs_in_scope"`
	NSGsRead    int      `json:"nsgs_read"`
	Errors      []string `json:"errors"`
	Filter      struct {
		Policy    string `json:"policy,omitempty"`
		NSG       string `json:"nsg,omitempty"`
		Requester string `json:"requester,omitempty"`
	} `json:"filter"`
	Policies []PolicyStatus `json:"policies"`
	// Findings are everything that needs attention, as jitd reports it:
	// bypasses, standing access, partial, malformed and missing policies,
	// sessions not ended, and open JIT rules that jitd closes (kind is the
	// close reason: expired, malformed, over_max, …).
	Findings []StatusFinding `json:"findings"`
	// ActiveGrants counts valid open grant rules (one per rule and NSG).
	ActiveGrants int `json:"active_grants"`
	// NextExpiry is the earliest expiry among them.
	NextExpiry *time.Time `json:"next_expiry,omitempty"`
}

// NeedsAttention reports whether the status holds a finding.
func (s Status) NeedsAttention() bool { return len(s.Findings) > 0 }

// PolicyStatus is one policy across the NSGs that carry it.
type PolicyStatus struct {
	Name string        `json:"name"`
	NSGs []PolicyOnNSG `json:"nsgs"`
}

// PolicyOnNSG is one policy on one NSG.
type PolicyOnNSG struct {
	NSGID  string    `json:"nsg_id"`
	ReadAt time.Time `json:"read_at"`
	// Stale is non-empty when the NSG's last read failed: what is shown is
	// from ReadAt.
	Stale   string `json:"stale,omitempty"`
	State   string `json:"state"`
	Problem string `json:"problem,omitempty"`
	// EndSessions is the policy's end_sessions_at_expiry; FlushConnection
	// the NSG's, when read.
	EndSessions     bool         `json:"end_sessions"`
	FlushConnection *bool        `json:"flush_connection"`
	SessionsEnded   string       `json:"sessions_ended_at_expiry"`
	SessionsDetail  string       `json:"sessions_detail"`
	Ports           []PortStatus `json:"ports"`
	// OtherGrants are grant rules of the policy on no port it protects
	// here, or under a policy that cannot be read (malformed or missing):
	// jitd closes them.
	OtherGrants []GrantStatus `json:"other_grants"`
}

// PortStatus is one protected port of a policy on one NSG.
type PortStatus struct {
	Port        string        `json:"port"` // "22/Tcp"
	MaxDuration string        `json:"max_duration"`
	Grants      []GrantStatus `json:"grants"`
	// StandingAccess are rules letting some of the policy's allowed
	// sources in with no grant; Bypasses rules letting other sources in.
	StandingAccess []RuleStatus `json:"standing_access"`
	Bypasses       []RuleStatus `json:"bypasses"`
	// AdminRuleOverrides are Virtual Network Manager security admin rules
	// that open (AlwaysAllow) or block (Deny) the port ahead of every NSG.
	// Empty until jitd reads admin rules.
	AdminRuleOverrides []AdminRuleOverride `json:"admin_rule_overrides"`
}

// GrantStatus is one grant rule on one NSG.
type GrantStatus struct {
	ID        string   `json:"grant_id"`
	Policy    string   `json:"policy"`
	Requester string   `json:"requester"`
	Source    string   `json:"source"`
	Ports     []string `json:"ports"` // "22/Tcp"
	RuleName  string   `json:"rule_name"`
	Priority  int32    `json:"priority"`
	// OpenedAt is null: a grant rule records its expiry, not when it
	// was opened (the provider's audit event of the open has it).
	OpenedAt  *time.Time `json:"opened_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	// TimeLeft is in whole seconds; 0 or less once expired.
	TimeLeft int64 `json:"time_left_seconds"`
	// Closing is why jitd closes this rule (expired, over_max, orphan, …);
	// empty for a valid grant.
	Closing       string `json:"closing,omitempty"`
	ClosingDetail string `json:"closing_detail,omitempty"`
}

// RuleStatus is a rule outside the policy that opens a protected port.
type RuleStatus struct {
	Name     string   `json:"name"`
	Priority int32    `json:"priority"`
	Sources  []string `json:"sources"`
	Reason   string   `json:"reason"`
}

// AdminRuleOverride is a security admin rule that decides a protected port
// before the NSG does.
type AdminRuleOverride struct {
	Name     string `json:"name"`
	Action   string `json:"action"` // AlwaysAllow, Allow or Deny
	Priority int32  `json:"priority"`
	Detail   string `json:"detail"`
}

// StatusFinding is something that needs attention on one NSG.
type StatusFinding struct {
	NSGID  string `json:"nsg_id"`
	Kind   string `json:"kind"`
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Detail string `json:"detail"`
}

// BuildStatus builds the status from NSG reads. It is pure: the same reads
// and options always give the same status. Grants are judged as jitd
// judges them (PlanNSG), so a grant the status shows as valid is one jitd
// leaves open.
func BuildStatus(reads []NSGRead, o StatusOptions) Status {
	parts := make([]nsgStatus, len(reads))
	for i, rd := range reads {
		parts[i] = statusPart(rd, o.Now, o.Restore)
	}
	return assembleStatus(parts, o)
}

// nsgStatus is one NSG's part of a status, before filters: what
// statusPart computes from its read. It stays true until the earliest
// expiry of a grant valid in it (until; zero when none) or the NSG's next
// read, so jitd keeps it between page views; only time left changes, and
// assembleStatus computes that.
type nsgStatus struct {
	id, err  string
	policies []policyOnNSG
	findings []StatusFinding
	until    time.Time
}

// validAt reports whether the part still holds at now.
func (p nsgStatus) validAt(now time.Time) bool { return p.until.IsZero() || now.Before(p.until) }

func statusPart(rd NSGRead, now time.Time, restore bool) nsgStatus {
	plan := PlanNSG(rd.ID, rd.Rules, now, PlanOptions{LastSeen: rd.LastSeen, FlushConnection: rd.FlushConnection, Restore: restore,
		AdminRules: rd.AdminRules})
	return nsgStatus{id: rd.ID, err: rd.Err, policies: statusOfNSG(rd, plan), findings: findingsOfNSG(rd, plan), until: plan.NextExpiry}
}

// assembleStatus applies the filters to the parts and sums them up. The
// parts are not modified (jitd shares them between page views).
func assembleStatus(parts []nsgStatus, o StatusOptions) Status {
	st := Status{Now: o.Now, NSGsInScope: max(o.InScope, len(parts)), Errors: slices.Clone(o.ScopeErrors),
		Policies: []PolicyStatus{}, Findings: []StatusFinding{}}
	if st.Errors == nil {
		st.Errors = []string{}
	}
	st.Filter.Policy, st.Filter.NSG, st.Filter.Requester = o.Filter.Policy, o.Filter.NSG, o.Filter.Requester
	byPolicy := map[string]*PolicyStatus{}
	for _, part := range parts {
		if part.err != "" {
			st.Errors = append(st.Errors, part.id+": "+part.err)
		} else {
			st.NSGsRead++
		}
		if !o.Filter.matchNSG(part.id) {
			continue
		}
		for _, pn := range part.policies {
			name := pn.policy
			if !o.Filter.matchPolicy(name) {
				continue
			}
			pn = pn.at(o.Now)
			if o.Filter.Requester != "" && !pn.filterRequester(o.Filter.Requester) {
				continue
			}
			ps := byPolicy[name]
			if ps == nil {
				ps = &PolicyStatus{Name: name}
				byPolicy[name] = ps
			}
			ps.NSGs = append(ps.NSGs, pn.PolicyOnNSG)
		}
		for _, f := range part.findings {
			if o.Filter.Policy != "" && !o.Filter.matchPolicy(f.Policy) {
				continue
			}
			if o.Filter.Requester != "" && f.Policy == "" {
				continue
			}
			st.Findings = append(st.Findings, f)
		}
	}
	st.Complete = len(st.Errors) == 0 && st.NSGsRead == st.NSGsInScope
	for _, name := range sortedKeys(byPolicy) {
		ps := byPolicy[name]
		slices.SortFunc(ps.NSGs, func(a, b PolicyOnNSG) int { return compareFold(a.NSGID, b.NSGID) })
		st.Policies = append(st.Policies, *ps)
		for _, pn := range ps.NSGs {
			counted := map[string]bool{}
			for _, pt := range pn.Ports {
				for _, g := range pt.Grants {
					if g.Closing != "" || counted[g.RuleName] {
						continue
					}
					counted[g.RuleName] = true
					st.ActiveGrants++
					if st.NextExpiry == nil || g.ExpiresAt.Before(*st.NextExpiry) {
						at := g.ExpiresAt
						st.NextExpiry = &at
					}
				}
			}
		}
	}
	slices.SortStableFunc(st.Findings, func(a, b StatusFinding) int {
		return cmp.Or(compareFold(a.NSGID, b.NSGID), strings.Compare(a.Policy, b.Policy), strings.Compare(a.Kind, b.Kind),
			strings.Compare(a.Rule, b.Rule))
	})
	return st
}

// at is a copy of p with fresh slices of grants, their time left as of
// now.
func (p policyOnNSG) at(now time.Time) policyOnNSG {
	grants := func(gs []GrantStatus) []GrantStatus {
		out := make([]GrantStatus, len(gs))
		for i, g := range gs {
			g.TimeLeft = int64(g.ExpiresAt.Sub(now) / time.Second)
			out[i] = g
		}
		return out
	}
	ports := make([]PortStatus, len(p.Ports))
	for i, pt := range p.Ports {
		pt.Grants = grants(pt.Grants)
		ports[i] = pt
	}
	p.Ports = ports
	p.OtherGrants = grants(p.OtherGrants)
	return p
}

func compareFold(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) }

func (f StatusFilter) matchPolicy(name string) bool {
	return f.Policy == "" || strings.EqualFold(f.Policy, name)
}

func (f StatusFilter) matchNSG(id string) bool {
	if f.NSG == "" || strings.EqualFold(f.NSG, id) {
		return true
	}
	lower := strings.ToLower(id)
	want := strings.ToLower(strings.Trim(f.NSG, "/"))
	name := lower[strings.LastIndex(lower, "/")+1:]
	if want == name {
		return true
	}
	// "<resource group>/<name>"
	rg, n, ok := strings.Cut(want, "/")
	return ok && n == name && strings.Contains(lower, "/resourcegroups/"+rg+"/")
}

// policyOnNSG is a PolicyOnNSG with its policy's name.
type policyOnNSG struct {
	PolicyOnNSG
	policy string
}

// filterRequester keeps only the requester's grants; false when none is
// left.
func (p *policyOnNSG) filterRequester(requester string) bool {
	keep := func(gs []GrantStatus) []GrantStatus {
		out := []GrantStatus{}
		for _, g := range gs {
			if strings.EqualFold(g.Requester, requester) {
				out = append(out, g)
			}
		}
		return out
	}
	found := false
	var ports []PortStatus
	for _, pt := range p.Ports {
		pt.Grants = keep(pt.Grants)
		if len(pt.Grants) > 0 {
			found = true
			ports = append(ports, pt)
		}
	}
	p.Ports = ports
	if p.Ports == nil {
		p.Ports = []PortStatus{}
	}
	p.OtherGrants = keep(p.OtherGrants)
	return found || len(p.OtherGrants) > 0
}

// statusOfNSG is every policy on one NSG (and every policy its grants or
// jitd's memory name), with its ports and grants.
func statusOfNSG(rd NSGRead, plan NSGPlan) []policyOnNSG {
	view := jit.ReadNSG(rd.Rules)
	for _, r := range plan.Restores {
		view.Policies[r.Policy.Name] = jit.DecodedPolicy{Policy: r.Policy, Problem: view.Policies[r.Policy.Name].Problem}
	}
	restored := map[string]bool{}
	for _, r := range plan.Restores {
		restored[r.Policy.Name] = true
	}
	// The rules as jitd's plan leaves them: what the findings are about.
	closing := map[string]bool{}
	for _, c := range plan.Closes {
		closing[c.Rule.Name] = true
	}
	remaining := withoutNames(rd.Rules, closing)
	active := map[string]bool{}
	for _, g := range plan.Active {
		active[g.Rule.Name] = true
	}

	grants := map[string][]GrantStatus{}
	for _, g := range plan.Active {
		if slices.Contains(rd.Closing, strings.ToLower(g.Rule.Name)) {
			// Valid, not expired yet, and being closed: jitd started its
			// close ahead of the expiry. Still open until the write ends.
			grants[g.Policy] = append(grants[g.Policy], grantStatus(g, string(ReasonExpired),
				"closing ahead of its expiry: jitd's write deleting the rule is under way, started ahead by the time its writes take so that the rule is gone at about the expiry; it is open until the write ends"))
			continue
		}
		grants[g.Policy] = append(grants[g.Policy], grantStatus(g, "", ""))
	}
	for _, c := range plan.Closes {
		if c.Grant != nil {
			grants[c.Grant.Policy] = append(grants[c.Grant.Policy], grantStatus(*c.Grant, string(c.Reason), c.Detail))
		}
	}
	names := map[string]bool{}
	for n := range view.Policies {
		names[n] = true
	}
	for n := range grants {
		names[n] = true
	}
	for n := range rd.LastSeen {
		names[n] = true
	}

	var out []policyOnNSG
	for _, name := range sortedKeys(names) {
		pn := PolicyOnNSG{NSGID: rd.ID, ReadAt: rd.ReadAt, Stale: rd.Err, FlushConnection: rd.FlushConnection,
			Ports: []PortStatus{}, OtherGrants: []GrantStatus{}, SessionsEnded: SessionsUnknown}
		dp, present := view.Policies[name]
		usable := present && (dp.Problem == "" || restored[name])
		switch {
		case !present:
			pn.State = PolicyMissing
			pn.Problem = fmt.Sprintf("no guard or deny-all rule of policy %q is on this NSG", name)
		case dp.Problem == "":
			pn.State = PolicyIntact
		case restored[name] || missingDeny(name, dp):
			pn.State = PolicyPartial
			pn.Problem = dp.Problem
		default:
			pn.State = PolicyMalformed
			pn.Problem = dp.Problem
		}
		if usable {
			p := dp.Policy
			pn.EndSessions = p.EndSessions
			pn.SessionsEnded, pn.SessionsDetail = sessionsAtExpiry(p.EndSessions, rd.FlushConnection)
			bypasses := p.Bypasses(remaining)
			standing := p.StandingAccess(withoutNames(remaining, active))
			admin := p.AdminOverrides(rd.AdminRules)
			for _, pt := range p.Ports {
				ps := PortStatus{Port: pt.String(), MaxDuration: jit.FormatDuration(pt.MaxDuration), Grants: []GrantStatus{},
					StandingAccess: rulesOnPort(standing, pt), Bypasses: rulesOnPort(bypasses, pt), AdminRuleOverrides: adminOnPort(admin, pt)}
				pn.Ports = append(pn.Ports, ps)
			}
		} else {
			pn.SessionsEnded, pn.SessionsDetail = SessionsUnknown, "the policy cannot be read on this NSG"
		}
		for _, g := range grants[name] {
			placed := false
			if usable {
				for i, pt := range dp.Policy.Ports {
					if grantCovers(g, pt) {
						pn.Ports[i].Grants = append(pn.Ports[i].Grants, g)
						placed = true
					}
				}
			}
			if !placed {
				pn.OtherGrants = append(pn.OtherGrants, g)
			}
		}
		for i := range pn.Ports {
			sortGrants(pn.Ports[i].Grants)
		}
		sortGrants(pn.OtherGrants)
		out = append(out, policyOnNSG{PolicyOnNSG: pn, policy: name})
	}
	return out
}

// findingsOfNSG is what needs attention on one NSG: jitd's findings, and
// the JIT rules it closes.
func findingsOfNSG(rd NSGRead, plan NSGPlan) []StatusFinding {
	var out []StatusFinding
	for _, f := range plan.Findings {
		out = append(out, StatusFinding{NSGID: rd.ID, Kind: string(f.Kind), Policy: f.Policy, Rule: f.RuleName, Detail: f.Detail})
	}
	for _, c := range plan.Closes {
		f := StatusFinding{NSGID: rd.ID, Kind: string(c.Reason), Rule: c.Rule.Name, Detail: c.Detail}
		if c.Grant != nil {
			f.Policy = c.Grant.Policy
			if c.Reason == ReasonExpired {
				f.Detail = fmt.Sprintf("grant %s of %s expired at %s and its rule is still open; jitd closes it", c.Grant.ID,
					c.Grant.Requester, c.Grant.ExpiresAt.UTC().Format(time.RFC3339))
			}
		} else {
			f.Policy = policyOfGrantRuleName(c.Rule.Name)
		}
		out = append(out, f)
	}
	return out
}

// policyOfGrantRuleName is the policy part of jit-<policy>-g-<id>, or "".
func policyOfGrantRuleName(name string) string {
	rest, ok := strings.CutPrefix(name, jit.RuleNamePrefix)
	if !ok {
		return ""
	}
	if i := strings.LastIndex(rest, "-g-"); i > 0 {
		return rest[:i]
	}
	return ""
}

func sessionsAtExpiry(endSessions bool, flush *bool) (string, string) {
	switch {
	case !endSessions:
		return SessionsNotEnded, "the policy does not end sessions at expiry: a connection opened during a grant outlives it"
	case flush == nil:
		return SessionsUnknown, "the policy ends sessions at expiry; the NSG's flushConnection was not read"
	case *flush:
		return SessionsEnded, "flushConnection is on: deleting a grant's rule cuts the connections it admitted"
	default:
		return SessionsNotEnded, "the policy ends sessions at expiry, but flushConnection is off on this NSG: connections opened during a grant outlive it"
	}
}

// grantStatus is a grant's row; assembleStatus sets its time left.
func grantStatus(g jit.GrantRule, closing, detail string) GrantStatus {
	ports := make([]string, len(g.Rule.DestinationPorts))
	for i, p := range g.Rule.DestinationPorts {
		ports[i] = p + "/" + string(g.Rule.Protocol)
	}
	return GrantStatus{ID: g.ID, Policy: g.Policy, Requester: g.Requester, Source: strings.Join(g.Rule.SourcePrefixes, ","),
		Ports: ports, RuleName: g.Rule.Name, Priority: g.Rule.Priority, ExpiresAt: g.ExpiresAt,
		Closing: closing, ClosingDetail: detail}
}

// grantCovers reports whether a grant rule opens a protected port.
func grantCovers(g GrantStatus, pt jit.Port) bool {
	for _, p := range g.Ports {
		num, proto, _ := strings.Cut(p, "/")
		n, err := strconv.Atoi(num)
		if err == nil && n == int(pt.Number) && (proto == string(jit.ProtocolAny) || pt.Protocol == jit.ProtocolAny ||
			strings.EqualFold(proto, string(pt.Protocol))) {
			return true
		}
	}
	return false
}

func rulesOnPort(found []jit.Bypass, pt jit.Port) []RuleStatus {
	out := []RuleStatus{}
	for _, b := range found {
		if b.Port != pt {
			continue
		}
		out = append(out, RuleStatus{Name: b.Rule.Name, Priority: b.Rule.Priority, Sources: slices.Clone(b.Rule.SourcePrefixes), Reason: b.Reason})
	}
	return out
}

// adminOnPort is the admin overrides of one port.
func adminOnPort(found []jit.AdminOverride, pt jit.Port) []AdminRuleOverride {
	out := []AdminRuleOverride{}
	for _, o := range found {
		if o.Port == pt {
			out = append(out, AdminRuleOverride{Name: o.Rule.Name, Action: o.Rule.Access, Priority: o.Rule.Priority, Detail: o.Reason})
		}
	}
	return out
}

func sortGrants(gs []GrantStatus) {
	slices.SortFunc(gs, func(a, b GrantStatus) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.ID, b.ID), strings.Compare(a.RuleName, b.RuleName))
	})
}
