package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// The grants open elsewhere are indexed by name with identical copies once:
// 2,000 NSGs holding the same 8 grants judge each NSG's grants against 8
// copies, not 16,000; a copy that differs (a tampered one) is kept.
func TestGrantIndexKeepsDistinctCopiesOnce(t *testing.T) {
	web := testPolicy(t, "web", 100)
	exp := time.Now().Add(time.Hour)
	var grants []jit.GrantRule
	var rules []jit.SecurityRule
	for i := range 8 {
		r := grantRule(t, web, fmt.Sprintf("g%d", i), exp)
		g := jit.ReadNSG(append(web.Rules(), r)).Grants
		if len(g) != 1 {
			t.Fatalf("grant %d does not read back: %+v", i, g)
		}
		grants = append(grants, g[0])
		rules = append(rules, r)
	}
	open := map[string][]jit.GrantRule{}
	for n := range 2000 {
		open[fmt.Sprintf("nsg-%04d", n)] = grants
	}
	tampered := grants[0]
	tampered.Rule.SourcePrefixes = []string{"0.0.0.0/0"}
	open["nsg-x"] = []jit.GrantRule{tampered}

	idx := indexGrants(open)
	got := idx.matching(rules)
	if len(got) != 9 {
		t.Fatalf("an NSG's 8 grants are judged against %d copies, want 9 (8 identical once, 1 tampered)", len(got))
	}
	if reason, _ := judgeAgainstLastSeen(grants[0], got, false); reason != ReasonTampered {
		t.Errorf("a copy tampered elsewhere is not seen: %q", reason)
	}
	if reason, _ := judgeAgainstLastSeen(grants[1], got, false); reason != "" {
		t.Errorf("an untampered grant judged %q", reason)
	}
}
