package jit

import (
	"testing"
	"time"
)

func TestCloseDue(t *testing.T) {
	exp := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		now  time.Time
		lead time.Duration
		want bool
	}{
		{"expired, no lead", exp, 0, true},
		{"before expiry, no lead", exp.Add(-time.Nanosecond), 0, false},
		{"within the lead", exp.Add(-20 * time.Second), 20 * time.Second, true},
		{"just outside the lead", exp.Add(-20*time.Second - time.Nanosecond), 20 * time.Second, false},
		{"a lead over the cap is capped", exp.Add(-MaxCloseLead - time.Second), time.Hour, false},
		{"at the cap", exp.Add(-MaxCloseLead), time.Hour, true},
		{"a negative lead is none", exp.Add(-time.Second), -time.Minute, false},
	} {
		if got := CloseDue(exp, tc.now, tc.lead); got != tc.want {
			t.Errorf("%s: CloseDue(exp, exp%+v, %s) = %v, want %v", tc.name, tc.now.Sub(exp), tc.lead, got, tc.want)
		}
	}
}

// The invariant the scheduling rests on: a grant closed by a write started
// at CloseStart is due then (so it is in the write), and is never closed
// by a write started more than the lead before its expiry.
func TestCloseStart(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	lead := 20 * time.Second
	if _, ok := CloseStart(nil, lead); ok {
		t.Error("CloseStart of no expiries is ok")
	}
	// One expiry: the lead before it.
	if at, _ := CloseStart([]time.Time{t0}, lead); !at.Equal(t0.Add(-lead)) {
		t.Errorf("one expiry: start %v, want %v", at, t0.Add(-lead))
	}
	// Expiries within half the lead of the earliest share its write,
	// which starts for the latest of them; one further out does not move
	// it.
	exps := []time.Time{t0.Add(11 * time.Second), t0.Add(10 * time.Second), t0, t0.Add(time.Second)}
	at, _ := CloseStart(exps, lead)
	if want := t0.Add(10*time.Second - lead); !at.Equal(want) {
		t.Errorf("start %v, want %v", at, want)
	}
	for _, e := range exps {
		due := CloseDue(e, at, lead)
		if inWindow := !e.After(t0.Add(lead / 2)); due != inWindow {
			t.Errorf("expiry %v: due at the start = %v, want %v", e.Sub(t0), due, inWindow)
		}
		if due && at.Before(e.Add(-lead)) {
			t.Errorf("expiry %v: its write starts %s before it, more than the lead %s", e.Sub(t0), e.Sub(at), lead)
		}
	}
	// With no lead (instant writes) grants a second apart are not moved
	// together: their writes do not overlap.
	if at, _ := CloseStart([]time.Time{t0.Add(time.Second), t0}, 0); !at.Equal(t0) {
		t.Errorf("start with no lead = %v, want the earliest expiry %v", at, t0)
	}
	// The lead is capped.
	if at, _ := CloseStart([]time.Time{t0}, time.Hour); !at.Equal(t0.Add(-MaxCloseLead)) {
		t.Errorf("start with an hour's lead = %v, want the cap %v", at, t0.Add(-MaxCloseLead))
	}
}
