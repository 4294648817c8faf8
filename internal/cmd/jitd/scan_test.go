package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/scan"
)

// fakeRules serves fixed NSGs: ids per "sub/rg" and rules per NSG id; an
// NSG without an entry cannot be read.
type fakeRules struct {
	scopes map[string][]string
	rules  map[string][]jit.SecurityRule
}

func (f fakeRules) ListNSGIDs(_ context.Context, sub, rg string) ([]string, error) {
	ids, ok := f.scopes[sub+"/"+rg]
	if !ok {
		return nil, errors.New("forbidden")
	}
	return ids, nil
}

func (f fakeRules) ListRules(_ context.Context, id string) ([]jit.SecurityRule, error) {
	r, ok := f.rules[id]
	if !ok {
		return nil, fmt.Errorf("list security rules of %s: forbidden", id)
	}
	return r, nil
}

func nsgIDOf(rg, name string) string {
	return "/subscriptions/s1" + "/resourceGroups/" + rg + "/providers/Microsoft.Network/networkSecurityGroups/" + name
}

func sshFromInternet() jit.SecurityRule {
	return jit.SecurityRule{Name: "AllowSSHFromInternet", Priority: 300, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"Internet"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
}

func TestParseScanFlags(t *testing.T) {
	o, err := parseScanFlags([]string{"--resource-group", "rg", "--ports", "22, 2222,22", "--destination", "10.0.1.5",
		"--output", "json", "--concurrency", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ports, []uint16{22, 2222}) || len(o.destinations) != 1 || o.output != "json" || o.concurrency != 2 {
		t.Errorf("parsed %+v", o)
	}
	if o, _ := parseScanFlags(nil); !slices.Equal(o.ports, scan.DefaultPorts) || o.output != "table" {
		t.Errorf("defaults: %+v", o)
	}
	for _, args := range [][]string{{"--ports", "22,0"}, {"--ports", "ssh"}, {"--output", "yaml"}, {"--destination", "10.0.0.0/8"},
		{"--concurrency", "0"}, {"stray"}} {
		if _, err := parseScanFlags(args); err == nil {
			t.Errorf("parseScanFlags(%q) succeeded", args)
		}
	}
}

func TestScanScope(t *testing.T) {
	p := webPolicy(t, 100)
	exposed, closed, clean := nsgIDOf("rg", "exposed"), nsgIDOf("rg", "closed"), nsgIDOf("rg", "clean")
	unreadable := nsgIDOf("rg", "unreadable")
	client := fakeRules{
		scopes: map[string][]string{"s1/rg": {exposed, closed, clean}, "s1/rg2": {unreadable}},
		rules: map[string][]jit.SecurityRule{
			exposed: {sshFromInternet()},
			closed:  append(p.Rules(), sshFromInternet()),
			clean:   nil,
		},
	}
	o := scanOptions{ports: scan.DefaultPorts, concurrency: 2}

	t.Run("exposed", func(t *testing.T) {
		sc := &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "rg"}}}
		rep := scanScope(context.Background(), sc, o, time.Now(), &bytes.Buffer{})
		if rep.ScannedNSGs != 3 || rep.Exposed != 1 || len(rep.Findings) != 1 || len(rep.Errors) != 0 {
			t.Fatalf("report %+v", rep)
		}
		f := rep.Findings[0]
		if f.NSGID != exposed || f.Port != 22 || f.Rule != "AllowSSHFromInternet" || f.Status != scan.StatusExposed {
			t.Errorf("finding %+v", f)
		}
		if len(rep.Protected) != 1 || rep.Protected[0].NSGID != closed || rep.Protected[0].Policy != "web" {
			t.Errorf("protected %+v, want port 22 of %s closed by policy web", rep.Protected, closed)
		}
		var ec *exitCodeError
		if err := scanVerdict(rep); !errors.As(err, &ec) || ec.code != ExitExposed {
			t.Errorf("verdict %v, want exit code %d", err, ExitExposed)
		}

		var table bytes.Buffer
		if err := writeScanReport(&table, rep, "table"); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"NSG", "rg/exposed", "AllowSSHFromInternet", "300", "Internet", "203.0.113.7", "exposed",
			"Closed by JIT policies:\n  rg/closed 22/Tcp  policy web",
			"3 NSG(s) scanned: 1 finding(s) on 1 NSG(s) let the Internet reach a management port (TCP 22, 3389, 5985, 5986)."} {
			if !strings.Contains(table.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, table.String())
			}
		}

		var js bytes.Buffer
		if err := writeScanReport(&js, rep, "json"); err != nil {
			t.Fatal(err)
		}
		var decoded map[string]any
		if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
			t.Fatal(err)
		}
		findings, _ := decoded["findings"].([]any)
		if len(findings) != 1 {
			t.Fatalf("JSON findings: %s", js.String())
		}
		finding, _ := findings[0].(map[string]any)
		for _, k := range []string{"nsg_id", "port", "protocol", "status", "rule", "priority", "rule_sources", "example_source", "destinations"} {
			if _, ok := finding[k]; !ok {
				t.Errorf("JSON finding lacks %q: %s", k, js.String())
			}
		}
		if decoded["exposed"] != 1.0 || decoded["scanned_nsgs"] != 3.0 {
			t.Errorf("JSON summary: %s", js.String())
		}
	})

	t.Run("clean", func(t *testing.T) {
		sc := &scope{client: client, nsgs: []string{closed, clean}}
		rep := scanScope(context.Background(), sc, o, time.Now(), &bytes.Buffer{})
		if err := scanVerdict(rep); err != nil || rep.Exposed != 0 {
			t.Errorf("verdict %v for %+v, want nil", err, rep)
		}
		var table bytes.Buffer
		if err := writeScanReport(&table, rep, "table"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(table.String(), "2 NSG(s) scanned: no management port (TCP 22, 3389, 5985, 5986) is open to the Internet.") {
			t.Errorf("table:\n%s", table.String())
		}
	})

	t.Run("errors win over exposures", func(t *testing.T) {
		sc := &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "rg"}, {"s1", "rg2"}, {"s1", "denied"}}}
		rep := scanScope(context.Background(), sc, o, time.Now(), &bytes.Buffer{})
		if len(rep.Errors) != 2 || rep.Exposed != 1 {
			t.Fatalf("report %+v, want the exposure and two errors", rep)
		}
		err := scanVerdict(rep)
		var ec *exitCodeError
		if err == nil || errors.As(err, &ec) || !strings.Contains(err.Error(), "incomplete") || !strings.Contains(err.Error(), "unreadable") {
			t.Errorf("verdict %v, want a plain error (exit 1) naming what could not be read", err)
		}
		if rep.Complete || rep.UnreadNSGs != 1 || rep.UnlistedScopeParts != 1 {
			t.Errorf("report %+v, want incomplete: one NSG unread, one resource group unlisted", rep)
		}
		var table bytes.Buffer
		if err := writeScanReport(&table, rep, "table"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(table.String(), "scanned: no management port") || !strings.Contains(table.String(),
			"INCOMPLETE: 3 NSG(s) scanned; 1 part(s) of the scope could not be listed (how many NSGs they hold is not known), and 1 NSG(s) could not be read") {
			t.Errorf("table:\n%s", table.String())
		}
	})

	// Nothing listed, nothing read (a wrong secret): never the all-clear.
	t.Run("nothing read", func(t *testing.T) {
		sc := &scope{client: client, subscriptions: []string{"denied"}}
		rep := scanScope(context.Background(), sc, o, time.Now(), &bytes.Buffer{})
		var table bytes.Buffer
		if err := writeScanReport(&table, rep, "table"); err != nil {
			t.Fatal(err)
		}
		if err := scanVerdict(rep); err == nil || rep.Complete || strings.Contains(table.String(), "no management port") ||
			!strings.Contains(table.String(), "INCOMPLETE: 0 NSG(s) scanned; 1 part(s) of the scope could not be listed") {
			t.Errorf("verdict %v, table:\n%s", err, table.String())
		}
	})
}

