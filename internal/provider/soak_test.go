package provider

// The fault soak: the real terraform CLI drives this package's provider,
// served in-process so that it shares a fake clock with an in-process jitd
// (package daemon), against a local Azure that fails a fifth of its ARM
// requests. It takes minutes, so it runs only with JIT_SOAK=1 (make
// test-soak); SOAK.md records its runs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
)

const (
	// soakFaultRate is the fraction of ARM requests the local Azure fails
	// while terraform and jitd work.
	soakFaultRate = 0.2
	// soakAttempts bounds the runs of one terraform command, and the jitd
	// passes, before the suite calls it non-convergence.
	soakAttempts = 5
	// soakGrants is the number of grants applied with the policy per cycle.
	soakGrants = 5
	// soakProviderAddress is the provider's registry address, the key of
	// TF_REATTACH_PROVIDERS.
	soakProviderAddress = "registry.terraform.io/jitaccess/jit"
)

// soakSkip skips t unless the soak suites were asked for, and returns the
// terraform binary to use.
func soakSkip(t *testing.T) string {
	t.Helper()
	if os.Getenv("JIT_SOAK") != "1" {
		t.Skip("soak suite: set JIT_SOAK=1 (make test-soak) to run it")
	}
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if tf == "" {
		var err error
		if tf, err = exec.LookPath("terraform"); err != nil {
			t.Fatal("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH")
		}
	}
	return tf
}

