package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9/fake"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

const (
	testVNet   = "/subscriptions/" + testSub + "/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet"
	testNIC    = "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic-web"
	subnetNSG  = "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-subnet"
	nicNSG     = "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-nic"
	webSubnet  = testVNet + "/subnets/web"
	mgmtSubnet = testVNet + "/subnets/mgmt"
)

// fakeNetwork serves one NIC with three IP configurations in two subnets
// through armnetwork's fakes, counting subnet reads.
type fakeNetwork struct {
	mu          sync.Mutex
	subnetGets  []string // "<vnet>/<subnet>" per read
	subnetError int      // status of every subnet read when not 0
}

func (f *fakeNetwork) factory() *fake.ServerFactory {
	ipc := func(name, ip, subnet string, primary bool) *armnetwork.InterfaceIPConfiguration {
		return &armnetwork.InterfaceIPConfiguration{Name: ptr(name), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			PrivateIPAddress: ptr(ip), Primary: ptr(primary), Subnet: &armnetwork.Subnet{ID: ptr(subnet)},
		}}
	}
	return &fake.ServerFactory{
		InterfacesServer: fake.InterfacesServer{
			Get: func(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (resp azfake.Responder[armnetwork.InterfacesClientGetResponse], errResp azfake.ErrorResponder) {
				if rg != "rg" || name != "nic-web" {
					errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.InterfacesClientGetResponse{Interface: armnetwork.Interface{
					ID: ptr(testNIC), Name: ptr("nic-web"), Location: ptr("westeurope"),
					Properties: &armnetwork.InterfacePropertiesFormat{
						NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: ptr(nicNSG)},
						IPConfigurations: []*armnetwork.InterfaceIPConfiguration{
							ipc("ipconfig1", "10.0.1.4", webSubnet, true),
							ipc("ipconfig2", "10.0.1.5", strings.ToUpper(webSubnet), false), // same subnet, other case
							ipc("ipconfig3", "10.0.9.4", mgmtSubnet, false),
						},
					},
				}}, nil)
				return
			},
		},
		SubnetsServer: fake.SubnetsServer{
			Get: func(_ context.Context, rg, vnet, name string, _ *armnetwork.SubnetsClientGetOptions) (resp azfake.Responder[armnetwork.SubnetsClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				f.subnetGets = append(f.subnetGets, rg+"/"+vnet+"/"+name)
				status := f.subnetError
				f.mu.Unlock()
				if status != 0 {
					errResp.SetResponseError(status, "AuthorizationFailed")
					return
				}
				sn := armnetwork.Subnet{Name: ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{}}
				if strings.EqualFold(name, "web") {
					sn.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(subnetNSG)}
				}
				resp.SetResponse(http.StatusOK, armnetwork.SubnetsClientGetResponse{Subnet: sn}, nil)
				return
			},
		},
	}
}

