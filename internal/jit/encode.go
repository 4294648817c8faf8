package jit

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of Azure's security rules that the encoding must respect.
const (
	MaxDescriptionLength = 140
	MaxRuleNameLength    = 80
)

// MinBandSize is the smallest band: six guard slots, six deny-all slots and
// room for one grant.
const MinBandSize = 2*slotCount + 1

// slotCount is the number of fixed slots at each end of a band: three
// protocol groups times two address families.
const slotCount = 6

// protoGroup is a policy's ports of one protocol value. Its order is the
// slot order.
type protoGroup int

const (
	groupTCP protoGroup = iota
	groupUDP
	groupAny
)

var allGroups = []protoGroup{groupTCP, groupUDP, groupAny}

func (g protoGroup) protocol() Protocol {
	return [...]Protocol{ProtocolTCP, ProtocolUDP, ProtocolAny}[g]
}

// label is how rule names spell the group.
func (g protoGroup) label() string { return [...]string{"tcp", "udp", "any"}[g] }

func groupOf(p Protocol) protoGroup {
	switch p {
	case ProtocolUDP:
		return groupUDP
	case ProtocolAny:
		return groupAny
	}
	return groupTCP
}

// slot is the fixed offset of a (group, family) pair from either end of the
// band: {tcp,v4}:0 {tcp,v6}:1 {udp,v4}:2 {udp,v6}:3 {any,v4}:4 {any,v6}:5.
// Fixed slots mean that adding or removing a protocol or family on update
// never moves a guard or deny-all rule into the grant range.
func slot(g protoGroup, family int) int32 {
	s := 2 * int32(g)
	if family == IPv6 {
		s++
	}
	return s
}

func guardPriority(b Band, g protoGroup, family int) int32 { return b.Start + slot(g, family) }
func denyPriority(b Band, g protoGroup, family int) int32  { return b.End - slot(g, family) }

// portGroup is the policy's ports of one protocol group, ascending.
type portGroup struct {
	group protoGroup
	ports []Port
}

// groups returns the policy's non-empty protocol groups in slot order.
func (p Policy) groups() []portGroup {
	var out []portGroup
	for _, g := range allGroups {
		var ports []Port
		for _, pt := range p.Ports {
			if groupOf(pt.Protocol) == g {
				ports = append(ports, pt)
			}
		}
		if len(ports) > 0 {
			out = append(out, portGroup{g, ports})
		}
	}
	return out
}

func (g portGroup) portStrings() []string {
	out := make([]string, len(g.ports))
	for i, p := range g.ports {
		out[i] = strconv.Itoa(int(p.Number))
	}
	return out
}

// Rules returns the policy's guard and deny-all rules, identical on every
// target NSG, sorted by priority. Grant rules are not included.
func (p Policy) Rules() []SecurityRule {
	var rules []SecurityRule
	families := p.families()
	for _, g := range p.groups() {
		ports := g.portStrings()
		desc := bandDescription(p.Band, g.ports, p.guardFamilies(), p.EndSessions)
		deny := desc.String()
		desc.Role = RoleGuard
		guard := desc.String()
		for _, f := range families {
			if !p.anySource() {
				if comp := Complement(p.allowedPrefixes(f), f); len(comp) > 0 {
					src := make([]string, len(comp))
					for i, c := range comp {
						src[i] = formatPrefix(c)
					}
					rules = append(rules, SecurityRule{
						Name:                guardName(p.Name, g.group, f),
						Priority:            guardPriority(p.Band, g.group, f),
						Direction:           Inbound,
						Access:              Deny,
						Protocol:            g.group.protocol(),
						SourcePrefixes:      src,
						SourcePorts:         []string{Any},
						DestinationPrefixes: p.destinations(f),
						DestinationPorts:    ports,
						Description:         guard,
					})
				}
			}
			// With destination "*", one deny-all rule covers both
			// families; it takes the IPv4 name and slot.
			if p.anyDestination() && f == IPv6 {
				continue
			}
			rules = append(rules, SecurityRule{
				Name:                denyName(p.Name, g.group, f),
				Priority:            denyPriority(p.Band, g.group, f),
				Direction:           Inbound,
				Access:              Deny,
				Protocol:            g.group.protocol(),
				SourcePrefixes:      []string{Any},
				SourcePorts:         []string{Any},
				DestinationPrefixes: p.destinations(f),
				DestinationPorts:    ports,
				Description:         deny,
			})
		}
	}
	slices.SortFunc(rules, func(a, b SecurityRule) int { return int(a.Priority - b.Priority) })
	return rules
}

