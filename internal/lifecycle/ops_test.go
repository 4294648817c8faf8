package lifecycle

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// op is one kind of step. run draws its parameters from the world's
// random source, acts, and returns a line for the step list. Weights say
// how often the generator picks it.
type op struct {
	name   string
	weight int
	run    func(w *world) string
	// exclusive ops change the local Azure's latency or fault rate, which
	// every run shares: no other run steps or checks meanwhile.
	exclusive bool
}

// ops are every operation the generator draws from. Each of issue 10's
// items is reachable: 1 (policyNSG, rename, replace, stateRm, import,
// readd), 2 (timeout, interrupt), 3 (policyNSG adding nsg-c, then clock),
// 4 (foreign standing), 5 (deletePolicyRule, staleOverwrite), 6 (import).
var ops = []op{
	{"grant", 12, opGrant, false},
	{"grantInvalid", 3, opGrantInvalid, false},
	{"removeGrant", 4, opRemoveGrant, false},
	{"readdEnded", 2, opReaddEnded, false},
	{"clock", 8, opClock, false},
	{"revoke", 2, opRevoke, false},
	{"tamper", 2, opTamper, false},
	{"deletePolicyRule", 2, opDeletePolicyRule, false},
	{"policyNSG", 4, opPolicyNSG, false},
	{"policyOther", 4, opPolicyOther, false},
	{"replace", 2, opReplace, false},
	{"stateRmReapply", 2, opStateRmReapply, false},
	{"importGrant", 2, opImportGrant, false},
	{"importPolicy", 1, opImportPolicy, false},
	{"refreshOnly", 2, opRefreshOnly, false},
	{"savedPlan", 2, opSavedPlan, false},
	{"timeout", 2, opTimeout, true},
	{"interrupt", 2, opInterrupt, true},
	{"jitdKill", 1, opJitdKill, false},
	{"foreign", 3, opForeign, false},
	{"removeForeign", 2, opRemoveForeign, false},
	{"staleOverwrite", 2, opStaleOverwrite, false},
	{"fault", 1, opFault, true},
}

func pick(r *rand.Rand) op {
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	n := r.IntN(total)
	for _, o := range ops {
		if n < o.weight {
			return o
		}
		n -= o.weight
	}
	panic("unreachable")
}

func oneOf[T any](r *rand.Rand, v ...T) T { return v[r.IntN(len(v))] }

// result formats a terraform outcome for the step list.
func result(err error) string {
	var te *tfError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &te):
		return fmt.Sprintf("exit %d (%s)", testproc.ExitCode(err), te.summary)
	default:
		return fmt.Sprintf("exit %d", testproc.ExitCode(err))
	}
}

// newRequest draws a valid request against the configured policy.
func (w *world) newRequest() request {
	w.next++
	ports := []int{22}
	if slices.Contains(w.cfg.ports, 3389) && w.rng.IntN(3) == 0 {
		ports = []int{22, 3389}
	}
	durs := []string{"1m", "5m", "20m"}
	if w.cfg.maxDur == "1h" {
		durs = append(durs, "45m")
	}
	r := request{Ports: ports, Source: oneOf(w.rng, grantSources...), Duration: oneOf(w.rng, durs...),
		Requester: oneOf(w.rng, "alice@example.com", "bob@example.com"), Justification: fmt.Sprintf("INC-%d", w.next)}
	if w.rng.IntN(2) == 0 {
		r.Approval = fmt.Sprintf("https://example.com/pr/%d", w.next)
	}
	return r
}

func (w *world) addBlock(r request, timeout string) *block {
	b := &block{name: fmt.Sprintf("g%d", w.next), req: r, timeout: timeout}
	for slices.ContainsFunc(w.blocks, func(x *block) bool { return x.name == b.name }) {
		w.next++
		b.name = fmt.Sprintf("g%d", w.next)
	}
	w.blocks = append(w.blocks, b)
	return b
}

func describe(b *block) string {
	return fmt.Sprintf("%s{%v from %s for %s by %s, %s}", b.name, b.req.Ports, b.req.Source, b.req.Duration, b.req.Requester, b.req.Justification)
}

func opGrant(w *world) string { return doGrant(w, w.newRequest()) }

