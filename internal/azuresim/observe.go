package azuresim

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Counters is a snapshot of the server's request counters.
type Counters struct {
	// Requests counts requests by "METHOD kind", e.g. "PUT rule",
	// "GET operation", "POST token".
	Requests map[string]int64 `json:"requests"`
	// Responses counts answers by "METHOD kind STATUS", e.g. "PUT rule 201";
	// status 0 is a connection reset.
	Responses map[string]int64 `json:"responses"`
	// ByStatus counts answers by status code.
	ByStatus map[int]int64 `json:"byStatus"`
	// Throttled counts writes refused by the subscription write limit.
	Throttled int64 `json:"throttled"`
	// Busy counts writes refused because their NSG was busy: under
	// BusyRefuse every write to a busy NSG, under BusyQueue those that
	// found the queue full (QueueFull).
	Busy int64 `json:"busy"`
	// Queued counts writes accepted into a busy NSG's queue (BusyQueue),
	// QueueFull those refused because the queue held WriteQueue writes.
	Queued    int64 `json:"queued"`
	QueueFull int64 `json:"queueFull"`
	// Faults counts injected faults by kind (see the Fault* constants).
	Faults map[string]int64 `json:"faults"`
	// FaultsInjected is the sum of Faults.
	FaultsInjected int64 `json:"faultsInjected"`
}

type counterState struct {
	requests  map[string]int64
	responses map[string]int64
	byStatus  map[int]int64
	throttled int64
	busy      int64
	queued    int64
	queueFull int64
	faults    map[string]int64
}

func newCounterState() counterState {
	return counterState{
		requests: map[string]int64{}, responses: map[string]int64{},
		byStatus: map[int]int64{}, faults: map[string]int64{},
	}
}

func (s *Server) countRequest(method, kind string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters.requests[method+" "+kind]++
	s.counters.responses[method+" "+kind+" "+strconv.Itoa(status)]++
	s.counters.byStatus[status]++
}

// Counters returns a snapshot of the request counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counters{
		Requests:  copyMap(s.counters.requests),
		Responses: copyMap(s.counters.responses),
		ByStatus:  copyMap(s.counters.byStatus),
		Throttled: s.counters.throttled,
		Busy:      s.counters.busy,
		Queued:    s.counters.queued,
		QueueFull: s.counters.queueFull,
		Faults:    copyMap(s.counters.faults),
	}
	for _, n := range c.Faults {
		c.FaultsInjected += n
	}
	return c
}

// ResetCounters zeroes the request counters.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters = newCounterState()
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Event is one accepted write of an NSG or a security rule.
type Event struct {
	Seq int64 `json:"seq"`
	// Operation is Azure's operation name: PutSecurityRuleOperation,
	// DeleteSecurityRuleOperation, PutNetworkSecurityGroupOperation or
	// DeleteNetworkSecurityGroupOperation.
	Operation string `json:"operation"`
	NSGID     string `json:"nsgId"`
	// RuleName and Rule describe the rule written or deleted; empty for
	// NSG operations.
	RuleName string        `json:"ruleName,omitempty"`
	Rule     *RuleSnapshot `json:"rule,omitempty"`
	// RemovedRules names the rules a whole-NSG write removes (rules the NSG
	// had that the written document leaves out), so that a rule deleted
	// by an NSG write is as visible as one deleted on its own.
	RemovedRules []string `json:"removedRules,omitempty"`
	// Accepted is when the write was accepted, Completed when its
	// operation finished (zero while it runs).
	Accepted  time.Time `json:"accepted"`
	Completed time.Time `json:"completed,omitzero"`
	// Result is InProgress, Succeeded or Failed (the change was not applied).
	Result string `json:"result"`
	// CorrelationRequestID and RequestID are the x-ms-correlation-request-id
	// and x-ms-request-id headers the write was answered with, as Azure's
	// Activity Log records them (correlationId, serviceRequestId).
	CorrelationRequestID string `json:"correlationRequestId,omitempty"`
	RequestID            string `json:"requestId,omitempty"`
}

// RuleSnapshot is a security rule's decisive fields at the time of a write.
type RuleSnapshot struct {
	Priority            int32    `json:"priority"`
	Direction           string   `json:"direction"`
	Access              string   `json:"access"`
	Protocol            string   `json:"protocol"`
	SourcePrefixes      []string `json:"sourcePrefixes"`
	SourcePorts         []string `json:"sourcePorts"`
	DestinationPrefixes []string `json:"destinationPrefixes"`
	DestinationPorts    []string `json:"destinationPorts"`
	Description         string   `json:"description,omitempty"`
}

