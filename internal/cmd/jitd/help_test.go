package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestHelpConventions: every way of asking for help prints the usage to
// stdout and exits 0; every usage error exits 2 and prints its message once
// on stderr, with no usage text.
func TestHelpConventions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"--help"}, "Usage: jitd [flags]"},
		{[]string{"-h"}, "Usage: jitd [flags]"},
		{[]string{"-help"}, "Usage: jitd [flags]"},
		{[]string{"help"}, "Commands:\n  scan"},
		{[]string{"help", "scan"}, "Usage: jitd scan [flags]"},
		{[]string{"scan", "--help"}, "Usage: jitd scan [flags]"},
		{[]string{"scan", "-h"}, "Usage: jitd scan [flags]"},
		{[]string{"status", "--help"}, "Usage: jitd status [flags]"},
		{[]string{"request", "--help"}, "Usage: jitd request"},
		{[]string{"help", "request"}, "--my-ip-url"},
		{[]string{"completion", "--help"}, "Usage: jitd completion bash|zsh|fish"},
		{[]string{"help", "help"}, "Usage: jitd help [command]"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), tc.args, envOf(nil), &stdout, &stderr)
		msg, code := exitStatus(err)
		if code != ExitOK || msg != "" || stderr.Len() > 0 || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("jitd %q: exit %d %q, stderr %q, stdout lacks %q:\n%s", tc.args, code, msg, stderr.String(), tc.want, stdout.String())
		}
		if !strings.Contains(stdout.String(), "Exit codes:\n  0  success\n  1  failure") {
			t.Errorf("jitd %q: the usage shows no exit codes:\n%s", tc.args, stdout.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "jitd: flag provided but not defined: -bogus\nRun 'jitd --help' for usage."},
		{[]string{"--interval", "soon"}, "jitd: invalid value \"soon\" for flag -interval"},
		{[]string{"--interval", "1ms"}, "jitd: --interval 1ms is too short"},
		{[]string{"nope"}, "jitd: unknown command \"nope\"; the commands are " + strings.Join(commandNames(), ", ")},
		{[]string{"scan", "--bogus"}, "jitd scan: flag provided but not defined: -bogus\nRun 'jitd scan --help' for usage."},
		{[]string{"scan", "--ports", "ssh"}, "jitd scan: invalid value \"ssh\" for flag -ports"},
		{[]string{"scan", "--output", "yaml"}, "jitd scan: --output \"yaml\": want table or json"},
		{[]string{"scan", "stray"}, "jitd scan: unexpected arguments: [\"stray\"]"},
		{[]string{"status", "--concurrency", "0"}, "jitd status: --concurrency must be at least 1"},
		{[]string{"request", "--for", "1 hour"}, "jitd request: Invalid Access Request"},
		{[]string{"help", "nope"}, "jitd help: no help for \"nope\""},
		{[]string{"completion", "tcsh"}, "jitd completion: no completion for shell \"tcsh\""},
		{[]string{"completion"}, "jitd completion: name a shell"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), tc.args, envOf(nil), &stdout, &stderr)
		msg, code := exitStatus(err)
		if code != ExitUsage || !strings.HasPrefix(msg, tc.want) {
			t.Errorf("jitd %q: exit %d, message %q; want %d and %q", tc.args, code, msg, ExitUsage, tc.want)
		}
		if stdout.Len() > 0 || stderr.Len() > 0 {
			t.Errorf("jitd %q printed more than its error: stdout %q, stderr %q", tc.args, stdout.String(), stderr.String())
		}
	}
}

// TestUsageOfTheProcess runs the jitd binary: help on stdout with exit 0,
// a usage error once on stderr with exit 2.
func TestUsageOfTheProcess(t *testing.T) {
	la := startLocalAzure(t)
	for _, args := range [][]string{{"--help"}, {"help", "scan"}, {"scan", "--help"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(la.jitd, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.HasPrefix(stdout.String(), "Usage: jitd") {
			t.Errorf("jitd %q: %v, stderr %q, stdout:\n%s", args, err, stderr.String(), stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(la.jitd, "scan", "--bogus")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitUsage || stdout.Len() > 0 ||
		stderr.String() != "jitd scan: flag provided but not defined: -bogus\nRun 'jitd scan --help' for usage.\n" {
		t.Errorf("jitd scan --bogus: %v, stdout %q, stderr %q; want exit %d and the error once", err, stdout.String(), stderr.String(), ExitUsage)
	}
}
