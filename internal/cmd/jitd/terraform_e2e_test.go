package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	providerOnce sync.Once
	providerDir  string
	providerErr  error
)

// buildProvider builds the provider binary once, for dev_overrides.
func buildProvider(la *localAzure) (string, error) {
	providerOnce.Do(func() {
		providerDir = filepath.Join(la.dir, "provider")
		out, err := exec.Command("go", "build", "-o", filepath.Join(providerDir, "terraform-provider-jit"), "../../..").CombinedOutput()
		if err != nil {
			providerErr = errors.New("go build the provider: " + err.Error() + "\n" + string(out))
		}
	})
	return providerDir, providerErr
}

const terraformConfig = `
terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}

provider "jit" {}

variable "nsg_id" { type = string }

resource "jit_policy" "web_ssh" {
  name                            = "web-ssh"
  network_security_group_ids      = [var.nsg_id]
  destination_address_prefixes    = ["10.0.1.4"]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "1h" }]
}

`

// grantConfig is the request a pull request adds once the policy exists.
const grantConfig = `
resource "jit_access_grant" "alice" {
  policy_id             = jit_policy.web_ssh.id
  ports                 = [22]
  source_address_prefix = "203.0.113.7"
  duration              = "1m"
  requester             = "alice@example.com"
  justification         = "end-to-end test"
}

output "rule_name" { value = jit_access_grant.alice.rule_name }
output "expires_at" { value = jit_access_grant.alice.expires_at }
`

// TestEndToEndTerraformGrantClosedByJitd is the whole story with real
// processes, in the order it happens: the policy is applied, jitd is
// running, terraform applies a one-minute grant through the provider, flow
// verification says reachable, jitd (which had not seen the grant before)
// deletes the rule at expiry, flow verification says unreachable, and the
// next plan reports the expired grant and changes nothing. It takes a minute (the shortest grant), so it
// runs with the acceptance tests (TF_ACC set) and needs terraform on PATH.
func TestEndToEndTerraformGrantClosedByJitd(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("set TF_ACC=1 to run the terraform end-to-end test (it waits out a one-minute grant)")
	}
	terraform := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if terraform == "" {
		var err error
		if terraform, err = exec.LookPath("terraform"); err != nil {
			t.Fatal("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH")
		}
	}
	la := startLocalAzure(t)
	pluginDir, err := buildProvider(la)
	if err != nil {
		t.Fatal(err)
	}
	nsgID := la.createNSG(t, "e2e-terraform", "nsg-web")

	work := t.TempDir()
	rc := filepath.Join(work, "terraformrc")
	must(t, os.WriteFile(rc, []byte(`provider_installation {
  dev_overrides { "jitaccess/jit" = "`+pluginDir+`" }
  direct {}
}
`), 0o600))
	must(t, os.WriteFile(filepath.Join(work, "main.tf"), []byte(terraformConfig), 0o600))
	tf := func(args ...string) (string, error) {
		cmd := exec.Command(terraform, append([]string{"-chdir=" + work}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TF_CLI_CONFIG_FILE=" + rc,
			"CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1", "ARM_USE_CLI=false", "TF_VAR_nsg_id=" + nsgID,
			"JIT_AUDIT_LOG_PATH=" + filepath.Join(work, "provider-audit.jsonl")}
		for k, v := range la.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	if out, err := tf("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform apply of the policy: %v\n%s", err, out)
	}
	d := la.startJitd(t, filepath.Join(work, "jitd-audit.jsonl"), "--nsg", nsgID)
	must(t, os.WriteFile(filepath.Join(work, "grant.tf"), []byte(grantConfig), 0o600))
	if out, err := tf("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		t.Fatalf("terraform apply of the grant: %v\n%s", err, out)
	}
	ruleName, err := tf("output", "-raw", "rule_name")
	if err != nil {
		t.Fatalf("terraform output: %v\n%s", err, ruleName)
	}
	expOut, err := tf("output", "-raw", "expires_at")
	if err != nil {
		t.Fatalf("terraform output: %v\n%s", err, expOut)
	}
	exp, err := time.Parse(time.RFC3339, strings.TrimSpace(expOut))
	if err != nil {
		t.Fatalf("expires_at %q: %v", expOut, err)
	}
	if !la.reachable(t, nsgID, "203.0.113.7") {
		t.Fatal("after apply, 203.0.113.7 cannot reach 10.0.1.4:22")
	}
	if la.reachable(t, nsgID, "203.0.113.8") {
		t.Fatal("after apply, 203.0.113.8 (no grant) reaches 10.0.1.4:22")
	}

	if err := poll(time.Until(exp)+time.Minute, func() bool { return !la.reachable(t, nsgID, "203.0.113.7") }); err != nil {
		t.Fatalf("the grant is still reachable after its expiry: %v", err)
	}
	del, ok := la.deleteEvents(t)[strings.ToLower(nsgID)+"/"+ruleName]
	if !ok {
		t.Fatalf("no delete of %s in the local Azure's event log", ruleName)
	}
	t.Logf("terraform grant %s: expired %s, deleted by jitd %s later (local Azure event log)",
		ruleName, exp.Format(time.RFC3339), del.Completed.Sub(exp))
	d.stop(t)

	out, err := tf("plan", "-detailed-exitcode", "-input=false", "-no-color")
	if err != nil {
		t.Fatalf("terraform plan after expiry: %v (exit code 2 means it planned changes)\n%s", err, out)
	}
	if !strings.Contains(out, "expired at") || !strings.Contains(out, "No changes") {
		t.Errorf("plan after expiry does not report the expired grant with no changes:\n%s", out)
	}
	if la.reachable(t, nsgID, "203.0.113.7") {
		t.Error("203.0.113.7 reaches 10.0.1.4:22 again after the plan")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
