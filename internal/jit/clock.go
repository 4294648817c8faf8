package jit

import "time"

// Clock tells the time. Grant expiry is judged against a Clock so that
// tests can move time without waiting for it.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }
