package azuresim_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// Network Watcher is enabled per region as on Azure: a virtual network
// brings NetworkWatcher_<region> in NetworkWatcherRG, one watcher per
// region, and IP flow verify needs the watcher of the VM's region.
func TestNetworkWatchers(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	a := newAdminFixture(t, srv)
	ctx := t.Context()

	var names []string
	for pager := a.watchers.NewListAllPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range page.Value {
			names = append(names, *w.Location+" "+*w.Name)
		}
	}
	if len(names) != 1 || names[0] != "westeurope NetworkWatcher_westeurope" {
		t.Fatalf("watchers = %v, want the automatic one of westeurope", names)
	}
	if w, err := a.watchers.Get(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", nil); err != nil || *w.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		t.Fatalf("GET the automatic watcher: %v", err)
	}
	if _, err := a.watchers.CreateOrUpdate(ctx, testRG, "nw-second", armnetwork.Watcher{Location: to.Ptr(testLocation)}, nil); err == nil {
		t.Error("a second watcher in westeurope accepted")
	} else if status, code := errorCode(err); status != http.StatusBadRequest || code != "NetworkWatcherCountLimitReached" {
		t.Errorf("a second watcher in westeurope: %d %s", status, code)
	}
	if _, err := a.watchers.CreateOrUpdate(ctx, testRG, "nw-north", armnetwork.Watcher{Location: to.Ptr("northeurope")}, nil); err != nil {
		t.Fatalf("a watcher in northeurope: %v", err)
	}

	verify := func(rg, watcher string) error {
		p, err := a.watchers.BeginVerifyIPFlow(ctx, rg, watcher, armnetwork.VerificationIPFlowParameters{
			TargetResourceID: to.Ptr(a.vm), Direction: to.Ptr(armnetwork.DirectionInbound), Protocol: to.Ptr(armnetwork.IPFlowProtocolTCP),
			LocalIPAddress: to.Ptr(a.ip), LocalPort: to.Ptr("22"), RemoteIPAddress: to.Ptr("198.51.100.1"), RemotePort: to.Ptr("*"),
		}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, pollOpts)
		}
		return err
	}
	if err := verify("NetworkWatcherRG", "NetworkWatcher_westeurope"); err != nil {
		t.Errorf("the VM's region's watcher: %v", err)
	}
	if status, code := errorCode(verify(testRG, "nw-north")); status != http.StatusBadRequest || code != "InvalidTargetResourceLocation" {
		t.Errorf("another region's watcher: %d %s", status, code)
	}
	if status, code := errorCode(verify("NetworkWatcherRG", "NetworkWatcher_eastus")); status != http.StatusNotFound || code != "ResourceNotFound" {
		t.Errorf("a watcher that does not exist: %d %s", status, code)
	}

	p, err := a.watchers.BeginDelete(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, pollOpts)
	}
	if err != nil {
		t.Fatalf("delete the automatic watcher: %v", err)
	}
	if status, _ := errorCode(verify("NetworkWatcherRG", "NetworkWatcher_westeurope")); status != http.StatusNotFound {
		t.Errorf("the deleted watcher still answers: %d", status)
	}
	if _, err := a.watchers.CreateOrUpdate(ctx, testRG, "nw-west", armnetwork.Watcher{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatalf("a watcher of our own in westeurope: %v", err)
	}
	if err := verify(testRG, "nw-west"); err != nil {
		t.Errorf("our own watcher: %v", err)
	}
	if _, err := a.watchers.Get(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", nil); err == nil || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Errorf("the automatic watcher came back beside our own: %v", err)
	}
}
