package azuresim_test

import (
	"context"
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

// vmNetwork is the armnetwork clients for the network a VM sits in.
type vmNetwork struct {
	networkClients
	vnets    *armnetwork.VirtualNetworksClient
	subnets  *armnetwork.SubnetsClient
	nics     *armnetwork.InterfacesClient
	watchers *armnetwork.WatchersClient
	srv      *azuresim.Server
	sub      string
}

func newVMNetwork(t *testing.T, srv *azuresim.Server) vmNetwork {
	t.Helper()
	return newVMNetworkIn(t, srv, srv.SubscriptionID())
}

// newVMNetworkIn is newVMNetwork in the subscription sub.
func newVMNetworkIn(t *testing.T, srv *azuresim.Server, sub string) vmNetwork {
	t.Helper()
	f, err := armnetwork.NewClientFactory(sub, secretCredential(t, srv),
		&arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: cloudConfig(srv), Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	return vmNetwork{
		networkClients: networkClients{groups: f.NewSecurityGroupsClient(), rules: f.NewSecurityRulesClient()},
		vnets:          f.NewVirtualNetworksClient(), subnets: f.NewSubnetsClient(),
		nics: f.NewInterfacesClient(), watchers: f.NewWatchersClient(), srv: srv, sub: sub,
	}
}

// appSubnetID returns the id of a subnet of vnet-app, the virtual network
// the tests create.
func (n vmNetwork) appSubnetID(subnet string) string {
	return "/subscriptions/" + n.sub + "/resourceGroups/" + testRG +
		"/providers/Microsoft.Network/virtualNetworks/vnet-app/subnets/" + subnet
}

func (n vmNetwork) createVNet(ctx context.Context, name, space string, subnets ...*armnetwork.Subnet) (armnetwork.VirtualNetwork, error) {
	p, err := n.vnets.BeginCreateOrUpdate(ctx, testRG, name, armnetwork.VirtualNetwork{
		Location: to.Ptr(testLocation),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr(space)}},
			Subnets:      subnets,
		},
	}, nil)
	if err != nil {
		return armnetwork.VirtualNetwork{}, err
	}
	resp, err := p.PollUntilDone(ctx, pollOpts)
	return resp.VirtualNetwork, err
}

func subnet(name, prefix, nsgID string) *armnetwork.Subnet {
	s := &armnetwork.Subnet{Name: to.Ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr(prefix)}}
	if nsgID != "" {
		s.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(nsgID)}
	}
	return s
}

// nicSpec describes a NIC with one IP configuration; ip "" is Dynamic.
type nicSpec struct {
	subnetID, ip, nsgID, location string
}

func (n vmNetwork) createNIC(ctx context.Context, name string, spec nicSpec) (armnetwork.Interface, error) {
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{
		Subnet:                    &armnetwork.Subnet{ID: to.Ptr(spec.subnetID)},
		PrivateIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodDynamic),
	}
	if spec.ip != "" {
		ipc.PrivateIPAllocationMethod = to.Ptr(armnetwork.IPAllocationMethodStatic)
		ipc.PrivateIPAddress = to.Ptr(spec.ip)
	}
	nic := armnetwork.Interface{
		Location: to.Ptr(testLocation),
		Tags:     map[string]*string{"vm": to.Ptr(name)},
		Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations:            []*armnetwork.InterfaceIPConfiguration{{Name: to.Ptr("ipconfig1"), Properties: ipc}},
			EnableIPForwarding:          to.Ptr(false),
			EnableAcceleratedNetworking: to.Ptr(true),
		},
	}
	if spec.location != "" {
		nic.Location = to.Ptr(spec.location)
	}
	if spec.nsgID != "" {
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(spec.nsgID)}
	}
	p, err := n.nics.BeginCreateOrUpdate(ctx, testRG, name, nic, nil)
	if err != nil {
		return armnetwork.Interface{}, err
	}
	resp, err := p.PollUntilDone(ctx, pollOpts)
	return resp.Interface, err
}

func (n vmNetwork) deleteNIC(ctx context.Context, name string) error {
	p, err := n.nics.BeginDelete(ctx, testRG, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, pollOpts)
	}
	return err
}

func (n vmNetwork) deleteSubnet(ctx context.Context, vnet, name string) error {
	p, err := n.subnets.BeginDelete(ctx, testRG, vnet, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, pollOpts)
	}
	return err
}

func (n vmNetwork) deleteVNet(ctx context.Context, name string) error {
	p, err := n.vnets.BeginDelete(ctx, testRG, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, pollOpts)
	}
	return err
}

