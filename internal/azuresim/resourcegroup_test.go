package azuresim_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// resourceClients are armresources' clients against the local Azure.
func resourceClients(t *testing.T, srv *azuresim.Server) (*armresources.ResourceGroupsClient, *armresources.Client) {
	t.Helper()
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(srv)}}
	cred := secretCredential(t, srv)
	groups, err := armresources.NewResourceGroupsClient(srv.SubscriptionID(), cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	resources, err := armresources.NewClient(srv.SubscriptionID(), cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return groups, resources
}

// wantGroupNotFound asserts an SDK error is Azure's 404
// ResourceGroupNotFound.
func wantGroupNotFound(t *testing.T, what string, err error) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceGroupNotFound" {
		t.Errorf("%s: %v, want 404 ResourceGroupNotFound", what, err)
	}
}

// A resource group that does not exist is 404 ResourceGroupNotFound for
// every read in it, lists included, as on Azure: never an empty list.
func TestMissingResourceGroupIsNotFound(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 0)
	ctx := context.Background()
	createNSG(t, c, "nsg-web") // in testRG

	pager := c.groups.NewListPager("rg-typo", nil)
	_, err := pager.NextPage(ctx)
	wantGroupNotFound(t, "list NSGs of a missing group", err)
	_, err = c.groups.Get(ctx, "rg-typo", "nsg-web", nil)
	wantGroupNotFound(t, "get an NSG of a missing group", err)
	_, err = c.rules.NewListPager("rg-typo", "nsg-web", nil).NextPage(ctx)
	wantGroupNotFound(t, "list rules of a missing group", err)

	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(srv)}}
	vnets, err := armnetwork.NewVirtualNetworksClient(srv.SubscriptionID(), secretCredential(t, srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = vnets.NewListPager("rg-typo", nil).NextPage(ctx)
	wantGroupNotFound(t, "list virtual networks of a missing group", err)
	_, resources := resourceClients(t, srv)
	_, err = resources.NewListByResourceGroupPager("rg-typo", nil).NextPage(ctx)
	wantGroupNotFound(t, "list the contents of a missing group", err)

	// The group that exists (created with its NSG) still lists, in any case.
	page, err := c.groups.NewListPager("RG-JIT", nil).NextPage(ctx)
	if err != nil || len(page.Value) != 1 {
		t.Errorf("list NSGs of %s: %v, %d NSGs", testRG, err, len(page.Value))
	}
	// An empty group that was created explicitly lists as empty.
	groups, _ := resourceClients(t, srv)
	if _, err := groups.CreateOrUpdate(ctx, "rg-empty", armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatal(err)
	}
	page, err = c.groups.NewListPager("rg-empty", nil).NextPage(ctx)
	if err != nil || len(page.Value) != 0 {
		t.Errorf("list NSGs of an empty group: %v, %d NSGs", err, len(page.Value))
	}
}

// GET .../resourceGroups/{rg}/resources lists a group's contents as Azure
// does: id, name, type and location of each resource.
func TestResourceGroupContents(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 0)
	ctx := context.Background()
	nsg := createNSG(t, c, "nsg-web")
	createNSG(t, c, "nsg-db")
	_, resources := resourceClients(t, srv)

	var got []armresources.GenericResourceExpanded
	pager := resources.NewListByResourceGroupPager(testRG, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Value {
			got = append(got, *r)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d resources, want 2: %+v", len(got), got)
	}
	web := got[slices.IndexFunc(got, func(r armresources.GenericResourceExpanded) bool { return *r.Name == "nsg-web" })]
	if *web.ID != *nsg.ID || *web.Type != "Microsoft.Network/networkSecurityGroups" || *web.Location != testLocation {
		t.Errorf("nsg-web listed as %s %s %s, want %s Microsoft.Network/networkSecurityGroups %s", *web.ID, *web.Type, *web.Location, *nsg.ID, testLocation)
	}
}

// Deleting a resource group answers 202 with a Location to poll and
// deletes the group and everything in it, as Azure does.
func TestResourceGroupDelete(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 0)
	ctx := context.Background()
	createNSG(t, c, "nsg-web")
	groups, resources := resourceClients(t, srv)

	var raw *http.Response
	poller, err := groups.BeginDelete(policy.WithCaptureResponse(ctx, &raw), testRG, nil)
	if err != nil {
		t.Fatal(err)
	}
	if raw.StatusCode != http.StatusAccepted || raw.Header.Get("Location") == "" {
		t.Errorf("delete answered %d, Location %q; want 202 with a Location", raw.StatusCode, raw.Header.Get("Location"))
	}
	if _, err := poller.PollUntilDone(ctx, pollOpts); err != nil {
		t.Fatal(err)
	}
	_, err = groups.Get(ctx, testRG, nil)
	wantGroupNotFound(t, "get the deleted group", err)
	_, err = c.groups.NewListPager(testRG, nil).NextPage(ctx)
	wantGroupNotFound(t, "list NSGs of the deleted group", err)
	_, err = resources.NewListByResourceGroupPager(testRG, nil).NextPage(ctx)
	wantGroupNotFound(t, "list the deleted group's contents", err)
	// The NSG is gone with it, from the subscription-wide list too.
	page, err := c.groups.NewListAllPager(nil).NextPage(ctx)
	if err != nil || len(page.Value) != 0 {
		t.Errorf("NSGs of the subscription after the delete: %v, %d", err, len(page.Value))
	}
	// A group that does not exist cannot be deleted.
	_, err = groups.BeginDelete(ctx, "rg-typo", nil)
	wantGroupNotFound(t, "delete a missing group", err)
	// Created again, it is empty.
	createNSG(t, c, "nsg-new")
	again, err := c.groups.NewListPager(testRG, nil).NextPage(ctx)
	if err != nil || len(again.Value) != 1 || *again.Value[0].Name != "nsg-new" {
		t.Errorf("the group created again: %v, %+v", err, again.Value)
	}
}
