package audit_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/audit/audittest"
)

func TestSchemaIsPublishedAsDraft2020_12WithItsID(t *testing.T) {
	var doc struct {
		Schema     string                     `json:"$schema"`
		ID         string                     `json:"$id"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(audit.Schema, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.ID != audit.SchemaID {
		t.Errorf("$schema %q, $id %q", doc.Schema, doc.ID)
	}
	if _, err := audittest.Schema(); err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	// Every field an event can carry is in the schema (it is closed:
	// additionalProperties false), and the schema names no field the
	// events do not have.
	full := fullEvent(audit.ActionOpen, audit.ResultSuccess)
	line, err := audit.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		t.Fatal(err)
	}
	for name := range doc.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("the schema has %q, which events never carry (or fullEvent misses it)", name)
		}
	}
}

// fullEvent sets every field of an event.
func fullEvent(action audit.Action, result audit.Result) audit.Event {
	at := time.Date(2026, 11, 30, 3, 4, 5, 6e6, time.FixedZone("CET", 3600))
	nsg := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg"
	return audit.Event{Time: at, Action: action, Result: result, Actor: "terraform-provider-jit",
		GrantID: "a1b2c3d4e5", Policy: "web-ssh", NSGIDs: []string{nsg}, RuleName: "jit-web-ssh-g-a1b2c3d4e5",
		Ports: []string{"22/Tcp", "3389/Tcp"}, Source: "203.0.113.7", Requester: "dave@example.com",
		Justification: "incident 7", ApprovalReference: "https://github.com/acme/jit/pull/42",
		ExpiresAt: at.Add(time.Hour), Reason: "expired", Kind: "tampered", CloseLeadSeconds: 19.8,
		Approval: audit.Approval{ApprovedBy: []string{"alice", "renovate[bot]"}, ChangeRef: "acme/jit#42",
			CommitSHA: strings.Repeat("0123456789", 4), ChangeURL: "https://github.com/acme/jit/pull/42"},
		ARMWrites: []audit.ARMWrite{{Method: "PUT", ResourceID: nsg, StatusCode: 201,
			CorrelationRequestID: "6f1c2a8e-1d2b-4c3d-9e8f-0a1b2c3d4e5f", RequestID: "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"}},
	}
}

// Every action with every result validates, with all fields and with only
// the required ones; jitd's actor too.
func TestEveryActionAndResultMatchesTheSchema(t *testing.T) {
	actions := []audit.Action{audit.ActionOpen, audit.ActionClose, audit.ActionRefuse, audit.ActionDrift,
		audit.ActionAdopt, audit.ActionFind, audit.ActionRestore}
	results := []audit.Result{audit.ResultSuccess, audit.ResultFailure, audit.ResultDenied, audit.ResultDryRun}
	for _, a := range actions {
		for _, r := range results {
			audittest.CheckEvent(t, fullEvent(a, r))
			audittest.CheckEvent(t, audit.Event{Time: time.Now(), Action: a, Result: r, Actor: "jitd"})
		}
	}
}

// The schema is strict where the code is: it catches what a wrong event
// would look like, so a passing validation means something.
func TestSchemaRefusesMalformedEvents(t *testing.T) {
	valid, err := audit.Marshal(fullEvent(audit.ActionClose, audit.ResultSuccess))
	if err != nil {
		t.Fatal(err)
	}
	if err := audittest.ValidateLine(valid); err != nil {
		t.Fatalf("the full event does not validate: %v", err)
	}
	mutations := map[string]func(map[string]any){
		"no schema_version":     func(m map[string]any) { delete(m, "schema_version") },
		"schema_version 2":      func(m map[string]any) { m["schema_version"] = 2 },
		"unknown field":         func(m map[string]any) { m["approver"] = "alice" },
		"unknown action":        func(m map[string]any) { m["action"] = "reopen" },
		"time not RFC 3339":     func(m map[string]any) { m["time"] = "30/11/2026" },
		"login with markup":     func(m map[string]any) { m["approved_by"] = []any{"<!channel>"} },
		"short commit":          func(m map[string]any) { m["commit_sha"] = "abc123" },
		"URL with a line break": func(m map[string]any) { m["change_url"] = "https://x.example/\nforged" },
		"ARM write without id":  func(m map[string]any) { m["arm_writes"] = []any{map[string]any{"method": "PUT", "status_code": 200}} },
		"ARM request id w/ space": func(m map[string]any) {
			writes, _ := m["arm_writes"].([]any)
			if w, ok := writes[0].(map[string]any); ok {
				w["request_id"] = "a b"
			}
		},
		"grant id upper case": func(m map[string]any) { m["grant_id"] = "A1" },
		"missing actor":       func(m map[string]any) { delete(m, "actor") },
	}
	for name, mutate := range mutations {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, _ := json.Marshal(m)
		if err := audittest.ValidateLine(b); err == nil {
			t.Errorf("%s: validates, want a schema error", name)
		}
	}
}

func TestMarshalWritesTheSchemaVersion(t *testing.T) {
	line, err := audit.Marshal(audit.Event{Action: audit.ActionFind, Result: audit.ResultSuccess, Actor: "jitd"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(line), `{"schema_version":1,`) {
		t.Errorf("line %s does not start with the schema version", line)
	}
}

// The version is in every encoding of an event, not only in audit lines:
// jitd's status page encodes events itself.
func TestEncodedEventsCarryTheSchemaVersion(t *testing.T) {
	b, err := json.Marshal(struct {
		Events []audit.Event `json:"events"`
	}{[]audit.Event{{Action: audit.ActionFind, Result: audit.ResultSuccess, Actor: "jitd"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"schema_version":1`) {
		t.Errorf("encoded %s has no schema_version 1", b)
	}
}
