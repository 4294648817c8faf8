package provider

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/audit/audittest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

// Every open, close and refusal names who approved the change the run
// applied (from the pipeline's environment, not the request) and, for
// writes, the ARM ids of each write, which are the headers the local Azure
// answered it with; every line of the audit log matches the published
// schema.
func TestAccGrant_auditEventsNameTheApprovalAndTheARMWrites(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	sha := strings.Repeat("0a1b2c3d4e", 4)
	pipeline := envFrom(map[string]string{
		audit.EnvApprovedBy: "alice, bob",
		audit.EnvChangeRef:  "acme/jit-requests#42",
		audit.EnvCommitSHA:  sha,
		audit.EnvChangeURL:  "https://github.com/acme/jit-requests/pull/42",
	})
	provider := env.ProviderBlock(fmt.Sprintf("  audit_log_path = %q", auditLog))
	policy := fmt.Sprintf(webPolicy, nsgID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(pipeline),
		Steps: []resource.TestStep{
			{Config: provider + policy + grantBlock("a", admin, "1h")},
			{Config: provider + policy}, // the block removed: closed
			{
				Config:      provider + policy + grantBlock("x", admin, "4h"),
				ExpectError: regexp.MustCompile(`exceeds`),
			},
		},
	})

	if n := audittest.CheckFile(t, auditLog); n == 0 {
		t.Fatal("nothing was audited")
	}
	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	sim := map[string]azuresim.Event{}
	for _, e := range env.Sim.Events() {
		sim[e.RequestID] = e
	}
	seen := map[audit.Action]bool{}
	for _, e := range events {
		seen[e.Action] = true
		if !slices.Equal(e.ApprovedBy, []string{"alice", "bob"}) || e.ChangeRef != "acme/jit-requests#42" ||
			e.CommitSHA != sha || e.ChangeURL != "https://github.com/acme/jit-requests/pull/42" {
			t.Errorf("%s event does not name the approval: %+v", e.Action, e.Approval)
		}
		if e.SchemaVersion != audit.SchemaVersion {
			t.Errorf("%s event has schema_version %d", e.Action, e.SchemaVersion)
		}
		switch e.Action {
		case audit.ActionOpen, audit.ActionClose:
			if len(e.ARMWrites) == 0 {
				t.Errorf("%s event names no ARM write: %+v", e.Action, e)
			}
			for _, w := range e.ARMWrites {
				s, ok := sim[w.RequestID]
				switch {
				case !ok:
					t.Errorf("%s event names request id %q, which the local Azure never answered a write with", e.Action, w.RequestID)
				case s.CorrelationRequestID != w.CorrelationRequestID:
					t.Errorf("%s event: correlation id %q, the local Azure sent %q", e.Action, w.CorrelationRequestID, s.CorrelationRequestID)
				case !strings.EqualFold(s.NSGID, nsgID) || !strings.HasPrefix(strings.ToLower(w.ResourceID), strings.ToLower(nsgID)):
					t.Errorf("%s event: write of %s, the local Azure wrote %s", e.Action, w.ResourceID, s.NSGID)
				}
			}
		case audit.ActionRefuse:
			if len(e.ARMWrites) != 0 {
				t.Errorf("a refusal names ARM writes: %+v", e.ARMWrites)
			}
		}
	}
	for _, a := range []audit.Action{audit.ActionOpen, audit.ActionClose, audit.ActionRefuse} {
		if !seen[a] {
			t.Errorf("no %s event in %d events", a, len(events))
		}
	}
}

// A malformed approval variable stops the provider before it changes
// anything: an audit record without a trustworthy approver is refused.
func TestAccProvider_malformedApprovalEnvironmentChangesNothing(t *testing.T) {
	env := acctest.New(t, azuresim.Options{})
	nsgID := env.CreateNSG("nsg-web")
	before := env.Snapshot(nsgID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providerFactories(envFrom(map[string]string{
			audit.EnvApprovedBy: "alice\n{\"action\":\"close\"}",
		})),
		CheckDestroy: env.ExpectUnchanged(nsgID, before),
		Steps: []resource.TestStep{{
			Config:      env.ProviderBlock() + fmt.Sprintf(webPolicy, nsgID),
			ExpectError: regexp.MustCompile(`(?s)Invalid Approval Environment.*JIT_APPROVED_BY: login 1 has a character`),
		}},
	})
}

// checkMoveEvents checks that the audit log matches the schema and that
// each grant rule moved with its policy names the ARM writes of its own
// NSG, and only those.
func checkMoveEvents(t *testing.T, auditLog string) {
	t.Helper()
	audittest.CheckFile(t, auditLog)
	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	moves := 0
	for _, e := range events {
		if !strings.Contains(e.Reason, "this NSG") || len(e.NSGIDs) != 1 {
			continue
		}
		moves++
		if len(e.ARMWrites) == 0 {
			t.Errorf("move event names no ARM write: %+v", e)
		}
		for _, w := range e.ARMWrites {
			if !strings.HasPrefix(strings.ToLower(w.ResourceID), strings.ToLower(e.NSGIDs[0])) || w.RequestID == "" {
				t.Errorf("move event on %s names write %+v", e.NSGIDs[0], w)
			}
		}
	}
	if moves == 0 {
		t.Error("no move event audited")
	}
}
