package jit

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Limits a policy must respect. Priorities are Azure's; durations are the
// project's: shorter than five minutes is not worth a review, longer than a
// day is standing access under another name.
const (
	MinPriority    = 100
	MaxPriority    = 4096
	MinMaxDuration = 5 * time.Minute
	MaxMaxDuration = 24 * time.Hour
	MaxNameLength  = 40
)

// Attribute paths, as the provider names them, used in FieldError.Path.
const (
	pathName         = "name"
	pathPorts        = "ports"
	pathDestinations = "destination_address_prefixes"
	pathSources      = "allowed_source_address_prefixes"
	pathBand         = "priority_band"
	pathNSGs         = "network_security_group_ids"
)

// Band is the range of priorities [Start, End] a policy owns on each of its
// NSGs, both ends included.
type Band struct{ Start, End int32 }

// Contains reports whether priority lies inside the band.
func (b Band) Contains(priority int32) bool { return priority >= b.Start && priority <= b.End }

// Overlaps reports whether the two bands share at least one priority.
func (b Band) Overlaps(o Band) bool { return b.Start <= o.End && o.Start <= b.End }

// GrantRange is the part of the band left for grant rules, between the
// guard slots at the top and the deny-all slots at the bottom.
func (b Band) GrantRange() (lo, hi int32) { return b.Start + slotCount, b.End - slotCount }

// String formats the band as "100-199", as in descriptions and messages.
func (b Band) String() string { return fmt.Sprintf("%d-%d", b.Start, b.End) }

// Size is the number of priorities in the band.
func (b Band) Size() int32 { return b.End - b.Start + 1 }

// valid reports whether the band lies within Azure's priorities and is
// large enough for the fixed slots and at least one grant.
func (b Band) valid() bool {
	return b.Start >= MinPriority && b.End <= MaxPriority && b.Start < b.End && b.Size() >= MinBandSize
}

// Port is one port a policy protects, with the longest grant allowed on it.
type Port struct {
	Number      uint16        // 1–65535
	Protocol    Protocol      // ProtocolTCP, ProtocolUDP or ProtocolAny
	MaxDuration time.Duration // MinMaxDuration–MaxMaxDuration, whole seconds
}

// String formats the port as "22/Tcp".
func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

func comparePorts(a, b Port) int {
	if c := cmp.Compare(a.Number, b.Number); c != 0 {
		return c
	}
	return cmp.Compare(a.Protocol, b.Protocol)
}

// Policy is a validated, canonical JIT policy: what NewPolicy returns and
// what ReadNSG reads back from an NSG.
type Policy struct {
	Name string
	// DestinationPrefixes is ["*"] or IPs/CIDRs in canonical form: a single
	// address as a plain IP ("10.0.1.4", not /32), otherwise the CIDR;
	// sorted, IPv4 before IPv6.
	DestinationPrefixes []string
	// AllowedSources is ["*"] or IPs/CIDRs in the same canonical form, and
	// also minimal: adjacent and nested ranges are merged, because the NSG
	// stores their complement and reading it back yields the minimal set.
	// Sources covering every address family in use are ["*"].
	AllowedSources []string
	Ports          []Port // sorted by (Number, Protocol)
	Band           Band
	// EndSessions asks that live sessions end when access ends: the
	// policy's NSGs get flushConnection, so that Azure re-evaluates
	// established flows whenever their rules change, and the deletion of
	// a grant's rule cuts the sessions it admitted. Recorded in the
	// policy's descriptions (sessions=end), so jitd and other workspaces
	// know it is asked for.
	EndSessions bool
}

// Equal reports whether two policies mean the same. Both are brought to
// canonical form first, so a hand-built policy listing 10.0.0.0/25 and
// 10.0.0.128/25 equals one listing 10.0.0.0/24.
func (p Policy) Equal(o Policy) bool {
	if p.Name != o.Name || p.Band != o.Band || p.EndSessions != o.EndSessions || !slices.Equal(p.Ports, o.Ports) ||
		!slices.Equal(p.DestinationPrefixes, o.DestinationPrefixes) {
		return false
	}
	return slices.Equal(canonicalSources(p.AllowedSources, p.families()),
		canonicalSources(o.AllowedSources, o.families()))
}