func doGrant(w *world, r request) string {
	b := w.addBlock(r, "")
	_, err := w.apply()
	if err != nil {
		w.removeBlock(b) // the requester gives up on a refused request
	}
	return fmt.Sprintf("grant %s: apply %s", describe(b), result(err))
}

func opGrantInvalid(w *world) string {
	r := w.newRequest()
	var why string
	switch w.rng.IntN(3) {
	case 0:
		r.Source, why = outsideSource, "source outside the allowed sources"
	case 1:
		r.Duration, why = "3h", "duration over the maximum"
	default:
		r.Ports, why = []int{webPort}, "unprotected port"
	}
	b := w.addBlock(r, "")
	_, err := w.apply()
	w.blocks = slices.DeleteFunc(w.blocks, func(x *block) bool { return x == b })
	if err == nil {
		w.removed = append(w.removed, b)
		w.problem("invalid request (%s) %s was applied", why, describe(b))
	}
	return fmt.Sprintf("grantInvalid (%s) %s: apply %s", why, describe(b), result(err))
}

func (w *world) pickBlock() *block {
	if len(w.blocks) == 0 {
		return nil
	}
	return w.blocks[w.rng.IntN(len(w.blocks))]
}

func opRemoveGrant(w *world) string {
	b := w.pickBlock()
	if b == nil {
		return opGrant(w)
	}
	return doRemoveGrant(w, b)
}

func doRemoveGrant(w *world, b *block) string {
	w.removeBlock(b)
	_, err := w.apply()
	return fmt.Sprintf("removeGrant %s: apply %s", b.name, result(err))
}

// opReaddEnded asks again, identically, for a request that has ended
// (expired, revoked or closed): the same grant, which must not open.
func opReaddEnded(w *world) string {
	var ended []*grantModel
	for _, k := range sortedKeys(w.grants) {
		g := w.grants[k]
		if g.firstOpen.IsZero() || slices.ContainsFunc(w.blocks, func(b *block) bool { return b.req.key() == k }) {
			continue
		}
		if g.closed || len(g.endedOn) > 0 || w.now().After(g.windowEnd()) {
			ended = append(ended, g)
		}
	}
	if len(ended) == 0 {
		return opClock(w)
	}
	return doReadd(w, ended[w.rng.IntN(len(ended))])
}

func doReadd(w *world, g *grantModel) string {
	w.next++
	b := w.addBlock(g.req, "")
	_, err := w.apply()
	if err != nil {
		w.removeBlock(b)
	}
	return fmt.Sprintf("readdEnded %s (ended request asked again, identical): apply %s", describe(b), result(err))
}

func opClock(w *world) string {
	return doClock(w, oneOf(w.rng, 30*time.Second, 2*time.Minute, 10*time.Minute, time.Hour))
}

func doClock(w *world, d time.Duration) string {
	w.offset += d
	w.writeClock()
	return fmt.Sprintf("clock +%s (offset %s)", d, w.offset)
}

// activeInState is the blocks whose grant state says is active.
func (w *world) activeInState() []*block {
	var out []*block
	for _, b := range w.blocks {
		if a, ok := w.stateGrant(b.name); ok && str(a["status"]) == "active" {
			out = append(out, b)
		}
	}
	return out
}

func opRevoke(w *world) string {
	act := w.activeInState()
	if len(act) == 0 {
		return opGrant(w)
	}
	return doRevoke(w, act[w.rng.IntN(len(act))])
}

func doRevoke(w *world, b *block) string {
	a, _ := w.stateGrant(b.name)
	name := str(a["rule_name"])
	var on []string
	for i := range w.ids {
		if w.deleteRule(i, name) {
			w.grant(b.req).endedOn[strings.ToLower(w.ids[i])] = true
			on = append(on, nsgNames[i])
		}
	}
	w.gone[name] = true
	return fmt.Sprintf("revoke %s: deleted %s out of band on %v", b.name, name, on)
}

