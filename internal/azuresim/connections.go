package azuresim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Established connections, as Azure's stateful NSGs keep them.
//
// An NSG admits a connection once, when it is opened; the flow record it
// keeps then lets the connection's packets through even after the rule that
// admitted it is gone. Only an NSG whose flushConnection property is true
// re-evaluates the connections through it when its rules change, and cuts
// those the new rules deny. A connection here is that flow record: opened
// by EstablishFlow if VerifyFlow would allow the flow at that moment, and
// cut only when a write to an NSG on its path commits while that NSG, as
// committed, has flushConnection on, and the committed rules of the NSGs on
// the path then deny it. It is cut at the operation's completion time.
//
// Security admin rules take part in both judgements, as in VerifyFlow: the
// admin rules of the connection's virtual network (fixed when it is
// established) as they stand at the moment of judgement come first, so an
// AlwaysAllow admin rule keeps a connection alive through a flushing NSG
// write and a Deny admin rule cuts it then. Changing admin rules
// (SetAdminRules) re-evaluates nothing by itself: Azure documents
// re-evaluation of established flows only for an NSG's flushConnection,
// so this simulator assumes, like an NSG without it, that a new Deny admin
// rule leaves established connections alone until such a flush.

// Bounds on the connections a server remembers: live ones are refused
// beyond maxLiveConnections; cut ones are forgotten oldest first beyond
// maxEndedConnections, or when closed.
const (
	maxLiveConnections  = 10000
	maxEndedConnections = 10000
)

var (
	// errUnknownConnection reports a connection id the server does not
	// know (never issued, closed, or forgotten).
	errUnknownConnection = errors.New("connection not found")
	// errTooManyConnections refuses a connection beyond maxLiveConnections.
	errTooManyConnections = fmt.Errorf("%d connections are live; close some before establishing more", maxLiveConnections)
)

// Connection is EstablishFlow's answer.
type Connection struct {
	// ID names the connection for ConnectionState and CloseConnection;
	// empty when the flow was not established.
	ID          string `json:"id,omitempty"`
	Established bool   `json:"established"`
	// Verdict is the flow's judgement when it was opened, as VerifyFlow
	// gives it.
	Verdict Verdict `json:"verdict"`
}

// ConnectionState is what became of an established connection.
type ConnectionState struct {
	ID string `json:"id"`
	// NSGIDs is the connection's path, fixed when it was established (for
	// a flow through a network interface, the NSGs of its subnet and of
	// the NIC then).
	NSGIDs        []string  `json:"nsgIds"`
	EstablishedAt time.Time `json:"establishedAt"`
	Alive         bool      `json:"alive"`
	// CutAt is when the connection was cut: the completion time of the
	// operation whose commit re-evaluated it. NSGID, RuleName and Priority
	// name the rule that denied it then (for a Deny security admin rule,
	// NSGID is empty and RuleName "admin:<name>", as in a Verdict). All
	// are zero while it is alive.
	CutAt    time.Time `json:"cutAt,omitzero"`
	NSGID    string    `json:"nsgId,omitempty"`
	RuleName string    `json:"ruleName,omitempty"`
	Priority int32     `json:"priority,omitempty"`
}

// connection is one tracked connection.
type connection struct {
	state  ConnectionState
	flow   nsgrules.Flow
	keys   []string // the NSG keys of state.NSGIDs, in order
	vnetID string   // whose admin rules apply; "" none
}

// connectionTable holds the live connections and the cut ones not yet
// forgotten.
type connectionTable struct {
	live  map[string]*connection
	ended map[string]*connection
	// endedOrder is the ended ids, oldest first, for forgetting; it may
	// hold ids already forgotten by CloseConnection.
	endedOrder []string
}

func newConnectionTable() connectionTable {
	return connectionTable{live: map[string]*connection{}, ended: map[string]*connection{}}
}

// end moves the live connection c to the ended ones, forgetting the oldest
// beyond the bound.
func (t *connectionTable) end(c *connection) {
	delete(t.live, c.state.ID)
	t.ended[c.state.ID] = c
	t.endedOrder = append(t.endedOrder, c.state.ID)
	for len(t.ended) > maxEndedConnections {
		delete(t.ended, t.endedOrder[0])
		t.endedOrder = t.endedOrder[1:]
	}
	if len(t.endedOrder) > 2*maxEndedConnections {
		t.endedOrder = slices.DeleteFunc(t.endedOrder, func(id string) bool { return t.ended[id] == nil })
	}
}

