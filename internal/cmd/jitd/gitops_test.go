package main

// Checks of examples/gitops, the copyable approval-flow repository: its
// workflow files parse and say what the flow depends on, its Terraform is
// formatted and validates against the locally built provider, and its
// example request is exactly what `jitd request` prints.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

const gitopsDir = "../../../examples/gitops"

func TestGitOpsExampleRequestIsWhatJitdRequestPrints(t *testing.T) {
	const file = "requests/2026-11-25-alice-example-com-web-ssh.tf"
	want, err := os.ReadFile(filepath.Join(gitopsDir, file))
	if err != nil {
		t.Fatal(err)
	}
	policies, err := os.ReadFile(filepath.Join(gitopsDir, "requests/policies.tf"))
	if err != nil {
		t.Fatal(err)
	}
	// The request names the policy as requests/policies.tf lists it.
	const policyID = "web-ssh@/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
	if !strings.Contains(string(policies), `"`+policyID+`"`) {
		t.Errorf("requests/policies.tf does not list %s", policyID)
	}
	var stdout bytes.Buffer
	err = fixedEnv("").run(context.Background(), []string{"--policy", policyID, "--port", "22", "--source", "203.0.113.7",
		"--for", "2h", "--why", "INC-4711: restart the stuck worker on web-01", "--requester", "alice@example.com",
		"--approval", "https://github.com/example/access/pull/128", "--name", "alice_web_ssh"}, &stdout, &bytes.Buffer{}, noAzure(t))
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("%s differs from what jitd request prints:\n%s", file, stdout.String())
	}
}

// gitopsYAML parses the example's YAML files with python3 and PyYAML
// (JSON out), or skips: no YAML parser is among this module's
// dependencies.
func gitopsYAML(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(gitopsDir, ".github/workflows/*.yml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("workflow files: %q, %v; want plan, apply, jitd and cleanup", files, err)
	}
	files = append(files, filepath.Join(gitopsDir, "atlantis.yaml"))
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found: cannot parse YAML")
	}
	const script = `import json, sys
try:
    import yaml
except ImportError:
    sys.exit(3)
print(json.dumps({f: yaml.safe_load(open(f)) for f in sys.argv[1:]}, default=str))`
	out, err := exec.Command("python3", append([]string{"-c", script}, files...)...).Output()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		t.Skip("PyYAML not installed: cannot parse YAML")
	case errors.As(err, &exit):
		t.Fatalf("YAML does not parse: %v\n%s", err, exit.Stderr)
	case err != nil:
		t.Fatal(err)
	}
	var docs map[string]map[string]any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for f, d := range docs {
		byName[filepath.Base(f)] = d
	}
	return byName
}

// dig walks a parsed YAML document by keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestGitOpsWorkflows(t *testing.T) {
	docs := gitopsYAML(t)
	for name, doc := range docs {
		if name == "atlantis.yaml" {
			continue
		}
		if dig(doc, "permissions", "id-token") != "write" {
			t.Errorf("%s: permissions.id-token is not write (no OIDC token for Azure)", name)
		}
		// PyYAML reads the key "on" as the boolean true.
		if dig(doc, "true") == nil || dig(doc, "jobs") == nil || dig(doc, "concurrency", "group") == nil {
			t.Errorf("%s: missing on, jobs or concurrency", name)
		}
	}

	plan := docs["plan.yml"]
	if dig(plan, "true", "pull_request") == nil || dig(plan, "permissions", "pull-requests") != "write" {
		t.Error("plan.yml: must run on pull_request and may comment")
	}
	planSteps := steps(t, plan, "plan")
	for _, want := range []string{"terraform fmt -check", "terraform init", "terraform validate", "terraform plan", "actions/github-script@", "exit 1"} {
		if !slices.ContainsFunc(planSteps, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("plan.yml: no step with %q", want)
		}
	}
	if !slices.ContainsFunc(planSteps, func(s string) bool { return strings.Contains(s, "updateComment") }) {
		t.Error("plan.yml: the plan comment is not updated in place")
	}

	apply := docs["apply.yml"]
	if b, ok := dig(apply, "true", "push", "branches").([]any); !ok || !slices.Contains(b, any("main")) {
		t.Error("apply.yml: must run on push to main")
	}
	if dig(apply, "concurrency", "cancel-in-progress") != false {
		t.Error("apply.yml: an apply in progress must never be cancelled")
	}
	if dig(apply, "jobs", "apply", "env", "ARM_USE_OIDC") != "true" {
		t.Error("apply.yml: ARM_USE_OIDC is not true")
	}
	applySteps := strings.Join(steps(t, apply, "apply"), "\n")
	if p, r := strings.Index(applySteps, "working-directory: policies"), strings.Index(applySteps, "working-directory: requests"); p < 0 || r < p {
		t.Error("apply.yml: policies must be applied before requests")
	}

	jitd := docs["jitd.yml"]
	if dig(jitd, "true", "schedule") == nil || !strings.Contains(strings.Join(steps(t, jitd, "close-expired-access"), "\n"), "jitd --once") {
		t.Error("jitd.yml: must run jitd --once on a schedule")
	}
	cleanup := strings.Join(steps(t, docs["cleanup.yml"], "cleanup"), "\n")
	for _, want := range []string{"terraform show -json", "git rm", "gh pr create"} {
		if !strings.Contains(cleanup, want) {
			t.Errorf("cleanup.yml: no %q", want)
		}
	}

	projects, _ := dig(docs["atlantis.yaml"], "projects").([]any)
	var dirs []string
	for _, p := range projects {
		dir, _ := dig(p, "dir").(string)
		dirs = append(dirs, dir)
		req, _ := dig(p, "apply_requirements").([]any)
		if !slices.Equal(req, []any{"approved", "mergeable"}) {
			t.Errorf("atlantis.yaml: project %v has apply_requirements %v", dig(p, "name"), req)
		}
	}
	if !slices.Equal(dirs, []string{"policies", "requests"}) {
		t.Errorf("atlantis.yaml: project dirs %q", dirs)
	}
}

