package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// fakeStatusClient is fakeRules with flushConnection.
type fakeStatusClient struct {
	fakeRules
	flush map[string]bool
	admin map[string][]jit.AdminRule
}

func (f fakeStatusClient) AdminRules(_ context.Context, id string) ([]jit.AdminRule, error) {
	return f.admin[id], nil
}

func (f fakeStatusClient) FlushConnection(_ context.Context, id string) (bool, error) {
	on, ok := f.flush[id]
	if !ok {
		return false, errors.New("forbidden")
	}
	return on, nil
}

func grantOf(t *testing.T, p jit.Policy, id, src, requester string, exp time.Time, offset int32) jit.SecurityRule {
	t.Helper()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "30m", Requester: requester})
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	return p.GrantRule(id, spec, exp, lo+offset)
}

func TestParseStatusFlags(t *testing.T) {
	o, err := parseStatusFlags([]string{"--resource-group", "rg", "--policy", "web", "--requester", "alice@example.com", "--json"})
	if err != nil || o.output != "json" || o.policy != "web" || o.requester != "alice@example.com" || len(o.resourceGroups) != 1 {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--output", "yaml"}, {"--concurrency", "0"}, {"stray"}, {"--bogus"}} {
		if _, err := parseStatusFlags(args); err == nil {
			t.Errorf("parseStatusFlags(%q) succeeded", args)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"status", "--help"}, envOf(nil), &stdout, &bytes.Buffer{}); err != nil ||
		!strings.Contains(stdout.String(), "Exit codes:\n  0") {
		t.Errorf("--help: %v\n%s", err, stdout.String())
	}
	// A usage error is exit code 2, before anything is read.
	err = run(t.Context(), []string{"status", "--output", "yaml"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if _, code := exitStatus(err); code != ExitUsage {
		t.Errorf("usage error: %v, want exit code %d", err, ExitUsage)
	}
}

func TestReadStatus(t *testing.T) {
	p := webPolicy(t, 100)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	web, clean, unreadable := nsgIDOf("rg", "web"), nsgIDOf("rg", "clean"), nsgIDOf("rg2", "unreadable")
	client := fakeStatusClient{fakeRules: fakeRules{
		scopes: map[string][]string{"s1/rg": {web, clean}, "s1/rg2": {unreadable}},
		rules: map[string][]jit.SecurityRule{
			web:   append(p.Rules(), grantOf(t, p, "a1", "203.0.113.7", "alice@example.com", now.Add(25*time.Minute), 1)),
			clean: p.Rules(),
		},
	}}
	o := statusOptions{concurrency: 2}
	clock := func() time.Time { return now }

	t.Run("open grant", func(t *testing.T) {
		sc := &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "rg"}}}
		st := readStatus(t.Context(), sc, client, o, clock, io.Discard)
		if err := statusVerdict(st); err != nil {
			t.Fatalf("verdict %v", err)
		}
		var table bytes.Buffer
		if err := writeStatus(&table, st, "table"); err != nil {
			t.Fatal(err)
		}
		t.Logf("jitd status:\n%s", table.String())
		for _, want := range []string{
			"POLICY  NSG       PORT    GRANT  REQUESTER          SOURCE       OPENED   EXPIRES               LEFT   STATE",
			"web     rg/web    22/Tcp  a1     alice@example.com  203.0.113.7  unknown  2026-11-25T12:25:00Z  25m0s  open",
			"web     rg/clean  22/Tcp  -      -                  -            -        -                     -      no grant",
			"web on rg/web: intact; sessions ended at expiry: no",
			"2 NSG(s) read: 1 active grant(s), next expiry 2026-11-25T12:25:00Z; 0 finding(s) need attention.",
		} {
			if !strings.Contains(table.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, table.String())
			}
		}
	})

	t.Run("nothing open", func(t *testing.T) {
		sc := &scope{client: client, nsgs: []string{clean}}
		st := readStatus(t.Context(), sc, client, o, clock, io.Discard)
		var table bytes.Buffer
		_ = writeStatus(&table, st, "table")
		if err := statusVerdict(st); err != nil || !strings.Contains(table.String(), "1 NSG(s) read: no grant is open and nothing needs attention.") {
			t.Errorf("verdict %v\n%s", err, table.String())
		}
	})

	t.Run("incomplete never says nothing is open", func(t *testing.T) {
		sc := &scope{client: client, nsgs: []string{clean, unreadable}}
		st := readStatus(t.Context(), sc, client, o, clock, io.Discard)
		var table bytes.Buffer
		_ = writeStatus(&table, st, "table")
		out := table.String()
		if strings.Contains(out, "no grant is open") || !strings.Contains(out, "INCOMPLETE: 1 of 2 NSG(s) in scope read") ||
			!strings.Contains(out, "error: "+unreadable) {
			t.Errorf("table:\n%s", out)
		}
		err := statusVerdict(st)
		var ec *exitCodeError
		if err == nil || errors.As(err, &ec) {
			t.Errorf("verdict %v, want a plain error (exit 1)", err)
		}
	})

	t.Run("attention", func(t *testing.T) {
		hostileName := "evil\x1b[31m\tname"
		c := fakeStatusClient{fakeRules: fakeRules{rules: map[string][]jit.SecurityRule{
			web: append(p.Rules(), grantOf(t, p, "x1", "203.0.113.9", "eve@example.com", now.Add(-time.Minute), 2),
				jit.SecurityRule{Name: hostileName, Priority: 90, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
					SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}),
		}}}
		sc := &scope{client: c, nsgs: []string{web}}
		st := readStatus(t.Context(), sc, c, o, clock, io.Discard)
		var ec *exitCodeError
		if err := statusVerdict(st); !errors.As(err, &ec) || ec.code != ExitAttention {
			t.Fatalf("verdict %v, want exit code %d", err, ExitAttention)
		}
		var table bytes.Buffer
		_ = writeStatus(&table, st, "table")
		out := table.String()
		t.Logf("jitd status:\n%s", out)
		if strings.Contains(out, "\x1b") || !strings.Contains(out, `"evil\x1b[31m\tname"`) {
			t.Errorf("a control character in a rule name reached the terminal:\n%q", out)
		}
		for _, want := range []string{"closing: expired", "Needs attention:", "rg/web expired policy web rule jit-web-g-x1", "rg/web bypass policy web"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("json and filters", func(t *testing.T) {
		sc := &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "rg"}}}
		st := readStatus(t.Context(), sc, client, statusOptions{concurrency: 1, requester: "bob@example.com"}, clock, io.Discard)
		var js bytes.Buffer
		if err := writeStatus(&js, st, "json"); err != nil {
			t.Fatal(err)
		}
		var got daemon.Status
		if err := json.Unmarshal(js.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if !got.Complete || got.NSGsRead != 2 || len(got.Policies) != 0 || got.Filter.Requester != "bob@example.com" {
			t.Errorf("JSON: %s", js.String())
		}
	})
}