// EstablishFlow opens a connection for f (the Flow VerifyFlow takes) if the
// committed rules of the NSGs on its path allow it now; otherwise it
// answers Established false with the verdict that refused it. The
// connection then stays alive until it is closed or cut (see
// ConnectionState).
func (s *Server) EstablishFlow(f Flow) (Connection, error) {
	f, nf, err := s.resolveFlow(f)
	if err != nil {
		return Connection{}, fmt.Errorf("establish flow: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Bring every NSG up to now, in order, before the connection exists:
	// from then on commits are applied in their turn (see settle).
	s.settleAll()
	v, err := s.judgeFlow(f.VirtualNetworkID, f.NSGIDs, nf)
	if err != nil {
		return Connection{}, fmt.Errorf("establish flow %w", err)
	}
	if !v.Allowed {
		return Connection{Verdict: v}, nil
	}
	if len(s.conns.live) >= maxLiveConnections {
		return Connection{Verdict: v}, fmt.Errorf("establish flow: %w", errTooManyConnections)
	}
	c := &connection{flow: nf, vnetID: f.VirtualNetworkID, state: ConnectionState{ID: uuid.NewString(), NSGIDs: []string{}, EstablishedAt: s.now(), Alive: true}}
	for _, id := range f.NSGIDs {
		st, err := s.committedNSG(id) // judgeFlow found it
		if err != nil {
			return Connection{}, fmt.Errorf("establish flow through %s: %w", id, err)
		}
		c.state.NSGIDs = append(c.state.NSGIDs, st.id)
		c.keys = append(c.keys, nsgKey(st.sub, st.rg, st.name))
	}
	s.conns.live[c.state.ID] = c
	return Connection{ID: c.state.ID, Established: true, Verdict: v}, nil
}

// ConnectionState reports whether the connection id is alive, or when and
// by which rule it was cut. It completes the operations due first, so the
// answer is as of now.
func (s *Server) ConnectionState(id string) (ConnectionState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleAll()
	c := s.conns.live[id]
	if c == nil {
		c = s.conns.ended[id]
	}
	if c == nil {
		return ConnectionState{}, fmt.Errorf("connection %s: %w", id, errUnknownConnection)
	}
	st := c.state
	st.NSGIDs = slices.Clone(st.NSGIDs)
	return st, nil
}

// CloseConnection ends the connection id as its client would, and forgets
// it, live or cut.
func (s *Server) CloseConnection(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns.live[id] == nil && s.conns.ended[id] == nil {
		return fmt.Errorf("connection %s: %w", id, errUnknownConnection)
	}
	delete(s.conns.live, id)
	delete(s.conns.ended, id)
	return nil
}

// flushConnections re-evaluates the live connections through the NSG at
// key, whose write committed at `at` with flushConnection on, against the
// committed rules of every NSG on their paths, and cuts those now denied.
// NSGs since deleted are no longer on a path. Callers hold s.mu and have
// completed every operation due before at (see settle).
func (s *Server) flushConnections(key string, at time.Time) {
	rules := map[string][]nsgrules.Rule{}
	for _, c := range s.conns.live {
		if !slices.Contains(c.keys, key) {
			continue
		}
		var path [][]nsgrules.Rule
		var ids []string
		for _, k := range c.keys {
			e := s.nsgs[k]
			if e == nil || e.state == nil {
				continue
			}
			r, ok := rules[k]
			if !ok {
				r = e.state.nsgRules()
				rules[k] = r
			}
			path = append(path, r)
			ids = append(ids, e.state.id)
		}
		admin, model := s.adminRulesOf(c.vnetID)
		v := verdictOf(nsgrules.EvaluateWithAdmin(model, path, c.flow, nsgrules.Env{}), admin, ids)
		if v.Allowed {
			continue
		}
		c.state.Alive = false
		c.state.CutAt = at
		c.state.NSGID, c.state.RuleName, c.state.Priority = v.NSGID, v.RuleName, v.Priority
		s.conns.end(c)
	}
}

// serveEstablishFlow answers POST /_sim/flow/establish: 201 with the
// connection and its Location, or 200 with established false and the
// verdict that refused it.
func (s *Server) serveEstablishFlow(w http.ResponseWriter, r *http.Request) {
	var f Flow
	if !readBody(w, r, &f) {
		return
	}
	c, err := s.EstablishFlow(f)
	switch {
	case errorsIsUnknown(err):
		writeARMError(w, http.StatusNotFound, "NotFound", err.Error())
	case errors.Is(err, errTooManyConnections):
		writeARMError(w, http.StatusConflict, "TooManyConnections", err.Error())
	case err != nil:
		writeARMError(w, http.StatusBadRequest, "InvalidFlow", err.Error())
	case c.Established:
		w.Header().Set("Location", s.baseURL(r)+connectionsPath+c.ID)
		writeJSON(w, http.StatusCreated, c)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// connectionsPath prefixes a connection's control URL.
const connectionsPath = "/_sim/flow/connections/"

// serveConnection answers GET (its state) and DELETE (close it) of
// /_sim/flow/connections/{id}.
func (s *Server) serveConnection(w http.ResponseWriter, r *http.Request, id string) {
	var err error
	switch r.Method {
	case http.MethodGet:
		var st ConnectionState
		if st, err = s.ConnectionState(id); err == nil {
			writeJSON(w, http.StatusOK, st)
			return
		}
	case http.MethodDelete:
		if err = s.CloseConnection(id); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	default:
		w.Header().Set("Allow", "GET, DELETE")
		writeARMError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The HTTP method '%s' is not supported for connections.", r.Method))
		return
	}
	writeARMError(w, http.StatusNotFound, "NotFound", err.Error())
}

// connectionID is the id in a /_sim/flow/connections/{id} path, or "" when
// path is not one.
func connectionID(path string) string {
	id, ok := strings.CutPrefix(path, connectionsPath)
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}
