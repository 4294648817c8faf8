package main

// End-to-end tests with real processes: the local Azure (azuresim) and jitd
// are built and run as binaries; the test plants policies and grants
// through the Azure SDK and watches the local Azure's event log and flow
// verification for jitd's effect. Skipped with -short.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// localAzure is the azuresim process shared by the tests of this binary
// (Go reads SSL_CERT_FILE once per process, so one CA, so one server), and
// the built jitd binary. Each test works in a resource group of its own.
type localAzure struct {
	jitd   string
	env    map[string]string
	url    string
	sim    *testproc.Azuresim
	client *azure.Client
	groups *armnetwork.SecurityGroupsClient
	rules  *armnetwork.SecurityRulesClient
	vnets  *armnetwork.VirtualNetworksClient
	http   *http.Client
}

var (
	builds     = testproc.Builds{Pattern: "jitd-e2e-"}
	sharedOnce sync.Once
	shared     *localAzure
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.sim.Stop()
	}
	builds.Remove()
	os.Exit(code)
}

// startLocalAzure builds the binaries and starts the local Azure, once.
func startLocalAzure(t *testing.T) *localAzure {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with real processes; skipped with -short")
	}
	sharedOnce.Do(func() { shared, sharedErr = setUpLocalAzure() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func setUpLocalAzure() (*localAzure, error) {
	dir, err := builds.Dir()
	if err != nil {
		return nil, err
	}
	la := &localAzure{}
	if la.jitd, err = builds.Build("jitd", "."); err != nil {
		return la, err
	}
	sim, err := builds.Build("azuresim", "../azuresim")
	if err != nil {
		return la, err
	}
	if la.sim, err = testproc.StartAzuresim(sim, dir, 60*time.Second); err != nil {
		return la, err
	}
	la.env, la.url = la.sim.Env, la.sim.URL
	// Trust the local Azure's CA in this process too, before its first
	// TLS connection.
	if err := os.Setenv("SSL_CERT_FILE", la.env["SSL_CERT_FILE"]); err != nil {
		return la, err
	}
	la.http = &http.Client{Timeout: 30 * time.Second}

	ctx := context.Background()
	cfg, err := azure.ConfigFromEnv(la.getenv)
	if err != nil {
		return la, err
	}
	if la.client, err = azure.NewClient(ctx, cfg, azure.ClientOptions{PollFrequency: 100 * time.Millisecond}); err != nil {
		return la, err
	}
	cl := la.client.Cloud()
	cloudCfg := policy.ClientOptions{Cloud: cloudConfiguration(cl)}
	cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: cloudCfg, DisableInstanceDiscovery: true})
	if err != nil {
		return la, err
	}
	factory, err := armnetwork.NewClientFactory(cfg.SubscriptionID, cred, &arm.ClientOptions{ClientOptions: cloudCfg})
	if err != nil {
		return la, err
	}
	la.groups, la.rules = factory.NewSecurityGroupsClient(), factory.NewSecurityRulesClient()
	la.vnets = factory.NewVirtualNetworksClient()
	return la, nil
}

func (la *localAzure) getenv(k string) string {
	if v, ok := la.env[k]; ok {
		return v
	}
	if k == "ARM_USE_CLI" {
		return "false"
	}
	return ""
}

func (la *localAzure) subscription() string { return la.env["ARM_SUBSCRIPTION_ID"] }

// poll checks cond every 50ms until it holds or the deadline passes.
func poll(deadline time.Duration, cond func() bool) error {
	return testproc.Poll(50*time.Millisecond, deadline, cond)
}

