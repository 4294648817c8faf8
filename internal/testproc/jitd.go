package testproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Jitd is a running jitd process.
type Jitd struct {
	Cmd *exec.Cmd
	// Addr serves /healthz, /readyz and /metrics.
	Addr string
	// Exited receives the result of Cmd.Wait once.
	Exited chan error
	logs   SyncBuffer
}

// StartJitd starts cmd, a jitd listening on 127.0.0.1:0, and waits up to
// timeout for it to serve and then for its first full pass (/readyz 200).
// cleanup runs at the end of the test, registered before the wait so that
// a jitd that never gets ready is ended too.
func StartJitd(t testing.TB, cmd *exec.Cmd, timeout time.Duration, cleanup func(*Jitd)) *Jitd {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Jitd{Cmd: cmd, Exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jitd: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = p.logs.Write(append(line, '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving health and metrics" {
				addr <- rec.Addr
			}
		}
	}()
	go func() { p.Exited <- cmd.Wait() }()
	t.Cleanup(func() { cleanup(p) })
	select {
	case p.Addr = <-addr:
	case err := <-p.Exited:
		t.Fatalf("jitd exited at startup: %v\n%s", err, p.Logs())
	case <-time.After(timeout):
		t.Fatalf("jitd did not start serving\n%s", p.Logs())
	}
	if err := Poll(50*time.Millisecond, timeout, func() bool { code, _ := p.Get("/readyz"); return code == http.StatusOK }); err != nil {
		t.Fatalf("jitd not ready: %v\n%s", err, p.Logs())
	}
	return p
}

// Logs is what jitd has written to stderr so far.
func (p *Jitd) Logs() string { return p.logs.String() }

// Get fetches path from jitd's health and metrics address; 0 when it does
// not answer.
func (p *Jitd) Get(path string) (int, string) {
	resp, err := http.Get("http://" + p.Addr + path) //nolint:gosec,noctx // a loopback URL of our own process
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// SyncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
