package azuresim

// This file serves Microsoft Defender for Cloud's just-in-time VM access
// API (Microsoft.Security/locations/{location}/jitNetworkAccessPolicies,
// api-version 2020-01-01): list by subscription, by region, by resource
// group and by both; get, put, delete and POST …/{name}/initiate, with the
// documented shapes (JitNetworkAccessPolicy, …VirtualMachine, …PortRule,
// requests, …InitiateRequest). Like Defender it writes rules on the VMs'
// NSGs: a Deny rule per VM, port and NSG when a policy is put, and an Allow
// rule for the requested source ahead of that deny on initiate, removed
// when the request ends.
//
// What Microsoft documents, and the sim does:
//   - Enabling JIT makes Defender "ensure deny all inbound traffic rules
//     exist for your selected ports in the NSG"; "if other rules already
//     exist for the selected ports, then those existing rules take priority
//     over the new deny rules. If there are no existing rules on the
//     selected ports, then the new rules take top priority."
//   - An approved request inserts an Allow rule for the requester's
//     address (or the requested prefix), on the requested port, until the
//     request's endTimeUtc; then it is removed. Established connections are
//     not cut (the sim's connection model decides that, as for any rule).
//   - maxRequestAccessDuration is ISO 8601, at least 5 minutes, at most 1
//     day; allowedSourceAddressPrefix and …Prefixes are mutually exclusive.
//
// Where Defender's behaviour is undocumented, the sim's choices:
//   - Rule names are "SecurityCenter-JITRule_<n>_<HASH>", the shape seen on
//     NSGs Defender manages: <n> is a signed 32-bit FNV-1a hash of the
//     policy id, <HASH> 8 upper-case hex digits of a hash of the VM, port,
//     NSG and access (and, for allow rules, the request's start). Deny
//     descriptions read "ASC JIT Network Access rule for policy '<policy>'
//     of VM '<vm>'."; allow descriptions "ASC JIT Network Access rule
//     created by an initiation request for policy '<policy>' of VM '<vm>'."
//   - Rules go on every NSG on the VM's path: each NIC's own NSG and the NSG
//     of each NIC's subnet (the docs speak of "the NSG"; a subnet NSG alone
//     would otherwise leave the port open). A VM with no NSG on any NIC is
//     refused (400 VirtualMachineHasNoNetworkSecurityGroup), as the portal
//     refuses to enable JIT on it. The VM → NIC mapping is the VM's own
//     networkProfile.
//   - Priorities: a deny rule takes the first free priority after the last
//     existing rule that covers its port and protocol (so that rule keeps
//     winning, as documented); with none it takes the first free priority
//     from 1000 up ("top priority" for that port: no rule ahead of it
//     touches the port). An allow rule takes the first free priority from
//     100 up, which must be ahead of its deny. Defender renumbers other
//     rules when it runs out of room; the sim never renumbers a rule it did
//     not write and answers 409 NoFreePriority instead.
//   - The destination of every rule is the NIC's private addresses (one
//     rule per NIC and NSG), as Defender writes the VM's private IP.
//   - A policy with neither allowedSourceAddressPrefix nor …Prefixes on a
//     port allows any source ("*"), as the portal's default does.
//   - A PUT keeps the policy's requests (the body's requests are ignored,
//     as they are read-only in practice), except requests for VMs or ports
//     the new policy no longer has: their allow rules go with them. A
//     DELETE removes every rule of the policy. The seed file may carry
//     requests; those still running get their allow rules.
//   - Rules expire on the sim's clock (Options.Now) when anything next
//     reads an NSG; their status becomes Revoked with reason Expired.
//   - A request's end must be in the future and no further than the port's
//     maxRequestAccessDuration from now; its source must be within the
//     port's allowed sources ("*" allows any). With no source given, the
//     sim uses "*" (Defender uses the caller's address, which the sim does
//     not know); tests always give one.

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	jitPolicyType = "Microsoft.Security/locations/jitNetworkAccessPolicies"
	// DefenderRulePrefix starts the name of every rule Defender writes.
	DefenderRulePrefix = "SecurityCenter-JITRule"
	defenderDenyFrom   = 1000
)

// jitPolicyState is a Defender JIT policy as stored.
type jitPolicyState struct {
	id, sub, rg, location, name, kind string
	vms                               []jitPolicyVM
	requests                          []jitRequest
	// rules are the rules this policy wrote: NSG key → rule names.
	rules map[string][]string
}

