package jit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MinGrantDuration is the shortest grant: anything shorter would expire
// before the rule has been written and the user has connected.
const MinGrantDuration = time.Minute

// Attribute paths of a grant request, as the provider names them.
const (
	pathGrantPorts    = "ports"
	pathGrantProtocol = "protocol"
	pathGrantSource   = "source_address_prefix"
	pathGrantDuration = "duration"
	pathGrantPolicy   = "policy_id"
)

// GrantInput is a grant request as the user wrote it.
type GrantInput struct {
	Ports     []int64
	Protocol  string // "Tcp" (default), "Udp" or "*"
	Source    string // an IP address or CIDR
	Duration  string // Go duration syntax
	Requester string
}

// GrantSpec is a grant request checked against its policy: what the allow
// rule will say, without the time it is written at.
type GrantSpec struct {
	Ports     []uint16 // ascending
	Protocol  Protocol
	Source    netip.Prefix
	Duration  time.Duration
	Requester string
}

// SourceString is the source in the form written on the rule: a plain IP
// for a single address, else the CIDR.
func (g GrantSpec) SourceString() string { return formatPrefix(g.Source) }

// PortStrings is the granted ports as "22/Tcp", for audit events.
func (g GrantSpec) PortStrings() []string {
	out := make([]string, len(g.Ports))
	for i, p := range g.Ports {
		out[i] = fmt.Sprintf("%d/%s", p, g.Protocol)
	}
	return out
}

// CheckGrant validates a grant request against the policy as it is written
// on the NSG, and reports every problem at once (errors.Join of
// *FieldError): each port must be protected by the policy for the
// protocol, the source must lie inside the policy's allowed sources (a
// source that means "anywhere" only when the policy allows any source), and
// the duration must be at least a minute and at most the policy's maximum
// for every requested port.
func (p Policy) CheckGrant(in GrantInput) (GrantSpec, error) {
	var errs problems
	var g GrantSpec

	proto := in.Protocol
	if proto == "" {
		proto = string(ProtocolTCP)
	}
	switch Protocol(proto) {
	case ProtocolTCP, ProtocolUDP, ProtocolAny:
		g.Protocol = Protocol(proto)
	default:
		errs.add(pathGrantProtocol, "protocol %q is not one of Tcp, Udp, *", proto)
	}

	if len(in.Ports) == 0 {
		errs.add(pathGrantPorts, "at least one port is required")
	}
	maxAllowed := MaxMaxDuration
	var limiting *Port
	for i, n := range in.Ports {
		path := fmt.Sprintf("%s[%d]", pathGrantPorts, i)
		if n < 1 || n > 65535 {
			errs.add(path, "port %d is outside the range 1–65535", n)
			continue
		}
		if slices.Contains(g.Ports, uint16(n)) {
			errs.add(path, "port %d is listed twice", n)
			continue
		}
		g.Ports = append(g.Ports, uint16(n))
		if g.Protocol == "" {
			continue
		}
		port, ok := p.protectedPort(uint16(n), g.Protocol)
		if !ok {
			errs.add(path, "port %d/%s is not protected by policy %q (it protects %s)", n, g.Protocol, p.Name, p.portList())
			continue
		}
		if port.MaxDuration < maxAllowed {
			maxAllowed = port.MaxDuration
			limiting = &port
		}
	}
	slices.Sort(g.Ports)

	g.Source = p.checkGrantSource(in.Source, &errs)

	d, err := time.ParseDuration(in.Duration)
	switch {
	case err != nil:
		errs.add(pathGrantDuration, "duration %q is not a duration such as 30m or 2h", in.Duration)
	case d < MinGrantDuration:
		errs.add(pathGrantDuration, "duration %s is shorter than the minimum of %s", in.Duration, FormatDuration(MinGrantDuration))
	case d%time.Second != 0:
		errs.add(pathGrantDuration, "duration %s is not a whole number of seconds", in.Duration)
	case limiting != nil && d > maxAllowed:
		errs.add(pathGrantDuration, "duration %s exceeds policy %q maximum of %s for port %d", in.Duration, p.Name,
			FormatDuration(maxAllowed), limiting.Number)
	default:
		g.Duration = d
	}

	g.Requester = in.Requester
	if strings.TrimSpace(in.Requester) == "" {
		errs.add("requester", "requester is required: who asks for access")
	}
	if len(errs) > 0 {
		return GrantSpec{}, errors.Join(errs...)
	}
	return g, nil
}

