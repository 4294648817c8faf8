package azuresim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// This file models the least of Microsoft.Compute/virtualMachines that
// Network Watcher needs: which network interfaces a VM has and which is
// primary, so that IP flow verify can go from its targetResourceId (a VM)
// to the NIC, its subnet and their NSGs. There are no disks, sizes or power
// states: whatever else a client sends is kept verbatim. Writes complete at
// once (200/201 with provisioningState Succeeded, which ARM clients accept
// as a finished long-running operation), and Azure's rules about network
// interfaces are enforced: at least one, each existing in the VM's region
// and attached to no other VM, exactly one primary when there are several,
// and a NIC in use by a VM cannot be deleted.

const vmType = "Microsoft.Compute/virtualMachines"

func vmKey(sub, rg, name string) string { return "vm:" + nsgKey(sub, rg, name) }

// vmState is a virtual machine as stored.
type vmState struct {
	resourceMeta
	top, props map[string]json.RawMessage
	netProfile map[string]json.RawMessage // networkProfile members other than networkInterfaces
	nics       []vmNIC
}

type vmNIC struct {
	id      string // canonical NIC id
	primary bool
}

// vmBody is the modelled part of a VM PUT body.
type vmBody struct {
	Name       string `json:"name"`
	Location   string `json:"location"`
	Properties *struct {
		NetworkProfile *struct {
			NetworkInterfaces []struct {
				ID         string `json:"id"`
				Properties *struct {
					Primary *bool `json:"primary"`
				} `json:"properties"`
			} `json:"networkInterfaces"`
		} `json:"networkProfile"`
	} `json:"properties"`
}

func (v *vmState) clone() *vmState {
	c := *v
	c.top, c.props, c.netProfile = cloneRaw(v.top), cloneRaw(v.props), cloneRaw(v.netProfile)
	c.nics = slices.Clone(v.nics)
	return &c
}

// withProvisioningState only satisfies netResource: a VM is always
// Succeeded, as its writes complete at once.
func (v *vmState) withProvisioningState(string) *vmState { return v }

var vmPropsComputed = map[string]bool{"networkProfile": true, "provisioningState": true, "vmId": true}

func vmID(sub, rg, name string) string {
	return resourceID(sub, rg, "Microsoft.Compute/virtualMachines", name)
}

// serveCompute answers the virtual machine requests; it reports false for
// any other kind.
func (s *Server) serveCompute(w http.ResponseWriter, r *http.Request, q armRequest) bool {
	switch {
	case q.kind == "vm" && r.Method == http.MethodGet:
		s.getVM(w, q)
	case q.kind == "vm" && r.Method == http.MethodPut:
		s.putVM(w, r, q)
	case q.kind == "vm" && r.Method == http.MethodDelete:
		s.deleteVM(w, r, q)
	case q.kind == "vm-list" && r.Method == http.MethodGet:
		s.writeList(w, r, func() ([]any, bool) {
			var items []any
			for _, v := range s.vmStates() {
				if strings.EqualFold(v.sub, q.sub) && strings.EqualFold(v.rg, q.rg) {
					items = append(items, s.vmJSON(v))
				}
			}
			return items, true
		})
	case q.kind == "vm" || q.kind == "vm-list":
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported at scope '%s'.", r.Method, r.URL.Path))
	default:
		return false
	}
	return true
}

// vmStates returns every VM sorted by id. Callers hold s.mu.
func (s *Server) vmStates() []*vmState {
	out := make([]*vmState, 0, len(s.vms))
	for _, v := range s.vms {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *vmState) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return out
}

func (s *Server) getVM(w http.ResponseWriter, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[vmKey(q.sub, q.rg, q.vm)]
	if v == nil {
		notFoundResource(w, vmType, q.vm, q.rg)
		return
	}
	writeWithETag(w, v.etag, s.vmJSON(v))
}