// canonicalSources brings already-valid source strings to the minimal form
// NewPolicy produces. Entries that do not parse are kept as they are, so
// that they still compare unequal to anything valid.
func canonicalSources(sources []string, families []int) []string {
	if slices.Equal(sources, []string{Any}) {
		return sources
	}
	var prefixes []netip.Prefix
	var odd []string
	for _, s := range sources {
		p, err := parseAddressPrefix(s)
		if err != nil {
			odd = append(odd, s)
			continue
		}
		prefixes = append(prefixes, p)
	}
	return append(formatSources(prefixes, families), odd...)
}

// formatSources returns the minimal canonical source list: ["*"] when the
// prefixes cover every family in use.
func formatSources(prefixes []netip.Prefix, families []int) []string {
	whole := true
	var out []string
	for _, f := range []int{IPv4, IPv6} {
		cover := Cover(prefixes, f)
		if slices.Contains(families, f) && (len(cover) != 1 || cover[0].Bits() != 0) {
			whole = false
		}
		for _, c := range cover {
			out = append(out, formatPrefix(c))
		}
	}
	if whole {
		return []string{Any}
	}
	return out
}

// Any is the address prefix meaning every address of both families.
const Any = "*"

// anyDestination reports whether the policy protects every destination.
func (p Policy) anyDestination() bool {
	return len(p.DestinationPrefixes) == 1 && p.DestinationPrefixes[0] == Any
}

// anySource reports whether any source may ask for a grant.
func (p Policy) anySource() bool {
	return len(p.AllowedSources) == 1 && p.AllowedSources[0] == Any
}

// families returns the address families the policy's rules cover: both for
// destination "*", else those present among the destinations.
func (p Policy) families() []int {
	if p.anyDestination() {
		return []int{IPv4, IPv6}
	}
	var fs []int
	for _, d := range p.DestinationPrefixes {
		if pf, err := parseAddressPrefix(d); err == nil && !slices.Contains(fs, familyOf(pf.Addr())) {
			fs = append(fs, familyOf(pf.Addr()))
		}
	}
	slices.Sort(fs)
	return fs
}

// destinations returns the destination prefixes of one family, or ["*"].
func (p Policy) destinations(family int) []string {
	if p.anyDestination() {
		return []string{Any}
	}
	var out []string
	for _, d := range p.DestinationPrefixes {
		if pf, err := parseAddressPrefix(d); err == nil && familyOf(pf.Addr()) == family {
			out = append(out, d)
		}
	}
	return out
}

// allowedPrefixes returns the allowed sources of one family as prefixes;
// for a policy open to any source, the whole family.
func (p Policy) allowedPrefixes(family int) []netip.Prefix {
	if p.anySource() {
		return []netip.Prefix{wholeFamily(family)}
	}
	var out []netip.Prefix
	for _, s := range p.AllowedSources {
		if pf, err := parseAddressPrefix(s); err == nil && familyOf(pf.Addr()) == family {
			out = append(out, pf)
		}
	}
	return out
}

// FieldError is one invalid value. Path uses the provider's attribute names
// so the provider can point Terraform at the line: "name",
// "ports[1].max_duration", "allowed_source_address_prefixes[0]",
// "destination_address_prefixes[2]", "priority_band". Message names the
// value and the limit.
type FieldError struct{ Path, Message string }

func (e *FieldError) Error() string { return e.Path + ": " + e.Message }