func (p Policy) checkGrantSource(s string, errs *problems) netip.Prefix {
	switch strings.ToLower(s) {
	case "*", "any", "internet", "0.0.0.0/0", "::/0":
		if !p.anySource() {
			errs.add(pathGrantSource, "source %q means anywhere, but policy %q only allows %s", s, p.Name, strings.Join(p.AllowedSources, ", "))
			return netip.Prefix{}
		}
		if strings.EqualFold(s, "internet") || strings.EqualFold(s, "any") {
			errs.add(pathGrantSource, "source %q is a service tag: give an IP address or CIDR (\"0.0.0.0/0\" for every IPv4 source)", s)
			return netip.Prefix{}
		}
	}
	if s == Any {
		errs.add(pathGrantSource, "source \"*\" is not an address: give an IP address or CIDR (\"0.0.0.0/0\" for every IPv4 source)")
		return netip.Prefix{}
	}
	src, err := parseAddressPrefix(s)
	if err != nil {
		errs.add(pathGrantSource, "source %s", describePrefixError(s, err, pathGrantSource))
		return netip.Prefix{}
	}
	family := familyOf(src.Addr())
	if !slices.Contains(p.families(), family) {
		errs.add(pathGrantSource, "source %s is IPv%d, but policy %q protects only IPv%d destinations", s, family, p.Name, p.families()[0])
		return netip.Prefix{}
	}
	for _, allowed := range p.allowedPrefixes(family) {
		if allowed.Bits() <= src.Bits() && allowed.Contains(src.Addr()) {
			return src
		}
	}
	errs.add(pathGrantSource, "source %s is outside policy %q allowed sources %s", s, p.Name, strings.Join(p.AllowedSources, ", "))
	return netip.Prefix{}
}

// protectedPort finds the policy's port for number and protocol; a policy
// port with protocol "*" covers both.
func (p Policy) protectedPort(number uint16, proto Protocol) (Port, bool) {
	for _, port := range p.Ports {
		if port.Number == number && (port.Protocol == proto || port.Protocol == ProtocolAny) {
			return port, true
		}
	}
	return Port{}, false
}

func (p Policy) portList() string {
	parts := make([]string, len(p.Ports))
	for i, port := range p.Ports {
		parts[i] = port.String()
	}
	return strings.Join(parts, ", ")
}

// GrantRule is the allow rule a grant writes on each of the policy's NSGs,
// at the given priority inside the policy's grant range, sealed.
func (p Policy) GrantRule(id string, g GrantSpec, expiresAt time.Time, priority int32) SecurityRule {
	ports := make([]string, len(g.Ports))
	for i, n := range g.Ports {
		ports[i] = strconv.Itoa(int(n))
	}
	return SealGrantRule(SecurityRule{
		Name:                GrantRuleName(p.Name, id),
		Priority:            priority,
		Direction:           Inbound,
		Access:              Allow,
		Protocol:            g.Protocol,
		SourcePrefixes:      []string{g.SourceString()},
		SourcePorts:         []string{Any},
		DestinationPrefixes: p.destinations(familyOf(g.Source.Addr())),
		DestinationPorts:    ports,
		Description:         NewGrantDescription(id, expiresAt, g.Requester).String(),
	})
}

// FreeGrantPriority is the lowest priority of the policy's grant range that
// no inbound rule of the NSG uses, skipping the ones in taken (priorities
// this process is about to use). ok is false when the range is full.
func (p Policy) FreeGrantPriority(rules []SecurityRule, taken map[int32]bool) (priority int32, ok bool) {
	used := map[int32]bool{}
	for _, r := range rules {
		if r.Direction == Inbound || r.Direction == "" {
			used[r.Priority] = true
		}
	}
	lo, hi := p.Band.GrantRange()
	for prio := lo; prio <= hi; prio++ {
		if !used[prio] && !taken[prio] {
			return prio, true
		}
	}
	return 0, false
}
