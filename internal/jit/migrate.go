package jit

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file maps Microsoft Defender for Cloud JIT policies to jit policies
// (jitd migrate defender). It is pure: the caller reads Defender, the VMs'
// network interfaces and the NSGs' rules, and writes what is returned.
//
// One jit policy is made per Defender VM and set of allowed sources (a jit
// policy has one source list; Defender has one per port), protecting the
// VM's private addresses on every NSG of its path (each NIC's NSG and each
// NIC subnet's NSG), with the ports' protocols and maximum durations. Its
// band is the first run of free priorities on all those NSGs after the last
// foreign rule that covers one of its ports, so such a rule keeps deciding
// as it did under Defender (which documents that existing rules win over
// its deny rules) and jit reports it as standing access.
//
// A Defender request still running is refused, not converted: a
// jit_access_grant's window starts at apply, so a converted request would
// outlive Defender's end time, and access must never grow in a migration.

// DefenderRulePrefix starts the name of every rule Defender for Cloud
// writes on an NSG for JIT access.
const DefenderRulePrefix = "SecurityCenter-JITRule"

// PreferredMigrationBand is the band size a migrated policy gets when the
// NSGs have room: room for 51 grants at once. Where they have less, the
// largest run down to MinBandSize is taken.
const PreferredMigrationBand = 64

// DefenderPolicy is a Defender JIT policy with its VMs resolved.
type DefenderPolicy struct {
	ID, Name string
	VMs      []DefenderVM
	Requests []DefenderRequest
}

// DefenderVM is one VM of a Defender policy and its network paths.
type DefenderVM struct {
	ID    string
	Ports []DefenderPort
	NICs  []DefenderNIC
}

// DefenderPort is one port rule of a Defender policy.
type DefenderPort struct {
	Number   int64
	Protocol string // "TCP", "UDP" or "*", as Defender spells them
	// Sources are the allowed source prefixes; empty means any.
	Sources     []string
	MaxDuration string // ISO 8601, e.g. "PT3H"
}

// DefenderNIC is a VM's network interface: its private addresses and the
// NSGs on its path (subnet NSGs first, then its own).
type DefenderNIC struct {
	ID        string
	Addresses []string
	NSGIDs    []string
}

// DefenderRequest is one port of a Defender request.
type DefenderRequest struct {
	VMID      string
	Port      int64
	Sources   []string
	End       time.Time
	Status    string // "Initiated" or "Revoked"
	Requestor string
}

// MigrationInput is what PlanMigration needs: the Defender policies, the
// rules of every NSG they touch (by NSG id, any case) and the time.
type MigrationInput struct {
	Policies []DefenderPolicy
	Rules    map[string][]SecurityRule
	Now      time.Time
}

// MigratedPolicy is one jit policy to write.
type MigratedPolicy struct {
	// Resource is the Terraform resource name, which is also the policy's
	// name.
	Resource string
	Policy   Policy
	NSGIDs   []string
	// Import is true when the policy already exists on every NSG: the
	// output imports it instead of creating it.
	Import bool
	VMID   string
	// DefenderPolicyID is the Defender policy the VM is taken from.
	DefenderPolicyID string
	// Paths are the VM's NICs, for flow checks.
	Paths []DefenderNIC
}

// Migration is the result of PlanMigration.
type Migration struct {
	Policies []MigratedPolicy
	// DefenderRules are the Defender rules on the NSGs now, by NSG id: what
	// the cutover's last step sweeps.
	DefenderRules map[string][]string
}

// MigrationError is one reason the migration cannot be written, naming what
// it is about (a VM, a port, an NSG, a request).
type MigrationError struct{ Subject, Message string }

func (e *MigrationError) Error() string { return e.Subject + ": " + e.Message }

// MigrationErrors returns the *MigrationError values joined in err.
func MigrationErrors(err error) []*MigrationError {
	var out []*MigrationError
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			var me *MigrationError
			if errors.As(e, &me) {
				out = append(out, me)
			}
		}
		return out
	}
	var me *MigrationError
	if errors.As(err, &me) {
		out = append(out, me)
	}
	return out
}

