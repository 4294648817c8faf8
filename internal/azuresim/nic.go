package azuresim

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Network interfaces, on the shared engine (netType): IP configurations in
// subnets with unique private addresses (static or assigned), and an NSG
// association.

const (
	nicType      = "Microsoft.Network/networkInterfaces"
	ipConfigType = "Microsoft.Network/networkInterfaces/ipConfigurations"

	allocationStatic  = "Static"
	allocationDynamic = "Dynamic"
	ipv4              = "IPv4"
	ipv6              = "IPv6"
)

func nicKey(sub, rg, name string) string { return "nic:" + nsgKey(sub, rg, name) }

// nicState is a network interface as stored.
type nicState struct {
	resourceMeta // the etag is shared with its IP configurations
	top, props   map[string]json.RawMessage
	nsgID        string // canonical id of the NIC-level NSG; "" none
	ipConfigs    []*ipConfigState
}

type ipConfigState struct {
	name       string
	address    netip.Addr
	allocation string // Static or Dynamic
	version    string // IPv4 or IPv6
	primary    bool
	subnetID   string // canonical subnet id
	props      map[string]json.RawMessage
}

func (n *nicState) clone() *nicState {
	c := *n
	c.top, c.props = cloneRaw(n.top), cloneRaw(n.props)
	c.ipConfigs = make([]*ipConfigState, len(n.ipConfigs))
	for i, ic := range n.ipConfigs {
		cc := *ic
		cc.props = cloneRaw(ic.props)
		c.ipConfigs[i] = &cc
	}
	return &c
}

func (n *nicState) ipConfigID(name string) string { return n.id + "/ipConfigurations/" + name }

// withProvisioningState needs no more than the interface's own state: its IP
// configurations are rendered with it.
func (n *nicState) withProvisioningState(ps string) *nicState {
	n.provisioningState = ps
	return n
}

// Members of a network interface and its IP configurations the server
// computes or models itself.
var (
	nicPropsComputed      = map[string]bool{"ipConfigurations": true, "networkSecurityGroup": true, "provisioningState": true, "resourceGuid": true, "virtualMachine": true}
	ipConfigPropsComputed = map[string]bool{"privateIPAddress": true, "privateIPAllocationMethod": true, "privateIPAddressVersion": true, "primary": true, "subnet": true, "provisioningState": true}
)

func nicID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/networkInterfaces", name)
}

// nicStates returns every network interface, as netStates. Callers hold s.mu.
func (s *Server) nicStates(latest bool) []*nicState { return netStates(s, s.nics, latest) }

var nicKind = &netType[nicState, *nicState]{
	typ:     nicType,
	entries: func(s *Server) map[string]*resourceEntry[nicState] { return s.nics },
	key:     nicKey,
	name:    func(q armRequest) string { return q.nic },
	render:  (*Server).nicJSON,
	build:   (*Server).newNICState,
	inUse:   (*Server).nicInUse,
	putOp:   "PutNetworkInterfaceOperation", deleteOp: "DeleteNetworkInterfaceOperation",
}

// nicJSON renders a network interface as ARM does.
func (s *Server) nicJSON(n *nicState) map[string]any {
	props := make(map[string]any, len(n.props)+4)
	for k, v := range n.props {
		props[k] = v
	}
	configs := make([]any, len(n.ipConfigs))
	for i, ic := range n.ipConfigs {
		cp := make(map[string]any, len(ic.props)+6)
		for k, v := range ic.props {
			cp[k] = v
		}
		cp["privateIPAddress"] = ic.address.String()
		cp["privateIPAllocationMethod"] = ic.allocation
		cp["privateIPAddressVersion"] = ic.version
		cp["primary"] = ic.primary
		cp["subnet"] = resourceRef{ID: ic.subnetID}
		cp["provisioningState"] = n.provisioningState
		configs[i] = map[string]any{"id": n.ipConfigID(ic.name), "name": ic.name, "etag": n.etag, "type": ipConfigType, "properties": cp}
	}
	props["ipConfigurations"] = configs
	if n.nsgID != "" {
		props["networkSecurityGroup"] = resourceRef{ID: n.nsgID}
	}
	props["provisioningState"] = n.provisioningState
	props["resourceGuid"] = n.guid
	s.addVMReference(props, n.id)
	doc := make(map[string]any, len(n.top)+6)
	for k, v := range n.top {
		doc[k] = v
	}
	doc["name"], doc["id"], doc["etag"], doc["type"], doc["location"] = n.name, n.id, n.etag, nicType, n.location
	doc["properties"] = props
	return doc
}

// nicBody is the modelled part of a network interface PUT body.
type nicBody struct {
	Name       string `json:"name"`
	Location   string `json:"location"`
	Properties *struct {
		NetworkSecurityGroup *resourceRef      `json:"networkSecurityGroup"`
		IPConfigurations     []json.RawMessage `json:"ipConfigurations"`
	} `json:"properties"`
}