// deleteRule deletes a rule through the SDK; false if it was not there.
func (w *world) deleteRule(i int, name string) bool {
	w.t.Helper()
	if _, err := w.env.ARM.Rules.Get(w.t.Context(), w.rg, nsgNames[i], name, nil); err != nil {
		return false
	}
	poller, err := w.env.ARM.Rules.BeginDelete(w.t.Context(), w.rg, nsgNames[i], name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(w.t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		w.t.Fatalf("delete %s on %s: %v", name, nsgNames[i], err)
	}
	return true
}

func (w *world) putRule(i int, r armnetwork.SecurityRule) {
	w.t.Helper()
	poller, err := w.env.ARM.Rules.BeginCreateOrUpdate(w.t.Context(), w.rg, nsgNames[i], *r.Name, r, nil)
	if err == nil {
		_, err = poller.PollUntilDone(w.t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		w.t.Fatalf("put %s on %s: %v", *r.Name, nsgNames[i], err)
	}
}

var expField = regexp.MustCompile(`exp=(\d+)`)

func opTamper(w *world) string {
	type loc struct {
		i int
		r *armnetwork.SecurityRule
	}
	var rules []loc
	for i := range w.ids {
		g, err := w.getNSG(i)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, r := range g.Properties.SecurityRules {
			if isGrantRule(*r.Name) {
				rules = append(rules, loc{i, r})
			}
		}
	}
	if len(rules) == 0 {
		return opGrant(w)
	}
	l := rules[w.rng.IntN(len(rules))]
	return doTamper(w, l.i, l.r, oneOf(w.rng, 10*time.Hour, 0))
}

// doTamper edits grant rule r on NSG i in place, as a portal click would:
// its expiry pushed out by extend in the description, or (extend 0) its
// source moved to spareSource (allowed, never granted).
func doTamper(w *world, i int, rule *armnetwork.SecurityRule, extend time.Duration) string {
	r := *rule
	p := *r.Properties
	p.ProvisioningState = nil
	r.Properties, r.Etag = &p, nil
	var what string
	if extend > 0 && p.Description != nil {
		d := expField.ReplaceAllStringFunc(*p.Description, func(m string) string {
			n, _ := strconv.ParseInt(m[4:], 10, 64)
			return "exp=" + strconv.FormatInt(n+int64(extend/time.Second), 10)
		})
		p.Description, what = &d, fmt.Sprintf("expiry +%s in the description", extend)
	} else {
		p.SourceAddressPrefix, p.SourceAddressPrefixes, what = testproc.To(spareSource), nil, "source → "+spareSource
	}
	w.putRule(i, r)
	return fmt.Sprintf("tamper %s on %s: %s", *r.Name, nsgNames[i], what)
}

// doTamperUnseen stops jitd, applies a grant, edits its rule on every NSG
// that holds it, and starts jitd again: jitd's first sight of the grant is
// the edited rule, and no copy anywhere shows the original.
func doTamperUnseen(w *world, r request, extend time.Duration) string {
	w.killJitd()
	line := doGrant(w, r)
	a, _ := w.stateGrant(lastBlock(w).name)
	name := str(a["rule_name"])
	for i := range w.ids {
		g, err := w.getNSG(i)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, rule := range g.Properties.SecurityRules {
			if *rule.Name == name {
				line += "; " + doTamper(w, i, rule, extend)
			}
		}
	}
	w.startJitd()
	return line + "; all while jitd was stopped"
}

func opDeletePolicyRule(w *world) string {
	var choices []string
	for i, id := range w.ids {
		if !w.protect.nsgs[strings.ToLower(id)] {
			continue
		}
		for _, n := range w.protect.ruleNames {
			choices = append(choices, fmt.Sprintf("%d/%s", i, n))
		}
	}
	if len(choices) == 0 {
		return opGrant(w)
	}
	c := oneOf(w.rng, choices...)
	i, _ := strconv.Atoi(c[:1])
	return doDeletePolicyRule(w, i, c[2:])
}

func doDeletePolicyRule(w *world, i int, name string) string {
	w.deleteRule(i, name)
	return fmt.Sprintf("deletePolicyRule %s on %s (out of band)", name, nsgNames[i])
}

// clonePolicy copies the configured policy, to put it back when a change
// is refused (the platform team reverts its pull request).
func (w *world) clonePolicy() policyConfig {
	c := w.cfg
	c.nsgs, c.ports, c.sources = slices.Clone(c.nsgs), slices.Clone(c.ports), slices.Clone(c.sources)
	c.late = map[int]string{}
	for k, v := range w.cfg.late {
		c.late[k] = v
	}
	return c
}

func opPolicyNSG(w *world) string {
	var out []int
	for i := range nsgNames {
		if !slices.Contains(w.cfg.nsgs, i) {
			out = append(out, i)
		}
	}
	if len(out) > 0 && (len(w.cfg.nsgs) == 1 || w.rng.IntN(2) == 0) {
		return doPolicyNSG(w, true, oneOf(w.rng, out...), w.rng.IntN(2) == 0)
	}
	return doPolicyNSG(w, false, oneOf(w.rng, w.cfg.nsgs...), false)
}

// doPolicyNSG adds NSG i to the policy (late: its id unknown at plan) or
// removes it.
func doPolicyNSG(w *world, add bool, i int, late bool) string {
	old := w.clonePolicy()
	var what string
	if add {
		w.cfg.nsgs = append(w.cfg.nsgs, i)
		what = "add " + nsgNames[i]
		if late {
			w.lateSeq++
			w.cfg.late[i] = fmt.Sprintf("late_%s_%d", strings.ReplaceAll(nsgNames[i], "-", "_"), w.lateSeq)
			what += " (id unknown at plan)"
		}
	} else {
		w.cfg.nsgs = slices.DeleteFunc(w.cfg.nsgs, func(x int) bool { return x == i })
		delete(w.cfg.late, i)
		what = "remove " + nsgNames[i]
	}
	_, err := w.apply()
	if err != nil {
		if strings.HasPrefix(what, "add") && !w.foreignInBand() {
			w.problem("the policy could not grow (%s): %s", what, result(err))
		}
		w.cfg = old
	}
	return fmt.Sprintf("policyNSG %s: apply %s", what, result(err))
}

func opPolicyOther(w *world) string { return doPolicyOther(w, w.rng.IntN(5)) }

// doPolicyOther changes one thing of the policy: 0 ports, 1 sources,
// 2 max duration, 3 band, 4 name.
func doPolicyOther(w *world, kind int) string {
	old := w.clonePolicy()
	var what string
	switch kind {
	case 0:
		if slices.Contains(w.cfg.ports, 3389) {
			w.cfg.ports, what = []int{22}, "ports → [22]"
		} else {
			w.cfg.ports, what = []int{22, 3389}, "ports → [22, 3389]"
		}
	case 1:
		// Three shapes, one of them two ranges not in sorted order (not
		// adjacent: adjacent ranges read back merged, which the provider
		// warns about at validate).
		switch w.cfg.sources[0] {
		case "203.0.113.0/24":
			w.cfg.sources = []string{"203.0.113.0/25"}
		case "203.0.113.0/25":
			w.cfg.sources = []string{"203.0.113.128/26", "203.0.113.0/25"}
		default:
			w.cfg.sources = []string{"203.0.113.0/24"}
		}
		what = "sources → " + strings.Join(w.cfg.sources, ", ")
	case 2:
		w.cfg.maxDur = map[string]string{"1h": "30m", "30m": "1h"}[w.cfg.maxDur]
		what = "max_duration → " + w.cfg.maxDur
		if w.cfg.maxDur == "30m" {
			// Requests over the new maximum no longer plan: the team
			// removes them with the change.
			for _, b := range slices.Clone(w.blocks) {
				if b.req.duration() > 30*time.Minute {
					w.removeBlock(b)
					what += ", remove " + b.name
				}
			}
		}
	case 3:
		w.cfg.bandStart = map[int]int{200: 300, 300: 200}[w.cfg.bandStart]
		what = fmt.Sprintf("band → %d-%d", w.cfg.bandStart, w.cfg.bandStart+99)
	default:
		w.cfg.name = map[string]string{"web": "web2", "web2": "web"}[w.cfg.name]
		what = "rename → " + w.cfg.name
	}
	_, err := w.apply()
	if err != nil {
		w.cfg = old
	}
	return fmt.Sprintf("policyOther %s: apply %s", what, result(err))
}

func (w *world) pickInState() *block {
	var in []*block
	for _, b := range w.blocks {
		if _, ok := w.stateGrant(b.name); ok {
			in = append(in, b)
		}
	}
	if len(in) == 0 {
		return nil
	}
	return in[w.rng.IntN(len(in))]
}

func opReplace(w *world) string {
	b := w.pickInState()
	if b == nil {
		return opGrant(w)
	}
	return doReplace(w, b)
}

func doReplace(w *world, b *block) string {
	_, err := w.apply("-replace=jit_access_grant." + b.name)
	return fmt.Sprintf("replace %s: apply -replace %s", b.name, result(err))
}

func (w *world) stateRm(addr string) error {
	cmd, out := w.tf.Command(nil, "state", "rm", "-lock=false", addr)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("state rm %s: %w\n%s", addr, err, out)
	}
	return nil
}

func opStateRmReapply(w *world) string {
	b := w.pickInState()
	if b == nil {
		return opGrant(w)
	}
	return doStateRmReapply(w, b)
}

func doStateRmReapply(w *world, b *block) string {
	if err := w.stateRm("jit_access_grant." + b.name); err != nil {
		w.t.Fatal(err)
	}
	w.orphans = true
	_, err := w.apply()
	return fmt.Sprintf("stateRmReapply %s: state rm, apply %s", b.name, result(err))
}

func opImportGrant(w *world) string {
	b := w.pickInState()
	if b == nil {
		return opGrant(w)
	}
	return doImportGrant(w, b)
}

func doImportGrant(w *world, b *block) string {
	a, _ := w.stateGrant(b.name)
	id := str(a["id"])
	if err := w.stateRm("jit_access_grant." + b.name); err != nil {
		w.t.Fatal(err)
	}
	w.orphans = true
	present := w.ruleOnNSGs(str(a["rule_name"]))
	out, err := w.terraform("import", "-input=false", "-no-color", "-lock=false", "jit_access_grant."+b.name, id)
	if err != nil {
		w.t.Logf("import %s: %s", b.name, testproc.Tail(out))
	}
	_, err2 := w.apply()
	// An active grant must import and apply cleanly; an ended one may
	// refuse the import (its rule is gone), but must not open again.
	if (err != nil || err2 != nil) && str(a["status"]) == "active" && present {
		w.problem("import of active grant %s failed: import %s, apply %s", b.name, result(err), result(err2))
	}
	return fmt.Sprintf("importGrant %s (status %s): state rm, import %s, apply %s", b.name, str(a["status"]), result(err), result(err2))
}

func opImportPolicy(w *world) string {
	var id string
	for _, in := range w.state() {
		if in.Type == "jit_policy" {
			id = str(in.Attributes["id"])
		}
	}
	if id == "" {
		return opGrant(w)
	}
	if err := w.stateRm("jit_policy.p"); err != nil {
		w.t.Fatal(err)
	}
	_, err := w.terraform("import", "-input=false", "-no-color", "-lock=false", "jit_policy.p", id)
	// Only the policy's own plan: removed grant blocks waiting for the
	// next apply are not the import's business.
	out, err2 := w.terraform("plan", "-input=false", "-no-color", "-lock=false", "-detailed-exitcode", "-target=jit_policy.p")
	planned := "empty"
	if testproc.ExitCode(err2) == 2 {
		planned = "changes"
		w.problem("an imported policy does not plan empty:\n%s", testproc.Tail(out))
	}
	_, err3 := w.apply()
	return fmt.Sprintf("importPolicy: state rm, import %s, plan %s (%s), apply %s", result(err), result(err2), planned, result(err3))
}

func opRefreshOnly(w *world) string {
	_, err := w.apply("-refresh-only")
	return "refreshOnly: apply -refresh-only " + result(err)
}

func opSavedPlan(w *world) string {
	b := w.addBlock(w.newRequest(), "")
	_, err := w.terraform("plan", "-input=false", "-no-color", "-lock=false", "-out=saved.tfplan")
	d := oneOf(w.rng, 2*time.Minute, time.Hour)
	w.offset += d
	w.writeClock()
	_, err2 := w.terraform("apply", "-auto-approve", "-input=false", "-no-color", "-lock=false", "saved.tfplan")
	return fmt.Sprintf("savedPlan %s: plan -out %s, clock +%s, apply saved plan %s", describe(b), result(err), d, result(err2))
}

// opTimeout: create timeouts shorter than the local Azure's write latency.
func opTimeout(w *world) string {
	var reqs []request
	for range 1 + w.rng.IntN(3) {
		reqs = append(reqs, w.newRequest())
	}
	return doTimeout(w, reqs)
}

func doTimeout(w *world, reqs []request) string {
	if err := w.env.ARM.SetSimConfig(3*time.Second, 0); err != nil {
		w.t.Fatal(err)
	}
	n := len(reqs)
	var bs []*block
	for _, r := range reqs {
		bs = append(bs, w.addBlock(r, "1s"))
	}
	_, err := w.apply()
	if err := w.env.ARM.SetSimConfig(0, 0); err != nil {
		w.t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, describe(b))
		w.removeBlock(b) // the requester gives up; nothing may stay open
	}
	return fmt.Sprintf("timeout %d grants with create = 1s, writes 3s: apply %s; blocks removed %v", n, result(err), names)
}

