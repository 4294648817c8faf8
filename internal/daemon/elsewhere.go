package daemon

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// grantIndex holds the grants open on the NSGs in scope at their last
// reads, by lower-case rule name, each distinct grant once: what a grant's
// copy on another NSG says, for judgeAgainstLastSeen. Judging an NSG's
// grants against every grant in scope was quadratic (16,000 open grants,
// the same 8 on each of 2,000 NSGs, held a full resync up for minutes);
// with the index an NSG is judged against the copies of its own grants
// only, and identical copies (a grant on each NSG of its policy) once.
type grantIndex map[string][]jit.GrantRule

// indexGrants indexes the open grants of every NSG. Copies that differ
// only in their destinations (judged across NSGs, they do not count) are
// kept once.
func indexGrants(open map[string][]jit.GrantRule) grantIndex {
	idx := grantIndex{}
	seen := map[string]bool{}
	for _, nsg := range slices.Sorted(maps.Keys(open)) {
		for _, g := range open[nsg] {
			name := strings.ToLower(g.Rule.Name)
			if k := name + "\x00" + grantCopyKey(g); !seen[k] {
				seen[k] = true
				idx[name] = append(idx[name], g)
			}
		}
	}
	return idx
}

// grantCopyKey is what judgeAgainstLastSeen compares of a copy on another
// NSG: sources and ports (as sets), protocol, expiry and requester.
func grantCopyKey(g jit.GrantRule) string {
	// As sameSet compares them: order aside, exactly.
	set := func(v []string) string {
		s := slices.Clone(v)
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	return set(g.Rule.SourcePrefixes) + "|" + set(g.Rule.DestinationPorts) + "|" + strings.ToLower(string(g.Rule.Protocol)) +
		"|" + strconv.FormatInt(g.ExpiresAt.UnixNano(), 10) + "|" + g.Requester
}

// matching returns the indexed grants named like one of rules.
func (idx grantIndex) matching(rules []jit.SecurityRule) []jit.GrantRule {
	var out []jit.GrantRule
	for _, r := range rules {
		out = append(out, idx[strings.ToLower(r.Name)]...)
	}
	return out
}
