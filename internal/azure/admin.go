package azure

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Azure Virtual Network Manager security admin rules apply to virtual
// networks and are evaluated before any NSG. An NSG protects the VMs of
// the subnets and network interfaces it is associated with, so the admin
// rules that can override it are those of those subnets' virtual networks.

// NSGVirtualNetworks returns the ids of the virtual networks an NSG's
// traffic passes through: those of the subnets it is associated with and
// of the subnets of the network interfaces it is associated with, sorted
// and without duplicates. An NSG associated with nothing has none.
func (c *Client) NSGVirtualNetworks(ctx context.Context, nsgID string) ([]string, error) {
	const op = "get network security group"
	id, sc, err := c.target(nsgID)
	if err != nil {
		return nil, err
	}
	resp, err := sc.groups.Get(ctx, id.ResourceGroup, id.Name, nil)
	if err != nil {
		return nil, newError(op, nsgID, err)
	}
	seen := map[string]string{}
	addSubnet := func(subnetID string) {
		if vnet, ok := vnetOfSubnet(subnetID); ok {
			seen[strings.ToLower(vnet)] = vnet
		}
	}
	if p := resp.Properties; p != nil {
		for _, s := range p.Subnets {
			if s != nil && s.ID != nil {
				addSubnet(*s.ID)
			}
		}
		for _, n := range p.NetworkInterfaces {
			if n == nil || n.ID == nil {
				continue
			}
			nic, err := c.GetNetworkInterface(ctx, *n.ID)
			if err != nil {
				return nil, err
			}
			for _, ip := range nic.IPConfigurations {
				addSubnet(ip.SubnetID)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for _, v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// vnetOfSubnet returns the virtual network id of a subnet id.
func vnetOfSubnet(subnetID string) (string, bool) {
	i := strings.LastIndex(strings.ToLower(subnetID), "/subnets/")
	if i <= 0 {
		return "", false
	}
	return subnetID[:i], true
}

// EffectiveAdminRules lists the security admin rules in effect for a
// virtual network (Azure's listNetworkManagerEffectiveSecurityAdminRules),
// following skip tokens to the last page. Default rules (kind Default)
// are included with their properties.
func (c *Client) EffectiveAdminRules(ctx context.Context, vnetID string) ([]jit.AdminRule, error) {
	const op = "list effective security admin rules of"
	rid, err := arm.ParseResourceID(vnetID)
	if err != nil || !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Network/virtualNetworks") {
		return nil, &Error{Kind: KindInvalid, Op: op, ResourceID: vnetID, Message: "not a virtual network id"}
	}
	sc, err := c.subscription(rid.SubscriptionID)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, ResourceID: vnetID, Op: "prepare", Message: err.Error(), Err: err}
	}
	var out []jit.AdminRule
	var token *string
	for page := 0; ; page++ {
		if page >= maxAdminRulePages {
			return nil, &Error{Kind: KindInvalid, Op: op, ResourceID: vnetID,
				Message: fmt.Sprintf("more than %d pages of admin rules: the skip token does not end", maxAdminRulePages)}
		}
		resp, err := sc.management.ListNetworkManagerEffectiveSecurityAdminRules(ctx, rid.ResourceGroupName, rid.Name,
			armnetwork.QueryRequestOptions{SkipToken: token}, nil)
		if err != nil {
			return nil, newError(op, vnetID, err)
		}
		for _, v := range resp.Value {
			if r, ok := adminRuleFromARM(v); ok {
				out = append(out, r)
			}
		}
		if resp.SkipToken == nil || *resp.SkipToken == "" {
			return out, nil
		}
		token = resp.SkipToken
	}
}

// maxAdminRulePages bounds the pages of one listing, against a skip token
// that never ends.
const maxAdminRulePages = 1000

// adminRuleFromARM maps one effective admin rule, custom or default.
func adminRuleFromARM(v armnetwork.EffectiveBaseSecurityAdminRuleClassification) (jit.AdminRule, bool) {
	base := v.GetEffectiveBaseSecurityAdminRule()
	scope := strings.TrimSpace(strings.Join(nonEmpty(deref(base.ConfigurationDescription), deref(base.RuleCollectionDescription)), "; "))
	switch r := v.(type) {
	case *armnetwork.EffectiveSecurityAdminRule:
		if r.Properties == nil {
			return jit.AdminRule{}, false
		}
		p := r.Properties
		return adminRule(deref(r.ID), scope, p.Priority, p.Access, p.Direction, p.Protocol, p.Sources, p.Destinations,
			p.SourcePortRanges, p.DestinationPortRanges), true
	case *armnetwork.EffectiveDefaultSecurityAdminRule:
		if r.Properties == nil {
			return jit.AdminRule{}, false
		}
		p := r.Properties
		return adminRule(deref(r.ID), scope, p.Priority, p.Access, p.Direction, p.Protocol, p.Sources, p.Destinations,
			p.SourcePortRanges, p.DestinationPortRanges), true
	}
	return jit.AdminRule{}, false
}

func adminRule(id, scope string, priority *int32, access *armnetwork.SecurityConfigurationRuleAccess,
	direction *armnetwork.SecurityConfigurationRuleDirection, protocol *armnetwork.SecurityConfigurationRuleProtocol,
	sources, destinations []*armnetwork.AddressPrefixItem, sourcePorts, destinationPorts []*string) jit.AdminRule {
	name := id
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		name = id[i+1:]
	}
	r := jit.AdminRule{Name: name, Priority: deref(priority), Scope: scope,
		SourcePorts: derefAll(sourcePorts), DestinationPorts: derefAll(destinationPorts)}
	if access != nil {
		r.Access = string(*access)
	}
	if direction != nil {
		r.Direction = jit.Direction(*direction)
	}
	if protocol != nil {
		r.Protocol = jit.Protocol(*protocol)
	}
	for _, a := range sources {
		if a != nil && a.AddressPrefix != nil {
			r.Sources = append(r.Sources, *a.AddressPrefix)
		}
	}
	for _, a := range destinations {
		if a != nil && a.AddressPrefix != nil {
			r.Destinations = append(r.Destinations, *a.AddressPrefix)
		}
	}
	return r
}

func derefAll(ps []*string) []string {
	var out []string
	for _, p := range ps {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// AdminRules returns the security admin rules in effect for an NSG's
// traffic: those of every virtual network it is associated with (through
// its subnets and network interfaces).
func (c *Client) AdminRules(ctx context.Context, nsgID string) ([]jit.AdminRule, error) {
	vnets, err := c.NSGVirtualNetworks(ctx, nsgID)
	if err != nil {
		return nil, err
	}
	var out []jit.AdminRule
	for _, v := range vnets {
		rules, err := c.EffectiveAdminRules(ctx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, rules...)
	}
	return out, nil
}