// opInterrupt: SIGINT or SIGKILL terraform mid-write.
func opInterrupt(w *world) string {
	if err := w.env.ARM.SetSimConfig(2*time.Second, 0); err != nil {
		w.t.Fatal(err)
	}
	b := w.addBlock(w.newRequest(), "")
	w.writeConfig()
	cmd, _ := w.tf.Command(nil, "apply", "-auto-approve", "-input=false", "-no-color", "-lock=false")
	sig := oneOf(w.rng, syscall.SIGINT, syscall.SIGKILL)
	after := time.Duration(300+w.rng.IntN(2500)) * time.Millisecond
	// Its own process group: the provider process a SIGKILLed terraform
	// leaves behind keeps running through the rest of the run, as on a CI
	// runner, and the group is ended when the run ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	w.t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(after):
		_ = cmd.Process.Signal(sig)
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			err = <-done
		}
	}
	if err := w.env.ARM.SetSimConfig(0, 0); err != nil {
		w.t.Fatal(err)
	}
	w.afterTerraform(err == nil)
	if sig == syscall.SIGKILL && err != nil {
		w.killedStep = true
		if g := w.grant(b.req); g.firstOpen.IsZero() {
			g.firstOpen, g.killed = w.now(), true
		}
	}
	keep := w.rng.IntN(2) == 0
	if !keep {
		w.removeBlock(b)
	}
	return fmt.Sprintf("interrupt %s: %s after %s, writes 2s: %s; block kept %v", describe(b), sig, after, result(err), keep)
}