// webPolicy protects port 22 of 10.0.1.4 for sources in 203.0.113.0/24,
// grants up to an hour.
func webPolicy(t *testing.T, bandStart int64) jit.Policy {
	t.Helper()
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: bandStart, BandEnd: bandStart + 99,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// createNSG creates an NSG with the given rules in one PUT, through the
// SDK, as an administrator (or Terraform) would.
func (la *localAzure) createNSG(t *testing.T, rg, name string, rules ...jit.SecurityRule) string {
	t.Helper()
	var arm []*armnetwork.SecurityRule
	for _, r := range rules {
		arm = append(arm, testproc.ToARM(r))
	}
	ctx := t.Context()
	poller, err := la.groups.BeginCreateOrUpdate(ctx, rg, name, armnetwork.SecurityGroup{
		Location: testproc.To("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: arm},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("create NSG %s/%s: %v", rg, name, err)
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/%s", la.subscription(), rg, name)
}

// putRuleSDK writes one rule through the armnetwork SDK directly.
func (la *localAzure) putRuleSDK(t *testing.T, rg, nsg string, r jit.SecurityRule) {
	t.Helper()
	poller, err := la.rules.BeginCreateOrUpdate(t.Context(), rg, nsg, r.Name, *testproc.ToARM(r), nil)
	if err == nil {
		_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("put rule %s: %v", r.Name, err)
	}
}

func (la *localAzure) ruleNames(t *testing.T, nsgID string) []string {
	t.Helper()
	rules, err := la.client.ListRules(t.Context(), nsgID)
	if err != nil {
		t.Fatalf("list rules of %s: %v", nsgID, err)
	}
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names
}

// deleteEvents indexes the local Azure's successful rule deletes by
// lower-case NSG id + "/" + rule name.
func (la *localAzure) deleteEvents(t *testing.T) map[string]testproc.Event {
	t.Helper()
	events, err := testproc.Events(la.http, la.url)
	if err != nil {
		t.Fatalf("local Azure events: %v", err)
	}
	return testproc.SucceededDeletes(events)
}

// reachable asks the local Azure's flow verification whether src may reach
// 10.0.1.4:22/TCP through the NSG.
func (la *localAzure) reachable(t *testing.T, nsgID, src string) bool {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"nsgIds": []string{nsgID}, "protocol": "Tcp", "source": src,
		"destination": "10.0.1.4", "destinationPort": 22})
	resp, err := la.http.Post(la.url+"/_sim/flow/verify", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("flow verify: %v", err)
	}
	defer resp.Body.Close()
	var v struct{ Allowed bool }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("flow verify: %d %v", resp.StatusCode, err)
	}
	return v.Allowed
}

// jitdProcess is a running jitd.
type jitdProcess struct{ *testproc.Jitd }

// startJitd starts jitd with the local Azure's environment and waits until
// it serves /readyz.
func (la *localAzure) startJitd(t *testing.T, auditLog string, args ...string) *jitdProcess {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--audit-log", auditLog}, args...)
	cmd := exec.Command(la.jitd, args...)
	cmd.Env = append(la.environ(), "PATH="+os.Getenv("PATH"))
	return &jitdProcess{testproc.StartJitd(t, cmd, 60*time.Second, func(p *testproc.Jitd) {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("jitd logs:\n%s", p.Logs())
		}
	})}
}