// FieldErrors returns every *FieldError in err (as joined by errors.Join),
// in order. The provider turns each into an attribute diagnostic.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		// The walk visits every node of the tree, so each node is checked
		// on its own: errors.As would stop at the first *FieldError.
		if fe, ok := e.(*FieldError); ok { //nolint:errorlint // per-node check while walking the tree
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

// problems collects FieldErrors so that a user sees every mistake at once.
type problems []error

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, &FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// PortInput is one port as the user wrote it.
type PortInput struct {
	Number      int64
	Protocol    string // "Tcp", "Udp" or "*"
	MaxDuration string // Go duration syntax, e.g. "90m", "3h"
}

// PolicyInput is a policy as the user wrote it.
type PolicyInput struct {
	Name                string
	DestinationPrefixes []string
	AllowedSources      []string
	Ports               []PortInput
	BandStart, BandEnd  int64
	EndSessions         bool
}

var policyNamePattern = regexp.MustCompile(`^(?:[a-z]|[a-z][a-z0-9-]{0,38}[a-z0-9])$`)

// ValidPolicyName reports whether name may name a policy: 1–MaxNameLength
// lower-case letters, digits and single hyphens, starting with a letter and
// ending with a letter or digit.
func ValidPolicyName(name string) bool {
	return policyNamePattern.MatchString(name) && !strings.Contains(name, "--")
}

// NewPolicy validates user input and returns the policy in canonical form,
// or every problem found (errors.Join of *FieldError), not just the first.
//
// Durations are parsed with time.ParseDuration; CIDRs with host bits set are
// refused (Azure refuses them too) with the masked form as a hint; /32 and
// /128 become plain IPs; duplicate ports, a port listed for a protocol and
// for "*", and allowed sources that overlap each other are refused; "*"
// (or "Any") means any source; service tags are refused because a guard
// denies the complement of the allowed sources and a tag has none that an
// NSG could hold. Protocols must be spelled as Azure and the azurerm
// provider spell them ("Tcp", "Udp", "*"): "tcp" is refused with that hint
// rather than rewritten, since a rewritten value would show as a perpetual
// diff in the plan.
func NewPolicy(in PolicyInput) (Policy, error) {
	var errs problems
	p := Policy{Name: in.Name, EndSessions: in.EndSessions}

	if !ValidPolicyName(in.Name) {
		errs.add(pathName, "name %q is invalid: use 1–%d characters of lower-case letters, digits and single hyphens, starting with a letter and ending with a letter or digit", in.Name, MaxNameLength)
	}

	p.Band = validateBand(in.BandStart, in.BandEnd, &errs)
	p.Ports = validatePorts(in.Ports, &errs)

	dests, destAny := parsePrefixList(in.DestinationPrefixes, pathDestinations, "destination", &errs)
	sources, srcAny := parsePrefixList(in.AllowedSources, pathSources, "allowed source", &errs)

	switch {
	case destAny:
		p.DestinationPrefixes = []string{Any}
	default:
		for _, d := range dests {
			p.DestinationPrefixes = append(p.DestinationPrefixes, formatPrefix(d.prefix))
		}
	}
	families := p.families()

	if !srcAny && len(sources) > 0 && !destAny && len(dests) > 0 {
		checkFamilies(dests, sources, &errs)
	}
	if srcAny {
		p.AllowedSources = []string{Any}
	} else {
		prefixes := make([]netip.Prefix, len(sources))
		for i, s := range sources {
			prefixes[i] = s.prefix
		}
		p.AllowedSources = formatSources(prefixes, families)
	}

	if len(errs) == 0 {
		for _, g := range p.groups() {
			// A guard's description is the longer ("guard" against "deny").
			d := bandDescription(p.Band, g.ports, p.guardFamilies(), p.EndSessions)
			what := "deny-all rule"
			if len(d.Guards) > 0 {
				d.Role, what = RoleGuard, "guard rule"
			}
			if s := d.String(); len(s) > MaxDescriptionLength {
				errs.add(pathPorts, "the %s for %s ports would need a %d-character description, over Azure's limit of %d: use fewer distinct max_duration values for %s ports or split the policy", what, g.group.protocol(), len(s), MaxDescriptionLength, g.group.protocol())
			}
		}
	}
	if len(errs) > 0 {
		return Policy{}, errors.Join(errs...)
	}
	return p, nil
}

func validateBand(start, end int64, errs *problems) Band {
	ok := true
	if start < MinPriority || start > MaxPriority {
		errs.add(pathBand, "start %d is outside Azure's priorities %d–%d", start, MinPriority, MaxPriority)
		ok = false
	}
	if end < MinPriority || end > MaxPriority {
		errs.add(pathBand, "end %d is outside Azure's priorities %d–%d", end, MinPriority, MaxPriority)
		ok = false
	}
	if !ok {
		return Band{}
	}
	if start >= end {
		errs.add(pathBand, "start %d must be below end %d", start, end)
		return Band{}
	}
	if size := end - start + 1; size < MinBandSize {
		errs.add(pathBand, "band %d-%d has %d priorities; a band needs at least %d (%d guard slots, %d deny-all slots and one grant)", start, end, size, MinBandSize, slotCount, slotCount)
		return Band{}
	}
	return Band{Start: int32(start), End: int32(end)}
}

func validatePorts(in []PortInput, errs *problems) []Port {
	if len(in) == 0 {
		errs.add(pathPorts, "at least one port is required")
		return nil
	}
	var ports []Port
	type seenPort struct {
		key   Port // number and protocol; MaxDuration zero
		index int
	}
	var seen []seenPort
	for i, pi := range in {
		path := fmt.Sprintf("%s[%d]", pathPorts, i)
		ok := true
		if pi.Number < 1 || pi.Number > 65535 {
			errs.add(path+".port", "port %d is outside the range 1–65535", pi.Number)
			ok = false
		}
		proto, err := parsePortProtocol(pi.Protocol)
		if err != nil {
			errs.add(path+".protocol", "%s", err)
			ok = false
		}
		d, err := parseMaxDuration(pi.MaxDuration)
		if err != nil {
			errs.add(path+".max_duration", "%s", err)
			ok = false
		}
		if !ok {
			continue
		}
		key := Port{Number: uint16(pi.Number), Protocol: proto}
		for _, o := range seen {
			switch {
			case o.key == key:
				errs.add(path+".port", "port %s is already listed at ports[%d]; list each port and protocol once", key, o.index)
				ok = false
			case o.key.Number == key.Number && (o.key.Protocol == ProtocolAny || key.Protocol == ProtocolAny):
				// "*" covers Tcp and Udp on the same number: two rules
				// would claim the same traffic with different limits.
				errs.add(path+".port", "port %s overlaps port %s at ports[%d]: protocol * already covers Tcp and Udp; list the port once", key, o.key, o.index)
				ok = false
			}
			if !ok {
				break
			}
		}
		if !ok {
			continue
		}
		seen = append(seen, seenPort{key, i})
		key.MaxDuration = d
		ports = append(ports, key)
	}
	slices.SortFunc(ports, comparePorts)
	return ports
}

func parsePortProtocol(s string) (Protocol, error) {
	switch Protocol(s) {
	case ProtocolTCP, ProtocolUDP, ProtocolAny:
		return Protocol(s), nil
	}
	for _, p := range []Protocol{ProtocolTCP, ProtocolUDP} {
		if strings.EqualFold(s, string(p)) {
			// Refused rather than rewritten: a silently rewritten value
			// would show as a perpetual diff in the plan.
			return "", fmt.Errorf("protocol %q must be spelled %q, as Azure and the azurerm provider spell it", s, p)
		}
	}
	for _, p := range []Protocol{ProtocolICMP, ProtocolESP, ProtocolAH} {
		if strings.EqualFold(s, string(p)) {
			return "", fmt.Errorf("protocol %q has no ports; a policy protects Tcp, Udp or * ports", s)
		}
	}
	return "", fmt.Errorf("protocol %q is not one of Tcp, Udp, *", s)
}

func parseMaxDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("max_duration is required, between %s and %s (e.g. \"1h\")", FormatDuration(MinMaxDuration), FormatDuration(MaxMaxDuration))
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("max_duration %q is not a duration: use Go syntax such as \"90m\" or \"3h\" (units h, m, s)", s)
	case d < MinMaxDuration:
		return 0, fmt.Errorf("max_duration %q is below the minimum of %s", s, FormatDuration(MinMaxDuration))
	case d > MaxMaxDuration:
		return 0, fmt.Errorf("max_duration %q exceeds the maximum of %s", s, FormatDuration(MaxMaxDuration))
	case d%time.Second != 0:
		return 0, fmt.Errorf("max_duration %q must be a whole number of seconds", s)
	}
	return d, nil
}

