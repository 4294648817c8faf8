package azure

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	testSub    = "00000000-0000-0000-0000-000000000001"
	testTenant = "00000000-0000-0000-0000-000000000002"
	testClient = "00000000-0000-0000-0000-000000000003"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{
			name: "empty environment enables the CLI like azurerm",
			env:  map[string]string{},
			want: Config{UseCLI: true},
		},
		{
			name: "client secret",
			env: map[string]string{
				"ARM_SUBSCRIPTION_ID": testSub, "ARM_TENANT_ID": testTenant,
				"ARM_CLIENT_ID": testClient, "ARM_CLIENT_SECRET": "s3cret",
				"ARM_ENVIRONMENT": "usgovernment", "ARM_METADATA_HOSTNAME": "127.0.0.1:8443",
			},
			want: Config{SubscriptionID: testSub, TenantID: testTenant, ClientID: testClient, ClientSecret: "s3cret",
				UseCLI: true, Environment: "usgovernment", MetadataHost: "127.0.0.1:8443"},
		},
		{
			name: "OIDC from GitHub Actions variables",
			env: map[string]string{
				"ARM_USE_OIDC": "true", "ARM_USE_CLI": "false",
				"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/token", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "ghtok",
			},
			want: Config{UseOIDC: true, OIDCRequestURL: "https://gh.example/token", OIDCRequestToken: "ghtok"},
		},
		{
			name: "ARM_OIDC_REQUEST_* win over the Actions variables",
			env: map[string]string{
				"ARM_USE_OIDC": "1", "ARM_OIDC_REQUEST_URL": "https://a.example/", "ARM_OIDC_REQUEST_TOKEN": "a",
				"ACTIONS_ID_TOKEN_REQUEST_URL": "https://b.example/", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "b",
				"ARM_OIDC_TOKEN": "jwt", "ARM_OIDC_TOKEN_FILE_PATH": "/var/run/token",
			},
			want: Config{UseOIDC: true, UseCLI: true, OIDCRequestURL: "https://a.example/", OIDCRequestToken: "a",
				OIDCToken: "jwt", OIDCTokenFilePath: "/var/run/token"},
		},
		{
			name: "managed identity",
			env:  map[string]string{"ARM_USE_MSI": "TRUE", "ARM_USE_CLI": "0", "ARM_CLIENT_ID": testClient},
			want: Config{UseMSI: true, ClientID: testClient},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(envFunc(tt.env))
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			if got != tt.want {
				t.Errorf("ConfigFromEnv =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestConfigFromEnvMalformedBooleans(t *testing.T) {
	_, err := ConfigFromEnv(envFunc(map[string]string{"ARM_USE_OIDC": "yes", "ARM_USE_CLI": "nope"}))
	got := configErrors(t, err)
	want := []string{"use_cli/ARM_USE_CLI", "use_oidc/ARM_USE_OIDC"}
	if !slices.Equal(got, want) {
		t.Fatalf("errors for %v, want %v (%v)", got, want, err)
	}
	if !strings.Contains(err.Error(), `"yes"`) {
		t.Errorf("error %q does not quote the bad value", err)
	}
}

// configErrors returns "field/envvar" of every *ConfigError joined in err,
// sorted.
func configErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%T %q is not a *ConfigError", e, e)
		}
		out = append(out, ce.Field+"/"+ce.EnvVar)
	}
	walk(err)
	slices.Sort(out)
	return out
}