type jitPolicyVM struct {
	ID              string        `json:"id"`
	Ports           []jitPortRule `json:"ports"`
	PublicIPAddress string        `json:"publicIpAddress,omitempty"`
}

type jitPortRule struct {
	Number                       int32    `json:"number"`
	Protocol                     string   `json:"protocol"`
	AllowedSourceAddressPrefix   string   `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string `json:"allowedSourceAddressPrefixes,omitempty"`
	MaxRequestAccessDuration     string   `json:"maxRequestAccessDuration"`
}

type jitRequest struct {
	VirtualMachines []jitRequestVM `json:"virtualMachines"`
	StartTimeUTC    time.Time      `json:"startTimeUtc"`
	Requestor       string         `json:"requestor"`
	Justification   string         `json:"justification,omitempty"`
}

type jitRequestVM struct {
	ID    string           `json:"id"`
	Ports []jitRequestPort `json:"ports"`
}

type jitRequestPort struct {
	Number                       int32     `json:"number"`
	AllowedSourceAddressPrefix   string    `json:"allowedSourceAddressPrefix,omitempty"`
	AllowedSourceAddressPrefixes []string  `json:"allowedSourceAddressPrefixes,omitempty"`
	EndTimeUTC                   time.Time `json:"endTimeUtc"`
	Status                       string    `json:"status"`
	StatusReason                 string    `json:"statusReason"`
	// rules are the allow rules of this port: NSG key → rule names.
	rules map[string][]string
}

func (p jitRequestPort) sources() []string {
	if p.AllowedSourceAddressPrefix != "" {
		return []string{p.AllowedSourceAddressPrefix}
	}
	return p.AllowedSourceAddressPrefixes
}

func (p jitPortRule) sources() []string {
	switch {
	case p.AllowedSourceAddressPrefix != "":
		return []string{p.AllowedSourceAddressPrefix}
	case len(p.AllowedSourceAddressPrefixes) > 0:
		return p.AllowedSourceAddressPrefixes
	}
	return []string{"*"}
}

func jitPolicyKey(sub, rg, location, name string) string {
	return scopeKey(sub, rg) + "/" + normaliseLocation(location) + "/" + strings.ToLower(name)
}

// parseSecurityPath classifies the Microsoft.Security paths this file
// serves; it reports false for any other path.
func parseSecurityPath(q *armRequest, seg, lower []string) bool {
	n := len(lower)
	is := func(i int, want string) bool { return i < n && lower[i] == want }
	switch {
	case n == 5 && is(2, "providers") && is(3, "microsoft.security") && is(4, "jitnetworkaccesspolicies"):
		q.kind = "jit-policy-list"
	case n == 7 && is(2, "providers") && is(3, "microsoft.security") && is(4, "locations") && is(6, "jitnetworkaccesspolicies"):
		q.kind, q.location = "jit-policy-list", seg[5]
	case n == 7 && is(2, "resourcegroups") && is(4, "providers") && is(5, "microsoft.security") && is(6, "jitnetworkaccesspolicies"):
		q.kind, q.rg = "jit-policy-list", seg[3]
	case n >= 9 && is(2, "resourcegroups") && is(4, "providers") && is(5, "microsoft.security") && is(6, "locations") && is(8, "jitnetworkaccesspolicies"):
		q.rg, q.location = seg[3], seg[7]
		switch {
		case n == 9:
			q.kind = "jit-policy-list"
		case n == 10:
			q.kind, q.jitPolicy = "jit-policy", seg[9]
		case n == 11 && is(10, "initiate"):
			q.kind, q.jitPolicy = "jit-policy-initiate", seg[9]
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// serveDefender answers the JIT policy requests; it reports false for any
// other kind.
func (s *Server) serveDefender(w http.ResponseWriter, r *http.Request, q armRequest) bool {
	switch {
	case q.kind == "jit-policy-list" && r.Method == http.MethodGet:
		s.writeList(w, r, func() ([]any, bool) {
			s.expireJITRequests()
			var items []any
			for _, p := range s.jitPolicyStates() {
				if strings.EqualFold(p.sub, q.sub) && (q.rg == "" || strings.EqualFold(p.rg, q.rg)) && (q.location == "" || normaliseLocation(q.location) == p.location) {
					items = append(items, s.jitPolicyJSON(p))
				}
			}
			return items, true
		})
	case q.kind == "jit-policy" && r.Method == http.MethodGet:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireJITRequests()
		p := s.jitPolicies[jitPolicyKey(q.sub, q.rg, q.location, q.jitPolicy)]
		if p == nil {
			notFoundResource(w, jitPolicyType, q.jitPolicy, q.rg)
			return true
		}
		writeJSON(w, http.StatusOK, s.jitPolicyJSON(p))
	case q.kind == "jit-policy" && r.Method == http.MethodPut:
		s.putJITPolicy(w, r, q)
	case q.kind == "jit-policy" && r.Method == http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		key := jitPolicyKey(q.sub, q.rg, q.location, q.jitPolicy)
		p := s.jitPolicies[key]
		if p == nil {
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		s.removeJITRules(p.rules)
		for _, rq := range p.requests {
			for _, vm := range rq.VirtualMachines {
				for _, port := range vm.Ports {
					s.removeJITRules(port.rules)
				}
			}
		}
		delete(s.jitPolicies, key)
		w.WriteHeader(http.StatusOK)
	case q.kind == "jit-policy-initiate" && r.Method == http.MethodPost:
		s.initiateJIT(w, r, q)
	case strings.HasPrefix(q.kind, "jit-policy"):
		w.Header().Set("Allow", "GET, PUT, DELETE, POST")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported at scope '%s'.", r.Method, r.URL.Path))
	default:
		return false
	}
	return true
}

// jitPolicyStates returns every policy sorted by id. Callers hold s.mu.
func (s *Server) jitPolicyStates() []*jitPolicyState {
	out := make([]*jitPolicyState, 0, len(s.jitPolicies))
	for _, p := range s.jitPolicies {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *jitPolicyState) int { return strings.Compare(strings.ToLower(a.id), strings.ToLower(b.id)) })
	return out
}

func (s *Server) jitPolicyJSON(p *jitPolicyState) map[string]any {
	reqs := make([]jitRequest, len(p.requests))
	copy(reqs, p.requests)
	doc := map[string]any{
		"id": p.id, "name": p.name, "type": jitPolicyType, "location": p.location,
		"properties": map[string]any{
			"virtualMachines":   p.vms,
			"requests":          reqs,
			"provisioningState": statusSucceeded,
		},
	}
	if p.kind != "" {
		doc["kind"] = p.kind
	}
	return doc
}

// jitPolicyBody is a PUT body.
type jitPolicyBody struct {
	Kind       string `json:"kind"`
	Properties *struct {
		VirtualMachines []jitPolicyVM `json:"virtualMachines"`
		Requests        []jitRequest  `json:"requests"`
	} `json:"properties"`
}

func (s *Server) putJITPolicy(w http.ResponseWriter, r *http.Request, q armRequest) {
	raw, ok := readRawBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireJITRequests()
	key := jitPolicyKey(q.sub, q.rg, q.location, q.jitPolicy)
	status, aerr := s.applyJITPolicy(q.sub, q.rg, q.location, q.jitPolicy, raw, false)
	if aerr != nil {
		writeARMErrorBody(w, status, aerr)
		return
	}
	// 200 on create too: Microsoft.Security answers this PUT with 200 only
	// (the SDK accepts nothing else).
	writeJSON(w, http.StatusOK, s.jitPolicyJSON(s.jitPolicies[key]))
}

// applyJITPolicy validates a policy body and makes it the policy, writing
// its rules. With seeded, the body's requests are taken as they are.
// Callers hold s.mu.
func (s *Server) applyJITPolicy(sub, rg, location, name string, raw []byte, seeded bool) (int, *armError) {
	var body jitPolicyBody
	if err := decodeJSON(raw, &body); err != nil {
		return http.StatusBadRequest, err
	}
	if body.Properties == nil || len(body.Properties.VirtualMachines) == 0 {
		return http.StatusBadRequest, &armError{Code: "InvalidInputJson", Target: "properties.virtualMachines", Message: "properties.virtualMachines is required."}
	}
	if !validName(name) {
		return http.StatusBadRequest, invalidNameError(name)
	}
	key := jitPolicyKey(sub, rg, location, name)
	cur := s.jitPolicies[key]
	next := &jitPolicyState{
		id:  resourceID(s.sub(sub), s.groupName(sub, rg), "Microsoft.Security/locations/"+normaliseLocation(location)+"/jitNetworkAccessPolicies", name),
		sub: s.sub(sub), rg: s.groupName(sub, rg), location: normaliseLocation(location), name: name, kind: body.Kind,
		vms:   body.Properties.VirtualMachines,
		rules: map[string][]string{},
	}
	for i := range next.vms {
		vm := &next.vms[i]
		if _, aerr := s.jitVMPaths(vm.ID, fmt.Sprintf("properties.virtualMachines[%d].id", i)); aerr != nil {
			return http.StatusBadRequest, aerr
		}
		if len(vm.Ports) == 0 {
			return http.StatusBadRequest, &armError{Code: "InvalidInputJson", Target: fmt.Sprintf("properties.virtualMachines[%d].ports", i), Message: "At least one port is required."}
		}
		seen := map[int32]bool{}
		for j := range vm.Ports {
			path := fmt.Sprintf("properties.virtualMachines[%d].ports[%d]", i, j)
			if aerr := checkJITPortRule(&vm.Ports[j], path); aerr != nil {
				return http.StatusBadRequest, aerr
			}
			if seen[vm.Ports[j].Number] {
				return http.StatusBadRequest, &armError{Code: "InvalidInputJson", Target: path, Message: fmt.Sprintf("Port %d is listed twice for virtual machine %s.", vm.Ports[j].Number, vm.ID)}
			}
			seen[vm.Ports[j].Number] = true
		}
	}
	// Keep the running requests the new policy still covers; drop the rest
	// with their allow rules.
	var requests []jitRequest
	switch {
	case seeded:
		requests = body.Properties.Requests
	case cur != nil:
		requests = cur.requests
	}
	if cur != nil {
		s.removeJITRules(cur.rules)
	}
	var kept []jitRequest
	for _, rq := range requests {
		for vi := range rq.VirtualMachines {
			vm := &rq.VirtualMachines[vi]
			for pi := range vm.Ports {
				port := &vm.Ports[pi]
				if port.Status != "Initiated" && port.Status != "" {
					continue
				}
				if !next.covers(vm.ID, port.Number) && !seeded {
					s.removeJITRules(port.rules)
					port.rules = nil
					port.Status, port.StatusReason = "Revoked", "UserRequested"
				}
			}
		}
		kept = append(kept, rq)
	}
	next.requests = kept
	// Deny rules first, then the allow rules ahead of them.
	for _, vm := range next.vms {
		for _, port := range vm.Ports {
			if aerr := s.writeJITRules(next, vm.ID, port.Number, port.Protocol, []string{"*"}, "Deny", next.rules, time.Time{}); aerr != nil {
				s.removeJITRules(next.rules)
				return http.StatusConflict, aerr
			}
		}
	}
	now := s.now()
	for ri := range next.requests {
		rq := &next.requests[ri]
		for vi := range rq.VirtualMachines {
			vm := &rq.VirtualMachines[vi]
			for pi := range vm.Ports {
				port := &vm.Ports[pi]
				if port.Status == "" {
					port.Status, port.StatusReason = "Initiated", "UserRequested"
				}
				if port.Status != "Initiated" || port.rules != nil {
					continue
				}
				if !port.EndTimeUTC.After(now) {
					port.Status, port.StatusReason = "Revoked", "Expired"
					continue
				}
				rule, _ := next.portRule(vm.ID, port.Number)
				port.rules = map[string][]string{}
				if aerr := s.writeJITRules(next, vm.ID, port.Number, rule.Protocol, port.sources(), "Allow", port.rules, rq.StartTimeUTC); aerr != nil {
					s.removeJITRules(port.rules)
					s.removeJITRules(next.rules)
					return http.StatusConflict, aerr
				}
			}
		}
	}
	if s.jitPolicies == nil {
		s.jitPolicies = map[string]*jitPolicyState{}
	}
	s.jitPolicies[key] = next
	s.ensureGroup(next.sub, next.rg, next.location)
	return 0, nil
}

func (p *jitPolicyState) portRule(vmID string, number int32) (jitPortRule, bool) {
	for _, vm := range p.vms {
		if strings.EqualFold(vm.ID, vmID) {
			for _, port := range vm.Ports {
				if port.Number == number {
					return port, true
				}
			}
		}
	}
	return jitPortRule{}, false
}

func (p *jitPolicyState) covers(vmID string, number int32) bool {
	_, ok := p.portRule(vmID, number)
	return ok
}

var iso8601Duration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// ParseISODuration parses the ISO 8601 durations Defender uses for
// maxRequestAccessDuration ("PT3H", "PT30M", "P1D").
func ParseISODuration(s string) (time.Duration, bool) {
	m := iso8601Duration.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, false
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil {
				return 0, false
			}
			d += time.Duration(n) * unit
		}
	}
	return d, true
}

func checkJITPortRule(p *jitPortRule, path string) *armError {
	bad := func(field, msg string) *armError {
		return &armError{Code: "InvalidInputJson", Target: path + field, Message: msg}
	}
	if p.Number < 1 || p.Number > 65535 {
		return bad(".number", fmt.Sprintf("Port number %d is outside 1-65535.", p.Number))
	}
	switch p.Protocol {
	case "TCP", "UDP", "*":
	default:
		return bad(".protocol", fmt.Sprintf("Protocol '%s' is not one of TCP, UDP, *.", p.Protocol))
	}
	d, ok := ParseISODuration(p.MaxRequestAccessDuration)
	if !ok || d < 5*time.Minute || d > 24*time.Hour {
		return bad(".maxRequestAccessDuration", fmt.Sprintf("maxRequestAccessDuration '%s' must be an ISO 8601 duration between PT5M and PT24H.", p.MaxRequestAccessDuration))
	}
	if p.AllowedSourceAddressPrefix != "" && len(p.AllowedSourceAddressPrefixes) > 0 {
		return bad("", "allowedSourceAddressPrefix and allowedSourceAddressPrefixes are mutually exclusive.")
	}
	for _, src := range p.sources() {
		if src == "*" {
			continue
		}
		if _, err := netip.ParsePrefix(src); err != nil {
			if _, err := netip.ParseAddr(src); err != nil && !serviceTagLike(src) {
				return bad(".allowedSourceAddressPrefix", fmt.Sprintf("'%s' is not an IP address, CIDR, service tag or '*'.", src))
			}
		}
	}
	return nil
}

var serviceTagShape = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)?$`)

