package jit

import (
	"strings"
	"testing"
	"time"
)

// A grant rule edited in place no longer reads as a grant, whoever reads it
// first and whatever they saw before: the edit is visible on the rule alone.
func TestSealedGrantRuleShowsEveryEdit(t *testing.T) {
	p := grantPolicy(t)
	exp := time.Unix(1_800_000_000, 0).UTC()
	written := p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), exp, 106)
	if v := ReadNSG(append(p.Rules(), written)); len(v.Grants) != 1 || len(v.Malformed) != 0 {
		t.Fatalf("the rule as written does not read back as a grant: %+v", v)
	}

	for name, edit := range map[string]func(*SecurityRule){
		"source, still an allowed address": func(r *SecurityRule) { r.SourcePrefixes = list("203.0.113.99") },
		"source widened":                   func(r *SecurityRule) { r.SourcePrefixes = list("203.0.113.0/24") },
		"a second source":                  func(r *SecurityRule) { r.SourcePrefixes = list("203.0.113.7", "203.0.113.8") },
		"ports":                            func(r *SecurityRule) { r.DestinationPorts = list("22", "3389") },
		"protocol":                         func(r *SecurityRule) { r.Protocol = ProtocolAny },
		"expiry pushed out": func(r *SecurityRule) {
			r.Description = strings.Replace(r.Description, "exp=1800000000", "exp=1800003600", 1)
		},
		"requester": func(r *SecurityRule) {
			r.Description = strings.Replace(r.Description, "by=alice", "by=mallory", 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := written
			r.SourcePrefixes = append([]string(nil), written.SourcePrefixes...)
			r.DestinationPorts = append([]string(nil), written.DestinationPorts...)
			edit(&r)
			v := ReadNSG(append(p.Rules(), r))
			if len(v.Grants) != 0 || len(v.Malformed) != 1 {
				t.Fatalf("the edited rule reads as %d grants and %d malformed rules, want 0 and 1", len(v.Grants), len(v.Malformed))
			}
			f := v.Malformed[0]
			if f.Grant == nil || f.Grant.ID != "abc" || f.Grant.Policy != p.Name || !strings.Contains(f.Reason, "changed after its grant wrote it") {
				t.Errorf("finding = %+v (grant %+v)", f, f.Grant)
			}
			s := SightGrant("nsg-a", v, p.Name, "abc")
			if !s.Open || s.Rule != nil || s.Altered == "" {
				t.Errorf("sighting = %+v, want open, altered and no usable rule", s)
			}
			if why := Tampered([]GrantSighting{s}, written); !strings.Contains(why, "on nsg-a") {
				t.Errorf("Tampered = %q", why)
			}
			if d := DecideOpen("abc", time.Hour, []GrantSighting{s}, exp.Add(-time.Hour)); d.Action != OpenRefuse {
				t.Errorf("the same request over an edited rule is %v, want refused", d.Action)
			}
		})
	}

	// What a policy changes about its grants is not sealed: it moves them
	// to other priorities, and checks destinations against itself.
	moved := written
	moved.Priority = 107
	moved.DestinationPrefixes = list("10.0.1.5")
	if v := ReadNSG([]SecurityRule{moved}); len(v.Grants) != 1 {
		t.Errorf("a grant at another priority and destination does not read back: %+v", v.Malformed)
	}
	// A protocol in another case, a single address as /32, ports in another
	// order: none of that is an edit.
	same := written
	same.Protocol = "TCP"
	same.SourcePrefixes = list("203.0.113.7/32")
	if v := ReadNSG([]SecurityRule{same}); len(v.Grants) != 1 {
		t.Errorf("the same rule as Azure may spell it does not read back: %+v", v.Malformed)
	}
}

func TestSealGrantRuleReseals(t *testing.T) {
	p := grantPolicy(t)
	r := p.GrantRule("abc", grantSpec(t, p, "203.0.113.7"), time.Unix(1_800_000_000, 0), 106)
	r.SourcePrefixes = list("203.0.113.8")
	if v := ReadNSG([]SecurityRule{SealGrantRule(r)}); len(v.Grants) != 1 {
		t.Errorf("a resealed rule does not read back: %+v", v.Malformed)
	}
	if got := SealGrantRule(SecurityRule{Description: "not ours"}); got.Description != "not ours" {
		t.Error("SealGrantRule changed a rule that is not a grant")
	}
}
