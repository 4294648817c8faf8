package azuresim_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/security/armsecurity"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// defenderSeed is two VMs behind a subnet NSG, each with a NIC NSG; the NIC
// NSG of vm-b has an operator's allow rule for 3389 from 192.0.2.0/24 at
// priority 300. The Defender policy covers 22/TCP of both VMs and 3389 of
// vm-b, and vm-a has a request for 22 from 203.0.113.50 running until
// requestEnd.
func defenderSeed(requestEnd time.Time) (seed string, ids map[string]string) {
	rg := "/subscriptions/" + azuresim.DefaultSubscriptionID + "/resourceGroups/rg-def/providers/"
	ids = map[string]string{
		"subnetNSG": rg + "Microsoft.Network/networkSecurityGroups/nsg-subnet",
		"nsgA":      rg + "Microsoft.Network/networkSecurityGroups/nsg-vm-a",
		"nsgB":      rg + "Microsoft.Network/networkSecurityGroups/nsg-vm-b",
		"vnet":      rg + "Microsoft.Network/virtualNetworks/vnet-def",
		"nicA":      rg + "Microsoft.Network/networkInterfaces/nic-a",
		"nicB":      rg + "Microsoft.Network/networkInterfaces/nic-b",
		"vmA":       rg + "Microsoft.Compute/virtualMachines/vm-a",
		"vmB":       rg + "Microsoft.Compute/virtualMachines/vm-b",
		"policy":    rg + "Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default",
	}
	seed = fmt.Sprintf(`{
	  "networkSecurityGroups": [
	    {"id": %[1]q, "location": "westeurope", "properties": {"securityRules": []}},
	    {"id": %[2]q, "location": "westeurope", "properties": {"securityRules": []}},
	    {"id": %[3]q, "location": "westeurope", "properties": {"securityRules": [{"name": "ops-rdp", "properties": {
	      "priority": 300, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "192.0.2.0/24",
	      "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "3389"}}]}}],
	  "virtualNetworks": [{"id": %[4]q, "location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.40.0.0/16"]},
	    "subnets": [{"name": "app", "properties": {"addressPrefix": "10.40.1.0/24", "networkSecurityGroup": {"id": %[1]q}}}]}}],
	  "networkInterfaces": [
	    {"id": %[5]q, "location": "westeurope", "properties": {"networkSecurityGroup": {"id": %[2]q}, "ipConfigurations": [{"name": "ipconfig1",
	      "properties": {"subnet": {"id": "%[4]s/subnets/app"}, "privateIPAllocationMethod": "Static", "privateIPAddress": "10.40.1.4"}}]}},
	    {"id": %[6]q, "location": "westeurope", "properties": {"networkSecurityGroup": {"id": %[3]q}, "ipConfigurations": [{"name": "ipconfig1",
	      "properties": {"subnet": {"id": "%[4]s/subnets/app"}, "privateIPAllocationMethod": "Static", "privateIPAddress": "10.40.1.5"}}]}}],
	  "virtualMachines": [
	    {"id": %[7]q, "location": "westeurope", "properties": {"networkProfile": {"networkInterfaces": [{"id": %[5]q}]}}},
	    {"id": %[8]q, "location": "westeurope", "properties": {"networkProfile": {"networkInterfaces": [{"id": %[6]q}]}}}],
	  "jitNetworkAccessPolicies": [{"id": %[9]q, "kind": "Basic", "properties": {
	    "virtualMachines": [
	      {"id": %[7]q, "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]},
	      {"id": %[8]q, "ports": [
	        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefixes": ["203.0.113.0/24", "198.51.100.0/24"], "maxRequestAccessDuration": "PT1H"},
	        {"number": 3389, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "P1D"}]}],
	    "requests": [{"startTimeUtc": %[10]q, "requestor": "alice@example.com", "virtualMachines": [{"id": %[7]q, "ports": [
	      {"number": 22, "allowedSourceAddressPrefix": "203.0.113.50", "endTimeUtc": %[11]q, "status": "Initiated", "statusReason": "UserRequested"}]}]}]}}]
	}`, ids["subnetNSG"], ids["nsgA"], ids["nsgB"], ids["vnet"], ids["nicA"], ids["nicB"], ids["vmA"], ids["vmB"], ids["policy"],
		requestEnd.Add(-time.Hour).UTC().Format(time.RFC3339), requestEnd.UTC().Format(time.RFC3339))
	return seed, ids
}

func reaches(t *testing.T, srv *azuresim.Server, nic, src string, port int) azuresim.Verdict {
	t.Helper()
	v, err := srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: nic, Protocol: "Tcp", Source: src, DestinationPort: port})
	if err != nil {
		t.Fatalf("verify flow %s → %s:%d: %v", src, nic, port, err)
	}
	return v
}

