package jit

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Clock tells the time. Grant expiry is judged against a Clock so that
// tests can move time without waiting for it.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// EnvTestClockOffsetFile names a file holding a Go duration (for example
// "90s" or "-1h"), added to the system time by the clock ClockFromEnv
// returns. It is a testing hook: the lifecycle suite sets it for the
// provider and jitd together so that grants expire without waiting for
// them. Never set it in production.
const EnvTestClockOffsetFile = "JIT_TEST_CLOCK_OFFSET_FILE"

// ClockFromEnv is the system clock, unless JIT_TEST_CLOCK_OFFSET_FILE is
// set: then Now is the system time plus the duration in that file, read
// again whenever the file changes (its size or modification time).
//
// A test clock never guesses: if the file cannot be read or does not hold
// a Go duration, Now panics with a message naming the file, so a broken
// test set-up stops the process at once instead of judging expiry by some
// other clock. Write the file atomically (write a temporary file, rename
// it over) so a reader never sees half a value.
func ClockFromEnv(getenv func(string) string) Clock {
	path := getenv(EnvTestClockOffsetFile)
	if path == "" {
		return SystemClock{}
	}
	return &offsetClock{path: path}
}

// offsetClock is the test clock of ClockFromEnv.
type offsetClock struct {
	path string

	mu     sync.Mutex
	read   bool
	size   int64
	mtime  time.Time
	offset time.Duration
}

// Now implements Clock.
func (c *offsetClock) Now() time.Time {
	off, err := c.current()
	if err != nil {
		panic(err.Error())
	}
	return time.Now().Add(off)
}

// current returns the offset, reading the file again if it changed.
func (c *offsetClock) current() (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.path)
	if err != nil {
		return 0, fmt.Errorf("%s: test clock offset file unreadable: %w", EnvTestClockOffsetFile, err)
	}
	if c.read && fi.Size() == c.size && fi.ModTime().Equal(c.mtime) {
		return c.offset, nil
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return 0, fmt.Errorf("%s: test clock offset file unreadable: %w", EnvTestClockOffsetFile, err)
	}
	off, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %s does not hold a Go duration: %w", EnvTestClockOffsetFile, c.path, err)
	}
	c.read, c.size, c.mtime, c.offset = true, fi.Size(), fi.ModTime(), off
	return off, nil
}
