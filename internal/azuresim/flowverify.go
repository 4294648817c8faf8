package azuresim

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Flows through a network interface (VerifyFlow's NetworkInterfaceID) and
// Network Watcher's IP flow verify, which judges one flow through the
// admin rules and the subnet's and the NIC's NSGs.

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
	nic, location, status, aerr := s.ipFlowTargetNIC(q.sub, body.TargetResourceID, body.TargetNICResourceID)
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