// metric returns the value of an unlabelled metric.
func (p *jitdProcess) metric(name string) float64 {
	_, body := p.Get("/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// stop sends SIGTERM and requires a clean exit.
func (p *jitdProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.Exited:
		if err != nil {
			t.Errorf("jitd exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("jitd did not exit after SIGTERM")
	}
}

func TestEndToEndClosesGrantsAtExpiry(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	const rg, nsgs, perNSG = "e2e-expiry", 4, 5
	type planted struct {
		nsgID, rule, source string
		exp                 time.Time
	}
	var grants []planted
	var ids []string
	for i := range nsgs {
		ids = append(ids, la.createNSG(t, rg, fmt.Sprintf("nsg-%d", i), p.Rules()...))
	}
	// Expiries spread over whole seconds a few seconds ahead: enough for
	// jitd to start and see them first.
	base := time.Now().Truncate(time.Second).Add(5 * time.Second)
	lo, _ := p.Band.GrantRange()
	for i := range nsgs * perNSG {
		src := fmt.Sprintf("203.0.113.%d", 10+i)
		spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: src, Duration: "5m", Requester: "e2e@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		exp := base.Add(time.Duration(i%4) * time.Second)
		r := p.GrantRule(fmt.Sprintf("g%d", i), spec, exp, lo+int32(i/nsgs))
		nsgID := ids[i%nsgs]
		if _, err := la.client.PutRule(t.Context(), nsgID, r); err != nil {
			t.Fatal(err)
		}
		grants = append(grants, planted{nsgID, r.Name, src, exp})
	}
	for _, g := range grants {
		if !la.reachable(t, g.nsgID, g.source) {
			t.Fatalf("grant %s does not open %s → 10.0.1.4:22", g.rule, g.source)
		}
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--resource-group", la.subscription()+"/"+rg, "--interval", "5m")
	if time.Now().After(base) {
		t.Fatal("the first grant expired before jitd was ready; the test machine is too slow for its timing")
	}

	if err := poll(60*time.Second, func() bool {
		for _, g := range grants {
			if la.reachable(t, g.nsgID, g.source) {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("grants still reachable after expiry: %v", err)
	}

	deletes := la.deleteEvents(t)
	var lags []time.Duration
	for _, g := range grants {
		e, ok := deletes[strings.ToLower(g.nsgID)+"/"+g.rule]
		if !ok {
			t.Errorf("no delete of %s in the local Azure's event log", g.rule)
			continue
		}
		if slices.Contains(la.ruleNames(t, g.nsgID), g.rule) {
			t.Errorf("%s still on its NSG", g.rule)
		}
		lags = append(lags, e.Completed.Sub(g.exp))
	}
	slices.Sort(lags)
	if len(lags) > 0 {
		t.Logf("expiry-to-close lag over %d grants (local Azure event log, delete completed - expiry): median %s, max %s, min %s",
			len(lags), lags[len(lags)/2], lags[len(lags)-1], lags[0])
	}

	// A clean stop first: jitd audits a close once its write has returned,
	// a moment after the local Azure shows it, and finishes that on SIGTERM.
	d.stop(t)
	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	for _, e := range events {
		if e.Action == audit.ActionClose && e.Result == audit.ResultSuccess && e.Reason == "expired" && e.Actor == "jitd" {
			closed++
		}
	}
	if closed != len(grants) {
		t.Errorf("audit log has %d expiry closes, want %d", closed, len(grants))
	}
	checkAuditLog(t, la, auditLog, false)
}

func TestEndToEndKill9WhileGrantsExpire(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	const rg = "e2e-kill"
	nsgA := la.createNSG(t, rg, "nsg-a", p.Rules()...)
	nsgB := la.createNSG(t, rg, "nsg-b", p.Rules()...)
	exp := time.Now().Truncate(time.Second).Add(6 * time.Second)
	lo, _ := p.Band.GrantRange()
	var rules []string
	for i, nsg := range []string{nsgA, nsgB, nsgA, nsgB} {
		spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: fmt.Sprintf("203.0.113.%d", 50+i), Duration: "5m", Requester: "e2e"})
		if err != nil {
			t.Fatal(err)
		}
		r := p.GrantRule(fmt.Sprintf("k%d", i), spec, exp, lo+int32(i))
		if _, err := la.client.PutRule(t.Context(), nsg, r); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r.Name)
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	scope := []string{"--resource-group", la.subscription() + "/" + rg, "--interval", "1h"}
	first := la.startJitd(t, auditLog, scope...)
	if got := first.metric("jitd_active_grants"); got != 4 {
		t.Fatalf("jitd_active_grants = %v, want 4 armed before the kill", got)
	}
	if err := first.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-first.Exited; err == nil {
		t.Fatal("jitd exited cleanly after SIGKILL")
	}
	if time.Now().After(exp) {
		t.Fatal("the grants expired before jitd was killed; the test machine is too slow for its timing")
	}

	// Wait out the expiry with nobody watching: the rules stay open.
	<-time.After(time.Until(exp) + 500*time.Millisecond)
	open := append(la.ruleNames(t, nsgA), la.ruleNames(t, nsgB)...)
	for _, r := range rules {
		if !slices.Contains(open, r) {
			t.Fatalf("%s was closed while jitd was dead", r)
		}
	}

	second := la.startJitd(t, auditLog, scope...)
	if err := poll(30*time.Second, func() bool {
		left := append(la.ruleNames(t, nsgA), la.ruleNames(t, nsgB)...)
		return !slices.ContainsFunc(rules, func(r string) bool { return slices.Contains(left, r) })
	}); err != nil {
		t.Fatalf("expired grants not closed after restart: %v", err)
	}
	if la.reachable(t, nsgA, "203.0.113.50") {
		t.Error("203.0.113.50 still reaches 10.0.1.4:22 after the restart closed its grant")
	}
	second.stop(t)
}

func TestEndToEndOnceReportsBypassAndClosesTamperedRule(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 300)
	const rg = "e2e-once"
	nsgID := la.createNSG(t, rg, "nsg", p.Rules()...)
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.7", Duration: "30m", Requester: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	valid := p.GrantRule("ok1", spec, time.Now().Add(30*time.Minute), lo)
	// Tampered: someone stretched the expiry to ten hours on a policy
	// whose maximum is one.
	tampered := p.GrantRule("tmp1", spec, time.Now().Add(10*time.Hour), lo+1)
	bypass := jit.SecurityRule{Name: "allow-ssh-anywhere", Priority: 150, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"*"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"*"}, DestinationPorts: []string{"22"}}
	for _, r := range []jit.SecurityRule{valid, tampered, bypass} {
		la.putRuleSDK(t, rg, "nsg", r)
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	cmd := exec.Command(la.jitd, "--once", "--nsg", nsgID, "--audit-log", auditLog)
	cmd.Env = la.environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("jitd --once: %v\n%s", err, out)
	}

	names := la.ruleNames(t, nsgID)
	if slices.Contains(names, tampered.Name) {
		t.Errorf("tampered rule %s still present", tampered.Name)
	}
	for _, keep := range []string{valid.Name, bypass.Name} {
		if !slices.Contains(names, keep) {
			t.Errorf("%s was deleted; jitd must leave it alone", keep)
		}
	}
	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, string(e.Action)+" "+e.Kind+" "+e.RuleName)
	}
	slices.Sort(got)
	want := []string{"close over_max " + tampered.Name, "find bypass allow-ssh-anywhere"}
	if !slices.Equal(got, want) {
		t.Errorf("audit events = %q, want %q", got, want)
	}
}

func TestEndToEndRefusesAScopeItCannotRead(t *testing.T) {
	la := startLocalAzure(t)
	missing := fmt.Sprintf("/subscriptions/%s/resourceGroups/nowhere/providers/Microsoft.Network/networkSecurityGroups/none", la.subscription())
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--once", "--nsg", missing}, la.getenv, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("run = %v, want a refusal naming the NSG", err)
	}
}