func serviceTagLike(s string) bool { return serviceTagShape.MatchString(s) }

// jitPath is one NIC of a VM with the NSGs on its path.
type jitPath struct {
	nicID     string
	addresses []string
	nsgKeys   []string // subnet NSGs, then the NIC's NSG
}

// jitVMPaths resolves a VM to its NICs and their NSGs. Callers hold s.mu.
func (s *Server) jitVMPaths(vmID, target string) ([]jitPath, *armError) {
	q := parseARMPath(http.MethodGet, vmID)
	var v *vmState
	if q.kind == "vm" && s.servedSubscription(q.sub) != "" {
		v = s.vms[vmKey(q.sub, q.rg, q.vm)]
	}
	if v == nil {
		return nil, &armError{Code: "VirtualMachineNotFound", Target: target, Message: fmt.Sprintf("Virtual machine %s was not found.", vmID)}
	}
	var out []jitPath
	nsgs := 0
	for _, vn := range v.nics {
		nq := parseARMPath(http.MethodGet, vn.id)
		e := settleNet(s, s.nics, nicKey(nq.sub, nq.rg, nq.nic))
		if e == nil || e.state == nil {
			continue
		}
		n := e.state
		p := jitPath{nicID: n.id}
		for _, ic := range n.ipConfigs {
			p.addresses = append(p.addresses, ic.address.String())
			if _, sn := s.lookupSubnet(ic.subnetID); sn != nil && sn.nsgID != "" {
				sq := parseARMPath(http.MethodGet, sn.nsgID)
				if k := nsgKey(sq.sub, sq.rg, sq.nsg); !slices.Contains(p.nsgKeys, k) {
					p.nsgKeys = append(p.nsgKeys, k)
				}
			}
		}
		if n.nsgID != "" {
			nq := parseARMPath(http.MethodGet, n.nsgID)
			if k := nsgKey(nq.sub, nq.rg, nq.nsg); !slices.Contains(p.nsgKeys, k) {
				p.nsgKeys = append(p.nsgKeys, k)
			}
		}
		nsgs += len(p.nsgKeys)
		out = append(out, p)
	}
	if nsgs == 0 {
		return nil, &armError{Code: "VirtualMachineHasNoNetworkSecurityGroup", Target: target, Message: fmt.Sprintf(
			"Virtual machine %s has no network security group on its network interfaces or their subnets; just-in-time access needs one.", vmID)}
	}
	return out, nil
}