func (n vmNetwork) deleteNSG(ctx context.Context, name string) error {
	p, err := n.groups.BeginDelete(ctx, testRG, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, pollOpts)
	}
	return err
}

// wantBadRequest checks that err is a 400 answer with the given ARM error
// code.
func wantBadRequest(t *testing.T, what string, err error, code string) {
	t.Helper()
	if gotStatus, gotCode := errorCode(err); gotStatus != http.StatusBadRequest || gotCode != code {
		t.Errorf("%s: got %d %s (%v), want %d %s", what, gotStatus, gotCode, err, http.StatusBadRequest, code)
	}
}

func ipOf(nic armnetwork.Interface) string {
	return *nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress
}

func TestVirtualNetworksAndInterfaces(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	srv.SetPageSizeForTest(1)
	n := newVMNetwork(t, srv)
	ctx := context.Background()

	subnetNSG := createNSG(t, n.networkClients, "nsg-subnet")
	nicNSG := createNSG(t, n.networkClients, "nsg-nic")
	vnet, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", *subnetNSG.ID))
	if err != nil {
		t.Fatalf("create virtual network: %v", err)
	}
	if len(vnet.Properties.Subnets) != 1 || *vnet.Properties.Subnets[0].Properties.NetworkSecurityGroup.ID != *subnetNSG.ID ||
		*vnet.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		t.Fatalf("virtual network as created: %+v", vnet.Properties)
	}
	sp, err := n.subnets.BeginCreateOrUpdate(ctx, testRG, "vnet-app", "db",
		armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefixes: []*string{to.Ptr("10.10.2.0/24")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sp.PollUntilDone(ctx, pollOpts)
	if err != nil {
		t.Fatalf("create subnet: %v", err)
	}
	if db.Properties.NetworkSecurityGroup != nil || *db.ID != n.appSubnetID("db") {
		t.Errorf("subnet db = %s with NSG %v", *db.ID, db.Properties.NetworkSecurityGroup)
	}

	// Dynamic addresses come from the subnet after Azure's four reserved ones.
	web := n.appSubnetID("web")
	first, err := n.createNIC(ctx, "nic-1", nicSpec{subnetID: web})
	if err != nil {
		t.Fatalf("create NIC: %v", err)
	}
	static, err := n.createNIC(ctx, "nic-static", nicSpec{subnetID: web, ip: "10.10.1.5", nsgID: *nicNSG.ID})
	if err != nil {
		t.Fatalf("create NIC with a static address: %v", err)
	}
	second, err := n.createNIC(ctx, "nic-2", nicSpec{subnetID: web})
	if err != nil {
		t.Fatal(err)
	}
	if ipOf(first) != "10.10.1.4" || ipOf(static) != "10.10.1.5" || ipOf(second) != "10.10.1.6" {
		t.Errorf("addresses = %s, %s, %s; want 10.10.1.4, .5 (static), .6", ipOf(first), ipOf(static), ipOf(second))
	}
	ipc := first.Properties.IPConfigurations[0]
	if !*ipc.Properties.Primary || *ipc.Properties.PrivateIPAddressVersion != armnetwork.IPVersionIPv4 ||
		*ipc.Properties.Subnet.ID != web || !strings.HasSuffix(*ipc.ID, "/networkInterfaces/nic-1/ipConfigurations/ipconfig1") {
		t.Errorf("IP configuration = %+v", ipc.Properties)
	}
	// What is not modelled is kept verbatim.
	got, err := n.nics.Get(ctx, testRG, "nic-static", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Tags["vm"] != "nic-static" || !*got.Properties.EnableAcceleratedNetworking || *got.Properties.NetworkSecurityGroup.ID != *nicNSG.ID {
		t.Errorf("NIC read back: tags %v, properties %+v", got.Tags, got.Properties)
	}
	// An update keeps a dynamic address.
	second, err = n.createNIC(ctx, "nic-2", nicSpec{subnetID: web, nsgID: *nicNSG.ID})
	if err != nil || ipOf(second) != "10.10.1.6" {
		t.Errorf("NIC update: address %s, %v; want 10.10.1.6 kept", ipOf(second), err)
	}

	// NSGs and subnets show who uses them.
	nsg, err := n.groups.Get(ctx, testRG, "nsg-subnet", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(nsg.Properties.Subnets) != 1 || *nsg.Properties.Subnets[0].ID != web || len(nsg.Properties.NetworkInterfaces) != 0 {
		t.Errorf("subnet NSG references: subnets %v, NICs %v", nsg.Properties.Subnets, nsg.Properties.NetworkInterfaces)
	}
	nsg, err = n.groups.Get(ctx, testRG, "nsg-nic", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(nsg.Properties.NetworkInterfaces) != 2 {
		t.Errorf("NIC NSG references %d NICs, want 2", len(nsg.Properties.NetworkInterfaces))
	}
	webSubnet, err := n.subnets.Get(ctx, testRG, "vnet-app", "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(webSubnet.Properties.IPConfigurations) != 3 {
		t.Errorf("subnet web lists %d IP configurations, want 3", len(webSubnet.Properties.IPConfigurations))
	}

	var names []string
	for pager := n.nics.NewListAllPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list NICs: %v", err)
		}
		for _, nic := range page.Value {
			names = append(names, *nic.Name)
		}
	}
	if want := []string{"nic-1", "nic-2", "nic-static"}; !slices.Equal(names, want) {
		t.Errorf("NICs = %v, want %v", names, want)
	}
	names = nil
	for pager := n.subnets.NewListPager(testRG, "vnet-app", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list subnets: %v", err)
		}
		for _, s := range page.Value {
			names = append(names, *s.Name)
		}
	}
	if want := []string{"web", "db"}; !slices.Equal(names, want) {
		t.Errorf("subnets = %v, want %v", names, want)
	}
	vnets := 0
	for pager := n.vnets.NewListPager(testRG, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list virtual networks: %v", err)
		}
		vnets += len(page.Value)
	}
	if vnets != 1 {
		t.Errorf("virtual networks = %d, want 1", vnets)
	}

	t.Run("validation", func(t *testing.T) {
		_, err := n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, ip: "10.10.1.5"})
		wantBadRequest(t, "static address taken", err, "PrivateIPAddressIsAllocated")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, ip: "10.10.1.3"})
		wantBadRequest(t, "reserved address", err, "PrivateIPAddressInReservedRange")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, ip: "10.10.1.255"})
		wantBadRequest(t, "broadcast address", err, "PrivateIPAddressInReservedRange")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, ip: "10.10.2.9"})
		wantBadRequest(t, "address outside the subnet", err, "PrivateIPAddressNotInSubnet")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: n.appSubnetID("nope")})
		wantBadRequest(t, "missing subnet", err, "InvalidResourceReference")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, nsgID: nsgPath(srv, "nsg-nope")})
		wantBadRequest(t, "missing NSG", err, "InvalidResourceReference")
		_, err = n.createNIC(ctx, "nic-x", nicSpec{subnetID: web, location: "eastus"})
		wantBadRequest(t, "subnet in another region", err, "InvalidResourceReference")
		_, err = n.createVNet(ctx, "vnet-bad", "10.20.0.0/16", subnet("a", "10.30.0.0/24", ""))
		wantBadRequest(t, "subnet outside the address space", err, "NetcfgSubnetRangeOutsideVnet")
		_, err = n.createVNet(ctx, "vnet-bad", "10.20.0.0/16", subnet("a", "10.20.0.0/24", ""), subnet("b", "10.20.0.128/25", ""))
		wantBadRequest(t, "overlapping subnets", err, "NetcfgSubnetRangesOverlap")
		_, err = n.createVNet(ctx, "vnet-bad", "10.20.0.0/16", subnet("a", "10.20.0.1/24", ""))
		wantBadRequest(t, "prefix with host bits", err, "InvalidCIDRNotation")
		if _, err := n.nics.Get(ctx, testRG, "nic-x", nil); err == nil {
			t.Error("a refused NIC exists")
		}
	})

	t.Run("in use", func(t *testing.T) {
		wantBadRequest(t, "delete subnet with NICs", n.deleteSubnet(ctx, "vnet-app", "web"), "InUseSubnetCannotBeDeleted")
		wantBadRequest(t, "delete virtual network with NICs", n.deleteVNet(ctx, "vnet-app"), "InUseSubnetCannotBeDeleted")
		_, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16") // would drop subnet web
		wantBadRequest(t, "virtual network PUT without a used subnet", err, "InUseSubnetCannotBeDeleted")
		wantBadRequest(t, "delete subnet NSG", n.deleteNSG(ctx, "nsg-subnet"), "InUseNetworkSecurityGroupCannotBeDeleted")
		wantBadRequest(t, "delete NIC NSG", n.deleteNSG(ctx, "nsg-nic"), "InUseNetworkSecurityGroupCannotBeDeleted")

		for _, nic := range []string{"nic-1", "nic-2", "nic-static"} {
			if err := n.deleteNIC(ctx, nic); err != nil {
				t.Fatalf("delete %s: %v", nic, err)
			}
		}
		if err := n.deleteNSG(ctx, "nsg-nic"); err != nil {
			t.Errorf("delete NSG no longer in use: %v", err)
		}
		if err := n.deleteSubnet(ctx, "vnet-app", "web"); err != nil {
			t.Errorf("delete empty subnet: %v", err)
		}
		if err := n.deleteNSG(ctx, "nsg-subnet"); err != nil {
			t.Errorf("delete NSG of a deleted subnet: %v", err)
		}
		if err := n.deleteVNet(ctx, "vnet-app"); err != nil {
			t.Errorf("delete virtual network: %v", err)
		}
		if _, err := n.vnets.Get(ctx, testRG, "vnet-app", nil); err == nil {
			t.Error("virtual network readable after delete")
		}
	})
}

