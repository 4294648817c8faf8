package jit

import (
	"fmt"
	"strings"
)

// This file gathers what a policy's NSGs let in around it — bypasses,
// standing access and security admin overrides (see Bypasses,
// StandingAccess and AdminOverrides for how each is judged) — across all
// its NSGs, and says what they mean to the user.

// NSGBypass is a bypass or a standing access found on one of the policy's
// NSGs.
type NSGBypass struct {
	NSGID string
	Bypass
}

// NSGAdminOverride is a security admin override of a policy, in effect for
// one of its NSGs through virtual network VNetID.
type NSGAdminOverride struct {
	NSGID, VNetID string
	AdminOverride
}

// PolicyFindings is everything found on a policy's NSGs that keeps a
// protected port open without a grant, NSG by NSG in the order added.
type PolicyFindings struct {
	Policy   string
	Bypasses []NSGBypass        // rules letting sources outside the policy in
	Standing []NSGBypass        // rules letting allowed sources in with no grant
	Admin    []NSGAdminOverride // admin rules deciding protected ports first
}

// AddNSG adds what the rules of one NSG let in around policy p.
func (f *PolicyFindings) AddNSG(p Policy, nsgID string, rules []SecurityRule) {
	f.Policy = p.Name
	for _, b := range p.Bypasses(rules) {
		f.Bypasses = append(f.Bypasses, NSGBypass{NSGID: nsgID, Bypass: b})
	}
	for _, b := range p.StandingAccess(rules) {
		f.Standing = append(f.Standing, NSGBypass{NSGID: nsgID, Bypass: b})
	}
}

// AddAdmin adds the admin overrides of policy p among the security admin
// rules in effect for one NSG through virtual network vnetID.
func (f *PolicyFindings) AddAdmin(p Policy, nsgID, vnetID string, rules []AdminRule) {
	f.Policy = p.Name
	for _, o := range p.AdminOverrides(rules) {
		f.Admin = append(f.Admin, NSGAdminOverride{NSGID: nsgID, VNetID: vnetID, AdminOverride: o})
	}
}

// BypassNotice says which rules bypass the policy: a warning, or an error
// on fail_on_bypass when fail is set. It reports false when there are none.
func (f PolicyFindings) BypassNotice(fail bool) (Notice, bool) {
	if len(f.Bypasses) == 0 {
		return Notice{}, false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "These rules let ports that policy %q protects in from sources it does not allow, ahead of its deny rules, "+
		"so those ports are NOT closed:\n", f.Policy)
	for _, x := range f.Bypasses {
		fmt.Fprintf(&b, "  - %s (priority %d) on %s: port %d/%s: %s\n", x.Rule.Name, x.Rule.Priority, x.NSGID,
			x.Port.Number, x.Port.Protocol, x.Reason)
	}
	b.WriteString("\nThe provider never modifies rules outside the jit- namespace. Remove or narrow them, or move them below the policy's band.")
	n := Notice{Severity: Warning, Summary: "Protected Ports Are Still Reachable", Detail: b.String()}
	return n.failOn(fail, attrFailOnBypass, "Remove or narrow those rules"), true
}

// StandingNotice says which rules give allowed sources access with no
// grant, naming each rule's priority, sources and ports: a warning, or an
// error on fail_on_standing_access when fail is set. It reports false when
// there are none.
func (f PolicyFindings) StandingNotice(fail bool) (Notice, bool) {
	if len(f.Standing) == 0 {
		return Notice{}, false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "These rules let allowed sources of policy %q reach ports it protects with no grant, ahead of its deny-all rules, "+
		"so for those sources the ports are always open:\n", f.Policy)
	for _, x := range f.Standing {
		fmt.Fprintf(&b, "  - %s (priority %d) on %s: port %d/%s, sources %s, ports %s: %s\n", x.Rule.Name, x.Rule.Priority, x.NSGID,
			x.Port.Number, x.Port.Protocol, ruleEntries(x.Rule.SourcePrefixes, x.Rule.UsesApplicationSecurityGroups),
			ruleEntries(x.Rule.DestinationPorts, false), x.Reason)
	}
	b.WriteString("\nThe provider never modifies rules outside the jit- namespace. Remove them, narrow their sources to addresses " +
		"outside the policy's allowed sources, or move them below the policy's band; access for allowed sources then goes through grants.")
	n := Notice{Severity: Warning, Summary: "Allowed Sources Have Standing Access", Detail: b.String()}
	return n.failOn(fail, attrFailOnStanding, "Remove or narrow those rules"), true
}

// AdminNotice says which security admin rules decide protected ports
// before any NSG: a warning, or an error on fail_on_admin_override when
// fail is set. It reports false when there are none.
func (f PolicyFindings) AdminNotice(fail bool) (Notice, bool) {
	if len(f.Admin) == 0 {
		return Notice{}, false
	}
	lines := make([]string, 0, len(f.Admin))
	for _, o := range f.Admin {
		lines = append(lines, fmt.Sprintf("  - %s (virtual network %s): %s", o.NSGID, o.VNetID, o.Reason))
	}
	n := Notice{Severity: Warning, Summary: "Security Admin Rules Decide Protected Ports",
		Detail: fmt.Sprintf("Azure Virtual Network Manager security admin rules are evaluated before any NSG. For policy %q:\n%s",
			f.Policy, strings.Join(lines, "\n"))}
	return n.failOn(fail, attrFailOnAdmin, "Ask the network manager's owners to change those rules"), true
}

// failOn turns a finding's warning into an error on its fail_on_*
// attribute when fail is set, saying nothing was written and what to do:
// the remedy, or turning the attribute off.
func (n Notice) failOn(fail bool, attr, remedy string) Notice {
	if fail {
		n.Severity, n.Attribute = Error, attr
		n.Detail += fmt.Sprintf("\n\n%s is true, so nothing was written. %s, or set %s = false.", attr, remedy, attr)
	}
	return n
}

// ruleEntries lists a rule's address or port entries for a message.
func ruleEntries(entries []string, asg bool) string {
	if len(entries) == 0 && asg {
		return "(application security groups)"
	}
	return strings.Join(entries, ",")
}
