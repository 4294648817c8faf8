package azure

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// Authentication methods, as AuthMethod names them.
const (
	AuthClientCertificate = "client certificate"
	AuthClientSecret      = "client secret"
	AuthOIDC              = "OIDC"
	AuthMSI               = "managed identity"
	AuthCLI               = "Azure CLI"
)

// AuthMethod returns the one authentication method a Client uses: the first
// of these that is configured. Only that one is tried; a failure never falls
// through to the next, so a mistake is reported rather than hidden by a
// different identity.
//
//  1. Client certificate: client_certificate (ARM_CLIENT_CERTIFICATE, a
//     base64 PKCS#12 bundle) or client_certificate_path
//     (ARM_CLIENT_CERTIFICATE_PATH, a .pfx or PEM file), with
//     client_certificate_password when the bundle is encrypted.
//  2. Client secret: client_secret (ARM_CLIENT_SECRET) or
//     client_secret_file_path (ARM_CLIENT_SECRET_FILE_PATH).
//  3. OIDC, when use_oidc or use_aks_workload_identity is true; the token
//     comes from the first source OIDCSource finds.
//  4. Managed identity, when use_msi is true: the host's own endpoint, or
//     msi_endpoint (ARM_MSI_ENDPOINT) asked with msi_api_version
//     (ARM_MSI_API_VERSION; a version alone is asked of IMDS, as azurerm
//     does).
//  5. The Azure CLI, when use_cli is true (the default).
//
// This is azurerm v4's order. Unlike azurerm, a certificate or secret given
// without tenant_id or client_id is an error rather than skipped: a
// credential the user meant to use is never silently replaced by the CLI's.
//
// Every setting is read from its provider argument when that is set, else
// from its environment variable: the provider overlays its arguments on what
// ConfigFromEnv read; jitd's flags override the same way. client_id and client_secret may
// also come from files (client_id_file_path, client_secret_file_path) and,
// with use_aks_workload_identity, tenant_id and client_id from AZURE_TENANT_ID
// and AZURE_CLIENT_ID: a value given twice must be the same, else Validate
// names both.
func (c Config) AuthMethod() string {
	switch {
	case c.ClientCertificate != "" || c.ClientCertificatePath != "":
		return AuthClientCertificate
	case c.ClientSecret != "" || c.ClientSecretFilePath != "":
		return AuthClientSecret
	case c.UseOIDC || c.UseAKSWorkloadIdentity:
		return AuthOIDC
	case c.UseMSI:
		return AuthMSI
	case c.UseCLI:
		return AuthCLI
	}
	return ""
}

// Sources of the OIDC token, as OIDCSource names them.
const (
	OIDCFromToken       = "oidc_token"
	OIDCFromFile        = "oidc_token_file_path"
	OIDCFromAzureDevOps = "Azure DevOps"
	OIDCFromRequestURL  = "oidc_request_url"
)

// OIDCSource returns where OIDC authentication takes its token from, the
// first configured of:
//
//  1. oidc_token (ARM_OIDC_TOKEN), the token itself;
//  2. oidc_token_file_path (ARM_OIDC_TOKEN_FILE_PATH), or with
//     use_aks_workload_identity the webhook's AZURE_FEDERATED_TOKEN_FILE,
//     read again for every new access token (the file rotates);
//  3. Azure DevOps: oidc_request_url and oidc_request_token (or the
//     pipeline's SYSTEM_OIDCREQUESTURI and SYSTEM_ACCESSTOKEN) with
//     ado_pipeline_service_connection_id (ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID
//     or ARM_OIDC_AZURE_SERVICE_CONNECTION_ID): POST, answer {"oidcToken"};
//  4. GitHub Actions style: oidc_request_url and oidc_request_token (or
//     ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN): GET, answer {"value"}.
//
// It returns "" when none is configured. The request URL variables are read
// in the order ARM_OIDC_REQUEST_*, ACTIONS_ID_TOKEN_REQUEST_*, then Azure
// DevOps' SYSTEM_*.
func (c Config) OIDCSource() string {
	hasRequest := c.OIDCRequestURL != "" && c.OIDCRequestToken != ""
	switch {
	case c.OIDCToken != "":
		return OIDCFromToken
	case c.OIDCTokenFilePath != "":
		return OIDCFromFile
	case hasRequest && c.ADOPipelineServiceConnectionID != "":
		return OIDCFromAzureDevOps
	case hasRequest:
		return OIDCFromRequestURL
	}
	return ""
}

