package testproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Builds builds binaries from the working tree into one temporary
// directory, each at most once per test process: a go build takes seconds
// and every test of the process wants the same binary. The zero value is
// ready to use; call Remove from TestMain once the tests have run.
type Builds struct {
	// Pattern names the temporary directory, as os.MkdirTemp does.
	Pattern string

	mu     sync.Mutex
	dir    string
	dirErr error
	done   map[string]*build
}

type build struct {
	once sync.Once
	err  error
}

// Dir returns the directory the binaries go to, creating it on first use.
// It outlives any single test (Remove deletes it), so it is not a
// t.TempDir of the first test that asks.
func (b *Builds) Dir() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir == "" && b.dirErr == nil {
		b.dir, b.dirErr = os.MkdirTemp("", b.Pattern) //nolint:usetesting // see above
	}
	return b.dir, b.dirErr
}

// Build runs `go build <flags> -o <Dir>/<out> <pkg>` the first time it is
// asked for out, and returns the binary's path. Later calls for the same
// out return the first call's result, error included.
func (b *Builds) Build(out, pkg string, flags ...string) (string, error) {
	dir, err := b.Dir()
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	if b.done == nil {
		b.done = map[string]*build{}
	}
	one, ok := b.done[out]
	if !ok {
		one = &build{}
		b.done[out] = one
	}
	b.mu.Unlock()
	path := filepath.Join(dir, out)
	one.once.Do(func() {
		args := append(append([]string{"build"}, flags...), "-o", path, pkg)
		if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			one.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	})
	return path, one.err
}

// Remove deletes the directory and every binary in it.
func (b *Builds) Remove() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}
