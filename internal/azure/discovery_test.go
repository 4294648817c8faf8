package azure

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9/fake"
)

func nsgPage(ids ...string) []*armnetwork.SecurityGroup {
	var out []*armnetwork.SecurityGroup
	for _, id := range ids {
		out = append(out, &armnetwork.SecurityGroup{ID: &id})
	}
	return out
}

func TestListNSGIDs(t *testing.T) {
	id := func(rg, name string) string {
		return "/subscriptions/" + testSub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/networkSecurityGroups/" + name
	}
	srv := fake.SecurityGroupsServer{
		NewListAllPager: func(*armnetwork.SecurityGroupsClientListAllOptions) (resp azfake.PagerResponder[armnetwork.SecurityGroupsClientListAllResponse]) {
			// Two pages: discovery must follow nextLink.
			resp.AddPage(http.StatusOK, armnetwork.SecurityGroupsClientListAllResponse{SecurityGroupListResult: armnetwork.SecurityGroupListResult{
				Value: nsgPage(id("a", "x"), id("a", "y"))}}, nil)
			resp.AddPage(http.StatusOK, armnetwork.SecurityGroupsClientListAllResponse{SecurityGroupListResult: armnetwork.SecurityGroupListResult{
				Value: nsgPage(id("b", "z"))}}, nil)
			return resp
		},
		NewListPager: func(rg string, _ *armnetwork.SecurityGroupsClientListOptions) (resp azfake.PagerResponder[armnetwork.SecurityGroupsClientListResponse]) {
			if rg != "a" {
				resp.AddResponseError(http.StatusNotFound, "ResourceGroupNotFound")
				return resp
			}
			resp.AddPage(http.StatusOK, armnetwork.SecurityGroupsClientListResponse{SecurityGroupListResult: armnetwork.SecurityGroupListResult{
				Value: nsgPage(id("a", "x"), id("a", "y"))}}, nil)
			return resp
		},
	}
	c, err := NewClient(context.Background(), Config{SubscriptionID: testSub}, ClientOptions{
		RetryDelay: time.Microsecond,
		Transport:  fake.NewServerFactoryTransport(&fake.ServerFactory{SecurityGroupsServer: srv}),
		Credential: staticCredential{token: fakeJWT(`{"tid":"t"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	all, err := c.ListNSGIDs(ctx, testSub, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{id("a", "x"), id("a", "y"), id("b", "z")}; !slices.Equal(all, want) {
		t.Errorf("subscription = %q, want %q", all, want)
	}
	inA, err := c.ListNSGIDs(ctx, testSub, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{id("a", "x"), id("a", "y")}; !slices.Equal(inA, want) {
		t.Errorf("resource group = %q, want %q", inA, want)
	}
	if _, err := c.ListNSGIDs(ctx, testSub, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing resource group: err = %v, want ErrNotFound", err)
	}
	if _, err := c.ListNSGIDs(ctx, "", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no subscription: err = %v, want ErrInvalid", err)
	}
}