// TestFlowThroughNetworkInterface asks reachability questions by NIC, the
// way a VM is reached: through its subnet's NSG, then its NIC's NSG.
func TestFlowThroughNetworkInterface(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := context.Background()

	subnetNSG := createNSG(t, n.networkClients, "nsg-subnet",
		tcpRule("allow-ssh-admins", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"),
		tcpRule("allow-https", 300, armnetwork.SecurityRuleAccessAllow, "*", "443"))
	nicNSG := createNSG(t, n.networkClients, "nsg-nic",
		tcpRule("deny-one-admin", 100, armnetwork.SecurityRuleAccessDeny, "203.0.113.66", "*"),
		tcpRule("allow-ssh", 200, armnetwork.SecurityRuleAccessAllow, "*", "22"))
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16",
		subnet("web", "10.10.1.0/24", *subnetNSG.ID), subnet("open", "10.10.2.0/24", "")); err != nil {
		t.Fatal(err)
	}
	guarded, err := n.createNIC(ctx, "nic-guarded", nicSpec{subnetID: n.appSubnetID("web"), nsgID: *nicNSG.ID})
	if err != nil {
		t.Fatal(err)
	}
	subnetOnly, err := n.createNIC(ctx, "nic-subnet-only", nicSpec{subnetID: n.appSubnetID("web")})
	if err != nil {
		t.Fatal(err)
	}
	open, err := n.createNIC(ctx, "nic-open", nicSpec{subnetID: n.appSubnetID("open")})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		nic     *armnetwork.Interface
		src     string
		port    int
		allowed bool
		nsg     string
		rule    string
	}{
		{"admin through both", &guarded, "203.0.113.7", 22, true, *nicNSG.ID, "allow-ssh"},
		{"denied admin", &guarded, "203.0.113.66", 22, false, *nicNSG.ID, "deny-one-admin"},
		{"outsider stopped at subnet", &guarded, "198.51.100.1", 22, false, *subnetNSG.ID, "DenyAllInBound"},
		{"https stopped at NIC", &guarded, "198.51.100.1", 443, false, *nicNSG.ID, "DenyAllInBound"},
		{"https with subnet NSG only", &subnetOnly, "198.51.100.1", 443, true, *subnetNSG.ID, "allow-https"},
		{"no NSG at all", &open, "198.51.100.1", 3389, true, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: *tc.nic.ID, Protocol: "Tcp", Source: tc.src, DestinationPort: tc.port})
			if err != nil {
				t.Fatal(err)
			}
			if v.Allowed != tc.allowed || v.NSGID != tc.nsg || v.RuleName != tc.rule {
				t.Errorf("got allowed=%v by %q in %q, want allowed=%v by %q in %q", v.Allowed, v.RuleName, v.NSGID, tc.allowed, tc.rule, tc.nsg)
			}
		})
	}
	if _, err := srv.VerifyFlow(azuresim.Flow{NetworkInterfaceID: strings.Replace(*open.ID, "nic-open", "nic-none", 1),
		Protocol: "Tcp", Source: "198.51.100.1", DestinationPort: 22}); err == nil {
		t.Error("flow through a missing NIC: no error")
	}

	t.Run("ipFlowVerify", func(t *testing.T) {
		createVM(t, srv, "vm-web", *guarded.ID)
		verify := func(local, remote string, port string) armnetwork.VerificationIPFlowResult {
			t.Helper()
			p, err := n.watchers.BeginVerifyIPFlow(ctx, "NetworkWatcherRG", "NetworkWatcher_westeurope", armnetwork.VerificationIPFlowParameters{
				TargetResourceID:    to.Ptr("/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG + "/providers/Microsoft.Compute/virtualMachines/vm-web"),
				TargetNicResourceID: guarded.ID,
				Direction:           to.Ptr(armnetwork.DirectionInbound),
				Protocol:            to.Ptr(armnetwork.IPFlowProtocolTCP),
				LocalIPAddress:      to.Ptr(local), LocalPort: to.Ptr(port),
				RemoteIPAddress: to.Ptr(remote), RemotePort: to.Ptr("*"),
			}, nil)
			if err != nil {
				t.Fatalf("begin verify IP flow: %v", err)
			}
			resp, err := p.PollUntilDone(ctx, pollOpts)
			if err != nil {
				t.Fatalf("verify IP flow: %v", err)
			}
			return resp.VerificationIPFlowResult
		}
		ip := ipOf(guarded)
		if r := verify(ip, "203.0.113.7", "22"); *r.Access != armnetwork.AccessAllow || *r.RuleName != "securityRules/allow-ssh" {
			t.Errorf("admin: %s by %s, want Allow by securityRules/allow-ssh", *r.Access, *r.RuleName)
		}
		if r := verify(ip, "198.51.100.1", "22"); *r.Access != armnetwork.AccessDeny || *r.RuleName != "defaultSecurityRules/DenyAllInBound" {
			t.Errorf("outsider: %s by %s, want Deny by defaultSecurityRules/DenyAllInBound", *r.Access, *r.RuleName)
		}
	})
}

