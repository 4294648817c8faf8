package main

// Checks of examples/gitops, the copyable approval-flow repository: its
// workflow files parse and say what the flow depends on, a pull request can
// always merge through one required check, and its example request is
// exactly what `jitd request` prints. (That its Terraform is formatted and
// validates, and that actionlint passes its workflows, is checked with every
// other example in internal/examples.)

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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

// gitopsYAML parses the example's workflow files and atlantis.yaml.
func gitopsYAML(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(gitopsDir, ".github/workflows/*.yml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("workflow files: %q, %v; want plan, apply, jitd and cleanup", files, err)
	}
	files = append(files, filepath.Join(gitopsDir, "atlantis.yaml"), filepath.Join(gitopsDir, ".github/dependabot.yml"))
	byName := map[string]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s does not parse: %v", f, err)
		}
		byName[filepath.Base(f)] = doc
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
		if name == "atlantis.yaml" || name == "dependabot.yml" {
			continue
		}
		if dig(doc, "permissions", "id-token") != "write" {
			t.Errorf("%s: permissions.id-token is not write (no OIDC token for Azure)", name)
		}
		if name == "dependabot.yml" {
			continue
		}
		if dig(doc, "on") == nil || dig(doc, "jobs") == nil || dig(doc, "concurrency", "group") == nil {
			t.Errorf("%s: missing on, jobs or concurrency", name)
		}
	}

	plan := docs["plan.yml"]
	if dig(plan, "on", "pull_request") == nil || dig(plan, "permissions", "pull-requests") != "write" {
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
	if b, ok := dig(apply, "on", "push", "branches").([]any); !ok || !slices.Contains(b, any("main")) {
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
	if dig(jitd, "on", "schedule") == nil || !strings.Contains(strings.Join(steps(t, jitd, "close-expired-access"), "\n"), "jitd --once") {
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

// TestGitOpsGateIsTheOnlyRequiredCheck: plan.yml runs on every pull
// request (a paths filter would leave the required check missing on a pull
// request outside it), and its gate job needs every other job, runs even
// when they fail or are skipped, and fails unless each succeeded or was
// skipped because nothing changed. The README tells to require it alone.
func TestGitOpsGateIsTheOnlyRequiredCheck(t *testing.T) {
	plan := gitopsYAML(t)["plan.yml"]
	if pr, ok := dig(plan, "on", "pull_request").(map[string]any); !ok || pr["paths"] != nil || pr["paths-ignore"] != nil {
		t.Errorf("plan.yml: on.pull_request must have no paths filter: %v", dig(plan, "on", "pull_request"))
	}
	jobs, _ := dig(plan, "jobs").(map[string]any)
	gate := dig(plan, "jobs", "gate")
	if dig(gate, "name") != "JIT checks" || dig(gate, "if") != "always()" {
		t.Fatalf("plan.yml: no gate job named \"JIT checks\" with if: always(): %v", gate)
	}
	needs, _ := dig(gate, "needs").([]any)
	for name := range jobs {
		if name != "gate" && !slices.Contains(needs, any(name)) {
			t.Errorf("plan.yml: the gate does not need job %q: a failure there would not block the merge", name)
		}
	}
	script := strings.Join(steps(t, plan, "gate"), "\n")
	for _, want := range []string{"needs.*.result", "needs.changes.result", "needs.plan.result", "needs.changes.outputs.workspaces", "skipped", "exit 1"} {
		if !strings.Contains(script, want) {
			t.Errorf("plan.yml: the gate's step does not use %q", want)
		}
	}
	for name, job := range jobs {
		if cond, _ := dig(job, "if").(string); name != "gate" && strings.Contains(cond, "always()") {
			t.Errorf("plan.yml: job %q runs always(); only the gate should", name)
		}
	}

	readme, err := os.ReadFile(filepath.Join(gitopsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`JIT checks`", "atlantis/plan", "apply_requirements"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not mention %s", want)
		}
	}
	if strings.Contains(string(readme), "status checks\n  `Plan policies` / `Plan requests`") {
		t.Error("README.md still tells to require the plan jobs, which exist only when their folder changes")
	}
}

func TestGitOpsDependabot(t *testing.T) {
	doc := gitopsYAML(t)["dependabot.yml"]
	updates, _ := dig(doc, "updates").([]any)
	var ecosystems []string
	for _, u := range updates {
		e, _ := dig(u, "package-ecosystem").(string)
		ecosystems = append(ecosystems, e)
	}
	slices.Sort(ecosystems)
	if !slices.Equal(ecosystems, []string{"github-actions", "terraform"}) {
		t.Errorf("dependabot.yml: ecosystems %q, want github-actions and terraform", ecosystems)
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
