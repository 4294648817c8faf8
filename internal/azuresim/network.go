package azuresim

import (
	"fmt"
	"net/http"
	"strings"
)

// This file routes the network a VM sits in, as far as JIT access needs it:
// virtual networks with subnets (vnet.go, subnet.go), network interfaces
// with IP configurations (nic.go), the NSG associations of both (nsg.go),
// network watchers (watcher.go) and IP flow verify (flowverify.go). Azure's
// consistency rules that keep those references valid are enforced (a
// referenced subnet or NSG must exist in the same region, a subnet in use or
// an NSG in use cannot be deleted, private addresses are unique and inside
// their subnet), so that clients meet the same errors as on Azure.

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

// invalidReference is Azure's answer to a reference to a resource that does
// not exist or lives in another region or subscription.
func invalidReference(ref, from string) *armError {
	return &armError{Code: "InvalidResourceReference", Message: fmt.Sprintf(
		"Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", ref, from)}
}
