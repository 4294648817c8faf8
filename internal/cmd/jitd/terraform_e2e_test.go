package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// buildProvider builds the provider binary once, for dev_overrides, and
// returns its directory.
func buildProvider() (string, error) {
	bin, err := builds.Build(filepath.Join("provider", "terraform-provider-jit"), "../../..")
	return filepath.Dir(bin), err
}

// terraformWorkspace starts the local Azure, creates an empty NSG in rg
// and returns terraform working in a new directory with mainTF, the
// provider through dev_overrides and var.nsg_id set to the NSG.
func terraformWorkspace(t *testing.T, rg, mainTF string) (la *localAzure, tf *testproc.Terraform, nsgID string) {
	t.Helper()
	terraform, err := testproc.TerraformPath()
	if err != nil {
		t.Fatal(err)
	}
	la = startLocalAzure(t)
	pluginDir, err := buildProvider()
	if err != nil {
		t.Fatal(err)
	}
	nsgID = la.createNSG(t, rg, "nsg-web")
	work := t.TempDir()
	tf = testproc.NewTerraform(t, terraform, work, testproc.DevOverrides(pluginDir), map[string]string{"main.tf": mainTF},
		append(la.environ(), "TF_VAR_nsg_id="+nsgID, "JIT_AUDIT_LOG_PATH="+filepath.Join(work, "provider-audit.jsonl"),
			// What the GitOps apply workflow sets after a reviewed merge.
			"JIT_APPROVED_BY="+e2eApprovers, "JIT_CHANGE_REF="+e2eChangeRef)...)
	return la, tf, nsgID
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
	la, terraform, nsgID := terraformWorkspace(t, "e2e-terraform", terraformConfig)
	work, tf := terraform.Dir, terraform.Run

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
	checkAuditLog(t, la, filepath.Join(work, "provider-audit.jsonl"), true)
	checkAuditLog(t, la, filepath.Join(work, "jitd-audit.jsonl"), false)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
