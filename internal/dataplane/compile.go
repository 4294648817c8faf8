package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// tableName is the nftables table the dataplane owns in the VM namespace.
const tableName = "jitdp"

// pathNSG is one NSG on the VM's inbound path as last read from ARM.
type pathNSG struct {
	id    string
	etag  string
	flush bool
	// unreadable is set when the NSG could not be read (deleted, or an
	// error): the dataplane then fails closed and refuses every new flow.
	unreadable bool
	rules      []nsgrules.Rule
}

// compile renders the ruleset for the VM's inbound traffic: packets of a
// flow already admitted (or opened by the VM) pass, then every NSG on the
// path in order (subnet, NIC) must allow a new TCP flow, each judged by its inbound rules and Azure's
// default rules in priority order. A rule that allows returns to the next
// NSG; one that denies answers with a TCP reset.
//
// Only TCP over IPv4 to the VM's address is judged; other IPv4 packets to
// the VM are dropped (nothing listens for them).
// admittedMark is the conntrack mark of a flow the NSGs admitted, and
// openedMark that of a flow the VM opened: their packets pass without being
// judged again, until a flush makes conntrack forget an admitted one. They
// differ so that a flush can find every admitted flow by its mark, also one
// that conntrack, after an earlier flush, picked up again from the VM's side
// (its original direction then runs from the VM), without touching the
// flows the VM opened.
const (
	admittedMark = "0x1"
	openedMark   = "0x2"
)

