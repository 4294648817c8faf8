package azure

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// Each authentication method azurerm v4 reads, configured through its
// environment variables exactly as a CI job or pod would set them, gets a
// token from the local Azure and reads an NSG with it.

// authEnv is the local Azure's environment without the client secret and
// without the CLI, plus extra.
func authEnv(env map[string]string, extra map[string]string, drop ...string) map[string]string {
	e := map[string]string{"ARM_USE_CLI": "false"}
	for k, v := range env {
		e[k] = v
	}
	delete(e, "ARM_CLIENT_SECRET")
	for _, k := range drop {
		delete(e, k)
	}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// readsNSG checks that a client built from env authenticates as the local
// Azure's application and can read the NSG.
func readsNSG(t *testing.T, srv *azuresim.Server, nsgID string, env map[string]string) {
	t.Helper()
	c := clientFromEnv(t, env)
	id, err := c.Identity(context.Background())
	if err != nil || !strings.EqualFold(id.ClientID, srv.ClientID()) || !strings.EqualFold(id.TenantID, srv.TenantID()) {
		t.Fatalf("Identity = %+v, %v", id, err)
	}
	if _, err := c.ListRules(context.Background(), nsgID); err != nil {
		t.Fatalf("ListRules: %v", err)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pfx encodes a PEM certificate and key as PKCS#12 with enc.
func pfx(t *testing.T, enc *pkcs12.Encoder, certPEM, keyPEM []byte, password string) []byte {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := enc.Encode(pair.PrivateKey, pair.Leaf, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocalAzureClientCertificate(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	certPEM, keyPEM, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	const password = "pfx-pass-7f3a"
	pemFile := writeFile(t, "client.pem", append(append([]byte{}, certPEM...), keyPEM...))
	legacyPFX := writeFile(t, "legacy.pfx", pfx(t, pkcs12.Legacy, certPEM, keyPEM, password))
	modernPFX := pfx(t, pkcs12.Modern, certPEM, keyPEM, password)

	tests := map[string]map[string]string{
		"PEM file":                       {"ARM_CLIENT_CERTIFICATE_PATH": pemFile},
		"legacy PKCS#12 file":            {"ARM_CLIENT_CERTIFICATE_PATH": legacyPFX, "ARM_CLIENT_CERTIFICATE_PASSWORD": password},
		"AES PKCS#12 inline, base64":     {"ARM_CLIENT_CERTIFICATE": base64.StdEncoding.EncodeToString(modernPFX), "ARM_CLIENT_CERTIFICATE_PASSWORD": password},
		"certificate wins over a secret": {"ARM_CLIENT_CERTIFICATE_PATH": pemFile, "ARM_CLIENT_SECRET": "not-the-secret", "ARM_USE_OIDC": "true"},
	}
	for name, extra := range tests {
		t.Run(name, func(t *testing.T) {
			readsNSG(t, srv, nsgID, authEnv(env, extra))
		})
	}
}

func TestLocalAzureClientCertificateRefused(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	certPEM, keyPEM, err := srv.NewClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	const password = "right-pass-19c2"
	legacyPFX := writeFile(t, "legacy.pfx", pfx(t, pkcs12.Legacy, certPEM, keyPEM, password))

	t.Run("wrong password", func(t *testing.T) {
		e := authEnv(env, map[string]string{"ARM_CLIENT_CERTIFICATE_PATH": legacyPFX, "ARM_CLIENT_CERTIFICATE_PASSWORD": "wrong-pass-55"})
		cfg, err := ConfigFromEnv(envFunc(e))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		if got := configErrors(t, err); len(got) != 1 || got[0] != "client_certificate_path/ARM_CLIENT_CERTIFICATE_PATH" {
			t.Fatalf("Validate: %v (%v)", got, err)
		}
		if !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "wrong-pass-55") {
			t.Errorf("message %q does not say the password is wrong, or quotes it", err)
		}
	})

	t.Run("certificate not registered", func(t *testing.T) {
		// A second local Azure's registration is not this one's.
		other, err := azuresim.Start(azuresim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		foreignCert, foreignKey, err := other.NewClientCertificate()
		if err != nil {
			t.Fatal(err)
		}
		file := writeFile(t, "foreign.pem", append(foreignCert, foreignKey...))
		c := clientFromEnv(t, authEnv(env, map[string]string{"ARM_CLIENT_CERTIFICATE_PATH": file}))
		_, err = c.ListRules(context.Background(), nsgID)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "AADSTS700027") || !strings.Contains(err.Error(), "client certificate") {
			t.Fatalf("ListRules with an unregistered certificate: %v, want ErrUnauthorized AADSTS700027", err)
		}
	})

	t.Run("certificate and inline bundle both set", func(t *testing.T) {
		cfg := Config{SubscriptionID: srv.SubscriptionID(), TenantID: srv.TenantID(), ClientID: srv.ClientID(),
			ClientCertificatePath: legacyPFX, ClientCertificate: "AAAA", ClientCertificatePassword: password}
		if got := configErrors(t, cfg.Validate()); len(got) == 0 || got[0] != "client_certificate/ARM_CLIENT_CERTIFICATE" {
			t.Fatalf("Validate: %v", got)
		}
	})
}

func TestLocalAzureSecretAndClientIDFiles(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	secretFile := writeFile(t, "secret", []byte(srv.ClientSecret()+"\n"))
	idFile := writeFile(t, "client-id", []byte(srv.ClientID()+"\n"))

	t.Run("both from files", func(t *testing.T) {
		readsNSG(t, srv, nsgID, authEnv(env, map[string]string{"ARM_CLIENT_SECRET_FILE_PATH": secretFile, "ARM_CLIENT_ID_FILE_PATH": idFile}, "ARM_CLIENT_ID"))
	})
	t.Run("file and variable agree", func(t *testing.T) {
		readsNSG(t, srv, nsgID, authEnv(env, map[string]string{"ARM_CLIENT_SECRET_FILE_PATH": secretFile, "ARM_CLIENT_SECRET": srv.ClientSecret()}))
	})
	t.Run("file and variable disagree", func(t *testing.T) {
		e := authEnv(env, map[string]string{"ARM_CLIENT_SECRET_FILE_PATH": secretFile, "ARM_CLIENT_SECRET": "other-secret-0b1",
			"ARM_CLIENT_ID_FILE_PATH": writeFile(t, "other-id", []byte(testClient))})
		cfg, err := ConfigFromEnv(envFunc(e))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		want := []string{"client_id_file_path/ARM_CLIENT_ID_FILE_PATH", "client_secret_file_path/ARM_CLIENT_SECRET_FILE_PATH"}
		if got := configErrors(t, err); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("Validate: %v, want %v (%v)", got, want, err)
		}
		if strings.Contains(err.Error(), "other-secret-0b1") || strings.Contains(err.Error(), srv.ClientSecret()) {
			t.Errorf("message %q quotes a secret", err)
		}
	})
}

func TestLocalAzureAKSWorkloadIdentity(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	write := func() {
		tok, err := srv.IssueFederatedToken("system:serviceaccount:jit:jitd")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write()
	// What the AKS webhook injects, and nothing of azurerm's but the switch.
	e := authEnv(env, map[string]string{
		"ARM_USE_AKS_WORKLOAD_IDENTITY": "true",
		"AZURE_FEDERATED_TOKEN_FILE":    tokenFile,
		"AZURE_CLIENT_ID":               srv.ClientID(),
		"AZURE_TENANT_ID":               srv.TenantID(),
	}, "ARM_CLIENT_ID", "ARM_TENANT_ID")
	readsNSG(t, srv, nsgID, e)

	t.Run("tenant disagrees", func(t *testing.T) {
		e := authEnv(e, map[string]string{"ARM_TENANT_ID": testTenant})
		cfg, _ := ConfigFromEnv(envFunc(e))
		if got := configErrors(t, cfg.Validate()); len(got) != 1 || got[0] != "tenant_id/ARM_TENANT_ID" {
			t.Fatalf("Validate: %v", got)
		}
	})
	t.Run("webhook did not run", func(t *testing.T) {
		e := authEnv(env, map[string]string{"ARM_USE_AKS_WORKLOAD_IDENTITY": "true"})
		cfg, _ := ConfigFromEnv(envFunc(e))
		err := cfg.Validate()
		if got := configErrors(t, err); len(got) == 0 || got[0] != "use_aks_workload_identity/ARM_USE_AKS_WORKLOAD_IDENTITY" ||
			!strings.Contains(err.Error(), "AZURE_FEDERATED_TOKEN_FILE") {
			t.Fatalf("Validate: %v (%v)", got, err)
		}
	})
}

func TestLocalAzureDevOpsOIDC(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	reqURL, accessToken, connection := srv.AzureDevOpsOIDCRequest()
	// As an AzureCLI@2 or a script step with the service connection's id
	// and the job's access token mapped in.
	pipeline := map[string]string{
		"ARM_USE_OIDC":                         "true",
		"ARM_OIDC_AZURE_SERVICE_CONNECTION_ID": connection,
		"SYSTEM_OIDCREQUESTURI":                reqURL,
		"SYSTEM_ACCESSTOKEN":                   accessToken,
	}
	readsNSG(t, srv, nsgID, authEnv(env, pipeline))

	t.Run("azurerm's own variable name", func(t *testing.T) {
		e := authEnv(env, pipeline, "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID")
		e["ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID"] = connection
		readsNSG(t, srv, nsgID, e)
	})
	t.Run("unknown service connection", func(t *testing.T) {
		e := authEnv(env, pipeline)
		e["ARM_OIDC_AZURE_SERVICE_CONNECTION_ID"] = "00000000-0000-0000-0000-00000000dead"
		_, err := clientFromEnv(t, e).ListRules(context.Background(), nsgID)
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") || strings.Contains(err.Error(), accessToken) {
			t.Fatalf("ListRules with an unknown service connection: %v", err)
		}
	})
}

func TestLocalAzureMSIEndpoint(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{})
	appService, header := srv.ManagedIdentityEndpoint()
	tests := map[string]map[string]string{
		"IMDS shape, default api-version": {"ARM_MSI_ENDPOINT": srv.IMDSEndpoint()},
		"App Service shape":               {"ARM_MSI_ENDPOINT": appService, "ARM_MSI_API_VERSION": "2019-08-01", "IDENTITY_HEADER": header},
	}
	for name, extra := range tests {
		t.Run(name, func(t *testing.T) {
			e := authEnv(env, extra, "ARM_TENANT_ID")
			e["ARM_USE_MSI"] = "true"
			readsNSG(t, srv, nsgID, e)
		})
	}
	t.Run("App Service without its header", func(t *testing.T) {
		e := authEnv(env, map[string]string{"ARM_USE_MSI": "true", "ARM_MSI_ENDPOINT": appService, "ARM_MSI_API_VERSION": "2019-08-01"})
		_, err := clientFromEnv(t, e).ListRules(context.Background(), nsgID)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "HTTP 401") {
			t.Fatalf("ListRules: %v, want ErrUnauthorized with the endpoint's 401", err)
		}
	})
	t.Run("plain http to another host", func(t *testing.T) {
		cfg := Config{SubscriptionID: testSub, UseMSI: true, MSIEndpoint: "http://identity.example.com/token"}
		if got := configErrors(t, cfg.Validate()); len(got) != 1 || got[0] != "msi_endpoint/ARM_MSI_ENDPOINT" {
			t.Fatalf("Validate: %v", got)
		}
		cfg.MSIEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"
		if err := cfg.Validate(); err != nil {
			t.Fatalf("IMDS over http refused: %v", err)
		}
	})
}

func TestMSIEndpointCredentialDetails(t *testing.T) {
	// A version alone is asked of IMDS, as azurerm does.
	if m := newMSIEndpointCredential(Config{MSIAPIVersion: "2019-08-01"}); m.endpoint != defaultMSIEndpoint || m.apiVersion != "2019-08-01" {
		t.Errorf("version only: endpoint %q, version %q", m.endpoint, m.apiVersion)
	}
	if m := newMSIEndpointCredential(Config{MSIEndpoint: "https://h/t"}); m.apiVersion != defaultMSIAPIVersion {
		t.Errorf("endpoint only: version %q, want %s", m.apiVersion, defaultMSIAPIVersion)
	}

	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		on, in string
		want   time.Time
		ok     bool
	}{
		{`"1800003600"`, `"3600"`, time.Unix(1_800_003_600, 0), true}, // IMDS: strings
		{`1800003600`, ``, time.Unix(1_800_003_600, 0), true},         // a number
		{``, `"600"`, now.Add(10 * time.Minute), true},                // expires_in only
		{`"11/30/2026 3:04:05 PM +00:00"`, ``, time.Date(2026, 11, 30, 15, 4, 5, 0, time.UTC), true},
		{`"soon"`, ``, time.Time{}, false},
		{``, ``, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := parseExpiry(json.RawMessage(tt.on), json.RawMessage(tt.in), now)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseExpiry(%s, %s) = %v, %v; want %v, %v", tt.on, tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMSIEndpointCredentialCachesTokens(t *testing.T) {
	srv, _, _ := localAzure(t, azuresim.Options{})
	m := newMSIEndpointCredential(Config{MSIEndpoint: srv.IMDSEndpoint()})
	opts := policy.TokenRequestOptions{Scopes: []string{srv.URL() + "/.default"}}
	first, err := m.GetToken(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCounters()
	second, err := m.GetToken(context.Background(), opts)
	if err != nil || second.Token != first.Token {
		t.Fatalf("second GetToken: %v (same token %v)", err, second.Token == first.Token)
	}
	if n := srv.Counters().Requests["GET msi"]; n != 0 {
		t.Errorf("a cached token was asked for again (%d requests)", n)
	}
	// Near expiry, a new token is fetched.
	m.now = func() time.Time { return first.ExpiresOn.Add(-time.Minute) }
	if _, err := m.GetToken(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if n := srv.Counters().Requests["GET msi"]; n != 1 {
		t.Errorf("near expiry: %d requests to the endpoint, want 1 (counters %v)", n, srv.Counters().Requests)
	}
}