func jitProtocol(p string) string {
	switch p {
	case "TCP":
		return "Tcp"
	case "UDP":
		return "Udp"
	}
	return "*"
}

// defenderRuleName is the name of a rule Defender writes (see the top of
// this file).
func defenderRuleName(policyID, salt string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(strings.ToLower(policyID)))
	g := fnv.New32a()
	_, _ = g.Write([]byte(strings.ToLower(salt)))
	return fmt.Sprintf("%s_%d_%08X", DefenderRulePrefix, int32(h.Sum32()), g.Sum32()) //nolint:gosec // the sign is part of the name's shape
}

// writeJITRules writes the deny (or allow) rules of one VM port on every
// NSG of the VM's path, recording their names in into. Callers hold s.mu.
func (s *Server) writeJITRules(p *jitPolicyState, vmID string, number int32, protocol string, sources []string, access string, into map[string][]string, start time.Time) *armError {
	paths, aerr := s.jitVMPaths(vmID, "")
	if aerr != nil {
		return aerr
	}
	vmName := vmID[strings.LastIndex(vmID, "/")+1:]
	desc := fmt.Sprintf("ASC JIT Network Access rule for policy '%s' of VM '%s'.", p.name, vmName)
	if access == "Allow" {
		desc = fmt.Sprintf("ASC JIT Network Access rule created by an initiation request for policy '%s' of VM '%s'.", p.name, vmName)
	}
	for _, path := range paths {
		for _, key := range path.nsgKeys {
			e := s.entry(key)
			if e == nil {
				continue
			}
			salt := fmt.Sprintf("%s|%d|%s|%s|%s", vmID, number, key, access, path.nicID)
			if access == "Allow" {
				salt += "|" + start.UTC().Format(time.RFC3339Nano)
			}
			name := defenderRuleName(p.id, salt)
			st := e.state
			if len(e.writes) > 0 && e.writes[0].next != nil {
				st = e.writes[0].next
			}
			var prio int32
			var ok bool
			if access == "Deny" {
				prio, ok = denyPriority(st, number, protocol)
			} else {
				deny := defenderDenyOf(st, p, vmID, number, key, path.nicID)
				prio, ok = firstFreePriority(st, 100, deny-1)
			}
			if !ok {
				return &armError{Code: "NoFreePriority", Message: fmt.Sprintf("Network security group %s has no free priority for the %s rule of port %d of virtual machine %s.", st.id, strings.ToLower(access), number, vmID)}
			}
			props := ruleProperties{
				Description: desc, Protocol: jitProtocol(protocol), SourcePortRange: "*", DestinationPortRange: strconv.Itoa(int(number)),
				Access: access, Priority: &prio, Direction: "Inbound",
			}
			if len(sources) == 1 {
				props.SourceAddressPrefix = sources[0]
			} else {
				props.SourceAddressPrefixes = slices.Clone(sources)
			}
			if len(path.addresses) == 1 {
				props.DestinationAddressPrefix = path.addresses[0]
			} else {
				props.DestinationAddressPrefixes = slices.Clone(path.addresses)
			}
			s.editNSG(e, func(st *nsgState) {
				if i := st.findRule(name); i >= 0 {
					st.rules = slices.Delete(st.rules, i, i+1)
				}
				pr := props.clone()
				pr.ProvisioningState = st.provisioningState
				st.rules = append(st.rules, &ruleEntry{name: name, props: pr})
			})
			into[key] = append(into[key], name)
		}
	}
	return nil
}

