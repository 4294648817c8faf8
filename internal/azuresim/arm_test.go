package azuresim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func newManagedIdentityCredential() (azcore.TokenCredential, error) {
	return azidentity.NewManagedIdentityCredential(nil)
}

func newAssertionCredential(srv *azuresim.Server, assertion func(context.Context) (string, error)) (azcore.TokenCredential, error) {
	return azidentity.NewClientAssertionCredential(srv.TenantID(), srv.ClientID(), assertion,
		&azidentity.ClientAssertionCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloudConfig(srv)},
			DisableInstanceDiscovery: true,
		})
}

func TestNSGCreateGetList(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	srv.SetPageSizeForTest(2)
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()

	nsg := createNSG(t, c, "nsg-web", tcpRule("ssh-bastion", 300, armnetwork.SecurityRuleAccessAllow, "10.1.0.0/24", "22"))
	if got := *nsg.Properties.ProvisioningState; got != armnetwork.ProvisioningStateSucceeded {
		t.Errorf("provisioningState after create = %s", got)
	}
	if nsg.Etag == nil || !strings.HasPrefix(*nsg.Etag, `W/"`) {
		t.Errorf("etag = %v, want a weak ETag", nsg.Etag)
	}
	if len(nsg.Properties.DefaultSecurityRules) != 6 || !strings.HasSuffix(*nsg.Properties.DefaultSecurityRules[2].ID, "/defaultSecurityRules/DenyAllInBound") {
		t.Errorf("default rules missing or without ids")
	}
	// Paths are case-insensitive; ids keep the case they were created with.
	got, err := c.groups.Get(ctx, strings.ToUpper(testRG), "NSG-WEB", nil)
	if err != nil {
		t.Fatalf("get NSG by other case: %v", err)
	}
	if !strings.HasSuffix(*got.ID, "/resourceGroups/"+testRG+"/providers/Microsoft.Network/networkSecurityGroups/nsg-web") ||
		*got.Tags["owner"] != "platform" || len(got.Properties.SecurityRules) != 1 {
		t.Errorf("got NSG %s with tags %v and %d rules", *got.ID, got.Tags, len(got.Properties.SecurityRules))
	}
	tagged, err := c.groups.UpdateTags(ctx, testRG, "nsg-web", armnetwork.TagsObject{Tags: map[string]*string{"env": to.Ptr("prod")}}, nil)
	if err != nil {
		t.Fatalf("update tags: %v", err)
	}
	if len(tagged.Tags) != 1 || *tagged.Tags["env"] != "prod" || *tagged.Etag == *got.Etag {
		t.Errorf("after UpdateTags: tags %v, etag %s (was %s)", tagged.Tags, *tagged.Etag, *got.Etag)
	}
	for i := range 4 {
		createNSG(t, c, fmt.Sprintf("nsg-%d", i))
	}
	poller, err := c.groups.BeginCreateOrUpdate(ctx, "rg-other", "nsg-elsewhere", armnetwork.SecurityGroup{Location: to.Ptr(testLocation)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, pollOpts); err != nil {
		t.Fatal(err)
	}

	var inGroup, all []string
	for pager := c.groups.NewListPager(testRG, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list NSGs in group: %v", err)
		}
		for _, n := range page.Value {
			inGroup = append(inGroup, *n.Name)
		}
	}
	for pager := c.groups.NewListAllPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list all NSGs: %v", err)
		}
		for _, n := range page.Value {
			all = append(all, *n.Name)
		}
	}
	if want := []string{"nsg-0", "nsg-1", "nsg-2", "nsg-3", "nsg-web"}; !slices.Equal(inGroup, want) {
		t.Errorf("NSGs in %s = %v, want %v", testRG, inGroup, want)
	}
	if len(all) != 6 {
		t.Errorf("all NSGs = %v, want 6", all)
	}
	if n := srv.Counters().Requests["GET nsg-list"]; n < 6 {
		t.Errorf("GET nsg-list requests = %d: paging with 2 per page should need at least 6", n)
	}
}