func cloudConfiguration(c azure.Cloud) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: c.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: c.ResourceManagerEndpoint, Audience: c.ResourceManagerAudience},
		},
	}
}

// TestEndToEndScale reports jitd's memory watching many NSGs (each with a
// policy and an active grant). It runs only when JITD_E2E_SCALE names the
// number of NSGs, e.g. JITD_E2E_SCALE=1000.
func TestEndToEndScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("JITD_E2E_SCALE"))
	if n <= 0 {
		t.Skip("set JITD_E2E_SCALE=<number of NSGs> to measure jitd at scale")
	}
	la := startLocalAzure(t)
	p := webPolicy(t, 100)
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.7", Duration: "1h", Requester: "scale"})
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	rules := append(p.Rules(), p.GrantRule("s1", spec, time.Now().Add(time.Hour), lo))
	const rg = "e2e-scale"
	created := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			la.createNSG(t, rg, fmt.Sprintf("nsg-%04d", i), rules...)
		})
	}
	wg.Wait()
	t.Logf("created %d NSGs in %s", n, time.Since(created).Round(time.Millisecond))

	started := time.Now()
	d := la.startJitd(t, filepath.Join(t.TempDir(), "audit.jsonl"), "--resource-group", la.subscription()+"/"+rg, "--interval", "1h")
	ready := time.Since(started)
	if got := d.metric("jitd_active_grants"); got != float64(n) {
		t.Errorf("jitd_active_grants = %v, want %d", got, n)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var mem []string
	for line := range strings.Lines(string(status)) {
		if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "VmHWM") {
			mem = append(mem, strings.Join(strings.Fields(line), " "))
		}
	}
	t.Logf("jitd watching %d NSGs: ready (first full pass) after %s; %s; heap in use %.1f MiB",
		n, ready.Round(time.Millisecond), strings.Join(mem, ", "), d.metric("go_memstats_heap_inuse_bytes")/(1<<20))
	d.stop(t)
}

