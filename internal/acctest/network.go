package acctest

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

// Subnet describes a subnet for CreateVNet.
type Subnet struct {
	Name   string
	Prefix string // e.g. "10.0.1.0/24"
	NSGID  string // the subnet-level NSG; "" for none
}

// NIC describes a network interface for CreateNIC.
type NIC struct {
	NSGID string // the NIC-level NSG; "" for none
	// SubnetIDs get one IP configuration each, with a dynamically allocated
	// address; the first is primary.
	SubnetIDs []string
}

// VNetID is the id of the named virtual network in the fixtures' resource
// group.
func (e *Env) VNetID(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s",
		e.Sim.SubscriptionID(), ResourceGroup, name)
}

// SubnetID is the id of a subnet of the named virtual network.
func (e *Env) SubnetID(vnet, subnet string) string { return e.VNetID(vnet) + "/subnets/" + subnet }

// NICID is the id of the named network interface in the fixtures' resource
// group.
func (e *Env) NICID(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkInterfaces/%s",
		e.Sim.SubscriptionID(), ResourceGroup, name)
}

// CreateVNet creates a virtual network with one address space and the
// given subnets, as the network team would before VMs are onboarded, and
// returns its id.
func (e *Env) CreateVNet(name, addressSpace string, subnets ...Subnet) string {
	e.t.Helper()
	ctx := context.Background()
	vnet := armnetwork.VirtualNetwork{
		Location: to("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to(addressSpace)}},
		},
	}
	for _, s := range subnets {
		sn := &armnetwork.Subnet{Name: to(s.Name), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to(s.Prefix)}}
		if s.NSGID != "" {
			sn.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to(s.NSGID)}
		}
		vnet.Properties.Subnets = append(vnet.Properties.Subnets, sn)
	}
	poller, err := e.vnets.BeginCreateOrUpdate(ctx, ResourceGroup, name, vnet, nil)
	if err != nil {
		e.t.Fatalf("create virtual network %s: %v", name, err)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: pollFrequency}); err != nil {
		e.t.Fatalf("create virtual network %s: %v", name, err)
	}
	return e.VNetID(name)
}

// CreateNIC creates a network interface, as creating a VM would, and
// returns its id and the private addresses Azure allocated, in IP
// configuration order.
func (e *Env) CreateNIC(name string, spec NIC) (id string, privateIPs []string) {
	e.t.Helper()
	ctx := context.Background()
	nic := armnetwork.Interface{Location: to("westeurope"), Properties: &armnetwork.InterfacePropertiesFormat{}}
	if spec.NSGID != "" {
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to(spec.NSGID)}
	}
	for i, subnetID := range spec.SubnetIDs {
		nic.Properties.IPConfigurations = append(nic.Properties.IPConfigurations, &armnetwork.InterfaceIPConfiguration{
			Name: to(fmt.Sprintf("ipconfig%d", i+1)),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				Subnet:                    &armnetwork.Subnet{ID: to(subnetID)},
				PrivateIPAllocationMethod: to(armnetwork.IPAllocationMethodDynamic),
				Primary:                   to(i == 0),
			},
		})
	}
	poller, err := e.nics.BeginCreateOrUpdate(ctx, ResourceGroup, name, nic, nil)
	if err != nil {
		e.t.Fatalf("create network interface %s: %v", name, err)
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: pollFrequency})
	if err != nil {
		e.t.Fatalf("create network interface %s: %v", name, err)
	}
	for _, ipc := range resp.Properties.IPConfigurations {
		privateIPs = append(privateIPs, *ipc.Properties.PrivateIPAddress)
	}
	return e.NICID(name), privateIPs
}
