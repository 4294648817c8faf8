package azuresim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

const otherSubscription = "7d0e4b1a-3c2f-4e5d-9a8b-1f6c2e3d4a5b"

// clientsFor builds armnetwork clients for one subscription of srv.
func clientsFor(t *testing.T, srv *azuresim.Server, sub string) networkClients {
	t.Helper()
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloudConfig(srv),
		Retry: policy.RetryOptions{MaxRetries: 3, RetryDelay: 5 * time.Millisecond},
	}}
	cred := secretCredential(t, srv)
	groups, err := armnetwork.NewSecurityGroupsClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := armnetwork.NewSecurityRulesClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return networkClients{groups: groups, rules: rules}
}

func TestSubscriptionsHoldIndependentNSGs(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{Subscriptions: []string{otherSubscription}})
	ctx := context.Background()
	def, other := clientsFor(t, srv, srv.SubscriptionID()), clientsFor(t, srv, strings.ToUpper(otherSubscription))

	// The same resource group and NSG name in both subscriptions.
	a := createNSG(t, def, "nsg-web", tcpRule("ssh", 300, armnetwork.SecurityRuleAccessAllow, "10.1.0.0/24", "22"))
	b := createNSG(t, other, "nsg-web")
	wantB := "/subscriptions/" + otherSubscription + "/resourceGroups/" + testRG + "/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	if *b.ID != wantB || *a.ID == *b.ID {
		t.Errorf("ids %s and %s, want the second %s", *a.ID, *b.ID, wantB)
	}
	if _, err := putRule(ctx, other, "nsg-web", tcpRule("rdp", 310, armnetwork.SecurityRuleAccessAllow, "10.2.0.0/24", "3389")); err != nil {
		t.Fatal(err)
	}

	rulesOf := func(c networkClients) []string {
		t.Helper()
		nsg, err := c.groups.Get(ctx, testRG, "NSG-WEB", nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range nsg.Properties.SecurityRules {
			names = append(names, *r.Name)
		}
		return names
	}
	if got := rulesOf(def); !slices.Equal(got, []string{"ssh"}) {
		t.Errorf("default subscription's NSG rules = %v, want [ssh]", got)
	}
	if got := rulesOf(other); !slices.Equal(got, []string{"rdp"}) {
		t.Errorf("other subscription's NSG rules = %v, want [rdp]", got)
	}

	// Lists are per subscription.
	for _, c := range []networkClients{def, other} {
		var ids []string
		for pager := c.groups.NewListAllPager(nil); pager.More(); {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range page.Value {
				ids = append(ids, *n.ID)
			}
		}
		if len(ids) != 1 {
			t.Errorf("list all NSGs = %v, want the subscription's one", ids)
		}
	}

	// Deleting one leaves the other.
	poller, err := def.groups.BeginDelete(ctx, testRG, "nsg-web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := def.groups.Get(ctx, testRG, "nsg-web", nil); err == nil {
		t.Error("deleted NSG still found in the default subscription")
	}
	if got := rulesOf(other); !slices.Equal(got, []string{"rdp"}) {
		t.Errorf("other subscription's NSG rules after the default one's delete = %v", got)
	}

	// A write's polling URLs name its own subscription.
	raw := newRawClient(t, srv)
	resp, body := raw.must(http.MethodPut, "/subscriptions/"+otherSubscription+"/resourceGroups/"+testRG+
		"/providers/Microsoft.Network/networkSecurityGroups/nsg-web/securityRules/ssh?api-version=2025-05-01", rawRuleBody(300, "22"))
	if asyncOp := resp.Header.Get("Azure-AsyncOperation"); resp.StatusCode != http.StatusCreated ||
		!strings.Contains(asyncOp, "/subscriptions/"+otherSubscription+"/providers/Microsoft.Network/locations/") {
		t.Errorf("rule PUT in the other subscription: %d %s, Azure-AsyncOperation %q", resp.StatusCode, body, asyncOp)
	}

	// Resource groups are per subscription too: deleting the group in the
	// other subscription leaves the default one's group.
	resp, _ = raw.must(http.MethodDelete, "/subscriptions/"+otherSubscription+"/resourcegroups/"+testRG+"?api-version=2021-04-01", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete group in other subscription: %d", resp.StatusCode)
	}
	if _, err := other.groups.Get(ctx, testRG, "nsg-web", nil); err == nil {
		t.Error("NSG of a deleted group still found")
	}
	resp, body = raw.must(http.MethodGet, "/subscriptions/"+srv.SubscriptionID()+"/resourcegroups/"+testRG+"?api-version=2021-04-01", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("default subscription's group after the other's delete: %d %s", resp.StatusCode, body)
	}
}

