package azuresim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Subnets, the child resources of a virtual network: their prefixes, their
// NSG association, and Azure's refusal to delete or shrink a subnet in use.

const subnetType = "Microsoft.Network/virtualNetworks/subnets"

type subnetState struct {
	name              string
	addressPrefix     string   // as the client wrote it
	addressPrefixes   []string // as the client wrote them
	prefixes          []netip.Prefix
	nsgID             string // canonical id of the associated NSG; "" none
	props             map[string]json.RawMessage
	provisioningState string
}

// subnetPropsComputed are a subnet's computed or modelled members.
var subnetPropsComputed = map[string]bool{"addressPrefix": true, "addressPrefixes": true, "networkSecurityGroup": true, "ipConfigurations": true, "provisioningState": true}

// lookupSubnet resolves a subnet reference against the latest state of its
// virtual network. Callers hold s.mu.
func (s *Server) lookupSubnet(id string) (*vnetState, *subnetState) {
	q := parseARMPath(http.MethodGet, id)
	if q.kind != "subnet" || s.servedSubscription(q.sub) == "" {
		return nil, nil
	}
	e := settleNet(s, s.vnets, vnetKey(q.sub, q.rg, q.vnet))
	if e == nil || e.latest() == nil {
		return nil, nil
	}
	v := e.latest()
	i := v.findSubnet(q.subnet)
	if i < 0 {
		return nil, nil
	}
	return v, v.subnets[i]
}

// subnetUsers returns the ids of the IP configurations in the subnet.
// Callers hold s.mu.
func (s *Server) subnetUsers(subnetID string, latest bool) []string {
	var out []string
	for _, n := range s.nicStates(latest) {
		for _, ic := range n.ipConfigs {
			if strings.EqualFold(ic.subnetID, subnetID) {
				out = append(out, n.ipConfigID(ic.name))
			}
		}
	}
	return out
}

func inUseSubnet(name string, users []string) *armError {
	return &armError{Code: "InUseSubnetCannotBeDeleted", Message: fmt.Sprintf(
		"Subnet %s is in use by %s and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.",
		name, strings.Join(users, ", "))}
}

// subnetJSON renders a subnet with the IP configurations in it. Callers
// hold s.mu.
func (s *Server) subnetJSON(v *vnetState, sn *subnetState) map[string]any {
	props := make(map[string]any, len(sn.props)+5)
	for k, val := range sn.props {
		props[k] = val
	}
	if sn.addressPrefix != "" {
		props["addressPrefix"] = sn.addressPrefix
	}
	if len(sn.addressPrefixes) > 0 {
		props["addressPrefixes"] = sn.addressPrefixes
	}
	if sn.nsgID != "" {
		props["networkSecurityGroup"] = resourceRef{ID: sn.nsgID}
	}
	id := v.subnetID(sn.name)
	if users := s.subnetUsers(id, false); len(users) > 0 {
		refs := make([]resourceRef, len(users))
		for i, u := range users {
			refs[i] = resourceRef{ID: u}
		}
		props["ipConfigurations"] = refs
	}
	props["provisioningState"] = sn.provisioningState
	return map[string]any{"id": id, "name": sn.name, "etag": v.etag, "type": subnetType, "properties": props}
}

// subnetBody is the modelled part of a subnet, in a subnet PUT or inline in
// a virtual network.
type subnetBody struct {
	Name       string `json:"name"`
	Properties *struct {
		AddressPrefix        string       `json:"addressPrefix"`
		AddressPrefixes      []string     `json:"addressPrefixes"`
		NetworkSecurityGroup *resourceRef `json:"networkSecurityGroup"`
	} `json:"properties"`
}

// parseSubnetPrefix parses an address prefix as Azure requires it: CIDR
// notation with no host bits set.
func parseSubnetPrefix(p, resourceID string) (netip.Prefix, *armError) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
	if err != nil {
		return netip.Prefix{}, &armError{Code: "InvalidCIDRNotation", Message: fmt.Sprintf(
			"The address prefix %s in resource %s has an invalid CIDR notation.", p, resourceID)}
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, &armError{Code: "InvalidCIDRNotation", Message: fmt.Sprintf(
			"The address prefix %s in resource %s has an invalid CIDR notation. For the given prefix length, the address prefix should be %s.", p, resourceID, pfx.Masked())}
	}
	return pfx, nil
}

// newSubnetState builds a subnet of v from its body, checking what can be
// checked without its siblings. Callers hold s.mu.
func (s *Server) newSubnetState(v *vnetState, name string, raw []byte, body *subnetBody) (*subnetState, *armError) {
	if !validName(name) {
		return nil, invalidNameError(name)
	}
	_, props, aerr := splitBody(raw)
	if aerr != nil {
		return nil, aerr
	}
	sn := &subnetState{name: name, props: keepUnmodelled(props, subnetPropsComputed)}
	id := v.subnetID(name)
	if p := body.Properties; p != nil {
		sn.addressPrefix, sn.addressPrefixes = p.AddressPrefix, slices.Clone(p.AddressPrefixes)
		nsgID, aerr := s.checkNSGReference(p.NetworkSecurityGroup, id, v.location)
		if aerr != nil {
			return nil, aerr
		}
		sn.nsgID = nsgID
	}
	for _, p := range singleOrMany(sn.addressPrefix, sn.addressPrefixes) {
		pfx, aerr := parseSubnetPrefix(p, id)
		if aerr != nil {
			return nil, aerr
		}
		sn.prefixes = append(sn.prefixes, pfx)
	}
	if len(sn.prefixes) == 0 {
		return nil, &armError{Code: "NetcfgInvalidSubnet", Message: fmt.Sprintf(
			"Subnet '%s' is not valid in virtual network '%s': it has no address prefix.", name, v.name)}
	}
	return sn, nil
}

