package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/acctest"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/simtest"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// EnvEnable turns the measurements on; without it every test here skips, so
// that `make test` stays fast.
const EnvEnable = "JIT_BENCH"

// EnvBusyMode chooses what a write to a busy NSG meets in the local Azure of
// every measurement that does not choose itself: azuresim.BusyQueue (the
// default, today's ARM) or azuresim.BusyRefuse (the older 429). make bench
// runs the measurements once under each.
const EnvBusyMode = "JIT_BENCH_BUSY_MODE"

// benchBusyMode is the busy mode EnvBusyMode asks for, queue if unset.
func benchBusyMode() (string, error) {
	switch m := os.Getenv(EnvBusyMode); m {
	case "":
		return azuresim.BusyQueue, nil
	case azuresim.BusyQueue, azuresim.BusyRefuse:
		return m, nil
	default:
		return "", fmt.Errorf("%s=%q: want %q or %q", EnvBusyMode, m, azuresim.BusyQueue, azuresim.BusyRefuse)
	}
}

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

// configHeader is the provider and the variables of every benchmark
// configuration, so that one workspace set-up fits them all.
const configHeader = `
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
`

// terraformConfig is one policy over var.nsg_ids and var.grants grants of
// it, each from its own address (the i-th from grantSource(i)).
const terraformConfig = configHeader + `
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

// builds holds the binaries built once per test process.
var builds = testproc.Builds{Pattern: "jit-bench-"}

func TestMain(m *testing.M) {
	if os.Getenv(EnvEnable) == "1" {
		mode, err := benchBusyMode()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("BENCH local Azure busy mode %s (%s), unless a measurement names its own\n", mode, EnvBusyMode)
	}
	code := m.Run()
	builds.Remove()
	os.Exit(code)
}

// binaries builds the provider and jitd from the working tree, once.
func binaries(t *testing.T) (providerDir, jitd string) {
	t.Helper()
	const module = "github.com/jitaccess/terraform-provider-jit"
	provider, err := builds.Build(filepath.Join("provider", "terraform-provider-jit"), module, "-trimpath")
	if err != nil {
		t.Fatal(err)
	}
	if jitd, err = builds.Build("jitd", module+"/internal/cmd/jitd", "-trimpath"); err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(provider), jitd
}

func terraformPath(t *testing.T) string {
	t.Helper()
	p, err := testproc.TerraformPath()
	if err != nil {
		t.Fatal(err)
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
	*testproc.Terraform
	t *testing.T
}

// newWorkspace writes config (terraformConfig unless given) to a new
// working directory whose var.nsg_ids are nsgIDs.
func newWorkspace(t *testing.T, sim *azuresim.Server, nsgIDs []string, config ...string) *workspace {
	t.Helper()
	providerDir, _ := binaries(t)
	dir := t.TempDir()
	main := terraformConfig
	if len(config) > 0 {
		main = strings.Join(config, "\n")
	}
	ids, err := json.Marshal(nsgIDs)
	if err != nil {
		t.Fatal(err)
	}
	env := append(environ(sim), "TF_VAR_nsg_ids="+string(ids), "JIT_AUDIT_LOG_PATH="+filepath.Join(dir, "audit.jsonl"))
	tf := testproc.NewTerraform(t, terraformPath(t), dir, testproc.DevOverrides(providerDir), map[string]string{"main.tf": main}, env...)
	return &workspace{Terraform: tf, t: t}
}

// run runs terraform with extra environment variables (e.g. TF_VAR_grants)
// and returns its output, wall time and error.
func (w *workspace) run(extraEnv []string, args ...string) (string, time.Duration, error) {
	cmd, out := w.Command(extraEnv, args...)
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
		w.t.Fatalf("terraform apply with %d grants: %v\n%s", grants, err, testproc.Tail(out))
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
	// Retries as a Terraform provider's client makes them: a write refused
	// because its NSG is busy (429, Retry-After) is sent again until it is
	// taken, not given up after the SDK's default three tries.
	rules, err := armnetwork.NewSecurityRulesClient(sim.SubscriptionID(), cred, &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: c,
		Retry: policy.RetryOptions{MaxRetries: 100}}})
	if err != nil {
		t.Fatalf("armnetwork client for the local Azure: %v", err)
	}
	return rules
}

// newEnv starts a local Azure with the acceptance tests' fixtures, in the
// busy mode of EnvBusyMode unless opts names one. When the test ends it
// prints a FIGURE line with the mode and what the busy NSGs did since the
// counters were last reset (the measurement's window in most tests).
func newEnv(t *testing.T, opts azuresim.Options) *acctest.Env {
	t.Helper()
	if opts.BusyMode == "" {
		mode, err := benchBusyMode()
		if err != nil {
			t.Fatal(err)
		}
		opts.BusyMode = mode
	}
	env := acctest.New(t, opts)
	t.Cleanup(func() {
		c := env.Sim.Counters()
		t.Logf("FIGURE busy mode %s: writes queued behind another on their NSG %d, refused busy %d (queue full %d), throttled %d",
			opts.BusyMode, c.Queued, c.Busy, c.QueueFull, c.Throttled)
	})
	return env
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
			n.Properties.SecurityRules = append(n.Properties.SecurityRules, testproc.ToARM(r))
		}
		seed.NetworkSecurityGroups = append(seed.NetworkSecurityGroups, n)
	}
	b, err := json.Marshal(seed)
	if err != nil {
		t.Fatalf("seed file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	testproc.WriteFile(t, path, string(b))
	return path
}

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
type jitdProcess struct{ *testproc.Jitd }

// startJitd starts the jitd binary against the local Azure and waits until
// its first full pass is done (/readyz answers 200).
func startJitd(t *testing.T, sim *azuresim.Server, args ...string) *jitdProcess {
	t.Helper()
	_, bin := binaries(t)
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--audit-log", filepath.Join(t.TempDir(), "audit.jsonl")}, args...)...)
	cmd.Env = environ(sim)
	return &jitdProcess{testproc.StartJitd(t, cmd, 2*time.Minute, func(p *testproc.Jitd) {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := <-p.Exited; err != nil {
				t.Logf("jitd exited with %v after SIGTERM", err)
			}
		}
	})}
}

// poll checks cond every 20ms until it holds or the deadline passes.
func poll(deadline time.Duration, cond func() bool) error {
	return testproc.Poll(20*time.Millisecond, deadline, cond)
}

// runJitdOnce runs `jitd --once` to completion and returns its wall time
// and jitd's own peak resident set size in KiB, as GNU time's %M reports
// it. Not the ru_maxrss of a child of this process: Go starts children
// with a vfork-style clone that shares this process's memory, and the
// kernel keeps that high-water mark across exec, so a child's ru_maxrss is
// at least this test process's (which holds the local Azure) at the
// moment of the exec. Without /usr/bin/time the RSS is -1 (unknown).
func runJitdOnce(t *testing.T, sim *azuresim.Server, bin string, args ...string) (wall time.Duration, maxRSSKiB int64, out string, err error) {
	t.Helper()
	const gnuTime = "/usr/bin/time"
	argv := append([]string{bin, "--once", "--log-level", "warn", "--audit-log", os.DevNull}, args...)
	rssFile := ""
	if _, serr := os.Stat(gnuTime); serr == nil {
		rssFile = filepath.Join(t.TempDir(), "rss")
		argv = append([]string{gnuTime, "-f", "%M", "-o", rssFile}, argv...)
	} else {
		t.Logf("no %s: jitd's peak RSS is not measured", gnuTime)
	}
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	cmd.Env = environ(sim)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	maxRSSKiB = -1
	if rssFile != "" {
		if b, rerr := os.ReadFile(rssFile); rerr == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				if v, perr := strconv.ParseInt(f[len(f)-1], 10, 64); perr == nil {
					maxRSSKiB = v
				}
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("jitd --once: %w", err)
	}
	return wall, maxRSSKiB, buf.String(), err
}