// defenderDenyOf is the priority of the deny rule the policy wrote for a
// VM port on an NSG; 4097 when there is none.
func defenderDenyOf(st *nsgState, p *jitPolicyState, vmID string, number int32, key, nicID string) int32 {
	name := defenderRuleName(p.id, fmt.Sprintf("%s|%d|%s|%s|%s", vmID, number, key, "Deny", nicID))
	if i := st.findRule(name); i >= 0 && st.rules[i].props.Priority != nil {
		return *st.rules[i].props.Priority
	}
	return 4097
}

// denyPriority chooses a deny rule's priority (see the top of this file).
func denyPriority(st *nsgState, number int32, protocol string) (int32, bool) {
	var last int32
	for _, r := range st.rules {
		if strings.HasPrefix(r.name, DefenderRulePrefix) || !strings.EqualFold(r.props.Direction, "Inbound") || r.props.Priority == nil {
			continue
		}
		rule := toNSGRule(r.name, &r.props)
		if !protocolsOverlap(rule.Protocol, jitProtocol(protocol)) {
			continue
		}
		covers := false
		for _, pr := range rule.DestinationPorts {
			if portInRange(pr, int(number)) {
				covers = true
			}
		}
		if covers && *r.props.Priority > last {
			last = *r.props.Priority
		}
	}
	if last > 0 {
		return firstFreePriority(st, last+1, 4096)
	}
	return firstFreePriority(st, defenderDenyFrom, 4096)
}

