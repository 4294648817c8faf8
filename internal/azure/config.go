package azure

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Config is the connection configuration, named after the azurerm provider's
// settings so that the same environment works for both.
//
// Which authentication method wins when several are configured is decided in
// one place: Config.AuthMethod (config_auth.go), which also documents it.
type Config struct {
	SubscriptionID string
	TenantID       string
	ClientID       string
	// ClientIDFilePath names a file holding the client id; it must agree
	// with ClientID when both are set.
	ClientIDFilePath string
	ClientSecret     string // sensitive
	// ClientSecretFilePath names a file holding the client secret; it must
	// agree with ClientSecret when both are set.
	ClientSecretFilePath string

	// ClientCertificate is a base64-encoded PKCS#12 bundle (azurerm v4's
	// client_certificate); ClientCertificatePath a PKCS#12 (.pfx) or PEM
	// file. At most one of them.
	ClientCertificate         string // sensitive
	ClientCertificatePath     string
	ClientCertificatePassword string // sensitive

	UseOIDC           bool
	OIDCToken         string // sensitive
	OIDCTokenFilePath string
	// OIDCRequestURL and OIDCRequestToken come from GitHub Actions
	// (ACTIONS_ID_TOKEN_REQUEST_*) or Azure DevOps (SYSTEM_OIDCREQUESTURI,
	// SYSTEM_ACCESSTOKEN); with ADOPipelineServiceConnectionID set the URL
	// is asked as Azure DevOps asks it.
	OIDCRequestURL                 string
	OIDCRequestToken               string // sensitive
	ADOPipelineServiceConnectionID string

	// UseAKSWorkloadIdentity takes the tenant, client id and token file from
	// the variables the AKS workload identity webhook injects (AKS*).
	UseAKSWorkloadIdentity bool
	AKSTenantID            string // AZURE_TENANT_ID
	AKSClientID            string // AZURE_CLIENT_ID
	AKSFederatedTokenFile  string // AZURE_FEDERATED_TOKEN_FILE

	UseMSI bool
	// MSIEndpoint is a managed identity token endpoint to use instead of
	// the one the host provides (IMDS or App Service); MSIAPIVersion the
	// api-version asked of it.
	MSIEndpoint   string
	MSIAPIVersion string
	// IdentityHeader (IDENTITY_HEADER) is sent as X-IDENTITY-HEADER to a
	// custom MSIEndpoint, as App Service and Container Apps expect.
	IdentityHeader string // sensitive

	UseCLI bool // azurerm defaults this to true

	// AuxiliaryTenantIDs is azurerm's auxiliary_tenant_ids, which this
	// provider does not support: set, it is an error naming it.
	AuxiliaryTenantIDs string

	Environment  string // public (default), usgovernment, china and azurerm's aliases
	MetadataHost string // ARM_METADATA_HOSTNAME; wins over Environment
}

// Environment variables, as the azurerm provider names them.
const (
	EnvSubscriptionID         = "ARM_SUBSCRIPTION_ID"
	EnvTenantID               = "ARM_TENANT_ID"
	EnvClientID               = "ARM_CLIENT_ID"
	EnvClientIDFilePath       = "ARM_CLIENT_ID_FILE_PATH"
	EnvClientSecret           = "ARM_CLIENT_SECRET"
	EnvClientSecretFilePath   = "ARM_CLIENT_SECRET_FILE_PATH"
	EnvClientCertificate      = "ARM_CLIENT_CERTIFICATE"
	EnvClientCertificatePath  = "ARM_CLIENT_CERTIFICATE_PATH"
	EnvClientCertificatePass  = "ARM_CLIENT_CERTIFICATE_PASSWORD"
	EnvUseOIDC                = "ARM_USE_OIDC"
	EnvOIDCToken              = "ARM_OIDC_TOKEN"
	EnvOIDCTokenFilePath      = "ARM_OIDC_TOKEN_FILE_PATH"
	EnvOIDCRequestURL         = "ARM_OIDC_REQUEST_URL"
	EnvOIDCRequestToken       = "ARM_OIDC_REQUEST_TOKEN"
	EnvActionsRequestURL      = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvActionsRequestTok      = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
	EnvADORequestURL          = "SYSTEM_OIDCREQUESTURI"
	EnvADORequestToken        = "SYSTEM_ACCESSTOKEN"
	EnvADOServiceConnectionID = "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID"
	// EnvOIDCAzureServiceConnectionID is the azapi provider's name for the
	// same setting, which azurerm reads too.
	EnvOIDCAzureServiceConnectionID = "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID"
	EnvUseAKSWorkloadIdentity       = "ARM_USE_AKS_WORKLOAD_IDENTITY"
	EnvAKSTenantID                  = "AZURE_TENANT_ID"
	EnvAKSClientID                  = "AZURE_CLIENT_ID"
	EnvAKSFederatedTokenFile        = "AZURE_FEDERATED_TOKEN_FILE"
	EnvUseMSI                       = "ARM_USE_MSI"
	EnvMSIEndpoint                  = "ARM_MSI_ENDPOINT"
	EnvMSIAPIVersion                = "ARM_MSI_API_VERSION"
	EnvIdentityHeader               = "IDENTITY_HEADER"
	EnvUseCLI                       = "ARM_USE_CLI"
	EnvAuxiliaryTenantIDs           = "ARM_AUXILIARY_TENANT_IDS"
	EnvEnvironment                  = "ARM_ENVIRONMENT"
	EnvMetadataHost                 = "ARM_METADATA_HOSTNAME"
)