// validateSubnet checks sn against its virtual network: inside its address
// space, not overlapping a sibling, and still holding the addresses of the
// network interfaces in it. Callers hold s.mu.
func (s *Server) validateSubnet(v *vnetState, sn *subnetState) *armError {
	for _, p := range sn.prefixes {
		if !slices.ContainsFunc(v.space, func(sp netip.Prefix) bool { return sp.Bits() <= p.Bits() && sp.Contains(p.Addr()) }) {
			return &armError{Code: "NetcfgSubnetRangeOutsideVnet", Message: fmt.Sprintf(
				"Subnet '%s' is not valid because its IP address range is outside the IP address range of virtual network '%s'.", sn.name, v.name)}
		}
		for _, other := range v.subnets {
			if other == sn {
				continue
			}
			if slices.ContainsFunc(other.prefixes, p.Overlaps) {
				return &armError{Code: "NetcfgSubnetRangesOverlap", Message: fmt.Sprintf(
					"Subnet '%s' is not valid because its IP address range overlaps with that of an existing subnet in virtual network '%s'.", sn.name, v.name)}
			}
		}
	}
	id := v.subnetID(sn.name)
	for _, n := range s.nicStates(true) {
		for _, ic := range n.ipConfigs {
			if strings.EqualFold(ic.subnetID, id) && !slices.ContainsFunc(sn.prefixes, func(p netip.Prefix) bool { return p.Contains(ic.address) }) {
				return &armError{Code: "InUseSubnetCannotBeUpdated", Message: fmt.Sprintf(
					"Subnet %s is in use by %s, whose private IP address %s would be outside the new address prefixes.", sn.name, n.ipConfigID(ic.name), ic.address)}
			}
		}
	}
	return nil
}

func notFoundSubnet(w http.ResponseWriter, v *vnetState, name string) {
	writeARMError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("Resource %s not found.", v.subnetID(name)))
}

func (s *Server) getSubnet(w http.ResponseWriter, _ *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := vnetKind.find(s, w, q)
	if e == nil {
		return
	}
	v := e.visible()
	i := v.findSubnet(q.subnet)
	if i < 0 {
		notFoundSubnet(w, v, q.subnet)
		return
	}
	writeWithETag(w, v.etag, s.subnetJSON(v, v.subnets[i]))
}

func (s *Server) listSubnets(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		e := vnetKind.find(s, w, q)
		if e == nil {
			return nil, false
		}
		v := e.visible()
		items := make([]any, len(v.subnets))
		for i, sn := range v.subnets {
			items[i] = s.subnetJSON(v, sn)
		}
		return items, true
	})
}

// putSubnet creates or replaces one subnet; the virtual network is busy
// while the operation runs, as on Azure.
func (s *Server) putSubnet(w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	var body subnetBody
	if aerr := decodeJSON(raw, &body); aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if body.Name != "" && !strings.EqualFold(body.Name, q.subnet) {
		writeARMErrorBody(w, http.StatusBadRequest, nameMismatch(body.Name, q.subnet))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := vnetKey(q.sub, q.rg, q.vnet)
	e := vnetKind.find(s, w, q)
	if e == nil {
		return
	}
	cur := e.visible()
	i := cur.findSubnet(q.subnet)
	if !s.writable(w, r, q, childETag(cur.etag, i), e.running(), "PutSubnetOperation") {
		return
	}
	next := e.state.clone()
	name := q.subnet
	if i >= 0 {
		name = next.subnets[i].name // ids keep the case the subnet was created with
	}
	sn, aerr := s.newSubnetState(next, name, raw, &body)
	if aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if i >= 0 {
		next.subnets[i] = sn
	} else {
		next.subnets = append(next.subnets, sn)
	}
	if aerr := s.validateSubnet(next, sn); aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	next.etag = newETag()
	sn.provisioningState = statusSucceeded
	visible := next.clone()
	visible.subnets[visible.findSubnet(name)].provisioningState = "Updating"
	op := startWrite(s, key, e, "PutSubnetOperation", next.subnetID(name), next.location, visible, next, nil, q.failLRO)
	s.writeAccepted(w, r, q, op, putStatus(i < 0), s.subnetJSON(visible, visible.subnets[visible.findSubnet(name)]))
}

// deleteSubnet deletes one subnet unless a network interface uses it.
func (s *Server) deleteSubnet(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := vnetKey(q.sub, q.rg, q.vnet)
	e := vnetKind.find(s, w, q)
	if e == nil {
		return
	}
	cur := e.visible()
	i := cur.findSubnet(q.subnet)
	if !s.childDeletable(w, r, q, cur.etag, i, e.running(), "DeleteSubnetOperation") {
		return
	}
	name := e.state.subnets[i].name
	if users := s.subnetUsers(e.state.subnetID(name), true); len(users) > 0 {
		writeARMErrorBody(w, http.StatusBadRequest, inUseSubnet(name, users))
		return
	}
	next := e.state.clone()
	next.subnets = slices.Delete(next.subnets, i, i+1)
	next.etag = newETag()
	visible := e.state.clone()
	visible.etag = next.etag
	visible.subnets[i].provisioningState = "Deleting"
	op := startWrite(s, key, e, "DeleteSubnetOperation", e.state.subnetID(name), next.location, visible, next, nil, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}
