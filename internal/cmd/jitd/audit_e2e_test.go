package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/audit/audittest"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// The approval the end-to-end Terraform runs are given, as the GitOps apply
// workflow gives it.
const (
	e2eApprovers = "alice,bob"
	e2eChangeRef = "acme/jit-requests#7"
)

// checkAuditLog checks an audit log a real run wrote: every line matches
// the published schema; every successful open, close and restore names ARM
// writes whose ids are those the local Azure answered a write of its NSG
// with; and, when approved, every event names the run's approval.
func checkAuditLog(t *testing.T, la *localAzure, path string, approved bool) {
	t.Helper()
	n := audittest.CheckFile(t, path)
	events, err := audit.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	simEvents, err := testproc.Events(la.http, la.url)
	if err != nil {
		t.Fatalf("local Azure events: %v", err)
	}
	byRequest := map[string]testproc.Event{}
	for _, e := range simEvents {
		byRequest[e.RequestID] = e
	}
	writes := 0
	for _, e := range events {
		if approved && (!slices.Equal(e.ApprovedBy, strings.Split(e2eApprovers, ",")) || e.ChangeRef != e2eChangeRef) {
			t.Errorf("%s: %s event does not name the run's approval: %+v", path, e.Action, e.Approval)
		}
		if e.Result != audit.ResultSuccess || (e.Action != audit.ActionOpen && e.Action != audit.ActionClose && e.Action != audit.ActionRestore) {
			continue
		}
		if len(e.ARMWrites) == 0 {
			t.Errorf("%s: %s event of %s names no ARM write", path, e.Action, e.RuleName)
		}
		for _, w := range e.ARMWrites {
			writes++
			s, ok := byRequest[w.RequestID]
			switch {
			case !ok:
				t.Errorf("%s: %s event names request id %q, which the local Azure answered no write with", path, e.Action, w.RequestID)
			case s.CorrelationRequestID != w.CorrelationRequestID:
				t.Errorf("%s: %s event: correlation id %q, the local Azure sent %q", path, e.Action, w.CorrelationRequestID, s.CorrelationRequestID)
			case !slices.ContainsFunc(e.NSGIDs, func(id string) bool { return strings.EqualFold(id, s.NSGID) }):
				t.Errorf("%s: %s event on %v names a write of %s", path, e.Action, e.NSGIDs, s.NSGID)
			}
		}
	}
	t.Logf("%s: %d events match the schema; %d ARM writes named, each matched in the local Azure's log", path, n, writes)
}