// soakInt reads a positive integer setting from the environment.
func soakInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestSoakFaults runs cycles of policy + grants → expiry → jitd closes →
// plan → destroy against a local Azure failing soakFaultRate of ARM
// requests (500, 503, 429, connection resets, failed long-running
// operations), retrying each command a bounded number of times, and
// asserts after every converged step that the Terraform state and the NSG
// agree, that nothing is reachable past its expiry once jitd's pass
// succeeded, and at the end that no foreign rule changed.
func TestSoakFaults(t *testing.T) {
	terraform := soakSkip(t)
	cycles := soakInt(t, "JIT_SOAK_CYCLES", 30)
	seed := int64(soakInt(t, "JIT_SOAK_SEED", 7))

	env := acctest.New(t, azuresim.Options{FaultSeed: seed})
	foreign := []*armnetwork.SecurityRule{
		acctest.AllowRule("AllowHTTPSFromInternet", 300, "Internet", "443"),
		acctest.AllowRule("AllowSSHFromVNet", 3000, "VirtualNetwork", "22"),
		acctest.AllowRule("AllowRDPFromOffice", 3100, "198.51.100.0/24", "3389"),
	}
	office := "office RDP, owned by the network team"
	foreign[2].Properties.Description = &office
	const nsgName = "nsg-soak"
	nsgID := env.CreateNSG(nsgName, foreign...)
	foreignBefore := foreignRulesJSON(t, env, nsgName)

	clock := newTestClock()
	ws := newSoakWorkspace(t, terraform, clock)
	jitd, err := daemon.New(daemon.Options{Rules: env.Client(), Scope: fixedScope{nsgID}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ws.write(t, env.ProviderBlock()+soakConfig(nsgID, soakGrants))
	if out, code := ws.run("init", "-input=false", "-no-color"); code != 0 {
		t.Fatalf("terraform init: exit %d\n%s", code, out)
	}

	var totals soakTotals
	// converge runs one terraform command with faults on until it succeeds,
	// then checks, with faults off, that the state and the NSG agree.
	converge := func(cycle int, what string, stats *commandStats, args ...string) {
		t.Helper()
		for attempt := 1; ; attempt++ {
			env.Sim.SetFaultRate(soakFaultRate)
			out, code := ws.run(args...)
			env.Sim.SetFaultRate(0)
			stats.attempted++
			if code == 0 {
				break
			}
			stats.failed++
			if d := ws.disagreement(t, env, nsgID); d != "" {
				totals.transient++
				t.Logf("cycle %d: %s attempt %d failed, state and NSG disagree until the next run: %s", cycle, what, attempt, d)
			}
			if attempt == soakAttempts {
				t.Fatalf("cycle %d: %s did not converge in %d attempts; last output:\n%s", cycle, what, soakAttempts, out)
			}
			stats.retried++
		}
		if d := ws.disagreement(t, env, nsgID); d != "" {
			t.Fatalf("cycle %d: after a successful %s, state and NSG disagree: %s", cycle, what, d)
		}
	}

	for cycle := 1; cycle <= cycles; cycle++ {
		before := totals
		converge(cycle, "apply", &totals.apply, "apply", "-auto-approve", "-input=false", "-no-color")
		granted := ws.grantSources(t)
		if len(granted) != soakGrants {
			t.Fatalf("cycle %d: %d grants in state after apply, want %d", cycle, len(granted), soakGrants)
		}
		expectReachable(t, env, nsgID, true, granted...)
		expectReachable(t, env, nsgID, false, "203.0.113.99", stranger)

		// Every grant is an hour long; jitd, on the same clock, closes them.
		clock.Advance(61 * time.Minute)
		for attempt := 1; ; attempt++ {
			env.Sim.SetFaultRate(soakFaultRate)
			sum := jitd.Pass(t.Context())
			env.Sim.SetFaultRate(0)
			totals.passes.attempted++
			if sum.Err() == nil {
				break
			}
			totals.passes.failed++
			if attempt == soakAttempts {
				t.Fatalf("cycle %d: jitd's pass failed %d times: %v", cycle, soakAttempts, sum.Err())
			}
			totals.passes.retried++
		}
		if left := grantRules(t, env, nsgID); len(left) > 0 {
			t.Fatalf("cycle %d: grant rules still on the NSG after jitd's pass succeeded: %v", cycle, left)
		}
		expectReachable(t, env, nsgID, false, granted...)

		// The plan reports the expiries and re-opens nothing.
		for attempt := 1; ; attempt++ {
			env.Sim.SetFaultRate(soakFaultRate)
			out, code := ws.run("plan", "-detailed-exitcode", "-input=false", "-no-color")
			env.Sim.SetFaultRate(0)
			totals.plan.attempted++
			if code == 0 {
				break
			}
			if code == 2 {
				t.Fatalf("cycle %d: the plan after expiry wants changes (it must re-open nothing):\n%s", cycle, out)
			}
			totals.plan.failed++
			if attempt == soakAttempts {
				t.Fatalf("cycle %d: plan did not succeed in %d attempts; last output:\n%s", cycle, soakAttempts, out)
			}
			totals.plan.retried++
		}
		expectReachable(t, env, nsgID, false, granted...)

		converge(cycle, "destroy", &totals.destroy, "destroy", "-auto-approve", "-input=false", "-no-color")
		if left := jitRules(t, env, nsgID); len(left) > 0 {
			t.Fatalf("cycle %d: JIT rules left on the NSG after destroy: %v", cycle, left)
		}
		clock.Advance(time.Minute)
		t.Logf("cycle %d converged: apply %d runs, jitd %d passes, plan %d runs, destroy %d runs; %d faults injected so far",
			cycle, totals.apply.attempted-before.apply.attempted, totals.passes.attempted-before.passes.attempted,
			totals.plan.attempted-before.plan.attempted, totals.destroy.attempted-before.destroy.attempted,
			env.Sim.Counters().FaultsInjected)
	}

	foreignAfter := foreignRulesJSON(t, env, nsgName)
	for _, name := range slices.Sorted(maps.Keys(foreignBefore)) {
		if !bytes.Equal(foreignBefore[name], foreignAfter[name]) {
			t.Errorf("foreign rule %s changed:\nbefore %s\nafter  %s", name, foreignBefore[name], foreignAfter[name])
		}
	}
	if len(foreignAfter) != len(foreignBefore) {
		t.Errorf("foreign rules before %v, after %v", slices.Sorted(maps.Keys(foreignBefore)), slices.Sorted(maps.Keys(foreignAfter)))
	}

	c := env.Sim.Counters()
	var faults []string
	for _, k := range slices.Sorted(maps.Keys(c.Faults)) {
		faults = append(faults, fmt.Sprintf("%s=%d", k, c.Faults[k]))
	}
	var requests []string
	for _, k := range slices.Sorted(maps.Keys(c.Requests)) {
		requests = append(requests, fmt.Sprintf("%s=%d", k, c.Requests[k]))
	}
	t.Logf("SOAK faults: %d cycles of policy + %d grants at fault rate %.0f%% (seed %d)", cycles, soakGrants, soakFaultRate*100, seed)
	t.Logf("SOAK faults: apply %s; plan %s; destroy %s; jitd pass %s", totals.apply, totals.plan, totals.destroy, totals.passes)
	t.Logf("SOAK faults: failed runs that left state and NSG disagreeing until the next run: %d", totals.transient)
	t.Logf("SOAK faults: %d faults injected: %s", c.FaultsInjected, strings.Join(faults, " "))
	t.Logf("SOAK faults: requests by kind: %s", strings.Join(requests, " "))
	t.Logf("SOAK faults: final state: %d JIT rules on the NSG, %d resources in state, %d foreign rules byte-identical",
		len(jitRules(t, env, nsgID)), len(ws.state(t).resources()), len(foreignAfter))
}

// soakConfig is a policy on one NSG and n one-hour grants of port 22.
func soakConfig(nsgID string, n int) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}

resource "jit_policy" "soak" {
  name                            = "soak"
  network_security_group_ids      = [%q]
  destination_address_prefixes    = [%q]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "3h" }]
}