// ConfigFromEnv reads the azurerm provider's environment variables through
// getenv (os.Getenv in production). ARM_OIDC_REQUEST_URL/TOKEN fall back to
// the variables GitHub Actions sets, then to those Azure DevOps sets, as
// azurerm's do. ARM_USE_CLI defaults to true, the other booleans to false;
// booleans are parsed like strconv.ParseBool and a malformed one is a
// *ConfigError naming the variable (all of them, joined). Files named by the
// *_FILE_PATH variables are read later, by Validate and NewClient.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	firstOf := func(names ...string) string {
		for _, n := range names {
			if v := get(n); v != "" {
				return v
			}
		}
		return ""
	}
	// Secrets are taken verbatim, but a secret of spaces only is unset.
	secret := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); strings.TrimSpace(v) != "" {
				return v
			}
		}
		return ""
	}
	c := Config{
		SubscriptionID:                 get(EnvSubscriptionID),
		TenantID:                       get(EnvTenantID),
		ClientID:                       get(EnvClientID),
		ClientIDFilePath:               get(EnvClientIDFilePath),
		ClientSecret:                   secret(EnvClientSecret),
		ClientSecretFilePath:           get(EnvClientSecretFilePath),
		ClientCertificate:              get(EnvClientCertificate),
		ClientCertificatePath:          get(EnvClientCertificatePath),
		ClientCertificatePassword:      getenv(EnvClientCertificatePass),
		OIDCToken:                      secret(EnvOIDCToken),
		OIDCTokenFilePath:              get(EnvOIDCTokenFilePath),
		OIDCRequestURL:                 firstOf(EnvOIDCRequestURL, EnvActionsRequestURL, EnvADORequestURL),
		OIDCRequestToken:               secret(EnvOIDCRequestToken, EnvActionsRequestTok, EnvADORequestToken),
		ADOPipelineServiceConnectionID: firstOf(EnvADOServiceConnectionID, EnvOIDCAzureServiceConnectionID),
		AKSTenantID:                    get(EnvAKSTenantID),
		AKSClientID:                    get(EnvAKSClientID),
		AKSFederatedTokenFile:          get(EnvAKSFederatedTokenFile),
		MSIEndpoint:                    get(EnvMSIEndpoint),
		MSIAPIVersion:                  get(EnvMSIAPIVersion),
		IdentityHeader:                 getenv(EnvIdentityHeader),
		AuxiliaryTenantIDs:             get(EnvAuxiliaryTenantIDs),
		Environment:                    get(EnvEnvironment),
		MetadataHost:                   get(EnvMetadataHost),
	}

	var errs []error
	parseBool := func(field, name string, def bool) bool {
		v := get(name)
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, &ConfigError{Field: field, EnvVar: name,
				Message: fmt.Sprintf("%q is not a boolean (use true or false)", v)})
			return def
		}
		return b
	}
	c.UseOIDC = parseBool("use_oidc", EnvUseOIDC, false)
	c.UseAKSWorkloadIdentity = parseBool("use_aks_workload_identity", EnvUseAKSWorkloadIdentity, false)
	c.UseMSI = parseBool("use_msi", EnvUseMSI, false)
	c.UseCLI = parseBool("use_cli", EnvUseCLI, true)
	return c, errors.Join(errs...)
}

