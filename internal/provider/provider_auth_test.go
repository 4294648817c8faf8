package provider

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// clientCertificatePFX registers a new certificate with the local Azure and
// returns it as an encrypted PKCS#12 bundle, as `az ad sp create-for-rbac
// --create-cert` and a Key Vault export give one.
func clientCertificatePFX(t *testing.T, sim *azuresim.Server, password string) []byte {
	t.Helper()
	certPEM, keyPEM, err := sim.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pfx, err := pkcs12.Legacy.Encode(pair.PrivateKey, pair.Leaf, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	return pfx
}

// certificateProviderBlock configures the local Azure with a certificate
// instead of acctest's client secret.
func certificateProviderBlock(sim *azuresim.Server, extra string) string {
	return fmt.Sprintf(`
provider "jit" {
  metadata_host   = %q
  tenant_id       = %q
  client_id       = %q
  subscription_id = %q
  use_cli         = false
%s
}
`, sim.Host(), sim.TenantID(), sim.ClientID(), sim.SubscriptionID(), extra)
}

const clientConfigAndNSG = `
data "jit_client_config" "current" {}

data "jit_network_security_group" "web" {
  id = %q
}
`

func TestAccProvider_clientCertificateArguments(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	const password = "pfx-pass-2c9e"
	pfxFile := filepath.Join(t.TempDir(), "client.pfx")
	if err := os.WriteFile(pfxFile, clientCertificatePFX(t, env.Sim, password), 0o600); err != nil {
		t.Fatal(err)
	}

	// The environment names a certificate file that does not exist and a
	// wrong secret: the arguments win over the environment, and a
	// certificate over a secret.
	vars := map[string]string{
		"ARM_CLIENT_CERTIFICATE_PATH": filepath.Join(t.TempDir(), "missing.pfx"),
		"ARM_CLIENT_SECRET":           "not-the-secret",
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(envFrom(vars)),
		Steps: []resource.TestStep{{
			Config: certificateProviderBlock(env.Sim, fmt.Sprintf(`  client_certificate_path     = %q
  client_certificate_password = %q`, pfxFile, password)) + fmt.Sprintf(clientConfigAndNSG, nsgID),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.jit_client_config.current",
					tfjsonpath.New("client_id"), knownvalue.StringExact(env.Sim.ClientID())),
				statecheck.ExpectKnownValue("data.jit_network_security_group.web",
					tfjsonpath.New("name"), knownvalue.StringExact("nsg-web")),
			},
		}},
	})
}

// The certificate inline in ARM_CLIENT_CERTIFICATE (azurerm v4), with the
// rest from the environment and an empty provider block.
func TestAccProvider_clientCertificateFromEnvironment(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	const password = "pfx-pass-81d0"
	vars := env.Sim.Environ(simtest.CAFile())
	delete(vars, "ARM_CLIENT_SECRET")
	vars["ARM_USE_CLI"] = "false"
	vars["ARM_CLIENT_CERTIFICATE"] = base64.StdEncoding.EncodeToString(clientCertificatePFX(t, env.Sim, password))
	vars["ARM_CLIENT_CERTIFICATE_PASSWORD"] = password

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(envFrom(vars)),
		Steps: []resource.TestStep{{
			Config: `provider "jit" {}` + fmt.Sprintf(clientConfigAndNSG, nsgID),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("data.jit_network_security_group.web",
					tfjsonpath.New("name"), knownvalue.StringExact("nsg-web")),
			},
		}},
	})
}

func TestAccProvider_clientCertificateWrongPassword(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	pfxFile := filepath.Join(t.TempDir(), "client.pfx")
	if err := os.WriteFile(pfxFile, clientCertificatePFX(t, env.Sim, "right-one"), 0o600); err != nil {
		t.Fatal(err)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config: certificateProviderBlock(env.Sim, fmt.Sprintf(`  client_certificate_path     = %q
  client_certificate_password = "wrong-one"`, pfxFile)) + `data "jit_client_config" "current" {}`,
			ExpectError: regexp.MustCompile(`(?s)client_certificate_path.*password.*ARM_CLIENT_CERTIFICATE_PASSWORD`),
		}},
	})
}

func TestAccProvider_auxiliaryTenantsRefused(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(noEnv),
		Steps: []resource.TestStep{{
			Config:      env.ProviderBlock(`  auxiliary_tenant_ids = ["00000000-0000-0000-0000-0000000000aa"]`) + `data "jit_client_config" "current" {}`,
			ExpectError: regexp.MustCompile(`(?s)auxiliary_tenant_ids.*not supported`),
		}},
	})
}
