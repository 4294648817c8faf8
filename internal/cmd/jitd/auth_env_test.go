package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// TestJitdAuthenticationMethodsWithEmptyEnvironment runs the jitd binary
// under `env -i`, so that it sees only the variables each authentication
// method needs (as a pod, a pipeline step or a systemd unit gives it), and
// has it scan a resource group of a local Azure running in this process.
// Every method azurerm v4 reads must get a token and read the NSG.
func TestJitdAuthenticationMethodsWithEmptyEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the jitd binary; skipped with -short")
	}
	envBin, err := exec.LookPath("env")
	if err != nil {
		t.Skip("no env(1) on PATH")
	}
	jitd, err := builds.Build("jitd", ".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// A local Azure with a CA of its own: this process never talks TLS to
	// it, so the process-wide SSL_CERT_FILE of the other tests is left alone.
	ca, err := azuresim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := ca.WriteCertFile(caFile); err != nil {
		t.Fatal(err)
	}
	nsgID := "/subscriptions/" + azuresim.DefaultSubscriptionID + "/resourceGroups/rg-auth/providers/Microsoft.Network/networkSecurityGroups/nsg-auth"
	seed := authWriteFile(t, dir, "seed.json", fmt.Sprintf(`{"networkSecurityGroups":[{"id":%q,"location":"westeurope","properties":{"securityRules":[]}}]}`, nsgID))
	srv, err := azuresim.Start(azuresim.Options{CA: ca, SeedFile: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	certPEM, keyPEM, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	const pfxPassword = "pfx-pass-4e1b"
	pfx, err := pkcs12.Modern.Encode(pair.PrivateKey, pair.Leaf, nil, pfxPassword)
	if err != nil {
		t.Fatal(err)
	}
	pfxFile := authWriteFile(t, dir, "client.pfx", string(pfx))
	federated, err := srv.IssueFederatedToken("system:serviceaccount:jit:jitd")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := authWriteFile(t, dir, "azure-identity-token", federated)
	adoURL, adoToken, adoConnection := srv.AzureDevOpsOIDCRequest()
	ghURL, ghToken := srv.GitHubIDTokenRequest()
	appService, identityHeader := srv.ManagedIdentityEndpoint()

	// Every run gets these and nothing else from the test's environment.
	common := map[string]string{
		"SSL_CERT_FILE":         caFile,
		"ARM_METADATA_HOSTNAME": srv.Host(),
		"ARM_SUBSCRIPTION_ID":   srv.SubscriptionID(),
		"ARM_USE_CLI":           "false",
	}
	app := map[string]string{"ARM_TENANT_ID": srv.TenantID(), "ARM_CLIENT_ID": srv.ClientID()}
	with := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range append([]map[string]string{common}, ms...) {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	methods := []struct {
		name string
		env  map[string]string
	}{
		{"client secret, environment global", with(app, map[string]string{"ARM_CLIENT_SECRET": srv.ClientSecret(), "ARM_ENVIRONMENT": "global"})},
		{"client secret and client id files", with(map[string]string{
			"ARM_TENANT_ID":               srv.TenantID(),
			"ARM_CLIENT_ID_FILE_PATH":     authWriteFile(t, dir, "client-id", srv.ClientID()+"\n"),
			"ARM_CLIENT_SECRET_FILE_PATH": authWriteFile(t, dir, "client-secret", srv.ClientSecret()+"\n"),
		})},
		{"client certificate file", with(app, map[string]string{"ARM_CLIENT_CERTIFICATE_PATH": pfxFile, "ARM_CLIENT_CERTIFICATE_PASSWORD": pfxPassword})},
		{"client certificate inline", with(app, map[string]string{
			"ARM_CLIENT_CERTIFICATE": base64.StdEncoding.EncodeToString(pfx), "ARM_CLIENT_CERTIFICATE_PASSWORD": pfxPassword})},
		{"OIDC token file", with(app, map[string]string{"ARM_USE_OIDC": "true", "ARM_OIDC_TOKEN_FILE_PATH": tokenFile})},
		{"AKS workload identity", with(map[string]string{
			"ARM_USE_AKS_WORKLOAD_IDENTITY": "true", "AZURE_FEDERATED_TOKEN_FILE": tokenFile,
			"AZURE_CLIENT_ID": srv.ClientID(), "AZURE_TENANT_ID": srv.TenantID(),
		})},
		{"Azure DevOps OIDC", with(app, map[string]string{
			"ARM_USE_OIDC": "true", "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID": adoConnection,
			"SYSTEM_OIDCREQUESTURI": adoURL, "SYSTEM_ACCESSTOKEN": adoToken,
		})},
		{"GitHub Actions OIDC", with(app, map[string]string{
			"ARM_USE_OIDC": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": ghURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ghToken,
		})},
		{"managed identity, msi_endpoint IMDS shape", with(map[string]string{"ARM_USE_MSI": "true", "ARM_MSI_ENDPOINT": srv.IMDSEndpoint()})},
		{"managed identity, msi_endpoint App Service shape", with(map[string]string{
			"ARM_USE_MSI": "true", "ARM_MSI_ENDPOINT": appService, "ARM_MSI_API_VERSION": "2019-08-01", "IDENTITY_HEADER": identityHeader,
		})},
		{"managed identity, detected App Service", with(map[string]string{
			"ARM_USE_MSI": "true", "IDENTITY_ENDPOINT": appService, "IDENTITY_HEADER": identityHeader,
		})},
	}
	for _, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			out, stderr, err := runEmptyEnv(envBin, jitd, m.env, "scan", "--resource-group", "rg-auth", "--output", "json")
			if err != nil {
				t.Fatalf("env -i %s jitd scan: %v\n%s", authEnvNames(m.env), err, stderr)
			}
			var rep scanReport
			if err := json.Unmarshal(out, &rep); err != nil || rep.ScannedNSGs != 1 || len(rep.Errors) != 0 {
				t.Fatalf("report %s (%v)\nstderr: %s", out, err, stderr)
			}
			for _, secret := range []string{srv.ClientSecret(), pfxPassword, adoToken, ghToken, identityHeader, federated} {
				if strings.Contains(string(stderr), secret) {
					t.Errorf("jitd's output shows a secret:\n%s", stderr)
				}
			}
		})
	}

	t.Run("nothing configured", func(t *testing.T) {
		_, stderr, err := runEmptyEnv(envBin, jitd, common, "scan", "--resource-group", "rg-auth")
		if err == nil || !strings.Contains(string(stderr), "no authentication method is enabled") {
			t.Fatalf("jitd scan without credentials: %v\n%s", err, stderr)
		}
	})
}

// runEmptyEnv runs `env -i K=V… jitd args…` and returns its stdout and
// stderr.
func runEmptyEnv(envBin, jitd string, env map[string]string, args ...string) ([]byte, []byte, error) {
	argv := []string{"-i"}
	for _, k := range authSortedKeys(env) {
		argv = append(argv, k+"="+env[k])
	}
	argv = append(append(argv, jitd), args...)
	cmd := exec.Command(envBin, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}

func authSortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// authEnvNames lists the variables of env, for a failure message without values.
func authEnvNames(env map[string]string) string { return strings.Join(authSortedKeys(env), " ") }

func authWriteFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
