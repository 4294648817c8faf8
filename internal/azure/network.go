package azure

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
)

// NetworkInterface is a VM's network interface as JIT access needs it: the
// NSGs that filter its traffic (its own and its subnets') and its private
// addresses, the destinations a policy protects.
type NetworkInterface struct {
	ID       string
	Name     string
	Location string
	// NSGID is the NIC-level NSG; "" when none is associated.
	NSGID string
	// IPConfigurations are in the order Azure lists them.
	IPConfigurations []IPConfiguration
}

// IPConfiguration is one IP configuration of a network interface.
type IPConfiguration struct {
	Name      string
	PrivateIP string // "" while Azure has not allocated one
	SubnetID  string
	// SubnetNSGID is the NSG associated with the subnet; "" when none.
	SubnetNSGID string
	Primary     bool
}

// NICID is a parsed network interface resource id.
type NICID struct {
	SubscriptionID string
	ResourceGroup  string
	Name           string
}

// String returns the canonical ARM id.
func (id NICID) String() string {
	return "/subscriptions/" + id.SubscriptionID + "/resourceGroups/" + id.ResourceGroup +
		"/providers/Microsoft.Network/networkInterfaces/" + id.Name
}

const (
	nicResourceType    = "Microsoft.Network/networkInterfaces"
	subnetResourceType = "Microsoft.Network/virtualNetworks/subnets"
)

// ParseNetworkInterfaceID parses an ARM network interface id,
// case-insensitively as ARM does. Any other kind of id (including an IP
// configuration's) is an ErrInvalid *Error.
func ParseNetworkInterfaceID(id string) (NICID, error) {
	invalid := func(msg string) error {
		return &Error{Kind: KindInvalid, Op: "parse network interface id", ResourceID: id, Message: msg}
	}
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return NICID{}, invalid(err.Error())
	}
	if !strings.EqualFold(rid.ResourceType.String(), nicResourceType) {
		return NICID{}, invalid(fmt.Sprintf("is a %s, not a %s", rid.ResourceType.String(), nicResourceType))
	}
	if rid.SubscriptionID == "" || rid.ResourceGroupName == "" || rid.Name == "" {
		return NICID{}, invalid("want /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/networkInterfaces/<name>")
	}
	return NICID{SubscriptionID: rid.SubscriptionID, ResourceGroup: rid.ResourceGroupName, Name: rid.Name}, nil
}

// subnetID is a parsed subnet resource id.
type subnetID struct {
	subscriptionID, resourceGroup, vnet, name string
}

func parseSubnetID(id string) (subnetID, error) {
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return subnetID{}, err
	}
	if !strings.EqualFold(rid.ResourceType.String(), subnetResourceType) || rid.Parent == nil || rid.ResourceGroupName == "" {
		return subnetID{}, fmt.Errorf("%q is not a subnet id", id)
	}
	return subnetID{subscriptionID: rid.SubscriptionID, resourceGroup: rid.ResourceGroupName, vnet: rid.Parent.Name, name: rid.Name}, nil
}

// GetNetworkInterface reads a network interface and, once per distinct
// subnet its IP configurations use, that subnet for its NSG. Azure does not
// expand a subnet's NSG inside the NIC, hence the extra reads.
func (c *Client) GetNetworkInterface(ctx context.Context, id string) (NetworkInterface, error) {
	const op = "get network interface"
	nicID, err := ParseNetworkInterfaceID(id)
	if err != nil {
		return NetworkInterface{}, err
	}
	sc, err := c.subscription(nicID.SubscriptionID)
	if err != nil {
		return NetworkInterface{}, &Error{Kind: KindInvalid, ResourceID: id, Op: "prepare", Message: err.Error(), Err: err}
	}
	resp, err := sc.interfaces.Get(ctx, nicID.ResourceGroup, nicID.Name, nil)
	if err != nil {
		return NetworkInterface{}, newError(op, id, err)
	}
	nic := resp.Interface
	out := NetworkInterface{ID: deref(nic.ID), Name: deref(nic.Name), Location: deref(nic.Location)}
	if out.ID == "" {
		out.ID = nicID.String()
	}
	p := nic.Properties
	if p == nil {
		return out, nil
	}
	if p.NetworkSecurityGroup != nil {
		out.NSGID = deref(p.NetworkSecurityGroup.ID)
	}
	subnetNSGs := map[string]string{} // by lower-cased subnet id
	for _, ipc := range p.IPConfigurations {
		if ipc == nil {
			continue
		}
		cfg := IPConfiguration{Name: deref(ipc.Name)}
		if ip := ipc.Properties; ip != nil {
			cfg.PrivateIP = deref(ip.PrivateIPAddress)
			cfg.Primary = deref(ip.Primary)
			if ip.Subnet != nil {
				cfg.SubnetID = deref(ip.Subnet.ID)
			}
		}
		if cfg.SubnetID != "" {
			key := strings.ToLower(cfg.SubnetID)
			nsg, seen := subnetNSGs[key]
			if !seen {
				if nsg, err = c.subnetNSG(ctx, cfg.SubnetID); err != nil {
					return NetworkInterface{}, err
				}
				subnetNSGs[key] = nsg
			}
			cfg.SubnetNSGID = nsg
		}
		out.IPConfigurations = append(out.IPConfigurations, cfg)
	}
	return out, nil
}

// subnetNSG returns the id of the NSG associated with a subnet, or "".
func (c *Client) subnetNSG(ctx context.Context, id string) (string, error) {
	const op = "get subnet"
	sid, err := parseSubnetID(id)
	if err != nil {
		return "", &Error{Kind: KindInvalid, Op: op, ResourceID: id, Message: err.Error(), Err: err}
	}
	sc, err := c.subscription(sid.subscriptionID)
	if err != nil {
		return "", &Error{Kind: KindInvalid, ResourceID: id, Op: "prepare", Message: err.Error(), Err: err}
	}
	resp, err := sc.subnets.Get(ctx, sid.resourceGroup, sid.vnet, sid.name, nil)
	if err != nil {
		return "", newError(op, id, err)
	}
	if p := resp.Properties; p != nil && p.NetworkSecurityGroup != nil {
		return deref(p.NetworkSecurityGroup.ID), nil
	}
	return "", nil
}