func opJitdKill(w *world) string {
	w.killJitd()
	w.startJitd()
	return "jitdKill: kill -9 jitd, restart"
}

// opForeign plants a foreign Allow to port 22 above, inside or below the
// band, from an outside range (a bypass) or from inside the allowed
// sources (standing access). Below the band it is harmless while the
// deny-all rule is there.
func opForeign(w *world) string {
	i := w.rng.IntN(len(nsgNames))
	where := oneOf(w.rng, "above", "inside", "below")
	prio := map[string]int32{"above": 150, "inside": int32(w.cfg.bandStart + 50), "below": 1000}[where]
	if where == "above" && w.cfg.bandStart == 300 && w.rng.IntN(2) == 0 {
		prio = 250
	}
	return doForeign(w, i, where, prio, w.rng.IntN(2) == 0)
}

// doForeign plants other-team-<n> on NSG i: Allow 22 at prio from inside
// the allowed sources (standing) or from outside (bypass).
func doForeign(w *world, i int, where string, prio int32, standing bool) string {
	w.foreignSeq++
	name := fmt.Sprintf("other-team-%d", w.foreignSeq)
	// Azure refuses two inbound rules at one priority: take the next free.
	g, err := w.getNSG(i)
	if err != nil {
		w.t.Fatal(err)
	}
	for slices.ContainsFunc(g.Properties.SecurityRules, func(r *armnetwork.SecurityRule) bool {
		return r.Properties != nil && r.Properties.Priority != nil && *r.Properties.Priority == prio
	}) {
		prio++
	}
	src, kind := "198.51.100.0/24", "bypass"
	if standing {
		src, kind = "203.0.113.0/26", "standing"
	}
	w.putRule(i, armnetwork.SecurityRule{Name: testproc.To(name), Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: testproc.To(prio), Direction: testproc.To(armnetwork.SecurityRuleDirectionInbound),
		Access: testproc.To(armnetwork.SecurityRuleAccessAllow), Protocol: testproc.To(armnetwork.SecurityRuleProtocolTCP),
		SourceAddressPrefix: testproc.To(src), SourcePortRange: testproc.To("*"),
		DestinationAddressPrefix: testproc.To("*"), DestinationPortRange: testproc.To("22"),
	}})
	w.recordForeign(i, name, true)
	return fmt.Sprintf("foreign %s on %s: Allow 22 from %s at %d (%s the band, %s)", name, nsgNames[i], src, prio, where, kind)
}

