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
// When several authentication methods are configured, the first usable one
// in azurerm's order wins, and only it is tried: a client secret (client_id
// and client_secret), then OIDC (use_oidc; the token, the token file, then
// the request URL), then managed identity (use_msi), then the Azure CLI
// (use_cli, on by default).
type Config struct {
	SubscriptionID string
	TenantID       string
	ClientID       string
	ClientSecret   string // sensitive

	UseOIDC           bool
	OIDCToken         string // sensitive
	OIDCTokenFilePath string
	OIDCRequestURL    string // GitHub Actions: ACTIONS_ID_TOKEN_REQUEST_URL
	OIDCRequestToken  string // sensitive; ACTIONS_ID_TOKEN_REQUEST_TOKEN

	UseMSI bool
	UseCLI bool // azurerm defaults this to true

	Environment  string // public (default), usgovernment, china
	MetadataHost string // ARM_METADATA_HOSTNAME; wins over Environment
}

// Environment variables, as the azurerm provider names them.
const (
	EnvSubscriptionID    = "ARM_SUBSCRIPTION_ID"
	EnvTenantID          = "ARM_TENANT_ID"
	EnvClientID          = "ARM_CLIENT_ID"
	EnvClientSecret      = "ARM_CLIENT_SECRET"
	EnvUseOIDC           = "ARM_USE_OIDC"
	EnvOIDCToken         = "ARM_OIDC_TOKEN"
	EnvOIDCTokenFilePath = "ARM_OIDC_TOKEN_FILE_PATH"
	EnvOIDCRequestURL    = "ARM_OIDC_REQUEST_URL"
	EnvOIDCRequestToken  = "ARM_OIDC_REQUEST_TOKEN"
	EnvActionsRequestURL = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvActionsRequestTok = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
	EnvUseMSI            = "ARM_USE_MSI"
	EnvUseCLI            = "ARM_USE_CLI"
	EnvEnvironment       = "ARM_ENVIRONMENT"
	EnvMetadataHost      = "ARM_METADATA_HOSTNAME"
)

// ConfigFromEnv reads the azurerm provider's environment variables through
// getenv (os.Getenv in production). ARM_OIDC_REQUEST_URL/TOKEN fall back to
// the variables GitHub Actions sets. ARM_USE_CLI defaults to true, the other
// booleans to false; booleans are parsed like strconv.ParseBool and a
// malformed one is a *ConfigError naming the variable (all of them, joined).
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
	c := Config{
		SubscriptionID:    get(EnvSubscriptionID),
		TenantID:          get(EnvTenantID),
		ClientID:          get(EnvClientID),
		ClientSecret:      getenv(EnvClientSecret), // secrets are taken verbatim
		OIDCToken:         getenv(EnvOIDCToken),
		OIDCTokenFilePath: get(EnvOIDCTokenFilePath),
		OIDCRequestURL:    firstOf(EnvOIDCRequestURL, EnvActionsRequestURL),
		OIDCRequestToken:  getenv(EnvOIDCRequestToken),
		Environment:       get(EnvEnvironment),
		MetadataHost:      get(EnvMetadataHost),
	}
	if c.OIDCRequestToken == "" {
		c.OIDCRequestToken = getenv(EnvActionsRequestTok)
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

// Authentication methods, in the order azurerm tries them.
const (
	authClientSecret = "client secret"
	authOIDC         = "OIDC"
	authMSI          = "managed identity"
	authCLI          = "Azure CLI"
)

// authMethod returns the authentication method NewClient will use: the
// first one that is both enabled and configured, in azurerm's order: client
// secret (client_id and client_secret set), OIDC (use_oidc), managed
// identity (use_msi), Azure CLI (use_cli). "" when none is.
func (c Config) authMethod() string {
	switch {
	case c.ClientSecret != "":
		return authClientSecret
	case c.UseOIDC:
		return authOIDC
	case c.UseMSI:
		return authMSI
	case c.UseCLI:
		return authCLI
	}
	return ""
}

// environmentAliases maps every spelling azurerm accepts to the canonical
// name used here.
var environmentAliases = map[string]string{
	"":                       "public",
	"public":                 "public",
	"azurecloud":             "public",
	"azurepublic":            "public",
	"azurepubliccloud":       "public",
	"usgovernment":           "usgovernment",
	"usgovernmentl4":         "usgovernment",
	"azureusgovernment":      "usgovernment",
	"azureusgovernmentcloud": "usgovernment",
	"china":                  "china",
	"azurechina":             "china",
	"azurechinacloud":        "china",
}

// canonicalEnvironment returns the canonical name of an environment
// ("public", "usgovernment", "china") and whether it is known.
func canonicalEnvironment(name string) (string, bool) {
	n, ok := environmentAliases[strings.ToLower(strings.TrimSpace(name))]
	return n, ok
}

// Validate reports every problem with c at once, as errors.Join of
// *ConfigError.
//
// Rules: subscription_id is required and a GUID. tenant_id is required for
// client secret and OIDC authentication and is then a GUID or a tenant's
// domain name (contoso.onmicrosoft.com); the multi-tenant aliases (common,
// organizations, consumers) are refused because app-only tokens need a real
// tenant. client_id is a GUID, required with a client secret or OIDC.
// OIDC needs oidc_token, oidc_token_file_path, or oidc_request_url together
// with oidc_request_token. At least one authentication method must be
// usable. environment is public, usgovernment or china (or an azurerm
// alias such as AzureCloud); metadata_host is a host[:port] without scheme
// or path.
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

	method := c.authMethod()
	if !checkAuth {
		method = "token"
	}
	needsApp := method == authClientSecret || method == authOIDC
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

	if c.UseOIDC && method == authOIDC {
		hasURL, hasTok := c.OIDCRequestURL != "", c.OIDCRequestToken != ""
		switch {
		case c.OIDCToken != "" || c.OIDCTokenFilePath != "":
		case hasURL && !hasTok:
			add("oidc_request_token", EnvOIDCRequestToken, "is required with oidc_request_url (in GitHub Actions, grant the job 'id-token: write')")
		case hasTok && !hasURL:
			add("oidc_request_url", EnvOIDCRequestURL, "is required with oidc_request_token")
		case !hasURL:
			add("use_oidc", EnvUseOIDC, "OIDC needs oidc_token (%s), oidc_token_file_path (%s), or oidc_request_url and oidc_request_token (%s, %s)",
				EnvOIDCToken, EnvOIDCTokenFilePath, EnvOIDCRequestURL, EnvOIDCRequestToken)
		}
		if hasURL {
			if u, err := url.Parse(c.OIDCRequestURL); err != nil || u.Scheme != "https" || u.Host == "" {
				add("oidc_request_url", EnvOIDCRequestURL, "must be an https URL")
			}
		}
	}

	if method == "" {
		add("use_cli", EnvUseCLI, "no authentication method is enabled: set client_id and client_secret, or enable use_oidc, use_msi or use_cli")
	}

	if _, ok := canonicalEnvironment(c.Environment); !ok {
		add("environment", EnvEnvironment, "must be one of public, usgovernment or china, got %q", c.Environment)
	}
	if c.MetadataHost != "" {
		if msg := checkMetadataHost(c.MetadataHost); msg != "" {
			add("metadata_host", EnvMetadataHost, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

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