// TestEndToEndRestoresADeletedDenyAll: a policy's deny-all rule deleted out
// of band (a portal click) lets an allowed source in through a foreign
// Allow rule below the band; jitd writes the deny-all back and the source
// is refused again, as flow verification shows. The foreign rule and the
// active grant are left exactly as they were.
func TestEndToEndRestoresADeletedDenyAll(t *testing.T) {
	la := startLocalAzure(t)
	p := webPolicy(t, 500)
	const rg = "e2e-restore"
	below := jit.SecurityRule{Name: "allow-vpn-ssh", Priority: 1000, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"203.0.113.0/24"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"10.0.1.4"}, DestinationPorts: []string{"22"}, Description: "VPN pool, below the JIT band"}
	lo, _ := p.Band.GrantRange()
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.9", Duration: "30m", Requester: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	grant := p.GrantRule("r1", spec, time.Now().Add(30*time.Minute), lo)
	nsgID := la.createNSG(t, rg, "nsg", append(p.Rules(), below, grant)...)
	const allowed = "203.0.113.7" // an allowed source with no grant
	if la.reachable(t, nsgID, allowed) {
		t.Fatalf("%s reaches 10.0.1.4:22 with the policy intact", allowed)
	}
	// The same rules without the deny-all, on an NSG jitd does not watch:
	// the foreign rule below the band does let the allowed source in.
	control := la.createNSG(t, rg, "control", append(slices.DeleteFunc(p.Rules(), func(r jit.SecurityRule) bool {
		return strings.Contains(r.Name, "-deny-")
	}), below)...)
	if !la.reachable(t, control, allowed) {
		t.Fatalf("%s does not reach 10.0.1.4:22 without the deny-all; the test proves nothing", allowed)
	}
	before, err := la.client.ListRules(t.Context(), nsgID)
	if err != nil {
		t.Fatal(err)
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--nsg", nsgID, "--interval", "1h", "--watch-interval", "1s")

	// Out of band, through the SDK, as the portal does.
	deny := "jit-web-deny-tcp"
	poller, err := la.rules.BeginDelete(t.Context(), rg, "nsg", deny, nil)
	if err == nil {
		_, err = poller.PollUntilDone(t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("delete %s: %v", deny, err)
	}
	deletedAt := time.Now()
	if err := poll(30*time.Second, func() bool {
		return slices.Contains(la.ruleNames(t, nsgID), deny) && !la.reachable(t, nsgID, allowed)
	}); err != nil {
		t.Fatalf("%s not restored, or %s still reaches the port: %v", deny, allowed, err)
	}
	t.Logf("deny-all restored and the port closed again %s after its deletion completed", time.Since(deletedAt).Round(time.Millisecond))

	after, err := la.client.ListRules(t.Context(), nsgID)
	if err != nil {
		t.Fatal(err)
	}
	byName := func(rs []jit.SecurityRule) map[string]jit.SecurityRule {
		m := map[string]jit.SecurityRule{}
		for _, r := range rs {
			m[r.Name] = r
		}
		return m
	}
	b, a := byName(before), byName(after)
	if len(a) != len(b) {
		t.Errorf("rules after the restore: %q, want those before the deletion", la.ruleNames(t, nsgID))
	}
	for name, r := range b {
		if got, ok := a[name]; !ok || !reflect.DeepEqual(got, r) {
			t.Errorf("rule %s after the restore = %+v, want %+v", name, got, r)
		}
	}
	if !la.reachable(t, nsgID, "203.0.113.9") {
		t.Error("the active grant no longer opens 203.0.113.9 → 10.0.1.4:22")
	}

	// jitd audits a restore once its write has returned, which may be a
	// moment after the local Azure shows the rule.
	var got []string
	if err := poll(30*time.Second, func() bool {
		events, err := audit.ReadFile(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range events {
			got = append(got, string(e.Action)+" "+string(e.Result)+" "+cmp.Or(e.RuleName, e.Kind))
		}
		return slices.Contains(got, "restore success "+deny) && slices.Contains(got, "find success missing_deny")
	}); err != nil {
		t.Errorf("audit events = %q, want the restore of %s and the missing_deny finding", got, deny)
	}
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "close ") }) {
		t.Errorf("audit events = %q: the grant must not be closed", got)
	}
	d.stop(t)
	checkAuditLog(t, la, auditLog, false)
}