// opStaleOverwrite: another writer reads a whole NSG, a grant is applied
// meanwhile, and the writer PUTs its stale copy back (a tag update).
func opStaleOverwrite(w *world) string {
	i := w.rng.IntN(len(nsgNames))
	stale, err := w.getNSG(i)
	if err != nil {
		w.t.Fatal(err)
	}
	before := map[string]bool{}
	for _, r := range stale.Properties.SecurityRules {
		before[*r.Name] = true
	}
	between := opGrant(w)
	cur, err := w.getNSG(i)
	if err != nil {
		w.t.Fatal(err)
	}
	if stale.Tags == nil {
		stale.Tags = map[string]*string{}
	}
	stale.Tags["touched-by"] = testproc.To("another-tool")
	poller, err := w.env.ARM.Groups.BeginCreateOrUpdate(w.t.Context(), w.rg, nsgNames[i], stale, nil)
	if err == nil {
		_, err = poller.PollUntilDone(w.t.Context(), &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond})
	}
	if err != nil {
		w.t.Fatalf("stale PUT of %s: %v", nsgNames[i], err)
	}
	// Grant rules the stale copy brings back were written by the other
	// writer: nothing in the product can tell them from the originals, so
	// the model lets them be, inside their request's window, until jitd
	// closes them at expiry.
	now := map[string]bool{}
	for _, r := range cur.Properties.SecurityRules {
		now[*r.Name] = true
	}
	var back []string
	for _, r := range stale.Properties.SecurityRules {
		if name := *r.Name; isGrantRule(name) && !now[name] {
			back = append(back, name)
			w.resurrected[name] = true
			if k, ok := w.ruleKey[name]; ok {
				g := w.grants[k]
				delete(g.endedOn, strings.ToLower(w.ids[i]))
				g.closed = false
			}
		}
	}
	var dropped []string
	for _, r := range cur.Properties.SecurityRules {
		if before[*r.Name] {
			continue
		}
		dropped = append(dropped, *r.Name)
		if isGrantRule(*r.Name) {
			w.gone[*r.Name] = true
			if k, ok := w.ruleKey[*r.Name]; ok {
				w.grants[k].endedOn[strings.ToLower(w.ids[i])] = true
			}
		}
	}
	return fmt.Sprintf("staleOverwrite %s: GET, then [%s], then PUT the stale copy (dropped %v, brought back %v)", nsgNames[i], between, dropped, back)
}

