package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

const testNSG = "/subscriptions/2c4a9e71-5b3f-4d8e-a6c2-7f1e0d9b3a52/resourceGroups/rg-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-web"

// fixedEnv is a requestEnv with a fixed clock, no git and user bob on
// host ws1.
func fixedEnv(email string) requestEnv {
	return requestEnv{
		getenv:   envOf(map[string]string{"USER": "bob"}),
		gitEmail: func() string { return email },
		hostname: func() (string, error) { return "ws1", nil },
		now:      func() time.Time { return time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC) },
	}
}

// noAzure fails the test if --check tries to connect.
func noAzure(t *testing.T) func(context.Context, requestOptions) (ruleLister, error) {
	return func(context.Context, requestOptions) (ruleLister, error) {
		t.Error("connected to Azure without --check")
		return nil, errors.New("no Azure here")
	}
}

func TestRequestGolden(t *testing.T) {
	var stdout bytes.Buffer
	err := fixedEnv("").run(context.Background(), []string{"--policy", "web-ssh@" + testNSG, "--port", "22", "--port", "3389",
		"--source", "203.0.113.7", "--for", "1h", "--why", "INC-4711: restart the stuck worker on web-01",
		"--requester", "alice@example.com", "--approval", "https://github.com/example/access/pull/128", "--name", "alice_web_ssh"},
		&stdout, &bytes.Buffer{}, noAzure(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `# Written by ` + "`jitd request`" + ` on 2026-11-25. Access lasts 1h from the apply;
# once it has expired, remove this file (plans warn until it is removed).
resource "jit_access_grant" "alice_web_ssh" {
  policy_id             = "web-ssh@` + testNSG + `"
  ports                 = [22, 3389]
  source_address_prefix = "203.0.113.7"
  duration              = "1h"
  requester             = "alice@example.com"
  justification         = "INC-4711: restart the stuck worker on web-01"
  approval_reference    = "https://github.com/example/access/pull/128"
}
`
	if stdout.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", stdout.String(), want)
	}
}

func TestRequestDefaults(t *testing.T) {
	args := []string{"--policy", "web-ssh@" + testNSG, "--port", "22", "--protocol", "*", "--source", "2001:db8::7", "--for", "90m", "--why", "x"}
	for _, tc := range []struct{ git, wantRequester, wantName string }{
		{"carol@example.com", "carol@example.com", "carol_web_ssh_20261125"},
		{"", "bob@ws1", "bob_web_ssh_20261125"},
	} {
		var stdout bytes.Buffer
		if err := fixedEnv(tc.git).run(context.Background(), args, &stdout, &bytes.Buffer{}, noAzure(t)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`resource "jit_access_grant" "` + tc.wantName + `" {`, `requester             = "` + tc.wantRequester + `"`,
			`protocol              = "*"`, `duration              = "90m"`, `source_address_prefix = "2001:db8::7"`} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, stdout.String())
			}
		}
		if strings.Contains(stdout.String(), "approval_reference") {
			t.Errorf("approval_reference written without --approval:\n%s", stdout.String())
		}
	}
}

