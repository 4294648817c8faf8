package testproc

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Azuresim is the local Azure running as a process, as a developer or CI
// job runs it, rather than in the test's own process.
type Azuresim struct {
	Cmd *exec.Cmd
	// Env is what azuresim wrote to its env file: the ARM_* variables,
	// SSL_CERT_FILE and AZURESIM_URL.
	Env map[string]string
	URL string
}

// StartAzuresim starts the azuresim binary on a free loopback port with its
// env file in dir, and waits up to timeout for that file.
func StartAzuresim(bin, dir string, timeout time.Duration) (*Azuresim, error) {
	envFile := filepath.Join(dir, "azure.env")
	a := &Azuresim{Cmd: exec.Command(bin, "-listen", "127.0.0.1:0", "-env-file", envFile, "-log-level", "warn")}
	a.Cmd.Stdout, a.Cmd.Stderr = io.Discard, os.Stderr
	if err := a.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start azuresim: %w", err)
	}
	var raw []byte
	if err := Poll(50*time.Millisecond, timeout, func() bool {
		var err error
		raw, err = os.ReadFile(envFile)
		return err == nil
	}); err != nil {
		return a, fmt.Errorf("azuresim wrote no env file: %w", err)
	}
	a.Env = ParseExports(raw)
	a.URL = a.Env["AZURESIM_URL"]
	return a, nil
}

// Stop sends SIGTERM and waits for the process to end.
func (a *Azuresim) Stop() {
	if a == nil || a.Cmd.Process == nil {
		return
	}
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	_ = a.Cmd.Wait()
}

// Environ is Env as KEY=value entries, in a stable order, for a child
// process.
func (a *Azuresim) Environ() []string {
	env := make([]string, 0, len(a.Env))
	for _, k := range slices.Sorted(maps.Keys(a.Env)) {
		env = append(env, k+"="+a.Env[k])
	}
	return env
}

// ParseExports reads azuresim's `export K='v'` lines.
func ParseExports(b []byte) map[string]string {
	env := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "export ")), "=")
		if ok {
			env[k] = strings.ReplaceAll(strings.Trim(v, "'"), `'\''`, "'")
		}
	}
	return env
}

// Event is the part of a local Azure write event that tests look at.
type Event struct {
	Seq       int64     `json:"seq"`
	Operation string    `json:"operation"`
	NSGID     string    `json:"nsgId"`
	RuleName  string    `json:"ruleName"`
	Accepted  time.Time `json:"accepted"`
	Completed time.Time `json:"completed"`
	Result    string    `json:"result"`
	// RemovedRules names the rules a whole-NSG write removed.
	RemovedRules []string `json:"removedRules"`
	// The ids the write was answered with (x-ms-correlation-request-id,
	// x-ms-request-id).
	CorrelationRequestID string `json:"correlationRequestId"`
	RequestID            string `json:"requestId"`
}

// Events reads the local Azure's event log from its /_sim/events endpoint
// at url.
func Events(client *http.Client, url string) ([]Event, error) {
	resp, err := client.Get(url + "/_sim/events")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct{ Events []Event }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Events, nil
}

// SucceededDeletes indexes the successful rule deletes among events by
// lower-case NSG id + "/" + rule name: a rule's own delete, or the
// whole-NSG write that left it out (jitd closes a grant that way when it
// keeps a record of it).
func SucceededDeletes(events []Event) map[string]Event {
	out := map[string]Event{}
	for _, e := range events {
		if e.Result != "Succeeded" {
			continue
		}
		switch e.Operation {
		case "DeleteSecurityRuleOperation":
			out[strings.ToLower(e.NSGID)+"/"+e.RuleName] = e
		case "PutNetworkSecurityGroupOperation":
			for _, name := range e.RemovedRules {
				if _, seen := out[strings.ToLower(e.NSGID)+"/"+name]; !seen {
					out[strings.ToLower(e.NSGID)+"/"+name] = e
				}
			}
		}
	}
	return out
}
