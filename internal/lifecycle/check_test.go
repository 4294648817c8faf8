package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// lag is how long the checker waits for the product to reach an allowed
// state: jitd's watch interval (1s), a write and its audit, with room for a
// loaded machine. It is a deadline for polling, never a sleep.
const lag = 20 * time.Second

// check compares the world with the model after a step, polling until they
// agree or lag has passed. It returns the problems still seen at the
// deadline.
func (w *world) check() []string {
	var problems []string
	end := time.Now().Add(lag)
	for {
		problems = w.evaluate()
		if len(problems) == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(250 * time.Millisecond) // polling another process's effect
	}
	if len(problems) == 0 {
		w.settled = false // liveness is checked once, right after an apply
	}
	problems = append(w.stepProblems, problems...)
	w.stepProblems = nil
	return problems
}

// observation is one read of the world.
type observation struct {
	rules       map[int][]*armnetwork.SecurityRule
	present     map[string]*armnetwork.SecurityRule // grant rules on any NSG, by name
	providerLog []audit.Event
	jitdLog     []audit.Event
	bypassing   map[string]bool // rule names in the policy's bypassing_rules
}

func readAudit(path string) ([]audit.Event, error) {
	ev, err := audit.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ev, err
}

// evaluate reads the NSGs, flows, state and audit logs once and lists
// every disagreement with the model.
func (w *world) evaluate() []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	w.heals = nil
	heal := func(f func()) { w.heals = append(w.heals, f) }
	o := observation{rules: map[int][]*armnetwork.SecurityRule{}, present: map[string]*armnetwork.SecurityRule{}, bypassing: map[string]bool{}}
	for i := range nsgNames {
		g, err := w.getNSG(i)
		if err != nil {
			return []string{fmt.Sprintf("read %s: %v", nsgNames[i], err)}
		}
		o.rules[i] = g.Properties.SecurityRules
		for _, r := range g.Properties.SecurityRules {
			if isGrantRule(*r.Name) {
				o.present[*r.Name] = r
			}
		}
	}
	var err error
	if o.providerLog, err = readAudit(w.providerAudit); err != nil {
		return []string{"provider audit log: " + err.Error()}
	}
	if o.jitdLog, err = readAudit(w.jitdAudit); err != nil {
		return []string{"jitd audit log: " + err.Error()}
	}
	st := w.state()
	for _, in := range st {
		if in.Type != "jit_policy" {
			continue
		}
		l, _ := in.Attributes["bypassing_rules"].([]any)
		for _, x := range l {
			m, _ := x.(map[string]any)
			o.bypassing[str(m["name"])] = true
		}
	}

	opened, closed := map[string]bool{}, map[string]bool{}
	for _, e := range append(slices.Clone(o.providerLog), o.jitdLog...) {
		if e.Result != audit.ResultSuccess {
			continue
		}
		switch e.Action {
		case audit.ActionOpen:
			opened[e.RuleName] = true
		case audit.ActionClose:
			closed[e.RuleName] = true
		}
	}

	// 1. Flows: every allowed flow to a protected port is explained.
	now := w.now()
	sources := append(slices.Clone(grantSources), spareSource, wideOnlySource, outsideSource)
	for i, id := range w.ids {
		lid := strings.ToLower(id)
		for _, port := range []int{22, 3389, webPort} {
			for _, src := range sources {
				v, err := w.env.ARM.VerifyFlow([]string{id}, "Tcp", src, destination, port)
				if err != nil {
					return []string{err.Error()}
				}
				if !v.Allowed {
					continue
				}
				if port == webPort || !w.protect.nsgs[lid] || !w.protect.ports[port] {
					if isJITRule(v.RuleName) && port == webPort {
						add("%s: %s → %d/Tcp (never protected) decided by JIT rule %s", nsgNames[i], src, port, v.RuleName)
						name := v.RuleName
						heal(func() { w.revokeEverywhere(name, true) })
					}
					continue
				}
				if w.explainedByGrant(lid, src, port, now) {
					continue
				}
				if p, ok := w.foreign[fmt.Sprintf("%d/%s", i, v.RuleName)]; ok && p.mustReport {
					if w.reported(o, v.RuleName) {
						continue
					}
					add("%s: %s → %d/Tcp allowed by foreign rule %s, which no finding reports (no jitd find event, not in bypassing_rules)",
						nsgNames[i], src, port, v.RuleName)
					i, name := i, v.RuleName
					heal(func() { w.deleteRule(i, name); delete(w.foreign, fmt.Sprintf("%d/%s", i, name)) })
					continue
				}
				add("%s: %s → %d/Tcp allowed by %s (priority %d) with no active grant in its window, no exemption and no finding",
					nsgNames[i], src, port, v.RuleName, v.Priority)
				if name := v.RuleName; isGrantRule(name) {
					heal(func() { w.revokeEverywhere(name, true) })
				} else {
					heal(w.reapply)
				}
			}
		}
	}

	// 2. Foreign rules are byte-identical to what was planted; none is
	// deleted, none appears.
	for i := range nsgNames {
		have := map[string]bool{}
		for _, r := range o.rules[i] {
			if isJITRule(*r.Name) {
				continue
			}
			have[*r.Name] = true
			p, ok := w.foreign[fmt.Sprintf("%d/%s", i, *r.Name)]
			switch {
			case !ok:
				add("%s: unknown non-JIT rule %s appeared", nsgNames[i], *r.Name)
				i, name := i, *r.Name
				heal(func() { w.recordForeign(i, name, false) })
			case ruleJSON(r) != p.json:
				add("%s: foreign rule %s changed:\n    was %s\n    now %s", nsgNames[i], *r.Name, p.json, ruleJSON(r))
				p, now := p, ruleJSON(r)
				heal(func() { p.json = now })
			}
		}
		for _, p := range w.foreign {
			if p.nsg == i && !have[p.name] {
				add("%s: foreign rule %s was deleted", nsgNames[i], p.name)
				key := fmt.Sprintf("%d/%s", i, p.name)
				heal(func() { delete(w.foreign, key) })
			}
		}
	}

	// 3. Every grant rule on an NSG is known to state (or was left by a
	// state rm the suite did, or has expired and waits for jitd).
	inState := map[string]map[string]any{}
	w.stateName = map[string]string{}
	for _, in := range st {
		if in.Type == "jit_access_grant" {
			inState[str(in.Attributes["rule_name"])] = in.Attributes
			w.stateName[str(in.Attributes["rule_name"])] = in.Name
		}
	}
	for i, id := range w.ids {
		for _, r := range o.rules[i] {
			name := *r.Name
			if !isGrantRule(name) {
				continue
			}
			a, known := inState[name]
			if known && slices.ContainsFunc(strs(a["network_security_group_ids"]), func(s string) bool { return strings.EqualFold(s, id) }) {
				continue
			}
			if w.orphans || w.resurrected[name] || w.killedRequestCovers(r, now) {
				continue
			}
			add("%s: grant rule %s is open and no grant in state holds it there (state: %v)", nsgNames[i], name, known)
			heal(func() { w.revokeEverywhere(name, false) })
		}
	}

	// 4. Liveness right after a successful apply: an active grant in state
	// has its rule on each of its NSGs, unless ended there out of band or
	// closed with an audited close (jitd closes grants over a lowered
	// maximum; a saved plan's apply does not refresh).
	if w.settled {
		for name, a := range inState {
			if str(a["status"]) != "active" || closed[name] {
				continue
			}
			r, ok := w.blockRequest(w.stateName[name])
			if !ok {
				continue
			}
			g := w.grant(r)
			for _, id := range strs(a["network_security_group_ids"]) {
				lid := strings.ToLower(id)
				if g.endedOn[lid] || g.closed || !w.protect.nsgs[lid] {
					continue
				}
				i := slices.IndexFunc(w.ids, func(s string) bool { return strings.EqualFold(s, id) })
				if i >= 0 && !slices.ContainsFunc(o.rules[i], func(r *armnetwork.SecurityRule) bool { return *r.Name == name }) {
					add("%s: grant %s is active in state but its rule is not on the NSG", nsgNames[i], name)
				}
			}
		}
	}

	// 5. The policy's guard and deny-all rules are on every NSG it protects
	// (jitd restores them when some are deleted).
	if len(w.protect.ruleNames) > 0 {
		for i, id := range w.ids {
			if !w.protect.nsgs[strings.ToLower(id)] {
				continue
			}
			for _, rn := range w.protect.ruleNames {
				if !slices.ContainsFunc(o.rules[i], func(r *armnetwork.SecurityRule) bool { return *r.Name == rn }) {
					add("%s: policy rule %s is missing", nsgNames[i], rn)
					heal(w.reapply)
				}
			}
		}
	}

	// 6. Every open and close is audited.
	for name, src := range o.present {
		if !opened[name] && !w.seen[name] && !w.killedRequestCovers(src, now) {
			add("grant rule %s is open with no audited open", name)
			heal(func() { w.seen[name] = true })
		}
	}
	for name := range w.seen {
		if o.present[name] == nil && !w.gone[name] && !closed[name] && w.killedStep {
			w.gone[name] = true // closed by a provider killed before its audit event
			continue
		}
		if o.present[name] == nil && !w.gone[name] && !closed[name] {
			add("grant rule %s was closed with no audited close", name)
			heal(func() { w.gone[name] = true })
		}
	}
	if len(problems) == 0 {
		for name := range o.present {
			w.seen[name] = true
		}
	}
	return problems
}

