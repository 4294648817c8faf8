package azuresim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
)

// putNSG creates or replaces an NSG with the given flushConnection and
// rules, and waits for the operation.
func putNSG(t *testing.T, c networkClients, name string, flush bool, rules ...*armnetwork.SecurityRule) armnetwork.SecurityGroup {
	t.Helper()
	ctx := context.Background()
	p, err := c.groups.BeginCreateOrUpdate(ctx, testRG, name, armnetwork.SecurityGroup{
		Location:   to.Ptr(testLocation),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{FlushConnection: to.Ptr(flush), SecurityRules: rules},
	}, nil)
	if err != nil {
		t.Fatalf("begin put NSG %s: %v", name, err)
	}
	resp, err := p.PollUntilDone(ctx, pollOpts)
	if err != nil {
		t.Fatalf("put NSG %s: %v", name, err)
	}
	return resp.SecurityGroup
}

// sshFrom is an inbound SSH flow from src through path.
func sshFrom(src string, path ...string) azuresim.Flow {
	return azuresim.Flow{NSGIDs: path, Protocol: "Tcp", Source: src, Destination: "10.0.0.4", DestinationPort: 22}
}

func establish(t *testing.T, srv *azuresim.Server, f azuresim.Flow) string {
	t.Helper()
	c, err := srv.EstablishFlow(f)
	if err != nil {
		t.Fatalf("establish %+v: %v", f, err)
	}
	if !c.Established || c.ID == "" || !c.Verdict.Allowed {
		t.Fatalf("establish %+v: %+v, want an established connection", f, c)
	}
	return c.ID
}

func connState(t *testing.T, srv *azuresim.Server, id string) azuresim.ConnectionState {
	t.Helper()
	st, err := srv.ConnectionState(id)
	if err != nil {
		t.Fatalf("connection %s: %v", id, err)
	}
	return st
}

func wantAlive(t *testing.T, srv *azuresim.Server, id, when string) {
	t.Helper()
	if st := connState(t, srv, id); !st.Alive || !st.CutAt.IsZero() || st.RuleName != "" {
		t.Errorf("%s: connection %+v, want alive", when, st)
	}
}

func wantCut(t *testing.T, srv *azuresim.Server, id string, at time.Time, nsgID, rule string) {
	t.Helper()
	st := connState(t, srv, id)
	if st.Alive || !st.CutAt.Equal(at) || st.NSGID != nsgID || st.RuleName != rule {
		t.Errorf("connection %+v, want cut at %s by %s in %s", st, at.Format(time.RFC3339Nano), rule, nsgID)
	}
}