func snapshotRule(p *ruleProperties) *RuleSnapshot {
	r := toNSGRule("", p)
	return &RuleSnapshot{
		Priority: r.Priority, Direction: r.Direction, Access: r.Access, Protocol: r.Protocol,
		SourcePrefixes: cloneStrings(r.SourcePrefixes), SourcePorts: cloneStrings(r.SourcePorts),
		DestinationPrefixes: cloneStrings(r.DestinationPrefixes), DestinationPorts: cloneStrings(r.DestinationPorts),
		Description: r.Description,
	}
}

// Events returns the write events so far, in order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleAll()
	out := make([]Event, len(s.events))
	copy(out, s.events)
	return out
}

// Flow is a connection attempt for VerifyFlow, as Network Watcher's IP flow
// verify takes it, across the NSGs on the path.
type Flow struct {
	// NSGIDs are the NSGs in evaluation order (inbound: the subnet's NSG,
	// then the NIC's).
	NSGIDs []string `json:"nsgIds"`
	// NetworkInterfaceID, used when NSGIDs is empty, names the VM's network
	// interface instead: the path is then the NSG of the subnet of the IP
	// configuration holding the local address (Destination inbound, Source
	// outbound; else the primary configuration) and the NIC's own NSG, in
	// Azure's order for the direction, and an empty local address becomes
	// that configuration's private address. With no NSG at either level the
	// flow is allowed, as on Azure, unless an admin rule decides.
	NetworkInterfaceID string `json:"networkInterfaceId,omitempty"`
	// VirtualNetworkID is the virtual network whose security admin rules
	// (SetAdminRules) are evaluated before the NSGs. A flow through a
	// network interface takes it from the interface's subnet, whatever is
	// given here; a flow given by NSG ids has none unless it is given. A
	// flow with only a VirtualNetworkID crosses no NSG.
	VirtualNetworkID string `json:"virtualNetworkId,omitempty"`
	Direction        string `json:"direction"` // "Inbound" (default) or "Outbound"
	Protocol         string `json:"protocol"`  // "Tcp", "Udp", "Icmp"
	Source           string `json:"source"`
	SourcePort       int    `json:"sourcePort"` // 0: an ephemeral port
	Destination      string `json:"destination"`
	DestinationPort  int    `json:"destinationPort"`
}

// Verdict is VerifyFlow's answer.
type Verdict struct {
	Allowed bool `json:"allowed"`
	// NSGID is the NSG whose rule decided: the first that denies, or the
	// last that allows. It and RuleName are empty when a network
	// interface's path has no NSG at all. When a security admin rule
	// decided (DecidedBy "adminRule"), NSGID is empty and RuleName is
	// "admin:<rule name>" and Priority the admin rule's.
	NSGID    string `json:"nsgId"`
	RuleName string `json:"ruleName"`
	Priority int32  `json:"priority"`
	// DecidedBy says which layer decided: "adminRule" (an AlwaysAllow or
	// Deny admin rule; NSGs were not evaluated), "networkSecurityGroup",
	// or "" when nothing on the path filters.
	DecidedBy string `json:"decidedBy,omitempty"`
	// AdminRule is the admin rule that matched the flow, whether it decided
	// or (access Allow) handed the flow on to the NSGs; nil when none did.
	AdminRule *AdminRuleMatch `json:"adminRule,omitempty"`
}

// Layers that decide a Verdict.
const (
	DecidedByAdminRule = "adminRule"
	DecidedByNSG       = "networkSecurityGroup"
)

// adminRulePrefix marks a RuleName that names a security admin rule; NSG
// rule names cannot hold ':'.
const adminRulePrefix = "admin:"

// ephemeralPort stands for the client's source port when none is given.
const ephemeralPort = 49152

// errUnknownNSG reports a flow through an NSG that does not exist.
var errUnknownNSG = errors.New("network security group not found")

