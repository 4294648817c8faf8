package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// namePrefix starts the name of every namespace this package creates,
// followed by the creating process's id, so that a later run can tell a
// crashed run's namespaces (their process is gone) from a parallel run's.
const namePrefix = "jitdp-"

var (
	nameSeq      atomic.Int64
	staleCleanup sync.Once
)

// newBaseName returns a namespace name stem unique on this machine.
func newBaseName() string {
	return fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), nameSeq.Add(1))
}

// removeStaleNamespaces deletes the namespaces left by runs whose process
// has ended (a crashed or killed test). A namespace of a live process,
// this one included, is left alone.
func removeStaleNamespaces(ctx context.Context) {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			_ = runIP(ctx, nil, "netns", "delete", e.Name())
		}
	}
}

// runIP runs ip (iproute2; "ip netns exec" for commands in a namespace)
// and returns its stderr in the error when it fails.
func runIP(ctx context.Context, stdin []byte, args ...string) error {
	_, err := output(ctx, stdin, "ip", args...)
	return err
}

func output(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// inNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets fn creates stay in that namespace for their whole
// life, whichever thread later uses them.
func inNetns(name string, fn func() error) error {
	target, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open this thread's network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("join network namespace %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with this
		// goroutine instead of running other code in the wrong namespace.
		return fmt.Errorf("return from network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

func outputCombined(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
