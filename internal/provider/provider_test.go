package provider

import (
	"context"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// providerFactories serves the provider in-process to the real terraform CLI.
// getenv stands in for the environment so a developer's own ARM_* variables
// never leak into a test.
func providerFactories(getenv func(string) string) map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"jit": providerserver.NewProtocol6WithError(&jitProvider{version: "test", commit: "test", getenv: getenv}),
	}
}

func noEnv(string) string { return "" }

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestAccProvider_configuredWithArguments(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web", acctest.AllowRule("AllowSSHFromInternet", 300, "Internet", "22"))

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: env.ProviderBlock() + `
data "jit_client_config" "current" {}

data "jit_network_security_group" "web" {
  id = "` + nsgID + `"
}
`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("tenant_id"), knownvalue.StringExact(env.Sim.TenantID())),
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("client_id"), knownvalue.StringExact(env.Sim.ClientID())),
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("subscription_id"), knownvalue.StringExact(env.Sim.SubscriptionID())),
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("object_id"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9a-f-]{36}$`))),
				statecheck.ExpectKnownValue("data.jit_network_security_group.web",
					tfjsonpath.New("name"), knownvalue.StringExact("nsg-web")),
				statecheck.ExpectKnownValue("data.jit_network_security_group.web",
					tfjsonpath.New("security_rules"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"name":                    knownvalue.StringExact("AllowSSHFromInternet"),
							"priority":                knownvalue.Int64Exact(300),
							"access":                  knownvalue.StringExact("Allow"),
							"source_address_prefixes": knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("Internet")}),
							"destination_port_ranges": knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("22")}),
							"jit_managed":             knownvalue.Bool(false),
						}),
					})),
			},
		}},
	})
}

// The azurerm environment variables alone configure the provider, as in a CI
// job already set up for azurerm: the provider block is empty.
func TestAccProvider_configuredFromEnvironment(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	vars := env.Sim.Environ(simtest.CAFile())
	vars["ARM_USE_CLI"] = "false"

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(envFrom(vars)),
		Steps: []resource.TestStep{{
			Config: `
provider "jit" {}

data "jit_client_config" "current" {}
`,
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("tenant_id"), knownvalue.StringExact(env.Sim.TenantID())),
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("resource_manager_endpoint"), knownvalue.StringRegexp(regexp.MustCompile(regexp.QuoteMeta(env.Sim.Host())))),
			},
		}},
	})
}

func TestAccProvider_missingSubscription(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	vars := env.Sim.Environ(simtest.CAFile())
	delete(vars, "ARM_SUBSCRIPTION_ID")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(envFrom(vars)),
		Steps: []resource.TestStep{{
			Config: `
provider "jit" {}

data "jit_client_config" "current" {}
`,
			ExpectError: regexp.MustCompile(`(?s)subscription_id.*ARM_SUBSCRIPTION_ID`),
		}},
	})
}

func TestAccProvider_noCredentials(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: `
provider "jit" {
  metadata_host   = "` + env.Sim.Host() + `"
  subscription_id = "` + env.Sim.SubscriptionID() + `"
  use_cli         = false
}

data "jit_client_config" "current" {}
`,
			ExpectError: regexp.MustCompile(`(?s)Invalid Provider Configuration.*(client_secret|use_oidc|use_msi|use_cli)`),
		}},
	})
}

func TestAccProvider_wrongSecret(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: `
provider "jit" {
  metadata_host   = "` + env.Sim.Host() + `"
  tenant_id       = "` + env.Sim.TenantID() + `"
  client_id       = "` + env.Sim.ClientID() + `"
  client_secret   = "not-the-secret"
  subscription_id = "` + env.Sim.SubscriptionID() + `"
  use_cli         = false
}

data "jit_client_config" "current" {}
`,
			ExpectError: regexp.MustCompile(`Unable to Authenticate to Azure`),
		}},
	})
}

func TestProviderSchemaIsValid(t *testing.T) {
	p := New("test", "test")()
	resp := &provider.SchemaResponse{}
	p.Schema(context.Background(), provider.SchemaRequest{}, resp)
	if resp.Diagnostics.HasError() {
		t.Fatalf("schema: %v", resp.Diagnostics)
	}
	if diags := resp.Schema.ValidateImplementation(context.Background()); diags.HasError() {
		t.Fatalf("schema implementation: %v", diags)
	}
	for _, name := range []string{"client_secret", "oidc_token", "oidc_request_token"} {
		if !resp.Schema.Attributes[name].IsSensitive() {
			t.Errorf("%s must be sensitive", name)
		}
	}
}
