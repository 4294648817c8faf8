package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// Cloud is the set of endpoints a client talks to.
type Cloud struct {
	// Name is Azure's name for the cloud, e.g. "AzureCloud".
	Name                    string
	ResourceManagerEndpoint string
	ResourceManagerAudience string
	AuthorityHost           string
	// Custom is true for a cloud discovered from a metadata host, where
	// Entra ID instance discovery must be off.
	Custom bool
}

// configuration converts c to the SDK's cloud configuration.
func (c Cloud) configuration() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: c.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: c.ResourceManagerEndpoint, Audience: c.ResourceManagerAudience},
		},
	}
}

// metadataTimeout bounds endpoint discovery: it runs while a user waits for
// a plan, and a host that does not answer in this time will not answer.
const metadataTimeout = 30 * time.Second

// builtinClouds are the clouds azurerm knows by name, keyed by canonical
// environment name. US Government L5 (DoD) shares L4's Resource Manager and
// login endpoints (it differs in Microsoft Graph, which this provider does
// not call); azurerm's canary is the public cloud's endpoints.
var builtinClouds = map[string]struct {
	name string
	conf cloud.Configuration
}{
	"public":         {"AzureCloud", cloud.AzurePublic},
	"usgovernment":   {"AzureUSGovernment", cloud.AzureGovernment},
	"usgovernmentl5": {"AzureUSGovernment", cloud.AzureGovernment},
	"china":          {"AzureChinaCloud", cloud.AzureChina},
}

// environmentAliases maps every environment name azurerm v4 accepts
// (go-azure-sdk's environments.FromName: public, global, usgovernment,
// usgovernmentl4, usgovernmentl5, dod, china, canary), and the Azure CLI's
// cloud names, to the canonical name used here.
var environmentAliases = map[string]string{
	"":                       "public",
	"public":                 "public",
	"global":                 "public",
	"canary":                 "public",
	"azurecloud":             "public",
	"azurepublic":            "public",
	"azurepubliccloud":       "public",
	"usgovernment":           "usgovernment",
	"usgovernmentl4":         "usgovernment",
	"azureusgovernment":      "usgovernment",
	"azureusgovernmentcloud": "usgovernment",
	"usgovernmentl5":         "usgovernmentl5",
	"dod":                    "usgovernmentl5",
	"china":                  "china",
	"azurechina":             "china",
	"azurechinacloud":        "china",
}

// canonicalEnvironment returns the canonical name of an environment
// ("public", "usgovernment", "usgovernmentl5", "china") and whether it is
// known.
func canonicalEnvironment(name string) (string, bool) {
	n, ok := environmentAliases[strings.ToLower(strings.TrimSpace(name))]
	return n, ok
}

// environmentMessage says why an environment name is refused.
func environmentMessage(name string) string {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "german", "germany", "azuregermancloud":
		return fmt.Sprintf("%q: Azure Germany closed in 2021 and azurerm v4 no longer accepts it; use public (its regions are in the public cloud)", name)
	}
	return fmt.Sprintf("must be one of public (or global), usgovernment (usgovernmentl4), usgovernmentl5 (dod), china or canary, got %q", name)
}

// ResolveCloud returns the cloud c points at: discovered from
// https://<MetadataHost>/metadata/endpoints when MetadataHost is set,
// otherwise the built-in cloud named by Environment. hc may be nil; it must
// trust the system certificate store (SSL_CERT_FILE) and is given a bounded
// timeout by ctx.
func ResolveCloud(ctx context.Context, c Config, hc *http.Client) (Cloud, error) {
	env, ok := canonicalEnvironment(c.Environment)
	if !ok {
		return Cloud{}, &ConfigError{Field: "environment", EnvVar: EnvEnvironment, Message: environmentMessage(c.Environment)}
	}
	if c.MetadataHost == "" {
		b := builtinClouds[env]
		rm := b.conf.Services[cloud.ResourceManager]
		return Cloud{
			Name:                    b.name,
			ResourceManagerEndpoint: rm.Endpoint,
			ResourceManagerAudience: rm.Audience,
			AuthorityHost:           b.conf.ActiveDirectoryAuthorityHost,
		}, nil
	}
	if msg := checkMetadataHost(c.MetadataHost); msg != "" {
		return Cloud{}, &ConfigError{Field: "metadata_host", EnvVar: EnvMetadataHost, Message: msg}
	}
	if hc == nil {
		hc = newHTTPClient()
	}
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	d := discovery{host: c.MetadataHost, hc: hc, wantName: builtinClouds[env].name}
	return d.resolve(ctx)
}

// newHTTPClient returns a client with http.DefaultTransport's settings (so
// proxies and SSL_CERT_FILE apply) and an overall timeout.
func newHTTPClient() *http.Client {
	rt := http.DefaultTransport
	if t, ok := rt.(*http.Transport); ok {
		rt = t.Clone()
	}
	return &http.Client{Transport: rt, Timeout: metadataTimeout}
}

// discovery fetches one metadata host's endpoints.
type discovery struct {
	host     string
	hc       *http.Client
	wantName string // the cloud to pick from a 2019-05-01 list
}

