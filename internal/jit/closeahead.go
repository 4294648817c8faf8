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
// more than CloseCoalesce but less than a write apart cannot both be closed
// on time: the second one's write waits for the first's (CloseStart puts
// grants whose expiries are within CloseCoalesce into one write instead).

// MaxCloseLead is the most ahead of its expiry that a grant's close ever
// starts: half the shortest grant there is, so that every grant keeps at
// least half of its window, however slow Azure's writes are seen to be.
const MaxCloseLead = MinGrantDuration / 2

// CloseCoalesce is how far apart the expiries of grants on one NSG may be
// and still be closed by one write (started for the latest of them, so the
// earliest ends up to CloseCoalesce late rather than a whole write late).
// Expiries are whole seconds, and the grants one Terraform apply opens on
// an NSG are written together, so their expiries fall within a second or
// two.
const CloseCoalesce = time.Second

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
// minus the lead, moved later to take along the grants expiring within
// CloseCoalesce of the earliest, so that they share one write (each NSG's
// writes are serialised: a second write would end a whole write later).
// ok is false when there is no expiry.
func CloseStart(expiries []time.Time, lead time.Duration) (at time.Time, ok bool) {
	if len(expiries) == 0 {
		return time.Time{}, false
	}
	first := slices.MinFunc(expiries, time.Time.Compare)
	last := first
	for _, e := range expiries {
		if e.After(last) && !e.After(first.Add(CloseCoalesce)) {
			last = e
		}
	}
	return last.Add(-ClampCloseLead(lead)), true
}