type ipConfigBody struct {
	Name       string `json:"name"`
	Properties *struct {
		PrivateIPAddress          string       `json:"privateIPAddress"`
		PrivateIPAllocationMethod string       `json:"privateIPAllocationMethod"`
		PrivateIPAddressVersion   string       `json:"privateIPAddressVersion"`
		Primary                   *bool        `json:"primary"`
		Subnet                    *resourceRef `json:"subnet"`
	} `json:"properties"`
}

// newNICState builds and validates the state a network interface PUT body
// describes, replacing cur (nil on create), and allocates dynamic private
// addresses. Callers hold s.mu.
func (s *Server) newNICState(sub, rg, name string, raw []byte, cur *nicState) (*nicState, *armError) {
	var body nicBody
	if err := decodeJSON(raw, &body); err != nil {
		return nil, err
	}
	meta, top, props, aerr := newResourceMeta(s, sub, rg, name, raw, body.Name, body.Location, cur, nicID)
	if aerr != nil {
		return nil, aerr
	}
	next := &nicState{resourceMeta: meta, top: top, props: keepUnmodelled(props, nicPropsComputed)}
	if body.Properties == nil || len(body.Properties.IPConfigurations) == 0 {
		return nil, &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
			"Network interface %s must have at least one IP configuration.", next.id)}
	}
	nsgID, aerr := s.checkNSGReference(body.Properties.NetworkSecurityGroup, next.id, next.location)
	if aerr != nil {
		return nil, aerr
	}
	next.nsgID = nsgID

	seen := map[string]bool{}
	primaries := 0
	var requested []string // the private address each configuration asked for
	for _, rawConfig := range body.Properties.IPConfigurations {
		ic, addr, aerr := s.newIPConfig(next, rawConfig)
		if aerr != nil {
			return nil, aerr
		}
		if seen[strings.ToLower(ic.name)] {
			return nil, &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
				"The IP configuration name '%s' appears more than once in network interface %s.", ic.name, next.id)}
		}
		seen[strings.ToLower(ic.name)] = true
		if ic.primary {
			primaries++
		}
		next.ipConfigs = append(next.ipConfigs, ic)
		requested = append(requested, addr)
	}
	switch {
	case len(next.ipConfigs) == 1:
		next.ipConfigs[0].primary = true
	case primaries != 1:
		return nil, &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
			"Network interface %s has %d IP configurations and %d of them primary; exactly one must be primary.", next.id, len(next.ipConfigs), primaries)}
	}
	if aerr := s.assignAddresses(next, cur, requested); aerr != nil {
		return nil, aerr
	}
	next.etag = newETag()
	return next, nil
}

// newIPConfig decodes and checks one IP configuration; the address is
// assigned later, once all configurations are known.
func (s *Server) newIPConfig(n *nicState, raw json.RawMessage) (*ipConfigState, string, *armError) {
	var body ipConfigBody
	if aerr := decodeJSON(raw, &body); aerr != nil {
		return nil, "", aerr
	}
	_, props, aerr := splitBody(raw)
	if aerr != nil {
		return nil, "", aerr
	}
	if !validName(body.Name) {
		return nil, "", invalidNameError(body.Name)
	}
	ic := &ipConfigState{name: body.Name, props: keepUnmodelled(props, ipConfigPropsComputed), allocation: allocationDynamic, version: ipv4}
	id := n.ipConfigID(body.Name)
	p := body.Properties
	if p == nil || p.Subnet == nil || p.Subnet.ID == "" {
		return nil, "", &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf("IP configuration %s must reference a subnet.", id)}
	}
	v, sn := s.lookupSubnet(p.Subnet.ID)
	if sn == nil || normaliseLocation(v.location) != normaliseLocation(n.location) || !inSubscription(v.id, n.sub) {
		return nil, "", invalidReference(p.Subnet.ID, id)
	}
	ic.subnetID = v.subnetID(sn.name)
	switch {
	case p.PrivateIPAllocationMethod == "":
	case strings.EqualFold(p.PrivateIPAllocationMethod, allocationStatic):
		ic.allocation = allocationStatic
	case strings.EqualFold(p.PrivateIPAllocationMethod, allocationDynamic):
	default:
		return nil, "", &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
			"The value '%s' of privateIPAllocationMethod in %s is invalid: want Static or Dynamic.", p.PrivateIPAllocationMethod, id)}
	}
	switch {
	case p.PrivateIPAddressVersion == "" || strings.EqualFold(p.PrivateIPAddressVersion, ipv4):
	case strings.EqualFold(p.PrivateIPAddressVersion, ipv6):
		ic.version = ipv6
	default:
		return nil, "", &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
			"The value '%s' of privateIPAddressVersion in %s is invalid: want IPv4 or IPv6.", p.PrivateIPAddressVersion, id)}
	}
	ic.primary = p.Primary != nil && *p.Primary
	if ic.allocation == allocationStatic && p.PrivateIPAddress == "" {
		return nil, "", &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
			"IP configuration %s has a Static allocation but no privateIPAddress.", id)}
	}
	return ic, p.PrivateIPAddress, nil
}

