package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// defaultMSIAPIVersion is the api-version azurerm asks a custom managed
// identity endpoint with when msi_api_version is unset: IMDS's.
const defaultMSIAPIVersion = "2018-02-01"

// msiEndpointCredential gets managed identity tokens from msi_endpoint.
//
// It exists because azidentity's ManagedIdentityCredential cannot be pointed
// at an endpoint: it detects the host's own (IMDS, App Service's
// IDENTITY_ENDPOINT, Arc, Service Fabric, Cloud Shell) from process-wide
// environment variables and offers no option to name another, while azurerm
// lets ARM_MSI_ENDPOINT name any endpoint (a sidecar proxy, Container Apps,
// a test double).
//
// The request is the documented shape both IMDS and App Service accept:
// GET <endpoint>?api-version=<v>&resource=<r>[&client_id=<id>] with
// "Metadata: true" (IMDS requires it) and, when IDENTITY_HEADER is set,
// "X-IDENTITY-HEADER" (App Service, Functions and Container Apps require it
// with api-version 2019-08-01). The answer's expires_on (IMDS: seconds as a
// string; App Service: the same, or a date in older versions) or expires_in
// gives the expiry. Tokens are cached until five minutes before it.
type msiEndpointCredential struct {
	endpoint       string
	apiVersion     string
	clientID       string
	identityHeader string
	hc             *http.Client
	now            func() time.Time

	mu    sync.Mutex
	cache map[string]azcore.AccessToken // by resource
}

// defaultMSIEndpoint is IMDS's token endpoint, asked when msi_api_version
// is set without msi_endpoint, as azurerm does.
const defaultMSIEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"

func newMSIEndpointCredential(c Config) *msiEndpointCredential {
	v := c.MSIAPIVersion
	if v == "" {
		v = defaultMSIAPIVersion
	}
	endpoint := c.MSIEndpoint
	if endpoint == "" {
		endpoint = defaultMSIEndpoint
	}
	return &msiEndpointCredential{endpoint: endpoint, apiVersion: v, clientID: c.ClientID,
		identityHeader: c.IdentityHeader, hc: newHTTPClient(), now: time.Now, cache: map[string]azcore.AccessToken{}}
}

// tokenRefreshMargin is how long before expiry a cached token is renewed.
const tokenRefreshMargin = 5 * time.Minute

// GetToken implements azcore.TokenCredential for one scope.
func (m *msiEndpointCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("managed identity tokens are for one scope at a time, got %d", len(opts.Scopes))
	}
	resource := strings.TrimSuffix(opts.Scopes[0], "/.default")
	m.mu.Lock()
	if tok, ok := m.cache[resource]; ok && m.now().Add(tokenRefreshMargin).Before(tok.ExpiresOn) {
		m.mu.Unlock()
		return tok, nil
	}
	m.mu.Unlock()

	tok, err := m.request(ctx, resource)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	m.mu.Lock()
	m.cache[resource] = tok
	m.mu.Unlock()
	return tok, nil
}

func (m *msiEndpointCredential) request(ctx context.Context, resource string) (azcore.AccessToken, error) {
	u, err := url.Parse(m.endpoint)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("msi_endpoint (%s): %w", EnvMSIEndpoint, err)
	}
	q := u.Query()
	q.Set("api-version", m.apiVersion)
	q.Set("resource", resource)
	if m.clientID != "" {
		q.Set("client_id", m.clientID)
	}
	u.RawQuery = q.Encode()
	where := u.Host // the query names the identity; keep messages short

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("building the managed identity request to %s: %w", where, err)
	}
	req.Header.Set("Metadata", "true")
	req.Header.Set("Accept", "application/json")
	if m.identityHeader != "" {
		req.Header.Set("X-IDENTITY-HEADER", m.identityHeader)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return azcore.AccessToken{}, &msiError{msg: fmt.Sprintf("managed identity endpoint %s (%s): %s", where, EnvMSIEndpoint, rootCause(err)), err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return azcore.AccessToken{}, &msiError{msg: fmt.Sprintf("reading the managed identity token from %s: %s", where, rootCause(err)), err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return azcore.AccessToken{}, &msiError{status: resp.StatusCode,
			msg: fmt.Sprintf("managed identity endpoint %s answered HTTP %d with api-version %s: %s", where, resp.StatusCode, m.apiVersion, msiErrorText(body))}
	}
	var out struct {
		AccessToken string          `json:"access_token"`
		ExpiresOn   json.RawMessage `json:"expires_on"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.AccessToken == "" {
		return azcore.AccessToken{}, &msiError{msg: fmt.Sprintf("managed identity endpoint %s answered no access_token", where)}
	}
	exp, ok := parseExpiry(out.ExpiresOn, out.ExpiresIn, m.now())
	if !ok {
		return azcore.AccessToken{}, &msiError{msg: fmt.Sprintf("managed identity endpoint %s answered a token without a readable expires_on or expires_in", where)}
	}
	return azcore.AccessToken{Token: out.AccessToken, ExpiresOn: exp}, nil
}

// parseExpiry reads expires_on (Unix seconds, as a number or a string, or
// an older App Service date such as "11/30/2026 03:04:05 +00:00") and
// falls back to expires_in (seconds from now).
func parseExpiry(on, in json.RawMessage, now time.Time) (time.Time, bool) {
	if s := unquote(on); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0), true
		}
		for _, layout := range []string{"1/2/2006 3:04:05 PM -07:00", "1/2/2006 15:04:05 -07:00", time.RFC3339} {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true
			}
		}
	}
	if s := unquote(in); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return now.Add(time.Duration(n) * time.Second), true
		}
	}
	return time.Time{}, false
}

func unquote(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(string(raw))
}

// msiErrorText is the error description of a failed answer, bounded.
func msiErrorText(body []byte) string {
	var e struct {
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
		Message          string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		for _, s := range []string{e.ErrorDescription, e.Message} {
			if s != "" {
				return s
			}
		}
		if s, ok := e.Error.(string); ok && s != "" {
			return s
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// msiError is a failed managed identity token request; status is 0 when
// the endpoint did not answer.
type msiError struct {
	status int
	msg    string
	err    error
}

func (e *msiError) Error() string { return e.msg }
func (e *msiError) Unwrap() error { return e.err }

var _ azcore.TokenCredential = (*msiEndpointCredential)(nil)
