package azuresim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

const (
	testRG       = "rg-jit"
	testLocation = "westeurope"
)

// cloudConfig points the SDK at srv, as a client that read the metadata
// endpoint would.
func cloudConfig(srv *azuresim.Server) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: srv.URL() + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL(), Audience: srv.URL()},
		},
	}
}

func secretCredential(t testing.TB, srv *azuresim.Server) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), srv.ClientID(), srv.ClientSecret(),
		&azidentity.ClientSecretCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloudConfig(srv)},
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		t.Fatalf("new client secret credential: %v", err)
	}
	return cred
}

type networkClients struct {
	groups *armnetwork.SecurityGroupsClient
	rules  *armnetwork.SecurityRulesClient
}

// newClients builds armnetwork clients for srv. maxRetries < 0 disables retries.
func newClients(t testing.TB, srv *azuresim.Server, cred azcore.TokenCredential, maxRetries int32) networkClients {
	t.Helper()
	if cred == nil {
		cred = secretCredential(t, srv)
	}
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloudConfig(srv),
		Retry: policy.RetryOptions{MaxRetries: maxRetries, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
	}}
	groups, err := armnetwork.NewSecurityGroupsClient(srv.SubscriptionID(), cred, opts)
	if err != nil {
		t.Fatalf("new security groups client: %v", err)
	}
	rules, err := armnetwork.NewSecurityRulesClient(srv.SubscriptionID(), cred, opts)
	if err != nil {
		t.Fatalf("new security rules client: %v", err)
	}
	return networkClients{groups: groups, rules: rules}
}

var pollOpts = &runtime.PollUntilDoneOptions{Frequency: 10 * time.Millisecond}

func createNSG(t testing.TB, c networkClients, name string, rules ...*armnetwork.SecurityRule) armnetwork.SecurityGroup {
	t.Helper()
	ctx := context.Background()
	poller, err := c.groups.BeginCreateOrUpdate(ctx, testRG, name, armnetwork.SecurityGroup{
		Location:   to.Ptr(testLocation),
		Tags:       map[string]*string{"owner": to.Ptr("platform")},
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: rules},
	}, nil)
	if err != nil {
		t.Fatalf("begin create NSG %s: %v", name, err)
	}
	resp, err := poller.PollUntilDone(ctx, pollOpts)
	if err != nil {
		t.Fatalf("create NSG %s: %v", name, err)
	}
	return resp.SecurityGroup
}

func tcpRule(name string, priority int32, access armnetwork.SecurityRuleAccess, source, port string) *armnetwork.SecurityRule {
	return &armnetwork.SecurityRule{
		Name: to.Ptr(name),
		Properties: &armnetwork.SecurityRulePropertiesFormat{
			Priority:                 to.Ptr(priority),
			Direction:                to.Ptr(armnetwork.SecurityRuleDirectionInbound),
			Access:                   to.Ptr(access),
			Protocol:                 to.Ptr(armnetwork.SecurityRuleProtocolTCP),
			SourceAddressPrefix:      to.Ptr(source),
			SourcePortRange:          to.Ptr("*"),
			DestinationAddressPrefix: to.Ptr("*"),
			DestinationPortRange:     to.Ptr(port),
		},
	}
}

func putRule(ctx context.Context, c networkClients, nsg string, r *armnetwork.SecurityRule) (armnetwork.SecurityRule, error) {
	poller, err := c.rules.BeginCreateOrUpdate(ctx, testRG, nsg, *r.Name, *r, nil)
	if err != nil {
		return armnetwork.SecurityRule{}, err
	}
	resp, err := poller.PollUntilDone(ctx, pollOpts)
	return resp.SecurityRule, err
}

func deleteRule(ctx context.Context, c networkClients, nsg, name string) error {
	poller, err := c.rules.BeginDelete(ctx, testRG, nsg, name, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(ctx, pollOpts)
	return err
}

func errorCode(err error) (int, string) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode
	}
	return 0, ""
}

// rawClient sends requests to srv with a token, without the SDK's retries.
type rawClient struct {
	t     testing.TB
	srv   *azuresim.Server
	token string
}

func newRawClient(t testing.TB, srv *azuresim.Server) *rawClient {
	t.Helper()
	tok, err := secretCredential(t, srv).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{srv.URL() + "/.default"}})
	if err != nil {
		t.Fatalf("get token: %v", err)
	}
	return &rawClient{t: t, srv: srv, token: tok.Token}
}