// Azure's NSGs are stateful: with flushConnection off, a connection lives
// on after the rule that admitted it is deleted, though new ones are refused.
func TestConnectionOutlivesItsRuleWithoutFlush(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	nsg := createNSG(t, c, "nsg-stateful", tcpRule("jit-ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	id := establish(t, srv, sshFrom("203.0.113.7", *nsg.ID))

	if err := deleteRule(context.Background(), c, "nsg-stateful", "jit-ssh"); err != nil {
		t.Fatal(err)
	}
	if v, err := srv.VerifyFlow(sshFrom("203.0.113.7", *nsg.ID)); err != nil || v.Allowed {
		t.Fatalf("new flow after the rule's deletion: %+v %v, want denied", v, err)
	}
	wantAlive(t, srv, id, "after the rule's deletion")
	// A later write, flush still off, changes nothing either.
	if _, err := putRule(context.Background(), c, "nsg-stateful", tcpRule("other", 300, armnetwork.SecurityRuleAccessAllow, "*", "443")); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, id, "after another write")
	if st := connState(t, srv, id); len(st.NSGIDs) != 1 || st.NSGIDs[0] != *nsg.ID || st.EstablishedAt.IsZero() {
		t.Errorf("state %+v: want the path and the time of establishment", st)
	}
}

// With flushConnection on, deleting the rule cuts the connection, but only
// when the delete's operation completes, and at that time.
func TestFlushCutsWhenTheOperationCompletes(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()
	nsg := putNSG(t, c, "nsg-flush", true, tcpRule("jit-ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	if nsg.Properties.FlushConnection == nil || !*nsg.Properties.FlushConnection {
		t.Fatalf("flushConnection after PUT = %v, want true", nsg.Properties.FlushConnection)
	}
	got, err := c.groups.Get(ctx, testRG, "nsg-flush", nil)
	if err != nil || got.Properties.FlushConnection == nil || !*got.Properties.FlushConnection {
		t.Fatalf("GET NSG: flushConnection %v, %v; want true", got.Properties.FlushConnection, err)
	}
	id := establish(t, srv, sshFrom("203.0.113.7", *nsg.ID))

	srv.SetWriteLatency(time.Minute)
	accepted := clock.Now()
	if _, err := c.rules.BeginDelete(ctx, testRG, "nsg-flush", "jit-ssh", nil); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, id, "while the delete runs")
	clock.Advance(time.Minute - time.Nanosecond)
	wantAlive(t, srv, id, "just before the delete completes")
	clock.Advance(time.Nanosecond)
	wantCut(t, srv, id, accepted.Add(time.Minute), *nsg.ID, "DenyAllInBound")
	if st := connState(t, srv, id); st.Priority != 65500 {
		t.Errorf("cut by priority %d, want 65500", st.Priority)
	}
	for _, ev := range srv.Events() {
		if ev.Operation == "DeleteSecurityRuleOperation" && !ev.Completed.Equal(accepted.Add(time.Minute)) {
			t.Errorf("delete completed at %s, want the connection's cut time", ev.Completed)
		}
	}
}

// A write whose operation fails changes no rule and cuts nothing.
func TestFailedWriteCutsNothing(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{FaultSeed: 3})
	c := newClients(t, srv, nil, 3)
	nsg := putNSG(t, c, "nsg-flush", true, tcpRule("jit-ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	id := establish(t, srv, sshFrom("203.0.113.7", *nsg.ID))
	raw := newRawClient(t, srv)
	srv.SetFaultRate(1)
	var asyncURL string
	for i := 0; i < 200 && asyncURL == ""; i++ {
		resp, _, err := raw.do(http.MethodDelete, rulePath(srv, "nsg-flush", "jit-ssh"), nil)
		if err == nil && resp.StatusCode == http.StatusAccepted {
			asyncURL = resp.Header.Get("Azure-AsyncOperation")
		}
	}
	srv.SetFaultRate(0)
	if asyncURL == "" {
		t.Fatal("no delete was accepted with a failing operation")
	}
	if _, b := raw.must(http.MethodGet, asyncURL, nil); !strings.Contains(string(b), `"Failed"`) {
		t.Fatalf("operation status = %s, want Failed", b)
	}
	wantAlive(t, srv, id, "after a failed delete")
}

// Turning flushConnection on is itself a commit with flush on: it cuts the
// connections the current rules deny, and only those.
func TestTurningFlushOnReevaluatesOnce(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	ssh := tcpRule("jit-ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22")
	web := tcpRule("web", 300, armnetwork.SecurityRuleAccessAllow, "*", "22")
	web.Properties.SourceAddressPrefix = to.Ptr("198.51.100.0/24")
	nsg := putNSG(t, c, "nsg-late-flush", false, ssh, web)
	stale := establish(t, srv, sshFrom("203.0.113.7", *nsg.ID))
	kept := establish(t, srv, sshFrom("198.51.100.9", *nsg.ID))

	if err := deleteRule(context.Background(), c, "nsg-late-flush", "jit-ssh"); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, stale, "after the rule's deletion with flush off")
	before := time.Now()
	putNSG(t, c, "nsg-late-flush", true, web)
	st := connState(t, srv, stale)
	if st.Alive || st.CutAt.Before(before) || st.NSGID != *nsg.ID || st.RuleName != "DenyAllInBound" {
		t.Errorf("connection the rules deny, after flush on: %+v, want cut by DenyAllInBound", st)
	}
	wantAlive(t, srv, kept, "connection the rules allow, after flush on")
}

// A connection through a subnet's and a NIC's NSG is cut when either NSG,
// with flush on, stops allowing it; a flush-on commit also applies what a
// flush-off NSG on the path changed earlier.
func TestConnectionThroughSubnetAndNIC(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	n := newVMNetwork(t, srv)
	ctx := context.Background()
	allow := func(name string, prio int32, src string) *armnetwork.SecurityRule {
		return tcpRule(name, prio, armnetwork.SecurityRuleAccessAllow, src, "22")
	}
	subnetNSG := putNSG(t, n.networkClients, "nsg-subnet", true,
		allow("a", 200, "203.0.113.7"), allow("b", 210, "198.51.100.9"), allow("c", 220, "192.0.2.5"))
	nicNSG := putNSG(t, n.networkClients, "nsg-nic", false,
		allow("a", 200, "203.0.113.7"), allow("b", 210, "198.51.100.9"), allow("c", 220, "192.0.2.5"))
	if _, err := n.createVNet(ctx, "vnet-app", "10.10.0.0/16", subnet("web", "10.10.1.0/24", *subnetNSG.ID)); err != nil {
		t.Fatal(err)
	}
	nic, err := n.createNIC(ctx, "nic-vm", nicSpec{subnetID: n.appSubnetID("web"), nsgID: *nicNSG.ID})
	if err != nil {
		t.Fatal(err)
	}
	through := func(src string) azuresim.Flow {
		return azuresim.Flow{NetworkInterfaceID: *nic.ID, Protocol: "Tcp", Source: src, DestinationPort: 22}
	}
	a, b, cc := establish(t, srv, through("203.0.113.7")), establish(t, srv, through("198.51.100.9")), establish(t, srv, through("192.0.2.5"))
	if st := connState(t, srv, a); len(st.NSGIDs) != 2 || st.NSGIDs[0] != *subnetNSG.ID || st.NSGIDs[1] != *nicNSG.ID {
		t.Fatalf("path %v, want the subnet's NSG then the NIC's", st.NSGIDs)
	}

	// The subnet's NSG (flush on) stops allowing a.
	if err := deleteRule(ctx, n.networkClients, "nsg-subnet", "a"); err != nil {
		t.Fatal(err)
	}
	wantCutBy(t, srv, a, *subnetNSG.ID, "DenyAllInBound")
	wantAlive(t, srv, b, "b after the subnet NSG's change")

	// The NIC's NSG (flush off) stops allowing b: nothing is cut, until the
	// next commit to the subnet's NSG re-evaluates the whole path.
	if err := deleteRule(ctx, n.networkClients, "nsg-nic", "b"); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, b, "b after the flush-off NIC NSG's change")
	if _, err := putRule(ctx, n.networkClients, "nsg-subnet", tcpRule("https", 300, armnetwork.SecurityRuleAccessAllow, "*", "443")); err != nil {
		t.Fatal(err)
	}
	wantCutBy(t, srv, b, *nicNSG.ID, "DenyAllInBound")
	wantAlive(t, srv, cc, "c after the subnet NSG's unrelated change")

	// The NIC's NSG turns flush on and stops allowing c in the same write.
	putNSG(t, n.networkClients, "nsg-nic", true, allow("a", 200, "203.0.113.7"))
	wantCutBy(t, srv, cc, *nicNSG.ID, "DenyAllInBound")
}