// ConfigError is one problem with a Config: the provider attribute and the
// environment variable that set it, so a user knows what to change.
type ConfigError struct {
	Field   string // provider attribute name, e.g. "subscription_id"
	EnvVar  string // e.g. "ARM_SUBSCRIPTION_ID"
	Message string
}

// Error implements error. The message never contains a sensitive value.
func (e *ConfigError) Error() string {
	switch {
	case e.Field != "" && e.EnvVar != "":
		return fmt.Sprintf("%s (%s): %s", e.Field, e.EnvVar, e.Message)
	case e.Field != "":
		return e.Field + ": " + e.Message
	case e.EnvVar != "":
		return e.EnvVar + ": " + e.Message
	}
	return e.Message
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// domainLabel is one DNS label of a tenant's domain name.
var domainLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func isGUID(s string) bool { return guidPattern.MatchString(s) }

// isTenantDomain reports whether s is a fully qualified domain name such as
// contoso.onmicrosoft.com, which Entra ID accepts in place of the tenant's
// GUID.
func isTenantDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !domainLabel.MatchString(label) {
			return false
		}
	}
	return true
}

// Validate reports every problem with c at once, as errors.Join of
// *ConfigError. It reads the files c names (client id, client secret,
// certificate) to check them, and makes no request.
//
// Rules: subscription_id is required and a GUID. tenant_id is required for
// the methods that authenticate an application (certificate, secret, OIDC)
// and is then a GUID or a tenant's domain name (contoso.onmicrosoft.com);
// the multi-tenant aliases (common, organizations, consumers) are refused
// because app-only tokens need a real tenant. client_id is a GUID, required
// with the same methods. A value given twice (argument and file, or AKS
// workload identity's variables) must agree. OIDC needs a token source (see
// AuthMethod). At least one authentication method must be usable.
// environment is one azurerm v4 accepts (see environmentAliases);
// metadata_host is a host[:port] without scheme or path. Settings of azurerm
// this provider does not support are errors that name them.
func (c Config) Validate() error { return c.validate(true) }

