package testproc

import (
	"fmt"
	"time"
)

// Poll checks cond every interval until it holds or deadline passes: the
// way to wait for another process's effect, which no channel reports.
func Poll(interval, deadline time.Duration, cond func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			return fmt.Errorf("condition not met within %s", deadline)
		}
		<-tick.C
	}
	return nil
}

// Tail is the end of a long command output, enough for its error.
func Tail(s string) string {
	const n = 4000
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
