package azuresim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// This file models the network a VM sits in, as far as JIT access needs it:
// virtual networks with subnets, network interfaces with IP configurations,
// the NSG associations of both, and Network Watcher's IP flow verify. Azure's
// consistency rules that keep those references valid are enforced (a
// referenced subnet or NSG must exist in the same region, a subnet in use or
// an NSG in use cannot be deleted, private addresses are unique and inside
// their subnet), so that clients meet the same errors as on Azure.

const (
	vnetType     = "Microsoft.Network/virtualNetworks"
	subnetType   = "Microsoft.Network/virtualNetworks/subnets"
	nicType      = "Microsoft.Network/networkInterfaces"
	ipConfigType = "Microsoft.Network/networkInterfaces/ipConfigurations"

	allocationStatic  = "Static"
	allocationDynamic = "Dynamic"
	ipv4              = "IPv4"
	ipv6              = "IPv6"
)

// Store keys of network resources carry their type, so that they never
// collide with NSG keys (resource group and resource names cannot hold ':').
func vnetKey(sub, rg, name string) string { return "vnet:" + nsgKey(sub, rg, name) }
func nicKey(sub, rg, name string) string  { return "nic:" + nsgKey(sub, rg, name) }

// netEntry is one virtual network or network interface: its committed state
// and the running write, if any. Like NSGs, each accepts one write at a time.
type netEntry[T any] struct {
	state   *T         // committed; nil while being created
	op      *operation // running write; nil when idle
	visible *T         // what reads show while op runs
	next    *T         // committed when op succeeds; nil deletes
}

// current is what reads return.
func (e *netEntry[T]) current() *T {
	if e.op != nil {
		return e.visible
	}
	return e.state
}

// latest is the state once the running write completes: what new writes
// are validated against, so that two quick writes cannot both take one
// address or both miss each other's reference.
func (e *netEntry[T]) latest() *T {
	if e.op != nil {
		return e.next
	}
	return e.state
}

// settleNet completes the entry's operation if it is due and returns the
// entry, or nil when there is no such resource. Callers hold s.mu.
func settleNet[T any](s *Server, m map[string]*netEntry[T], key string) *netEntry[T] {
	e := m[key]
	if e == nil {
		return nil
	}
	if op := e.op; op != nil && !s.now().Before(op.due) {
		if op.fail {
			op.status = statusFailed
			op.err = &armError{Code: "InternalServerError", Message: "An error occurred while processing the operation. The changes were not applied."}
		} else {
			op.status = statusSucceeded
			e.state = e.next
		}
		e.op, e.visible, e.next = nil, nil, nil
	}
	if e.state == nil && e.op == nil {
		delete(m, key)
		return nil
	}
	return e
}

// settleNetworkOperation settles the resource a network operation writes, so
// that polling its status shows the outcome.
func (s *Server) settleNetworkOperation(op *operation) {
	switch {
	case strings.HasPrefix(op.key, "vnet:"):
		settleNet(s, s.vnets, op.key)
	case strings.HasPrefix(op.key, "nic:"):
		settleNet(s, s.nics, op.key)
	}
}

// startNetOperation starts a long-running write of a network resource. Such
// writes are not NSG events, so none is recorded.
func startNetOperation[T any](s *Server, key string, e *netEntry[T], name, resourceID, location string, visible, next *T, fail bool) *operation {
	now := s.now()
	op := &operation{
		id: uuid.NewString(), name: name, key: key, resourceID: resourceID,
		location: normaliseLocation(location), accepted: now, due: now.Add(s.writeLatency),
		fail: fail, status: statusInProgress, event: -1,
	}
	e.op, e.visible, e.next = op, visible, next
	s.pruneOperations(now)
	s.ops[op.id] = op
	return op
}

// resourceMeta is what virtual networks and network interfaces store alike,
// so that their handlers can be shared.
type resourceMeta struct {
	id, sub, rg, name, location   string
	etag, guid, provisioningState string
}

func (m *resourceMeta) meta() *resourceMeta { return m }

// netResource is what the shared handlers need of a stored virtual network
// or network interface.
type netResource[T any] interface {
	*T
	meta() *resourceMeta
	clone() *T
	withProvisioningState(ps string) *T
}

// resourceRef is ARM's reference to another resource: {"id": "..."}.
type resourceRef struct {
	ID string `json:"id"`
}