func (s *Server) putVM(w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.vms[vmKey(q.sub, q.rg, q.vm)]
	etag := ""
	if cur != nil {
		etag = cur.etag
	}
	if !checkPreconditions(w, r, etag) {
		return
	}
	next, aerr := s.newVMState(q.sub, q.rg, q.vm, raw, cur)
	if aerr != nil {
		writeARMErrorBody(w, http.StatusBadRequest, aerr)
		return
	}
	if s.vms == nil {
		s.vms = map[string]*vmState{}
	}
	s.vms[vmKey(q.sub, q.rg, q.vm)] = next
	s.ensureGroup(next.sub, next.rg, next.location)
	w.Header().Set("ETag", next.etag)
	writeJSON(w, putStatus(cur == nil), s.vmJSON(next))
}

func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request, q armRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vms[vmKey(q.sub, q.rg, q.vm)]
	if v == nil {
		writeDeleteAbsent(w, r)
		return
	}
	if !checkPreconditions(w, r, v.etag) {
		return
	}
	delete(s.vms, vmKey(q.sub, q.rg, q.vm))
	w.WriteHeader(http.StatusOK)
}

// newVMState builds and validates the state a VM PUT body describes,
// replacing cur (nil on create). Callers hold s.mu.
func (s *Server) newVMState(sub, rg, name string, raw []byte, cur *vmState) (*vmState, *armError) {
	var body vmBody
	if err := decodeJSON(raw, &body); err != nil {
		return nil, err
	}
	meta, top, props, aerr := newResourceMeta(s, sub, rg, name, raw, body.Name, body.Location, cur, vmID)
	if aerr != nil {
		return nil, aerr
	}
	next := &vmState{resourceMeta: meta, top: top, props: keepUnmodelled(props, vmPropsComputed), netProfile: map[string]json.RawMessage{}}
	if np, ok := props["networkProfile"]; ok {
		var m map[string]json.RawMessage
		if err := decodeJSON(np, &m); err != nil {
			return nil, err
		}
		delete(m, "networkInterfaces")
		next.netProfile = m
	}
	if body.Properties == nil || body.Properties.NetworkProfile == nil || len(body.Properties.NetworkProfile.NetworkInterfaces) == 0 {
		return nil, &armError{Code: "InvalidParameter", Target: "networkProfile",
			Message: "Required parameter 'networkProfile.networkInterfaces' is missing (null)."}
	}
	primaries := 0
	for _, ref := range body.Properties.NetworkProfile.NetworkInterfaces {
		nq := parseARMPath(http.MethodGet, ref.ID)
		var nic *nicState
		if nq.kind == "nic" && s.servedSubscription(nq.sub) != "" {
			if e := settleNet(s, s.nics, nicKey(nq.sub, nq.rg, nq.nic)); e != nil {
				nic = e.state
			}
		}
		if nic == nil || normaliseLocation(nic.location) != normaliseLocation(next.location) || !strings.EqualFold(nic.sub, next.sub) {
			return nil, invalidReference(ref.ID, next.id)
		}
		if slices.ContainsFunc(next.nics, func(n vmNIC) bool { return strings.EqualFold(n.id, nic.id) }) {
			return nil, &armError{Code: "InvalidParameter", Target: "networkProfile.networkInterfaces",
				Message: fmt.Sprintf("Network interface %s is referenced more than once by virtual machine %s.", nic.id, next.id)}
		}
		if user := s.vmUsing(nic.id); user != nil && !strings.EqualFold(user.id, next.id) {
			return nil, nicInUse(nic.id, user.id)
		}
		primary := ref.Properties != nil && ref.Properties.Primary != nil && *ref.Properties.Primary
		if primary {
			primaries++
		}
		next.nics = append(next.nics, vmNIC{id: nic.id, primary: primary})
	}
	switch {
	case len(next.nics) == 1:
		next.nics[0].primary = true
	case primaries != 1:
		// Azure's wording; the code is a best reading of its answer.
		return nil, &armError{Code: "VirtualMachineMustHaveOnePrimaryNetworkInterface", Target: "networkProfile.networkInterfaces",
			Message: fmt.Sprintf("Virtual machine %s must have one network interface set as the primary.", next.name)}
	}
	next.etag = newETag()
	return next, nil
}

func nicInUse(nicID, userID string) *armError {
	return &armError{Code: "NicInUse", Message: fmt.Sprintf(
		"Network Interface %s is used by existing resource %s. In order to use or delete this network interface, it must be detached from that resource.", nicID, userID)}
}