// VerifyFlow judges a flow against the committed rules of the NSGs on its
// path, as Azure's data plane would: an operation still running has not
// taken effect yet.
func (s *Server) VerifyFlow(f Flow) (Verdict, error) {
	f, nf, err := s.resolveFlow(f)
	if err != nil {
		return Verdict{}, fmt.Errorf("verify flow: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.judgeFlow(f.VirtualNetworkID, f.NSGIDs, nf)
	if err != nil {
		return Verdict{}, fmt.Errorf("verify flow %w", err)
	}
	return v, nil
}

// resolveFlow checks f and completes it: a flow through a network interface
// gets its path of NSGs (possibly none) and its local address.
func (s *Server) resolveFlow(f Flow) (Flow, nsgrules.Flow, error) {
	switch {
	case len(f.NSGIDs) == 0 && f.NetworkInterfaceID != "":
		var err error
		if f, err = s.flowThroughNIC(f); err != nil {
			return f, nsgrules.Flow{}, err
		}
	case len(f.NSGIDs) == 0 && f.VirtualNetworkID == "":
		return f, nsgrules.Flow{}, errors.New("no network security group ids, network interface id or virtual network id given")
	}
	if f.VirtualNetworkID != "" {
		if _, _, _, err := s.vnetRuleKey(f.VirtualNetworkID); err != nil {
			return f, nsgrules.Flow{}, err
		}
	}
	nf := nsgrules.Flow{
		Direction: f.Direction, Protocol: f.Protocol, Source: f.Source, SourcePort: f.SourcePort,
		Destination: f.Destination, DestinationPort: f.DestinationPort,
	}
	if nf.Direction == "" {
		nf.Direction = "Inbound"
	}
	if nf.SourcePort == 0 {
		nf.SourcePort = ephemeralPort
	}
	if err := nf.Validate(); err != nil {
		return f, nf, err
	}
	return f, nf, nil
}

// judgeFlow evaluates nf through the security admin rules of the virtual
// network vnetID (none for "") and then, unless one decides, the committed
// rules of the NSGs ids, in order; with neither Azure does not filter. Its
// errors start with "through <id>". Callers hold s.mu.
func (s *Server) judgeFlow(vnetID string, ids []string, nf nsgrules.Flow) (Verdict, error) {
	paths := make([][]nsgrules.Rule, len(ids))
	found := make([]string, len(ids))
	for i, id := range ids {
		st, err := s.committedNSG(id)
		if err != nil {
			return Verdict{}, fmt.Errorf("through %s: %w", id, err)
		}
		found[i] = st.id
		paths[i] = st.nsgRules()
	}
	admin, model := s.adminRulesOf(vnetID)
	return verdictOf(nsgrules.EvaluateWithAdmin(model, paths, nf, nsgrules.Env{}), admin, found), nil
}

// verdictOf turns a decision over the admin rules admin and the NSGs ids
// into a Verdict.
func verdictOf(d nsgrules.Decision, admin []AdminRule, ids []string) Verdict {
	v := Verdict{Allowed: d.Allowed}
	if d.Admin.Matched {
		r := admin[d.Admin.Index]
		v.AdminRule = &AdminRuleMatch{ID: r.ID, Name: r.Name, Access: d.Admin.Access, Priority: r.Priority}
	}
	switch {
	case d.Admin.Decides():
		v.DecidedBy, v.RuleName, v.Priority = DecidedByAdminRule, adminRulePrefix+d.Admin.RuleName, d.Admin.Priority
	case d.NSGIndex >= 0:
		v.DecidedBy, v.NSGID, v.RuleName, v.Priority = DecidedByNSG, ids[d.NSGIndex], d.NSG.RuleName, d.NSG.Priority
	}
	return v
}

// nsgRules is the NSG's rules in nsgrules' model.
func (st *nsgState) nsgRules() []nsgrules.Rule {
	rules := make([]nsgrules.Rule, len(st.rules))
	for i, r := range st.rules {
		rules[i] = toNSGRule(r.name, &r.props)
	}
	return rules
}

// committedNSG finds an NSG by id. Callers hold s.mu.
func (s *Server) committedNSG(id string) (*nsgState, error) {
	q := parseARMPath("GET", id)
	if q.kind != "nsg" || s.servedSubscription(q.sub) == "" {
		return nil, fmt.Errorf("%q is not a network security group id: not in a subscription this server serves: %w", id, errUnknownNSG)
	}
	e := s.entry(nsgKey(q.sub, q.rg, q.nsg))
	if e == nil || e.state == nil {
		return nil, errUnknownNSG
	}
	return e.state, nil
}