// A network interface write is a long-running operation like an NSG's: the
// NIC reads as Updating and refuses other writes until it completes.
func TestNetworkInterfaceWriteIsLongRunning(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := context.Background()
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", "")); err != nil {
		t.Fatal(err)
	}
	raw := newRawClient(t, srv)
	nicPath := "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG +
		"/providers/Microsoft.Network/networkInterfaces/nic-slow?api-version=2025-05-01"
	body := map[string]any{"location": testLocation, "properties": map[string]any{"ipConfigurations": []any{
		map[string]any{"name": "ipconfig1", "properties": map[string]any{"subnet": map[string]any{"id": n.appSubnetID("web")}}},
	}}}

	srv.SetWriteLatency(time.Hour)
	resp, b := raw.must(http.MethodPut, nicPath, body)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Azure-AsyncOperation") == "" || !strings.Contains(string(b), `"provisioningState":"Updating"`) {
		t.Fatalf("PUT NIC: %d %s", resp.StatusCode, b)
	}
	if resp, b = raw.must(http.MethodPut, nicPath, body); resp.StatusCode != http.StatusTooManyRequests ||
		!strings.Contains(string(b), "RetryableErrorDueToAnotherOperation") {
		t.Errorf("second PUT while the first runs: %d %s", resp.StatusCode, b)
	}
	if resp, b = raw.must(http.MethodGet, nicPath, nil); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"provisioningState":"Updating"`) {
		t.Errorf("GET while running: %d %s", resp.StatusCode, b)
	}
	// The address is taken at once, so a second NIC cannot get it meanwhile.
	if !strings.Contains(string(b), `"privateIPAddress":"10.10.1.4"`) {
		t.Errorf("NIC while running has no address: %s", b)
	}
}

// Private addresses are unique within a virtual network only: another
// virtual network may give a NIC the same static address.
func TestPrivateAddressesAreUniquePerVirtualNetwork(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := t.Context()
	for _, vnet := range []string{"vnet-one", "vnet-two"} {
		if _, err := n.createVNet(ctx, vnet, "10.10.0.0/16", subnet("web", "10.10.1.0/24", "")); err != nil {
			t.Fatal(err)
		}
	}
	sub := func(vnet string) string {
		return "/subscriptions/" + srv.SubscriptionID() + "/resourceGroups/" + testRG + "/providers/Microsoft.Network/virtualNetworks/" + vnet + "/subnets/web"
	}
	if _, err := n.createNIC(ctx, "nic-one", nicSpec{subnetID: sub("vnet-one"), ip: "10.10.1.4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.createNIC(ctx, "nic-two", nicSpec{subnetID: sub("vnet-two"), ip: "10.10.1.4"}); err != nil {
		t.Errorf("the same address in another virtual network: %v", err)
	}
	_, err := n.createNIC(ctx, "nic-three", nicSpec{subnetID: sub("vnet-one"), ip: "10.10.1.4"})
	wantBadRequest(t, "the same address in the same virtual network", err, "PrivateIPAddressIsAllocated")
}