resource "jit_access_grant" "g" {
  count                 = %d
  policy_id             = jit_policy.soak.id
  ports                 = [22]
  source_address_prefix = "203.0.113.${count.index + 10}"
  duration              = "1h"
  requester             = "user${count.index}@example.com"
  justification         = "fault soak"
}
`, nsgID, vm, n)
}

type commandStats struct{ attempted, failed, retried int }

func (s commandStats) String() string {
	return fmt.Sprintf("%d runs, %d failed, %d retried", s.attempted, s.failed, s.retried)
}

type soakTotals struct {
	apply, plan, destroy, passes commandStats
	transient                    int
}

// fixedScope is a jitd scope of fixed NSGs.
type fixedScope []string

func (s fixedScope) NSGIDs(context.Context) ([]string, error) { return s, nil }

// soakWorkspace is a terraform working directory whose provider is this
// test process's, reattached over go-plugin's debug protocol.
type soakWorkspace struct {
	dir, terraform string
	env            []string
}

// newSoakWorkspace serves the provider in this process on clock and
// returns a workspace whose terraform uses it.
func newSoakWorkspace(t *testing.T, terraform string, clock *testClock) *soakWorkspace {
	t.Helper()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "reattach.env")
	factory := providerserver.NewProtocol6(&jitProvider{version: "soak", commit: "soak", getenv: noEnv, clock: clock})
	served := make(chan error, 1)
	go func() {
		served <- tf6server.Serve(soakProviderAddress, factory,
			tf6server.WithManagedDebug(),
			tf6server.WithManagedDebugEnvFilePath(envFile),
			// Provider logs go where the acceptance tests' go: TF_LOG,
			// TF_LOG_PATH; none by default.
			tf6server.WithLoggingSink(t),
			// A signal nothing else in the test binary uses stops it.
			tf6server.WithManagedDebugStopSignals([]os.Signal{syscall.SIGUSR2}))
	}()
	var reattach string
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for reattach == "" {
		select {
		case err := <-served:
			t.Fatalf("serving the provider for terraform: %v", err)
		case <-tick.C:
			b, err := os.ReadFile(envFile)
			if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
				continue
			}
			v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "TF_REATTACH_PROVIDERS=")
			if !ok {
				t.Fatalf("unexpected reattach file %q", b)
			}
			reattach = strings.ReplaceAll(strings.Trim(v, "'"), `'"'"'`, "'")
		}
	}
	t.Cleanup(func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGUSR2)
		if err := <-served; err != nil {
			t.Errorf("provider server: %v", err)
		}
	})
	rc := filepath.Join(dir, "terraformrc")
	if err := os.WriteFile(rc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return &soakWorkspace{dir: dir, terraform: terraform, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TF_CLI_CONFIG_FILE=" + rc,
		"TF_REATTACH_PROVIDERS=" + reattach, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
	}}
}