// PlanMigration maps the Defender policies to jit policies, or returns
// every reason it cannot (errors.Join of *MigrationError), in which case
// nothing should be written.
func PlanMigration(in MigrationInput) (Migration, error) {
	var errs []error
	bad := func(subject, format string, args ...any) {
		errs = append(errs, &MigrationError{Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	rules := map[string][]SecurityRule{}
	for id, rs := range in.Rules {
		rules[strings.ToLower(id)] = rs
	}
	m := Migration{DefenderRules: map[string][]string{}}
	for id, rs := range in.Rules {
		for _, r := range rs {
			if strings.HasPrefix(r.Name, DefenderRulePrefix) {
				m.DefenderRules[id] = append(m.DefenderRules[id], r.Name)
			}
		}
	}

	for _, dp := range in.Policies {
		for _, rq := range dp.Requests {
			if rq.Status != "Revoked" && rq.End.After(in.Now) {
				bad("Defender request on "+lastSegment(rq.VMID)+" port "+strconv.FormatInt(rq.Port, 10),
					"from %s by %s is active until %s: wait until it ends (or revoke it) and run again; a running request is not turned into a jit_access_grant, whose window would start at apply and outlast Defender's",
					strings.Join(orAny(rq.Sources), ","), orUnknown(rq.Requestor), rq.End.UTC().Format(time.RFC3339))
			}
		}
	}

	used := map[string]bool{}
	// reserved are the bands planned so far, by NSG id (lower case).
	reserved := map[string][]Band{}
	for _, dp := range in.Policies {
		for _, vm := range dp.VMs {
			vmName := lastSegment(vm.ID)
			subject := "VM " + vmName
			if len(vm.NICs) == 0 {
				bad(subject, "has no network interfaces in Azure's answer; a jit policy needs the VM's NSGs and private addresses")
				continue
			}
			var nsgs, dests []string
			for _, nic := range vm.NICs {
				for _, id := range nic.NSGIDs {
					if !slices.ContainsFunc(nsgs, func(s string) bool { return strings.EqualFold(s, id) }) {
						nsgs = append(nsgs, id)
					}
				}
				dests = append(dests, nic.Addresses...)
			}
			if len(nsgs) == 0 {
				bad(subject, "has no network security group on its network interfaces or their subnets; associate one before migrating (Defender cannot have closed its ports either)")
				continue
			}
			if len(dests) == 0 {
				bad(subject, "has no private IP address yet")
				continue
			}
			missing := false
			for _, id := range nsgs {
				if _, ok := rules[strings.ToLower(id)]; !ok {
					bad(subject, "the rules of network security group %s could not be read", id)
					missing = true
				}
			}
			if missing {
				continue
			}
			groups := groupPortsBySources(vm.Ports)
			for gi, g := range groups {
				name := migrationName(vmName, dp.Name, gi, used)
				used[name] = true
				var inputs []PortInput
				portsOK := true
				for _, port := range g.ports {
					psubject := fmt.Sprintf("VM %s port %d", vmName, port.Number)
					proto, ok := map[string]string{"TCP": "Tcp", "UDP": "Udp", "*": "*"}[strings.ToUpper(port.Protocol)]
					if !ok {
						bad(psubject, "protocol %q cannot be expressed by a jit_policy (Tcp, Udp or *)", port.Protocol)
						portsOK = false
						continue
					}
					d, ok := parseISODuration(port.MaxDuration)
					if !ok {
						bad(psubject, "maxRequestAccessDuration %q is not an ISO 8601 duration such as PT3H", port.MaxDuration)
						portsOK = false
						continue
					}
					inputs = append(inputs, PortInput{Number: port.Number, Protocol: proto, MaxDuration: d.String()})
				}
				if !portsOK {
					continue
				}
				floor := lastCoveringRule(nsgs, rules, g.ports) + 1
				band, existing, ok := chooseBand(name, nsgs, rules, reserved, floor)
				if !ok {
					bad(subject, "no run of %d free priorities (a jit band) after priority %d on all of %s: free some priorities, or move rules, and run again", MinBandSize, floor-1, strings.Join(nsgs, ", "))
					continue
				}
				p, err := NewPolicy(PolicyInput{
					Name: name, DestinationPrefixes: dests, AllowedSources: orAny(g.sources),
					Ports: inputs, BandStart: int64(band.Start), BandEnd: int64(band.End),
				})
				if err != nil {
					for _, fe := range FieldErrors(err) {
						bad(subject, "cannot be expressed by a jit_policy: %s", fe.Message)
					}
					continue
				}
				if n := len(p.Rules()); n > 0 && tooManyPrefixes(p) {
					bad(subject, "its allowed sources need more address prefixes than an NSG rule holds; list fewer, larger prefixes")
					continue
				}
				for _, id := range nsgs {
					reserved[strings.ToLower(id)] = append(reserved[strings.ToLower(id)], band)
				}
				m.Policies = append(m.Policies, MigratedPolicy{
					Resource: name, Policy: p, NSGIDs: nsgs, Import: existing, VMID: vm.ID, DefenderPolicyID: dp.ID, Paths: vm.NICs,
				})
			}
		}
	}
	if len(errs) > 0 {
		return Migration{}, errors.Join(errs...)
	}
	return m, nil
}

// maxRulePrefixes is Azure's limit of address prefixes in one rule's
// source (and per NSG, 4000).
const maxRulePrefixes = 4000

func tooManyPrefixes(p Policy) bool {
	for _, r := range p.Rules() {
		if len(r.SourcePrefixes) > maxRulePrefixes {
			return true
		}
	}
	return false
}

type portGroup2 struct {
	sources []string
	ports   []DefenderPort
}

// groupPortsBySources groups a VM's ports by their allowed sources, in the
// order they first appear.
func groupPortsBySources(ports []DefenderPort) []portGroup2 {
	var out []portGroup2
	for _, p := range ports {
		key := slices.Sorted(slices.Values(orAny(p.Sources)))
		i := slices.IndexFunc(out, func(g portGroup2) bool { return slices.Equal(g.sources, key) })
		if i < 0 {
			out = append(out, portGroup2{sources: key})
			i = len(out) - 1
		}
		out[i].ports = append(out[i].ports, p)
	}
	return out
}

var nameJunk = regexp.MustCompile(`[^a-z0-9]+`)

// migrationName is a jit policy name from the VM's and the Defender
// policy's names: lower case, hyphens, at most MaxNameLength characters,
// unique.
func migrationName(vm, policy string, group int, used map[string]bool) string {
	base := strings.Trim(nameJunk.ReplaceAllString(strings.ToLower(vm+"-"+policy), "-"), "-")
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "vm-" + base
	}
	for n := group + 1; ; n++ {
		suffix := ""
		if n > 1 {
			suffix = "-" + strconv.Itoa(n)
		}
		name := base
		if len(name)+len(suffix) > MaxNameLength {
			name = strings.TrimRight(name[:MaxNameLength-len(suffix)], "-")
		}
		name += suffix
		if !used[name] {
			return name
		}
	}
}

// lastCoveringRule is the highest priority number of a foreign inbound
// rule on any of the NSGs that covers one of the ports (0 when none):
// Defender let such rules win, so the band goes after them.
func lastCoveringRule(nsgs []string, rules map[string][]SecurityRule, ports []DefenderPort) int32 {
	var last int32
	for _, id := range nsgs {
		for _, r := range rules[strings.ToLower(id)] {
			if r.Direction != Inbound || strings.HasPrefix(r.Name, DefenderRulePrefix) || strings.HasPrefix(r.Name, RuleNamePrefix) {
				continue
			}
			for _, p := range ports {
				proto := map[string]Protocol{"TCP": ProtocolTCP, "UDP": ProtocolUDP}[strings.ToUpper(p.Protocol)]
				if proto == "" {
					proto = ProtocolAny
				}
				if protocolsMeet(r.Protocol, proto) && portsCover(r.DestinationPorts, uint16(p.Number)) && r.Priority > last {
					last = r.Priority
				}
			}
		}
	}
	return last
}

func protocolsMeet(a, b Protocol) bool {
	return a == ProtocolAny || b == ProtocolAny || strings.EqualFold(string(a), string(b))
}

// chooseBand returns the band of an existing policy of that name present
// on every NSG (existing=true), else the first run of free priorities from
// floor on that is free on every NSG and overlaps no band of another
// policy there, PreferredMigrationBand long when there is room, else as
// long as the run (at least MinBandSize).
func chooseBand(name string, nsgs []string, rules map[string][]SecurityRule, reserved map[string][]Band, floor int32) (Band, bool, bool) {
	var found *Band
	everywhere := true
	busy := map[int32]bool{}
	var bands []Band
	for _, id := range nsgs {
		rs := rules[strings.ToLower(id)]
		view := ReadNSG(rs)
		if dp, ok := view.Policies[name]; ok && dp.Problem == "" {
			b := dp.Policy.Band
			if found == nil {
				found = &b
			} else if *found != b {
				everywhere = false
			}
		} else {
			everywhere = false
		}
		for pname, dp := range view.Policies {
			if pname != name && dp.Problem == "" {
				bands = append(bands, dp.Policy.Band)
			}
		}
		bands = append(bands, reserved[strings.ToLower(id)]...)
		for _, r := range rs {
			if r.Direction == Inbound {
				busy[r.Priority] = true
			}
		}
	}
	if found != nil && everywhere {
		return *found, true, true
	}
	free := func(p int32) bool {
		if busy[p] {
			return false
		}
		return !slices.ContainsFunc(bands, func(b Band) bool { return b.Contains(p) })
	}
	start := max(floor, MinPriority)
	for start <= MaxPriority {
		if !free(start) {
			start++
			continue
		}
		end := start
		for end+1 <= MaxPriority && free(end+1) && end-start+1 < PreferredMigrationBand {
			end++
		}
		if end-start+1 >= MinBandSize {
			return Band{Start: start, End: end}, false, true
		}
		start = end + 1
	}
	return Band{}, false, false
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseISODuration parses the ISO 8601 durations Defender writes ("PT3H",
// "PT30M", "P1D").
func parseISODuration(s string) (time.Duration, bool) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, false
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil || n > 1000000 {
				return 0, false
			}
			d += time.Duration(n) * unit
		}
	}
	return d, true
}

func orAny(s []string) []string {
	if len(s) == 0 {
		return []string{Any}
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown requestor"
	}
	return s
}

func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// CutoverStep is one state of the NSGs during the cutover.
type CutoverStep int

// The cutover's states, in order.
const (
	StepNow         CutoverStep = iota // as read
	StepJitApplied                     // after terraform apply: jit and Defender rules
	StepDefenderOff                    // after the VMs leave Defender and its rules are swept
)

func (s CutoverStep) String() string {
	return [...]string{"now", "after terraform apply (jit policies beside Defender's rules)", "after the VMs leave the Defender policy and its rules are swept"}[s]
}

// CutoverProbe is one flow a cutover check judges: from an Internet address to a
// protected port of a VM's NIC.
type CutoverProbe struct {
	Resource string // the migrated policy
	VMID     string
	NIC      DefenderNIC
	Port     Port
	Protocol Protocol // Tcp or Udp (a * port is probed with both)
	Source   string
}

// String names the probe for messages.
func (p CutoverProbe) String() string {
	return fmt.Sprintf("%s → %s %s:%d/%s", p.Source, lastSegment(p.VMID), p.NIC.Addresses[0], p.Port.Number, p.Protocol)
}

// CutoverProbes are the flows that must stay denied at every step: for each
// migrated port and NIC, from an Internet address (InternetProbeSource)
// and from the first address of each allowed source prefix (allowed to
// ask, but not granted).
func (m Migration) CutoverProbes() []CutoverProbe {
	var out []CutoverProbe
	for _, mp := range m.Policies {
		sources := []string{InternetProbeSource}
		for _, s := range mp.Policy.AllowedSources {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				if a := p.Addr(); !slices.Contains(sources, a.String()) {
					sources = append(sources, a.String())
				}
			} else if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !slices.Contains(sources, s) {
				sources = append(sources, s)
			}
		}
		for _, nic := range mp.Paths {
			if len(nic.Addresses) == 0 {
				continue
			}
			for _, port := range mp.Policy.Ports {
				protos := []Protocol{port.Protocol}
				if port.Protocol == ProtocolAny {
					protos = []Protocol{ProtocolTCP, ProtocolUDP}
				}
				for _, proto := range protos {
					for _, src := range sources {
						out = append(out, CutoverProbe{Resource: mp.Resource, VMID: mp.VMID, NIC: nic, Port: port, Protocol: proto, Source: src})
					}
				}
			}
		}
	}
	return out
}