// TestRenderedValuesReadBack: untrusted text (quotes, backslashes,
// template sequences, control and invisible characters) is written so that
// HCL reads back exactly what was given, never a template.
func TestRenderedValuesReadBack(t *testing.T) {
	for _, why := range []string{
		`plain`, `say "hi"`, `C:\temp`, "two\nlines\r\tend", `${var.x} and %{if true}x%{endif} and $ % {`, `$${already}`,
		"bell\a and nul\x00", "zero\u200bwidth", "déjà vu ✓", `"} resource "x" "y" {`,
	} {
		req := grantRequest{resourceName: "r", requestOptions: requestOptions{policyID: "web@" + testNSG, ports: []int64{22},
			protocol: "Tcp", source: "203.0.113.7", duration: "1h", requester: "a@example.com", why: why}}
		src := renderGrant(req, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
		f, diags := hclsyntax.ParseConfig([]byte(src), "grant.tf", hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%q: the rendered block does not parse: %v\n%s", why, diags, src)
			continue
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			t.Fatalf("%q: the parsed file has no native syntax body", why)
		}
		blocks := body.Blocks
		if len(blocks) != 1 || len(blocks[0].Body.Attributes) != 6 {
			t.Errorf("%q: want one block of 6 attributes:\n%s", why, src)
			continue
		}
		v, diags := blocks[0].Body.Attributes["justification"].Expr.Value(nil)
		if diags.HasErrors() || v.AsString() != why {
			t.Errorf("justification %q reads back as %#v (%v):\n%s", why, v, diags, src)
		}
	}
}

func TestRequestRefusedLocally(t *testing.T) {
	valid := map[string]string{"--policy": "web-ssh@" + testNSG, "--port": "22", "--source": "203.0.113.7", "--for": "1h", "--why": "x",
		"--requester": "a@example.com"}
	tests := []struct {
		name    string
		change  map[string]string
		wantErr string
	}{
		{"no policy", map[string]string{"--policy": ""}, "policy_id: --policy is required"},
		{"policy id without NSG", map[string]string{"--policy": "web-ssh"}, "policy_id: \"web-ssh\" is not a JIT policy id"},
		{"bad policy name", map[string]string{"--policy": "Web_SSH@" + testNSG}, "\"Web_SSH\" is not a policy name"},
		{"not an NSG id", map[string]string{"--policy": "web-ssh@/subscriptions/s/resourceGroups/r"}, "policy_id:"},
		{"port zero", map[string]string{"--port": "0"}, "ports[0]: port 0 is outside the range 1–65535"},
		{"port too high", map[string]string{"--port": "65536"}, "ports[0]: port 65536 is outside the range"},
		{"bad protocol", map[string]string{"--protocol": "tcp"}, "protocol: protocol \"tcp\" is not one of Tcp, Udp, *"},
		{"source anywhere", map[string]string{"--source": "*"}, "source_address_prefix: source \"*\" is not an address"},
		{"source a tag", map[string]string{"--source": "Internet"}, "source \"Internet\" is not an address"},
		{"source host bits", map[string]string{"--source": "203.0.113.7/24"}, `did you mean "203.0.113.0/24"?`},
		{"source garbage", map[string]string{"--source": "203.0.113"}, "source_address_prefix: source"},
		{"no duration", map[string]string{"--for": ""}, "duration: --for is required"},
		{"duration syntax", map[string]string{"--for": "1 hour"}, "duration \"1 hour\" is not a duration"},
		{"too short", map[string]string{"--for": "59s"}, "duration 59s is shorter than the minimum of 1m"},
		{"fractional", map[string]string{"--for": "90.5s"}, "not a whole number of seconds"},
		{"too long", map[string]string{"--for": "25h"}, "duration 25h exceeds 24h"},
		{"no justification", map[string]string{"--why": " "}, "justification: --why is required"},
		{"bad resource name", map[string]string{"--name": "1st grant"}, "name: \"1st grant\" is not a Terraform resource name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for k, v := range valid {
				if c, ok := tc.change[k]; ok {
					v = c
				}
				args = append(args, k, v)
			}
			for k, v := range tc.change {
				if _, ok := valid[k]; !ok {
					args = append(args, k, v)
				}
			}
			var stdout bytes.Buffer
			err := fixedEnv("").run(context.Background(), args, &stdout, &bytes.Buffer{}, noAzure(t))
			if err == nil || !strings.HasPrefix(err.Error(), "Invalid Access Request\n") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if stdout.Len() > 0 {
				t.Errorf("printed a block for a refused request:\n%s", stdout.String())
			}
		})
	}
}