// resolve returns c with the values that come from elsewhere filled in:
// client_id and client_secret from their files, and with
// use_aks_workload_identity the tenant, client id and token file the webhook
// injects. A value given twice must agree. The result is what the
// credential is built from; errors are *ConfigError, joined.
func (c Config) resolve() (Config, error) {
	var errs []error
	add := func(field, env, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, EnvVar: env, Message: fmt.Sprintf(format, args...)})
	}
	r := c
	if c.ClientIDFilePath != "" {
		v, err := readSettingFile(c.ClientIDFilePath)
		switch {
		case err != nil:
			add("client_id_file_path", EnvClientIDFilePath, "%v", err)
		case r.ClientID != "" && !strings.EqualFold(r.ClientID, v):
			add("client_id_file_path", EnvClientIDFilePath, "the file's client id %q differs from client_id (%s) %q; remove one or make them match",
				v, EnvClientID, r.ClientID)
		default:
			r.ClientID = v
		}
	}
	if c.ClientSecretFilePath != "" {
		v, err := readSettingFile(c.ClientSecretFilePath)
		switch {
		case err != nil:
			add("client_secret_file_path", EnvClientSecretFilePath, "%v", err)
		case r.ClientSecret != "" && r.ClientSecret != v:
			// Neither secret is quoted.
			add("client_secret_file_path", EnvClientSecretFilePath, "the file's secret differs from client_secret (%s); remove one or make them match", EnvClientSecret)
		default:
			r.ClientSecret = v
		}
	}
	if c.UseAKSWorkloadIdentity {
		if c.AKSTenantID != "" {
			if r.TenantID != "" && !strings.EqualFold(r.TenantID, c.AKSTenantID) {
				add("tenant_id", EnvTenantID, "%q differs from AKS workload identity's %s %q; remove one, make them match, or disable use_aks_workload_identity",
					r.TenantID, EnvAKSTenantID, c.AKSTenantID)
			}
			r.TenantID = c.AKSTenantID
		}
		if c.AKSClientID != "" {
			if r.ClientID != "" && !strings.EqualFold(r.ClientID, c.AKSClientID) {
				add("client_id", EnvClientID, "%q differs from AKS workload identity's %s %q; remove one, make them match, or disable use_aks_workload_identity",
					r.ClientID, EnvAKSClientID, c.AKSClientID)
			}
			r.ClientID = c.AKSClientID
		}
		switch {
		case c.AKSFederatedTokenFile == "" && c.OIDCSource() == "":
			add("use_aks_workload_identity", EnvUseAKSWorkloadIdentity, "%s is not set: is the pod labelled azure.workload.identity/use: \"true\" and its service account annotated with the client id?",
				EnvAKSFederatedTokenFile)
		case c.AKSFederatedTokenFile == "":
		case r.OIDCTokenFilePath != "" && r.OIDCTokenFilePath != c.AKSFederatedTokenFile:
			add("oidc_token_file_path", EnvOIDCTokenFilePath, "names %s but AKS workload identity's %s names %s; remove one or disable use_aks_workload_identity",
				r.OIDCTokenFilePath, EnvAKSFederatedTokenFile, c.AKSFederatedTokenFile)
		default:
			r.OIDCTokenFilePath = c.AKSFederatedTokenFile
		}
	}
	return r, errors.Join(errs...)
}

// readSettingFile reads a file holding one value (a client id or secret),
// without the surrounding white space a text editor or `echo` adds.
func readSettingFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot be read: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("the file %s is empty", path)
	}
	return v, nil
}

// checkMSIEndpoint returns what is wrong with a custom managed identity
// endpoint, or "". Plain http is allowed only to the host itself or a
// link-local address (IMDS is http://169.254.169.254, App Service's endpoint
// http://127.0.0.1:port): a token must never cross a network in clear.
func checkMSIEndpoint(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Sprintf("must be an http(s) URL such as http://169.254.169.254/metadata/identity/oauth2/token, got %q", s)
	}
	if u.Scheme == "http" && !isLocalHost(u.Hostname()) {
		return fmt.Sprintf("%q uses plain http to a host that is neither this machine nor link-local; use https", s)
	}
	return ""
}

func isLocalHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast())
}

// Warnings names the authentication settings c has that take no effect
// because another method wins or a setting they go with is missing, as
// azurerm silently ignores them. They are warnings, not errors: a pipeline
// set up for several tools often carries more than one tool reads.
func (c Config) Warnings() []string {
	method := c.AuthMethod()
	var out []string
	unused := func(setting, env, why string) {
		out = append(out, fmt.Sprintf("%s (%s) is set but has no effect: %s", setting, env, why))
	}
	won := fmt.Sprintf("%s authentication is used (see the order in the authentication guide)", method)
	if method != AuthMSI {
		if c.MSIEndpoint != "" {
			unused("msi_endpoint", EnvMSIEndpoint, won)
		}
		if c.MSIAPIVersion != "" {
			unused("msi_api_version", EnvMSIAPIVersion, won)
		}
	}
	if c.ClientCertificatePassword != "" && method != AuthClientCertificate {
		unused("client_certificate_password", EnvClientCertificatePass, "no client certificate is configured")
	}
	if c.ADOPipelineServiceConnectionID != "" && (method != AuthOIDC || c.OIDCSource() != OIDCFromAzureDevOps) {
		why := won
		if method == AuthOIDC {
			why = "OIDC takes its token from " + c.OIDCSource() + ", which comes before Azure DevOps (or SYSTEM_OIDCREQUESTURI and SYSTEM_ACCESSTOKEN are missing)"
		}
		unused("ado_pipeline_service_connection_id", EnvADOServiceConnectionID, why)
	}
	if (method == AuthClientCertificate || method == AuthClientSecret) && (c.UseOIDC || c.UseAKSWorkloadIdentity || c.UseMSI) {
		out = append(out, fmt.Sprintf("%s authentication is used although use_oidc, use_aks_workload_identity or use_msi is enabled: a configured certificate or secret comes first, as in azurerm; unset it to use the other method", method))
	}
	return out
}