func wantCutBy(t *testing.T, srv *azuresim.Server, id, nsgID, rule string) {
	t.Helper()
	if st := connState(t, srv, id); st.Alive || st.CutAt.IsZero() || st.NSGID != nsgID || st.RuleName != rule {
		t.Errorf("connection %+v, want cut by %s in %s", st, rule, nsgID)
	}
}

// Completions are applied in the order they came due, whichever NSG is
// looked at first: a flush-on commit sees the other NSGs on the path as
// they were at its completion time, not as later operations left them.
func TestCommitsApplyInTheOrderTheyCameDue(t *testing.T) {
	clock := simtest.NewClock(time.Now())
	srv := simtest.Start(t, azuresim.Options{Now: clock.Now})
	c := newClients(t, srv, nil, 3)
	ctx := context.Background()
	allowSSH := tcpRule("ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22")
	first := putNSG(t, c, "nsg-first", true, allowSSH)
	second := putNSG(t, c, "nsg-second", false, allowSSH)
	id := establish(t, srv, sshFrom("203.0.113.7", *first.ID, *second.ID))

	srv.SetWriteLatency(time.Minute)
	// nsg-first (flush on) commits an unrelated rule at T+1m; nsg-second
	// (flush off) drops its allow at T+1m10s.
	if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-first", "https",
		*tcpRule("https", 300, armnetwork.SecurityRuleAccessAllow, "*", "443"), nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second)
	if _, err := c.rules.BeginDelete(ctx, testRG, "nsg-second", "ssh", nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	// Look at nsg-second first: its later commit must not be seen by the
	// earlier flush of nsg-first.
	if _, err := c.groups.Get(ctx, testRG, "nsg-second", nil); err != nil {
		t.Fatal(err)
	}
	wantAlive(t, srv, id, "after both commits")
}

