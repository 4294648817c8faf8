package jit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A grant rule carries a seal: the sum in its description is a digest of
// what the rule lets in and until when, taken when the rule is written.
// Nothing the product does edits a grant's rule in place, so a rule whose
// content no longer matches its sum was changed by someone else — its
// source widened or moved in the portal, its expiry pushed out by a script
// — and is not the grant that was reviewed. Whoever reads it first sees
// that, without having seen the rule before and without another copy to
// compare with: jitd closes it (tampered) and records the grant as ended,
// the provider reports the grant revoked.
//
// The sum covers the rule's name (policy and grant id), its source, ports
// and protocol, and the description's expiry and requester. It leaves out
// the priority and the destinations: a policy moves its grants between
// priorities and NSGs, and checks destinations against itself.
//
// The seal is a checksum, not a signature: someone with write access to the
// NSG who knows this grammar can write a whole rule that verifies. What
// tells such a rule apart is provenance: no audited open exists for it.

const grantSumLength = 10

var grantSumPattern = regexp.MustCompile(`^[0-9a-z]{10}$`)

// GrantSum is the seal of grant rule r whose description is d.
func GrantSum(r SecurityRule, d Description) string {
	return digest36(grantSumLength, "jit-grant-rule/v1", strings.ToLower(r.Name),
		strings.Join(canonicalPrefixSet(r.SourcePrefixes), ","), strings.Join(sortedCopy(r.DestinationPorts), ","),
		strings.ToLower(string(r.Protocol)), d.GrantID, strconv.FormatInt(d.ExpiresAt.Unix(), 10), d.Requester)
}

// SealGrantRule returns r with its description's sum set to what the rule
// says now. Policy.GrantRule seals the rules it builds; a rule changed on
// purpose afterwards (in tests, say) is sealed again with this.
func SealGrantRule(r SecurityRule) SecurityRule {
	d, err := ParseDescription(r.Description)
	if err != nil || d.Role != RoleGrant {
		return r
	}
	d.Sum = GrantSum(r, d)
	r.Description = d.String()
	return r
}

// checkSeal reports a grant rule whose content does not match its sum,
// saying what the rule lets in now.
func checkSeal(r SecurityRule, d Description) error {
	if got := GrantSum(r, d); got != d.Sum {
		return fmt.Errorf("rule %q was changed after its grant wrote it: it now lets %s in on %s/%s until %s for %q, "+
			"which is not what it was sealed with (sum %s, now %s)", r.Name, strings.Join(r.SourcePrefixes, ","),
			strings.Join(r.DestinationPorts, ","), r.Protocol, d.ExpiresAt.UTC().Format(time.RFC3339), d.Requester, d.Sum, got)
	}
	return nil
}
