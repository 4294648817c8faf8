package azuresim_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

func vmPath(srv *azuresim.Server, name string) string {
	return "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG +
		"/providers/Microsoft.Compute/virtualMachines/" + name + "?api-version=2024-07-01"
}

func vmID(srv *azuresim.Server, name string) string {
	return "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG + "/providers/Microsoft.Compute/virtualMachines/" + name
}

// vmBody is a VM PUT body with the network interfaces nics, the first
// primary.
func vmBody(nics ...string) map[string]any {
	refs := make([]any, len(nics))
	for i, id := range nics {
		refs[i] = map[string]any{"id": id, "properties": map[string]any{"primary": i == 0}}
	}
	return map[string]any{"location": testLocation, "properties": map[string]any{
		"hardwareProfile": map[string]any{"vmSize": "Standard_B1s"},
		"networkProfile":  map[string]any{"networkInterfaces": refs},
	}}
}

// createVM creates a VM with the network interfaces nics (the first
// primary) and returns its id.
func createVM(t *testing.T, srv *azuresim.Server, name string, nics ...string) string {
	t.Helper()
	resp, b := newRawClient(t, srv).must(http.MethodPut, vmPath(srv, name), vmBody(nics...))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT VM %s: %d %s", name, resp.StatusCode, b)
	}
	return vmID(srv, name)
}

// TestVirtualMachines: a VM is its network interfaces, with Azure's rules
// about them.
func TestVirtualMachines(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := t.Context()
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", "")); err != nil {
		t.Fatal(err)
	}
	nic1, err := n.createNIC(ctx, "nic-1", nicSpec{subnetID: n.appSubnetID("web")})
	if err != nil {
		t.Fatal(err)
	}
	nic2, err := n.createNIC(ctx, "nic-2", nicSpec{subnetID: n.appSubnetID("web")})
	if err != nil {
		t.Fatal(err)
	}
	raw := newRawClient(t, srv)
	missing := strings.Replace(*nic1.ID, "nic-1", "nic-none", 1)
	twoNoPrimary := map[string]any{"location": testLocation, "properties": map[string]any{"networkProfile": map[string]any{"networkInterfaces": []any{
		map[string]any{"id": *nic1.ID}, map[string]any{"id": *nic2.ID, "properties": map[string]any{"primary": false}},
	}}}}
	for _, tc := range []struct {
		name string
		body any
		code string
	}{
		{"no network interfaces", map[string]any{"location": testLocation, "properties": map[string]any{}}, "InvalidParameter"},
		{"missing NIC", vmBody(missing), "InvalidResourceReference"},
		{"NIC twice", vmBody(*nic1.ID, *nic1.ID), "InvalidParameter"},
		{"two NICs, no primary", twoNoPrimary, "VirtualMachineMustHaveOnePrimaryNetworkInterface"},
		{"no location", map[string]any{"properties": vmBody(*nic1.ID)["properties"]}, "LocationRequired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := raw.must(http.MethodPut, vmPath(srv, "vm-bad"), tc.body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"`+tc.code+`"`) {
				t.Errorf("PUT: %d %s, want 400 %s", resp.StatusCode, b, tc.code)
			}
		})
	}

	vm := createVM(t, srv, "vm-web", *nic1.ID, *nic2.ID)
	// A NIC names the VM that has it (read-only), as Azure returns it.
	for _, name := range []string{"nic-1", "nic-2"} {
		got, err := n.nics.Get(ctx, testRG, name, nil)
		if err != nil || got.Properties == nil || got.Properties.VirtualMachine == nil || *got.Properties.VirtualMachine.ID != vm {
			t.Errorf("GET %s: virtualMachine %+v, %v; want %s", name, got.Properties, err, vm)
		}
	}
	resp, b := raw.must(http.MethodGet, vmPath(srv, "vm-web"), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"provisioningState":"Succeeded"`) ||
		!strings.Contains(string(b), `"vmSize":"Standard_B1s"`) || !strings.Contains(string(b), `"primary":true`) {
		t.Errorf("GET VM: %d %s", resp.StatusCode, b)
	}
	if resp, b := raw.must(http.MethodPut, vmPath(srv, "vm-other"), vmBody(*nic2.ID)); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"NicInUse"`) {
		t.Errorf("second VM on a used NIC: %d %s", resp.StatusCode, b)
	}
	if err := n.deleteNIC(ctx, "nic-2"); err == nil || !strings.Contains(err.Error(), "NicInUse") {
		t.Errorf("delete a NIC in use: %v, want NicInUse", err)
	}
	if resp, _ := raw.must(http.MethodDelete, vmPath(srv, "vm-web"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("DELETE VM: %d", resp.StatusCode)
	}
	if resp, _ := raw.must(http.MethodGet, vmPath(srv, "vm-web"), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET deleted VM: %d", resp.StatusCode)
	}
	if got, err := n.nics.Get(ctx, testRG, "nic-1", nil); err != nil || got.Properties.VirtualMachine != nil {
		t.Errorf("GET nic-1 after its VM is deleted: %+v, %v; want no virtualMachine", got.Properties.VirtualMachine, err)
	}
	if err := n.deleteNIC(ctx, "nic-2"); err != nil {
		t.Errorf("delete a NIC no VM uses: %v", err)
	}
}