// FormatDuration writes d in the minimal Go syntax used in descriptions:
// "3h", "90m" becomes "1h30m", "45s". Zero is "0s".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	h, m, s := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 {
		b.WriteString(s.String())
	}
	return b.String()
}

// listedPrefix is one parsed entry of a prefix list, with its index.
type listedPrefix struct {
	index  int
	prefix netip.Prefix
}

// parsePrefixList validates a list of destinations or allowed sources. It
// returns the parsed prefixes sorted canonically, or any=true for "*".
func parsePrefixList(in []string, path, what string, errs *problems) (out []listedPrefix, anyAddr bool) {
	if len(in) == 0 {
		errs.add(path, "at least one %s is required (IP addresses or CIDRs, or \"*\")", what)
		return nil, false
	}
	anyAt := -1
	for i, s := range in {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if s == Any || strings.EqualFold(s, "Any") {
			if anyAt >= 0 {
				errs.add(ip, "%q repeats %q at %s[%d]", s, in[anyAt], path, anyAt)
				continue
			}
			anyAt = i
			continue
		}
		p, err := parseAddressPrefix(s)
		if err != nil {
			errs.add(ip, "%s %s", what, describePrefixError(s, err, path))
			continue
		}
		for _, o := range out {
			if o.prefix.Overlaps(p) {
				verb := "overlaps"
				switch {
				case o.prefix == p:
					verb = "repeats"
				case o.prefix.Bits() < p.Bits():
					verb = "is inside"
				case o.prefix.Bits() > p.Bits():
					verb = "contains"
				}
				errs.add(ip, "%s %q %s %q at %s[%d]; list each address once", what, s, verb, in[o.index], path, o.index)
				p = netip.Prefix{}
				break
			}
		}
		if p.IsValid() {
			out = append(out, listedPrefix{i, p})
		}
	}
	if anyAt >= 0 && len(in) > 1 {
		errs.add(fmt.Sprintf("%s[%d]", path, anyAt), "%q already means every address; remove the other entries", in[anyAt])
		return nil, false
	}
	slices.SortFunc(out, func(a, b listedPrefix) int { return comparePrefixes(a.prefix, b.prefix) })
	return out, anyAt >= 0
}