func protocolsOverlap(a, b string) bool {
	return a == "*" || b == "*" || strings.EqualFold(a, b)
}

func portInRange(r string, port int) bool {
	if r == "*" {
		return true
	}
	lo, hi, found := strings.Cut(r, "-")
	l, err := strconv.Atoi(lo)
	if err != nil {
		return false
	}
	h := l
	if found {
		if h, err = strconv.Atoi(hi); err != nil {
			return false
		}
	}
	return port >= l && port <= h
}

// firstFreePriority is the first inbound priority in [from, to] no rule has.
func firstFreePriority(st *nsgState, from, to int32) (int32, bool) {
	used := map[int32]bool{}
	for _, r := range st.rules {
		if r.props.Priority != nil && strings.EqualFold(r.props.Direction, "Inbound") {
			used[*r.props.Priority] = true
		}
	}
	for p := max(from, 100); p <= min(to, 4096); p++ {
		if !used[p] {
			return p, true
		}
	}
	return 0, false
}

// editNSG applies a Defender change to an NSG: to its committed state and,
// when a write is running, to what that write shows and will commit, so the
// change is neither hidden nor undone by it. Each gets a new ETag, as any
// change does. Callers hold s.mu.
func (s *Server) editNSG(e *nsgEntry, edit func(*nsgState)) {
	apply := func(st *nsgState) *nsgState {
		if st == nil {
			return nil
		}
		c := st.clone()
		edit(c)
		c.etag = newETag()
		return c
	}
	e.state = apply(e.state)
	if len(e.writes) > 0 {
		w := &e.writes[0]
		w.visible = apply(w.visible)
		w.next = apply(w.next)
	}
}