func TestUnknownSubscriptionNotFound(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{Subscriptions: []string{otherSubscription}})
	c := clientsFor(t, srv, "00000000-0000-0000-0000-000000000001")
	_, err := c.groups.BeginCreateOrUpdate(context.Background(), testRG, "nsg", armnetwork.SecurityGroup{Location: to.Ptr(testLocation)}, nil)
	if status, code := errorCode(err); status != http.StatusNotFound || code != "SubscriptionNotFound" {
		t.Errorf("write to an unknown subscription: %d %s (%v), want 404 SubscriptionNotFound", status, code, err)
	}
	raw := newRawClient(t, srv)
	resp, body := raw.must(http.MethodGet, "/subscriptions/00000000-0000-0000-0000-000000000001?api-version=2022-12-01", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "SubscriptionNotFound") {
		t.Errorf("GET unknown subscription: %d %s", resp.StatusCode, body)
	}
	resp, body = raw.must(http.MethodGet, "/subscriptions/"+strings.ToUpper(otherSubscription)+"?api-version=2022-12-01", nil)
	var doc struct {
		SubscriptionID string `json:"subscriptionId"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.SubscriptionID != otherSubscription {
		t.Errorf("GET served subscription: %d %s", resp.StatusCode, body)
	}
}

func TestListSubscriptionsPages(t *testing.T) {
	extra := azuresim.ExtraSubscriptionIDs(4)
	if again := azuresim.ExtraSubscriptionIDs(4); !slices.Equal(extra, again) {
		t.Fatalf("ExtraSubscriptionIDs is not deterministic: %v then %v", extra, again)
	}
	srv := simtest.Start(t, azuresim.Options{Subscriptions: extra})
	srv.SetPageSizeForTest(2)
	want := append([]string{srv.SubscriptionID()}, extra...)
	if got := srv.Subscriptions(); !slices.Equal(got, want) {
		t.Errorf("Subscriptions() = %v, want %v", got, want)
	}
	raw := newRawClient(t, srv)
	var got []string
	pages := 0
	for next := "/subscriptions?api-version=2022-12-01"; next != ""; pages++ {
		resp, body := raw.must(http.MethodGet, next, nil)
		var page struct {
			Value []struct {
				ID             string `json:"id"`
				SubscriptionID string `json:"subscriptionId"`
				TenantID       string `json:"tenantId"`
				State          string `json:"state"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list subscriptions: %d %s", resp.StatusCode, body)
		}
		for _, s := range page.Value {
			if s.ID != "/subscriptions/"+s.SubscriptionID || s.TenantID != srv.TenantID() || s.State != "Enabled" {
				t.Errorf("subscription %+v", s)
			}
			got = append(got, s.SubscriptionID)
		}
		next = page.NextLink
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", got, pages, want)
	}
}

func TestStartRefusesBadSubscriptions(t *testing.T) {
	for _, subs := range [][]string{{""}, {"a/b"}, {otherSubscription, strings.ToUpper(otherSubscription)}, {azuresim.DefaultSubscriptionID}} {
		if srv, err := azuresim.Start(azuresim.Options{Subscriptions: subs}); err == nil {
			_ = srv.Close()
			t.Errorf("Start with subscriptions %q: no error", subs)
		}
	}
}

