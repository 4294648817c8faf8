package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// This file holds end_sessions_at_expiry: the policy asks Azure to
// re-evaluate established flows when its NSGs' rules change
// (flushConnection), so that deleting a grant's rule at expiry cuts the
// sessions it admitted. The setting belongs to the whole NSG, not to the
// policy: the provider remembers the value it found before turning it on,
// and puts it back when the policy stops asking, unless another policy on
// the NSG still asks for it.

// flushFoundKey is the private-state key of sessionSettings.
const flushFoundKey = "flush_connection_found"

// sessionSettings is the flushConnection value each NSG had before this
// policy turned it on, by lower-case NSG id. It is kept in the resource's
// private state (not a user-facing attribute: it describes the NSG before
// the policy, not the policy). Safe for concurrent use: a policy writes its
// NSGs in parallel.
type sessionSettings struct {
	mu    sync.Mutex
	found map[string]bool
}

type privateGetter interface {
	GetKey(ctx context.Context, key string) ([]byte, diag.Diagnostics)
}

type privateSetter interface {
	SetKey(ctx context.Context, key string, value []byte) diag.Diagnostics
}

// loadSessionSettings reads the values found before from private state; a
// resource without them (created before the option existed, or imported)
// knows none.
func loadSessionSettings(ctx context.Context, g privateGetter, diags *diag.Diagnostics) *sessionSettings {
	s := &sessionSettings{found: map[string]bool{}}
	if g == nil {
		return s
	}
	b, d := g.GetKey(ctx, flushFoundKey)
	diags.Append(d...)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &s.found); err != nil {
			diags.AddWarning("Unreadable Private State", fmt.Sprintf("The flushConnection values found before the policy "+
				"could not be read (%v); they will not be put back.", err))
			s.found = map[string]bool{}
		}
	}
	return s
}

// save writes the values found before to private state.
func (s *sessionSettings) save(ctx context.Context, st privateSetter, diags *diag.Diagnostics) {
	if st == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(s.found)
	if err != nil {
		diags.AddError("Unable to Save Private State", err.Error())
		return
	}
	diags.Append(st.SetKey(ctx, flushFoundKey, b)...)
}

// knows reports whether the policy turned flushConnection on for the NSG
// and remembers what was there before.
func (s *sessionSettings) knows(nsgID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.found[strings.ToLower(nsgID)]
	return ok
}

// keep returns the flushConnection value to write on an NSG that has (or
// keeps) policy p (jit.FlushKept decides); nil when nothing is to be
// written.
func (s *sessionSettings) keep(nsgID string, p jit.Policy, current, othersAsk bool) *bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return jit.FlushKept(s.found, nsgID, p.EndSessions, current, othersAsk)
}

// release returns the flushConnection value to put back on an NSG the
// policy leaves (jit.FlushReleased decides); nil when nothing is to be
// written.
func (s *sessionSettings) release(nsgID string, current, othersAsk bool) *bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return jit.FlushReleased(s.found, nsgID, current, othersAsk)
}

// sessionsDiagnostics warns, at plan time, where flushConnection being an
// NSG-wide setting reaches beyond this policy (jit.Policy.SessionNotices).
func sessionsDiagnostics(p jit.Policy, nsgID string, view jit.NSGView, diags *diag.Diagnostics) {
	addNotices(diags, p.SessionNotices(nsgID, view)...)
}
