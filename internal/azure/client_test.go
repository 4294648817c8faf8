package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9/fake"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const testNSG = "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"

// fakeJWT returns an unsigned JWT with the given payload.
func fakeJWT(payload string) string {
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

// staticCredential hands out one token, or fails with err.
type staticCredential struct {
	token string
	err   error
}

func (c staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, c.err
}

// headerRecorder remembers the method and headers of every request it
// forwards.
type headerRecorder struct {
	inner     policy.Transporter
	mu        sync.Mutex
	headers   []http.Header
	methodLog []string
}

func (r *headerRecorder) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.methodLog = append(r.methodLog, req.Method)
	r.mu.Unlock()
	return r.inner.Do(req)
}

func (r *headerRecorder) methods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.methodLog...)
}

// fakeNSG is an in-memory NSG behind armnetwork's fake servers.
type fakeNSG struct {
	mu         sync.Mutex
	rules      map[string]armnetwork.SecurityRule
	puts, dels int
}

func (f *fakeNSG) factory() *fake.ServerFactory {
	return &fake.ServerFactory{
		SecurityRulesServer: fake.SecurityRulesServer{
			Get: func(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientGetOptions) (resp azfake.Responder[armnetwork.SecurityRulesClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				r, ok := f.rules[name]
				if !ok {
					errResp.SetResponseError(http.StatusNotFound, "NotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.SecurityRulesClientGetResponse{SecurityRule: r}, nil)
				return
			},
			NewListPager: func(rg, nsg string, _ *armnetwork.SecurityRulesClientListOptions) (resp azfake.PagerResponder[armnetwork.SecurityRulesClientListResponse]) {
				f.mu.Lock()
				defer f.mu.Unlock()
				// One rule per page, to exercise paging.
				for _, r := range f.rules {
					resp.AddPage(http.StatusOK, armnetwork.SecurityRulesClientListResponse{
						SecurityRuleListResult: armnetwork.SecurityRuleListResult{Value: []*armnetwork.SecurityRule{ptr(r)}},
					}, nil)
				}
				return
			},
			BeginCreateOrUpdate: func(_ context.Context, rg, nsg, name string, r armnetwork.SecurityRule, _ *armnetwork.SecurityRulesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.SecurityRulesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.puts++
				if r.Properties != nil && r.Properties.Priority != nil && *r.Properties.Priority < 100 {
					resp.AddNonTerminalResponse(http.StatusCreated, nil)
					resp.SetTerminalError(http.StatusBadRequest, "SecurityRuleInvalidPriority")
					return
				}
				r.ID = ptr(testNSG + "/securityRules/" + name)
				r.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
				f.rules[name] = r
				resp.AddNonTerminalResponse(http.StatusCreated, nil)
				resp.AddNonTerminalResponse(http.StatusOK, nil)
				resp.SetTerminalResponse(http.StatusOK, armnetwork.SecurityRulesClientCreateOrUpdateResponse{SecurityRule: r}, nil)
				return
			},
			BeginDelete: func(_ context.Context, rg, nsg, name string, _ *armnetwork.SecurityRulesClientBeginDeleteOptions) (resp azfake.PollerResponder[armnetwork.SecurityRulesClientDeleteResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.dels++
				if _, ok := f.rules[name]; !ok {
					errResp.SetResponseError(http.StatusNotFound, "NotFound")
					return
				}
				delete(f.rules, name)
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalResponse(http.StatusOK, armnetwork.SecurityRulesClientDeleteResponse{}, nil)
				return
			},
		},
		SecurityGroupsServer: fake.SecurityGroupsServer{
			Get: func(_ context.Context, rg, nsg string, _ *armnetwork.SecurityGroupsClientGetOptions) (resp azfake.Responder[armnetwork.SecurityGroupsClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if nsg != "nsg" {
					errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
					return
				}
				g := armnetwork.SecurityGroup{ID: ptr(testNSG), Name: ptr(nsg), Location: ptr("westeurope"), Etag: ptr(`W/"1"`),
					Properties: &armnetwork.SecurityGroupPropertiesFormat{
						DefaultSecurityRules: []*armnetwork.SecurityRule{{Name: ptr("DenyAllInBound"), Properties: &armnetwork.SecurityRulePropertiesFormat{
							Priority: ptr[int32](65500), Access: ptr(armnetwork.SecurityRuleAccessDeny), Direction: ptr(armnetwork.SecurityRuleDirectionInbound),
							Protocol: ptr(armnetwork.SecurityRuleProtocolAsterisk), SourceAddressPrefix: ptr("*"), DestinationAddressPrefix: ptr("*"),
							SourcePortRange: ptr("*"), DestinationPortRange: ptr("*"),
						}}},
					}}
				for _, r := range f.rules {
					g.Properties.SecurityRules = append(g.Properties.SecurityRules, ptr(r))
				}
				resp.SetResponse(http.StatusOK, armnetwork.SecurityGroupsClientGetResponse{SecurityGroup: g}, nil)
				return
			},
		},
	}
}

// busyTransport answers the first n PUTs itself with Azure's 409
// AnotherOperationInProgress, as a real HTTP answer (armnetwork's fakes
// report error answers as Go errors, which no HTTP client ever sees), and
// forwards everything else.
type busyTransport struct {
	inner policy.Transporter
	mu    sync.Mutex
	n     int
	busy  int // busy answers given
}

func (b *busyTransport) Do(req *http.Request) (*http.Response, error) {
	b.mu.Lock()
	busy := req.Method == http.MethodPut && b.busy < b.n
	if busy {
		b.busy++
	}
	b.mu.Unlock()
	if !busy {
		return b.inner.Do(req)
	}
	return &http.Response{
		StatusCode: http.StatusConflict,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(`{"error":{"code":"AnotherOperationInProgress","message":"Another operation on this or dependent resource is in progress."}}`)),
		Request:    req,
	}, nil
}

// newFakeClient returns a Client talking to f through armnetwork's fakes,
// the first busyPuts PUTs being refused as busy.
func newFakeClient(t *testing.T, f *fakeNSG, busyPuts int) (*Client, *headerRecorder) {
	t.Helper()
	rec := &headerRecorder{inner: &busyTransport{inner: fake.NewServerFactoryTransport(f.factory()), n: busyPuts}}
	c, err := NewClient(context.Background(), Config{SubscriptionID: testSub}, ClientOptions{
		UserAgent:     "terraform-provider-jit/1.2.3",
		PollFrequency: time.Millisecond,
		RetryDelay:    time.Microsecond,
		Transport:     rec,
		Credential:    staticCredential{token: fakeJWT(`{"tid":"t","oid":"o","appid":"a"}`)},
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, rec
}

var sshGrant = jit.SecurityRule{
	Name: "jit-web-g-1", Priority: 150, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
	SourcePrefixes: []string{"203.0.113.7/32"}, SourcePorts: []string{"*"},
	DestinationPrefixes: []string{"10.0.0.4"}, DestinationPorts: []string{"22"},
	Description: "jit:v1 grant=1",
}

func TestClientRuleLifecycle(t *testing.T) {
	f := &fakeNSG{rules: map[string]armnetwork.SecurityRule{}}
	c, rec := newFakeClient(t, f, 0)
	ctx := context.Background()

	got, err := c.PutRule(ctx, testNSG, sshGrant)
	if err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if !reflect.DeepEqual(got, sshGrant) {
		t.Errorf("PutRule returned %+v, want %+v", got, sshGrant)
	}
	second := sshGrant
	second.Name, second.Priority, second.DestinationPorts = "jit-web-g-2", 151, []string{"22", "3389"}
	if _, err := c.PutRule(ctx, testNSG, second); err != nil {
		t.Fatalf("PutRule: %v", err)
	}

	if r, err := c.GetRule(ctx, testNSG, "jit-web-g-2"); err != nil || !reflect.DeepEqual(r, second) {
		t.Errorf("GetRule = %+v, %v; want %+v", r, err, second)
	}
	list, err := c.ListRules(ctx, testNSG)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListRules = %v, %v; want 2 rules", list, err)
	}
	nsg, err := c.GetNSG(ctx, testNSG)
	if err != nil {
		t.Fatalf("GetNSG: %v", err)
	}
	if nsg.Name != "nsg" || nsg.Location != "westeurope" || nsg.Etag != `W/"1"` || len(nsg.Rules) != 2 ||
		len(nsg.DefaultRules) != 1 || nsg.DefaultRules[0].Priority != 65500 {
		t.Errorf("GetNSG = %+v", nsg)
	}

	if err := c.DeleteRule(ctx, testNSG, "jit-web-g-1"); err != nil {
		t.Fatalf("DeleteRule: %v", err)
	}
	if _, err := c.GetRule(ctx, testNSG, "jit-web-g-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRule after delete: %v, want ErrNotFound", err)
	}
	// Deleting again is success: the rule is gone either way.
	if err := c.DeleteRule(ctx, testNSG, "jit-web-g-1"); err != nil {
		t.Errorf("second DeleteRule: %v", err)
	}
	if f.dels != 2 {
		t.Errorf("%d deletes reached Azure, want 2", f.dels)
	}

	// Every request carries the product's user agent and one correlation id.
	ids := map[string]bool{}
	for _, h := range rec.headers {
		if ua := h.Get("User-Agent"); !strings.HasPrefix(ua, "terraform-provider-jit/1.2.3 azsdk-go-") {
			t.Errorf("User-Agent %q", ua)
		}
		ids[h.Get(headerCorrelationID)] = true
	}
	if len(ids) != 1 || ids[""] {
		t.Errorf("correlation ids %v, want one per client", ids)
	}
}

func TestClientPutRetriesBusyNSG(t *testing.T) {
	f := &fakeNSG{rules: map[string]armnetwork.SecurityRule{}}
	c, rec := newFakeClient(t, f, 2)
	if _, err := c.PutRule(context.Background(), testNSG, sshGrant); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	puts := 0
	for _, m := range rec.methods() {
		if m == http.MethodPut {
			puts++
		}
	}
	if puts != 3 || f.puts != 1 {
		t.Errorf("%d PUTs sent, %d reached the NSG; want 3 and 1 (two busy answers, then success)", puts, f.puts)
	}
}

func TestClientPutErrors(t *testing.T) {
	f := &fakeNSG{rules: map[string]armnetwork.SecurityRule{}}
	c, _ := newFakeClient(t, f, 0)
	ctx := context.Background()

	bad := sshGrant
	bad.Priority = 10
	_, err := c.PutRule(ctx, testNSG, bad)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Code != "SecurityRuleInvalidPriority" ||
		!strings.HasSuffix(e.ResourceID, "/securityRules/jit-web-g-1") {
		t.Errorf("failed LRO: %v (%+v)", err, e)
	}

	asg := sshGrant
	asg.UsesApplicationSecurityGroups = true
	if _, err := c.PutRule(ctx, testNSG, asg); !errors.Is(err, ErrInvalid) {
		t.Errorf("rule with ASGs: %v, want ErrInvalid", err)
	}
	if _, err := c.PutRule(ctx, "/subscriptions/"+testSub+"/resourceGroups/rg", sshGrant); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad NSG id: %v, want ErrInvalid", err)
	}
	if _, err := c.GetNSG(ctx, strings.Replace(testNSG, "/nsg", "/other", 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing NSG: %v, want ErrNotFound", err)
	}
	if f.puts != 1 {
		t.Errorf("%d PUTs reached Azure, want only the valid-looking one", f.puts)
	}
}

func TestClientIdentityAndCredentialErrors(t *testing.T) {
	f := &fakeNSG{rules: map[string]armnetwork.SecurityRule{}}
	c, _ := newFakeClient(t, f, 0)
	id, err := c.Identity(context.Background())
	if err != nil || id != (Identity{TenantID: "t", ObjectID: "o", ClientID: "a"}) {
		t.Errorf("Identity = %+v, %v", id, err)
	}
	if c.SubscriptionID() != testSub || c.Cloud().Name != "AzureCloud" {
		t.Errorf("SubscriptionID %q, Cloud %+v", c.SubscriptionID(), c.Cloud())
	}

	failing, err := NewClient(context.Background(), Config{SubscriptionID: testSub}, ClientOptions{
		Transport:  fake.NewServerFactoryTransport(f.factory()),
		Credential: staticCredential{err: errors.New("token endpoint said no")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := failing.GetRule(context.Background(), testNSG, "x"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("GetRule with a failing credential: %v, want ErrUnauthorized", err)
	}
	if _, err := failing.Identity(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Identity with a failing credential: %v, want ErrUnauthorized", err)
	}
}

func TestNewClientRejectsInvalidConfig(t *testing.T) {
	_, err := NewClient(context.Background(), Config{SubscriptionID: "nope", UseCLI: true}, ClientOptions{})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "subscription_id" {
		t.Errorf("got %v, want a subscription_id *ConfigError", err)
	}
}

func TestLockNSGSerialisesPerNSG(t *testing.T) {
	c, _ := newFakeClient(t, &fakeNSG{rules: map[string]armnetwork.SecurityRule{}}, 0)
	id, _ := ParseNSGID(testNSG)
	unlock, err := c.lockNSG(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The same NSG spelled in another case is the same lock.
	upper, _ := ParseNSGID(strings.ToUpper(testNSG[:20]) + testNSG[20:])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.lockNSG(ctx, upper); !errors.Is(err, context.Canceled) {
		t.Fatalf("second lock while held: %v, want it to wait until cancelled", err)
	}
	other := id
	other.Name = "nsg-2"
	unlockOther, err := c.lockNSG(context.Background(), other)
	if err != nil {
		t.Fatalf("another NSG's lock: %v", err)
	}
	unlockOther()
	unlock()
	unlock2, err := c.lockNSG(context.Background(), upper)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