// removeJITRules deletes the named rules from their NSGs. Callers hold s.mu.
func (s *Server) removeJITRules(rules map[string][]string) {
	for key, names := range rules {
		e := s.nsgs[key]
		if e == nil {
			continue
		}
		s.editNSG(e, func(st *nsgState) {
			st.rules = slices.DeleteFunc(st.rules, func(r *ruleEntry) bool {
				return slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, r.name) })
			})
		})
	}
}

// expireJITRequests ends the requests whose time is up and removes their
// allow rules. Callers hold s.mu.
func (s *Server) expireJITRequests() {
	if len(s.jitPolicies) == 0 {
		return
	}
	now := s.now()
	for _, p := range s.jitPolicies {
		for ri := range p.requests {
			for vi := range p.requests[ri].VirtualMachines {
				vm := &p.requests[ri].VirtualMachines[vi]
				for pi := range vm.Ports {
					port := &vm.Ports[pi]
					if port.Status == "Initiated" && !port.EndTimeUTC.After(now) {
						s.removeJITRules(port.rules)
						port.rules = nil
						port.Status, port.StatusReason = "Revoked", "Expired"
					}
				}
			}
		}
	}
}

// jitInitiateBody is JitNetworkAccessPolicyInitiateRequest.
type jitInitiateBody struct {
	VirtualMachines []jitRequestVM `json:"virtualMachines"`
	Justification   string         `json:"justification"`
}

