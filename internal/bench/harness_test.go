package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// EnvEnable turns the measurements on; without it every test here skips, so
// that `make test` stays fast.
const EnvEnable = "JIT_BENCH"

// The policy every measurement uses: port 22 of one VM, requests from one
// /24, grants up to an hour, a band wide enough for 100 grants per NSG.
const (
	policyName     = "bench"
	destination    = "10.0.1.4"
	allowedSources = "203.0.113.0/24"
	bandStart      = 100
	bandEnd        = 299
)

// benchPolicy is the domain form of the policy in terraformConfig, for
// planting the same rules directly.
func benchPolicy(t *testing.T) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: policyName, DestinationPrefixes: []string{destination},
		AllowedSources: []string{allowedSources}, BandStart: bandStart, BandEnd: bandEnd,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatalf("benchmark policy: %v", err)
	}
	return p
}

// grantSource is the source address of the i-th grant (0-based).
func grantSource(i int) string { return fmt.Sprintf("203.0.113.%d", i+1) }

// terraformConfig is one policy over var.nsg_ids and var.grants grants of
// it, each from its own address (the i-th from grantSource(i)).
const terraformConfig = `
terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}

provider "jit" {}

variable "nsg_ids" { type = list(string) }

variable "grants" {
  type    = number
  default = 0
}

resource "jit_policy" "bench" {
  name                            = "bench"
  network_security_group_ids      = var.nsg_ids
  destination_address_prefixes    = ["10.0.1.4"]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "1h" }]
  priority_band                   = { start = 100, end = 299 }
}

resource "jit_access_grant" "g" {
  count                 = var.grants
  policy_id             = jit_policy.bench.id
  ports                 = [22]
  source_address_prefix = cidrhost("203.0.113.0/24", count.index + 1)
  duration              = "1h"
  requester             = "bench@example.com"
  justification         = "benchmark"
}

output "rule_names" { value = jit_access_grant.g[*].rule_name }
`

// requireEnabled skips the test unless JIT_BENCH=1.
func requireEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvEnable) != "1" {
		t.Skipf("set %s=1 to run the benchmarks (make bench); they take minutes", EnvEnable)
	}
}

// built holds the binaries built once per test process.
var built struct {
	once        sync.Once
	dir         string
	providerDir string // holds terraform-provider-jit, for dev_overrides
	jitd        string
	err         error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaries builds the provider and jitd from the working tree, once.
func binaries(t *testing.T) (providerDir, jitd string) {
	t.Helper()
	built.once.Do(func() {
		// Shared by every test of the process (TestMain removes it), so
		// not a t.TempDir of the first one.
		if built.dir, built.err = os.MkdirTemp("", "jit-bench-"); built.err != nil { //nolint:usetesting // see above
			return
		}
		built.providerDir = filepath.Join(built.dir, "provider")
		built.jitd = filepath.Join(built.dir, "jitd")
		const module = "github.com/jitaccess/terraform-provider-jit"
		for out, pkg := range map[string]string{
			filepath.Join(built.providerDir, "terraform-provider-jit"): module,
			built.jitd: module + "/internal/cmd/jitd",
		} {
			if b, err := exec.Command("go", "build", "-trimpath", "-o", out, pkg).CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.providerDir, built.jitd
}

func terraformPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		return p
	}
	p, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH")
	}
	return p
}

// environ is what a process needs to talk to the local Azure, as a CI job
// talks to Azure: the ARM_* variables and the CA to trust.
func environ(sim *azuresim.Server) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "ARM_USE_CLI=false", "CHECKPOINT_DISABLE=1"}
	for k, v := range sim.Environ(simtest.CAFile()) {
		env = append(env, k+"="+v)
	}
	return env
}

// workspace is a Terraform working directory using the freshly built
// provider through dev_overrides (no init, nothing downloaded).
type workspace struct {
	t   *testing.T
	dir string
	tf  string
	env []string
}

// newWorkspace writes config (terraformConfig unless given) to a new
// working directory whose var.nsg_ids are nsgIDs.
func newWorkspace(t *testing.T, sim *azuresim.Server, nsgIDs []string, config ...string) *workspace {
	t.Helper()
	providerDir, _ := binaries(t)
	dir := t.TempDir()
	rc := filepath.Join(dir, "terraformrc")
	mustWrite(t, rc, `provider_installation {
  dev_overrides { "jitaccess/jit" = "`+providerDir+`" }
  direct {}
}
`)
	main := terraformConfig
	if len(config) > 0 {
		main = strings.Join(config, "\n")
	}
	mustWrite(t, filepath.Join(dir, "main.tf"), main)
	ids, err := json.Marshal(nsgIDs)
	if err != nil {
		t.Fatal(err)
	}
	env := append(environ(sim), "HOME="+dir, "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1",
		"TF_VAR_nsg_ids="+string(ids), "JIT_AUDIT_LOG_PATH="+filepath.Join(dir, "audit.jsonl"))
	return &workspace{t: t, dir: dir, tf: terraformPath(t), env: env}
}