// guardFamilies is the address families that get a guard rule: none when
// any source may ask, else those whose allowed sources leave some address
// of a protected family outside.
func (p Policy) guardFamilies() []int {
	if p.anySource() {
		return nil
	}
	var out []int
	for _, f := range p.families() {
		if len(Complement(p.allowedPrefixes(f), f)) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// GuardAndDenyNames returns the names of Rules(), in the same order.
func (p Policy) GuardAndDenyNames() []string {
	rules := p.Rules()
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.Name
	}
	return names
}

func familySuffix(family int) string {
	if family == IPv6 {
		return "-v6"
	}
	return ""
}

func guardName(policy string, g protoGroup, family int) string {
	return RuleNamePrefix + policy + "-guard-" + g.label() + familySuffix(family)
}

func denyName(policy string, g protoGroup, family int) string {
	return RuleNamePrefix + policy + "-deny-" + g.label() + familySuffix(family)
}

var grantIDPattern = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// ValidGrantID reports whether id may name a grant: 1–16 characters of
// lower-case letters and digits.
func ValidGrantID(id string) bool { return grantIDPattern.MatchString(id) }

// GrantRuleName is the name of a grant's rule: jit-<policy>-g-<id>.
func GrantRuleName(policy, id string) string { return RuleNamePrefix + policy + "-g-" + id }

// The anchored name patterns. A policy name may contain hyphens, so the
// role suffix is matched from the end; the policy name is validated
// separately.
var (
	bandRuleNamePattern  = regexp.MustCompile(`^jit-(.+)-(guard|deny)-(tcp|udp|any)(-v6)?$`)
	grantRuleNamePattern = regexp.MustCompile(`^jit-(.+)-g-([a-z0-9]{1,16})$`)
	endedRuleNamePattern = regexp.MustCompile(`^jit-(.+)-e-([a-z0-9]{1,16})$`)
)

// ruleName is a decoded JIT rule name.
type ruleName struct {
	policy  string
	role    Role // RoleGuard, RoleDeny, RoleGrant or RoleEnded
	group   protoGroup
	family  int
	grantID string
}

func parseRuleName(name string) (ruleName, bool) {
	if m := bandRuleNamePattern.FindStringSubmatch(name); m != nil {
		n := ruleName{policy: m[1], role: Role(m[2]), family: IPv4}
		n.group = protoGroup(slices.Index([]string{"tcp", "udp", "any"}, m[3]))
		if m[4] != "" {
			n.family = IPv6
		}
		return n, validPolicyName(n.policy)
	}
	if m := grantRuleNamePattern.FindStringSubmatch(name); m != nil {
		return ruleName{policy: m[1], role: RoleGrant, grantID: m[2]}, validPolicyName(m[1])
	}
	if m := endedRuleNamePattern.FindStringSubmatch(name); m != nil {
		return ruleName{policy: m[1], role: RoleEnded, grantID: m[2]}, validPolicyName(m[1])
	}
	return ruleName{}, false
}

func validPolicyName(s string) bool {
	return policyNamePattern.MatchString(s) && !strings.Contains(s, "--")
}

// Role is what a JIT rule does, as its description says.
type Role string

// Roles of JIT rules.
const (
	RoleGuard Role = "guard"
	RoleDeny  Role = "deny"
	RoleGrant Role = "grant"
	// RoleEnded is the record a grant leaves when it ends (see EndedRecord).
	RoleEnded Role = "ended"
)

// DescriptionVersion starts every description this project writes.
const DescriptionVersion = "jit:v1"

// PortDuration is a port's maximum grant duration in a deny-all
// description. Port 0 stands for every port of the rule.
type PortDuration struct {
	Port        uint16
	MaxDuration time.Duration
}

// Description is the parsed form of a JIT rule's description: what the
// rule's structure cannot carry. Its grammar (version 1):
//
//	deny:  jit:v1 role=deny band=<start>-<end> guard=<families> max=<duration>
//	       jit:v1 role=deny band=<start>-<end> guard=<families> max=<port>:<duration>,<port>:<duration>...
//	       ... sessions=end    (appended when the policy ends live sessions at expiry)
//	guard: the same as its protocol group's deny-all, with role=guard
//
// <families> is "v4", "v6", "v4,v6" or "none": the address families that
// have a guard rule. Without it, deleting a guard would read back as a
// policy that allows every source of that family; with it, a missing guard
// makes the policy malformed, and malformed fails closed.
//
// Guard and deny-all rules carry the same fields so that either one is
// enough to write the other back (PlanRestore): the guard alone holds the
// allowed sources, the descriptions the band, the guarded families and the
// maximum durations.
//
//	grant: jit:v1 role=grant id=<grant id> exp=<unix seconds> sum=<checksum> by=<requester>
//	ended: jit:v1 role=ended id=<grant id> exp=<unix seconds> by=<requester>
//
// A grant's sum seals the rule as it was written (see GrantSum): its name,
// source, ports, protocol, expiry and requester. A rule edited in place
// afterwards (a portal click on its source, a script that extends its
// expiry) no longer matches its sum, and whoever reads it first — jitd, the
// provider, a data source — sees a grant that is not the one reviewed.
//
// Durations are minimal Go syntax ("3h", "1h30m"); ports ascending; the
// requester is limited to [A-Za-z0-9._@+-]. ParseDescription accepts
// exactly what String produces, nothing else.
type Description struct {
	Role         Role
	Band         Band           // guard and deny
	Guards       []int          // guard and deny: the address families (IPv4, IPv6) that have a guard rule
	MaxDurations []PortDuration // guard and deny: a single entry with Port 0 when every port shares it
	EndSessions  bool           // guard and deny: the policy ends live sessions at expiry (sessions=end)
	GrantID      string         // grant and ended
	ExpiresAt    time.Time      // grant and ended, whole seconds
	Sum          string         // grant: the rule's seal (GrantSum)
	Requester    string         // grant and ended
}

// String formats the description. It does not check the length limit.
func (d Description) String() string {
	var b strings.Builder
	b.WriteString(DescriptionVersion + " role=" + string(d.Role))
	switch d.Role {
	case RoleGuard, RoleDeny:
		b.WriteString(" band=" + d.Band.String())
		b.WriteString(" guard=" + formatGuards(d.Guards))
		b.WriteString(" max=")
		for i, pd := range d.MaxDurations {
			if i > 0 {
				b.WriteByte(',')
			}
			if pd.Port != 0 {
				b.WriteString(strconv.Itoa(int(pd.Port)) + ":")
			}
			b.WriteString(FormatDuration(pd.MaxDuration))
		}
		if d.EndSessions {
			b.WriteString(" sessions=end")
		}
	case RoleGrant:
		fmt.Fprintf(&b, " id=%s exp=%d sum=%s by=%s", d.GrantID, d.ExpiresAt.Unix(), d.Sum, d.Requester)
	case RoleEnded:
		fmt.Fprintf(&b, " id=%s exp=%d by=%s", d.GrantID, d.ExpiresAt.Unix(), d.Requester)
	}
	return b.String()
}

// bandDescription is the deny-all description of one protocol group (its
// guards' differ only in role): the families that have guards, and one max
// when every port shares it, else one per port.
func bandDescription(b Band, ports []Port, guards []int, endSessions bool) Description {
	d := Description{Role: RoleDeny, Band: b, Guards: guards, EndSessions: endSessions}
	uniform := true
	for _, p := range ports[1:] {
		if p.MaxDuration != ports[0].MaxDuration {
			uniform = false
		}
	}
	if uniform {
		d.MaxDurations = []PortDuration{{0, ports[0].MaxDuration}}
		return d
	}
	for _, p := range ports {
		d.MaxDurations = append(d.MaxDurations, PortDuration{p.Number, p.MaxDuration})
	}
	return d
}

var requesterPattern = regexp.MustCompile(`^[A-Za-z0-9._@+-]*$`)

// NewGrantDescription builds a grant rule's description, unsealed (its Sum
// is a placeholder of the right length until SealGrantRule sets it). The
// requester is sanitised (characters outside [A-Za-z0-9._@+-] become "_")
// and truncated so that the description fits Azure's 140 characters. id
// must satisfy ValidGrantID.
func NewGrantDescription(id string, expiresAt time.Time, requester string) Description {
	d := Description{Role: RoleGrant, GrantID: id, ExpiresAt: time.Unix(expiresAt.Unix(), 0).UTC(),
		Sum: strings.Repeat("0", grantSumLength)}
	var b strings.Builder
	for _, r := range requester {
		if r < 0x80 && requesterPattern.MatchString(string(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	d.Requester = b.String()
	if over := len(d.String()) - MaxDescriptionLength; over > 0 {
		d.Requester = d.Requester[:max(0, len(d.Requester)-over)]
	}
	return d
}

// ParseDescription reads a JIT rule's description strictly: an unknown
// version, an unknown or missing key, a value out of range or any text
// that String would not have produced is an error, so that a tampered rule
// is never half-understood.
func ParseDescription(s string) (Description, error) {
	if len(s) > MaxDescriptionLength {
		return Description{}, fmt.Errorf("description is %d characters, over the limit of %d", len(s), MaxDescriptionLength)
	}
	fields := strings.Split(s, " ")
	switch {
	case fields[0] == DescriptionVersion:
	case strings.HasPrefix(fields[0], "jit:"):
		return Description{}, fmt.Errorf("description version %q is not supported (want %q)", fields[0], DescriptionVersion)
	default:
		return Description{}, fmt.Errorf("description does not start with %q", DescriptionVersion)
	}
	kv := map[string]string{}
	var keys []string
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return Description{}, fmt.Errorf("description field %q is not key=value", f)
		}
		if _, dup := kv[k]; dup {
			return Description{}, fmt.Errorf("description repeats key %q", k)
		}
		kv[k] = v
		keys = append(keys, k)
	}
	var d Description
	var want []string
	var err error
	switch d.Role = Role(kv["role"]); d.Role {
	case RoleGuard, RoleDeny:
		want = []string{"role", "band", "guard", "max"}
		if d.Band, err = parseBand(kv["band"]); err == nil {
			if d.Guards, err = parseGuards(kv["guard"]); err == nil {
				d.MaxDurations, err = parseMaxList(kv["max"])
			}
		}
		if v, ok := kv["sessions"]; ok {
			want = append(want, "sessions")
			if d.EndSessions = v == "end"; !d.EndSessions && err == nil {
				err = fmt.Errorf("sessions %q is not \"end\"", v)
			}
		}
	case RoleGrant:
		want = []string{"role", "id", "exp", "sum", "by"}
		err = parseGrantFields(&d, kv)
		if d.Sum = kv["sum"]; err == nil && !grantSumPattern.MatchString(d.Sum) {
			err = fmt.Errorf("grant sum %q is not %d lower-case letters and digits", d.Sum, grantSumLength)
		}
	case RoleEnded:
		want = []string{"role", "id", "exp", "by"}
		err = parseGrantFields(&d, kv)
	default:
		return Description{}, fmt.Errorf("description role %q is not one of guard, deny, grant, ended", kv["role"])
	}
	if !slices.Equal(keys, want) {
		return Description{}, fmt.Errorf("description keys %s, want %s", strings.Join(keys, ","), strings.Join(want, ","))
	}
	if err != nil {
		return Description{}, err
	}
	if d.String() != s {
		return Description{}, fmt.Errorf("description %q is not in canonical form (%q)", s, d.String())
	}
	return d, nil
}

func parseBand(s string) (Band, error) {
	a, b, ok := strings.Cut(s, "-")
	start, err1 := strconv.ParseInt(a, 10, 32)
	end, err2 := strconv.ParseInt(b, 10, 32)
	band := Band{int32(start), int32(end)}
	if !ok || err1 != nil || err2 != nil || !band.valid() {
		return Band{}, fmt.Errorf("band %q is not a band of at least %d priorities within %d-%d", s, MinBandSize, MinPriority, MaxPriority)
	}
	return band, nil
}

func formatGuards(families []int) string {
	if len(families) == 0 {
		return "none"
	}
	parts := make([]string, len(families))
	for i, f := range families {
		parts[i] = "v" + strconv.Itoa(f)
	}
	return strings.Join(parts, ",")
}

func parseGuards(s string) ([]int, error) {
	switch s {
	case "none":
		return nil, nil
	case "v4":
		return []int{IPv4}, nil
	case "v6":
		return []int{IPv6}, nil
	case "v4,v6":
		return []int{IPv4, IPv6}, nil
	}
	return nil, fmt.Errorf("guard families %q are not one of none, v4, v6, v4,v6", s)
}

func parseMaxList(s string) ([]PortDuration, error) {
	parseDur := func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinMaxDuration || d > MaxMaxDuration || d%time.Second != 0 {
			return 0, fmt.Errorf("max duration %q is not between %s and %s", v, FormatDuration(MinMaxDuration), FormatDuration(MaxMaxDuration))
		}
		return d, nil
	}
	if !strings.Contains(s, ":") {
		d, err := parseDur(s)
		return []PortDuration{{0, d}}, err
	}
	var out []PortDuration
	for _, item := range strings.Split(s, ",") {
		ps, ds, ok := strings.Cut(item, ":")
		port, err := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil || port == 0 {
			return nil, fmt.Errorf("max entry %q is not <port>:<duration>", item)
		}
		if n := len(out); n > 0 && out[n-1].Port >= uint16(port) {
			return nil, fmt.Errorf("max entries are not in ascending port order at %q", item)
		}
		d, err := parseDur(ds)
		if err != nil {
			return nil, err
		}
		out = append(out, PortDuration{uint16(port), d})
	}
	return out, nil
}

func parseGrantFields(d *Description, kv map[string]string) error {
	d.GrantID, d.Requester = kv["id"], kv["by"]
	if !ValidGrantID(d.GrantID) {
		return fmt.Errorf("grant id %q is not 1-16 lower-case letters and digits", d.GrantID)
	}
	exp, err := strconv.ParseInt(kv["exp"], 10, 64)
	if err != nil || exp <= 0 {
		return fmt.Errorf("grant expiry %q is not a positive unix time", kv["exp"])
	}
	d.ExpiresAt = time.Unix(exp, 0).UTC()
	if !requesterPattern.MatchString(d.Requester) {
		return fmt.Errorf("grant requester %q has characters outside [A-Za-z0-9._@+-]", d.Requester)
	}
	return nil
}

// canonicalPrefixSet formats the address entries of a rule for comparison:
// each address prefix in canonical form, other entries as they are, sorted.
func canonicalPrefixSet(entries []string) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			out[i] = formatPrefix(p)
		} else {
			out[i] = e
		}
	}
	slices.Sort(out)
	return out
}
