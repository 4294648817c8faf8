package provider

import (
	"fmt"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// jit_access_grants lists every grant rule of a policy on its NSGs, its own
// workspace's and another's alike, soonest expiry first; an expired rule
// still there is listed as expired; a rule in the grant namespace that does
// not decode is listed apart.
func TestAccAccessGrantsDataSource(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	clock := newTestClock()
	policy := env.ProviderBlock() + fmt.Sprintf(webPolicy, nsgID)
	list := `
data "jit_access_grants" "web" {
  policy_id  = jit_policy.web.id
  depends_on = [jit_access_grant.alice]
}
`
	var otherID string
	grants := tfjsonpath.New("grants")
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactoriesAt(clock),
		Steps: []resource.TestStep{
			{Config: policy},
			{
				// Another workspace's grant, written as its provider would,
				// and a hand-written rule in the grant namespace.
				PreConfig: func() {
					rules := env.Client()
					cur, err := rules.ListRules(t.Context(), nsgID)
					if err != nil {
						t.Fatal(err)
					}
					p := jit.ReadNSG(cur).Policies["web"].Policy
					spec := jit.GrantSpec{Ports: []uint16{22}, Protocol: jit.ProtocolTCP, Source: netip.MustParsePrefix("203.0.113.20/32"),
						Duration: time.Hour, Requester: "bob@example.com"}
					otherID = jit.GrantRequest{Policy: "web", Spec: spec, Justification: "other workspace"}.ID()
					hand := p.GrantRule("handmade", spec, clock.Now().Add(time.Hour), p.Band.Start+8)
					hand.Name, hand.Description = "jit-web-g-handmade", "opened by hand"
					env.PutRules(nsgID, p.GrantRule(otherID, spec, clock.Now().Add(2*time.Hour), p.Band.Start+7), hand)
				},
				Config: policy + grantBlock("alice", "203.0.113.7", "30m") + list,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants, knownvalue.ListSizeExact(2)),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("source_address_prefix"), knownvalue.StringExact("203.0.113.7")),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("requester"), knownvalue.StringExact("alice@example.com")),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("status"), knownvalue.StringExact("active")),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("ports"), knownvalue.ListExact([]knownvalue.Check{knownvalue.Int64Exact(22)})),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(1).AtMapKey("requester"), knownvalue.StringExact("bob@example.com")),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(1).AtMapKey("network_security_group_id"), knownvalue.StringExact(nsgID)),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(1).AtMapKey("grant_id"), knownvalue.StringFunc(func(v string) error {
						if v != otherID {
							return fmt.Errorf("grant_id %q, want the other workspace's %q", v, otherID)
						}
						return nil
					})),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", tfjsonpath.New("malformed_rules").AtSliceIndex(0).AtMapKey("rule_name"), knownvalue.StringExact("jit-web-g-handmade")),
				},
			},
			{
				// Both have expired: this apply closes Alice's (its rule
				// goes), while the other workspace's rule is still there,
				// listed as expired until jitd or its owner closes it.
				PreConfig: func() { clock.Advance(3 * time.Hour) },
				Config:    policy + grantBlock("alice", "203.0.113.7", "30m") + list,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants, knownvalue.ListSizeExact(1)),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("requester"), knownvalue.StringExact("bob@example.com")),
					statecheck.ExpectKnownValue("data.jit_access_grants.web", grants.AtSliceIndex(0).AtMapKey("status"), knownvalue.StringExact("expired")),
				},
			},
			{
				// The other workspace destroys its grant; the hand-made rule
				// is removed too, so this workspace's destroy may go on.
				PreConfig: func() {
					env.DeleteRule(nsgID, jit.GrantRuleName("web", otherID))
					env.DeleteRule(nsgID, "jit-web-g-handmade")
				},
				Config:      policy + `data "jit_access_grants" "bad" { policy_id = "web" }`,
				ExpectError: regexp.MustCompile(`Invalid Policy ID`),
			},
		},
	})
}