// checkFamilies refuses destinations of a family no allowed source belongs
// to (nobody could ever be granted access to them) and allowed sources of a
// family no destination belongs to (they could never be used, and the NSG
// would have no rule to record them in).
func checkFamilies(dests, sources []listedPrefix, errs *problems) {
	has := func(list []listedPrefix, family int) bool {
		return slices.ContainsFunc(list, func(l listedPrefix) bool { return familyOf(l.prefix.Addr()) == family })
	}
	for _, d := range dests {
		if f := familyOf(d.prefix.Addr()); !has(sources, f) {
			errs.add(fmt.Sprintf("%s[%d]", pathDestinations, d.index), "destination %s is IPv%d but no allowed source is IPv%d, so nobody could ever be granted access to it", formatPrefix(d.prefix), f, f)
		}
	}
	for _, s := range sources {
		if f := familyOf(s.prefix.Addr()); !has(dests, f) {
			errs.add(fmt.Sprintf("%s[%d]", pathSources, s.index), "allowed source %s is IPv%d but no destination is IPv%d, so it could never be used", formatPrefix(s.prefix), f, f)
		}
	}
}

var (
	errZone      = errors.New("has a zone; NSG rules take no zones")
	errNotPrefix = errors.New("is not an IP address or CIDR")
)

type mappedError struct{ p netip.Prefix }

func (e *mappedError) Error() string {
	return fmt.Sprintf("is an IPv4-mapped IPv6 address; write it as IPv4 (%s)", unmap(e.p))
}

func unmap(p netip.Prefix) string {
	bits := p.Bits() - 96
	if bits < 0 {
		return "a CIDR of the IPv4 range it means"
	}
	return formatPrefix(netip.PrefixFrom(p.Addr().Unmap(), bits))
}

type hostBitsError struct{ p netip.Prefix }

func (e *hostBitsError) Error() string {
	return fmt.Sprintf("has host bits set (Azure refuses it): did you mean %q?", e.p.Masked().String())
}

// serviceTagPattern matches names that look like Azure service tags
// ("Internet", "Storage.WestEurope") rather than mistyped addresses.
var serviceTagPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)?$`)

func describePrefixError(s string, err error, path string) string {
	if errors.Is(err, errNotPrefix) && serviceTagPattern.MatchString(s) {
		if path == pathSources {
			return fmt.Sprintf("%q is a service tag, not an IP address or CIDR: tags are refused because a guard rule must deny every source outside the list, and an NSG cannot express \"everything but a tag\"; list the prefixes you mean", s)
		}
		return fmt.Sprintf("%q is a service tag, not an IP address or CIDR: list the VMs' addresses (or \"*\"), because deny rules are written per address family and a tag has none", s)
	}
	return fmt.Sprintf("%q %s", s, err)
}
