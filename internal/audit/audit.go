// Package audit is the one schema for audit events, written by the provider
// and by jitd alike: every open, close, refusal and finding is one JSON
// object on one line, so a log pipeline can join both sides by grant id.
//
// Events carry who, what, where and until when, who approved the change
// that made them and the ids Azure gave their writes; never a credential,
// token or secret. The schema is published as a JSON Schema
// (schema/event.v1.json, also Schema) and every event names its version.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Action is what happened.
type Action string

// Actions recorded by the provider and the daemon.
const (
	ActionOpen   Action = "open"   // a grant's allow rule was written
	ActionClose  Action = "close"  // a grant's allow rule was deleted (expiry, destroy, revocation, tampering)
	ActionRefuse Action = "refuse" // a grant request was refused
	ActionDrift  Action = "drift"  // Read found a grant expired or revoked out of band
	ActionAdopt  Action = "adopt"  // a create took over the open rules of the same request; nothing was written
	ActionFind   Action = "find"   // jitd found something it reports but does not change
	// ActionRestore: jitd wrote back a guard or deny-all rule missing from
	// a policy that was otherwise still on the NSG.
	ActionRestore Action = "restore"
)

// Result says whether the action succeeded.
type Result string

// Results.
const (
	ResultSuccess Result = "success"
	ResultFailure Result = "failure"
	ResultDenied  Result = "denied"
	ResultDryRun  Result = "dry_run"
)

// SchemaVersion is the version of the event schema that Marshal writes in
// every event's schema_version. Optional fields may be added within a
// version (the schema file gains them); a field is never removed, renamed
// or given another meaning without a new version.
const SchemaVersion = 1

// Event is one audit record. Fields that do not apply are omitted.
type Event struct {
	SchemaVersion     int       `json:"schema_version"` // always SchemaVersion when encoded
	Time              time.Time `json:"time"`
	Action            Action    `json:"action"`
	Result            Result    `json:"result"`
	Actor             string    `json:"actor"` // "terraform-provider-jit" or "jitd"
	GrantID           string    `json:"grant_id,omitempty"`
	Policy            string    `json:"policy,omitempty"`
	NSGIDs            []string  `json:"nsg_ids,omitempty"`
	RuleName          string    `json:"rule_name,omitempty"`
	Ports             []string  `json:"ports,omitempty"` // "22/Tcp"
	Source            string    `json:"source,omitempty"`
	Requester         string    `json:"requester,omitempty"`
	Justification     string    `json:"justification,omitempty"`
	ApprovalReference string    `json:"approval_reference,omitempty"`
	ExpiresAt         time.Time `json:"expires_at,omitzero"`
	Reason            string    `json:"reason,omitempty"` // why: "expired", "revoked", the refusal, the finding
	Kind              string    `json:"kind,omitempty"`   // finding kind (jitd): "bypass", "missing_deny", "tampered", …
	// CloseLeadSeconds (jitd, a close of an expired grant) is how long
	// before expires_at jitd started the write that closed it: closes start
	// ahead of the expiry by the write latency jitd observes, so that the
	// rule is gone at about the expiry. The rule was not gone earlier than
	// expires_at minus this. Absent when the close started at or after the
	// expiry.
	CloseLeadSeconds float64 `json:"close_lead_seconds,omitempty"`
	// Approval is the approved change the event happened under, from the
	// environment of the Terraform run (ApprovalFromEnv); empty for jitd.
	Approval
	// ARMWrites are the Azure Resource Manager writes made for the event,
	// with the ids Azure answered them with, to match it with the
	// subscription's Activity Log.
	ARMWrites []ARMWrite `json:"arm_writes,omitempty"`
}

// ARMWrite is one write request to Azure Resource Manager (after the SDK's
// retries: the answer the client acted on) and the ids of its answer.
type ARMWrite struct {
	Method     string `json:"method"`      // PUT, PATCH or DELETE
	ResourceID string `json:"resource_id"` // the request's path: the resource written
	StatusCode int    `json:"status_code"` // HTTP status of the answer (the operation's start for a long-running write)
	// CorrelationRequestID is the answer's x-ms-correlation-request-id
	// (the Activity Log's correlationId); RequestID its x-ms-request-id
	// (the Activity Log's properties.serviceRequestId for the write).
	CorrelationRequestID string `json:"correlation_request_id,omitempty"`
	RequestID            string `json:"request_id,omitempty"`
}

// Sink receives events. Implementations must be safe for concurrent use.
type Sink interface {
	Emit(ctx context.Context, e Event) error
}

// Discard drops every event.
type Discard struct{}

// Emit implements Sink.
func (Discard) Emit(context.Context, Event) error { return nil }

// Writer writes events as JSON lines to w, one Write per event so that
// concurrent writers appending to one file do not interleave lines.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a sink writing JSON lines to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Emit implements Sink.
func (s *Writer) Emit(_ context.Context, e Event) error {
	line, err := Marshal(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("write audit event: %w", err)
	}
	return nil
}

// MarshalJSON writes the event with its schema_version, however it is
// encoded (an audit line, a webhook body, jitd's status page).
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // without this method
	e.SchemaVersion = SchemaVersion
	return json.Marshal(plain(e))
}

// Marshal is an event as one JSON line (with the trailing newline), time in UTC.
func Marshal(e Event) ([]byte, error) {
	e.Time = e.Time.UTC()
	if !e.ExpiresAt.IsZero() {
		e.ExpiresAt = e.ExpiresAt.UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return append(b, '\n'), nil
}

// File appends events to a file, opened for each event so that log
// rotation (rename and recreate) needs no signal, and several processes
// (parallel Terraform runs, jitd replicas) can share one file: every event
// is a single append.
type File struct {
	path string
	mu   sync.Mutex
}

// OpenFile checks that path can be appended to and returns a sink for it.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &File{path: path}, nil
}

// Emit implements Sink.
func (s *File) Emit(_ context.Context, e Event) error {
	line, err := Marshal(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	_, werr := f.Write(line)
	return errors.Join(werr, f.Close())
}

// Multi sends each event to every sink and returns every error.
type Multi []Sink

// Emit implements Sink.
func (m Multi) Emit(ctx context.Context, e Event) error {
	var errs []error
	for _, s := range m {
		if err := s.Emit(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReadFile reads back every event of a JSON-lines audit file (for tests and
// tools).
func ReadFile(path string) ([]Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []Event
	for dec.More() {
		var e Event
		if err := dec.Decode(&e); err != nil {
			return out, fmt.Errorf("decode audit event %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}