func TestRequestReportsEveryProblemAtOnce(t *testing.T) {
	err := fixedEnv("").run(context.Background(), []string{"--port", "0", "--source", "x", "--for", "1s"},
		&bytes.Buffer{}, &bytes.Buffer{}, noAzure(t))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, path := range []string{"policy_id:", "ports[0]:", "source_address_prefix:", "duration:", "justification:"} {
		if !strings.Contains(err.Error(), "\n  "+path) {
			t.Errorf("error lacks %q:\n%v", path, err)
		}
	}
}

func TestRequestOutWritesNewFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "requests")
	args := []string{"--policy", "web-ssh@" + testNSG, "--port", "22", "--source", "203.0.113.7", "--for", "1h", "--why", "x",
		"--requester", "Alice@Example.com", "--out", dir}
	var paths []string
	for range 2 {
		var stdout bytes.Buffer
		if err := fixedEnv("").run(context.Background(), args, &stdout, &bytes.Buffer{}, noAzure(t)); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, strings.TrimSpace(stdout.String()))
	}
	want := []string{filepath.Join(dir, "2026-11-25-alice-example-com-web-ssh.tf"), filepath.Join(dir, "2026-11-25-alice-example-com-web-ssh-2.tf")}
	for i, p := range paths {
		if p != want[i] {
			t.Errorf("path %d = %s, want %s", i, p, want[i])
		}
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), `resource "jit_access_grant" "alice_web_ssh_20261125" {`) {
			t.Errorf("%s: %v\n%s", p, err, b)
		}
	}
}

// fakeLister serves fixed rules per NSG id.
type fakeLister map[string][]jit.SecurityRule

func (f fakeLister) ListRules(_ context.Context, id string) ([]jit.SecurityRule, error) {
	r, ok := f[id]
	if !ok {
		return nil, errors.New("not found")
	}
	return r, nil
}

// connect stands in for connecting to Azure; a nil fakeLister is an
// unreachable Azure.
func (f fakeLister) connect(context.Context, requestOptions) (ruleLister, error) {
	if f == nil {
		return nil, errors.New("no Azure here")
	}
	return f, nil
}

// checkCases are refusals and acceptances by the policy webPolicy(100)
// (port 22 for up to 1h, sources in 203.0.113.0/24), with the provider's
// messages.
var checkCases = []struct {
	name    string
	args    []string
	wantErr string // "" = accepted
}{
	{"inside the policy", []string{"--port", "22", "--source", "203.0.113.7", "--for", "1h"}, ""},
	{"unprotected port", []string{"--port", "23", "--source", "203.0.113.7", "--for", "1h"},
		"Access Request Outside the Policy\n  ports[0]: port 23/Tcp is not protected by policy \"web\" (it protects 22/Tcp)"},
	{"over the maximum", []string{"--port", "22", "--source", "203.0.113.7", "--for", "2h"},
		"duration: duration 2h exceeds policy \"web\" maximum of 1h for port 22"},
	{"source outside", []string{"--port", "22", "--source", "198.51.100.7", "--for", "1h"},
		"source_address_prefix: source 198.51.100.7 is outside policy \"web\" allowed sources 203.0.113.0/24"},
}

func TestRequestCheckWithoutAzure(t *testing.T) {
	p := webPolicy(t, 100)
	other := strings.Replace(testNSG, "nsg-web", "nsg-db", 1)
	lister := fakeLister{testNSG: p.Rules(), other: nil}
	run := func(policyID string, extra ...string) (string, error) {
		var stdout bytes.Buffer
		args := append([]string{"--check", "--policy", policyID, "--why", "x", "--requester", "a@example.com"}, extra...)
		err := fixedEnv("").run(context.Background(), args, &stdout, &bytes.Buffer{}, lister.connect)
		return stdout.String(), err
	}
	for _, tc := range checkCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run("web@"+testNSG, tc.args...)
			checkOutcome(t, out, err, tc.wantErr)
		})
	}
	t.Run("policy missing on one NSG", func(t *testing.T) {
		out, err := run("web@"+testNSG+","+other, "--port", "22", "--source", "203.0.113.7", "--for", "1h")
		checkOutcome(t, out, err, "JIT Policy Not Found\n  policy_id: policy \"web\" is not on "+other)
	})
	t.Run("policy tampered with", func(t *testing.T) {
		rules := p.Rules()
		rules[0].Description = strings.Replace(rules[0].Description, "band=100-199", "band=100-150", 1)
		lister[other] = rules
		out, err := run("web@"+other, "--port", "22", "--source", "203.0.113.7", "--for", "1h")
		checkOutcome(t, out, err, "JIT Policy Is Malformed")
	})
}