func TestSeedFilePlacesResourcesInSubscriptions(t *testing.T) {
	extra := azuresim.ExtraSubscriptionIDs(1)[0]
	nsgID := func(sub string) string {
		return "/subscriptions/" + sub + "/resourceGroups/rg-seed/providers/Microsoft.Network/networkSecurityGroups/nsg-seed"
	}
	rule := `{"name":"allow-22","properties":{"priority":300,"direction":"Inbound","access":"Allow","protocol":"Tcp",
	  "sourceAddressPrefix":"*","sourcePortRange":"*","destinationAddressPrefix":"*","destinationPortRange":"22"}}`
	seed := fmt.Sprintf(`{"subscriptions":[%q],"networkSecurityGroups":[
	  {"id":%q,"location":"westeurope"},
	  {"id":%q,"location":"westeurope","properties":{"securityRules":[%s]}},
	  {"id":%q,"location":"westeurope"}]}`,
		otherSubscription, nsgID(azuresim.DefaultSubscriptionID), nsgID(otherSubscription), rule, nsgID(extra))
	path := t.TempDir() + "/seed.json"
	if err := writeFile(path, seed); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path, Subscriptions: []string{extra}})
	if got, want := srv.Subscriptions(), []string{azuresim.DefaultSubscriptionID, extra, otherSubscription}; !slices.Equal(got, want) {
		t.Errorf("Subscriptions() = %v, want %v", got, want)
	}
	for sub, rules := range map[string]int{azuresim.DefaultSubscriptionID: 0, otherSubscription: 1, extra: 0} {
		nsg, err := clientsFor(t, srv, sub).groups.Get(context.Background(), "rg-seed", "nsg-seed", nil)
		if err != nil {
			t.Fatalf("seeded NSG in %s: %v", sub, err)
		}
		if *nsg.ID != nsgID(sub) || len(nsg.Properties.SecurityRules) != rules {
			t.Errorf("seeded NSG %s has %d rules, want %s with %d", *nsg.ID, len(nsg.Properties.SecurityRules), nsgID(sub), rules)
		}
	}

	// A resource in a subscription the server does not serve is refused.
	bad := fmt.Sprintf(`{"networkSecurityGroups":[{"id":%q,"location":"westeurope"}]}`, nsgID("00000000-0000-0000-0000-000000000001"))
	if err := writeFile(path, bad); err != nil {
		t.Fatal(err)
	}
	if srv, err := azuresim.Start(azuresim.Options{SeedFile: path}); err == nil {
		_ = srv.Close()
		t.Error("seed file with an NSG in an unserved subscription loaded")
	}
}