// metadataEndpoints is one cloud in the metadata document.
type metadataEndpoints struct {
	Name            string `json:"name"`
	ResourceManager string `json:"resourceManager"`
	Authentication  struct {
		LoginEndpoint string   `json:"loginEndpoint"`
		Audiences     []string `json:"audiences"`
	} `json:"authentication"`
}

// resolve asks for api-version 2022-09-01 (one object, what current azurerm
// asks for) and falls back to 2019-05-01 (a list of clouds) when the answer
// is not an object: older Azure Stack hubs only know the latter.
func (d discovery) resolve(ctx context.Context) (Cloud, error) {
	body, status, err := d.get(ctx, "2022-09-01")
	if err != nil {
		return Cloud{}, err
	}
	var one metadataEndpoints
	if status == http.StatusOK && isJSONObject(body) {
		if err := json.Unmarshal(body, &one); err != nil {
			return Cloud{}, d.errorf("api-version 2022-09-01: malformed JSON: %v", err)
		}
		return d.cloud(one, "2022-09-01")
	}

	body, status, err = d.get(ctx, "2019-05-01")
	if err != nil {
		return Cloud{}, err
	}
	if status != http.StatusOK {
		return Cloud{}, d.errorf("answered HTTP %d for api-version 2022-09-01 and 2019-05-01", status)
	}
	var list []metadataEndpoints
	if err := json.Unmarshal(body, &list); err != nil {
		return Cloud{}, d.errorf("api-version 2019-05-01: malformed JSON (want an object or a list of clouds): %v", err)
	}
	switch len(list) {
	case 0:
		return Cloud{}, d.errorf("api-version 2019-05-01: the list of clouds is empty")
	case 1:
		return d.cloud(list[0], "2019-05-01")
	}
	names := make([]string, 0, len(list))
	for _, e := range list {
		if strings.EqualFold(e.Name, d.wantName) {
			return d.cloud(e, "2019-05-01")
		}
		names = append(names, e.Name)
	}
	return Cloud{}, d.errorf("api-version 2019-05-01: no cloud named %q (environment) among %s", d.wantName, strings.Join(names, ", "))
}

func isJSONObject(b []byte) bool {
	s := strings.TrimSpace(string(b))
	return strings.HasPrefix(s, "{")
}

// get fetches the endpoints document at one api-version.
func (d discovery) get(ctx context.Context, apiVersion string) ([]byte, int, error) {
	u := url.URL{Scheme: "https", Host: d.host, Path: "/metadata/endpoints", RawQuery: "api-version=" + apiVersion}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, d.errorf("%v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		if isCertificateError(err) {
			return nil, 0, d.wrap(err, "TLS certificate not trusted (%s); add the issuing CA to the system trust store or set SSL_CERT_FILE to a PEM file containing it", rootCause(err))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, d.wrap(err, "no answer within %s", metadataTimeout)
		}
		return nil, 0, d.wrap(err, "unreachable: %s", rootCause(err))
	}
	defer resp.Body.Close()
	// The document is a few kilobytes; a megabyte is plenty and bounds a
	// misbehaving host.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, d.wrap(err, "reading the answer: %s", rootCause(err))
	}
	return body, resp.StatusCode, nil
}

// cloud checks a discovered entry and converts it.
func (d discovery) cloud(e metadataEndpoints, apiVersion string) (Cloud, error) {
	var missing []string
	if e.ResourceManager == "" {
		missing = append(missing, "resourceManager")
	}
	if e.Authentication.LoginEndpoint == "" {
		missing = append(missing, "authentication.loginEndpoint")
	}
	audience := ""
	for _, a := range e.Authentication.Audiences {
		if a != "" {
			audience = a
			break
		}
	}
	if audience == "" {
		missing = append(missing, "authentication.audiences")
	}
	if len(missing) > 0 {
		return Cloud{}, d.errorf("api-version %s: missing %s", apiVersion, strings.Join(missing, ", "))
	}
	// Bearer tokens are only ever sent over TLS (azcore refuses otherwise),
	// so say so now rather than at the first request.
	for field, v := range map[string]string{"resourceManager": e.ResourceManager, "authentication.loginEndpoint": e.Authentication.LoginEndpoint} {
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.Host == "" {
			return Cloud{}, d.errorf("api-version %s: %s %q is not an https URL", apiVersion, field, v)
		}
	}
	return Cloud{
		Name:                    e.Name,
		ResourceManagerEndpoint: e.ResourceManager,
		ResourceManagerAudience: audience,
		AuthorityHost:           e.Authentication.LoginEndpoint,
		Custom:                  true,
	}, nil
}

func (d discovery) errorf(format string, args ...any) error {
	return d.wrap(nil, format, args...)
}

func (d discovery) wrap(err error, format string, args ...any) error {
	kind := KindInvalid
	if err != nil {
		kind = KindUnavailable
	}
	return &Error{
		Kind:    kind,
		Op:      "discover endpoints from metadata host",
		Message: fmt.Sprintf("%s (%s): %s", d.host, EnvMetadataHost, fmt.Sprintf(format, args...)),
		Err:     err,
	}
}
