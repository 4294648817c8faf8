package lifecycle

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// The fixed shape of every run: one VM address behind three NSGs (a, b, c),
// each with a pre-existing "legacy" rule below any band that lets the
// office and an outside range reach the management ports and a web port:
// what the policy is there to close. Port 8080 is never protected.
const (
	destination = "10.0.1.4"
	legacyRule  = "legacy-allow-admin"
	webPort     = 8080
	// outsideSource is never inside the policy's allowed sources.
	outsideSource = "198.51.100.7"
	// spareSource is allowed (with the /24 sources) and never granted:
	// tampering moves rules to it.
	spareSource = "203.0.113.99"
	// wideOnlySource is allowed only while the sources are the whole /24.
	wideOnlySource = "203.0.113.200"
)

// grantSources are the addresses requests come from.
var grantSources = []string{"203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13"}

var nsgNames = []string{"nsg-a", "nsg-b", "nsg-c"}

// policyConfig is the jit_policy block as the suite writes it.
type policyConfig struct {
	name      string
	nsgs      []int          // indexes into nsgNames, in the policy
	late      map[int]string // NSG index → terraform_data resource handing its id over (unknown at plan when new)
	ports     []int          // 22, optionally 3389
	maxDur    string
	sources   []string
	bandStart int
}

// request is what a jit_access_grant block asks for: its identity.
type request struct {
	Ports         []int
	Source        string
	Duration      string
	Requester     string
	Justification string
	Approval      string
}

func (r request) key() string {
	return fmt.Sprintf("%v|%s|%s|%s|%s|%s", r.Ports, r.Source, r.Duration, r.Requester, r.Justification, r.Approval)
}

func (r request) duration() time.Duration {
	d, _ := time.ParseDuration(r.Duration)
	return d
}

// grantModel is the model's whole knowledge of a request: when it first
// opened (test clock; zero: never), and on which NSGs it ended early
// (revoked, overwritten) or everywhere (closed by destroy). Nothing here
// is ever extended: a window is [firstOpen, firstOpen+duration].
type grantModel struct {
	req       request
	firstOpen time.Time
	endedOn   map[string]bool // lower-case NSG id → ended there
	closed    bool            // destroyed: ended everywhere
	// killed: terraform was SIGKILLed while applying it. Nobody is left to
	// record state or the audit event, so the model takes the window as
	// started at the kill and accepts a rule state does not know, inside
	// that window only.
	killed bool
}

// windowEnd is the end of the request's one window.
func (g *grantModel) windowEnd() time.Time { return g.firstOpen.Add(g.req.duration()) }

// block is one jit_access_grant block in the configuration.
type block struct {
	name    string
	req     request
	timeout string // timeouts.create, "" for none
}

// planted is a foreign rule the suite wrote (or found at set-up), with the
// JSON of its properties as written: it must stay byte-identical.
type planted struct {
	nsg  int
	name string
	json string
	// standing/bypass rules must be reported; legacy rules are what the
	// policy closes.
	mustReport bool
}

