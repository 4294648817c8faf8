package jit

import (
	"slices"
	"time"
)

// Closing ahead of expiry.
//
// A grant's rule is gone only when the NSG write that deletes it has
// completed, and an NSG write is a long-running operation: seconds on
// Azure, 20 s and more when Azure is slow. A close that starts at the
// expiry therefore ends a write later. jitd starts it earlier instead, by
// the lead: the time its own NSG writes have been seen to take. The rule
// is then gone at about the expiry, not a write after it.
//
// The promise bounds how early: a close started at T carries only grants
// that expire by T + lead (CloseDue), so no rule is gone more than the lead
// before its expiry, however fast the write turns out to be (a write
// cannot take effect before it starts). The lead is at most MaxCloseLead.
//
// The price is on the other side: a write takes about the lead, and writes
// to one NSG are serialised, so two grants on one NSG whose expiries are
// less than a write apart (gap < lead) cannot both be closed on time. One
// write for both ends the earlier one gap late; two writes end the later
// one lead - gap late (its write waits for the first). CloseStart picks the
// lesser: one write when gap <= lead/2. No grant is thus late by more than
// half a write because of another on its NSG.

// MaxCloseLead is the most ahead of its expiry that a grant's close ever
// starts: half the shortest grant there is, so that every grant keeps at
// least half of its window, however slow Azure's writes are seen to be.
const MaxCloseLead = MinGrantDuration / 2

// ClampCloseLead bounds a lead to [0, MaxCloseLead].
func ClampCloseLead(lead time.Duration) time.Duration {
	return min(max(lead, 0), MaxCloseLead)
}

// CloseDue reports whether a grant expiring at exp is closed by a write
// started at now, given the lead (clamped by ClampCloseLead): it has
// expired, or expires within the lead.
func CloseDue(exp, now time.Time, lead time.Duration) bool {
	return !exp.After(now.Add(ClampCloseLead(lead)))
}

// CloseStart is when the next close write of an NSG whose open grants
// expire at expiries should start, given the lead: the earliest expiry
// minus the lead, moved later to take along the grants expiring within half
// the lead of the earliest, so that they share one write. (Each NSG's
// writes are serialised: a second write for them would end up to a whole
// write late; sharing the first ends the earliest at most half a write
// late. The grants one Terraform apply opens on an NSG are written
// together, so their expiries fall in one second, or straddle two.) With no
// lead nothing is moved: writes are then instant, and never overlap. ok is
// false when there is no expiry.
func CloseStart(expiries []time.Time, lead time.Duration) (at time.Time, ok bool) {
	if len(expiries) == 0 {
		return time.Time{}, false
	}
	lead = ClampCloseLead(lead)
	first := slices.MinFunc(expiries, time.Time.Compare)
	last := first
	for _, e := range expiries {
		if e.After(last) && !e.After(first.Add(lead/2)) {
			last = e
		}
	}
	return last.Add(-lead), true
}