// steps returns each step of a job as its JSON text, to search in.
func steps(t *testing.T, doc map[string]any, job string) []string {
	t.Helper()
	list, ok := dig(doc, "jobs", job, "steps").([]any)
	if !ok {
		t.Fatalf("no job %q with steps", job)
	}
	var out []string
	for _, s := range list {
		var b strings.Builder
		step, _ := s.(map[string]any)
		for k, v := range step {
			b.WriteString(k + ": ")
			if str, ok := v.(string); ok {
				b.WriteString(str)
			} else {
				j, _ := json.Marshal(v)
				b.Write(j)
			}
			b.WriteString("\n")
		}
		out = append(out, b.String())
	}
	return out
}

func terraformBinary(t *testing.T) string {
	t.Helper()
	p, err := testproc.TerraformPath()
	if err != nil {
		t.Skip("terraform not found on PATH")
	}
	return p
}

func TestGitOpsTerraformFormatted(t *testing.T) {
	terraform := terraformBinary(t)
	cmd := exec.Command(terraform, "fmt", "-check", "-recursive", "-diff", gitopsDir)
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+os.DevNull)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}

// TestGitOpsTerraformValidates installs the locally built provider through
// a filesystem mirror, so that a plain `terraform init` (without the
// backend) works offline, and validates both workspaces.
func TestGitOpsTerraformValidates(t *testing.T) {
	if os.Getenv("TF_ACC") == "" {
		t.Skip("set TF_ACC=1 to build the provider and run terraform validate on examples/gitops")
	}
	terraform := terraformBinary(t)
	work := t.TempDir()
	const version = "0.1.0"
	plugin := filepath.Join(work, "mirror/registry.terraform.io/jitaccess/jit", version, runtime.GOOS+"_"+runtime.GOARCH,
		"terraform-provider-jit_v"+version)
	if out, err := exec.Command("go", "build", "-o", plugin, "../../..").CombinedOutput(); err != nil {
		t.Fatalf("go build the provider: %v\n%s", err, out)
	}
	for _, ws := range []string{"policies", "requests"} {
		t.Run(ws, func(t *testing.T) {
			dir := filepath.Join(work, ws)
			must(t, os.CopyFS(dir, os.DirFS(filepath.Join(gitopsDir, ws))))
			if _, err := fs.Stat(os.DirFS(dir), ".terraform"); err == nil {
				t.Fatalf("%s/.terraform is in the example: remove it", ws)
			}
			tf := testproc.NewTerraform(t, terraform, dir, testproc.FilesystemMirror(filepath.Join(work, "mirror")), nil)
			for _, args := range [][]string{{"init", "-backend=false", "-input=false", "-no-color"}, {"validate", "-no-color"}} {
				if out, err := tf.Run(args...); err != nil {
					t.Fatalf("terraform %s in %s: %v\n%s", args[0], ws, err, out)
				}
			}
		})
	}
}