// TestEndToEndRebuildsAGuardDeletedWhileDown: a guard deleted while jitd
// was not running is rebuilt at its start from the policy's remaining rules
// (the other protocol group's guard carries the allowed sources), and a
// source outside the allowed ones, let in by a foreign rule inside the band
// meanwhile, is refused again.
func TestEndToEndRebuildsAGuardDeletedWhileDown(t *testing.T) {
	la := startLocalAzure(t)
	p, err := jit.NewPolicy(jit.PolicyInput{Name: "web", DestinationPrefixes: []string{"10.0.1.4"},
		AllowedSources: []string{"203.0.113.0/24"}, BandStart: 700, BandEnd: 799,
		Ports: []jit.PortInput{{Number: 22, Protocol: "Tcp", MaxDuration: "1h"}, {Number: 53, Protocol: "Udp", MaxDuration: "30m"}}})
	if err != nil {
		t.Fatal(err)
	}
	const rg, outsider = "e2e-rebuild", "198.51.100.7"
	inBand := jit.SecurityRule{Name: "partner-ssh", Priority: 750, Direction: jit.Inbound, Access: jit.Allow,
		Protocol: jit.ProtocolTCP, SourcePrefixes: []string{"198.51.100.0/24"}, SourcePorts: []string{"*"},
		DestinationPrefixes: []string{"10.0.1.4"}, DestinationPorts: []string{"22"}}
	guard := "jit-web-guard-tcp"
	nsgID := la.createNSG(t, rg, "nsg", append(slices.DeleteFunc(p.Rules(), func(r jit.SecurityRule) bool { return r.Name == guard }), inBand)...)
	if !la.reachable(t, nsgID, outsider) {
		t.Fatalf("%s does not reach 10.0.1.4:22 without the guard; the test proves nothing", outsider)
	}

	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	d := la.startJitd(t, auditLog, "--nsg", nsgID, "--interval", "1h", "--watch-interval", "1s")
	if err := poll(30*time.Second, func() bool {
		return slices.Contains(la.ruleNames(t, nsgID), guard) && !la.reachable(t, nsgID, outsider)
	}); err != nil {
		t.Fatalf("%s not rebuilt, or %s still reaches the port: %v", guard, outsider, err)
	}
	rules, err := la.client.ListRules(t.Context(), nsgID)
	if err != nil {
		t.Fatal(err)
	}
	if dp := jit.ReadNSG(rules).Policies["web"]; dp.Problem != "" || !dp.Policy.Equal(p) {
		t.Errorf("policy after the rebuild = %+v, problem %q; want %+v", dp.Policy, dp.Problem, p)
	}
	if !slices.ContainsFunc(rules, func(r jit.SecurityRule) bool { return reflect.DeepEqual(r, inBand) }) {
		t.Errorf("foreign rule %s changed or gone: %q", inBand.Name, la.ruleNames(t, nsgID))
	}
	d.stop(t) // jitd audits the restore once its write has returned
	events, err := audit.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e audit.Event) bool {
		return e.Action == audit.ActionRestore && e.Result == audit.ResultSuccess && e.RuleName == guard &&
			strings.Contains(e.Reason, "remaining rules")
	}) {
		t.Errorf("audit events %+v lack the rebuild of %s from the remaining rules", events, guard)
	}
}

// createVNet creates a virtual network in rg whose one subnet is associated
// with the NSG, and returns its id.
func (la *localAzure) createVNet(t *testing.T, rg, name, nsgID string) string {
	t.Helper()
	ctx := t.Context()
	poller, err := la.vnets.BeginCreateOrUpdate(ctx, rg, name, armnetwork.VirtualNetwork{
		Location: testproc.To("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{testproc.To("10.0.0.0/16")}},
			Subnets: []*armnetwork.Subnet{{Name: testproc.To("vms"), Properties: &armnetwork.SubnetPropertiesFormat{
				AddressPrefix: testproc.To("10.0.1.0/24"), NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: testproc.To(nsgID)},
			}}},
		},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		t.Fatalf("create virtual network %s/%s: %v", rg, name, err)
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s", la.subscription(), rg, name)
}

// setAdminRules gives a virtual network security admin rules, through the
// local Azure's control endpoint (Azure's network manager resources are
// not modelled).
func (la *localAzure) setAdminRules(t *testing.T, vnetID string, rules ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"virtualNetworkId": vnetID, "rules": rules})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, la.url+"/_sim/admin-rules", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := la.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("set admin rules: %s: %s", resp.Status, b)
	}
}
