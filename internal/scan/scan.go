// Package scan finds management ports that a network security group lets in
// from the Internet, and says whether a JIT policy on that NSG covers them.
// It is pure logic over the domain's rules (package jit): `jitd scan` reads
// the rules, this package judges them.
//
// # What "from the Internet" means
//
// A port is exposed on an NSG when some public source address reaches it
// over TCP through that NSG's inbound rules, evaluated as Azure does: by
// ascending priority, first match decides, Azure's default rules last. A
// public address is any address the Internet service tag covers: every
// address outside the private ranges a virtual network may use (10.0.0.0/8,
// 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7, the platform
// address 168.63.129.16) and outside the ranges that never route
// (0.0.0.0/8, loopback, link-local, multicast and reserved). So sources "*",
// "Internet", "0.0.0.0/0" and any CIDR holding a public address count, and a
// rule allowing 10.0.0.0/8 does not.
//
// The scan is exact over sources: for each port and destination it sweeps
// the rules in priority order, keeping the set of public sources no earlier
// rule matched, so "Deny 22 from 203.0.113.0/24" at 100 followed by "Allow
// 22 from *" at 200 is still an exposure (every other public address gets
// in), with a witness address outside the denied range. Each exposure is
// then confirmed with jit.Allowed, the evaluator the provider and the daemon
// share; where that evaluator cannot judge a rule (service tags other than
// Internet, VirtualNetwork and AzureLoadBalancer; application security
// groups) the scan assumes the worst for Allow rules and ignores such Deny
// rules, and says so in the finding's detail.
//
// Destinations are the addresses the NSG's rules name for the port (the
// VMs' private addresses that JIT policies and hand-written rules protect),
// plus those given in Options.Destinations. When no rule names one, a
// representative private address stands for every VM behind the NSG. A rule
// allowing "*" that only reaches addresses no rule names is therefore not
// reported once a JIT policy protects the VM's address: list the VMs'
// addresses in Options.Destinations to judge them too.
//
// Each NSG is judged on its own: traffic to a VM passes its subnet's NSG and
// its NIC's, and the other one may still block what this one lets in; an NSG
// that lets a management port in from the Internet is reported either way,
// since its rules alone do not close the port.
package scan

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// DefaultPorts are the management ports scanned unless told otherwise: SSH,
// RDP, and WinRM over HTTP and HTTPS.
var DefaultPorts = []uint16{22, 3389, 5985, 5986}

// Status classifies a finding. The values are stable: they appear in
// `jitd scan --output json`.
type Status string

// Statuses of a finding.
const (
	// StatusExposed: a public source reaches the port and no JIT policy on
	// the NSG protects it.
	StatusExposed Status = "exposed"
	// StatusBypassed: a JIT policy on the NSG protects the port, but a rule
	// outside the policy lets a public source in ahead of it.
	StatusBypassed Status = "bypassed"
	// StatusExpiredGrant: a JIT grant rule past its expiry still lets its
	// source in (nothing closed it: is jitd running?).
	StatusExpiredGrant Status = "expired_grant"
	// StatusStandingAccess: a JIT policy on the NSG protects the port, but
	// a rule outside the policy lets some of the policy's allowed sources
	// (public or not: a VPN pool, say) in ahead of its deny-all rule, with
	// no grant and for good.
	StatusStandingAccess Status = "standing_access"
	// StatusGranted: only an active JIT grant lets a public source in, as
	// a reviewed request asked. Not an exposure.
	StatusGranted Status = "granted"
)

// Exposed reports whether the status means the port is open without a
// reviewed, unexpired grant (to the Internet, or to a policy's allowed
// sources for good): what fails a CI gate.
func (s Status) Exposed() bool { return s != StatusGranted }