func (w *soakWorkspace) write(t *testing.T, config string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, "main.tf"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run runs terraform and returns its combined output and exit code (-1
// when it could not run at all).
func (w *soakWorkspace) run(args ...string) (string, int) {
	cmd := exec.Command(w.terraform, append([]string{"-chdir=" + w.dir}, args...)...)
	cmd.Env = w.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		return out.String(), exit.ExitCode()
	} else if err != nil {
		return out.String() + err.Error(), -1
	}
	return out.String(), 0
}

// tfState is the part of `terraform show -json` the suite reads.
type tfState struct {
	Values struct {
		RootModule struct {
			Resources []tfResource `json:"resources"`
		} `json:"root_module"`
	} `json:"values"`
}

type tfResource struct {
	Address string         `json:"address"`
	Type    string         `json:"type"`
	Values  map[string]any `json:"values"`
}

func (s tfState) resources() []tfResource { return s.Values.RootModule.Resources }

func (w *soakWorkspace) state(t *testing.T) tfState {
	t.Helper()
	out, code := w.run("show", "-json", "-no-color")
	if code != 0 {
		t.Fatalf("terraform show: exit %d\n%s", code, out)
	}
	var s tfState
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("terraform show -json: %v\n%s", err, out)
	}
	return s
}

// grantSources are the source prefixes of the grants in state.
func (w *soakWorkspace) grantSources(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range w.state(t).resources() {
		if r.Type == "jit_access_grant" {
			src, _ := r.Values["source_address_prefix"].(string)
			out = append(out, src)
		}
	}
	return out
}

// disagreement compares the Terraform state with the NSG: the policy's
// rules are there if and only if the policy is in state, and the open
// grants in state are exactly the grant rules on the NSG. It returns ""
// when they agree.
func (w *soakWorkspace) disagreement(t *testing.T, env *acctest.Env, nsgID string) string {
	t.Helper()
	var problems []string
	inState := map[string]bool{}
	policyInState := false
	for _, r := range w.state(t).resources() {
		switch r.Type {
		case "jit_policy":
			policyInState = true
		case "jit_access_grant":
			if open, _ := r.Values["open"].(bool); open {
				name, _ := r.Values["rule_name"].(string)
				inState[name] = true
			}
		}
	}
	policyOnNSG := false
	onNSG := map[string]bool{}
	for _, name := range jitRules(t, env, nsgID) {
		if strings.HasPrefix(name, "jit-soak-g-") {
			onNSG[name] = true
		} else {
			policyOnNSG = true
		}
	}
	if policyInState != policyOnNSG {
		problems = append(problems, fmt.Sprintf("policy in state %v, policy rules on the NSG %v", policyInState, policyOnNSG))
	}
	for _, name := range slices.Sorted(maps.Keys(inState)) {
		if !onNSG[name] {
			problems = append(problems, "state without rule: "+name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(onNSG)) {
		if !inState[name] {
			problems = append(problems, "rule without state: "+name)
		}
	}
	return strings.Join(problems, "; ")
}

// jitRules are the names of the NSG's rules in the jit- namespace.
func jitRules(t *testing.T, env *acctest.Env, nsgID string) []string {
	t.Helper()
	var names []string
	for name := range env.Snapshot(nsgID) {
		if strings.HasPrefix(name, "jit-") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// grantRules are the names of the NSG's grant rules.
func grantRules(t *testing.T, env *acctest.Env, nsgID string) []string {
	t.Helper()
	return slices.DeleteFunc(jitRules(t, env, nsgID), func(n string) bool { return !strings.Contains(n, "-g-") })
}

func expectReachable(t *testing.T, env *acctest.Env, nsgID string, want bool, sources ...string) {
	t.Helper()
	for _, src := range sources {
		if got := env.Reachable([]string{nsgID}, src, vm, 22, "Tcp"); got != want {
			t.Fatalf("%s -> %s:22 reachable=%v, want %v", src, vm, got, want)
		}
	}
}

// foreignRulesJSON is every rule outside the jit- namespace as the Azure
// SDK decodes and encodes it, by name. The etag is left out: it changes
// with every write of the NSG, whoever makes it.
func foreignRulesJSON(t *testing.T, env *acctest.Env, nsgName string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, r := range env.Rules(nsgName) {
		if strings.HasPrefix(name, "jit-") {
			continue
		}
		r.Etag = nil
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}