// validate is Validate; without checkAuth it skips the authentication
// rules, for a Client given a ready-made credential.
func (c Config) validate(checkAuth bool) error {
	var errs []error
	add := func(field, env, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, EnvVar: env, Message: fmt.Sprintf(format, args...)})
	}

	switch {
	case c.SubscriptionID == "":
		add("subscription_id", EnvSubscriptionID, "is required")
	case !isGUID(c.SubscriptionID):
		add("subscription_id", EnvSubscriptionID, "must be a GUID, got %q", c.SubscriptionID)
	}
	if c.AuxiliaryTenantIDs != "" {
		add("auxiliary_tenant_ids", EnvAuxiliaryTenantIDs, "is not supported: this provider writes only to NSGs its credential's own tenant can reach; unset it (it is azurerm's setting for cross-tenant references)")
	}

	if checkAuth {
		r, resolveErr := c.resolve()
		if resolveErr != nil {
			errs = append(errs, resolveErr)
		}
		errs = append(errs, r.validateAuth()...)
	}

	if _, ok := canonicalEnvironment(c.Environment); !ok {
		add("environment", EnvEnvironment, "%s", environmentMessage(c.Environment))
	}
	if c.MetadataHost != "" {
		if msg := checkMetadataHost(c.MetadataHost); msg != "" {
			add("metadata_host", EnvMetadataHost, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

// validateAuth checks the authentication settings of a resolved Config.
func (c Config) validateAuth() []error {
	var errs []error
	add := func(field, env, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, EnvVar: env, Message: fmt.Sprintf(format, args...)})
	}
	method := c.AuthMethod()
	needsApp := method == AuthClientCertificate || method == AuthClientSecret || method == AuthOIDC
	switch {
	case c.TenantID == "" && needsApp:
		add("tenant_id", EnvTenantID, "is required for %s authentication", method)
	case c.TenantID == "":
	case isGUID(c.TenantID):
	case isMultiTenantAlias(c.TenantID):
		add("tenant_id", EnvTenantID, "%q is a multi-tenant alias; use the tenant's GUID or domain name", c.TenantID)
	case !isTenantDomain(c.TenantID):
		add("tenant_id", EnvTenantID, "must be a GUID or a domain name such as contoso.onmicrosoft.com, got %q", c.TenantID)
	}

	switch {
	case c.ClientID == "" && needsApp:
		add("client_id", EnvClientID, "is required for %s authentication", method)
	case c.ClientID != "" && !isGUID(c.ClientID):
		add("client_id", EnvClientID, "must be a GUID (the application's client ID), got %q", c.ClientID)
	}

	if c.ClientCertificate != "" && c.ClientCertificatePath != "" {
		add("client_certificate", EnvClientCertificate, "set either client_certificate (%s) or client_certificate_path (%s), not both",
			EnvClientCertificate, EnvClientCertificatePath)
	}
	if method == AuthClientCertificate {
		if _, err := c.certificate(); err != nil {
			errs = append(errs, err)
		}
	}

	if method == AuthOIDC {
		hasURL, hasTok := c.OIDCRequestURL != "", c.OIDCRequestToken != ""
		switch c.OIDCSource() {
		case OIDCFromToken, OIDCFromFile:
		case OIDCFromAzureDevOps, OIDCFromRequestURL:
			if u, err := url.Parse(c.OIDCRequestURL); err != nil || u.Scheme != "https" || u.Host == "" {
				add("oidc_request_url", EnvOIDCRequestURL, "must be an https URL")
			}
		case "":
			switch {
			case hasURL && !hasTok:
				add("oidc_request_token", EnvOIDCRequestToken, "is required with oidc_request_url (in GitHub Actions, grant the job 'id-token: write'; in Azure DevOps, map SYSTEM_ACCESSTOKEN into the step's environment)")
			case hasTok && !hasURL:
				add("oidc_request_url", EnvOIDCRequestURL, "is required with oidc_request_token")
			default:
				add("use_oidc", EnvUseOIDC, "OIDC needs oidc_token (%s), oidc_token_file_path (%s), AKS workload identity's %s, or oidc_request_url and oidc_request_token (%s, %s; or GitHub Actions' or Azure DevOps' own variables)",
					EnvOIDCToken, EnvOIDCTokenFilePath, EnvAKSFederatedTokenFile, EnvOIDCRequestURL, EnvOIDCRequestToken)
			}
		}
	}

	if method == AuthMSI && c.MSIEndpoint != "" {
		if msg := checkMSIEndpoint(c.MSIEndpoint); msg != "" {
			add("msi_endpoint", EnvMSIEndpoint, "%s", msg)
		}
	}
	if c.MSIAPIVersion != "" && !apiVersionPattern.MatchString(c.MSIAPIVersion) {
		add("msi_api_version", EnvMSIAPIVersion, "must be a date such as 2018-02-01 or 2019-08-01, got %q", c.MSIAPIVersion)
	}

	if method == "" {
		add("use_cli", EnvUseCLI, "no authentication method is enabled: set client_id with client_certificate_path or client_secret, or enable use_oidc, use_aks_workload_identity, use_msi or use_cli")
	}
	return errs
}

// apiVersionPattern is an Azure api-version: a date, perhaps with a suffix
// such as -preview.
var apiVersionPattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-[a-z]+)?$`)

func isMultiTenantAlias(t string) bool {
	switch strings.ToLower(t) {
	case "common", "organizations", "consumers":
		return true
	}
	return false
}

// checkMetadataHost returns what is wrong with a metadata host, or "".
func checkMetadataHost(h string) string {
	if strings.Contains(h, "://") {
		return fmt.Sprintf("must be a host name without scheme (e.g. management.azure.com), got %q", h)
	}
	u, err := url.Parse("https://" + h)
	if err != nil || u.Host != h || u.Hostname() == "" || u.User != nil {
		return fmt.Sprintf("must be a host name with an optional port and no path, got %q", h)
	}
	return ""
}