// explainedByGrant: a request for src covering port opened, its one window
// has not ended, and it has not ended early on this NSG.
func (w *world) explainedByGrant(lid, src string, port int, now time.Time) bool {
	for _, g := range w.grants {
		if g.req.Source != src || !slices.Contains(g.req.Ports, port) || g.firstOpen.IsZero() || g.closed || g.endedOn[lid] {
			continue
		}
		if !now.After(g.windowEnd()) {
			return true
		}
	}
	return false
}

// revokeEverywhere deletes a grant rule on every NSG, as an operator
// cleaning up would: the model ends its request there.
func (w *world) revokeEverywhere(name string, endModel bool) {
	for i, id := range w.ids {
		if w.deleteRule(i, name) && endModel {
			if k, ok := w.ruleKey[name]; ok {
				w.grants[k].endedOn[strings.ToLower(id)] = true
			}
		}
	}
	w.gone[name] = true
}

// reapply runs terraform apply once, as an operator would to put the
// policy's rules back.
func (w *world) reapply() {
	if w.healedApply {
		return
	}
	w.healedApply = true
	if _, err := w.apply(); err != nil {
		w.t.Logf("heal: apply: %v", err)
	}
}

// heal acts on the last evaluation's problems so that a run can go on
// after a violation (JIT_LIFECYCLE_CONTINUE=1): grant rules nothing
// explains are deleted, unreported foreign rules deleted, missing policy
// rules re-applied, changed foreign rules and unaudited events accepted.
func (w *world) heal() {
	hs := w.heals
	w.healedApply, w.settled = false, false
	for _, h := range hs {
		h()
	}
}

// killedRequestCovers: r opens the source of a request whose terraform was
// SIGKILLed, inside that request's window.
func (w *world) killedRequestCovers(r *armnetwork.SecurityRule, now time.Time) bool {
	if r.Properties == nil {
		return false
	}
	var sources []string
	if p := r.Properties.SourceAddressPrefix; p != nil {
		sources = append(sources, *p)
	}
	for _, p := range r.Properties.SourceAddressPrefixes {
		sources = append(sources, *p)
	}
	for _, g := range w.grants {
		if g.killed && slices.Contains(sources, g.req.Source) && !now.After(g.windowEnd()) {
			return true
		}
	}
	return false
}

// reported: jitd has a finding naming the rule, or the policy lists it in
// bypassing_rules.
func (w *world) reported(o observation, name string) bool {
	if o.bypassing[name] {
		return true
	}
	for _, e := range o.jitdLog {
		if e.Action == audit.ActionFind && e.RuleName == name {
			return true
		}
	}
	return false
}

func isJITRule(name string) bool { return strings.HasPrefix(name, "jit-") }

func isGrantRule(name string) bool { return isJITRule(name) && strings.Contains(name, "-g-") }

// tail is for failure messages.
var _ = testproc.Tail