func newFakeNetworkClient(t *testing.T, f *fakeNetwork) *Client {
	t.Helper()
	c, err := NewClient(context.Background(), Config{SubscriptionID: testSub}, ClientOptions{
		PollFrequency: time.Millisecond,
		RetryDelay:    time.Microsecond,
		MaxRetries:    1,
		Transport:     fake.NewServerFactoryTransport(f.factory()),
		Credential:    staticCredential{token: fakeJWT(`{"tid":"t","oid":"o","appid":"a"}`)},
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func TestGetNetworkInterface(t *testing.T) {
	f := &fakeNetwork{}
	c := newFakeNetworkClient(t, f)
	ctx := context.Background()

	nic, err := c.GetNetworkInterface(ctx, strings.ToLower(testNIC))
	if err != nil {
		t.Fatalf("GetNetworkInterface: %v", err)
	}
	want := NetworkInterface{
		ID: testNIC, Name: "nic-web", Location: "westeurope", NSGID: nicNSG,
		IPConfigurations: []IPConfiguration{
			{Name: "ipconfig1", PrivateIP: "10.0.1.4", SubnetID: webSubnet, SubnetNSGID: subnetNSG, Primary: true},
			{Name: "ipconfig2", PrivateIP: "10.0.1.5", SubnetID: strings.ToUpper(webSubnet), SubnetNSGID: subnetNSG},
			{Name: "ipconfig3", PrivateIP: "10.0.9.4", SubnetID: mgmtSubnet},
		},
	}
	if !reflect.DeepEqual(nic, want) {
		t.Errorf("GetNetworkInterface =\n%+v\nwant\n%+v", nic, want)
	}
	// One read per distinct subnet, however its id is spelled.
	if want := []string{"rg-net/vnet/web", "rg-net/vnet/mgmt"}; !reflect.DeepEqual(f.subnetGets, want) {
		t.Errorf("subnet reads = %v, want %v", f.subnetGets, want)
	}

	if _, err := c.GetNetworkInterface(ctx, strings.Replace(testNIC, "nic-web", "nic-gone", 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing NIC: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{testNSG, testNIC + "/ipConfigurations/ipconfig1", "nic-web", ""} {
		if _, err := c.GetNetworkInterface(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("GetNetworkInterface(%q): %v, want ErrInvalid", bad, err)
		}
	}
	f.subnetError = http.StatusForbidden
	_, err = c.GetNetworkInterface(ctx, testNIC)
	var e *Error
	if !errors.Is(err, ErrForbidden) || !errors.As(err, &e) || e.ResourceID != webSubnet || e.Op != "get subnet" {
		t.Errorf("subnet read refused: %v, want ErrForbidden naming the subnet", err)
	}
}

func TestParseNetworkInterfaceID(t *testing.T) {
	id, err := ParseNetworkInterfaceID("/SUBSCRIPTIONS/" + testSub + "/resourcegroups/RG/providers/microsoft.network/NETWORKINTERFACES/nic-web")
	if err != nil || id != (NICID{SubscriptionID: testSub, ResourceGroup: "RG", Name: "nic-web"}) {
		t.Errorf("ParseNetworkInterfaceID = %+v, %v", id, err)
	}
	if got := id.String(); got != "/subscriptions/"+testSub+"/resourceGroups/RG/providers/Microsoft.Network/networkInterfaces/nic-web" {
		t.Errorf("String() = %s", got)
	}
}

// simNetwork creates resources on a local Azure as the network team would,
// through armnetwork with c's credential and pipeline.
type simNetwork struct {
	t    *testing.T
	f    *armnetwork.ClientFactory
	base string // the resource group's id
}

func newSimNetwork(t *testing.T, c *Client) simNetwork {
	t.Helper()
	f, err := armnetwork.NewClientFactory(c.SubscriptionID(), c.cred, c.armOptions)
	if err != nil {
		t.Fatal(err)
	}
	return simNetwork{t: t, f: f, base: "/subscriptions/" + c.SubscriptionID() + "/resourceGroups/rg-jit"}
}

func (n simNetwork) wait(err error, poll func() error) {
	n.t.Helper()
	if err == nil {
		err = poll()
	}
	if err != nil {
		n.t.Fatal(err)
	}
}

var simPoll = &runtime.PollUntilDoneOptions{Frequency: 10 * time.Millisecond}

func (n simNetwork) nsg(name string) string {
	p, err := n.f.NewSecurityGroupsClient().BeginCreateOrUpdate(context.Background(), "rg-jit", name,
		armnetwork.SecurityGroup{Location: ptr("westeurope")}, nil)
	n.wait(err, func() error { _, err := p.PollUntilDone(context.Background(), simPoll); return err })
	return n.base + "/providers/Microsoft.Network/networkSecurityGroups/" + name
}

func (n simNetwork) vnet(name, space string, subnets ...*armnetwork.Subnet) {
	p, err := n.f.NewVirtualNetworksClient().BeginCreateOrUpdate(context.Background(), "rg-jit", name, armnetwork.VirtualNetwork{
		Location: ptr("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr(space)}},
			Subnets:      subnets,
		},
	}, nil)
	n.wait(err, func() error { _, err := p.PollUntilDone(context.Background(), simPoll); return err })
}

// appSubnetID returns the id of a subnet of vnet-app, the virtual network
// the tests create.
func (n simNetwork) appSubnetID(name string) string {
	return n.base + "/providers/Microsoft.Network/virtualNetworks/vnet-app/subnets/" + name
}

// nic creates a NIC with one dynamic IP configuration per subnet and
// returns its id and addresses.
func (n simNetwork) nic(name, nsgID string, subnetIDs ...string) (string, []string) {
	props := &armnetwork.InterfacePropertiesFormat{}
	if nsgID != "" {
		props.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(nsgID)}
	}
	for i, sid := range subnetIDs {
		props.IPConfigurations = append(props.IPConfigurations, &armnetwork.InterfaceIPConfiguration{
			Name: ptr(fmt.Sprintf("ipconfig%d", i+1)),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				Subnet: &armnetwork.Subnet{ID: ptr(sid)}, Primary: ptr(i == 0),
			},
		})
	}
	p, err := n.f.NewInterfacesClient().BeginCreateOrUpdate(context.Background(), "rg-jit", name,
		armnetwork.Interface{Location: ptr("westeurope"), Properties: props}, nil)
	var ips []string
	n.wait(err, func() error {
		resp, err := p.PollUntilDone(context.Background(), simPoll)
		if err == nil {
			for _, ipc := range resp.Properties.IPConfigurations {
				ips = append(ips, *ipc.Properties.PrivateIPAddress)
			}
		}
		return err
	})
	return n.base + "/providers/Microsoft.Network/networkInterfaces/" + name, ips
}

func simSubnet(name, prefix, nsgID string) *armnetwork.Subnet {
	s := &armnetwork.Subnet{Name: ptr(name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr(prefix)}}
	if nsgID != "" {
		s.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(nsgID)}
	}
	return s
}

// TestLocalAzureNetworkInterface reads NICs the network team created on the
// local Azure: one behind a subnet NSG and its own, one with neither.
func TestLocalAzureNetworkInterface(t *testing.T) {
	srv, _, env := localAzure(t, azuresim.Options{})
	c := clientFromEnv(t, env)
	n := newSimNetwork(t, c)
	webNSG := n.nsg("nsg-subnet")
	guardNSG := n.nsg("nsg-nic")
	n.vnet("vnet-app", "10.20.0.0/16", simSubnet("web", "10.20.1.0/24", webNSG), simSubnet("open", "10.20.2.0/24", ""))
	guardedID, guardedIPs := n.nic("nic-guarded", guardNSG, n.appSubnetID("web"), n.appSubnetID("open"))
	openID, _ := n.nic("nic-open", "", n.appSubnetID("open"))

	ctx := context.Background()
	srv.ResetCounters()
	nic, err := c.GetNetworkInterface(ctx, guardedID)
	if err != nil {
		t.Fatalf("GetNetworkInterface: %v", err)
	}
	want := NetworkInterface{
		ID: guardedID, Name: "nic-guarded", Location: "westeurope", NSGID: guardNSG,
		IPConfigurations: []IPConfiguration{
			{Name: "ipconfig1", PrivateIP: "10.20.1.4", SubnetID: n.appSubnetID("web"), SubnetNSGID: webNSG, Primary: true},
			{Name: "ipconfig2", PrivateIP: "10.20.2.4", SubnetID: n.appSubnetID("open")},
		},
	}
	if !reflect.DeepEqual(nic, want) {
		t.Errorf("GetNetworkInterface =\n%+v\nwant\n%+v", nic, want)
	}
	if !reflect.DeepEqual(guardedIPs, []string{"10.20.1.4", "10.20.2.4"}) {
		t.Errorf("allocated addresses %v, want the first free of each subnet", guardedIPs)
	}
	counters := srv.Counters().Requests
	if counters["GET nic"] != 1 || counters["GET subnet"] != 2 {
		t.Errorf("requests: %d NIC reads, %d subnet reads; want 1 and 2", counters["GET nic"], counters["GET subnet"])
	}

	open, err := c.GetNetworkInterface(ctx, openID)
	if err != nil || open.NSGID != "" || len(open.IPConfigurations) != 1 || open.IPConfigurations[0].SubnetNSGID != "" {
		t.Errorf("NIC without NSGs = %+v, %v", open, err)
	}
	if _, err := c.GetNetworkInterface(ctx, strings.Replace(openID, "nic-open", "nic-none", 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing NIC: %v, want ErrNotFound", err)
	}
}