func TestNSGPutReplacesRules(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()
	createNSG(t, c, "nsg-a", tcpRule("keep", 200, armnetwork.SecurityRuleAccessDeny, "*", "22"))
	if _, err := putRule(ctx, c, "nsg-a", tcpRule("jit-written", 150, armnetwork.SecurityRuleAccessAllow, "203.0.113.7", "22")); err != nil {
		t.Fatal(err)
	}
	nsg := createNSG(t, c, "nsg-a", tcpRule("keep", 200, armnetwork.SecurityRuleAccessDeny, "*", "22"))
	if len(nsg.Properties.SecurityRules) != 1 || *nsg.Properties.SecurityRules[0].Name != "keep" {
		t.Errorf("after NSG PUT, rules = %d, want only the body's", len(nsg.Properties.SecurityRules))
	}

	poller, err := c.groups.BeginDelete(ctx, testRG, "nsg-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, pollOpts); err != nil {
		t.Fatalf("delete NSG: %v", err)
	}
	if _, err := c.groups.Get(ctx, testRG, "nsg-a", nil); err == nil {
		t.Error("NSG readable after delete")
	}
}

func TestDeleteLocationProtocol(t *testing.T) {
	// Refusal, so that a second write shows the NSG busy (queueing is
	// TestBusyQueue*'s).
	srv := simtest.Start(t, azuresim.Options{BusyMode: azuresim.BusyRefuse})
	c := newClients(t, srv, nil, 3)
	createNSG(t, c, "nsg-loc", tcpRule("a", 200, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), tcpRule("b", 201, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"))
	raw := newRawClient(t, srv)

	// A running operation: the Location URL answers 202 with Retry-After.
	srv.SetWriteLatency(time.Hour)
	resp, _ := raw.must(http.MethodDelete, rulePath(srv, "nsg-loc", "a"), nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" || resp.Header.Get("Azure-AsyncOperation") == "" {
		t.Fatalf("DELETE: %d, Location %q", resp.StatusCode, loc)
	}
	resp, _ = raw.must(http.MethodGet, loc, nil)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Retry-After") == "" || resp.Header.Get("retry-after-ms") == "" {
		t.Errorf("Location while running: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, b := raw.must(http.MethodGet, rulePath(srv, "nsg-loc", "a"), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"provisioningState":"Deleting"`) {
		t.Errorf("rule while deleting: %d %s", resp.StatusCode, b)
	}
	// Another write to the busy NSG is refused with Azure's retryable error
	// (BusyRefuse).
	resp, b = raw.must(http.MethodDelete, rulePath(srv, "nsg-loc", "b"), nil)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "RetryableErrorDueToAnotherOperation") ||
		!strings.Contains(string(b), "DeleteSecurityRuleOperation") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("write to busy NSG: %d %s", resp.StatusCode, b)
	}

	// A finished operation: 204.
	srv2 := simtest.Start(t, azuresim.Options{})
	c2 := newClients(t, srv2, nil, 3)
	createNSG(t, c2, "nsg-loc", tcpRule("a", 200, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"))
	raw2 := newRawClient(t, srv2)
	resp, _ = raw2.must(http.MethodDelete, rulePath(srv2, "nsg-loc", "a"), nil)
	if resp, _ = raw2.must(http.MethodGet, resp.Header.Get("Location"), nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("Location when done: %d, want 204", resp.StatusCode)
	}
	if resp, _ = raw2.must(http.MethodDelete, rulePath(srv2, "nsg-loc", "a"), nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE of a missing rule: %d, want 204", resp.StatusCode)
	}
}

func TestRuleLifecycleWithLatency(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{WriteLatency: 30 * time.Millisecond})
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()
	createNSG(t, c, "nsg-web")

	poller, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-web", "jit-web-g-1",
		*tcpRule("jit-web-g-1", 150, armnetwork.SecurityRuleAccessAllow, "203.0.113.7/32", "22"), nil)
	if err != nil {
		t.Fatalf("begin create rule: %v", err)
	}
	// While the operation runs the rule reads as Updating and the NSG is busy.
	mid, err := c.rules.Get(ctx, testRG, "nsg-web", "jit-web-g-1", nil)
	if err != nil {
		t.Fatalf("get rule during operation: %v", err)
	}
	if poller.Done() {
		t.Log("operation finished before the first read; skipping the Updating check")
	} else if *mid.Properties.ProvisioningState != armnetwork.ProvisioningStateUpdating {
		t.Errorf("provisioningState during operation = %s, want Updating", *mid.Properties.ProvisioningState)
	}
	created, err := poller.PollUntilDone(ctx, pollOpts)
	if err != nil {
		t.Fatalf("create rule: %v", err)
	}
	if *created.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded || *created.Properties.SourceAddressPrefix != "203.0.113.7/32" {
		t.Errorf("created rule = %+v", *created.Properties)
	}
	var names []string
	for pager := c.rules.NewListPager(testRG, "nsg-web", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list rules: %v", err)
		}
		for _, r := range page.Value {
			names = append(names, *r.Name)
		}
	}
	if !slices.Equal(names, []string{"jit-web-g-1"}) {
		t.Errorf("rules = %v", names)
	}
	if err := deleteRule(ctx, c, "nsg-web", "jit-web-g-1"); err != nil {
		t.Fatalf("delete rule: %v", err)
	}
	if _, err := c.rules.Get(ctx, testRG, "nsg-web", "jit-web-g-1", nil); err == nil {
		t.Error("rule still readable after delete")
	} else if status, code := errorCode(err); status != http.StatusNotFound || code != "NotFound" {
		t.Errorf("get deleted rule: %d %s", status, code)
	}
	// Deleting what is gone succeeds (204), as Azure does.
	if err := deleteRule(ctx, c, "nsg-web", "jit-web-g-1"); err != nil {
		t.Errorf("second delete: %v", err)
	}

	events := srv.Events()
	var ops []string
	for _, ev := range events {
		if ev.RuleName == "jit-web-g-1" {
			ops = append(ops, ev.Operation+"/"+ev.Result)
			if ev.Completed.Before(ev.Accepted.Add(30*time.Millisecond)) || ev.Rule == nil || ev.Rule.Priority != 150 {
				t.Errorf("event %+v: want completion after the write latency and a rule snapshot", ev)
			}
		}
	}
	if want := []string{"PutSecurityRuleOperation/Succeeded", "DeleteSecurityRuleOperation/Succeeded"}; !slices.Equal(ops, want) {
		t.Errorf("events = %v, want %v", ops, want)
	}
}

