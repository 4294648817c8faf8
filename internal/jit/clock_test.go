package jit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envWith(k, v string) func(string) string {
	return func(key string) string {
		if key == k {
			return v
		}
		return ""
	}
}

func TestClockFromEnvIsTheSystemClockByDefault(t *testing.T) {
	if _, ok := ClockFromEnv(envWith("OTHER", "x")).(SystemClock); !ok {
		t.Fatal("ClockFromEnv without JIT_TEST_CLOCK_OFFSET_FILE is not the system clock")
	}
}

// writeOffset replaces the file as the lifecycle suite does: write, then
// rename over, with a distinct modification time so a change is seen even
// when the size stays the same.
func writeOffset(t *testing.T, path, v string, mtime time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestClockFromEnvAddsTheOffsetAndSeesChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	base := time.Now().Add(-time.Hour)
	writeOffset(t, path, "2h\n", base)
	c := ClockFromEnv(envWith(EnvTestClockOffsetFile, path))

	before := time.Now()
	got := c.Now()
	if got.Before(before.Add(2*time.Hour)) || got.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("Now() = %s, want the system time + 2h (system time %s)", got, before)
	}
	// Same size, new content: the modification time tells the change.
	writeOffset(t, path, "3h\n", base.Add(time.Second))
	before = time.Now()
	if got := c.Now(); got.Before(before.Add(3 * time.Hour)) {
		t.Fatalf("Now() = %s after the offset became 3h, want at least %s", got, before.Add(3*time.Hour))
	}
	writeOffset(t, path, "-30m", base.Add(2*time.Second))
	if got := c.Now(); got.After(time.Now().Add(-30 * time.Minute)) {
		t.Fatalf("Now() = %s after the offset became -30m", got)
	}
}

func TestClockFromEnvFailsLoudlyOnABadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("soon"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "missing"), "not a duration": bad} {
		t.Run(name, func(t *testing.T) {
			c := ClockFromEnv(envWith(EnvTestClockOffsetFile, path))
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.Contains(msg, EnvTestClockOffsetFile) || !strings.Contains(msg, path) {
					t.Fatalf("Now() on %s: recovered %v, want a panic naming %s and the file", name, r, EnvTestClockOffsetFile)
				}
			}()
			c.Now()
			t.Fatalf("Now() on %s returned instead of failing", name)
		})
	}
	// A file that goes bad after a good read fails too: no silent fallback.
	good := filepath.Join(dir, "good")
	writeOffset(t, good, "1m", time.Now().Add(-time.Minute))
	c := ClockFromEnv(envWith(EnvTestClockOffsetFile, good))
	c.Now()
	writeOffset(t, good, "later", time.Now())
	defer func() {
		if recover() == nil {
			t.Fatal("Now() after the file became invalid did not fail")
		}
	}()
	c.Now()
}