// world is one run: a resource group with its NSGs, a terraform working
// directory, jitd, the test clock and the model.
type world struct {
	t    *testing.T
	env  *suiteEnv
	rng  *rand.Rand
	seed uint64
	rg   string
	ids  []string // NSG ids, by index

	tf            *testproc.Terraform
	dir           string
	clockFile     string
	offset        time.Duration
	clockWrites   int
	jitd          *testproc.Jitd
	jitdAudit     string
	providerAudit string

	cfg     policyConfig
	blocks  []*block
	removed []*block // removed from the configuration, not yet destroyed by a successful apply
	grants  map[string]*grantModel
	next    int
	lateSeq int
	foreign map[string]*planted // by NSG index + "/" + name
	ruleKey map[string]string   // grant rule name → request key (from state)
	seen    map[string]bool     // grant rule names seen on an NSG
	gone    map[string]bool     // grant rule names the suite deleted or overwrote itself
	// killedStep: terraform was SIGKILLed in this step. A provider killed
	// between an NSG write and its audit event cannot write the event:
	// a close in such a step is accepted unaudited, as an open is.
	killedStep bool
	orphans    bool       // a grant was state-rm'd and no apply has run since
	protect    protection // what the NSGs should enforce
	settled    bool       // the last terraform command succeeded: state and NSGs agree
	steps      []string
	heals      []func() // repairs of the last evaluation's problems
	// healedApply: a repair already ran terraform apply in this round.
	healedApply bool
	violations  int
	// stepProblems are violations a step saw itself, for the next check.
	stepProblems []string
	foreignSeq   int
	stateName    map[string]string // grant rule name → resource name in state
	resurrected  map[string]bool   // grant rules a stale whole-NSG PUT brought back
	// violationTime is the time spent waiting out and repairing
	// violations, for the figures.
	violationTime time.Duration
	tfTime        time.Duration
	tfRuns        int
}

// protection is the part of the policy the checker needs: which NSGs and
// ports it protects, and its rule names.
type protection struct {
	nsgs      map[string]bool // lower-case ids
	ports     map[int]bool
	ruleNames []string
	name      string
}

func newWorld(t *testing.T, env *suiteEnv, seed uint64, run int) *world {
	t.Helper()
	w := &world{t: t, env: env, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc909)),
		rg: fmt.Sprintf("lc-%d-%d", seed, run), grants: map[string]*grantModel{}, foreign: map[string]*planted{},
		ruleKey: map[string]string{}, seen: map[string]bool{}, gone: map[string]bool{}, resurrected: map[string]bool{}}
	w.dir = t.TempDir()
	w.clockFile = filepath.Join(w.dir, "clock-offset")
	w.providerAudit = filepath.Join(w.dir, "provider-audit.jsonl")
	w.jitdAudit = filepath.Join(w.dir, "jitd-audit.jsonl")
	w.writeClock()
	sub := env.Sim.Env["ARM_SUBSCRIPTION_ID"]
	for i, n := range nsgNames {
		w.ids = append(w.ids, fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkSecurityGroups/%s", sub, w.rg, n))
		w.createNSG(n)
		w.recordForeign(i, legacyRule, false)
	}
	w.cfg = policyConfig{name: "web", nsgs: []int{0, 1}, late: map[int]string{}, ports: []int{22}, maxDur: "1h",
		sources: []string{"203.0.113.0/24"}, bandStart: 200}
	env.ARM.HTTP.CloseIdleConnections()
	w.tf = testproc.NewTerraform(t, env.Terraform, w.dir, testproc.DevOverrides(env.ProviderDir), nil,
		append(env.Sim.Environ(), "ARM_USE_CLI=false", "JIT_AUDIT_LOG_PATH="+w.providerAudit,
			"JIT_TEST_CLOCK_OFFSET_FILE="+w.clockFile)...)
	// The policy exists before jitd starts, as in any real set-up: an NSG
	// that gets its first policy after jitd's last full resync is a step
	// of its own (adding nsg-c).
	if out, err := w.apply(); err != nil {
		t.Fatalf("seed %d: initial apply failed: %v\n%s", seed, err, out)
	}
	w.startJitd()
	return w
}

// now is the test clock, the time the provider and jitd see.
func (w *world) now() time.Time { return time.Now().Add(w.offset) }