// InternetProbeSource is the Internet address cutover checks probe from
// (TEST-NET-2, which Azure treats as Internet).
const InternetProbeSource = "198.51.100.77"

// StepRules returns the rules of every NSG at a step of the cutover, from
// the rules as read: at StepJitApplied the migrated policies' rules are
// added where missing; at StepDefenderOff Defender's rules are gone too.
func (m Migration) StepRules(now map[string][]SecurityRule, step CutoverStep) map[string][]SecurityRule {
	out := map[string][]SecurityRule{}
	for id, rs := range now {
		out[strings.ToLower(id)] = slices.Clone(rs)
	}
	if step >= StepJitApplied {
		for _, mp := range m.Policies {
			for _, id := range mp.NSGIDs {
				key := strings.ToLower(id)
				for _, r := range mp.Policy.Rules() {
					if !slices.ContainsFunc(out[key], func(x SecurityRule) bool { return strings.EqualFold(x.Name, r.Name) }) {
						out[key] = append(out[key], r)
					}
				}
			}
		}
	}
	if step >= StepDefenderOff {
		for id, rs := range out {
			out[id] = slices.DeleteFunc(rs, func(r SecurityRule) bool { return strings.HasPrefix(r.Name, DefenderRulePrefix) })
		}
	}
	return out
}

