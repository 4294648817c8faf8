package main

// The crash soak: kill -9 at random points, with real processes. jitd is
// killed while grants expire and restarted; terraform (or the provider
// process it runs) is killed during an apply of a policy and grants, and
// the next apply must converge. It takes minutes, so it runs only with
// JIT_SOAK=1 (make test-soak); SOAK.md records its runs.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// crashSoakSetup skips t unless the soak suites were asked for, and
// returns the terraform binary, the number of runs of each kind and a
// random source whose seed is logged (JIT_SOAK_SEED replays a run).
func crashSoakSetup(t *testing.T) (terraform string, runs int, rng *rand.Rand) {
	t.Helper()
	if os.Getenv("JIT_SOAK") != "1" {
		t.Skip("soak suite: set JIT_SOAK=1 (make test-soak) to run it")
	}
	terraform, err := testproc.TerraformPath()
	if err != nil {
		t.Fatal(err)
	}
	runs = 10
	if v := os.Getenv("JIT_SOAK_CRASH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("JIT_SOAK_CRASH_RUNS=%q: want a positive integer", v)
		}
		runs = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("JIT_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("JIT_SOAK_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("SOAK crash: seed %d (JIT_SOAK_SEED=%d replays the kill points)", seed, seed)
	return terraform, runs, rand.New(rand.NewPCG(seed, 0x6a6974)) //nolint:gosec // reproducible kill points, not security
}

// TestSoakCrashJitd kills jitd with SIGKILL at a random moment while the
// grants of an NSG expire, restarts it, and requires every expired grant
// closed (and nothing else touched) once the restarted jitd has had its
// first pass.
func TestSoakCrashJitd(t *testing.T) {
	_, runs, rng := crashSoakSetup(t)
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	lo, _ := p.Band.GrantRange()
	var closedBeforeKill, closedAfterRestart int
	var maxLag time.Duration
	for run := range runs {
		rg := fmt.Sprintf("soak-jitd-%02d", run)
		nsgID := la.createNSG(t, rg, "nsg", p.Rules()...)
		policyRules := la.ruleNames(t, nsgID)

		// Four grants expiring one second apart, starting a few seconds
		// out: the kill lands before, among or after the expiries.
		base := time.Now().Truncate(time.Second).Add(3 * time.Second)
		type planted struct {
			rule, source string
			exp          time.Time
		}
		var grants []planted
		for i := range 4 {
			src := fmt.Sprintf("203.0.113.%d", 10+i)
			spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "5m", Requester: "soak@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			exp := base.Add(time.Duration(i) * time.Second)
			r := p.GrantRule(fmt.Sprintf("c%02d%d", run, i), spec, exp, lo+int32(i))
			if _, err := la.client.PutRule(t.Context(), nsgID, r); err != nil {
				t.Fatal(err)
			}
			grants = append(grants, planted{r.Name, src, exp})
		}
		last := grants[len(grants)-1].exp

		auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
		scope := []string{"--resource-group", la.subscription() + "/" + rg, "--interval", "1h"}
		d := la.startJitd(t, auditLog, scope...)
		// A random point from now to two seconds past the last expiry.
		window := time.Until(last.Add(2 * time.Second))
		killAfter := time.Duration(rng.Int64N(int64(max(window, time.Millisecond))))
		<-time.After(killAfter)
		if err := d.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := <-d.Exited; err == nil {
			t.Fatalf("run %d: jitd exited cleanly after SIGKILL", run)
		}
		killedAt := time.Now()
		open := la.ruleNames(t, nsgID)
		for _, g := range grants {
			if !slices.Contains(open, g.rule) {
				closedBeforeKill++
				if killedAt.Before(g.exp) {
					t.Errorf("run %d: %s was closed before its expiry %s", run, g.rule, g.exp.Format(time.RFC3339))
				}
			}
		}

		restarted := la.startJitd(t, auditLog, scope...)
		if err := poll(time.Until(last)+30*time.Second, func() bool {
			left := la.ruleNames(t, nsgID)
			return !slices.ContainsFunc(grants, func(g planted) bool { return slices.Contains(left, g.rule) })
		}); err != nil {
			t.Fatalf("run %d (killed %s after start): expired grants not closed after the restart: %v\n%s",
				run, killAfter.Round(time.Millisecond), err, restarted.Logs())
		}
		restarted.stop(t)
		if got := la.ruleNames(t, nsgID); !slices.Equal(got, policyRules) {
			t.Fatalf("run %d: rules after the restart %v, want the policy's alone %v", run, got, policyRules)
		}
		deletes := la.deleteEvents(t)
		for _, g := range grants {
			if la.reachable(t, nsgID, g.source) {
				t.Errorf("run %d: %s still reaches 10.0.1.4:22 after its grant expired", run, g.source)
			}
			if e, ok := deletes[strings.ToLower(nsgID)+"/"+g.rule]; ok {
				if killedAt.Before(e.Accepted) {
					closedAfterRestart++
				}
				maxLag = max(maxLag, e.Completed.Sub(g.exp))
			}
		}
		t.Logf("run %d: jitd killed %s after it was ready (%s relative to the last expiry)",
			run, killAfter.Round(time.Millisecond), killedAt.Sub(last).Round(time.Millisecond))
	}
	t.Logf("SOAK crash jitd: %d runs, %d grants: %d closed before the kill, %d by the restarted jitd; longest expiry-to-close %s (includes the time jitd was dead)",
		runs, runs*4, closedBeforeKill, closedAfterRestart, maxLag.Round(time.Millisecond))
}

// crashConfig is a policy on the NSG and three one-minute grants.
const crashConfig = terraformConfig + `resource "jit_access_grant" "g" {
  count                 = 3
  policy_id             = jit_policy.web_ssh.id
  ports                 = [22]
  source_address_prefix = "203.0.113.${count.index + 20}"
  duration              = "1m"
  requester             = "user${count.index}@example.com"
  justification         = "crash soak"
}
`

// TestSoakCrashTerraform kills terraform, or the provider process it
// runs, with SIGKILL at a random moment of an apply of a policy and
// grants. The next apply must succeed and leave the state and the NSG in
// agreement: no state without a rule, the policy adopted if its write
// outlived the state. A grant rule written but lost from state (an orphan)
// must be closed by `jitd --once` after its expiry.
func TestSoakCrashTerraform(t *testing.T) {
	terraform, runs, rng := crashSoakSetup(t)
	la := startLocalAzure(t)
	pluginDir, err := buildProvider()
	if err != nil {
		t.Fatal(err)
	}
	const rg = "soak-terraform"
	// Azure takes a while to finish a write, and a kill is most
	// interesting while one is under way: accepted by Azure, not yet in
	// the state.
	la.setWriteLatency(t, 300*time.Millisecond)
	t.Cleanup(func() { la.setWriteLatency(t, 0) })

	// One apply without a kill measures how long an apply takes, so that
	// the kill points cover it.
	calibration := newCrashWorkspace(t, la, terraform, pluginDir, la.createNSG(t, rg, "nsg-calibration"))
	started := time.Now()
	if out, code := calibration.run("apply", "-auto-approve", "-input=false", "-no-color"); code != 0 {
		t.Fatalf("terraform apply without a kill: exit %d\n%s", code, out)
	}
	applyTime := time.Since(started)
	t.Logf("an apply of the policy and 3 grants takes %s", applyTime.Round(time.Millisecond))

	var killedTerraform, killedProvider, finished, adopted, orphans int
	var nsgs []string
	for run := range runs {
		nsgID := la.createNSG(t, rg, fmt.Sprintf("nsg-%02d", run))
		nsgs = append(nsgs, nsgID)
		ws := newCrashWorkspace(t, la, terraform, pluginDir, nsgID)
		victim := "terraform"
		if run%2 == 1 {
			victim = "provider"
		}
		killAfter := time.Duration(rng.Int64N(int64(applyTime)))
		outcome, out := ws.applyAndKill(t, victim, killAfter)
		switch outcome {
		case "finished":
			finished++
		case "terraform":
			killedTerraform++
		case "provider":
			killedProvider++
		}

		next, code := ws.run("apply", "-auto-approve", "-input=false", "-no-color")
		if code != 0 {
			t.Fatalf("run %d (%s killed after %s): the next apply failed with exit %d\nkilled apply:\n%s\nnext apply:\n%s",
				run, victim, killAfter.Round(time.Millisecond), code, out, next)
		}
		if strings.Contains(next, "Adopting Existing JIT Policy") {
			adopted++
		}
		lost := ws.agree(t, la, nsgID)
		orphans += len(lost)
		if out, code := ws.run("plan", "-detailed-exitcode", "-input=false", "-no-color"); code != 0 {
			t.Fatalf("run %d: the plan after the converging apply exits %d, want 0 (no changes)\n%s", run, code, out)
		}
		t.Logf("run %d: %s killed after %s (outcome: %s); next apply converged, adopting the policy: %v; orphaned grant rules: %v",
			run, victim, killAfter.Round(time.Millisecond), outcome, strings.Contains(next, "Adopting Existing JIT Policy"), lost)
	}

	// Every grant is one minute long: once the last has expired, one
	// `jitd --once` closes them all, orphans included.
	var last time.Time
	for _, id := range nsgs {
		rules, err := la.client.ListRules(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range jit.ReadNSG(rules).Grants {
			if g.ExpiresAt.After(last) {
				last = g.ExpiresAt
			}
		}
	}
	<-time.After(time.Until(last) + time.Second)
	cmd := exec.Command(la.jitd, "--once", "--resource-group", la.subscription()+"/"+rg,
		"--audit-log", filepath.Join(t.TempDir(), "audit.jsonl"))
	cmd.Env = append(la.environ(), "PATH="+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("jitd --once after the last expiry: %v\n%s", err, out)
	}
	for _, id := range nsgs {
		rules, err := la.client.ListRules(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		view := jit.ReadNSG(rules)
		if len(view.Grants) > 0 || len(view.Malformed) > 0 {
			t.Errorf("%s: grant rules left after jitd --once: %d grants, %d malformed", id, len(view.Grants), len(view.Malformed))
		}
		if _, ok := view.Policies["web-ssh"]; !ok {
			t.Errorf("%s: the policy's rules are gone", id)
		}
		for i := range 3 {
			if src := fmt.Sprintf("203.0.113.%d", 20+i); la.reachable(t, id, src) {
				t.Errorf("%s: %s still reaches 10.0.1.4:22 after every grant expired", id, src)
			}
		}
	}
	t.Logf("SOAK crash terraform: %d runs: terraform killed %d, provider killed %d, apply finished before the kill %d; next apply converged %d/%d (policy adopted %d times); orphaned grant rules %d, all closed by jitd --once after expiry",
		runs, killedTerraform, killedProvider, finished, runs, runs, adopted, orphans)
}

// setWriteLatency sets how long the local Azure's writes take.
func (la *localAzure) setWriteLatency(t *testing.T, d time.Duration) {
	t.Helper()
	la.setConfig(t, "writeLatency", d)
}

// setConfig sets one duration of the local Azure's run-time configuration
// (PUT /_sim/config): writeLatency or graphLag.
func (la *localAzure) setConfig(t *testing.T, field string, d time.Duration) {
	t.Helper()
	body := fmt.Sprintf(`{%q:%q}`, field, d.String())
	req, err := http.NewRequest(http.MethodPut, la.url+"/_sim/config", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := la.http.Do(req)
	if err != nil {
		t.Fatalf("set the local Azure's %s: %v", field, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set the local Azure's %s: %s", field, resp.Status)
	}
}

// environ is the local Azure's environment for a child process.
func (la *localAzure) environ() []string {
	return append([]string{"ARM_USE_CLI=false"}, la.sim.Environ()...)
}

// crashWorkspace is a terraform working directory using the provider
// binary through dev_overrides.
type crashWorkspace struct{ *testproc.Terraform }

func newCrashWorkspace(t *testing.T, la *localAzure, terraform, pluginDir, nsgID string) *crashWorkspace {
	t.Helper()
	return &crashWorkspace{testproc.NewTerraform(t, terraform, t.TempDir(), testproc.DevOverrides(pluginDir),
		map[string]string{"main.tf": crashConfig}, append(la.environ(), "TF_VAR_nsg_id="+nsgID)...)}
}

// run runs terraform to the end and returns its output and exit code.
func (w *crashWorkspace) run(args ...string) (string, int) {
	cmd, out := w.Command(nil, args...)
	err := cmd.Run()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		return out.String(), exit.ExitCode()
	} else if err != nil {
		return out.String() + err.Error(), -1
	}
	return out.String(), 0
}

// applyAndKill starts `terraform apply` and, killAfter later, kills the
// victim with SIGKILL: terraform itself (then also the provider process it
// leaves behind, as when the CI runner dies) or the provider process. It
// returns what was killed ("finished" when the apply ended first) and the
// apply's output.
func (w *crashWorkspace) applyAndKill(t *testing.T, victim string, killAfter time.Duration) (string, string) {
	t.Helper()
	cmd, out := w.Command(nil, "apply", "-auto-approve", "-input=false", "-no-color")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("terraform apply failed before the kill: %v\n%s", waitErr, out)
		}
		return "finished", out.String()
	case <-time.After(killAfter):
	}
	tfPID := cmd.Process.Pid
	providers := childrenNamed(tfPID, "terraform-provi") // comm is cut to 15 bytes
	if victim == "provider" && len(providers) == 0 {
		// Not started yet: kill it as soon as it is.
		_ = poll(30*time.Second, func() bool {
			providers = childrenNamed(tfPID, "terraform-provi")
			select {
			case <-exited:
				return true
			default:
				return len(providers) > 0
			}
		})
	}
	if victim == "provider" && len(providers) > 0 {
		for _, pid := range providers {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// terraform reports the plugin's crash and exits.
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("terraform did not exit after its provider was killed\n%s", out)
		}
		return "provider", out.String()
	}
	_ = cmd.Process.Kill()
	<-exited
	for _, pid := range providers {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if waitErr == nil {
		return "finished", out.String()
	}
	return "terraform", out.String()
}

// childrenNamed returns the pids of ppid's children whose command name is
// comm.
func childrenNamed(ppid int, comm string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the
		// last parenthesis.
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(string(stat[end+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) && string(stat[open+1:end]) == comm {
			pids = append(pids, pid)
		}
	}
	return pids
}

// agree checks that the converged state and the NSG agree: the policy is
// in both, every open grant in state has its rule on the NSG, and it
// returns the grant rules on the NSG that no state holds (orphans of the
// killed apply, closed by jitd at their expiry).
func (w *crashWorkspace) agree(t *testing.T, la *localAzure, nsgID string) []string {
	t.Helper()
	out, code := w.run("show", "-json", "-no-color")
	if code != 0 {
		t.Fatalf("terraform show: exit %d\n%s", code, out)
	}
	var state struct {
		Values struct {
			RootModule struct {
				Resources []struct {
					Type   string         `json:"type"`
					Values map[string]any `json:"values"`
				} `json:"resources"`
			} `json:"root_module"`
		} `json:"values"`
	}
	if err := json.Unmarshal([]byte(out), &state); err != nil {
		t.Fatalf("terraform show -json: %v", err)
	}
	onNSG := map[string]bool{}
	for _, name := range la.ruleNames(t, nsgID) {
		onNSG[name] = true
	}
	inState := map[string]bool{}
	policies, grants := 0, 0
	for _, r := range state.Values.RootModule.Resources {
		switch r.Type {
		case "jit_policy":
			policies++
		case "jit_access_grant":
			grants++
			name, _ := r.Values["rule_name"].(string)
			if open, _ := r.Values["open"].(bool); open {
				inState[name] = true
				if !onNSG[name] {
					t.Errorf("%s: grant %s is open in state but has no rule on the NSG", nsgID, name)
				}
			}
		}
	}
	if policies != 1 || grants != 3 {
		t.Errorf("%s: state holds %d policies and %d grants, want 1 and 3", nsgID, policies, grants)
	}
	if !onNSG["jit-web-ssh-deny-tcp"] {
		t.Errorf("%s: the policy's deny-all rule is not on the NSG", nsgID)
	}
	var orphans []string
	for name := range onNSG {
		if strings.HasPrefix(name, "jit-web-ssh-g-") && !inState[name] {
			orphans = append(orphans, name)
		}
	}
	slices.Sort(orphans)
	return orphans
}