func TestDeniedFlowIsNotEstablished(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	nsg := createNSG(t, c, "nsg-closed", tcpRule("ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	conn, err := srv.EstablishFlow(sshFrom("198.51.100.9", *nsg.ID))
	if err != nil {
		t.Fatal(err)
	}
	if conn.Established || conn.ID != "" || conn.Verdict.Allowed || conn.Verdict.RuleName != "DenyAllInBound" {
		t.Errorf("denied flow: %+v, want not established, denied by DenyAllInBound", conn)
	}
	if _, err := srv.EstablishFlow(azuresim.Flow{Protocol: "Tcp", Source: "198.51.100.9", Destination: "10.0.0.4", DestinationPort: 22}); err == nil {
		t.Error("flow with no path: no error")
	}
}

// The control endpoints carry the same JSON as the Go API.
func TestConnectionEndpoints(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	nsg := putNSG(t, c, "nsg-http", true, tcpRule("ssh", 200, armnetwork.SecurityRuleAccessAllow, "203.0.113.0/24", "22"))
	raw := &rawClient{t: t, srv: srv}

	resp, b := raw.must(http.MethodPost, "/_sim/flow/establish", sshFrom("203.0.113.7", *nsg.ID))
	var conn azuresim.Connection
	if err := json.Unmarshal(b, &conn); err != nil || resp.StatusCode != http.StatusCreated || !conn.Established || conn.ID == "" {
		t.Fatalf("establish: %d %s", resp.StatusCode, b)
	}
	if loc := resp.Header.Get("Location"); loc != srv.URL()+"/_sim/flow/connections/"+conn.ID {
		t.Errorf("Location %q", loc)
	}
	resp, b = raw.must(http.MethodGet, "/_sim/flow/connections/"+conn.ID, nil)
	var st azuresim.ConnectionState
	if err := json.Unmarshal(b, &st); err != nil || resp.StatusCode != http.StatusOK || !st.Alive || st.ID != conn.ID {
		t.Fatalf("state: %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), "cutAt") {
		t.Errorf("live connection's state has a cut time: %s", b)
	}
	if err := deleteRule(context.Background(), c, "nsg-http", "ssh"); err != nil {
		t.Fatal(err)
	}
	_, b = raw.must(http.MethodGet, "/_sim/flow/connections/"+conn.ID, nil)
	if err := json.Unmarshal(b, &st); err != nil || st.Alive || st.CutAt.IsZero() || st.NSGID != *nsg.ID || st.RuleName != "DenyAllInBound" || st.Priority != 65500 {
		t.Errorf("cut state: %s", b)
	}
	if resp, b := raw.must(http.MethodDelete, "/_sim/flow/connections/"+conn.ID, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("close: %d %s", resp.StatusCode, b)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		resp, b := raw.must(m, "/_sim/flow/connections/"+conn.ID, nil)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != http.StatusNotFound || e.Error.Code != "NotFound" {
			t.Errorf("%s closed connection: %d %s, want 404 NotFound", m, resp.StatusCode, b)
		}
	}
	if resp, b := raw.must(http.MethodGet, "/_sim/flow/connections/00000000-0000-4000-8000-000000000000", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown connection: %d %s", resp.StatusCode, b)
	}
	if resp, _ := raw.must(http.MethodPut, "/_sim/flow/connections/"+conn.ID, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT connection: %d, want 405", resp.StatusCode)
	}

	resp, b = raw.must(http.MethodPost, "/_sim/flow/establish", sshFrom("198.51.100.9", *nsg.ID))
	if err := json.Unmarshal(b, &conn); err != nil || resp.StatusCode != http.StatusOK || conn.Established || conn.Verdict.Allowed {
		t.Errorf("establish a denied flow: %d %s", resp.StatusCode, b)
	}
	missing := strings.Replace(*nsg.ID, "nsg-http", "nsg-none", 1)
	if resp, b := raw.must(http.MethodPost, "/_sim/flow/establish", sshFrom("203.0.113.7", missing)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("establish through a missing NSG: %d %s", resp.StatusCode, b)
	}
	if resp, b := raw.must(http.MethodPost, "/_sim/flow/establish", map[string]any{"nsgIds": []string{*nsg.ID}, "protocol": "Sctp"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("establish an invalid flow: %d %s", resp.StatusCode, b)
	}
}

// flushConnection round-trips through ARM and must be a boolean.
func TestFlushConnectionProperty(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	raw := newRawClient(t, srv)
	path := nsgPath(srv, "nsg-prop") + "?api-version=2025-05-01"
	body := func(flush any) map[string]any {
		return map[string]any{"location": testLocation, "properties": map[string]any{"flushConnection": flush}}
	}
	for _, bad := range []any{"yes", 1, map[string]any{}} {
		resp, b := raw.must(http.MethodPut, path, body(bad))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"InvalidRequestFormat"`) || !strings.Contains(string(b), "flushConnection") {
			t.Errorf("flushConnection %v: %d %s, want 400 InvalidRequestFormat", bad, resp.StatusCode, b)
		}
	}
	for _, good := range []any{true, false, nil} {
		if resp, b := raw.must(http.MethodPut, path, body(good)); resp.StatusCode >= 300 {
			t.Fatalf("flushConnection %v: %d %s", good, resp.StatusCode, b)
		}
	}
	raw.must(http.MethodPut, path, body(true))
	_, b := raw.must(http.MethodGet, path, nil)
	var doc struct {
		Properties struct {
			FlushConnection *bool `json:"flushConnection"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Properties.FlushConnection == nil || !*doc.Properties.FlushConnection {
		t.Errorf("GET after PUT true: %s", b)
	}
}

// Live connections are bounded; closing one makes room.
func TestConnectionLimit(t *testing.T) {
	srv := simtest.Start(t, azuresim.Options{})
	c := newClients(t, srv, nil, 3)
	nsg := createNSG(t, c, "nsg-many", tcpRule("ssh", 200, armnetwork.SecurityRuleAccessAllow, "*", "22"))
	var last string
	for i := range 10000 {
		conn, err := srv.EstablishFlow(sshFrom("203.0.113.7", *nsg.ID))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		last = conn.ID
	}
	if _, err := srv.EstablishFlow(sshFrom("203.0.113.7", *nsg.ID)); err == nil || !strings.Contains(err.Error(), "close some") {
		t.Fatalf("connection 10001: %v, want refused", err)
	}
	raw := &rawClient{t: t, srv: srv}
	if resp, b := raw.must(http.MethodPost, "/_sim/flow/establish", sshFrom("203.0.113.7", *nsg.ID)); resp.StatusCode != http.StatusConflict {
		t.Errorf("establish over the limit: %d %s, want 409", resp.StatusCode, b)
	}
	if err := srv.CloseConnection(last); err != nil {
		t.Fatal(err)
	}
	establish(t, srv, sshFrom("203.0.113.7", *nsg.ID))
}

// One whole-NSG write that removes several grants' rules at once, queued
// behind another write and completing later, with nobody reading the NSG
// in between, cuts every connection those rules admitted, at its
// completion time, and only those; under BusyRefuse the same write, sent
// when the NSG is free, does the same.
func TestWholeNSGWriteRemovingSeveralRulesCutsEachOfTheirConnections(t *testing.T) {
	for _, mode := range []string{azuresim.BusyQueue, azuresim.BusyRefuse} {
		t.Run(mode, func(t *testing.T) {
			clock := simtest.NewClock(time.Now())
			srv := simtest.Start(t, azuresim.Options{Now: clock.Now, BusyMode: mode})
			c := newClients(t, srv, nil, -1)
			ctx := context.Background()
			var rules []*armnetwork.SecurityRule
			for i := range 6 {
				rules = append(rules, tcpRule(fmt.Sprintf("jit-g%d", i), int32(200+i), armnetwork.SecurityRuleAccessAllow, fmt.Sprintf("203.0.113.%d/32", 20+i), "22"))
			}
			deny := tcpRule("jit-deny", 300, armnetwork.SecurityRuleAccessDeny, "*", "22")
			nsg := putNSG(t, c, "nsg-batch", true, append(slices.Clone(rules), deny)...)
			var ids []string
			for i := range rules {
				ids = append(ids, establish(t, srv, sshFrom(fmt.Sprintf("203.0.113.%d", 20+i), *nsg.ID)))
			}

			srv.SetWriteLatency(time.Minute)
			start := clock.Now()
			done := start.Add(time.Minute)
			if mode == azuresim.BusyQueue {
				// An unrelated write runs first; the close queues behind it.
				if _, err := c.rules.BeginCreateOrUpdate(ctx, testRG, "nsg-batch", "https",
					*tcpRule("https", 400, armnetwork.SecurityRuleAccessAllow, "*", "443"), nil); err != nil {
					t.Fatal(err)
				}
				done = start.Add(2 * time.Minute)
			}
			got, err := c.groups.Get(ctx, testRG, "nsg-batch", nil)
			if err != nil {
				t.Fatal(err)
			}
			g := got.SecurityGroup
			// The close keeps jit-g4 and jit-g5 and removes the other four.
			g.Properties.SecurityRules = slices.DeleteFunc(g.Properties.SecurityRules, func(r *armnetwork.SecurityRule) bool {
				return *r.Name < "jit-g4" && strings.HasPrefix(*r.Name, "jit-g")
			})
			if _, err := c.groups.BeginCreateOrUpdate(ctx, testRG, "nsg-batch", g, nil); err != nil {
				t.Fatal(err)
			}
			clock.Advance(3 * time.Minute)
			for i, id := range ids {
				if i < 4 {
					wantCut(t, srv, id, done, *nsg.ID, "jit-deny")
				} else {
					wantAlive(t, srv, id, "after the close of the others")
				}
			}
			var removed []string
			for _, ev := range srv.Events() {
				if ev.Operation == "PutNetworkSecurityGroupOperation" && len(ev.RemovedRules) > 0 {
					removed = append(removed, ev.RemovedRules...)
				}
			}
			if want := []string{"jit-g0", "jit-g1", "jit-g2", "jit-g3"}; !slices.Equal(removed, want) {
				t.Errorf("RemovedRules %q, want %q", removed, want)
			}
		})
	}
}
