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

// newCredential builds the credential for the first usable authentication
// method in azurerm's order (see Config.authMethod).
func newCredential(c Config, cl Cloud) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{
		Cloud: cl.configuration(),
		// Token requests are retried like ARM requests, except that an
		// untrusted certificate or an unknown host fails at once.
		Retry: policy.RetryOptions{ShouldRetry: shouldRetry},
	}
	var (
		cred azcore.TokenCredential
		err  error
	)
	method := c.authMethod()
	switch method {
	case authClientSecret:
		cred, err = azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cl.Custom})
	case authOIDC:
		a := &oidcAssertion{token: c.OIDCToken, file: c.OIDCTokenFilePath, requestURL: c.OIDCRequestURL,
			requestToken: c.OIDCRequestToken, hc: newHTTPClient()}
		cred, err = azidentity.NewClientAssertionCredential(c.TenantID, c.ClientID, a.get,
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cl.Custom})
	case authMSI:
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if c.ClientID != "" {
			mo.ID = azidentity.ClientID(c.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mo)
	case authCLI:
		cred, err = azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: c.TenantID})
	default:
		return nil, &ConfigError{Field: "use_cli", EnvVar: EnvUseCLI,
			Message: "no authentication method is enabled: set client_id and client_secret, or enable use_oidc, use_msi or use_cli"}
	}
	if err != nil {
		return nil, fmt.Errorf("configuring %s authentication: %w", method, err)
	}
	return &classifiedCredential{
		inner:    cred,
		method:   method,
		clientID: c.ClientID,
		tenantID: c.TenantID,
		secrets:  []string{c.ClientSecret, c.OIDCToken, c.OIDCRequestToken},
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
// exchanges for an Entra ID token, from the first source configured: a
// literal token, a token file, or the GitHub Actions token endpoint. It runs
// each time the credential needs a new token, so a rotated file is picked up
// and a short-lived GitHub token is never reused.
type oidcAssertion struct {
	token        string
	file         string
	requestURL   string
	requestToken string
	hc           *http.Client
}

// oidcAudience is the audience Entra ID expects on federated credentials.
const oidcAudience = "api://AzureADTokenExchange"

func (a *oidcAssertion) get(ctx context.Context) (string, error) {
	switch {
	case a.token != "":
		return a.token, nil
	case a.file != "":
		b, err := os.ReadFile(a.file)
		if err != nil {
			return "", fmt.Errorf("reading the OIDC token file (%s): %w", EnvOIDCTokenFilePath, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("the OIDC token file %s (%s) is empty", a.file, EnvOIDCTokenFilePath)
		}
		return tok, nil
	case a.requestURL != "":
		return a.request(ctx)
	}
	return "", errors.New("no OIDC token source is configured")
}

// request asks the GitHub Actions ID token endpoint for a token with Entra
// ID's audience.
func (a *oidcAssertion) request(ctx context.Context) (string, error) {
	u, err := url.Parse(a.requestURL)
	if err != nil {
		return "", fmt.Errorf("parsing the OIDC request URL (%s): %w", EnvOIDCRequestURL, err)
	}
	q := u.Query()
	q.Set("audience", oidcAudience)
	u.RawQuery = q.Encode()
	// Only the host goes into messages: the rest of the URL identifies the
	// workflow run.
	where := u.Host

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("building the OIDC token request to %s: %w", where, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.requestToken)
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("requesting an OIDC token from %s: %s", where, rootCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading the OIDC token from %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("requesting an OIDC token from %s: HTTP %d (check %s and the job's id-token permission)",
			where, resp.StatusCode, EnvOIDCRequestToken)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", fmt.Errorf("decoding the OIDC token from %s: %w", where, err)
	}
	if out.Value == "" {
		return "", fmt.Errorf("the OIDC token endpoint %s returned no token", where)
	}
	return out.Value, nil
}
