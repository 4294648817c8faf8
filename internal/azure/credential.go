package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// newCredential builds the credential of c.AuthMethod() (see there for the
// order); c must have passed Validate.
func newCredential(c Config, cl Cloud) (azcore.TokenCredential, error) {
	c, err := c.resolve()
	if err != nil {
		return nil, err
	}
	opts := azcore.ClientOptions{
		Cloud: cl.configuration(),
		// Token requests are retried like ARM requests, except that an
		// untrusted certificate or an unknown host fails at once.
		Retry: policy.RetryOptions{ShouldRetry: shouldRetry},
	}
	var cred azcore.TokenCredential
	method := c.AuthMethod()
	detail := method
	switch method {
	case AuthClientCertificate:
		var cc clientCertificate
		if cc, err = c.certificate(); err != nil {
			return nil, err
		}
		cred, err = azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, cc.certs, cc.key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cl.Custom})
	case AuthClientSecret:
		cred, err = azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cl.Custom})
	case AuthOIDC:
		a := &oidcAssertion{source: c.OIDCSource(), token: c.OIDCToken, file: c.OIDCTokenFilePath,
			requestURL: c.OIDCRequestURL, requestToken: c.OIDCRequestToken,
			serviceConnectionID: c.ADOPipelineServiceConnectionID, hc: newHTTPClient()}
		detail = method + " (" + a.source + ")"
		cred, err = azidentity.NewClientAssertionCredential(c.TenantID, c.ClientID, a.get,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cl.Custom})
	case AuthMSI:
		if c.MSIEndpoint != "" || c.MSIAPIVersion != "" {
			// As azurerm: a version without an endpoint is asked of IMDS.
			cred = newMSIEndpointCredential(c)
			break
		}
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if c.ClientID != "" {
			mo.ID = azidentity.ClientID(c.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mo)
	case AuthCLI:
		cred, err = azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: c.TenantID})
	default:
		return nil, &ConfigError{Field: "use_cli", EnvVar: EnvUseCLI,
			Message: "no authentication method is enabled: set client_id with client_certificate_path or client_secret, or enable use_oidc, use_aks_workload_identity, use_msi or use_cli"}
	}
	if err != nil {
		return nil, fmt.Errorf("configuring %s authentication: %w", method, err)
	}
	return &classifiedCredential{
		inner:    cred,
		method:   detail,
		clientID: c.ClientID,
		tenantID: c.TenantID,
		secrets: []string{c.ClientSecret, c.OIDCToken, c.OIDCRequestToken, c.ClientCertificatePassword,
			c.IdentityHeader, c.ClientCertificate},
	}, nil
}

// classifiedCredential turns token acquisition failures into
// credentialErrors: classified (unauthorized or unavailable) and described
// without any secret, because azidentity's own errors quote whole token
// endpoint responses.
type classifiedCredential struct {
	inner              azcore.TokenCredential
	method             string // "" for a credential the caller supplied
	clientID, tenantID string
	secrets            []string
}

// GetToken implements azcore.TokenCredential.
func (c *classifiedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.inner.GetToken(ctx, opts)
	if err == nil || ctx.Err() != nil {
		return tok, err
	}
	return tok, c.classify(err)
}

func (c *classifiedCredential) classify(err error) error {
	kind, detail := KindUnauthorized, authFailureMessage(err)
	switch {
	case isCertificateError(err):
		kind, detail = KindUnavailable, transportMessage(err)
	case detail != "":
	case isNetworkFailureText(err.Error()):
		kind, detail = KindUnavailable, firstLine(err.Error())
	default:
		detail = firstLine(err.Error())
	}
	who := "authentication"
	if c.method != "" {
		who = c.method + " " + who
	}
	if c.clientID != "" {
		who += " as client " + c.clientID
	}
	if c.tenantID != "" {
		who += " in tenant " + c.tenantID
	}
	msg := redact(fmt.Sprintf("%s failed: %s", who, detail), c.secrets)
	return &credentialError{kind: kind, message: msg, err: err}
}

// isNetworkFailureText recognises the transport failures MSAL reports as
// text only.
func isNetworkFailureText(s string) bool {
	for _, marker := range []string{"dial tcp", "connection refused", "no such host", "i/o timeout", "connection reset", "EOF"} {
		if strings.Contains(s, marker) {
			return true
		}
	}
	return false
}