// vmUsing returns the VM that has the network interface nicID, or nil.
// Callers hold s.mu.
func (s *Server) vmUsing(nicID string) *vmState {
	for _, v := range s.vmStates() {
		for _, n := range v.nics {
			if strings.EqualFold(n.id, nicID) {
				return v
			}
		}
	}
	return nil
}

// nicInUse refuses deleting a network interface a VM has. Callers hold s.mu.
func (s *Server) nicInUse(n *nicState) *armError {
	if v := s.vmUsing(n.id); v != nil {
		return nicInUse(n.id, v.id)
	}
	return nil
}

// addVMReference sets a network interface's read-only back-reference to
// the VM that has it (properties.virtualMachine), as Azure returns it: the
// way from a NIC (and so from an NSG) to the VM that IP flow verify
// targets. A NIC no VM has has none. Callers hold s.mu.
func (s *Server) addVMReference(props map[string]any, nicID string) {
	if v := s.vmUsing(nicID); v != nil {
		props["virtualMachine"] = resourceRef{ID: v.id}
	}
}

// vmJSON renders a VM as ARM does, as far as it is modelled.
func (s *Server) vmJSON(v *vmState) map[string]any {
	nics := make([]any, len(v.nics))
	for i, n := range v.nics {
		nics[i] = map[string]any{"id": n.id, "properties": map[string]any{"primary": n.primary}}
	}
	np := make(map[string]any, len(v.netProfile)+1)
	for k, val := range v.netProfile {
		np[k] = val
	}
	np["networkInterfaces"] = nics
	props := make(map[string]any, len(v.props)+3)
	for k, val := range v.props {
		props[k] = val
	}
	props["networkProfile"] = np
	props["provisioningState"] = statusSucceeded
	props["vmId"] = v.guid
	doc := make(map[string]any, len(v.top)+6)
	for k, val := range v.top {
		doc[k] = val
	}
	doc["name"], doc["id"], doc["type"], doc["location"], doc["properties"] = v.name, v.id, vmType, v.location, props
	return doc
}

// ipFlowTargetNIC resolves IP flow verify's target: a VM (its NIC
// targetNicResourceId, which must be one of the VM's, else its primary NIC)
// or, as a shortcut this simulator allows, a network interface, in the
// watcher's subscription sub. It returns the NIC's id and location, or the
// status and error to answer.
func (s *Server) ipFlowTargetNIC(sub, targetID, nicID string) (nic, location string, status int, aerr *armError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	invalid := func(msg string) (string, string, int, *armError) {
		return "", "", http.StatusBadRequest, &armError{Code: "InvalidTargetResource", Message: msg}
	}
	q := parseARMPath(http.MethodGet, targetID)
	if !strings.EqualFold(q.sub, sub) && (q.kind == "vm" || q.kind == "nic") {
		return invalid(fmt.Sprintf("Target resource %s is not in subscription %s.", targetID, sub))
	}
	switch q.kind {
	case "vm":
		v := s.vms[vmKey(q.sub, q.rg, q.vm)]
		if v == nil {
			return "", "", http.StatusNotFound, &armError{Code: "NotFound", Message: fmt.Sprintf("Resource %s not found.", targetID)}
		}
		for _, n := range v.nics {
			if (nicID == "" && n.primary) || (nicID != "" && strings.EqualFold(n.id, nicID)) {
				nic = n.id
			}
		}
		if nic == "" {
			return invalid(fmt.Sprintf("Network interface %s is not attached to virtual machine %s.", nicID, v.id))
		}
	case "nic":
		if nicID != "" && !strings.EqualFold(nicID, targetID) {
			return invalid(fmt.Sprintf("targetNicResourceId %s does not match the target network interface %s.", nicID, targetID))
		}
		nic = targetID
	default:
		return invalid(fmt.Sprintf("Target resource %s is not a virtual machine.", targetID))
	}
	nq := parseARMPath(http.MethodGet, nic)
	e := settleNet(s, s.nics, nicKey(nq.sub, nq.rg, nq.nic))
	if e == nil || e.state == nil {
		return "", "", http.StatusNotFound, &armError{Code: "NotFound", Message: fmt.Sprintf("Resource %s not found.", nic)}
	}
	return e.state.id, e.state.location, 0, nil
}