// The network around a VM is per subscription too: the same names in two
// subscriptions are two networks, each NIC judged by its own
// subscription's NSGs, and each subscription gets its own automatic
// network watcher with its first virtual network.
func TestSubscriptionsHoldIndependentNetworks(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{Subscriptions: []string{otherSubscription}})
	ctx := context.Background()
	build := func(n vmNetwork, allowedSource string) armnetwork.Interface {
		t.Helper()
		nsg := createNSG(t, n.networkClients, "nsg-app", tcpRule("allow-ssh", 200, armnetwork.SecurityRuleAccessAllow, allowedSource, "22"))
		if !strings.HasPrefix(*nsg.ID, "/subscriptions/"+n.sub+"/") {
			t.Errorf("NSG id %s is not in %s", *nsg.ID, n.sub)
		}
		if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", *nsg.ID)); err != nil {
			t.Fatal(err)
		}
		nic, err := n.createNIC(ctx, "nic-web", nicSpec{subnetID: n.appSubnetID("web"), ip: "10.10.1.4"})
		if err != nil {
			t.Fatal(err)
		}
		return nic
	}
	def := newVMNetworkIn(t, srv, srv.SubscriptionID())
	other := newVMNetworkIn(t, srv, otherSubscription)

	// Before the other subscription has a network, it has no watcher.
	build(def, "203.0.113.0/24")
	if _, err := other.watchers.Get(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", nil); err == nil {
		t.Error("the other subscription has an automatic network watcher before any virtual network")
	}
	nicOther := build(other, "198.51.100.0/24") // same address: another network
	nicDef, err := def.nics.Get(ctx, testRG, "nic-web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *nicDef.ID == *nicOther.ID || !strings.HasPrefix(*nicOther.ID, "/subscriptions/"+otherSubscription+"/") {
		t.Errorf("NIC ids %s and %s", *nicDef.ID, *nicOther.ID)
	}
	for _, tc := range []struct {
		nic     string
		source  string
		allowed bool
	}{
		{*nicDef.ID, "203.0.113.7", true}, {*nicDef.ID, "198.51.100.7", false},
		{*nicOther.ID, "203.0.113.7", false}, {*nicOther.ID, "198.51.100.7", true},
	} {
		v, err := srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: tc.nic, Protocol: "Tcp", Source: tc.source, DestinationPort: 22})
		if err != nil {
			t.Fatal(err)
		}
		if v.Allowed != tc.allowed || !inSub(v.NSGID, subOf(tc.nic)) {
			t.Errorf("flow from %s to %s: allowed=%v by %s, want allowed=%v by an NSG of its subscription", tc.source, tc.nic, v.Allowed, v.NSGID, tc.allowed)
		}
	}
	if _, err := other.watchers.Get(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", nil); err != nil {
		t.Errorf("automatic network watcher of the other subscription: %v", err)
	}

	// References stay within a subscription: a NIC cannot sit in another
	// subscription's subnet nor take its NSG.
	_, err = other.createNIC(ctx, "nic-cross-subnet", nicSpec{subnetID: def.appSubnetID("web")})
	wantBadRequest(t, "NIC in another subscription's subnet", err, "InvalidResourceReference")
	nsgDef, err := def.groups.Get(ctx, testRG, "nsg-app", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.createNIC(ctx, "nic-cross-nsg", nicSpec{subnetID: other.appSubnetID("web"), nsgID: *nsgDef.ID})
	wantBadRequest(t, "NIC with another subscription's NSG", err, "InvalidResourceReference")

	// IP flow verify judges targets in its watcher's subscription only.
	_, err = other.watchers.BeginVerifyIPFlow(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", armnetwork.VerificationIPFlowParameters{
		TargetResourceID: nicDef.ID, Direction: to.Ptr(armnetwork.DirectionInbound), Protocol: to.Ptr(armnetwork.IPFlowProtocolTCP),
		LocalIPAddress: to.Ptr("10.10.1.4"), LocalPort: to.Ptr("22"), RemoteIPAddress: to.Ptr("198.51.100.7"), RemotePort: to.Ptr("*"),
	}, nil)
	wantBadRequest(t, "IP flow verify of another subscription's NIC", err, "InvalidTargetResource")

	// An NSG associated in one subscription is in use there only.
	wantBadRequest(t, "delete the other subscription's NSG in use", other.deleteNSG(ctx, "nsg-app"), "InUseNetworkSecurityGroupCannotBeDeleted")
	if err := other.deleteNIC(ctx, "nic-web"); err != nil {
		t.Fatal(err)
	}
	if err := other.deleteVNet(ctx, "vnet-app"); err != nil {
		t.Fatal(err)
	}
	if err := other.deleteNSG(ctx, "nsg-app"); err != nil {
		t.Errorf("delete the other subscription's NSG once unused: %v", err)
	}
	wantBadRequest(t, "delete the default subscription's NSG in use", def.deleteNSG(ctx, "nsg-app"), "InUseNetworkSecurityGroupCannotBeDeleted")
}

func subOf(id string) string {
	rest := strings.TrimPrefix(id, "/subscriptions/")
	sub, _, _ := strings.Cut(rest, "/")
	return sub
}

func inSub(id, sub string) bool { return strings.EqualFold(subOf(id), sub) }