// A rule letting the policy's allowed sources in ahead of its deny-all is
// standing access: reported, and it fails the gate like an exposure.
func TestScanReportsStandingAccess(t *testing.T) {
	p := webPolicy(t, 100)
	nsg := nsgIDOf("rg", "standing")
	office := jit.SecurityRule{Name: "office-ssh", Priority: 150, Direction: jit.Inbound, Access: jit.Allow, Protocol: jit.ProtocolTCP,
		SourcePrefixes: []string{"203.0.113.0/25"}, SourcePorts: []string{"*"}, DestinationPrefixes: []string{"10.0.1.4"}, DestinationPorts: []string{"22"}}
	client := fakeRules{rules: map[string][]jit.SecurityRule{nsg: append(p.Rules(), office)}}
	rep := scanScope(context.Background(), &scope{client: client, nsgs: []string{nsg}}, scanOptions{ports: scan.DefaultPorts, concurrency: 1},
		time.Now(), &bytes.Buffer{})
	if rep.Exposed != 1 || len(rep.Findings) != 1 || rep.Findings[0].Status != scan.StatusStandingAccess ||
		rep.Findings[0].Rule != "office-ssh" || rep.Findings[0].Policy != "web" || len(rep.Protected) != 0 {
		t.Fatalf("report %+v, want one standing_access finding for office-ssh under policy web", rep)
	}
	var ec *exitCodeError
	if err := scanVerdict(rep); !errors.As(err, &ec) || ec.code != ExitExposed {
		t.Errorf("verdict %v, want exit code %d", err, ExitExposed)
	}
	var table bytes.Buffer
	if err := writeScanReport(&table, rep, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"standing_access", "office-ssh", "150", "203.0.113.0/25",
		"1 finding(s) on 1 NSG(s) open a management port (TCP 22, 3389, 5985, 5986) with no grant (1 of them standing access for a JIT policy's allowed sources)."} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestScanProgressOnLargeScopes(t *testing.T) {
	client := fakeRules{scopes: map[string][]string{}, rules: map[string][]jit.SecurityRule{}}
	var ids []string
	for i := range 60 {
		id := nsgIDOf("big", fmt.Sprintf("nsg-%d", i))
		ids = append(ids, id)
		client.rules[id] = nil
	}
	client.scopes["s1/big"] = ids
	var progress bytes.Buffer
	rep := scanScope(context.Background(), &scope{client: client, subscriptions: []string{"s1"}},
		scanOptions{ports: []uint16{22}, concurrency: 4}, time.Now(), &progress)
	// The subscription lists nothing ("s1/" is not in scopes): an error.
	if len(rep.Errors) != 1 {
		t.Fatalf("errors %q", rep.Errors)
	}
	rep = scanScope(context.Background(), &scope{client: client, resourceGroups: []resourceGroupRef{{"s1", "big"}}},
		scanOptions{ports: []uint16{22}, concurrency: 4}, time.Now(), &progress)
	if rep.ScannedNSGs != 60 || !strings.HasSuffix(progress.String(), "jitd scan: 60/60 NSGs read\n") ||
		strings.Count(progress.String(), "\n") != 10 {
		t.Errorf("progress:\n%s", progress.String())
	}
}

// TestScanAgainstLocalAzure runs `jitd scan` over a resource group of the
// local Azure: in-process for the report, and as a process for the exit
// code CI gates on.
func TestScanAgainstLocalAzure(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	exposed := la.createNSG(t, "scan-exposed", "nsg-web", sshFromInternet())
	la.createNSG(t, "scan-closed", "nsg-web", append(p.Rules(), sshFromInternet())...)

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"scan", "--resource-group", "scan-exposed", "--resource-group", "scan-closed", "--output", "json"},
		la.getenv, &stdout, &stderr)
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != ExitExposed {
		t.Fatalf("scan: %v, want exit code %d\n%s", err, ExitExposed, stderr.String())
	}
	var rep scanReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if rep.ScannedNSGs != 2 || len(rep.Findings) != 1 || !strings.EqualFold(rep.Findings[0].NSGID, exposed) ||
		rep.Findings[0].Rule != "AllowSSHFromInternet" || len(rep.Protected) != 1 || rep.Protected[0].Policy != "web" {
		t.Errorf("report: %s", stdout.String())
	}
	// The local Azure agrees: the example source reaches the VM through
	// the exposed NSG only.
	if !la.reachable(t, exposed, rep.Findings[0].ExampleSource) {
		t.Errorf("flow verification says %s cannot reach port 22 through %s", rep.Findings[0].ExampleSource, exposed)
	}

	cmd := exec.Command(la.jitd, "scan", "--resource-group", "scan-closed")
	cmd.Env = la.environ()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 NSG(s) scanned: no management port") {
		t.Errorf("jitd scan of a closed resource group: %v\n%s", err, out)
	}
	cmd = exec.Command(la.jitd, "scan", "--resource-group", "scan-exposed")
	cmd.Env = la.environ()
	out, err = cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitExposed || !strings.Contains(string(out), "AllowSSHFromInternet") {
		t.Errorf("jitd scan of an exposed resource group: %v, want exit code %d\n%s", err, ExitExposed, out)
	}
}