// TestStatusAgainstLocalAzure runs the jitd binary against the local
// Azure: exit codes 0, 3 and 1, the table and the JSON.
func TestStatusAgainstLocalAzure(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	exp := time.Now().Add(30 * time.Minute).Truncate(time.Second)
	nsg := la.createNSG(t, "status-open", "nsg-web", append(p.Rules(), grantOf(t, p, "s1", "203.0.113.7", "alice@example.com", exp, 1))...)
	bypass := sshFromInternet()
	bypass.Priority = 100 // ahead of the policy's band, which starts at 200 here
	la.createNSG(t, "status-bypass", "nsg-web", append(webPolicy(t, 200).Rules(), bypass)...)

	status := func(args ...string) (string, int) {
		cmd := exec.Command(la.jitd, append([]string{"status"}, args...)...)
		cmd.Env = la.environ()
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			return string(out), exitErr.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := status("--resource-group", "status-open")
	t.Logf("jitd status --resource-group status-open:\n%s", out)
	if code != 0 || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "1 NSG(s) read: 1 active grant(s)") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	out, code = status("--resource-group", "status-open", "--json", "--requester", "alice@example.com")
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.ActiveGrants != 1 ||
		!strings.EqualFold(st.Policies[0].NSGs[0].NSGID, nsg) || st.Policies[0].NSGs[0].Ports[0].Grants[0].ID != "s1" {
		t.Errorf("exit %d, %v:\n%s", code, err, out)
	}
	out, code = status("--resource-group", "status-bypass")
	t.Logf("jitd status --resource-group status-bypass:\n%s", out)
	if code != ExitAttention || !strings.Contains(out, "bypass: rule AllowSSHFromInternet") {
		t.Errorf("exit %d, want %d:\n%s", code, ExitAttention, out)
	}
	out, code = status("--resource-group", "status-open", "--nsg", nsgIDOf("status-open", "no-such-nsg"))
	if code != 1 || strings.Contains(out, "no grant is open") || !strings.Contains(out, "INCOMPLETE") {
		t.Errorf("exit %d, want 1:\n%s", code, out)
	}
	if _, code = status("--output", "yaml"); code != ExitUsage {
		t.Errorf("usage error: exit %d, want %d", code, ExitUsage)
	}
}