// Finding is one rule that lets a public source reach one port.
type Finding struct {
	NSGID    string `json:"nsg_id"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"` // always "Tcp"
	Status   Status `json:"status"`
	// Rule, Priority and RuleSources are the deciding Allow rule: its name,
	// priority and source entries as written on the NSG.
	Rule        string   `json:"rule"`
	Priority    int32    `json:"priority"`
	RuleSources []string `json:"rule_sources"`
	// ExampleSource is a public address the rule lets in (203.0.113.7 or
	// 2001:db8::7 when it does), checked with jit.Allowed; for standing
	// access, an allowed source of the policy the rule lets in, public or
	// not.
	ExampleSource string `json:"example_source"`
	// Destinations are the destinations reached, as the NSG's rules name
	// them; "*" stands for addresses no rule names.
	Destinations []string `json:"destinations"`
	// Policy is the JIT policy on this NSG protecting the port (for
	// bypassed and standing access findings) or owning the grant (for
	// grant findings).
	Policy string `json:"policy,omitempty"`
	// Requester and ExpiresAt describe a grant rule.
	Requester string     `json:"requester,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Detail explains bypasses and any assumption the scan made.
	Detail string `json:"detail,omitempty"`
}

// Protected is a scanned port that a JIT policy on the NSG keeps closed to
// the Internet: no public source reaches it except through grants.
type Protected struct {
	NSGID  string `json:"nsg_id"`
	Port   uint16 `json:"port"`
	Policy string `json:"policy"`
}

// Result is what one NSG's rules say about the scanned ports.
type Result struct {
	Findings  []Finding
	Protected []Protected
}

// Options tune a scan.
type Options struct {
	Ports        []uint16     // default DefaultPorts
	Destinations []netip.Addr // judged in addition to the addresses the rules name
	Now          time.Time    // when grants are judged expired
	// AdminRules are the Virtual Network Manager security admin rules in
	// effect for the NSG's virtual networks. They are judged before the
	// NSG's rules, as Azure does: AlwaysAllow lets in and Deny keeps out
	// whatever the NSG says, Allow leaves the decision to the NSG. Their
	// findings name them "admin:<name>".
	AdminRules []jit.AdminRule
}

// adminAsRules turns the admin rules that decide (AlwaysAllow, Deny) into
// inbound rules evaluated before every NSG rule, in the admin rules' own
// order, so that the exact sweep judges them as Azure does. Allow admin
// rules defer to the NSG and are left out.
func adminAsRules(admin []jit.AdminRule) []jit.SecurityRule {
	var out []jit.SecurityRule
	for _, a := range admin {
		access := jit.Allow
		switch {
		case strings.EqualFold(a.Access, jit.AdminAlwaysAllow):
		case strings.EqualFold(a.Access, jit.AdminDeny):
			access = jit.Deny
		default:
			continue
		}
		protocol := a.Protocol
		if strings.EqualFold(string(protocol), "Any") || protocol == "" {
			protocol = jit.ProtocolAny
		}
		orAny := func(s []string) []string {
			if len(s) == 0 {
				return []string{jit.Any}
			}
			return s
		}
		out = append(out, jit.SecurityRule{Name: "admin:" + a.Name, Priority: a.Priority - adminPriorityShift,
			Direction: a.Direction, Access: access, Protocol: protocol,
			SourcePrefixes: orAny(a.Sources), SourcePorts: orAny(a.SourcePorts),
			DestinationPrefixes: orAny(a.Destinations), DestinationPorts: orAny(a.DestinationPorts),
			Description: "Virtual Network Manager security admin rule " + a.Access})
	}
	return out
}

// adminPriorityShift puts admin rules (priorities 1–4096) before every NSG
// rule (100 and up) while keeping their order.
const adminPriorityShift = 5000

// Representative addresses. 203.0.113.7 and 2001:db8::7 are documentation
// addresses that Azure's Internet tag (and jit.Allowed) count as public.
var (
	exampleSource = map[int]netip.Addr{
		jit.IPv4: netip.MustParseAddr("203.0.113.7"),
		jit.IPv6: netip.MustParseAddr("2001:db8::7"),
	}
	anyDestination = map[int]netip.Addr{
		jit.IPv4: netip.MustParseAddr("10.0.0.4"),
		jit.IPv6: netip.MustParseAddr("fd00::4"),
	}
)

// The address sets behind the service tags, as jit.Allowed resolves them
// (a test keeps the two in step).
var (
	virtualNetwork = mustPrefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "168.63.129.16/32")
	notRouted      = mustPrefixes("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3",
		"::/128", "::1/128", "fe80::/10", "ff00::/8")
	azureLoadBalancer = mustPrefixes("168.63.129.16/32")
	// public is, per family, every address the Internet tag covers.
	public = map[int][]netip.Prefix{
		jit.IPv4: jit.Complement(slices.Concat(virtualNetwork, notRouted), jit.IPv4),
		jit.IPv6: jit.Complement(slices.Concat(virtualNetwork, notRouted), jit.IPv6),
	}
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// IsPublic reports whether a is a public address, one the Internet service
// tag covers.
func IsPublic(a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(public[family(a)], func(p netip.Prefix) bool { return p.Contains(a) })
}

func family(a netip.Addr) int {
	if a.Is4() {
		return jit.IPv4
	}
	return jit.IPv6
}

// destination is one destination the sweep judges: an address and how the
// findings name it.
type destination struct {
	addr  netip.Addr
	label string
}

// NSG judges one NSG's rules (its custom rules, as ListRules returns them;
// Azure's default rules are implied).
//
// Besides exposures to the Internet, it reports standing access: for each
// intact JIT policy protecting a scanned port, the rules (found by
// jit.Policy.StandingAccess, and confirmed by the same exact sweep, over
// the policy's allowed sources instead of the public ones) that let an
// allowed source reach one of the policy's destinations with no grant.
// Grant rules are never standing access.
func NSG(nsgID string, rules []jit.SecurityRule, o Options) Result {
	rules = append(adminAsRules(o.AdminRules), rules...)
	ports := o.Ports
	if len(ports) == 0 {
		ports = DefaultPorts
	}
	view := jit.ReadNSG(rules)
	grants := map[string]jit.GrantRule{}
	for _, g := range view.Grants {
		grants[strings.ToLower(g.Rule.Name)] = g
	}
	var nonGrants []jit.SecurityRule
	for _, r := range rules {
		if _, isGrant := grants[strings.ToLower(r.Name)]; !isGrant {
			nonGrants = append(nonGrants, r)
		}
	}
	var res Result
	for _, port := range ports {
		covering := coveringRules(rules, port)
		standing := standingRules(view, nonGrants, port)
		byRule := map[string]int{} // finding index by rule, status and policy
		for _, d := range destinations(covering, o.Destinations) {
			for _, e := range sweep(covering, d, public[family(d.addr)]) {
				f := Finding{
					NSGID: nsgID, Port: port, Protocol: string(jit.ProtocolTCP), Status: StatusExposed,
					Rule: e.rule.Name, Priority: e.rule.Priority, RuleSources: e.rule.SourcePrefixes,
					ExampleSource: e.source.String(), Destinations: []string{d.label}, Detail: e.note,
				}
				if e.note == "" {
					f.Detail = confirm(rules, e.rule, e.source, d.addr, port)
				}
				classify(&f, e.rule, d.addr, view, grants, rules, standing, o.Now)
				// One finding per rule and verdict, listing every
				// destination it reaches with that verdict.
				key := strings.ToLower(e.rule.Name) + "|" + string(f.Status) + "|" + f.Policy
				if i, ok := byRule[key]; ok {
					res.Findings[i].Destinations = appendUnique(res.Findings[i].Destinations, d.label)
					continue
				}
				byRule[key] = len(res.Findings)
				res.Findings = append(res.Findings, f)
			}
		}
		// Standing access from allowed sources that are not public (a VPN
		// pool in 10.8.0.0/16, say): the sweep above only follows public
		// sources.
		for _, name := range protectingPolicies(view, port) {
			p := view.Policies[name].Policy
			if len(standing[name]) == 0 {
				continue
			}
			for _, d := range destinations(covering, o.Destinations) {
				if !policyCovers(p, d.addr) {
					continue
				}
				for _, e := range sweep(covering, d, allowedSources(p, family(d.addr))) {
					b, ok := standing[name][strings.ToLower(e.rule.Name)]
					if !ok {
						continue
					}
					key := strings.ToLower(e.rule.Name) + "|" + string(StatusStandingAccess) + "|" + name
					if i, ok := byRule[key]; ok {
						res.Findings[i].Destinations = appendUnique(res.Findings[i].Destinations, d.label)
						continue
					}
					byRule[key] = len(res.Findings)
					res.Findings = append(res.Findings, Finding{
						NSGID: nsgID, Port: port, Protocol: string(jit.ProtocolTCP), Status: StatusStandingAccess,
						Rule: e.rule.Name, Priority: e.rule.Priority, RuleSources: e.rule.SourcePrefixes,
						ExampleSource: e.source.String(), Destinations: []string{d.label}, Policy: name,
						Detail: joinDetail(e.note, b.Reason),
					})
				}
			}
		}
		for _, name := range protectingPolicies(view, port) {
			if !slices.ContainsFunc(res.Findings, func(f Finding) bool { return f.Port == port && f.Status.Exposed() }) {
				res.Protected = append(res.Protected, Protected{NSGID: nsgID, Port: port, Policy: name})
			}
		}
	}
	return res
}

// coveringRules returns the inbound rules whose protocol and destination
// ports let TCP traffic to port through, by ascending priority.
func coveringRules(rules []jit.SecurityRule, port uint16) []jit.SecurityRule {
	var out []jit.SecurityRule
	for _, r := range rules {
		if !strings.EqualFold(string(r.Direction), string(jit.Inbound)) {
			continue
		}
		if r.Protocol != jit.ProtocolAny && !strings.EqualFold(string(r.Protocol), string(jit.ProtocolTCP)) {
			continue
		}
		if portsCover(r.DestinationPorts, port) {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b jit.SecurityRule) int { return cmp.Compare(a.Priority, b.Priority) })
	return out
}

// portsCover reports whether entries ("*", "22", "20-30") include port.
func portsCover(entries []string, port uint16) bool {
	for _, e := range entries {
		if e == "*" {
			return true
		}
		lo, hi, isRange := strings.Cut(e, "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(strings.TrimSpace(lo))
		b, errB := strconv.Atoi(strings.TrimSpace(hi))
		if errA == nil && errB == nil && a <= int(port) && int(port) <= b {
			return true
		}
	}
	return false
}

// destinations lists the destinations to judge: the extra ones, every
// specific address prefix the covering rules name (its first address), or,
// when they name none, a representative private address for every VM (and
// an IPv6 one when the rules use IPv6 at all).
func destinations(covering []jit.SecurityRule, extra []netip.Addr) []destination {
	var out []destination
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr, label string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, destination{a, label})
		}
	}
	for _, a := range extra {
		add(a.Unmap(), a.Unmap().String())
	}
	usesIPv6 := false
	named := false
	for _, r := range covering {
		for _, e := range r.DestinationPrefixes {
			if p, ok := parsePrefix(e); ok {
				named = true
				add(p.Addr(), e)
			}
		}
		for _, e := range r.SourcePrefixes {
			if p, ok := parsePrefix(e); ok && !p.Addr().Is4() {
				usesIPv6 = true
			}
		}
	}
	if !named {
		add(anyDestination[jit.IPv4], "*")
		if usesIPv6 {
			add(anyDestination[jit.IPv6], "*")
		}
	}
	return out
}

// parsePrefix reads an IP or CIDR entry of a rule, tolerating host bits as
// Azure's evaluation does. Anything else ("*", tags) is not a prefix.
func parsePrefix(s string) (netip.Prefix, bool) {
	if !strings.ContainsAny(s, ".:") {
		return netip.Prefix{}, false
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// exposure is one Allow rule that is the first match for some public
// source, with such a source.
type exposure struct {
	rule   jit.SecurityRule
	source netip.Addr
	note   string // set when the scan assumed the worst
}

// addressSet is what a rule's entries mean for one address family: known
// prefixes, and the names of entries the evaluator cannot resolve.
type addressSet struct {
	prefixes []netip.Prefix
	unknown  []string
}

// resolve turns rule entries into addresses of family f.
func resolve(entries []string, f int) addressSet {
	var s addressSet
	for _, e := range entries {
		switch {
		case e == "*":
			s.prefixes = append(s.prefixes, jit.Complement(nil, f)...)
		case strings.EqualFold(e, "Internet"):
			s.prefixes = append(s.prefixes, public[f]...)
		case strings.EqualFold(e, "VirtualNetwork"):
			s.prefixes = append(s.prefixes, virtualNetwork...)
		case strings.EqualFold(e, "AzureLoadBalancer"):
			s.prefixes = append(s.prefixes, azureLoadBalancer...)
		default:
			if p, ok := parsePrefix(e); ok {
				s.prefixes = append(s.prefixes, p)
			} else {
				s.unknown = append(s.unknown, e)
			}
		}
	}
	s.prefixes = jit.Cover(s.prefixes, f)
	return s
}

func (s addressSet) contains(a netip.Addr) bool {
	return slices.ContainsFunc(s.prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

// sweep walks the covering rules in priority order for one destination,
// keeping the sources (of from, minimal prefixes of d's family) no earlier
// rule matched, and returns the Allow rules that are the first match for
// some of them.
func sweep(covering []jit.SecurityRule, d destination, from []netip.Prefix) []exposure {
	f := family(d.addr)
	remaining := from
	var out []exposure
	for _, r := range covering {
		if len(remaining) == 0 {
			break
		}
		allow := strings.EqualFold(string(r.Access), string(jit.Allow))
		dst := resolve(r.DestinationPrefixes, f)
		destNote := ""
		switch {
		case dst.contains(d.addr):
		case allow && (len(dst.unknown) > 0 || r.UsesApplicationSecurityGroups):
			// The destination may be the VM: assume the worst.
			destNote = fmt.Sprintf("destination %s cannot be resolved from the rules; assumed to include the VM", strings.Join(destinationNames(r, dst), ", "))
		default:
			continue // a Deny the scan cannot place is ignored: worst case
		}
		src := resolve(r.SourcePrefixes, f)
		if r.UsesApplicationSecurityGroups && !allow {
			continue // jit.Allowed matches no such rule; nor does the scan
		}
		hit := intersect(remaining, src.prefixes)
		if allow {
			switch {
			case len(hit) > 0:
				out = append(out, exposure{rule: r, source: witness(hit, f), note: destNote})
			case len(src.unknown) > 0:
				note := fmt.Sprintf("source %s is a service tag the scan cannot resolve; it may include public addresses", strings.Join(src.unknown, ", "))
				if destNote != "" {
					note += "; " + destNote
				}
				out = append(out, exposure{rule: r, source: remaining[0].Addr(), note: note})
			}
		}
		remaining = subtract(remaining, src.prefixes, f)
	}
	return out
}

func destinationNames(r jit.SecurityRule, dst addressSet) []string {
	if len(dst.unknown) > 0 {
		return dst.unknown
	}
	if r.UsesApplicationSecurityGroups {
		return []string{"an application security group"}
	}
	return r.DestinationPrefixes
}

// witness picks a public source from hit: the documentation example when
// it is there, else the first address of the first prefix.
func witness(hit []netip.Prefix, f int) netip.Addr {
	ex := exampleSource[f]
	for _, p := range hit {
		if p.Contains(ex) {
			return ex
		}
	}
	return hit[0].Addr()
}

// intersect returns the addresses in both minimal prefix lists of one
// family. Prefixes either nest or are disjoint, so the intersection is the
// smaller of each overlapping pair.
func intersect(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range a {
		for _, y := range b {
			if !x.Overlaps(y) {
				continue
			}
			if x.Bits() >= y.Bits() {
				out = append(out, x)
			} else {
				out = append(out, y)
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return jit.Cover(out, family(out[0].Addr()))
}

// subtract returns the addresses of a not in b, for family f.
func subtract(a, b []netip.Prefix, f int) []netip.Prefix {
	if len(b) == 0 {
		return a
	}
	return intersect(a, jit.Complement(b, f))
}

// confirm checks an exposure with jit.Allowed, the evaluator the provider
// and the daemon share; it returns a note when the two disagree (which
// would be a bug in one of them).
func confirm(rules []jit.SecurityRule, r jit.SecurityRule, src, dst netip.Addr, port uint16) string {
	ok, decider := jit.Allowed([][]jit.SecurityRule{rules}, jit.Flow{Protocol: jit.ProtocolTCP, Source: src, Destination: dst, Port: port})
	if ok && decider != nil && strings.EqualFold(decider.Name, r.Name) {
		return ""
	}
	name := "no rule"
	if decider != nil {
		name = fmt.Sprintf("rule %q", decider.Name)
	}
	return fmt.Sprintf("flow evaluation decides %s → %s:%d by %s (allowed=%t); reported as a possible exposure", src, dst, port, name, ok)
}

// classify sets the status of a finding: a JIT grant, a bypass of a JIT
// policy protecting the port and destination, standing access of its
// allowed sources (a public allowed range), or a plain exposure.
func classify(f *Finding, r jit.SecurityRule, dst netip.Addr, view jit.NSGView, grants map[string]jit.GrantRule, rules []jit.SecurityRule,
	standing map[string]map[string]jit.Bypass, now time.Time) {
	if g, ok := grants[strings.ToLower(r.Name)]; ok {
		exp := g.ExpiresAt.UTC()
		f.Policy, f.Requester, f.ExpiresAt = g.Policy, g.Requester, &exp
		f.Status = StatusGranted
		if now.Before(g.ExpiresAt) {
			f.Detail = joinDetail(f.Detail, fmt.Sprintf("grant for %s until %s", g.Requester, exp.Format(time.RFC3339)))
		} else {
			f.Status = StatusExpiredGrant
			f.Detail = joinDetail(f.Detail, fmt.Sprintf("grant expired at %s and is still open: jitd closes expired grants", exp.Format(time.RFC3339)))
		}
		return
	}
	for _, name := range protectingPolicies(view, f.Port) {
		p := view.Policies[name].Policy
		if !policyCovers(p, dst) {
			continue
		}
		f.Status, f.Policy = StatusBypassed, name
		if b, ok := standing[name][strings.ToLower(r.Name)]; ok {
			f.Status = StatusStandingAccess
			f.Detail = joinDetail(f.Detail, b.Reason)
			return
		}
		for _, b := range p.Bypasses(rules) {
			if strings.EqualFold(b.Rule.Name, r.Name) && b.Port.Number == f.Port {
				f.Detail = joinDetail(f.Detail, b.Reason)
				return
			}
		}
		f.Detail = joinDetail(f.Detail, fmt.Sprintf("rule %q (priority %d) lets the Internet reach %d/Tcp ahead of policy %q's rules", r.Name, r.Priority, f.Port, name))
		return
	}
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// standingRules returns, by policy and lower-case rule name, the standing
// access the intact policies protecting port report for it among rules.
func standingRules(view jit.NSGView, rules []jit.SecurityRule, port uint16) map[string]map[string]jit.Bypass {
	out := map[string]map[string]jit.Bypass{}
	for _, name := range protectingPolicies(view, port) {
		for _, b := range view.Policies[name].Policy.StandingAccess(rules) {
			if b.Port.Number != port || (b.Port.Protocol != jit.ProtocolTCP && b.Port.Protocol != jit.ProtocolAny) {
				continue
			}
			if out[name] == nil {
				out[name] = map[string]jit.Bypass{}
			}
			out[name][strings.ToLower(b.Rule.Name)] = b
		}
	}
	return out
}

// allowedSources returns a policy's allowed sources of family f as minimal
// prefixes.
func allowedSources(p jit.Policy, f int) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.AllowedSources {
		if s == jit.Any {
			return jit.Complement(nil, f)
		}
		if pf, ok := parsePrefix(s); ok && family(pf.Addr()) == f {
			out = append(out, pf)
		}
	}
	return jit.Cover(out, f)
}

// protectingPolicies returns, sorted, the intact policies on the NSG that
// protect port over TCP.
func protectingPolicies(view jit.NSGView, port uint16) []string {
	var out []string
	for name, dp := range view.Policies {
		if dp.Problem != "" {
			continue
		}
		if slices.ContainsFunc(dp.Policy.Ports, func(p jit.Port) bool {
			return p.Number == port && (p.Protocol == jit.ProtocolTCP || p.Protocol == jit.ProtocolAny)
		}) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// policyCovers reports whether the policy's destinations include dst.
func policyCovers(p jit.Policy, dst netip.Addr) bool {
	for _, d := range p.DestinationPrefixes {
		if d == jit.Any {
			return true
		}
		if pf, ok := parsePrefix(d); ok && pf.Contains(dst) {
			return true
		}
	}
	return false
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
