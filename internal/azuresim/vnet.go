package azuresim

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Virtual networks, on the shared engine (netType): their address space and
// inline subnets (subnet.go), with Azure's rules that keep references valid.

const vnetType = "Microsoft.Network/virtualNetworks"

// Store keys of network resources carry their type, so that they never
// collide with NSG keys (resource group and resource names cannot hold ':').
func vnetKey(sub, rg, name string) string { return "vnet:" + nsgKey(sub, rg, name) }

// vnetState is a virtual network as stored.
type vnetState struct {
	resourceMeta // the etag is shared with its subnets, as on Azure
	// top and props hold what is not modelled (tags, addressSpace, dhcpOptions,
	// ...) verbatim.
	top, props map[string]json.RawMessage
	space      []netip.Prefix // properties.addressSpace.addressPrefixes
	subnets    []*subnetState // in creation order
}

func (v *vnetState) clone() *vnetState {
	c := *v
	c.top, c.props = cloneRaw(v.top), cloneRaw(v.props)
	c.space = slices.Clone(v.space)
	c.subnets = make([]*subnetState, len(v.subnets))
	for i, sn := range v.subnets {
		sc := *sn
		sc.addressPrefixes = slices.Clone(sn.addressPrefixes)
		sc.prefixes = slices.Clone(sn.prefixes)
		sc.props = cloneRaw(sn.props)
		c.subnets[i] = &sc
	}
	return &c
}

func (v *vnetState) findSubnet(name string) int {
	return slices.IndexFunc(v.subnets, func(sn *subnetState) bool { return strings.EqualFold(sn.name, name) })
}

func (v *vnetState) subnetID(name string) string { return v.id + "/subnets/" + name }

func (v *vnetState) withProvisioningState(ps string) *vnetState {
	v.provisioningState = ps
	for _, sn := range v.subnets {
		sn.provisioningState = ps
	}
	return v
}

// vnetPropsComputed are the members the server computes or models itself;
// anything else a client sends is kept verbatim.
var vnetPropsComputed = map[string]bool{"subnets": true, "provisioningState": true, "resourceGuid": true}

func vnetID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/virtualNetworks", name)
}

var vnetKind = &netType[vnetState, *vnetState]{
	typ:     vnetType,
	entries: func(s *Server) map[string]*resourceEntry[vnetState] { return s.vnets },
	key:     vnetKey,
	name:    func(q armRequest) string { return q.vnet },
	render:  (*Server).vnetJSON,
	build:   (*Server).newVNetState,
	inUse:   (*Server).vnetInUse,
	putOp:   "PutVirtualNetworkOperation", deleteOp: "DeleteVirtualNetworkOperation",
}

// vnetJSON renders a virtual network as ARM does. Callers hold s.mu.
func (s *Server) vnetJSON(v *vnetState) map[string]any {
	props := make(map[string]any, len(v.props)+3)
	for k, val := range v.props {
		props[k] = val
	}
	subnets := make([]any, len(v.subnets))
	for i, sn := range v.subnets {
		subnets[i] = s.subnetJSON(v, sn)
	}
	props["subnets"] = subnets
	props["provisioningState"] = v.provisioningState
	props["resourceGuid"] = v.guid
	doc := make(map[string]any, len(v.top)+6)
	for k, val := range v.top {
		doc[k] = val
	}
	doc["name"], doc["id"], doc["etag"], doc["type"], doc["location"] = v.name, v.id, v.etag, vnetType, v.location
	doc["properties"] = props
	return doc
}

// vnetBody is the modelled part of a virtual network PUT body.
type vnetBody struct {
	Name       string `json:"name"`
	Location   string `json:"location"`
	Properties *struct {
		AddressSpace *struct {
			AddressPrefixes []string `json:"addressPrefixes"`
		} `json:"addressSpace"`
		Subnets []json.RawMessage `json:"subnets"`
	} `json:"properties"`
}

// newVNetState builds and validates the state a virtual network PUT body
// describes, replacing cur (nil on create). Callers hold s.mu.
func (s *Server) newVNetState(sub, rg, name string, raw []byte, cur *vnetState) (*vnetState, *armError) {
	var body vnetBody
	if err := decodeJSON(raw, &body); err != nil {
		return nil, err
	}
	meta, top, props, err := newResourceMeta(s, sub, rg, name, raw, body.Name, body.Location, cur, vnetID)
	if err != nil {
		return nil, err
	}
	next := &vnetState{resourceMeta: meta, top: top, props: keepUnmodelled(props, vnetPropsComputed)}
	if body.Properties != nil && body.Properties.AddressSpace != nil {
		for _, p := range body.Properties.AddressSpace.AddressPrefixes {
			pfx, aerr := parseSubnetPrefix(p, next.id)
			if aerr != nil {
				return nil, aerr
			}
			next.space = append(next.space, pfx)
		}
	}
	if body.Properties != nil {
		seen := map[string]bool{}
		for _, rawSubnet := range body.Properties.Subnets {
			var sb subnetBody
			if aerr := decodeJSON(rawSubnet, &sb); aerr != nil {
				return nil, aerr
			}
			if seen[strings.ToLower(sb.Name)] {
				return nil, &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
					"The subnet name '%s' appears more than once in virtual network %s.", sb.Name, next.id)}
			}
			seen[strings.ToLower(sb.Name)] = true
			sn, aerr := s.newSubnetState(next, sb.Name, rawSubnet, &sb)
			if aerr != nil {
				return nil, aerr
			}
			next.subnets = append(next.subnets, sn)
		}
	}
	for _, sn := range next.subnets {
		if aerr := s.validateSubnet(next, sn); aerr != nil {
			return nil, aerr
		}
	}
	if cur != nil {
		for _, old := range cur.subnets {
			if next.findSubnet(old.name) >= 0 {
				continue
			}
			if users := s.subnetUsers(cur.subnetID(old.name), true); len(users) > 0 {
				return nil, inUseSubnet(old.name, users)
			}
		}
	}
	next.etag = newETag()
	return next, nil
}

// vnetInUse refuses the deletion of a virtual network one of whose subnets
// is in use. Callers hold s.mu.
func (s *Server) vnetInUse(v *vnetState) *armError {
	for _, sn := range v.subnets {
		if users := s.subnetUsers(v.subnetID(sn.name), true); len(users) > 0 {
			return inUseSubnet(sn.name, users)
		}
	}
	return nil
}