// writeClock writes the offset file atomically, with a modification time
// of its own so that readers see every change.
func (w *world) writeClock() {
	w.clockWrites++
	tmp := w.clockFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(w.offset.String()+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	mt := time.Unix(1_700_000_000+int64(w.clockWrites), 0)
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(tmp, w.clockFile); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) createNSG(name string) {
	w.t.Helper()
	legacy := &armnetwork.SecurityRule{Name: testproc.To(legacyRule), Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: testproc.To[int32](4000), Direction: testproc.To(armnetwork.SecurityRuleDirectionInbound),
		Access: testproc.To(armnetwork.SecurityRuleAccessAllow), Protocol: testproc.To(armnetwork.SecurityRuleProtocolTCP),
		SourceAddressPrefixes:    []*string{testproc.To("203.0.113.0/24"), testproc.To("198.51.100.0/24")},
		SourcePortRange:          testproc.To("*"),
		DestinationAddressPrefix: testproc.To("*"),
		DestinationPortRanges:    []*string{testproc.To("22"), testproc.To("3389"), testproc.To("8080")},
		Description:              testproc.To("pre-existing admin access from the office and a partner range"),
	}}
	ctx := w.t.Context()
	poller, err := w.env.ARM.Groups.BeginCreateOrUpdate(ctx, w.rg, name, armnetwork.SecurityGroup{
		Location: testproc.To("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{legacy}},
	}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		w.t.Fatalf("create NSG %s/%s: %v", w.rg, name, err)
	}
}

// getNSG reads an NSG through the SDK, as another tool would.
func (w *world) getNSG(i int) (armnetwork.SecurityGroup, error) {
	resp, err := w.env.ARM.Groups.Get(w.t.Context(), w.rg, nsgNames[i], nil)
	return resp.SecurityGroup, err
}

// ruleJSON is the JSON of a rule's properties without what Azure changes
// on every write of the NSG (etag, provisioning state).
func ruleJSON(r *armnetwork.SecurityRule) string {
	p := *r.Properties
	p.ProvisioningState = nil
	b, _ := json.Marshal(p)
	return string(b)
}

// recordForeign remembers the foreign rule name on NSG i as it is now.
func (w *world) recordForeign(i int, name string, mustReport bool) {
	w.t.Helper()
	resp, err := w.env.ARM.Rules.Get(w.t.Context(), w.rg, nsgNames[i], name, nil)
	if err != nil {
		w.t.Fatalf("read foreign rule %s: %v", name, err)
	}
	w.foreign[fmt.Sprintf("%d/%s", i, name)] = &planted{nsg: i, name: name, json: ruleJSON(&resp.SecurityRule), mustReport: mustReport}
}

func (w *world) startJitd() {
	w.t.Helper()
	sub := w.env.Sim.Env["ARM_SUBSCRIPTION_ID"]
	cmd := exec.Command(w.env.Jitd, "--listen", "127.0.0.1:0", "--audit-log", w.jitdAudit,
		"--resource-group", sub+"/"+w.rg, "--interval", "1m", "--watch-interval", "1s")
	cmd.Env = append(w.env.Sim.Environ(), "PATH="+os.Getenv("PATH"), "ARM_USE_CLI=false", "JIT_TEST_CLOCK_OFFSET_FILE="+w.clockFile)
	t := w.t
	w.jitd = testproc.StartJitd(t, cmd, 60*time.Second, func(p *testproc.Jitd) {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			if err := <-p.Exited; err == nil {
				t.Log("jitd had exited cleanly before the end of the run")
			}
		}
	})
}

// killJitd ends jitd with SIGKILL, as a crash would.
func (w *world) killJitd() {
	_ = w.jitd.Cmd.Process.Kill()
	if err := <-w.jitd.Exited; err == nil {
		w.t.Log("jitd had exited cleanly before it was killed")
	}
}

// --- terraform ---

