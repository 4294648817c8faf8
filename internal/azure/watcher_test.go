package azure

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// verifyWorld seeds a local Azure with the policy's rules on an NSG
// associated with a subnet that holds a VM's NIC (10.0.1.4) and a NIC no VM
// has (10.0.1.5), and returns the server, the NSG's id and a Verifier.
func verifyWorld(t *testing.T, rules []jit.SecurityRule) (*azuresim.Server, string, *Verifier) {
	t.Helper()
	sub := azuresim.DefaultSubscriptionID
	rg := "/subscriptions/" + sub + "/resourceGroups/rg-jit/providers/"
	nsgID := rg + "Microsoft.Network/networkSecurityGroups/nsg-web"
	vnetID := rg + "Microsoft.Network/virtualNetworks/vnet"
	subnetID := vnetID + "/subnets/vms"
	nic := func(name, ip string) map[string]any {
		return map[string]any{"id": rg + "Microsoft.Network/networkInterfaces/" + name, "location": "westeurope", "properties": map[string]any{
			"ipConfigurations": []any{map[string]any{"name": "ipconfig1", "properties": map[string]any{
				"privateIPAddress": ip, "privateIPAllocationMethod": "Static", "subnet": map[string]any{"id": subnetID}}}}}}
	}
	var arm []any
	for _, r := range rules {
		arm = append(arm, ruleToARM(r))
	}
	seed := map[string]any{
		"networkSecurityGroups": []any{map[string]any{"id": nsgID, "location": "westeurope", "properties": map[string]any{"securityRules": arm}}},
		"virtualNetworks": []any{map[string]any{"id": vnetID, "location": "westeurope", "properties": map[string]any{
			"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
			"subnets": []any{map[string]any{"name": "vms", "properties": map[string]any{
				"addressPrefix": "10.0.1.0/24", "networkSecurityGroup": map[string]any{"id": nsgID}}}}}}},
		"networkInterfaces": []any{nic("nic-web", "10.0.1.4"), nic("nic-spare", "10.0.1.5")},
		"virtualMachines": []any{map[string]any{"id": rg + "Microsoft.Compute/virtualMachines/vm-web", "location": "westeurope",
			"properties": map[string]any{"networkProfile": map[string]any{"networkInterfaces": []any{
				map[string]any{"id": rg + "Microsoft.Network/networkInterfaces/nic-web"}}}}}},
	}
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path})
	return srv, nsgID, NewVerifier(clientFromEnv(t, srv.Environ(simtest.CAFile())))
}

func TestVerifierAgainstLocalAzure(t *testing.T) {
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"}, AllowedSources: []string{"203.0.113.0/24"},
		BandStart: 100, BandEnd: 199, Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, nsgID, v := verifyWorld(t, p.Rules())
	ctx := context.Background()

	targets, unverifiable, err := v.Targets(ctx, nsgID)
	if err != nil {
		t.Fatal(err)
	}
	rg := "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/rg-jit/providers/"
	want := []jit.VerifyTarget{{VMID: rg + "Microsoft.Compute/virtualMachines/vm-web", NICID: rg + "Microsoft.Network/networkInterfaces/nic-web",
		Region: "westeurope", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.4")}}}
	if len(targets) != 1 || targets[0].VMID != want[0].VMID || targets[0].NICID != want[0].NICID || targets[0].Region != "westeurope" ||
		!slices.Equal(targets[0].Addresses, want[0].Addresses) {
		t.Errorf("targets %+v, want %+v", targets, want)
	}
	if len(unverifiable) != 1 || !strings.HasSuffix(unverifiable[0], "/nic-spare") {
		t.Errorf("unverifiable %v, want nic-spare (no VM has it)", unverifiable)
	}

	// Questions asked at once list the subscription's watchers once.
	srv.ResetCounters()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := v.Watcher(ctx, srv.SubscriptionID(), "westeurope"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.Counters().Requests["GET watcher-list"]; n != 1 {
		t.Errorf("8 concurrent first questions listed the watchers %d times, want 1", n)
	}
	watcher, err := v.Watcher(ctx, srv.SubscriptionID(), "West Europe")
	if err != nil || !strings.HasSuffix(watcher, "/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope") {
		t.Errorf("watcher %q, %v", watcher, err)
	}
	if _, err := v.Watcher(ctx, srv.SubscriptionID(), "northeurope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "NetworkWatcher_northeurope") {
		t.Errorf("a region without a watcher: %v", err)
	}

	probes, _ := jit.PlanProbes([]jit.Policy{p}, nil, targets)
	if len(probes) != 2 {
		t.Fatalf("probes %v", probes)
	}
	for _, pr := range probes {
		got, err := v.VerifyIPFlow(ctx, pr)
		if err != nil {
			t.Fatalf("%s: %v", pr, err)
		}
		if got.Access != jit.Deny || !strings.HasPrefix(got.RuleName, "securityRules/jit-web-") || got.Watcher != watcher {
			t.Errorf("%s: %+v", pr, got)
		}
	}
	// An address that no rule of the policy names reaches the default
	// rules: Azure names them so.
	pr := probes[0]
	pr.Local, pr.Port = netip.MustParseAddr("10.0.1.4"), 8080
	if got, err := v.VerifyIPFlow(ctx, pr); err != nil || got.RuleName != "defaultSecurityRules/DenyAllInBound" {
		t.Errorf("port 8080: %+v, %v", got, err)
	}
}
