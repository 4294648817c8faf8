package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
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
// keeps) policy p, given the NSG's current value and whether another policy
// there asks for it; nil when nothing is to be written. When p ends
// sessions, the current value is remembered the first time; when it no
// longer does, the remembered value is put back.
func (s *sessionSettings) keep(nsgID string, p jit.Policy, current, othersAsk bool) *bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(nsgID)
	if p.EndSessions {
		if _, ok := s.found[key]; !ok {
			s.found[key] = current
		}
		if !current {
			return ptrTo(true)
		}
		return nil
	}
	return s.releaseLocked(key, current, othersAsk)
}

// release returns the flushConnection value to put back on an NSG the
// policy leaves; nil when nothing is to be written (the value found is not
// known, it is the current one, or another policy there asks for it).
func (s *sessionSettings) release(nsgID string, current, othersAsk bool) *bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.releaseLocked(strings.ToLower(nsgID), current, othersAsk)
}

func (s *sessionSettings) releaseLocked(key string, current, othersAsk bool) *bool {
	found, ok := s.found[key]
	if !ok {
		return nil
	}
	delete(s.found, key)
	if othersAsk || found == current {
		return nil
	}
	return ptrTo(found)
}

// otherPoliciesEndingSessions names the policies other than name on the NSG
// that end sessions at expiry, sorted.
func otherPoliciesEndingSessions(view jit.NSGView, name string) []string {
	var out []string
	for n, dp := range view.Policies {
		if n != name && dp.Problem == "" && dp.Policy.EndSessions {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// otherPolicies names the policies other than name on the NSG, sorted.
func otherPolicies(view jit.NSGView, name string) []string {
	var out []string
	for n := range view.Policies {
		if n != name {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// sessionsDiagnostics warns, at plan time, where flushConnection being an
// NSG-wide setting reaches beyond this policy: another policy on the NSG
// would have its sessions cut too, or this policy's sessions are cut
// because another asks for it.
func sessionsDiagnostics(p jit.Policy, nsgID string, view jit.NSGView, diags *diag.Diagnostics) {
	switch others := otherPolicies(view, p.Name); {
	case p.EndSessions && len(others) > 0:
		diags.AddWarning("Live Sessions End for the Whole NSG",
			fmt.Sprintf("end_sessions_at_expiry sets flushConnection on %s, which applies to the whole NSG: sessions admitted "+
				"by policy %s and by every other rule there are re-evaluated too whenever the NSG's rules change, and cut when "+
				"they are no longer allowed.", nsgID, strings.Join(others, ", ")))
	case !p.EndSessions:
		if asking := otherPoliciesEndingSessions(view, p.Name); len(asking) > 0 {
			diags.AddWarning("Live Sessions End at Expiry on This NSG",
				fmt.Sprintf("Policy %s on %s ends live sessions at expiry (flushConnection), so the sessions this policy's "+
					"grants admit there are cut at expiry too, although end_sessions_at_expiry is false here.",
					strings.Join(asking, ", "), nsgID))
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