func (c *rawClient) do(method, path string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	u := path
	if !strings.HasPrefix(path, "https://") {
		u = c.srv.URL() + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// doText sends body verbatim (for bodies that are not valid JSON).
func (c *rawClient) doText(method, path, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, c.srv.URL()+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (c *rawClient) must(method, path string, body any) (*http.Response, []byte) {
	c.t.Helper()
	resp, b, err := c.do(method, path, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

func nsgPath(srv *azuresim.Server, nsg string) string {
	return "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG +
		"/providers/Microsoft.Network/networkSecurityGroups/" + nsg
}

func rulePath(srv *azuresim.Server, nsg, rule string) string {
	return nsgPath(srv, nsg) + "/securityRules/" + rule + "?api-version=2025-05-01"
}

func rawRuleBody(priority int, port string) map[string]any {
	return map[string]any{"properties": map[string]any{
		"priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
		"sourceAddressPrefix": "203.0.113.7", "sourcePortRange": "*",
		"destinationAddressPrefix": "*", "destinationPortRange": port,
	}}
}

func TestMetadataEndpoint(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := &rawClient{t: t, srv: srv}

	_, b := c.must(http.MethodGet, "/metadata/endpoints?api-version=2022-09-01", nil)
	var doc struct {
		Name            string `json:"name"`
		ResourceManager string `json:"resourceManager"`
		Authentication  struct {
			LoginEndpoint string   `json:"loginEndpoint"`
			Audiences     []string `json:"audiences"`
		} `json:"authentication"`
		MicrosoftGraphResourceID string            `json:"microsoftGraphResourceId"`
		Suffixes                 map[string]string `json:"suffixes"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("2022-09-01 answer is not one object: %v: %s", err, b)
	}
	if doc.ResourceManager != srv.URL()+"/" || doc.Authentication.LoginEndpoint != srv.URL()+"/" {
		t.Errorf("resourceManager %q, loginEndpoint %q: want %s/", doc.ResourceManager, doc.Authentication.LoginEndpoint, srv.URL())
	}
	if len(doc.Authentication.Audiences) == 0 || doc.MicrosoftGraphResourceID == "" || doc.Suffixes["storage"] == "" {
		t.Errorf("document lacks audiences, resource ids or suffixes: %s", b)
	}

	_, b = c.must(http.MethodGet, "/metadata/endpoints?api-version=2019-05-01", nil)
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 1 || list[0]["resourceManager"] != srv.URL()+"/" {
		t.Errorf("2019-05-01 answer is not an array of one environment: %v: %s", err, b)
	}

	_, b = c.must(http.MethodGet, "/metadata/endpoints?api-version=2015-01-01", nil)
	var legacy struct {
		GalleryEndpoint string `json:"galleryEndpoint"`
		Authentication  struct {
			LoginEndpoint string `json:"loginEndpoint"`
		} `json:"authentication"`
	}
	if err := json.Unmarshal(b, &legacy); err != nil || legacy.GalleryEndpoint == "" || legacy.Authentication.LoginEndpoint != srv.URL()+"/" {
		t.Errorf("2015-01-01 answer is not the legacy object: %v: %s", err, b)
	}
}

func TestTokenEndpoint(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	ctx := context.Background()
	tok, err := secretCredential(t, srv).GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.core.windows.net//.default"}})
	if err != nil {
		t.Fatalf("get token: %v", err)
	}
	claims := decodeClaims(t, tok.Token)
	for k, want := range map[string]any{
		"aud": "https://management.core.windows.net/", "iss": "https://sts.windows.net/" + srv.TenantID() + "/",
		"appid": srv.ClientID(), "tid": srv.TenantID(), "idtyp": "app", "ver": "1.0",
	} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	for _, k := range []string{"iat", "nbf", "exp", "aio", "appidacr", "idp", "oid", "rh", "sub", "uti"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %s missing", k)
		}
	}

	t.Run("wrong secret", func(t *testing.T) {
		cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), srv.ClientID(), "wrong",
			&azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{Cloud: cloudConfig(srv)}, DisableInstanceDiscovery: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.URL() + "/.default"}})
		if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
			t.Errorf("got %v, want an AADSTS7000215 error", err)
		}
	})

	t.Run("entra error shape", func(t *testing.T) {
		c := &rawClient{t: t, srv: srv}
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"00000000-0000-0000-0000-000000000000"},
			"client_secret": {"x"}, "scope": {srv.URL() + "/.default"}}
		resp, err := http.Post(srv.URL()+"/"+srv.TenantID()+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error         string `json:"error"`
			Description   string `json:"error_description"`
			Codes         []int  `json:"error_codes"`
			TraceID       string `json:"trace_id"`
			CorrelationID string `json:"correlation_id"`
			Timestamp     string `json:"timestamp"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest || e.Error != "unauthorized_client" || len(e.Codes) != 1 || e.Codes[0] != 700016 ||
			!strings.HasPrefix(e.Description, "AADSTS700016:") || e.TraceID == "" || e.CorrelationID == "" || e.Timestamp == "" {
			t.Errorf("unknown client: status %d, body %+v", resp.StatusCode, e)
		}
		_ = c
		// The v1 endpoint takes resource= and answers string lifetimes.
		form = url.Values{"grant_type": {"client_credentials"}, "client_id": {srv.ClientID()},
			"client_secret": {srv.ClientSecret()}, "resource": {"https://management.core.windows.net/"}}
		resp2, err := http.Post(srv.URL()+"/"+srv.TenantID()+"/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp2.Body.Close()
		var v1 map[string]any
		if err := json.NewDecoder(resp2.Body).Decode(&v1); err != nil || resp2.StatusCode != http.StatusOK || v1["resource"] != "https://management.core.windows.net/" {
			t.Errorf("v1 token: status %d, %v, %v", resp2.StatusCode, v1, err)
		}
	})
}

func decodeClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWS")
	}
	b, err := decodeSegment(parts[1])
	if err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("parse claims: %v", err)
	}
	return claims
}
