package provider

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// An imported policy plans empty with the configuration it came from,
// whatever order that lists allowed sources, destinations and ports in:
// the import reads them back from the NSG in canonical order.
func TestAccPolicy_importRoundTrips(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))
	before := env.Snapshot(nsgID)
	id := "web@" + nsgID
	// Nothing here is in the order the NSG gives it back: sources and
	// destinations not ascending, ports neither by number nor protocol,
	// one protocol left at its default and the others spelled out.
	resourceBlock := fmt.Sprintf(`
resource "jit_policy" "web" {
  name                            = "web"
  network_security_group_ids      = [%q]
  destination_address_prefixes    = ["2001:db8::4", "10.0.1.5", %q]
  allowed_source_address_prefixes = ["2001:db8:1::/48", "203.0.113.0/24", "198.51.100.0/24"]
  ports = [
    { port = 3389, max_duration = "1h" },
    { port = 53, protocol = "Udp", max_duration = "2h" },
    { port = 22, protocol = "Tcp", max_duration = "3h" },
  ]
}
`, nsgID, vm)
	cfg := env.ProviderBlock() + resourceBlock
	forget := env.ProviderBlock() + `
removed {
  from = jit_policy.web
  lifecycle {
    destroy = false
  }
}
`
	importBlock := fmt.Sprintf(`
import {
  to = jit_policy.web
  id = %q
}
`, id)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		CheckDestroy:             env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{
			{Config: cfg},
			{
				ResourceName:      "jit_policy.web",
				ImportState:       true,
				ImportStateId:     id,
				ImportStateVerify: true,
			},
			{
				// Another workspace (or this one after losing its state)
				// takes the policy over with an import block.
				Config: forget,
			},
			{
				Config: cfg + importBlock,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jit_policy.web", plancheck.ResourceActionNoop),
				}},
			},
			{
				Config:   cfg,
				PlanOnly: true,
			},
		},
	})
}