func checkOutcome(t *testing.T, out string, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("refused: %v", err)
	case wantErr == "" && !strings.Contains(out, `resource "jit_access_grant"`):
		t.Errorf("no block printed:\n%s", out)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("err = %v, want one containing %q", err, wantErr)
	case wantErr != "" && out != "":
		t.Errorf("printed a block for a refused request:\n%s", out)
	}
}

// TestRequestCheckAgainstLocalAzure reads the policy from a real NSG of the
// local Azure, through the ARM_* configuration, as a user's --check does.
func TestRequestCheckAgainstLocalAzure(t *testing.T) {
	la := startLocalAzure(t)
	nsgID := la.createNSG(t, "request-check", "nsg-web", webPolicy(t, 100).Rules()...)
	for _, tc := range checkCases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout bytes.Buffer
			args := append([]string{"request", "--check", "--policy", "web@" + nsgID, "--why", "x", "--requester", "a@example.com"}, tc.args...)
			err := run(t.Context(), args, la.getenv, &stdout, &bytes.Buffer{})
			checkOutcome(t, stdout.String(), err, tc.wantErr)
		})
	}
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"request", "--check", "--policy", "other@" + nsgID, "--port", "22", "--source", "203.0.113.7",
		"--for", "1h", "--why", "x", "--requester", "a@example.com"}, la.getenv, &stdout, &bytes.Buffer{})
	checkOutcome(t, stdout.String(), err, "JIT Policy Not Found")
}

// TestRequestAppliedByTerraform is the request flow with the real CLI: the
// policy is applied, `jitd request --check --out` writes the request into
// the configuration, and terraform applies it: the address can then reach
// the VM, and only it.
func TestRequestAppliedByTerraform(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("set TF_ACC=1 to apply a request with the real terraform")
	}
	la, terraform, nsgID := terraformWorkspace(t, "request-terraform", terraformConfig+`output "policy_id" { value = jit_policy.web_ssh.id }
`)
	work, tf := terraform.Dir, terraform.Run
	if out, err := tf("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform apply of the policy: %v\n%s", err, out)
	}
	policyID, err := tf("output", "-raw", "policy_id")
	if err != nil {
		t.Fatalf("terraform output: %v\n%s", err, policyID)
	}

	var stdout bytes.Buffer
	err = run(t.Context(), []string{"request", "--check", "--policy", strings.TrimSpace(policyID), "--port", "22",
		"--source", "203.0.113.7", "--for", "5m", "--why", `INC-4711: "restart" ${worker}`, "--requester", "alice@example.com",
		"--out", work}, la.getenv, &stdout, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tf("fmt", "-check", "-diff"); err != nil {
		t.Errorf("terraform fmt -check on the request: %v\n%s", err, out)
	}
	if out, err := tf("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform apply of the request %s: %v\n%s", stdout.String(), err, out)
	}
	if !la.reachable(t, nsgID, "203.0.113.7") || la.reachable(t, nsgID, "203.0.113.8") {
		t.Error("after applying the request, 203.0.113.7 alone should reach 10.0.1.4:22")
	}
	audit, err := os.ReadFile(filepath.Join(work, "provider-audit.jsonl"))
	if err != nil || !strings.Contains(string(audit), `INC-4711: \"restart\" ${worker}`) {
		t.Errorf("the justification did not reach the audit log verbatim: %v\n%s", err, audit)
	}
}