// TestScanAndStatusWithAWrongSecret runs jitd scan and jitd status as
// processes against the local Azure with a wrong client secret: each exits
// 1 with the error, and neither prints an all-clear.
func TestScanAndStatusWithAWrongSecret(t *testing.T) {
	la := startLocalAzure(t)
	la.createNSG(t, "wrong-secret", "nsg-web", sshFromInternet())
	env := append(la.environ(), "ARM_CLIENT_SECRET=not-the-secret")
	for _, args := range [][]string{
		{"scan"},
		{"scan", "--resource-group", "wrong-secret"},
		{"scan", "--nsg", nsgIDOf("wrong-secret", "nsg-web"), "--output", "json"},
		{"status"},
		{"status", "--resource-group", "wrong-secret"},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(la.jitd, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitFailure {
			t.Errorf("jitd %q: %v, want exit code %d\nstdout:\n%s\nstderr:\n%s", args, err, ExitFailure, stdout.String(), stderr.String())
		}
		out := stdout.String() + stderr.String()
		if strings.Contains(out, "no management port") || strings.Contains(out, "no grant is open") || strings.Contains(out, `"complete": true`) {
			t.Errorf("jitd %q printed an all-clear with a wrong secret:\n%s", args, out)
		}
		if !strings.Contains(stderr.String(), "AADSTS7000215") && !strings.Contains(stderr.String(), "invalid_client") {
			t.Errorf("jitd %q: stderr does not show the authentication error:\n%s", args, stderr.String())
		}
		t.Logf("jitd %s (wrong secret):\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	}
}

// TestTypoedResourceGroup: the local Azure answers 404 ResourceGroupNotFound
// for a resource group that does not exist, as Azure does, so jitd refuses
// to start and jitd scan refuses an all-clear, each naming the group.
func TestTypoedResourceGroup(t *testing.T) {
	la := startLocalAzure(t)
	la.createNSG(t, "typo-real", "nsg-web", sshFromInternet())

	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--once", "--resource-group", "typo-rael"}, la.getenv, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") ||
		!strings.Contains(err.Error(), "resource group typo-rael does not exist in subscription "+la.subscription()) {
		t.Errorf("jitd --resource-group typo-rael: %v, want a refusal saying the group does not exist", err)
	}

	cmd := exec.Command(la.jitd, "scan", "--resource-group", "typo-rael")
	cmd.Env = la.environ()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != ExitFailure || strings.Contains(string(out), "no management port") ||
		!strings.Contains(string(out), "resource group typo-rael does not exist") {
		t.Errorf("jitd scan --resource-group typo-rael: %v, want exit %d naming the missing group\n%s", err, ExitFailure, out)
	}
	t.Logf("jitd scan --resource-group typo-rael:\n%s", out)
}