func TestValidate(t *testing.T) {
	valid := Config{SubscriptionID: testSub, UseCLI: true}
	secret := Config{SubscriptionID: testSub, TenantID: testTenant, ClientID: testClient, ClientSecret: "x"}
	oidc := Config{SubscriptionID: testSub, TenantID: testTenant, ClientID: testClient, UseOIDC: true, OIDCToken: "jwt"}
	with := func(c Config, f func(*Config)) Config { f(&c); return c }

	tests := []struct {
		name string
		cfg  Config
		want []string // field/envvar of each problem
	}{
		{"CLI with subscription only", valid, nil},
		{"client secret", secret, nil},
		{"tenant domain name", with(secret, func(c *Config) { c.TenantID = "contoso.onmicrosoft.com" }), nil},
		{"OIDC token", oidc, nil},
		{"OIDC token file", with(oidc, func(c *Config) { c.OIDCToken, c.OIDCTokenFilePath = "", "/t" }), nil},
		{"OIDC request", with(oidc, func(c *Config) { c.OIDCToken, c.OIDCRequestURL, c.OIDCRequestToken = "", "https://gh/x", "t" }), nil},
		{"MSI without client id", Config{SubscriptionID: testSub, UseMSI: true}, nil},
		{"environment alias", with(valid, func(c *Config) { c.Environment = "AzureChinaCloud" }), nil},
		{"metadata host with port", with(valid, func(c *Config) { c.MetadataHost = "127.0.0.1:8443" }), nil},

		{"nothing at all", Config{}, []string{"subscription_id/ARM_SUBSCRIPTION_ID", "use_cli/ARM_USE_CLI"}},
		{"subscription not a GUID", with(valid, func(c *Config) { c.SubscriptionID = "my-sub" }),
			[]string{"subscription_id/ARM_SUBSCRIPTION_ID"}},
		{"client secret without tenant and client", Config{SubscriptionID: testSub, ClientSecret: "x"},
			[]string{"client_id/ARM_CLIENT_ID", "tenant_id/ARM_TENANT_ID"}},
		{"tenant alias", with(secret, func(c *Config) { c.TenantID = "common" }), []string{"tenant_id/ARM_TENANT_ID"}},
		{"tenant garbage", with(secret, func(c *Config) { c.TenantID = "not a tenant" }), []string{"tenant_id/ARM_TENANT_ID"}},
		{"client id not a GUID", with(secret, func(c *Config) { c.ClientID = "app" }), []string{"client_id/ARM_CLIENT_ID"}},
		{"OIDC without a token source", with(oidc, func(c *Config) { c.OIDCToken = "" }), []string{"use_oidc/ARM_USE_OIDC"}},
		{"OIDC URL without token", with(oidc, func(c *Config) { c.OIDCToken, c.OIDCRequestURL = "", "https://gh/x" }),
			[]string{"oidc_request_token/ARM_OIDC_REQUEST_TOKEN"}},
		{"OIDC token without URL", with(oidc, func(c *Config) { c.OIDCToken, c.OIDCRequestToken = "", "t" }),
			[]string{"oidc_request_url/ARM_OIDC_REQUEST_URL"}},
		{"OIDC URL over http", with(oidc, func(c *Config) { c.OIDCToken, c.OIDCRequestURL, c.OIDCRequestToken = "", "http://gh/x", "t" }),
			[]string{"oidc_request_url/ARM_OIDC_REQUEST_URL"}},
		{"OIDC without tenant", with(oidc, func(c *Config) { c.TenantID = "" }), []string{"tenant_id/ARM_TENANT_ID"}},
		{"unknown environment", with(valid, func(c *Config) { c.Environment = "german" }), []string{"environment/ARM_ENVIRONMENT"}},
		{"metadata host with scheme", with(valid, func(c *Config) { c.MetadataHost = "https://h.example" }),
			[]string{"metadata_host/ARM_METADATA_HOSTNAME"}},
		{"metadata host with path", with(valid, func(c *Config) { c.MetadataHost = "h.example/metadata" }),
			[]string{"metadata_host/ARM_METADATA_HOSTNAME"}},
		{"all problems at once", Config{SubscriptionID: "x", ClientSecret: "y", Environment: "mars", MetadataHost: "http://h"},
			[]string{"client_id/ARM_CLIENT_ID", "environment/ARM_ENVIRONMENT", "metadata_host/ARM_METADATA_HOSTNAME",
				"subscription_id/ARM_SUBSCRIPTION_ID", "tenant_id/ARM_TENANT_ID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := configErrors(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("Validate problems = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func TestValidateNeverQuotesSecrets(t *testing.T) {
	c := Config{SubscriptionID: "bad", TenantID: "common", ClientID: "bad", ClientSecret: "TOPSECRET",
		OIDCRequestToken: "REQTOKEN", UseOIDC: true, OIDCToken: "OIDCJWT"}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted an invalid configuration")
	}
	for _, secret := range []string{"TOPSECRET", "REQTOKEN", "OIDCJWT"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func TestAuthMethodOrder(t *testing.T) {
	all := Config{ClientCertificatePath: "/c.pfx", ClientSecret: "x", UseOIDC: true, UseAKSWorkloadIdentity: true, UseMSI: true, UseCLI: true}
	steps := []struct {
		drop func(*Config)
		want string
	}{
		{func(*Config) {}, AuthClientCertificate},
		{func(c *Config) { c.ClientCertificatePath = "" }, AuthClientSecret},
		{func(c *Config) { c.ClientSecret, c.ClientSecretFilePath = "", "/secret" }, AuthClientSecret},
		{func(c *Config) { c.ClientSecretFilePath = "" }, AuthOIDC},
		{func(c *Config) { c.UseOIDC = false }, AuthOIDC},
		{func(c *Config) { c.UseAKSWorkloadIdentity = false }, AuthMSI},
		{func(c *Config) { c.UseMSI = false }, AuthCLI},
		{func(c *Config) { c.UseCLI = false }, ""},
	}
	for _, s := range steps {
		s.drop(&all)
		if got := all.AuthMethod(); got != s.want {
			t.Fatalf("AuthMethod(%+v) = %q, want %q", all, got, s.want)
		}
	}
}

func TestOIDCSourceOrder(t *testing.T) {
	all := Config{OIDCToken: "jwt", OIDCTokenFilePath: "/t", OIDCRequestURL: "https://r", OIDCRequestToken: "rt",
		ADOPipelineServiceConnectionID: "sc"}
	steps := []struct {
		drop func(*Config)
		want string
	}{
		{func(*Config) {}, OIDCFromToken},
		{func(c *Config) { c.OIDCToken = "" }, OIDCFromFile},
		{func(c *Config) { c.OIDCTokenFilePath = "" }, OIDCFromAzureDevOps},
		{func(c *Config) { c.ADOPipelineServiceConnectionID = "" }, OIDCFromRequestURL},
		{func(c *Config) { c.OIDCRequestToken = "" }, ""},
	}
	for _, s := range steps {
		s.drop(&all)
		if got := all.OIDCSource(); got != s.want {
			t.Fatalf("OIDCSource(%+v) = %q, want %q", all, got, s.want)
		}
	}
}

func TestWarningsNameIneffectiveSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // a substring of each warning, in order
	}{
		{"none", Config{ClientSecret: "x"}, nil},
		{"msi endpoint under a secret", Config{ClientSecret: "x", MSIEndpoint: "https://h/t", MSIAPIVersion: "2019-08-01"},
			[]string{"msi_endpoint (ARM_MSI_ENDPOINT)", "msi_api_version (ARM_MSI_API_VERSION)"}},
		{"password without certificate", Config{UseCLI: true, ClientCertificatePassword: "p"}, []string{"client_certificate_password"}},
		{"service connection under a token file", Config{UseOIDC: true, OIDCTokenFilePath: "/t", ADOPipelineServiceConnectionID: "sc"},
			[]string{"ado_pipeline_service_connection_id"}},
		{"secret shadows OIDC", Config{ClientSecret: "x", UseOIDC: true}, []string{"use_oidc"}},
		{"MSI with its endpoint", Config{UseMSI: true, MSIEndpoint: "https://h/t"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings = %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not mention %q", got[i], w)
				}
			}
			if strings.Contains(strings.Join(got, " "), "\"p\"") {
				t.Error("a warning quotes the password")
			}
		})
	}
}