// run runs terraform with extra environment variables (e.g. TF_VAR_grants)
// and returns its output, wall time and error.
func (w *workspace) run(extraEnv []string, args ...string) (string, time.Duration, error) {
	cmd := exec.Command(w.tf, append([]string{"-chdir=" + w.dir}, args...)...)
	cmd.Env = append(slices.Clone(w.env), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return out.String(), time.Since(start), err
}

// apply applies the configuration with the given number of grants (and
// more terraform apply arguments).
func (w *workspace) apply(grants int, args ...string) time.Duration {
	w.t.Helper()
	out, d, err := w.run([]string{fmt.Sprintf("TF_VAR_grants=%d", grants)},
		append([]string{"apply", "-auto-approve", "-input=false", "-no-color"}, args...)...)
	if err != nil {
		w.t.Fatalf("terraform apply with %d grants: %v\n%s", grants, err, tail(out))
	}
	return d
}

// output returns a list output of the applied configuration.
func (w *workspace) outputList(name string) []string {
	w.t.Helper()
	out, _, err := w.run(nil, "output", "-json", name)
	if err != nil {
		w.t.Fatalf("terraform output %s: %v\n%s", name, err, out)
	}
	var v []string
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		w.t.Fatalf("terraform output %s: %v\n%s", name, err, out)
	}
	return v
}

// tail is the end of a long command output, enough for its error.
func tail(s string) string {
	const n = 4000
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sdkRules is an armnetwork security rules client for the local Azure, as
// azurerm (or any other ARM client) would build one.
func sdkRules(t *testing.T, sim *azuresim.Server) *armnetwork.SecurityRulesClient {
	t.Helper()
	c := cloud.Configuration{
		ActiveDirectoryAuthorityHost: sim.URL() + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: sim.URL(), Audience: sim.URL()},
		},
	}
	cred, err := azidentity.NewClientSecretCredential(sim.TenantID(), sim.ClientID(), sim.ClientSecret(),
		&azidentity.ClientSecretCredentialOptions{ClientOptions: policy.ClientOptions{Cloud: c}, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("credential for the local Azure: %v", err)
	}
	rules, err := armnetwork.NewSecurityRulesClient(sim.SubscriptionID(), cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: c}})
	if err != nil {
		t.Fatalf("armnetwork client for the local Azure: %v", err)
	}
	return rules
}

// newEnv starts a local Azure with the acceptance tests' fixtures.
func newEnv(t *testing.T, opts azuresim.Options) *acctest.Env {
	t.Helper()
	return acctest.New(t, opts)
}

// nsgID is the id of an NSG in the local Azure's default subscription.
func nsgID(rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/%s",
		azuresim.DefaultSubscriptionID, rg, name)
}

// writeSeedFile writes a local Azure seed file: NSGs (by id) with rules,
// loaded at start without going through ARM (no write tokens, no latency).
func writeSeedFile(t *testing.T, nsgs map[string][]jit.SecurityRule) string {
	t.Helper()
	type seedNSG struct {
		ID         string `json:"id"`
		Location   string `json:"location"`
		Properties struct {
			SecurityRules []*armnetwork.SecurityRule `json:"securityRules"`
		} `json:"properties"`
	}
	var seed struct {
		NetworkSecurityGroups []seedNSG `json:"networkSecurityGroups"`
	}
	for _, id := range slices.Sorted(maps.Keys(nsgs)) {
		n := seedNSG{ID: id, Location: "westeurope"}
		for _, r := range nsgs[id] {
			n.Properties.SecurityRules = append(n.Properties.SecurityRules, toARM(r))
		}
		seed.NetworkSecurityGroups = append(seed.NetworkSecurityGroups, n)
	}
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatalf("seed file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	mustWrite(t, path, string(b))
	return path
}

// toARM is the armnetwork form of a rule: single values in the singular
// fields, as the portal and azurerm write them.
func toARM(r jit.SecurityRule) *armnetwork.SecurityRule {
	one := func(v []string) (*string, []*string) {
		if len(v) == 1 {
			return &v[0], nil
		}
		many := make([]*string, len(v))
		for i := range v {
			many[i] = &v[i]
		}
		return nil, many
	}
	p := &armnetwork.SecurityRulePropertiesFormat{
		Priority:  to(r.Priority),
		Direction: to(armnetwork.SecurityRuleDirection(r.Direction)),
		Access:    to(armnetwork.SecurityRuleAccess(r.Access)),
		Protocol:  to(armnetwork.SecurityRuleProtocol(r.Protocol)),
	}
	p.SourceAddressPrefix, p.SourceAddressPrefixes = one(r.SourcePrefixes)
	p.SourcePortRange, p.SourcePortRanges = one(r.SourcePorts)
	p.DestinationAddressPrefix, p.DestinationAddressPrefixes = one(r.DestinationPrefixes)
	p.DestinationPortRange, p.DestinationPortRanges = one(r.DestinationPorts)
	if r.Description != "" {
		p.Description = to(r.Description)
	}
	return &armnetwork.SecurityRule{Name: to(r.Name), Properties: p}
}

func to[T any](v T) *T { return &v }

// armWrites counts write requests to ARM (PUT, PATCH, DELETE of NSGs and
// rules), refused ones included: what the subscription's write limit and
// the NSG's one-write-at-a-time rule see.
func armWrites(c azuresim.Counters) int64 {
	var n int64
	for k, v := range c.Requests {
		method, kind, _ := strings.Cut(k, " ")
		if (method == http.MethodPut || method == http.MethodPatch || method == http.MethodDelete) && (kind == "nsg" || kind == "rule") {
			n += v
		}
	}
	return n
}

// armReads counts GET requests for ARM resources: not the polls of
// long-running operations, the metadata endpoint or Entra ID.
func armReads(c azuresim.Counters) int64 {
	var n int64
	for k, v := range c.Requests {
		method, kind, _ := strings.Cut(k, " ")
		if method == http.MethodGet && !notARMResource[kind] {
			n += v
		}
	}
	return n
}

// notARMResource are the local Azure's request kinds that are not ARM
// resources.
var notARMResource = map[string]bool{
	"operation": true, "operation-result": true, "metadata": true, "sim": true,
	"openid": true, "keys": true, "token": true, "unknown": true, "msi": true, "github-oidc": true,
}

// requestBreakdown formats the request counters, sorted, e.g.
// "GET rule-list=1 POST token=1".
func requestBreakdown(c azuresim.Counters) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.Requests)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c.Requests[k]))
	}
	return strings.Join(parts, ", ")
}