func (s *Server) initiateJIT(w http.ResponseWriter, r *http.Request, q armRequest) {
	var body jitInitiateBody
	if !readBody(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireJITRequests()
	p := s.jitPolicies[jitPolicyKey(q.sub, q.rg, q.location, q.jitPolicy)]
	if p == nil {
		notFoundResource(w, jitPolicyType, q.jitPolicy, q.rg)
		return
	}
	now := s.now()
	if len(body.VirtualMachines) == 0 {
		writeARMError(w, http.StatusBadRequest, "InvalidInputJson", "virtualMachines is required.")
		return
	}
	for i := range body.VirtualMachines {
		vm := &body.VirtualMachines[i]
		for j := range vm.Ports {
			port := &vm.Ports[j]
			rule, ok := p.portRule(vm.ID, port.Number)
			if !ok {
				writeARMError(w, http.StatusBadRequest, "JitPortNotInPolicy", fmt.Sprintf("Port %d of virtual machine %s is not in policy %s.", port.Number, vm.ID, p.name))
				return
			}
			maxD, _ := ParseISODuration(rule.MaxRequestAccessDuration)
			if !port.EndTimeUTC.After(now) || port.EndTimeUTC.After(now.Add(maxD)) {
				writeARMError(w, http.StatusBadRequest, "InvalidEndTime", fmt.Sprintf("endTimeUtc %s of port %d must be in the future and within %s of now.", port.EndTimeUTC.UTC().Format(time.RFC3339), port.Number, rule.MaxRequestAccessDuration))
				return
			}
			if len(port.sources()) == 0 {
				port.AllowedSourceAddressPrefix = "*"
			}
			if !sourcesWithin(port.sources(), rule.sources()) {
				writeARMError(w, http.StatusBadRequest, "JitSourceNotAllowed", fmt.Sprintf("Source %s is not allowed by the policy for port %d.", strings.Join(port.sources(), ","), port.Number))
				return
			}
		}
	}
	rq := jitRequest{VirtualMachines: body.VirtualMachines, StartTimeUTC: now.UTC(), Requestor: "local-azure-client", Justification: body.Justification}
	// A newer request for the same VM port replaces the older one.
	for ri := range p.requests {
		for vi := range p.requests[ri].VirtualMachines {
			old := &p.requests[ri].VirtualMachines[vi]
			for pi := range old.Ports {
				op := &old.Ports[pi]
				if op.Status == "Initiated" && requestHas(rq, old.ID, op.Number) {
					s.removeJITRules(op.rules)
					op.rules = nil
					op.Status, op.StatusReason = "Revoked", "NewerRequestInitiated"
				}
			}
		}
	}
	for vi := range rq.VirtualMachines {
		vm := &rq.VirtualMachines[vi]
		for pi := range vm.Ports {
			port := &vm.Ports[pi]
			port.Status, port.StatusReason = "Initiated", "UserRequested"
			rule, _ := p.portRule(vm.ID, port.Number)
			port.rules = map[string][]string{}
			if aerr := s.writeJITRules(p, vm.ID, port.Number, rule.Protocol, port.sources(), "Allow", port.rules, rq.StartTimeUTC); aerr != nil {
				writeARMErrorBody(w, http.StatusConflict, aerr)
				return
			}
		}
	}
	p.requests = append(p.requests, rq)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"virtualMachines": rq.VirtualMachines, "startTimeUtc": rq.StartTimeUTC, "requestor": rq.Requestor, "justification": rq.Justification,
	})
}

func requestHas(rq jitRequest, vmID string, number int32) bool {
	for _, vm := range rq.VirtualMachines {
		if strings.EqualFold(vm.ID, vmID) {
			for _, p := range vm.Ports {
				if p.Number == number {
					return true
				}
			}
		}
	}
	return false
}

// sourcesWithin reports whether every requested source lies inside one of
// the allowed ones ("*" allows any; service tags only match themselves).
func sourcesWithin(requested, allowed []string) bool {
	if slices.Contains(allowed, "*") {
		return true
	}
	for _, r := range requested {
		rp, ok := parsePrefixOrAddr(r)
		inside := false
		for _, a := range allowed {
			if strings.EqualFold(a, r) {
				inside = true
				break
			}
			ap, aok := parsePrefixOrAddr(a)
			if ok && aok && ap.Bits() <= rp.Bits() && ap.Contains(rp.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return false
		}
	}
	return true
}

func parsePrefixOrAddr(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// seedJITPolicies loads the seed file's Defender policies (with their
// requests) after its VMs. Callers hold s.mu.
func (s *Server) seedJITPolicies(raws []json.RawMessage) error {
	for i, raw := range raws {
		var head seedHead
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("JIT network access policy %d: %w", i, err)
		}
		var q armRequest
		seg := strings.Split(strings.Trim(head.ID, "/"), "/")
		lower := make([]string, len(seg))
		for j, v := range seg {
			lower[j] = strings.ToLower(v)
		}
		if len(seg) < 2 || lower[0] != "subscriptions" || !parseSecurityPath(&q, seg, lower) || q.kind != "jit-policy" {
			return fmt.Errorf("JIT network access policy %d: id %q is not a JIT network access policy id", i, head.ID)
		}
		if s.servedSubscription(seg[1]) == "" {
			return fmt.Errorf("JIT network access policy %s is not in a subscription this server serves", head.ID)
		}
		if _, aerr := s.applyJITPolicy(seg[1], q.rg, q.location, q.jitPolicy, raw, true); aerr != nil {
			return fmt.Errorf("JIT network access policy %s: %w", head.ID, aerr)
		}
	}
	return nil
}