// TestDefenderJITPolicies: a seeded Defender policy closes its ports with
// deny rules on the NIC and subnet NSGs, a running request opens its port
// for its source only until its end, initiate opens another, and the SDK's
// client reads it all back in the documented shapes.
func TestDefenderJITPolicies(t *testing.T) {
	clock := simtest.NewClock(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	seed, ids := defenderSeed(clock.Now().Add(30 * time.Minute))
	path := t.TempDir() + "/seed.json"
	if err := writeFile(path, seed); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path, Now: clock.Now})

	// Closed to the Internet; the request's source is let in on vm-a only.
	for _, c := range []struct {
		nic, src string
		port     int
		allowed  bool
	}{
		{ids["nicA"], "198.51.100.7", 22, false},
		{ids["nicA"], "203.0.113.50", 22, true},
		{ids["nicB"], "203.0.113.50", 22, false},
		{ids["nicB"], "198.51.100.7", 3389, false},
		// The subnet NSG has Defender's deny too, so the operator's allow
		// on the NIC's NSG no longer lets 192.0.2.9 in.
		{ids["nicB"], "192.0.2.9", 3389, false},
	} {
		if v := reaches(t, srv, c.nic, c.src, c.port); v.Allowed != c.allowed {
			t.Errorf("%s → %s:%d: allowed %v, want %v (%+v)", c.src, c.nic, c.port, v.Allowed, c.allowed, v)
		}
	}
	// On the NIC's own NSG the operator's rule came first and keeps
	// winning (documented): Defender's deny lies after it.
	if v, err := srv.VerifyFlow(azuresim.Flow{NSGIDs: []string{ids["nsgB"]}, Protocol: "Tcp", Source: "192.0.2.9", Destination: "10.40.1.5", DestinationPort: 3389}); err != nil || !v.Allowed || v.RuleName != "ops-rdp" {
		t.Errorf("nsg-vm-b alone, 192.0.2.9 → 3389: %+v %v", v, err)
	}
	v := reaches(t, srv, ids["nicA"], "198.51.100.7", 22)
	if !strings.HasPrefix(v.RuleName, azuresim.DefenderRulePrefix+"_") {
		t.Errorf("vm-a 22 denied by %q, want a %s rule", v.RuleName, azuresim.DefenderRulePrefix)
	}

	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(srv)}}
	client, err := armsecurity.NewJitNetworkAccessPoliciesClient(srv.SubscriptionID(), secretCredential(t, srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var listed []*armsecurity.JitNetworkAccessPolicy
	for pager := client.NewListPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		listed = append(listed, page.Value...)
	}
	if len(listed) != 1 || !strings.EqualFold(*listed[0].ID, ids["policy"]) || len(listed[0].Properties.VirtualMachines) != 2 {
		t.Fatalf("listed %+v", listed)
	}
	vmB := listed[0].Properties.VirtualMachines[1]
	if *vmB.Ports[0].Protocol != armsecurity.ProtocolTCP || *vmB.Ports[0].MaxRequestAccessDuration != "PT1H" || len(vmB.Ports[0].AllowedSourceAddressPrefixes) != 2 {
		t.Errorf("vm-b port 22 reads back as %+v", vmB.Ports[0])
	}
	for _, pager := range []interface{ More() bool }{client.NewListByResourceGroupPager("rg-def", nil), client.NewListByRegionPager("westeurope", nil)} {
		if !pager.More() {
			t.Error("a list pager is empty")
		}
	}
	got, err := client.Get(ctx, "rg-def", "westeurope", "default", nil)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	req := got.Properties.Requests
	if len(req) != 1 || *req[0].VirtualMachines[0].Ports[0].Status != armsecurity.StatusInitiated {
		t.Fatalf("requests %+v", req)
	}

	// Initiate 22 on vm-b from 198.51.100.9 for ten minutes.
	end := clock.Now().Add(10 * time.Minute)
	_, err = client.Initiate(ctx, "rg-def", "westeurope", "default", armsecurity.JitNetworkAccessPolicyInitiateRequest{
		Justification: to.Ptr("maintenance"),
		VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: to.Ptr(ids["vmB"]),
			Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: to.Ptr[int32](22), AllowedSourceAddressPrefix: to.Ptr("198.51.100.9"), EndTimeUTC: &end}}}},
	}, nil)
	if err != nil {
		t.Fatalf("initiate: %v", err)
	}
	if !reaches(t, srv, ids["nicB"], "198.51.100.9", 22).Allowed {
		t.Error("initiated source cannot reach vm-b:22")
	}
	// A source outside the port's allowed prefixes is refused.
	_, err = client.Initiate(ctx, "rg-def", "westeurope", "default", armsecurity.JitNetworkAccessPolicyInitiateRequest{
		VirtualMachines: []*armsecurity.JitNetworkAccessPolicyInitiateVirtualMachine{{ID: to.Ptr(ids["vmB"]),
			Ports: []*armsecurity.JitNetworkAccessPolicyInitiatePort{{Number: to.Ptr[int32](22), AllowedSourceAddressPrefix: to.Ptr("192.0.2.1"), EndTimeUTC: &end}}}},
	}, nil)
	if code, _ := errorCode(err); code != http.StatusBadRequest {
		t.Errorf("initiate from outside the allowed sources: %v", err)
	}

	// Both requests end on the sim's clock.
	clock.Advance(31 * time.Minute)
	if reaches(t, srv, ids["nicA"], "203.0.113.50", 22).Allowed || reaches(t, srv, ids["nicB"], "198.51.100.9", 22).Allowed {
		t.Error("a request's source still reaches its VM after the request ended")
	}
	got, err = client.Get(ctx, "rg-def", "westeurope", "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, rq := range got.Properties.Requests {
		if p := rq.VirtualMachines[0].Ports[0]; *p.Status != armsecurity.StatusRevoked || *p.StatusReason != armsecurity.StatusReasonExpired {
			t.Errorf("ended request reads %s/%s", *p.Status, *p.StatusReason)
		}
	}

	// Taking vm-a out of the policy removes its deny rules; deleting the
	// policy removes the rest. Nothing else on the NSGs changes.
	body := got.JitNetworkAccessPolicy
	body.Properties.VirtualMachines = body.Properties.VirtualMachines[1:]
	if _, err := client.CreateOrUpdate(ctx, "rg-def", "westeurope", "default", body, nil); err != nil {
		t.Fatalf("put: %v", err)
	}
	// Only the default rules are left on vm-a's path for port 22.
	if v := reaches(t, srv, ids["nicA"], "198.51.100.7", 22); v.Allowed || v.RuleName != "DenyAllInBound" {
		t.Errorf("vm-a 22 after its removal from the policy: %+v", v)
	}
	// A new policy is created through the SDK (which accepts only 200).
	if _, err := client.CreateOrUpdate(ctx, "rg-def", "westeurope", "second", body, nil); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := client.Delete(ctx, "rg-def", "westeurope", "second", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := client.Delete(ctx, "rg-def", "westeurope", "default", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, nsg := range []string{"nsg-subnet", "nsg-vm-a", "nsg-vm-b"} {
		resp, b := newRawClient(t, srv).must(http.MethodGet, "/subscriptions/"+srv.SubscriptionID()+"/resourceGroups/rg-def/providers/Microsoft.Network/networkSecurityGroups/"+nsg+"?api-version=2024-05-01", nil)
		if resp.StatusCode != http.StatusOK || strings.Contains(string(b), azuresim.DefenderRulePrefix) {
			t.Errorf("%s after delete: %d %s", nsg, resp.StatusCode, b)
		}
		if nsg == "nsg-vm-b" && !strings.Contains(string(b), "ops-rdp") {
			t.Errorf("the operator's rule is gone: %s", b)
		}
	}
}

// A VM whose path has no NSG cannot be put in a policy.
func TestDefenderJITPolicyRefusesVMWithoutNSG(t *testing.T) {
	seed, ids := defenderSeed(time.Now().Add(time.Hour))
	seed = strings.Replace(seed, `"jitNetworkAccessPolicies"`, `"unused"`, 1)
	path := t.TempDir() + "/seed.json"
	if err := writeFile(path, seed); err != nil {
		t.Fatal(err)
	}
	srv := simtest.Start(t, azuresim.Options{SeedFile: path})
	c := newRawClient(t, srv)
	// Detach vm-a's NIC NSG and the subnet's: put a VM-less policy on a
	// VM that does not exist first.
	resp, b := c.must(http.MethodPut, ids["policy"]+"?api-version=2020-01-01", map[string]any{"properties": map[string]any{
		"virtualMachines": []any{map[string]any{"id": ids["vmA"] + "-missing", "ports": []any{map[string]any{"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "PT1H"}}}}}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "VirtualMachineNotFound") {
		t.Errorf("missing VM: %d %s", resp.StatusCode, b)
	}
	resp, b = c.must(http.MethodPut, ids["policy"]+"?api-version=2020-01-01", map[string]any{"properties": map[string]any{
		"virtualMachines": []any{map[string]any{"id": ids["vmA"], "ports": []any{map[string]any{"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "PT25H"}}}}}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "maxRequestAccessDuration") {
		t.Errorf("25 hours: %d %s", resp.StatusCode, b)
	}
}

func TestParseISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"PT3H": 3 * time.Hour, "PT30M": 30 * time.Minute, "P1D": 24 * time.Hour, "PT1H30M": 90 * time.Minute, "PT300S": 5 * time.Minute} {
		if got, ok := azuresim.ParseISODuration(in); !ok || got != want {
			t.Errorf("%s: %v %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "P", "PT", "3h", "PT3X"} {
		if _, ok := azuresim.ParseISODuration(in); ok {
			t.Errorf("%q parsed", in)
		}
	}
}