// hcl renders the configuration.
func (w *world) hcl() string {
	var b strings.Builder
	b.WriteString(`terraform {
  required_providers {
    jit = { source = "jitaccess/jit" }
  }
}

provider "jit" {}
`)
	var ids []string
	for _, i := range w.cfg.nsgs {
		if r, ok := w.cfg.late[i]; ok {
			fmt.Fprintf(&b, "\nresource \"terraform_data\" %q {\n  input = %q\n}\n", r, w.ids[i])
			ids = append(ids, "terraform_data."+r+".output")
		} else {
			ids = append(ids, fmt.Sprintf("%q", w.ids[i]))
		}
	}
	var ports []string
	for _, p := range w.cfg.ports {
		ports = append(ports, fmt.Sprintf("{ port = %d, max_duration = %q }", p, w.cfg.maxDur))
	}
	fmt.Fprintf(&b, `
resource "jit_policy" "p" {
  name                            = %q
  network_security_group_ids      = [%s]
  destination_address_prefixes    = [%q]
  allowed_source_address_prefixes = %s
  ports                           = [%s]
  priority_band                   = { start = %d, end = %d }
}
`, w.cfg.name, strings.Join(ids, ", "), destination, quoteList(w.cfg.sources), strings.Join(ports, ", "),
		w.cfg.bandStart, w.cfg.bandStart+99)
	for _, bl := range w.blocks {
		var ports []string
		for _, p := range bl.req.Ports {
			ports = append(ports, fmt.Sprint(p))
		}
		fmt.Fprintf(&b, `
resource "jit_access_grant" %q {
  policy_id             = jit_policy.p.id
  ports                 = [%s]
  source_address_prefix = %q
  duration              = %q
  requester             = %q
  justification         = %q
`, bl.name, strings.Join(ports, ", "), bl.req.Source, bl.req.Duration, bl.req.Requester, bl.req.Justification)
		if bl.req.Approval != "" {
			fmt.Fprintf(&b, "  approval_reference    = %q\n", bl.req.Approval)
		}
		if bl.timeout != "" {
			fmt.Fprintf(&b, "  timeouts              = { create = %q }\n", bl.timeout)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func quoteList(v []string) string {
	var q []string
	for _, s := range v {
		q = append(q, fmt.Sprintf("%q", s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (w *world) writeConfig() {
	testproc.WriteFile(w.t, filepath.Join(w.dir, "main.tf"), w.hcl())
}

// terraform runs one terraform command to its end and updates the model
// from the state it leaves.
func (w *world) terraform(args ...string) (string, error) {
	w.writeConfig()
	cmd, out := w.tf.Command(nil, args...)
	start := time.Now()
	err := cmd.Run()
	w.tfTime += time.Since(start)
	w.tfRuns++
	w.afterTerraform(err == nil)
	if err != nil {
		err = &tfError{err: err, summary: errorSummary(out.String())}
	}
	return out.String(), err
}

// tfError is a failed terraform command with the summaries of its errors.
type tfError struct {
	err     error
	summary string
}

func (e *tfError) Error() string { return e.err.Error() + ": " + e.summary }
func (e *tfError) Unwrap() error { return e.err }

// errorSummary is the "Error: ..." lines of terraform's output, joined.
func errorSummary(out string) string {
	var s []string
	for line := range strings.Lines(out) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "Error: ") {
			s = append(s, strings.TrimPrefix(l, "Error: "))
		}
	}
	if len(s) == 0 {
		return testproc.Tail(out)
	}
	return strings.Join(s, "; ")
}

// apply runs terraform apply with extra arguments.
func (w *world) apply(extra ...string) (string, error) {
	return w.terraform(append([]string{"apply", "-auto-approve", "-input=false", "-no-color", "-lock=false"}, extra...)...)
}

// state reads the local state file.
func (w *world) state() []testproc.StateInstance {
	w.t.Helper()
	st, err := testproc.ReadState(filepath.Join(w.dir, "terraform.tfstate"))
	if err != nil {
		w.t.Fatalf("read state: %v", err)
	}
	return st
}

// stateGrant finds the state of a grant block.
func (w *world) stateGrant(name string) (map[string]any, bool) {
	for _, in := range w.state() {
		if in.Type == "jit_access_grant" && in.Name == name {
			return in.Attributes, true
		}
	}
	return nil, false
}

func str(v any) string { s, _ := v.(string); return s }

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, str(x))
	}
	return out
}

// requestOf reads a grant's request from its state.
func requestOf(a map[string]any) request {
	var ports []int
	l, _ := a["ports"].([]any)
	for _, p := range l {
		f, _ := p.(float64)
		ports = append(ports, int(f))
	}
	return request{Ports: ports, Source: str(a["source_address_prefix"]), Duration: str(a["duration"]),
		Requester: str(a["requester"]), Justification: str(a["justification"]), Approval: str(a["approval_reference"])}
}

// afterTerraform updates the model from what a terraform command left in
// state. A grant is open from the first time state says it is active: the
// model never moves that moment. A failed command may have changed some
// NSGs and not others, so protection then is what both agree on.
func (w *world) afterTerraform(ok bool) {
	st := w.state()
	now := w.now()
	var pol *protection
	for _, in := range st {
		switch in.Type {
		case "jit_policy":
			p := protection{nsgs: map[string]bool{}, ports: map[int]bool{}, name: str(in.Attributes["name"]),
				ruleNames: strs(in.Attributes["rule_names"])}
			for _, id := range strs(in.Attributes["network_security_group_ids"]) {
				p.nsgs[strings.ToLower(id)] = true
			}
			l, _ := in.Attributes["ports"].([]any)
			for _, x := range l {
				m, _ := x.(map[string]any)
				f, _ := m["port"].(float64)
				p.ports[int(f)] = true
			}
			pol = &p
		case "jit_access_grant":
			// The request is the configuration's: after an import, state
			// holds only what the rule tells (no duration, no
			// justification).
			req, ok := w.blockRequest(in.Name)
			if !ok {
				if req = requestOf(in.Attributes); req.Duration == "" {
					continue
				}
			}
			g := w.grant(req)
			if name := str(in.Attributes["rule_name"]); name != "" {
				w.ruleKey[name] = req.key()
			}
			if str(in.Attributes["status"]) == "active" && g.firstOpen.IsZero() {
				g.firstOpen = now
			}
			// A request whose terraform was SIGKILLed may never have opened:
			// the provider left behind closes a failed create again, with no
			// record, and the same request may then open for real later. Its
			// window is the one state reports.
			if exp, err := time.Parse(time.RFC3339, str(in.Attributes["expires_at"])); err == nil && g.killed &&
				str(in.Attributes["status"]) == "active" && exp.After(g.windowEnd()) {
				g.firstOpen, g.killed = exp.Add(-g.req.duration()), false
			}
		}
	}
	switch {
	case pol == nil:
	case ok || w.protect.nsgs == nil:
		w.protect = *pol
	default:
		for id := range w.protect.nsgs {
			if !pol.nsgs[id] {
				delete(w.protect.nsgs, id)
			}
		}
		for p := range w.protect.ports {
			if !pol.ports[p] {
				delete(w.protect.ports, p)
			}
		}
		if pol.name != w.protect.name {
			w.protect.ruleNames = nil
		}
	}
	w.settled = ok
	if ok {
		for _, b := range w.removed {
			// A request whose terraform was SIGKILLed may have a rule
			// nobody recorded: removing the block cannot close it, so
			// its window stands.
			if _, inState := w.stateGrant(b.name); !inState && !w.grant(b.req).killed {
				w.grant(b.req).closed = true
			}
		}
		w.removed = nil
		w.orphans = false
	}
}

// grant is the model of a request, created on first sight.
func (w *world) grant(r request) *grantModel {
	g, ok := w.grants[r.key()]
	if !ok {
		g = &grantModel{req: r, endedOn: map[string]bool{}}
		w.grants[r.key()] = g
	}
	return g
}

func (w *world) removeBlock(b *block) {
	w.blocks = slices.DeleteFunc(w.blocks, func(x *block) bool { return x == b })
	w.removed = append(w.removed, b)
}

// blockRequest is the request of the configured block name.
func (w *world) blockRequest(name string) (request, bool) {
	for _, b := range w.blocks {
		if b.name == name {
			return b.req, true
		}
	}
	return request{}, false
}
