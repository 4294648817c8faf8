package azure

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// simWrite finds the local Azure's record of a recorded write by its
// request id, and checks that the ids are those the local Azure answered
// the write with.
func simWrite(t *testing.T, srv *azuresim.Server, w audit.ARMWrite) azuresim.Event {
	t.Helper()
	if w.RequestID == "" || w.CorrelationRequestID == "" {
		t.Fatalf("write %+v has no ids", w)
	}
	for _, e := range srv.Events() {
		if e.RequestID == w.RequestID {
			if e.CorrelationRequestID != w.CorrelationRequestID {
				t.Errorf("write %s: correlation id %q, the local Azure sent %q", w.RequestID, w.CorrelationRequestID, e.CorrelationRequestID)
			}
			if !strings.HasPrefix(strings.ToLower(w.ResourceID), strings.ToLower(e.NSGID)) {
				t.Errorf("write %s: resource %s, the local Azure wrote %s", w.RequestID, w.ResourceID, e.NSGID)
			}
			return e
		}
	}
	t.Fatalf("the local Azure answered no write with request id %s (events %+v)", w.RequestID, srv.Events())
	return azuresim.Event{}
}

// The ids recorded for a caller's writes are the headers the local Azure
// answered those writes with, for whole-NSG writes and for the SDK's rule
// writes alike, and each caller gets the writes made for it only: a
// batch's writer started by one caller does not record another's write
// for it.
func TestWriteIDsAreThoseAzureAnsweredEachCallersWritesWith(t *testing.T) {
	srv, nsgID, env := localAzure(t, azuresim.Options{WriteLatency: 300 * time.Millisecond})
	c := clientFromEnv(t, env)
	ctx := context.Background()

	ctxA, recA := WithWriteRecorder(ctx)
	ctxB, recB := WithWriteRecorder(ctx)
	grantA, grantB := sshGrant, sshGrant
	grantB.Name, grantB.Priority, grantB.SourcePrefixes = "jit-web-g-b", sshGrant.Priority+1, []string{"203.0.113.8/32"}
	doneA := make(chan error, 1)
	go func() {
		_, err := c.ApplyRuleChanges(ctxA, nsgID, []RuleChange{{Put: &grantA}})
		doneA <- err
	}()
	// B asks once A's write is under way, so B's change is the writer's
	// next write: the writer was started by A, with A's context.
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.Events()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("A's write never reached the local Azure")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.ApplyRuleChanges(ctxB, nsgID, []RuleChange{{Put: &grantB}}); err != nil {
		t.Fatalf("B: %v", err)
	}
	if err := <-doneA; err != nil {
		t.Fatalf("A: %v", err)
	}
	a, b := recA.Writes(), recB.Writes()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("A recorded %+v, B %+v; want one write each", a, b)
	}
	if a[0].RequestID == b[0].RequestID {
		t.Errorf("A and B recorded the same write %s, though B's change went in a write of its own", a[0].RequestID)
	}
	for _, w := range append(a, b...) {
		if e := simWrite(t, srv, w); e.Operation != "PutNetworkSecurityGroupOperation" || w.Method != http.MethodPut ||
			(w.StatusCode != http.StatusOK && w.StatusCode != http.StatusCreated) {
			t.Errorf("write %+v recorded as the local Azure's %+v", w, e)
		}
	}

	// The SDK's own rule writes (jitd's plain deletes) are recorded too.
	ctxC, recC := WithWriteRecorder(ctx)
	if err := c.DeleteRule(ctxC, nsgID, grantB.Name); err != nil {
		t.Fatal(err)
	}
	got := recC.Writes()
	if len(got) != 1 || got[0].Method != http.MethodDelete {
		t.Fatalf("DeleteRule recorded %+v, want one DELETE", got)
	}
	if e := simWrite(t, srv, got[0]); e.Operation != "DeleteSecurityRuleOperation" || e.RuleName != grantB.Name {
		t.Errorf("DeleteRule's write is the local Azure's %+v", e)
	}
	if w := RecordedWrites(ctxC, nsgID); len(w) != 1 {
		t.Errorf("RecordedWrites(ctx, the NSG) = %+v, want the delete of its rule", w)
	}
	if w := RecordedWrites(ctxC, nsgID+"-other"); len(w) != 0 {
		t.Errorf("RecordedWrites(ctx, another NSG) = %+v, want none", w)
	}
	// Reads are not writes, and a context without a recorder records
	// nothing anywhere.
	if _, err := c.ListRules(ctxC, nsgID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRule(ctx, nsgID, grantB); err != nil {
		t.Fatal(err)
	}
	if n := len(recC.Writes()) + len(recA.Writes()) + len(recB.Writes()); n != 3 {
		t.Errorf("%d writes recorded in all, want 3", n)
	}
}

// ARM's ids are GUIDs; a header holding anything else is not recorded in an
// audit event.
func TestWriteIDsKeepOnlyWellFormedIDs(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPut, "https://management.example/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n?api-version=1", nil)
	resp := &http.Response{StatusCode: 201, Header: http.Header{}}
	resp.Header.Set("x-ms-correlation-request-id", "6f1c2a8e-1d2b-4c3d-9e8f-0a1b2c3d4e5f")
	resp.Header.Set("x-ms-request-id", "<!channel> forged\n{\"action\":\"close\"}")
	w := armWrite(req, resp)
	want := audit.ARMWrite{Method: "PUT", ResourceID: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n",
		StatusCode: 201, CorrelationRequestID: "6f1c2a8e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"}
	if w != want {
		t.Errorf("armWrite = %+v, want %+v", w, want)
	}
}