// CutoverResult is a probe's verdict at one step.
type CutoverResult struct {
	Step         CutoverStep
	CutoverProbe CutoverProbe
	Allowed      bool
	Rule         string // the deciding rule; "" when no NSG filters
}

// CheckCutover evaluates every probe at every step from the rules as read
// now, with the project's NSG evaluator, sorted by step.
func (m Migration) CheckCutover(now map[string][]SecurityRule) []CutoverResult {
	var out []CutoverResult
	for _, step := range []CutoverStep{StepNow, StepJitApplied, StepDefenderOff} {
		rules := m.StepRules(now, step)
		for _, pr := range m.CutoverProbes() {
			var path [][]SecurityRule
			for _, id := range pr.NIC.NSGIDs {
				path = append(path, rules[strings.ToLower(id)])
			}
			src, err1 := netip.ParseAddr(pr.Source)
			dst, err2 := netip.ParseAddr(pr.NIC.Addresses[0])
			if err1 != nil || err2 != nil {
				continue
			}
			ok, r := Allowed(path, Flow{Protocol: pr.Protocol, Source: src, Destination: dst, Port: pr.Port.Number})
			res := CutoverResult{Step: step, CutoverProbe: pr, Allowed: ok}
			if r != nil {
				res.Rule = r.Name
			}
			out = append(out, res)
		}
	}
	slices.SortStableFunc(out, func(a, b CutoverResult) int { return cmp.Compare(a.Step, b.Step) })
	return out
}
