package daemon

import (
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

func TestLeadEstimator(t *testing.T) {
	s := time.Second
	l := newLeadEstimator(30 * s)
	if got := l.lead(); got != 0 {
		t.Fatalf("lead with nothing observed = %s, want 0", got)
	}
	l.observe(20 * s)
	if got := l.lead(); got != 20*s {
		t.Fatalf("lead after one 20s write = %s", got)
	}
	// One slow outlier (a write queued behind another) is ignored from the
	// second sample on.
	l.observe(90 * s)
	if got := l.lead(); got != 20*s {
		t.Errorf("lead after a slow outlier = %s, want 20s", got)
	}
	for _, d := range []time.Duration{21 * s, 19 * s, 20 * s} {
		l.observe(d)
	}
	if got := l.lead(); got != 20*s {
		t.Errorf("lead over 20s, 90s, 21s, 19s, 20s = %s, want the median 20s", got)
	}
	// One fast outlier neither.
	l.observe(time.Millisecond)
	if got := l.lead(); got != 20*s {
		t.Errorf("lead after a fast outlier = %s, want 20s", got)
	}
	// A lasting change is followed within a few writes.
	for range 3 {
		l.observe(2 * s)
	}
	if got := l.lead(); got != 2*s {
		t.Errorf("lead after three 2s writes = %s, want 2s", got)
	}
	// Capped by the option, and the option by the domain's bound.
	for range leadSamples {
		l.observe(45 * s)
	}
	if got := l.lead(); got != 30*s {
		t.Errorf("lead after 45s writes = %s, want the cap 30s", got)
	}
	if got := newLeadEstimator(time.Hour).max; got != jit.MaxCloseLead {
		t.Errorf("an hour's cap is %s, want jit.MaxCloseLead", got)
	}
	off := newLeadEstimator(0)
	off.observe(20 * s)
	if got := off.lead(); got != 0 {
		t.Errorf("lead with closing ahead off = %s", got)
	}
}