// firstLine keeps the first non-empty line of a multi-line SDK message, which
// is the one that says what went wrong; the rest is troubleshooting links.
func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return s
}

// redact removes every non-empty secret from s.
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}

// oidcAssertion supplies the federated token that a ClientAssertionCredential
// exchanges for an Entra ID token, from the source Config.OIDCSource chose: a
// literal token, a token file, Azure DevOps' OIDC endpoint or a GitHub
// Actions style token endpoint. It runs each time the credential needs a new
// token, so a rotated file is picked up and a short-lived token is never
// reused.
type oidcAssertion struct {
	source              string
	token               string
	file                string
	requestURL          string
	requestToken        string
	serviceConnectionID string
	hc                  *http.Client
}

// errNoOIDCSource is returned when OIDC has no token source; Validate
// reports it first, so only a Config built past Validate sees it.
var errNoOIDCSource = errors.New("no OIDC token source is configured")

// oidcAudience is the audience Entra ID expects on federated credentials.
const oidcAudience = "api://AzureADTokenExchange"

// adoOIDCAPIVersion is the Azure DevOps REST version of the OIDC token
// request.
const adoOIDCAPIVersion = "7.1"

func (a *oidcAssertion) get(ctx context.Context) (string, error) {
	switch a.source {
	case OIDCFromToken:
		return a.token, nil
	case OIDCFromFile:
		b, err := os.ReadFile(a.file)
		if err != nil {
			return "", fmt.Errorf("reading the OIDC token file (%s or %s): %w", EnvOIDCTokenFilePath, EnvAKSFederatedTokenFile, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("the OIDC token file %s is empty", a.file)
		}
		return tok, nil
	case OIDCFromAzureDevOps:
		return a.requestADO(ctx)
	case OIDCFromRequestURL:
		return a.request(ctx)
	}
	return "", errNoOIDCSource
}

// request asks a GitHub Actions style ID token endpoint for a token with
// Entra ID's audience: GET ?audience=…, answer {"value": …}.
func (a *oidcAssertion) request(ctx context.Context) (string, error) {
	u, err := url.Parse(a.requestURL)
	if err != nil {
		return "", fmt.Errorf("parsing the OIDC request URL (%s): %w", EnvOIDCRequestURL, err)
	}
	q := u.Query()
	q.Set("audience", oidcAudience)
	u.RawQuery = q.Encode()
	var out struct {
		Value string `json:"value"`
	}
	if err := a.call(ctx, http.MethodGet, u, "the job's id-token permission", &out); err != nil {
		return "", err
	}
	return out.Value, nil
}

// requestADO asks Azure DevOps' OIDC endpoint (SYSTEM_OIDCREQUESTURI) for a
// token of the pipeline's service connection: POST
// ?api-version=7.1&serviceConnectionId=…, answer {"oidcToken": …}.
func (a *oidcAssertion) requestADO(ctx context.Context) (string, error) {
	u, err := url.Parse(a.requestURL)
	if err != nil {
		return "", fmt.Errorf("parsing the OIDC request URL (%s): %w", EnvADORequestURL, err)
	}
	q := u.Query()
	if q.Get("api-version") == "" {
		q.Set("api-version", adoOIDCAPIVersion)
	}
	q.Set("serviceConnectionId", a.serviceConnectionID)
	u.RawQuery = q.Encode()
	var out struct {
		OIDCToken string `json:"oidcToken"`
	}
	if err := a.call(ctx, http.MethodPost, u, "that "+EnvADORequestToken+" is mapped into the step and the service connection id ("+EnvADOServiceConnectionID+") is right", &out); err != nil {
		return "", err
	}
	return out.OIDCToken, nil
}

// call sends one token request and decodes the answer into out, whose one
// field must then be non-empty (checked by the caller through the value).
func (a *oidcAssertion) call(ctx context.Context, method string, u *url.URL, hint string, out any) error {
	// Only the host goes into messages: the rest of the URL identifies the
	// pipeline run.
	where := u.Host
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building the OIDC token request to %s: %w", where, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.requestToken)
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("requesting an OIDC token from %s: %s", where, rootCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the OIDC token from %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("requesting an OIDC token from %s: HTTP %d (check %s)", where, resp.StatusCode, hint)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding the OIDC token from %s: %w", where, err)
	}
	if b, _ := json.Marshal(out); strings.Contains(string(b), `:""`) {
		return fmt.Errorf("the OIDC token endpoint %s returned no token", where)
	}
	return nil
}