func compile(vm netip.Addr, path []pathNSG, env nsgrules.Env) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\ntable ip %s {\n", tableName, tableName, tableName)
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
	b.WriteString("\t\tiifname \"lo\" accept\n")
	fmt.Fprintf(&b, "\t\tip daddr != %s accept\n", vm)
	// A flow passes without being judged again only when it was admitted
	// (marked below) or opened by the VM. Being "established" is not
	// enough: once conntrack forgot a flow (a flush), the VM's next reply
	// makes conntrack pick it up again mid-stream, unjudged.
	fmt.Fprintf(&b, "\t\tct mark { %s, %s } accept\n", admittedMark, openedMark)
	b.WriteString("\t\tmeta l4proto != tcp drop\n")
	for i := range path {
		fmt.Fprintf(&b, "\t\tjump nsg%d\n", i)
	}
	fmt.Fprintf(&b, "\t\tct mark set %s accept\n\t}\n", admittedMark)
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\ttcp flags & (syn | ack) == syn ct state new ct mark set %s\n\t}\n", openedMark)
	for i, n := range path {
		fmt.Fprintf(&b, "\tchain nsg%d {\n", i)
		fmt.Fprintf(&b, "\t\t# %s\n", comment(n.id))
		if n.unreadable {
			b.WriteString("\t\treject with tcp reset comment \"unreadable NSG: fail closed\"\n")
		} else {
			for _, line := range compileNSG(vm, n.rules, env) {
				b.WriteString("\t\t" + line + "\n")
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// compileNSG renders one NSG's inbound rules and Azure's inbound defaults in
// the evaluator's order (priority; on a tie, the order given, user rules
// before defaults). A rule that cannot match an IPv4 TCP packet to vm is
// left out, as the evaluator would never pick it.
func compileNSG(vm netip.Addr, rules []nsgrules.Rule, env nsgrules.Env) []string {
	var candidates []nsgrules.Rule
	for _, r := range slices.Concat(rules, nsgrules.DefaultRules()) {
		if strings.EqualFold(r.Direction, "Inbound") {
			candidates = append(candidates, r)
		}
	}
	slices.SortStableFunc(candidates, func(a, b nsgrules.Rule) int { return int(a.Priority) - int(b.Priority) })
	var lines []string
	for _, r := range candidates {
		match, ok := compileMatch(vm, r, env)
		if !ok {
			continue
		}
		verdict := "return"
		if !strings.EqualFold(r.Access, "Allow") {
			verdict = "reject with tcp reset"
		}
		lines = append(lines, strings.TrimSpace(match+" "+verdict)+
			fmt.Sprintf(" comment %q", comment(fmt.Sprintf("%s %d %s", r.Name, r.Priority, r.Access))))
	}
	return lines
}

// compileMatch renders a rule's match for TCP packets to vm, or false when
// the rule can match none.
func compileMatch(vm netip.Addr, r nsgrules.Rule, env nsgrules.Env) (string, bool) {
	if r.Protocol != "*" && !strings.EqualFold(r.Protocol, "Tcp") {
		return "", false
	}
	// The evaluator never matches a side given as application security
	// groups; neither does the dataplane.
	if r.SourceASGs > 0 || r.DestinationASGs > 0 {
		return "", false
	}
	dst := resolveAll(r.DestinationPrefixes, env)
	if !contains(dst, vm) {
		return "", false
	}
	src := resolveAll(r.SourcePrefixes, env)
	if len(src) == 0 {
		return "", false
	}
	sports, okS := portRanges(r.SourcePorts)
	dports, okD := portRanges(r.DestinationPorts)
	if !okS || !okD {
		return "", false
	}
	var parts []string
	if len(src) != 1 || src[0] != (addrRange{0, 0xffffffff}) {
		parts = append(parts, "ip saddr "+set(src, formatAddrRange))
	}
	if sports != nil {
		parts = append(parts, "tcp sport "+set(sports, formatPortRange))
	}
	if dports != nil {
		parts = append(parts, "tcp dport "+set(dports, formatPortRange))
	}
	return strings.Join(parts, " "), true
}

type addrRange struct{ lo, hi uint32 }

type portRange struct{ lo, hi int }

// resolveAll is the merged IPv4 ranges of a rule's address list. An entry
// Azure would refuse matches nothing, as in the evaluator.
func resolveAll(prefixes []string, env nsgrules.Env) []addrRange {
	var rs []addrRange
	for _, s := range prefixes {
		ps, err := env.Resolve(s)
		if err != nil {
			continue
		}
		for _, p := range ps {
			lo := v4int(p.Addr())
			rs = append(rs, addrRange{lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)})
		}
	}
	return mergeRanges(rs, func(r addrRange) (uint64, uint64) { return uint64(r.lo), uint64(r.hi) },
		func(lo, hi uint64) addrRange { return addrRange{uint32(lo), uint32(hi)} })
}

func contains(rs []addrRange, a netip.Addr) bool {
	n := v4int(a)
	for _, r := range rs {
		if r.lo <= n && n <= r.hi {
			return true
		}
	}
	return false
}

// portRanges reads a rule's port list: nil, true for "any port"; false when
// no entry is readable (the rule then matches nothing, as in the evaluator).
func portRanges(entries []string) ([]portRange, bool) {
	var rs []portRange
	for _, s := range entries {
		if s == "*" {
			return nil, true
		}
		if lo, hi, ok := nsgrules.ParsePortRange(s); ok {
			rs = append(rs, portRange{lo, hi})
		}
	}
	if len(rs) == 0 {
		return nil, false
	}
	rs = mergeRanges(rs, func(r portRange) (uint64, uint64) { return uint64(r.lo), uint64(r.hi) },
		func(lo, hi uint64) portRange { return portRange{int(lo), int(hi)} })
	if len(rs) == 1 && rs[0] == (portRange{0, 65535}) {
		return nil, true
	}
	return rs, true
}

// mergeRanges sorts ranges and joins those that overlap or touch: nft
// refuses overlapping intervals in one set.
func mergeRanges[R any](rs []R, get func(R) (uint64, uint64), mk func(lo, hi uint64) R) []R {
	slices.SortFunc(rs, func(a, b R) int {
		al, _ := get(a)
		bl, _ := get(b)
		switch {
		case al < bl:
			return -1
		case al > bl:
			return 1
		}
		return 0
	})
	var out []R
	var curLo, curHi uint64
	for i, r := range rs {
		lo, hi := get(r)
		if i > 0 && lo <= curHi+1 {
			curHi = max(curHi, hi)
			continue
		}
		if i > 0 {
			out = append(out, mk(curLo, curHi))
		}
		curLo, curHi = lo, hi
	}
	if len(rs) > 0 {
		out = append(out, mk(curLo, curHi))
	}
	return out
}

func set[R any](rs []R, format func(R) string) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = format(r)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func formatAddrRange(r addrRange) string {
	if r.lo == r.hi {
		return v4addr(r.lo).String()
	}
	return v4addr(r.lo).String() + "-" + v4addr(r.hi).String()
}

func formatPortRange(r portRange) string {
	if r.lo == r.hi {
		return strconv.Itoa(r.lo)
	}
	return strconv.Itoa(r.lo) + "-" + strconv.Itoa(r.hi)
}

func v4int(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func v4addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// comment keeps text from ARM (rule names, ids) safe inside an nft
// comment or line comment: letters, digits and . _ - / : and spaces only,
// at most 120 bytes.
func comment(s string) string {
	out := []byte{}
	for i := 0; i < len(s) && len(out) < 120; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("._-/: ", c) >= 0:
			out = append(out, c)
		default:
			out = append(out, '?')
		}
	}
	return string(out)
}