// A security admin rule that decides a protected port shows on the port
// and needs attention.
func TestReadStatusShowsAdminOverrides(t *testing.T) {
	p := webPolicy(t, 100)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	web := nsgIDOf("rg", "web")
	client := fakeStatusClient{fakeRules: fakeRules{
		scopes: map[string][]string{"s1/rg": {web}},
		rules:  map[string][]jit.SecurityRule{web: p.Rules()},
	}, admin: map[string][]jit.AdminRule{web: {{Name: "always-ssh", Priority: 10, Access: jit.AdminAlwaysAllow,
		Direction: jit.Inbound, Protocol: "Tcp", Sources: []string{"*"}, DestinationPorts: []string{"22"}}}}}
	sc := &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "rg"}}}
	st := readStatus(t.Context(), sc, client, statusOptions{concurrency: 1}, func() time.Time { return now }, io.Discard)
	var ec *exitCodeError
	if err := statusVerdict(st); !errors.As(err, &ec) || ec.code != ExitAttention {
		t.Errorf("verdict %v, want attention", err)
	}
	var table bytes.Buffer
	if err := writeStatus(&table, st, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "admin rule always-ssh: AlwaysAllow") || !strings.Contains(table.String(), "admin_override") {
		t.Errorf("the table does not show the admin rule:\n%s", table.String())
	}
}

// A security admin rule in effect for the NSG's virtual network shows in
// jitd status (attention) and in jitd scan (exposed by the admin rule),
// against the local Azure process.
func TestStatusAndScanShowSecurityAdminRules(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	nsg := la.createNSG(t, "status-admin", "nsg-web", p.Rules()...)
	vnet := la.createVNet(t, "status-admin", "vnet-web", nsg)
	la.setAdminRules(t, vnet, map[string]any{"name": "always-ssh", "properties": map[string]any{
		"access": "AlwaysAllow", "priority": 10, "direction": "Inbound", "protocol": "Tcp",
		"sources":               []map[string]string{{"addressPrefix": "*", "addressPrefixType": "IPPrefix"}},
		"destinations":          []map[string]string{{"addressPrefix": "*", "addressPrefixType": "IPPrefix"}},
		"destinationPortRanges": []string{"22"},
	}})
	for _, args := range [][]string{{"status"}, {"scan"}} {
		cmd := exec.Command(la.jitd, append(args, "--resource-group", "status-admin")...)
		cmd.Env = la.environ()
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitAttention {
			t.Errorf("jitd %s: %v, want exit code %d\n%s", args[0], err, ExitAttention, out)
		}
		want := map[string]string{"status": "admin rule always-ssh: AlwaysAllow", "scan": "admin:always-ssh"}[args[0]]
		if !strings.Contains(string(out), want) {
			t.Errorf("jitd %s does not show %q:\n%s", args[0], want, out)
		}
	}
}