func TestRuleValidationErrors(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, -1)
	ctx := context.Background()
	createNSG(t, c, "nsg-v", tcpRule("existing", 200, armnetwork.SecurityRuleAccessDeny, "*", "22"))

	mod := func(f func(p *armnetwork.SecurityRulePropertiesFormat)) *armnetwork.SecurityRule {
		r := tcpRule("candidate", 300, armnetwork.SecurityRuleAccessAllow, "203.0.113.7", "22")
		f(r.Properties)
		return r
	}
	cases := []struct {
		name string
		rule *armnetwork.SecurityRule
		code string
	}{
		{"duplicate priority", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](200) }), "SecurityRuleConflict"},
		{"priority too low", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](99) }), "SecurityRuleInvalidPriority"},
		{"priority too high", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](4097) }), "SecurityRuleInvalidPriority"},
		{"long description", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Description = to.Ptr(strings.Repeat("x", 141)) }), "SecurityRuleInvalidDescription"},
		{"bad prefix", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourceAddressPrefix = to.Ptr("300.1.2.3") }), "SecurityRuleInvalidAddressPrefix"},
		{"bad port", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.DestinationPortRange = to.Ptr("70000") }), "SecurityRuleInvalidPortRange"},
		{"bad protocol", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.Protocol = to.Ptr(armnetwork.SecurityRuleProtocol("Gre"))
		}), "SecurityRuleInvalidProtocol"},
		{"mixed families", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.SourceAddressPrefix = nil
			p.SourceAddressPrefixes = []*string{to.Ptr("203.0.113.7"), to.Ptr("2001:db8::1")}
		}), "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies"},
		{"service tag in list", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.SourceAddressPrefix = nil
			p.SourceAddressPrefixes = []*string{to.Ptr("Internet"), to.Ptr("203.0.113.7")}
		}), "SecurityRuleParameterContainsUnsupportedValue"},
		{"bad name", func() *armnetwork.SecurityRule {
			r := tcpRule("-starts-with-dash", 300, armnetwork.SecurityRuleAccessAllow, "203.0.113.7", "22")
			return r
		}(), "InvalidResourceName"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := putRule(ctx, c, "nsg-v", tc.rule)
			if status, code := errorCode(err); status != http.StatusBadRequest || code != tc.code {
				t.Errorf("got %d %q (%v), want 400 %s", status, code, err, tc.code)
			}
		})
	}

	t.Run("too many rules", func(t *testing.T) {
		var rules []*armnetwork.SecurityRule
		for i := range 1001 {
			rules = append(rules, tcpRule(fmt.Sprintf("r%d", i), int32(100+i), armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"))
		}
		poller, err := c.groups.BeginCreateOrUpdate(ctx, testRG, "nsg-big", armnetwork.SecurityGroup{
			Location: to.Ptr(testLocation), Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: rules},
		}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, pollOpts)
		}
		if status, code := errorCode(err); status != http.StatusBadRequest || code != "SecurityRuleCountLimitReached" {
			t.Errorf("got %d %q, want 400 SecurityRuleCountLimitReached", status, code)
		}
	})

	raw := newRawClient(t, srv)
	shape := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", http.MethodPut, rulePath(srv, "nsg-v", "x"), `{"properties":`, 400, "InvalidRequestFormat"},
		{"name mismatch", http.MethodPut, rulePath(srv, "nsg-v", "x"), `{"name":"y","properties":{}}`, 400, "InvalidRequestFormat"},
		{"missing api-version", http.MethodGet, nsgPath(srv, "nsg-v"), ``, 400, "MissingApiVersionParameter"},
		{"unknown NSG", http.MethodGet, nsgPath(srv, "nope") + "?api-version=2025-01-01", ``, 404, "ResourceNotFound"},
		{"old api-version", http.MethodGet, nsgPath(srv, "nsg-v") + "?api-version=2016-09-01", ``, 400, "NoRegisteredProviderFound"},
		{"bad NSG name", http.MethodPut, nsgPath(srv, "bad name!") + "?api-version=2025-05-01", `{"location":"westeurope"}`, 400, "InvalidResourceName"},
		{"unknown subscription", http.MethodGet, "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x/providers/Microsoft.Network/networkSecurityGroups/y?api-version=2025-05-01", ``, 404, "SubscriptionNotFound"},
	}
	for _, tc := range shape {
		t.Run(tc.name, func(t *testing.T) {
			resp, b, err := raw.doText(tc.method, tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
}

func TestAuthenticationFailures(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	path := nsgPath(srv, "any") + "?api-version=2025-05-01"
	now := time.Now()
	foreign, err := azuresim.SignWithForeignKeyForTest(map[string]any{
		"aud": srv.URL(), "iss": "https://sts.windows.net/" + srv.TenantID() + "/", "exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := srv.IssueAccessTokenForTest(srv.URL(), now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wrongAudience, err := srv.IssueAccessTokenForTest("https://graph.microsoft.com", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"foreign key": foreign, "expired": expired, "wrong audience": wrongAudience, "missing": ""} {
		t.Run(name, func(t *testing.T) {
			c := &rawClient{t: t, srv: srv, token: tok}
			resp, b := c.must(http.MethodGet, path, nil)
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal(b, &e)
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || (e.Error.Code != "InvalidAuthenticationToken" && e.Error.Code != "AuthenticationFailed") {
				t.Errorf("got %d %s", resp.StatusCode, b)
			}
			if !strings.HasPrefix(challenge, "Bearer authorization_uri=") || !strings.Contains(challenge, `error="invalid_token"`) || strings.Contains(challenge, "claims") {
				t.Errorf("WWW-Authenticate = %q", challenge)
			}
		})
	}
}

func TestIfMatch(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, -1)
	ctx := context.Background()
	createNSG(t, c, "nsg-e")
	first, err := putRule(ctx, c, "nsg-e", tcpRule("r1", 200, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putRule(ctx, c, "nsg-e", tcpRule("r1", 201, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22")); err != nil {
		t.Fatal(err)
	}
	stale := policy.WithHTTPHeader(ctx, http.Header{"If-Match": {*first.Etag}})
	_, err = c.rules.BeginCreateOrUpdate(stale, testRG, "nsg-e", "r1", *tcpRule("r1", 202, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), nil)
	if status, code := errorCode(err); status != http.StatusPreconditionFailed || code != "PreconditionFailed" {
		t.Errorf("stale If-Match PUT: %d %s", status, code)
	}
	_, err = c.rules.BeginDelete(stale, testRG, "nsg-e", "r1", nil)
	if status, _ := errorCode(err); status != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match DELETE: %v", err)
	}
	create := policy.WithHTTPHeader(ctx, http.Header{"If-None-Match": {"*"}})
	_, err = c.rules.BeginCreateOrUpdate(create, testRG, "nsg-e", "r1", *tcpRule("r1", 203, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), nil)
	if status, _ := errorCode(err); status != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match: * on an existing rule: %v", err)
	}
	cur, err := c.rules.Get(ctx, testRG, "nsg-e", "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := policy.WithHTTPHeader(ctx, http.Header{"If-Match": {*cur.Etag}})
	if _, err := putRule(fresh, c, "nsg-e", tcpRule("r1", 204, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22")); err != nil {
		t.Errorf("current If-Match: %v", err)
	}
}

// TestConcurrentWritesToOneNSG has twelve SDK clients write rules to one NSG
// at once: every rule lands in both busy modes, refused writes being
// retried (BusyRefuse) or queued writes waiting their turn (BusyQueue).
func TestConcurrentWritesToOneNSG(t *testing.T) {
	for _, mode := range []string{azuresim.BusyRefuse, azuresim.BusyQueue} {
		t.Run(mode, func(t *testing.T) { testConcurrentWritesToOneNSG(t, mode) })
	}
}

func testConcurrentWritesToOneNSG(t *testing.T, mode string) {
	srv := simtest.Start(t, azuresim.Options{WriteLatency: 15 * time.Millisecond, BusyMode: mode})
	c := newClients(t, srv, nil, 100)
	ctx := context.Background()
	createNSG(t, c, "nsg-busy")
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = putRule(ctx, c, "nsg-busy", tcpRule(fmt.Sprintf("jit-g-%d", i), int32(150+i), armnetwork.SecurityRuleAccessAllow, "203.0.113.7", "22"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	nsg, err := c.groups.Get(ctx, testRG, "nsg-busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	prios := map[int32]bool{}
	for _, r := range nsg.Properties.SecurityRules {
		prios[*r.Properties.Priority] = true
	}
	if len(nsg.Properties.SecurityRules) != n || len(prios) != n {
		t.Errorf("NSG has %d rules with %d distinct priorities, want %d", len(nsg.Properties.SecurityRules), len(prios), n)
	}
	cs := srv.Counters()
	switch {
	case mode == azuresim.BusyRefuse && (cs.Busy == 0 || cs.Queued != 0):
		t.Errorf("%d writes refused as busy, %d queued: want some refused (the writes overlap), none queued", cs.Busy, cs.Queued)
	case mode == azuresim.BusyQueue && (cs.Queued == 0 || cs.Busy != 0):
		t.Errorf("%d writes queued, %d refused as busy: want some queued (the writes overlap), none refused", cs.Queued, cs.Busy)
	}
}

func TestBusyConflictMode(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{BusyStatus: http.StatusConflict, BusyMode: azuresim.BusyRefuse})
	c := newClients(t, srv, nil, 5)
	ctx := context.Background()
	createNSG(t, c, "nsg-409")
	// A long operation keeps the NSG busy for the second write.
	srv.SetWriteLatency(time.Hour)
	if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-409", "a", *tcpRule("a", 200, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-409", "b", *tcpRule("b", 201, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), nil)
	if status, code := errorCode(err); status != http.StatusConflict || code != "AnotherOperationInProgress" {
		t.Errorf("second write: %d %s (%v), want 409 AnotherOperationInProgress", status, code, err)
	}
}

func TestThrottling(t *testing.T) {
	// One token per 1000 s: after the burst of two, writes are throttled.
	srv := simtest.Start(t, azuresim.Options{WriteRate: 0.001, WriteBurst: 2})
	raw := newRawClient(t, srv)
	var statuses []int
	var remaining []string
	for range 3 {
		resp, b := raw.must(http.MethodPut, "/subscriptions/"+srv.SubscriptionID()+"/resourcegroups/rg-t?api-version=2022-09-01", map[string]any{"location": "westeurope"})
		statuses = append(statuses, resp.StatusCode)
		remaining = append(remaining, resp.Header.Get("x-ms-ratelimit-remaining-subscription-writes"))
		if resp.StatusCode == http.StatusTooManyRequests && (!strings.Contains(string(b), "SubscriptionRequestsThrottled") || resp.Header.Get("Retry-After") == "") {
			t.Errorf("throttled answer lacks code or Retry-After: %s", b)
		}
	}
	if !slices.Equal(statuses, []int{201, 200, 429}) || !slices.Equal(remaining, []string{"1", "0", "0"}) {
		t.Errorf("statuses %v, remaining writes %v", statuses, remaining)
	}
	// Reads are not limited.
	if resp, _ := raw.must(http.MethodGet, "/subscriptions/"+srv.SubscriptionID()+"/resourcegroups/rg-t?api-version=2022-09-01", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("read after throttling: %d", resp.StatusCode)
	}
	if srv.Counters().Throttled != 1 {
		t.Errorf("throttled counter = %d", srv.Counters().Throttled)
	}
}

func TestFaultInjection(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{FaultRate: 1, FaultSeed: 7})
	raw := newRawClient(t, srv)
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 5; i++ {
		resp, b, err := raw.do(http.MethodPut, rulePath(srv, "nsg-f", fmt.Sprintf("r%d", i)), rawRuleBody(100+i, "22"))
		switch {
		case err != nil:
			seen["reset"] = true
		case resp.StatusCode == 404:
			// The write got through (its operation is to fail) but the NSG does not exist.
			seen["failed-lro"] = true
		default:
			seen[fmt.Sprint(resp.StatusCode)] = true
			if resp.StatusCode >= 500 && !strings.Contains(string(b), `"code"`) {
				t.Errorf("injected %d without ARM's error shape: %s", resp.StatusCode, b)
			}
		}
	}
	faults := srv.Counters().Faults
	for _, kind := range []string{azuresim.FaultInternalError, azuresim.FaultUnavailable, azuresim.FaultThrottle, azuresim.FaultReset, azuresim.FaultFailedLRO} {
		if faults[kind] == 0 {
			t.Errorf("fault %s never injected (counters %v)", kind, faults)
		}
	}
	for _, kind := range []string{"500", "503", "429", "reset", "failed-lro"} {
		if !seen[kind] {
			t.Errorf("client never saw %s (saw %v)", kind, seen)
		}
	}
}

func TestFailedOperationLeavesNoRule(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{FaultSeed: 3})
	c := newClients(t, srv, nil, -1)
	ctx := context.Background()
	createNSG(t, c, "nsg-lro")
	raw := newRawClient(t, srv)
	srv.SetFaultRate(1)
	var asyncURL string
	for i := 0; i < 200 && asyncURL == ""; i++ {
		resp, _, err := raw.do(http.MethodPut, rulePath(srv, "nsg-lro", "doomed"), rawRuleBody(200, "22"))
		if err == nil && resp.StatusCode == http.StatusCreated {
			asyncURL = resp.Header.Get("Azure-AsyncOperation")
		}
	}
	srv.SetFaultRate(0)
	if asyncURL == "" {
		t.Fatal("no write was accepted with a failing operation")
	}
	_, b := raw.must(http.MethodGet, asyncURL, nil)
	var st struct {
		Status string
		Error  struct{ Code string }
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Status != "Failed" || st.Error.Code == "" {
		t.Errorf("operation status = %s", b)
	}
	if _, err := c.rules.Get(ctx, testRG, "nsg-lro", "doomed", nil); err == nil {
		t.Error("the failed operation's rule exists")
	}
	// The SDK reports a failed operation as an error.
	srv.SetFaultRate(1)
	var err error
	for i := 0; i < 200; i++ {
		var poller *runtime.Poller[armnetwork.SecurityRulesClientCreateOrUpdateResponse]
		poller, err = c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-lro", "doomed2", *tcpRule("doomed2", 201, armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22"), nil)
		if err == nil {
			srv.SetFaultRate(0)
			_, err = poller.PollUntilDone(ctx, pollOpts)
			break
		}
	}
	srv.SetFaultRate(0)
	if err == nil {
		t.Error("PollUntilDone succeeded for a failed operation")
	}
}

func TestManagedIdentityAndFederatedCredentials(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	ctx := context.Background()
	t.Run("managed identity", func(t *testing.T) {
		endpoint, header := srv.ManagedIdentityEndpoint()
		t.Setenv("IDENTITY_ENDPOINT", endpoint)
		t.Setenv("IDENTITY_HEADER", header)
		cred, err := newManagedIdentityCredential()
		if err != nil {
			t.Fatal(err)
		}
		c := newClients(t, srv, cred, 1)
		createNSG(t, c, "nsg-mi")
	})
	t.Run("client assertion", func(t *testing.T) {
		cred, err := newAssertionCredential(srv, func(context.Context) (string, error) {
			return srv.IssueFederatedToken("repo:org/infra:ref:refs/heads/main")
		})
		if err != nil {
			t.Fatal(err)
		}
		c := newClients(t, srv, cred, 1)
		createNSG(t, c, "nsg-fic")
	})
	t.Run("github id token", func(t *testing.T) {
		reqURL, reqToken := srv.GitHubIDTokenRequest()
		cred, err := newAssertionCredential(srv, func(ctx context.Context) (string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, reqURL+"?audience=api://AzureADTokenExchange", nil)
			if err != nil {
				return "", err
			}
			req.Header.Set("Authorization", "Bearer "+reqToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var body struct{ Value string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return "", fmt.Errorf("id token answer %d: %w", resp.StatusCode, err)
			}
			if body.Value == "" {
				return "", fmt.Errorf("id token answer %d: no token", resp.StatusCode)
			}
			return body.Value, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		c := newClients(t, srv, cred, 1)
		createNSG(t, c, "nsg-gh")
	})
	t.Run("foreign assertion refused", func(t *testing.T) {
		cred, err := newAssertionCredential(srv, func(context.Context) (string, error) {
			return azuresim.SignWithForeignKeyForTest(map[string]any{"aud": "api://AzureADTokenExchange", "exp": time.Now().Add(time.Hour).Unix()})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.URL() + "/.default"}}); err == nil || !strings.Contains(err.Error(), "AADSTS50013") {
			t.Errorf("got %v, want AADSTS50013", err)
		}
	})
}

func TestVerifyFlowThroughTwoNSGs(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()
	subnet := createNSG(t, c, "nsg-subnet", tcpRule("allow-ssh-admin", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	nic := createNSG(t, c, "nsg-nic", tcpRule("jit-web-deny-tcp", 4000, armnetwork.SecurityRuleAccessDeny, "*", "22"))
	flow := azuresim.Flow{NSGIDs: []string{*subnet.ID, *nic.ID}, Protocol: "Tcp", Source: "203.0.113.7", Destination: "10.0.0.4", DestinationPort: 22}

	v, err := srv.VerifyFlow(flow)
	if err != nil {
		t.Fatal(err)
	}
	if v.Allowed || v.NSGID != *nic.ID || v.RuleName != "jit-web-deny-tcp" || v.Priority != 4000 {
		t.Errorf("before grant: %+v, want denied by the NIC's deny rule", v)
	}
	if _, err := putRule(ctx, c, "nsg-nic", tcpRule("jit-web-g-1", 150, armnetwork.SecurityRuleAccessAllow, "203.0.113.7/32", "22")); err != nil {
		t.Fatal(err)
	}
	if v, err = srv.VerifyFlow(flow); err != nil || !v.Allowed || v.RuleName != "jit-web-g-1" {
		t.Errorf("after grant: %+v, %v", v, err)
	}
	other := flow
	other.Source = "198.51.100.9"
	if v, err = srv.VerifyFlow(other); err != nil || v.Allowed || v.NSGID != *subnet.ID || v.RuleName != "DenyAllInBound" {
		t.Errorf("other source: %+v, %v: want denied by the subnet's default rule", v, err)
	}

	// The same over HTTP.
	raw := &rawClient{t: t, srv: srv}
	resp, b := raw.must(http.MethodPost, "/_sim/flow/verify", flow)
	var hv azuresim.Verdict
	if err := json.Unmarshal(b, &hv); err != nil || resp.StatusCode != http.StatusOK || !hv.Allowed {
		t.Errorf("POST /_sim/flow/verify: %d %s", resp.StatusCode, b)
	}
	bad := flow
	bad.NSGIDs = []string{nsgPath(srv, "missing")}
	if _, err := srv.VerifyFlow(bad); err == nil {
		t.Error("flow through an unknown NSG: no error")
	}
}

func TestSeedFile(t *testing.T) {
	dir := t.TempDir()
	id := "/subscriptions/" + azuresim.DefaultSubscriptionID + "/resourceGroups/rg-seed/providers/Microsoft.Network/networkSecurityGroups/nsg-seed"
	seed := fmt.Sprintf(`{"networkSecurityGroups":[{"id":%q,"location":"westeurope","tags":{"env":"demo"},
	  "properties":{"securityRules":[{"name":"allow-22-any","properties":{"priority":300,"direction":"Inbound","access":"Allow",
	  "protocol":"Tcp","sourceAddressPrefix":"*","sourcePortRange":"*","destinationAddressPrefix":"*","destinationPortRange":"22"}}]}}]}`, id)
	path := dir + "/seed.json"
	if err := writeFile(path, seed); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path})
	c := newClients(t, srv, nil, 3)
	nsg, err := c.groups.Get(context.Background(), "rg-seed", "nsg-seed", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *nsg.ID != id || len(nsg.Properties.SecurityRules) != 1 || *nsg.Tags["env"] != "demo" {
		t.Errorf("seeded NSG = %s with %d rules", *nsg.ID, len(nsg.Properties.SecurityRules))
	}
	v, err := srv.VerifyFlow(azuresim.Flow{NSGIDs: []string{id}, Protocol: "Tcp", Source: "198.51.100.1", Destination: "10.0.0.4", DestinationPort: 22})
	if err != nil || !v.Allowed {
		t.Errorf("seeded allow rule: %+v %v", v, err)
	}
}

func TestControlEndpoints(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	raw := &rawClient{t: t, srv: srv}
	resp, b := raw.must(http.MethodPut, "/_sim/config", map[string]any{"writeLatency": "40ms", "faultRate": 0.25})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"writeLatency":"40ms"`) || !strings.Contains(string(b), `"faultRate":0.25`) {
		t.Errorf("PUT /_sim/config: %d %s", resp.StatusCode, b)
	}
	if resp, _ := raw.must(http.MethodPut, "/_sim/config", map[string]any{"faultRate": 2}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("fault rate 2 accepted: %d", resp.StatusCode)
	}
	raw.must(http.MethodGet, "/metadata/endpoints", nil)
	_, b = raw.must(http.MethodGet, "/_sim/counters", nil)
	var cnt azuresim.Counters
	if err := json.Unmarshal(b, &cnt); err != nil || cnt.Requests["GET metadata"] != 1 || cnt.Responses["GET metadata 200"] != 1 {
		t.Errorf("counters: %s", b)
	}
	if resp, _ := raw.must(http.MethodPost, "/_sim/counters/reset", nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("reset counters: %d", resp.StatusCode)
	}
	if got := srv.Counters().Requests["GET metadata"]; got != 0 {
		t.Errorf("after reset, GET metadata = %d", got)
	}
	_, b = raw.must(http.MethodGet, "/_sim/events", nil)
	if !strings.Contains(string(b), `"events":[]`) {
		t.Errorf("events of a fresh server: %s", b)
	}
}

func BenchmarkRuleRoundTrip(b *testing.B) {
	srv := simtest.Start(b, azuresim.Options{})
	c := newClients(b, srv, nil, 3)
	ctx := context.Background()
	createNSG(b, c, "nsg-bench")
	srv.ResetCounters()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		name := fmt.Sprintf("r%d", i%50)
		if _, err := putRule(ctx, c, "nsg-bench", tcpRule(name, int32(100+i%50), armnetwork.SecurityRuleAccessAllow, "10.0.0.1", "22")); err != nil {
			b.Fatal(err)
		}
		if err := deleteRule(ctx, c, "nsg-bench", name); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	var n int64
	for _, v := range srv.Counters().Requests {
		n += v
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "requests/s")
	b.ReportMetric(float64(n)/float64(b.N), "requests/op")
}