// statusBreakdown formats the non-2xx answers, e.g. "PUT rule 429=3".
func statusBreakdown(c azuresim.Counters) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.Responses)) {
		if i := strings.LastIndexByte(k, ' '); i > 0 && !strings.HasPrefix(k[i+1:], "2") {
			parts = append(parts, fmt.Sprintf("%s=%d", k, c.Responses[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// writeSpan is the time from the first accepted to the last completed
// successful write among events, and how many there were.
func writeSpan(events []azuresim.Event) (span time.Duration, writes int) {
	var first, last time.Time
	for _, e := range events {
		if e.Result != "Succeeded" {
			continue
		}
		writes++
		if first.IsZero() || e.Accepted.Before(first) {
			first = e.Accepted
		}
		if e.Completed.After(last) {
			last = e.Completed
		}
	}
	return last.Sub(first), writes
}

// eventsAfter returns the events with a sequence number above seq.
func eventsAfter(events []azuresim.Event, seq int64) []azuresim.Event {
	var out []azuresim.Event
	for _, e := range events {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out
}

// lastSeq is the sequence number of the last event so far.
func lastSeq(sim *azuresim.Server) int64 {
	ev := sim.Events()
	if len(ev) == 0 {
		return 0
	}
	return ev[len(ev)-1].Seq
}

// percentile returns the p-th percentile (0–100, nearest rank) of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// ratio formats a/b.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f (1/%.1f)", a/b, b/a)
}

// jitdProcess is a running jitd.
type jitdProcess struct {
	cmd    *exec.Cmd
	addr   string // /healthz, /readyz and /metrics
	logs   *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startJitd starts the jitd binary against the local Azure and waits until
// its first full pass is done (/readyz answers 200).
func startJitd(t *testing.T, sim *azuresim.Server, args ...string) *jitdProcess {
	t.Helper()
	_, bin := binaries(t)
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--audit-log", filepath.Join(t.TempDir(), "audit.jsonl")}, args...)...)
	cmd.Env = environ(sim)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &jitdProcess{cmd: cmd, logs: &syncBuffer{}, exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jitd: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = p.logs.Write(append(line, '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving health and metrics" {
				addr <- rec.Addr
			}
		}
	}()
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := <-p.exited; err != nil {
				t.Logf("jitd exited with %v after SIGTERM", err)
			}
		}
	})
	select {
	case p.addr = <-addr:
	case err := <-p.exited:
		t.Fatalf("jitd exited at startup: %v\n%s", err, p.logs)
	case <-time.After(2 * time.Minute):
		t.Fatalf("jitd did not start serving\n%s", p.logs)
	}
	if err := poll(2*time.Minute, func() bool { return httpStatus("http://"+p.addr+"/readyz") == http.StatusOK }); err != nil {
		t.Fatalf("jitd not ready: %v\n%s", err, p.logs)
	}
	return p
}

func httpStatus(url string) int {
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback URL of our own process
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// poll checks cond every 20ms until it holds or the deadline passes: the
// way to wait for another process's effect.
func poll(deadline time.Duration, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			return fmt.Errorf("condition not met within %s", deadline)
		}
		<-tick.C
	}
	return nil
}

// runJitdOnce runs `jitd --once` to completion and returns its wall time
// and peak resident set size (the kernel's ru_maxrss, in KiB).
func runJitdOnce(ctx context.Context, sim *azuresim.Server, bin string, args ...string) (wall time.Duration, maxRSSKiB int64, out string, err error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--once", "--log-level", "warn", "--audit-log", os.DevNull}, args...)...)
	cmd.Env = environ(sim)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			maxRSSKiB = ru.Maxrss
		}
	}
	if err != nil {
		err = fmt.Errorf("jitd --once: %w", err)
	}
	return wall, maxRSSKiB, buf.String(), err
}