// vnetState is a virtual network as stored.
type vnetState struct {
	resourceMeta // the etag is shared with its subnets, as on Azure
	// top and props hold what is not modelled (tags, addressSpace, dhcpOptions,
	// ...) verbatim.
	top, props map[string]json.RawMessage
	space      []netip.Prefix // properties.addressSpace.addressPrefixes
	subnets    []*subnetState // in creation order
}

type subnetState struct {
	name              string
	addressPrefix     string   // as the client wrote it
	addressPrefixes   []string // as the client wrote them
	prefixes          []netip.Prefix
	nsgID             string // canonical id of the associated NSG; "" none
	props             map[string]json.RawMessage
	provisioningState string
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

// Members the server computes or models itself; anything else a client sends
// is kept verbatim.
var (
	vnetPropsComputed     = map[string]bool{"subnets": true, "provisioningState": true, "resourceGuid": true}
	subnetPropsComputed   = map[string]bool{"addressPrefix": true, "addressPrefixes": true, "networkSecurityGroup": true, "ipConfigurations": true, "provisioningState": true}
	nicPropsComputed      = map[string]bool{"ipConfigurations": true, "networkSecurityGroup": true, "provisioningState": true, "resourceGuid": true, "virtualMachine": true}
	ipConfigPropsComputed = map[string]bool{"privateIPAddress": true, "privateIPAllocationMethod": true, "privateIPAddressVersion": true, "primary": true, "subnet": true, "provisioningState": true}
)

// armHandler answers one kind of ARM request.
type armHandler func(s *Server, w http.ResponseWriter, r *http.Request, q armRequest)

// networkRoutes are the handlers of the request kinds serveNetwork answers,
// by method.
var networkRoutes = map[string]map[string]armHandler{
	"vnet-list":      {http.MethodGet: vnetKind.list},
	"vnet":           {http.MethodGet: vnetKind.get, http.MethodPut: vnetKind.put, http.MethodDelete: vnetKind.remove},
	"subnet-list":    {http.MethodGet: (*Server).listSubnets},
	"subnet":         {http.MethodGet: (*Server).getSubnet, http.MethodPut: (*Server).putSubnet, http.MethodDelete: (*Server).deleteSubnet},
	"nic-list":       {http.MethodGet: nicKind.list},
	"nic":            {http.MethodGet: nicKind.get, http.MethodPut: nicKind.put, http.MethodDelete: nicKind.remove},
	"ip-flow-verify": {http.MethodPost: (*Server).serveIPFlowVerify},
	"watcher":        {http.MethodGet: (*Server).getWatcher, http.MethodPut: (*Server).putWatcher, http.MethodDelete: (*Server).deleteWatcher},
	"watcher-list":   {http.MethodGet: (*Server).listWatchers},
	// Virtual Network Manager's view of a virtual network (adminrules.go).
	"vnet-admin-rules": {http.MethodPost: (*Server).listEffectiveAdminRules},
}

// serveNetwork answers the virtual network, subnet, network interface and
// network watcher requests; it reports false for any other kind.
func (s *Server) serveNetwork(w http.ResponseWriter, r *http.Request, q armRequest) bool {
	methods := networkRoutes[q.kind]
	if methods == nil {
		return false
	}
	if h := methods[r.Method]; h != nil {
		h(s, w, r, q)
		return true
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost} {
		if methods[m] != nil {
			allow = append(allow, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
		fmt.Sprintf("The HTTP method '%s' is not supported at scope '%s'.", r.Method, r.URL.Path))
	return true
}

// parseNetworkPath classifies the part of a resource group scoped
// Microsoft.Network path after "providers/Microsoft.Network" for the types
// in this file. lower holds the lower-cased segments.
func parseNetworkPath(q *armRequest, method string, seg, lower []string) {
	n := len(seg)
	write := method == http.MethodPut || method == http.MethodDelete
	switch lower[6] {
	case "virtualnetworks":
		switch {
		case n == 7:
			q.kind = "vnet-list"
		case n == 8:
			q.kind, q.vnet, q.lro = "vnet", seg[7], write
		case n == 9 && lower[8] == "subnets":
			q.kind, q.vnet = "subnet-list", seg[7]
		case n == 9 && lower[8] == "listnetworkmanagereffectivesecurityadminrules":
			q.kind, q.vnet = "vnet-admin-rules", seg[7]
		case n == 10 && lower[8] == "subnets":
			q.kind, q.vnet, q.subnet, q.lro = "subnet", seg[7], seg[9], write
		}
	case "networkinterfaces":
		switch n {
		case 7:
			q.kind = "nic-list"
		case 8:
			q.kind, q.nic, q.lro = "nic", seg[7], write
		}
	case "networkwatchers":
		switch {
		case n == 7:
			q.kind = "watcher-list"
		case n == 8:
			q.kind, q.watcher, q.lro = "watcher", seg[7], method == http.MethodDelete
		case n == 9 && lower[8] == "ipflowverify":
			q.kind, q.watcher, q.lro = "ip-flow-verify", seg[7], method == http.MethodPost
		}
	}
}

func vnetID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/virtualNetworks", name)
}

func nicID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Network/networkInterfaces", name)
}

// groupName returns the resource group's name in the case it was created
// with, so that ids are stable whatever case a later request uses.
func (s *Server) groupName(sub, rg string) string {
	if g := s.groups[scopeKey(sub, rg)]; g != nil {
		return g.name
	}
	return rg
}

func notFoundResource(w http.ResponseWriter, typ, name, rg string) {
	writeARMError(w, http.StatusNotFound, "ResourceNotFound",
		fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", typ, name, rg))
}

// invalidReference is Azure's answer to a reference to a resource that does
// not exist or lives in another region.
func invalidReference(ref, from string) *armError {
	return &armError{Code: "InvalidResourceReference", Message: fmt.Sprintf(
		"Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", ref, from)}
}

// splitBody decodes a resource body into its top-level members and its
// properties, for keeping unmodelled members verbatim.
func splitBody(raw []byte) (top, props map[string]json.RawMessage, err *armError) {
	if err := decodeJSON(raw, &top); err != nil {
		return nil, nil, err
	}
	if p, ok := top["properties"]; ok && string(p) != "null" {
		if err := decodeJSON(p, &props); err != nil {
			return nil, nil, err
		}
	}
	return top, props, nil
}

func keepUnmodelled(m map[string]json.RawMessage, computed map[string]bool) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range m {
		if !computed[k] {
			out[k] = v
		}
	}
	return out
}

// lookupNSG resolves an NSG reference to the NSG as it stands; nil when
// there is none. Callers hold s.mu.
func (s *Server) lookupNSG(id string) *nsgState {
	q := parseARMPath(http.MethodGet, id)
	if q.kind != "nsg" || s.servedSubscription(q.sub) == "" {
		return nil
	}
	e := s.entry(nsgKey(q.sub, q.rg, q.nsg))
	if e == nil {
		return nil
	}
	return e.visible()
}

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

// checkNSGReference validates an NSG association of resource from in
// location and returns the NSG's canonical id.
func (s *Server) checkNSGReference(ref *resourceRef, from, location string) (string, *armError) {
	if ref == nil || ref.ID == "" {
		return "", nil
	}
	nsg := s.lookupNSG(ref.ID)
	if nsg == nil || normaliseLocation(nsg.location) != normaliseLocation(location) {
		return "", invalidReference(ref.ID, from)
	}
	return nsg.id, nil
}

// netStates returns the latest state (for validation) or current state (for
// rendering) of every resource in m, sorted by id. Callers hold s.mu.
func netStates[T any, P netResource[T]](s *Server, m map[string]*netEntry[T], latest bool) []*T {
	var out []*T
	for k := range m {
		e := settleNet(s, m, k)
		if e == nil {
			continue
		}
		st := e.current()
		if latest {
			st = e.latest()
		}
		if st != nil {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b *T) int {
		return strings.Compare(strings.ToLower(P(a).meta().id), strings.ToLower(P(b).meta().id))
	})
	return out
}

// nicStates returns every network interface, as netStates. Callers hold s.mu.
func (s *Server) nicStates(latest bool) []*nicState { return netStates(s, s.nics, latest) }

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

// nsgUsers returns the subnets and network interfaces associated with an
// NSG. Callers hold s.mu.
func (s *Server) nsgUsers(nsgID string, latest bool) (subnets, nics []string) {
	for _, v := range netStates(s, s.vnets, latest) {
		for _, sn := range v.subnets {
			if strings.EqualFold(sn.nsgID, nsgID) {
				subnets = append(subnets, v.subnetID(sn.name))
			}
		}
	}
	for _, n := range s.nicStates(latest) {
		if strings.EqualFold(n.nsgID, nsgID) {
			nics = append(nics, n.id)
		}
	}
	slices.SortFunc(subnets, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return subnets, nics
}

// nsgInUse refuses the deletion of an NSG still associated with a subnet or
// a network interface, as Azure does. Callers hold s.mu.
func (s *Server) nsgInUse(st *nsgState) *armError {
	subnets, nics := s.nsgUsers(st.id, true)
	users := slices.Concat(subnets, nics)
	if len(users) == 0 {
		return nil
	}
	return &armError{Code: "InUseNetworkSecurityGroupCannotBeDeleted", Message: fmt.Sprintf(
		"Network security group %s cannot be deleted because it is in use by the following resources: %s. In order to delete the Network security group, remove the association with the resource(s). To learn how to do this, see aka.ms/deletensg.",
		st.id, strings.Join(users, ", "))}
}

// addNSGReferences lists the NSG's subnets and network interfaces in its
// properties, as Azure shows them. Callers hold s.mu.
func (s *Server) addNSGReferences(props map[string]any, nsgID string) {
	subnets, nics := s.nsgUsers(nsgID, false)
	refs := func(ids []string) []resourceRef {
		out := make([]resourceRef, len(ids))
		for i, id := range ids {
			out[i] = resourceRef{ID: id}
		}
		return out
	}
	if len(subnets) > 0 {
		props["subnets"] = refs(subnets)
	}
	if len(nics) > 0 {
		props["networkInterfaces"] = refs(nics)
	}
}

// netType describes a top-level network resource type to the handlers its
// GET, list, PUT and DELETE share.
type netType[T any, P netResource[T]] struct {
	typ     string // for 404s
	entries func(*Server) map[string]*netEntry[T]
	key     func(sub, rg, name string) string
	name    func(armRequest) string // the resource's name in the request path
	render  func(*Server, *T) map[string]any
	// build builds and validates the state a PUT body describes, replacing
	// cur (nil on create).
	build func(s *Server, sub, rg, name string, raw []byte, cur *T) (*T, *armError)
	// inUse refuses a deletion Azure refuses; nil when nothing can.
	inUse           func(*Server, *T) *armError
	putOp, deleteOp string
}

var (
	vnetKind = &netType[vnetState, *vnetState]{
		typ:     vnetType,
		entries: func(s *Server) map[string]*netEntry[vnetState] { return s.vnets },
		key:     vnetKey,
		name:    func(q armRequest) string { return q.vnet },
		render:  (*Server).vnetJSON,
		build:   (*Server).newVNetState,
		inUse:   (*Server).vnetInUse,
		putOp:   "PutVirtualNetworkOperation", deleteOp: "DeleteVirtualNetworkOperation",
	}
	nicKind = &netType[nicState, *nicState]{
		typ:     nicType,
		entries: func(s *Server) map[string]*netEntry[nicState] { return s.nics },
		key:     nicKey,
		name:    func(q armRequest) string { return q.nic },
		render:  (*Server).nicJSON,
		build:   (*Server).newNICState,
		inUse:   (*Server).nicInUse,
		putOp:   "PutNetworkInterfaceOperation", deleteOp: "DeleteNetworkInterfaceOperation",
	}
)

// find returns the settled entry the request names, answering 404 when
// there is none. Callers hold s.mu.
func (k *netType[T, P]) find(s *Server, w http.ResponseWriter, q armRequest) *netEntry[T] {
	e := settleNet(s, k.entries(s), k.key(q.sub, q.rg, k.name(q)))
	if e == nil || e.current() == nil {
		notFoundResource(w, k.typ, k.name(q), q.rg)
		return nil
	}
	return e
}

func (k *netType[T, P]) get(s *Server, w http.ResponseWriter, _ *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := k.find(s, w, q); e != nil {
		writeWithETag(w, P(e.current()).meta().etag, k.render(s, e.current()))
	}
}

// list answers the resources of a resource group or of the subscription.
func (k *netType[T, P]) list(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	s.writeList(w, r, func() ([]any, bool) {
		var items []any
		for _, st := range netStates[T, P](s, k.entries(s), false) {
			if m := P(st).meta(); strings.EqualFold(m.sub, q.sub) && (q.rg == "" || strings.EqualFold(m.rg, q.rg)) {
				items = append(items, k.render(s, st))
			}
		}
		return items, true
	})
}

// put creates or replaces a resource through a long-running operation; the
// body describes all of it, so that, for example, a virtual network's
// subnets become exactly the body's.
func (k *netType[T, P]) put(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, key := k.entries(s), k.key(q.sub, q.rg, k.name(q))
	e := settleNet(s, m, key)
	var cur *T
	var running *operation
	if e != nil {
		cur, running = e.current(), e.op
	}
	etag := ""
	if cur != nil {
		etag = P(cur).meta().etag
	}
	if !s.writable(w, r, q, etag, running, k.putOp) {
		return
	}
	// No operation runs, so cur is the committed state, whose dynamic
	// addresses a network interface keeps.
	next, aerr := k.build(s, q.sub, q.rg, k.name(q), raw, cur)
	if aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if e == nil {
		e = &netEntry[T]{}
		m[key] = e
	}
	meta := P(next).meta()
	s.ensureGroup(meta.sub, meta.rg, meta.location)
	visible := P(P(next).clone()).withProvisioningState("Updating")
	P(next).withProvisioningState(statusSucceeded)
	op := startNetOperation(s, key, e, k.putOp, meta.id, meta.location, visible, next, q.failLRO)
	s.writeAccepted(w, r, q, op, putStatus(cur == nil), k.render(s, visible))
}

// remove deletes a resource through a long-running operation unless it is
// in use.
func (k *netType[T, P]) remove(s *Server, w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := k.key(q.sub, q.rg, k.name(q))
	e := settleNet(s, k.entries(s), key)
	if e == nil {
		writeDeleteAbsent(w, r)
		return
	}
	if !s.writable(w, r, q, P(e.current()).meta().etag, e.op, k.deleteOp) {
		return
	}
	if k.inUse != nil {
		if aerr := k.inUse(s, e.state); aerr != nil {
			writeARMErrorBody(w, http.StatusBadRequest, aerr)
			return
		}
	}
	st := P(e.state)
	visible := P(st.clone()).withProvisioningState("Deleting")
	op := startNetOperation(s, key, e, k.deleteOp, st.meta().id, st.meta().location, visible, nil, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}

// ---- virtual networks and subnets ----

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

// newResourceMeta checks what every network resource PUT body shares (its
// name, and its location against cur, nil on create) once the type's own
// body has decoded, and returns the new state's identity, its unmodelled
// top-level members and its properties. id builds the id of a new resource.
// Callers hold s.mu.
func newResourceMeta[T any, P netResource[T]](s *Server, sub, rg, name string, raw []byte, bodyName, location string, cur *T,
	id func(sub, rg, name string) string,
) (meta resourceMeta, top, props map[string]json.RawMessage, err *armError) {
	top, props, err = splitBody(raw)
	if err != nil {
		return meta, nil, nil, err
	}
	if !validName(name) {
		return meta, nil, nil, invalidNameError(name)
	}
	if bodyName != "" && !strings.EqualFold(bodyName, name) {
		return meta, nil, nil, nameMismatch(bodyName, name)
	}
	sub, rg = s.sub(sub), s.groupName(sub, rg)
	meta = resourceMeta{id: id(sub, rg, name), sub: sub, rg: rg, name: name, location: location, guid: uuid.NewString()}
	if cur != nil {
		c := P(cur).meta()
		meta.id, meta.sub, meta.rg, meta.name, meta.guid = c.id, c.sub, c.rg, c.name, c.guid
		if err := sameLocation(c.name, c.rg, c.location, &meta.location); err != nil {
			return meta, nil, nil, err
		}
	} else if location == "" {
		return meta, nil, nil, &armError{Code: "LocationRequired", Message: "The location property is required for this definition."}
	}
	return meta, keepUnmodelled(top, nsgComputed), props, nil
}

// sameLocation refuses moving an existing resource to another region; an
// empty body location keeps the current one.
func sameLocation(name, rg, cur string, body *string) *armError {
	if *body == "" {
		*body = cur
		return nil
	}
	if normaliseLocation(*body) != normaliseLocation(cur) {
		return &armError{Code: "InvalidResourceLocation", Message: fmt.Sprintf(
			"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Please select a new resource name.",
			name, normaliseLocation(cur), rg, normaliseLocation(*body))}
	}
	return nil
}

func nameMismatch(body, uri string) *armError {
	return &armError{Code: "InvalidRequestFormat", Message: fmt.Sprintf(
		"Resource name '%s' in the request body does not match the name '%s' in the request URI.", body, uri)}
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
	v := e.current()
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
		v := e.current()
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
	cur := e.current()
	i := cur.findSubnet(q.subnet)
	if !s.writable(w, r, q, childETag(cur.etag, i), e.op, "PutSubnetOperation") {
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
	op := startNetOperation(s, key, e, "PutSubnetOperation", next.subnetID(name), next.location, visible, next, q.failLRO)
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
	cur := e.current()
	i := cur.findSubnet(q.subnet)
	if !s.childDeletable(w, r, q, cur.etag, i, e.op, "DeleteSubnetOperation") {
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
	op := startNetOperation(s, key, e, "DeleteSubnetOperation", e.state.subnetID(name), next.location, visible, next, q.failLRO)
	s.writeDeleteAccepted(w, r, q, op)
}

// ---- network interfaces ----

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
	if sn == nil || normaliseLocation(v.location) != normaliseLocation(n.location) {
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

// ---- flows through a network interface ----

// errUnknownNIC reports a flow through a network interface that does not
// exist.
var errUnknownNIC = errors.New("network interface not found")

// errorsIsUnknown reports whether a flow failed for a resource that does
// not exist.
func errorsIsUnknown(err error) bool {
	return errors.Is(err, errUnknownNIC) || errors.Is(err, errUnknownNSG)
}

// flowThroughNIC completes a flow that names a network interface instead of
// NSGs: the NIC's address (of the IP configuration holding the flow's local
// address, else the primary one) becomes the local end, and the path is the
// NSG of that configuration's subnet and the NIC's own NSG, in the order
// Azure evaluates them for the direction (inbound: subnet first; outbound:
// NIC first). NSGs that are not set are left out, so the path may be empty.
func (s *Server) flowThroughNIC(f Flow) (Flow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := parseARMPath(http.MethodGet, f.NetworkInterfaceID)
	if q.kind != "nic" || s.servedSubscription(q.sub) == "" {
		return f, fmt.Errorf("%q is not a network interface id: not in a subscription this server serves: %w", f.NetworkInterfaceID, errUnknownNIC)
	}
	e := settleNet(s, s.nics, nicKey(q.sub, q.rg, q.nic))
	if e == nil || e.state == nil {
		return f, fmt.Errorf("%s: %w", f.NetworkInterfaceID, errUnknownNIC)
	}
	n := e.state
	outbound := strings.EqualFold(f.Direction, "Outbound")
	local := &f.Destination
	if outbound {
		local = &f.Source
	}
	var chosen *ipConfigState
	if addr, err := netip.ParseAddr(*local); err == nil {
		for _, ic := range n.ipConfigs {
			if ic.address == addr.Unmap() {
				chosen = ic
			}
		}
	}
	if chosen == nil {
		for _, ic := range n.ipConfigs {
			if ic.primary {
				chosen = ic
			}
		}
	}
	if chosen == nil {
		return f, fmt.Errorf("network interface %s has no primary IP configuration", n.id)
	}
	if *local == "" {
		*local = chosen.address.String()
	}
	var subnetNSG string
	f.VirtualNetworkID = ""
	if v, sn := s.lookupSubnet(chosen.subnetID); sn != nil {
		subnetNSG = sn.nsgID
		f.VirtualNetworkID = v.id
	}
	path := []string{subnetNSG, n.nsgID}
	if outbound {
		path = []string{n.nsgID, subnetNSG}
	}
	f.NSGIDs = slices.DeleteFunc(path, func(id string) bool { return id == "" })
	return f, nil
}

// ipFlowVerifyBody is Network Watcher's VerificationIPFlowParameters.
type ipFlowVerifyBody struct {
	TargetResourceID    string `json:"targetResourceId"`
	TargetNICResourceID string `json:"targetNicResourceId"`
	Direction           string `json:"direction"`
	Protocol            string `json:"protocol"`
	LocalIPAddress      string `json:"localIPAddress"`
	LocalPort           string `json:"localPort"`
	RemoteIPAddress     string `json:"remoteIPAddress"`
	RemotePort          string `json:"remotePort"`
}

// serveIPFlowVerify answers Network Watcher's IP flow verify as a
// long-running operation whose result (access and deciding rule) is read
// from the Location URL. One call judges one flow through every layer: the
// security admin rules of the NIC's virtual network, then the subnet's and
// the NIC's NSGs (VerifyFlow). The watcher must exist and be in the
// target's region (watcher.go). The target is a VM (vm.go): its NIC
// targetNicResourceId, else its primary NIC; a NIC id as targetResourceId
// is accepted too.
func (s *Server) serveIPFlowVerify(w http.ResponseWriter, r *http.Request, q armRequest) {
	var body ipFlowVerifyBody
	if !readBody(w, r, &body) {
		return
	}
	invalid := func(msg string) {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestFormat", msg)
	}
	switch {
	case body.TargetResourceID == "":
		invalid("targetResourceId is required.")
		return
	case body.LocalIPAddress == "" || body.RemoteIPAddress == "" || body.LocalPort == "" || body.RemotePort == "":
		invalid("localIPAddress, localPort, remoteIPAddress and remotePort are required.")
		return
	}
	nic, location, status, aerr := s.ipFlowTargetNIC(body.TargetResourceID, body.TargetNICResourceID)
	if aerr == nil {
		s.mu.Lock()
		status, aerr = s.checkWatcherFor(q, location)
		s.mu.Unlock()
	}
	if aerr != nil {
		writeARMErrorBody(w, status, aerr)
		return
	}
	var proto string
	switch strings.ToUpper(body.Protocol) {
	case "TCP":
		proto = "Tcp"
	case "UDP":
		proto = "Udp"
	default:
		invalid(fmt.Sprintf("protocol '%s' is invalid: want TCP or UDP.", body.Protocol))
		return
	}
	localPort, errL := flowPort(body.LocalPort)
	remotePort, errR := flowPort(body.RemotePort)
	if errL != nil || errR != nil {
		invalid("localPort and remotePort must be a port number (0-65535) or '*'.")
		return
	}
	f := Flow{NetworkInterfaceID: nic, Protocol: proto}
	switch {
	case strings.EqualFold(body.Direction, "Inbound"):
		f.Direction, f.Source, f.SourcePort, f.Destination, f.DestinationPort = "Inbound", body.RemoteIPAddress, remotePort, body.LocalIPAddress, localPort
	case strings.EqualFold(body.Direction, "Outbound"):
		f.Direction, f.Source, f.SourcePort, f.Destination, f.DestinationPort = "Outbound", body.LocalIPAddress, localPort, body.RemoteIPAddress, remotePort
	default:
		invalid(fmt.Sprintf("direction '%s' is invalid: want Inbound or Outbound.", body.Direction))
		return
	}
	v, err := s.VerifyFlow(f)
	switch {
	case errorsIsUnknown(err):
		writeARMError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("Resource %s not found.", nic))
		return
	case err != nil:
		invalid(err.Error())
		return
	}
	result := map[string]any{"access": "Deny"}
	if v.Allowed {
		result["access"] = "Allow"
	}
	switch {
	case v.RuleName == "":
	case v.DecidedBy == DecidedByAdminRule:
		// Azure does not document how it names an admin rule here; this
		// is the simulator's choice, in the style of the NSG rule names.
		result["ruleName"] = "securityAdminRules/" + v.AdminRule.Name
	case v.Priority >= defaultRulePriority:
		result["ruleName"] = "defaultSecurityRules/" + v.RuleName
	default:
		result["ruleName"] = "securityRules/" + v.RuleName
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// The verdict is taken now; the operation only carries it to the
	// client, so it is done at once.
	s.writeDeleteAccepted(w, r, q, s.doneOperation("VerifyIPFlowOperation", nic, location, result))
}

// defaultRulePriority is the lowest priority of Azure's default rules.
const defaultRulePriority = 65000

func flowPort(p string) (int, error) {
	if p == "*" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q", p)
	}
	return n, nil
}

func orEmpty(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}
