package sessions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/dataplane"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

const (
	vm       = "10.0.1.4"
	grantee  = "203.0.113.10" // asks for and gets a grant
	other    = "203.0.113.11" // inside the allowed sources, no grant
	outsider = "198.51.100.7" // outside them
)

var ports = []int{22, 3389}

var (
	builds    = testproc.Builds{Pattern: "jit-sessions-"}
	once      sync.Once
	shared    *testproc.Suite
	sharedErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	builds.Remove()
	os.Exit(code)
}

func start(t *testing.T) *testproc.Suite {
	t.Helper()
	if testing.Short() {
		t.Skip("sessions: end-to-end with real processes and packets; skipped with -short")
	}
	dataplane.Skip(t)
	tf, err := testproc.TerraformPath()
	if err != nil {
		t.Skip(err.Error())
	}
	once.Do(func() { shared, sharedErr = testproc.StartSuite(&builds, tf) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// side is one NSG, its policy and the VM behind it.
type side struct {
	name        string // "on" or "off": end_sessions_at_expiry
	endSessions bool
	nsgID       string
	dp          *dataplane.Dataplane
}

// rig is one test's resource group, workspace, jitd and dataplanes.
type rig struct {
	t         *testing.T
	s         *testproc.Suite
	rg, dir   string
	clockFile string
	tf        *testproc.Terraform
	sides     []*side
	sources   []string
	grants    []grantBlock
	jitdAudit string
}

type grantBlock struct {
	name, policy, source, justification string
}

// newRig creates the resource group's two NSGs and a dataplane for each;
// poll is the dataplane's own following interval (negative: only Sync).
func newRig(t *testing.T, s *testproc.Suite, sources []string, poll time.Duration) *rig {
	t.Helper()
	r := &rig{t: t, s: s, rg: fmt.Sprintf("sessions-%s-%d", strings.ToLower(t.Name()), os.Getpid()), dir: t.TempDir(), sources: sources}
	r.clockFile = filepath.Join(r.dir, "provider-clock-offset")
	r.jitdAudit = filepath.Join(r.dir, "jitd-audit.jsonl")
	r.setProviderClock(0)
	sub := s.Sim.Env["ARM_SUBSCRIPTION_ID"]
	for _, mode := range []struct {
		name string
		on   bool
	}{{"off", false}, {"on", true}} {
		id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/nsg-%s", sub, r.rg, mode.name)
		r.createNSG("nsg-" + mode.name)
		sd := &side{name: mode.name, endSessions: mode.on, nsgID: id}
		sd.dp = dataplane.Start(t, dataplane.Config{
			VM: vm, Sources: sources, Ports: ports, NICNSG: id,
			Groups: s.ARM.Groups, SimURL: s.ARM.URL, HTTP: s.ARM.HTTP, PollInterval: poll, Logf: t.Logf,
		})
		r.sides = append(r.sides, sd)
	}
	r.tf = testproc.NewTerraform(t, s.Terraform, r.dir, testproc.DevOverrides(s.ProviderDir), nil,
		append(s.Sim.Environ(), "ARM_USE_CLI=false", "JIT_TEST_CLOCK_OFFSET_FILE="+r.clockFile)...)
	return r
}

// createNSG creates an NSG holding what many real ones hold: an allow rule
// below any band for the office and a partner range, so that only the
// policy's deny-all rule closes the ports.
func (r *rig) createNSG(name string) {
	r.t.Helper()
	legacy := &armnetwork.SecurityRule{Name: testproc.To("legacy-allow-admin"), Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: testproc.To[int32](4000), Direction: testproc.To(armnetwork.SecurityRuleDirectionInbound),
		Access: testproc.To(armnetwork.SecurityRuleAccessAllow), Protocol: testproc.To(armnetwork.SecurityRuleProtocolTCP),
		SourceAddressPrefixes: []*string{testproc.To("203.0.113.0/24"), testproc.To("198.51.100.0/24")},
		SourcePortRange:       testproc.To("*"), DestinationAddressPrefix: testproc.To("*"),
		DestinationPortRanges: []*string{testproc.To("22"), testproc.To("3389")},
	}}
	ctx := r.t.Context()
	poller, err := r.s.ARM.Groups.BeginCreateOrUpdate(ctx, r.rg, name, armnetwork.SecurityGroup{
		Location: testproc.To("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{legacy}},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		r.t.Fatalf("create NSG %s/%s: %v", r.rg, name, err)
	}
}

// setProviderClock shifts the provider's clock (not jitd's): a grant the
// provider opens with its clock d behind expires d sooner in real time,
// so a one-minute grant (the shortest there is) ends seconds after its
// apply, and jitd, on the real clock, closes it then.
func (r *rig) setProviderClock(d time.Duration) {
	tmp := r.clockFile + ".tmp"
	testproc.WriteFile(r.t, tmp, d.String()+"\n")
	if err := os.Rename(tmp, r.clockFile); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) hcl() string {
	var b strings.Builder
	b.WriteString(`terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}
`)
	for _, sd := range r.sides {
		fmt.Fprintf(&b, `
resource "jit_policy" %q {
  name                            = %q
  network_security_group_ids      = [%q]
  destination_address_prefixes    = [%q]
  allowed_source_address_prefixes = ["203.0.113.0/24"]
  ports                           = [{ port = 22, max_duration = "1h" }, { port = 3389, max_duration = "1h" }]
  end_sessions_at_expiry          = %v
}
`, sd.name, "sessions-"+sd.name, sd.nsgID, vm, sd.endSessions)
	}
	for _, g := range r.grants {
		fmt.Fprintf(&b, `
resource "jit_access_grant" %q {
  policy_id             = jit_policy.%s.id
  ports                 = [22]
  source_address_prefix = %q
  duration              = "1m"
  requester             = "alice@example.com"
  justification         = %q
}
`, g.name, g.policy, g.source, g.justification)
	}
	return b.String()
}

func (r *rig) apply() {
	r.t.Helper()
	testproc.WriteFile(r.t, filepath.Join(r.dir, "main.tf"), r.hcl())
	if out, err := r.tf.Run("apply", "-auto-approve", "-input=false", "-no-color"); err != nil {
		r.t.Fatalf("terraform apply: %v\n%s", err, out)
	}
}

func (r *rig) startJitd() {
	r.t.Helper()
	sub := r.s.Sim.Env["ARM_SUBSCRIPTION_ID"]
	cmd := exec.Command(r.s.Jitd, "--listen", "127.0.0.1:0", "--audit-log", r.jitdAudit,
		"--resource-group", sub+"/"+r.rg, "--interval", "1m", "--watch-interval", "1s")
	cmd.Env = append(r.s.Sim.Environ(), "PATH="+os.Getenv("PATH"), "ARM_USE_CLI=false")
	testproc.StartJitd(r.t, cmd, 60*time.Second, func(p *testproc.Jitd) {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			if err := <-p.Exited; err == nil {
				r.t.Log("jitd had exited cleanly before the end of the test")
			}
		}
	})
}

// sync brings every dataplane up to the local Azure's rules now.
func (r *rig) sync() {
	r.t.Helper()
	for _, sd := range r.sides {
		if err := sd.dp.Sync(r.t.Context()); err != nil {
			r.t.Fatalf("dataplane %s: %v", sd.name, err)
		}
	}
}

// checkGrid brings the kernel up to date and compares its verdict for a
// new connection from every source to every port with the local Azure's
// flow verification; it returns who may connect, as "side source:port".
func (r *rig) checkGrid(step string) []string {
	r.t.Helper()
	r.sync()
	var allowed []string
	for _, sd := range r.sides {
		for _, src := range r.sources {
			for _, port := range ports {
				kernel, err := sd.dp.Probe(src, port)
				if err != nil {
					r.t.Fatalf("%s: probe %s → %d on %s: %v", step, src, port, sd.name, err)
				}
				v, err := r.s.ARM.VerifyFlow([]string{sd.nsgID}, "Tcp", src, vm, port)
				if err != nil {
					r.t.Fatal(err)
				}
				if kernel != v.Allowed {
					r.t.Errorf("%s: %s → %s:%d on nsg-%s: kernel allowed=%v, flow verification allowed=%v (rule %s)",
						step, src, vm, port, sd.name, kernel, v.Allowed, v.RuleName)
				}
				if kernel {
					allowed = append(allowed, fmt.Sprintf("%s %s:%d", sd.name, src, port))
				}
			}
		}
	}
	return allowed
}

// waitClosed waits until jitd has deleted every grant rule of the
// resource group's NSGs (another process's effect: polled, with a
// deadline).
func (r *rig) waitClosed(deadline time.Duration) {
	r.t.Helper()
	err := testproc.Poll(100*time.Millisecond, deadline, func() bool {
		for _, sd := range r.sides {
			rules, err := r.s.ARM.Client.ListRules(r.t.Context(), sd.nsgID)
			if err != nil {
				return false
			}
			for _, rule := range rules {
				if strings.HasPrefix(rule.Name, "jit-") && strings.Contains(rule.Name, "-g-") {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		r.t.Fatalf("jitd did not close the grants: %v", err)
	}
}

// TestSessionsEndAtExpiry: the story of issue "live sessions end when
// access ends", with real packets, on two NSGs side by side.
func TestSessionsEndAtExpiry(t *testing.T) {
	s := start(t)
	r := newRig(t, s, []string{grantee, other, outsider}, -1)

	// Before the policy: the pre-existing rule lets every source in.
	if got := r.checkGrid("before the policy"); len(got) != 2*3*len(ports) {
		t.Fatalf("before the policy, open: %q; want every source on every port", got)
	}
	r.apply()
	if got := r.checkGrid("policy applied"); len(got) > 0 {
		t.Fatalf("after the policy, open: %q; want nothing", got)
	}
	r.startJitd()

	// Grants on both sides, ending 8 s after the apply in real time.
	r.setProviderClock(-52 * time.Second)
	for _, sd := range r.sides {
		r.grants = append(r.grants, grantBlock{name: "alice_" + sd.name, policy: sd.name, source: grantee, justification: "INC-1 " + sd.name})
	}
	r.apply()
	want := []string{"off " + grantee + ":22", "on " + grantee + ":22"}
	if got := r.checkGrid("grant applied"); !slices.Equal(got, want) {
		t.Fatalf("with the grants, open: %q; want %q", got, want)
	}

	// Alice connects on both sides and holds her sessions; the local
	// Azure's connection model holds the same flows.
	held := map[string]net.Conn{}
	simConn := map[string]string{}
	for _, sd := range r.sides {
		c, err := sd.dp.Dial(grantee, 22)
		if err != nil {
			t.Fatalf("alice connects on %s: %v", sd.name, err)
		}
		t.Cleanup(func() { c.Close() })
		if err := dataplane.Echo(c); err != nil {
			t.Fatalf("alice's session on %s: %v", sd.name, err)
		}
		held[sd.name] = c
		fc, err := s.ARM.EstablishFlow([]string{sd.nsgID}, "Tcp", grantee, vm, 22)
		if err != nil || !fc.Established {
			t.Fatalf("local Azure connection on %s: %+v, %v", sd.name, fc, err)
		}
		simConn[sd.name] = fc.ID
	}

	// jitd closes both grants at expiry.
	r.waitClosed(2 * time.Minute)
	if got := r.checkGrid("after expiry"); len(got) > 0 {
		t.Fatalf("after expiry, open to new connections: %q; want nothing", got)
	}

	// Without the option the held session survives; with it, it is cut.
	for _, sd := range r.sides {
		err := dataplane.Echo(held[sd.name])
		st, serr := s.ARM.ConnectionState(simConn[sd.name])
		if serr != nil {
			t.Fatal(serr)
		}
		switch sd.endSessions {
		case false:
			if err != nil {
				t.Errorf("nsg-off: the held session was cut (%v); without end_sessions_at_expiry it survives, as on Azure", err)
			}
			if !st.Alive {
				t.Errorf("nsg-off: the local Azure cut the held connection: %+v", st)
			}
		case true:
			if err == nil {
				t.Errorf("nsg-on: the held session still works after expiry; end_sessions_at_expiry should cut it")
			}
			if st.Alive {
				t.Errorf("nsg-on: the local Azure still holds the connection: %+v", st)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("held session after expiry: nsg-off survives; nsg-on cut (kernel: reset; local Azure: cut at %s by %s)",
		mustState(t, s, simConn["on"]).CutAt.Format(time.RFC3339Nano), mustState(t, s, simConn["on"]).RuleName)
}

func mustState(t *testing.T, s *testproc.Suite, id string) testproc.ConnectionState {
	st, err := s.ARM.ConnectionState(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSessionsCutLatency measures, over JIT_SESSIONS_BENCH sessions on each
// side, the time from a grant's expiry to its held session being cut (with
// end_sessions_at_expiry), and how long the held sessions outlive expiry
// without it. It prints figures and asserts only the outcome (every
// session cut on one side, none on the other). Skipped unless
// JIT_SESSIONS_BENCH is set. JIT_SESSIONS_BUSY_MODE (queue, the default, or
// refuse) and JIT_SESSIONS_WRITE_LATENCY (a Go duration; default 0) set the
// local Azure's busy mode and write latency for the run.
func TestSessionsCutLatency(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("JIT_SESSIONS_BENCH"))
	if n <= 0 {
		t.Skip("set JIT_SESSIONS_BENCH=<sessions per side> to measure")
	}
	s := start(t)
	mode, latency := os.Getenv("JIT_SESSIONS_BUSY_MODE"), os.Getenv("JIT_SESSIONS_WRITE_LATENCY")
	if mode == "" {
		mode = "queue"
	}
	if latency == "" {
		latency = "0s"
	}
	simConfig(t, s, map[string]string{"busyMode": mode, "writeLatency": latency})
	t.Cleanup(func() { simConfig(t, s, map[string]string{"busyMode": "queue", "writeLatency": "0s"}) })
	t.Logf("local Azure: busy mode %s, write latency %s", mode, latency)
	var sources []string
	for i := range n {
		sources = append(sources, fmt.Sprintf("203.0.113.%d", 20+i))
	}
	r := newRig(t, s, sources, 20*time.Millisecond)
	r.apply()
	r.startJitd()
	const lead = 30 * time.Second // covers the apply of 2n grants
	r.setProviderClock(-(time.Minute - lead))
	for _, sd := range r.sides {
		for i, src := range sources {
			r.grants = append(r.grants, grantBlock{name: fmt.Sprintf("g%d_%s", i, sd.name), policy: sd.name, source: src,
				justification: fmt.Sprintf("BENCH-%d %s", i, sd.name)})
		}
	}
	r.apply()
	st, err := testproc.ReadState(filepath.Join(r.dir, "terraform.tfstate"))
	if err != nil {
		t.Fatal(err)
	}
	expires := map[string]time.Time{} // by "side source"
	for _, in := range st {
		if in.Type != "jit_access_grant" {
			continue
		}
		at, err := time.Parse(time.RFC3339, fmt.Sprint(in.Attributes["expires_at"]))
		if err != nil {
			t.Fatal(err)
		}
		side := strings.TrimPrefix(fmt.Sprint(in.Attributes["policy_id"]), "sessions-")
		side, _, _ = strings.Cut(side, "@")
		expires[side+" "+fmt.Sprint(in.Attributes["source_address_prefix"])] = at
	}
	r.sync()
	// The provider stamped each expiry from its shifted clock as an
	// absolute time; jitd, on the real clock, closes at that time.
	type result struct {
		key string
		cut time.Time // zero: never cut while watched
	}
	results := make(chan result, 2*n)
	watchUntil := time.Now().Add(lead + 60*time.Second)
	// The dataplanes follow the local Azure on their own here (every
	// 20 ms), as a kernel would follow Azure's rules.
	for _, sd := range r.sides {
		for _, src := range sources {
			c, err := sd.dp.Dial(src, 22)
			if err != nil {
				t.Fatalf("%s connects on %s: %v", src, sd.name, err)
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				key := sd.name + " " + src
				for time.Now().Before(watchUntil) {
					if err := dataplane.Echo(c); err != nil {
						results <- result{key, time.Now()}
						return
					}
					time.Sleep(5 * time.Millisecond) // the client's typing pace
				}
				results <- result{key, time.Time{}}
			}()
		}
	}
	var cuts []time.Duration
	var survived []time.Duration
	for range 2 * n {
		res := <-results
		exp := expires[res.key]
		switch {
		case strings.HasPrefix(res.key, "on ") && !res.cut.IsZero():
			cuts = append(cuts, res.cut.Sub(exp))
		case strings.HasPrefix(res.key, "off ") && res.cut.IsZero():
			survived = append(survived, watchUntil.Sub(exp))
		default:
			t.Errorf("%s: cut at %v (zero: never)", res.key, res.cut)
		}
	}
	slices.Sort(cuts)
	slices.Sort(survived)
	if len(cuts) > 0 {
		p99 := cuts[(len(cuts)*99+99)/100-1]
		t.Logf("end_sessions_at_expiry = true: %d sessions cut after expiry: median %s, p99 %s, max %s",
			len(cuts), cuts[len(cuts)/2].Round(time.Millisecond), p99.Round(time.Millisecond), cuts[len(cuts)-1].Round(time.Millisecond))
	}
	if lags := closeLags(t, r.jitdAudit, "sessions-on"); len(lags) > 0 {
		t.Logf("of which jitd's close (audit event time - expires_at, nsg-on): median %s, max %s",
			lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	}
	if len(survived) > 0 {
		t.Logf("end_sessions_at_expiry = false: %d sessions still working %s after expiry, when the watch ended",
			len(survived), survived[0].Round(time.Second))
	}
}

// closeLags reads jitd's audit log: for each close of a grant of policy,
// the time from its expiry to the audit event (written once the NSG write
// that deleted the rule succeeded), sorted.
func closeLags(t *testing.T, path, policy string) []time.Duration {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lags []time.Duration
	for line := range strings.Lines(string(b)) {
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if e.Action == audit.ActionClose && e.Policy == policy && !e.ExpiresAt.IsZero() {
			lags = append(lags, e.Time.Sub(e.ExpiresAt))
		}
	}
	slices.Sort(lags)
	return lags
}

// simConfig changes the local Azure's runtime settings (PUT /_sim/config).
func simConfig(t *testing.T, s *testproc.Suite, c map[string]string) {
	t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, s.ARM.URL+"/_sim/config", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.ARM.HTTP.Do(req)
	if err != nil {
		t.Fatalf("local Azure config %s: %v", body, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("local Azure config %s: %d %s", body, resp.StatusCode, b)
	}
}