// assignAddresses gives every IP configuration of n its private address:
// static ones the address asked for (inside the subnet, outside Azure's
// reserved addresses, not taken), dynamic ones the address they had if
// still valid, else the first free one of the subnet, as Azure allocates.
// Private addresses are unique within a virtual network; other virtual
// networks may use the same ones. Callers hold s.mu.
func (s *Server) assignAddresses(n, cur *nicState, requested []string) *armError {
	usedIn := map[string]map[netip.Addr]string{} // by lower-case virtual network id: address -> the configuration holding it
	vnetOf := func(subnetID string) string {
		id := strings.ToLower(subnetID)
		if i := strings.LastIndex(id, "/subnets/"); i > 0 {
			id = id[:i]
		}
		if usedIn[id] == nil {
			usedIn[id] = map[netip.Addr]string{}
		}
		return id
	}
	for _, other := range s.nicStates(true) {
		if strings.EqualFold(other.id, n.id) {
			continue
		}
		for _, ic := range other.ipConfigs {
			usedIn[vnetOf(ic.subnetID)][ic.address] = other.ipConfigID(ic.name)
		}
	}
	previous := func(ic *ipConfigState) netip.Addr {
		if cur == nil {
			return netip.Addr{}
		}
		for _, old := range cur.ipConfigs {
			if strings.EqualFold(old.name, ic.name) && strings.EqualFold(old.subnetID, ic.subnetID) {
				return old.address
			}
		}
		return netip.Addr{}
	}
	// Static addresses first, so that a dynamic one never takes an address
	// another configuration of the same request asks for.
	for pass := range 2 {
		for i, ic := range n.ipConfigs {
			static := ic.allocation == allocationStatic
			if (pass == 0) != static {
				continue
			}
			_, sn := s.lookupSubnet(ic.subnetID)
			used := usedIn[vnetOf(ic.subnetID)]
			prefix, ok := prefixForVersion(sn, ic.version)
			if !ok {
				return &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
					"Subnet %s has no %s address prefix for IP configuration %s.", ic.subnetID, ic.version, n.ipConfigID(ic.name))}
			}
			id := n.ipConfigID(ic.name)
			if static {
				addr, err := netip.ParseAddr(requested[i])
				if err != nil || (addr.Is4() || addr.Is4In6()) != (ic.version == ipv4) {
					return &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
						"The private IP address %s of %s is not a valid %s address.", requested[i], id, ic.version)}
				}
				addr = addr.Unmap()
				if !prefix.Contains(addr) {
					return &armError{Code: "PrivateIPAddressNotInSubnet", Message: fmt.Sprintf(
						"Private static IP address %s does not belong to the range of subnet prefix %s.", addr, prefix)}
				}
				if reservedInSubnet(prefix, addr) {
					return &armError{Code: "PrivateIPAddressInReservedRange", Message: fmt.Sprintf(
						"Private static IP address %s falls within reserved IP range of subnet prefix %s.", addr, prefix)}
				}
				if holder, taken := used[addr]; taken {
					return &armError{Code: "PrivateIPAddressIsAllocated", Message: fmt.Sprintf(
						"IP configuration %s is using the private IP address %s which is already allocated to resource %s.", id, addr, holder)}
				}
				ic.address = addr
			} else {
				addr := previous(ic)
				if _, taken := used[addr]; !addr.IsValid() || taken || !prefix.Contains(addr) {
					var ok bool
					if addr, ok = firstFree(prefix, used); !ok {
						return &armError{Code: "SubnetIsFull", Message: fmt.Sprintf(
							"Subnet %s with address prefix %s does not have enough capacity for 1 IP addresses.", sn.name, prefix)}
					}
				}
				ic.address = addr
			}
			used[ic.address] = id
		}
	}
	return nil
}

// prefixForVersion returns the subnet's first prefix of the IP version.
func prefixForVersion(sn *subnetState, version string) (netip.Prefix, bool) {
	if sn == nil {
		return netip.Prefix{}, false
	}
	for _, p := range sn.prefixes {
		if p.Addr().Is4() == (version == ipv4) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// reservedInSubnet reports whether Azure keeps addr for itself: the first
// four addresses of every subnet (network, gateway, two for DNS) and, in
// IPv4, the last (broadcast).
func reservedInSubnet(p netip.Prefix, addr netip.Addr) bool {
	a := p.Masked().Addr()
	for range 4 {
		if a == addr {
			return true
		}
		a = a.Next()
	}
	return addr.Is4() && addr == lastAddr(p)
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// firstFree returns the lowest address of p that is neither reserved nor
// used. It looks at no more addresses than are used, plus a few.
func firstFree(p netip.Prefix, used map[netip.Addr]string) (netip.Addr, bool) {
	for a := p.Masked().Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
		if _, taken := used[a]; !taken && !reservedInSubnet(p, a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}