func opFault(w *world) string {
	if err := w.env.ARM.SetSimConfig(0, 0.3); err != nil {
		w.t.Fatal(err)
	}
	s := opGrant(w)
	if err := w.env.ARM.SetSimConfig(0, 0); err != nil {
		w.t.Fatal(err)
	}
	return "fault rate 0.3 during [" + s + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}

// problem records a violation seen by a step itself (a refused valid
// change, a failed import round trip), reported by the next check.
func (w *world) problem(format string, args ...any) {
	w.stepProblems = append(w.stepProblems, fmt.Sprintf(format, args...))
}

// foreignInBand: a foreign rule the suite planted sits inside the
// configured band on an NSG, so policy changes are rightly refused.
func (w *world) foreignInBand() bool {
	for _, p := range w.foreign {
		if p.mustReport && strings.Contains(p.json, fmt.Sprintf(`"priority":%d`, w.cfg.bandStart+50)) {
			return true
		}
	}
	return false
}

// opRemoveForeign: the other team deletes one of its rules.
func opRemoveForeign(w *world) string {
	var mine []string
	for _, k := range sortedKeys(w.foreign) {
		if w.foreign[k].mustReport {
			mine = append(mine, k)
		}
	}
	if len(mine) == 0 {
		return opForeign(w)
	}
	p := w.foreign[oneOf(w.rng, mine...)]
	w.deleteRule(p.nsg, p.name)
	delete(w.foreign, fmt.Sprintf("%d/%s", p.nsg, p.name))
	return fmt.Sprintf("removeForeign %s on %s", p.name, nsgNames[p.nsg])
}

// ruleOnNSGs: a rule of that name is on some NSG.
func (w *world) ruleOnNSGs(name string) bool {
	for i := range w.ids {
		if _, err := w.env.ARM.Rules.Get(w.t.Context(), w.rg, nsgNames[i], name, nil); err == nil {
			return true
		}
	}
	return false
}
