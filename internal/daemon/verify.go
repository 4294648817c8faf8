package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// Verification proves the promise in production: Azure Network Watcher's
// IP flow verify, which judges a flow through every layer Azure applies,
// is asked whether each active grant's source reaches the VM (it must)
// and whether an address outside the policy and an allowed address with
// no grant do (they must not). jit.PlanProbes chooses the questions;
// VerifyNSG asks them; jitd verify and the daemon's --verify report every
// answer that differs, with the rule Azure names.

// FindingVerifyMismatch: IP flow verify's answer for a probe differs from
// what the policy and its active grants require.
const FindingVerifyMismatch FindingKind = "verify_mismatch"

// VerifyClient asks Network Watcher; *azure.Verifier is one.
type VerifyClient interface {
	// Targets returns the VM network interfaces behind the NSG, and those
	// that cannot be asked about.
	Targets(ctx context.Context, nsgID string) ([]jit.VerifyTarget, []string, error)
	// VerifyIPFlow asks IP flow verify about one probe.
	VerifyIPFlow(ctx context.Context, p jit.Probe) (azure.IPFlowVerdict, error)
}

// ProbeResult is one probe and Azure's answer. Field names are the JSON of
// `jitd verify --output json`, and stable.
type ProbeResult struct {
	NSGID   string `json:"nsg_id"`
	Policy  string `json:"policy"`
	Kind    string `json:"kind"` // grant, outside, allowed_no_grant
	GrantID string `json:"grant_id,omitempty"`
	VMID    string `json:"vm_id"`
	NICID   string `json:"nic_id"`
	Source  string `json:"source"`      // the remote address asked about
	Dest    string `json:"destination"` // the VM's address
	Port    string `json:"port"`        // "22/Tcp"
	Expect  string `json:"expected"`    // Allow or Deny
	Access  string `json:"access,omitempty"`
	// RuleName is the rule that decided, as Azure names it
	// ("securityRules/<name>", "defaultSecurityRules/<name>", ...).
	RuleName string `json:"rule_name,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Mismatch reports whether Azure answered and the answer is not the one
// required.
func (r ProbeResult) Mismatch() bool { return r.Error == "" && r.Access != r.Expect }

// Describe says what a mismatch means, for logs, findings and tables.
func (r ProbeResult) Describe() string {
	var what string
	switch jit.ProbeKind(r.Kind) {
	case jit.ProbeGrant:
		what = fmt.Sprintf("grant %s's source %s cannot reach %s %s", r.GrantID, r.Source, r.Dest, r.Port)
	case jit.ProbeOutside:
		what = fmt.Sprintf("%s, outside policy %s's allowed sources, reaches %s %s", r.Source, r.Policy, r.Dest, r.Port)
	default:
		what = fmt.Sprintf("%s, an allowed source of policy %s with no grant, reaches %s %s", r.Source, r.Policy, r.Dest, r.Port)
	}
	rule := r.RuleName
	if rule == "" {
		rule = "no rule named"
	}
	return fmt.Sprintf("IP flow verify: %s (%s, must be %s; decided by %s) on VM %s", what, r.Access, r.Expect, rule, lastSegment(r.VMID))
}

func lastSegment(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }

// NSGVerification is the outcome of verifying one NSG.
type NSGVerification struct {
	NSGID  string        `json:"nsg_id"`
	Probes []ProbeResult `json:"probes"`
	// Skipped are probes that could not be chosen (no address fits), and
	// why.
	Skipped []string `json:"skipped"`
	// Unverifiable are resources behind the NSG IP flow verify cannot be
	// asked about (network interfaces no VM has, private endpoints).
	Unverifiable []string `json:"unverifiable"`
	// Errors are failures: the NSG's VMs could not be found, or a probe
	// had no answer (its ProbeResult has the error too).
	Errors []string `json:"errors"`
}

// Mismatches returns the probes whose answer differs from the one
// required.
func (v NSGVerification) Mismatches() []ProbeResult {
	var out []ProbeResult
	for _, p := range v.Probes {
		if p.Mismatch() {
			out = append(out, p)
		}
	}
	return out
}

// Findings are the mismatches as findings of kind verify_mismatch, one
// per rule, kind of probe and port (the key under which jitd reports a
// finding once while it persists).
func (v NSGVerification) Findings() []Finding {
	var out []Finding
	seen := map[string]bool{}
	for _, p := range v.Mismatches() {
		f := Finding{Kind: FindingVerifyMismatch, Policy: p.Policy,
			RuleName: strings.TrimSpace(p.RuleName + " " + p.Kind + " " + p.Port), Detail: p.Describe()}
		if !seen[f.key()] {
			seen[f.key()] = true
			out = append(out, f)
		}
	}
	return out
}

// VerifyInputs decodes what verification needs of an NSG's rules: its
// intact policies, and the grants jitd judges active on it at now (as a
// jitd that restores partial policies, unless restore is false, would).
func VerifyInputs(nsgID string, rules []jit.SecurityRule, now time.Time, restore bool) ([]jit.Policy, []jit.GrantRule) {
	plan := PlanNSG(nsgID, rules, now, PlanOptions{Restore: restore})
	return intactPolicies(rules), plan.Active
}

// intactPolicies are the policies that decode whole from the rules, by
// name.
func intactPolicies(rules []jit.SecurityRule) []jit.Policy {
	view := jit.ReadNSG(rules)
	var out []jit.Policy
	for _, name := range sortedKeys(view.Policies) {
		if dp := view.Policies[name]; dp.Problem == "" {
			out = append(out, dp.Policy)
		}
	}
	return out
}

// VerifyNSG asks IP flow verify every probe for an NSG's policies and
// active grants, at most cap(limit) at once across every caller sharing
// limit (nil: one at a time). It never stops at the first failure.
func VerifyNSG(ctx context.Context, vc VerifyClient, nsgID string, policies []jit.Policy, active []jit.GrantRule, limit chan struct{}) NSGVerification {
	out := NSGVerification{NSGID: nsgID, Probes: []ProbeResult{}, Skipped: []string{}, Unverifiable: []string{}, Errors: []string{}}
	if len(policies) == 0 {
		return out
	}
	targets, unverifiable, err := vc.Targets(ctx, nsgID)
	if err != nil {
		out.Errors = append(out.Errors, fmt.Sprintf("finding the VMs behind %s: %v", nsgID, err))
		return out
	}
	out.Unverifiable = append(out.Unverifiable, unverifiable...)
	probes, skips := jit.PlanProbes(policies, active, targets)
	if len(probes) == 0 && len(skips) == 0 {
		out.Skipped = append(out.Skipped, "no VM behind this NSG has an address its policies protect: nothing to ask")
	}
	for _, s := range skips {
		out.Skipped = append(out.Skipped, fmt.Sprintf("policy %s port %d/%s IPv%d: no %s probe: %s", s.Policy, s.Port, s.Protocol, s.Family, s.Kind, s.Reason))
	}
	if limit == nil {
		limit = make(chan struct{}, 1)
	}
	out.Probes = make([]ProbeResult, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		out.Probes[i] = ProbeResult{NSGID: nsgID, Policy: p.Policy, Kind: string(p.Kind), GrantID: p.GrantID, VMID: p.VMID, NICID: p.NICID,
			Source: p.Remote.String(), Dest: p.Local.String(), Port: p.PortString(), Expect: string(p.Expect)}
		select {
		case limit <- struct{}{}:
		case <-ctx.Done():
			out.Probes[i].Error = ctx.Err().Error()
			continue
		}
		wg.Go(func() {
			defer func() { <-limit }()
			v, err := vc.VerifyIPFlow(ctx, p)
			if err != nil {
				out.Probes[i].Error = err.Error()
				return
			}
			out.Probes[i].Access, out.Probes[i].RuleName = string(v.Access), v.RuleName
		})
	}
	wg.Wait()
	for _, p := range out.Probes {
		if p.Error != "" {
			out.Errors = append(out.Errors, fmt.Sprintf("%s %s -> %s %s: %s", p.Kind, p.Source, p.Dest, p.Port, p.Error))
		}
	}
	return out
}

// verifyFingerprint sums up what a verification of an NSG depends on:
// its rules and the grants judged active on it. The daemon verifies an
// NSG again whenever it changes: after each open, close or restore it
// performs or observes, and after any other change to the NSG's rules.
func verifyFingerprint(rules []jit.SecurityRule, active []jit.GrantRule) string {
	h := sha256.New()
	lines := make([]string, 0, len(rules)+len(active))
	for _, r := range rules {
		lines = append(lines, fmt.Sprintf("rule %q", fmt.Sprint(r)))
	}
	for _, g := range active {
		lines = append(lines, fmt.Sprintf("grant %q", g.Rule.Name))
	}
	slices.Sort(lines)
	for _, l := range lines {
		h.Write([]byte(l + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// verifyAfter verifies an NSG the daemon has just reconciled, as it left
// it, and logs and counts the outcome. ok is false when the verification
// could not be completed (it is tried again at the NSG's next reconcile).
func (d *Daemon) verifyAfter(ctx context.Context, res nsgResult) (findings []Finding, ok bool) {
	v := VerifyNSG(ctx, d.verifier, res.nsgID, intactPolicies(res.read.Rules), res.plan.Active, nil)
	for _, p := range v.Probes {
		switch {
		case p.Error != "":
			d.metrics.verifyProbes.WithLabelValues("error").Inc()
		case p.Mismatch():
			d.metrics.verifyProbes.WithLabelValues("mismatch").Inc()
		default:
			d.metrics.verifyProbes.WithLabelValues("match").Inc()
		}
	}
	if len(v.Errors) > 0 {
		if ctx.Err() == nil {
			d.metrics.errors.WithLabelValues(opVerify).Inc()
			d.log.Error("verifying with Network Watcher failed", "nsg_id", res.nsgID, "error", errors.New(strings.Join(v.Errors, "; ")))
		}
		return nil, false
	}
	d.log.Info("verified with Network Watcher", "nsg_id", res.nsgID, "probes", len(v.Probes), "mismatches", len(v.Mismatches()),
		"skipped", len(v.Skipped), "unverifiable", len(v.Unverifiable))
	return v.Findings(), true
}

// verifyRunner runs the daemon's verifications outside its loop: IP flow
// verify takes seconds per question on Azure, and a close must never wait
// for one. At most one verification per NSG is under way; its outcome is
// folded in by the loop (collectVerifications).
type verifyRunner struct {
	sem      chan struct{}   // bounds verifications at once
	inflight map[string]bool // loop state: NSGs being verified
	// latest is each NSG's latest reconcile and its fingerprint (loop
	// state): a verification of an older one is stale when it is done.
	latest               map[string]latestRead
	looping              bool // loop state: Run is running
	wg                   sync.WaitGroup
	outbox[verifyResult] // verifications done, for the loop
}

type latestRead struct {
	res nsgResult
	fp  string
}

type verifyResult struct {
	nsgID, fp string
	findings  []Finding
	ok        bool
}

func newVerifyRunner(concurrency int) verifyRunner {
	return verifyRunner{sem: make(chan struct{}, max(concurrency, 1)), inflight: map[string]bool{}, latest: map[string]latestRead{},
		outbox: newOutbox[verifyResult]()}
}

// startVerifications starts verifying, in the background, each NSG just
// reconciled whose rules or active grants differ from what its last
// complete verification saw (verifyFingerprint): after each open, close or
// restore jitd makes or sees, any other change, and its first read. Called
// by the loop.
func (d *Daemon) startVerifications(ctx context.Context, results []nsgResult) {
	if d.verifier == nil {
		return
	}
	for _, r := range results {
		if !r.listed {
			continue
		}
		fp := verifyFingerprint(r.read.Rules, r.plan.Active)
		d.verifies.latest[r.nsgID] = latestRead{res: r, fp: fp}
		// An NSG whose close write is under way is verified at its next
		// read, once the write has ended: meanwhile its rules are neither
		// as read nor as the closes leave them.
		if d.verifies.inflight[r.nsgID] || fp == d.verifyFP[r.nsgID] || len(r.read.Closing) > 0 {
			continue
		}
		d.verifies.inflight[r.nsgID] = true
		d.verifies.wg.Go(func() {
			select {
			case d.verifies.sem <- struct{}{}:
			case <-ctx.Done():
				d.verifies.deliver(verifyResult{nsgID: r.nsgID})
				return
			}
			defer func() { <-d.verifies.sem }()
			findings, ok := d.verifyAfter(ctx, r)
			d.verifies.deliver(verifyResult{nsgID: r.nsgID, fp: fp, findings: findings, ok: ok})
		})
	}
}

// collectVerifications folds in the verifications that are done: their
// mismatches become the NSG's verify_mismatch findings, new ones reported
// (audit, log, metric) and gone ones dropped. A verification of an NSG
// that has changed since is discarded and started again; a failed one is
// tried again at the NSG's next reconcile. It returns the number of new
// findings. Called by the loop.
func (d *Daemon) collectVerifications(ctx context.Context) int {
	done := d.verifies.take()
	if len(done) == 0 {
		return 0
	}
	defer d.updateGauges()
	now := d.now()
	added := 0
	for _, r := range done {
		delete(d.verifies.inflight, r.nsgID)
		if !slices.Contains(d.nsgs, r.nsgID) {
			delete(d.verifies.latest, r.nsgID)
			continue
		}
		if latest, ok := d.verifies.latest[r.nsgID]; ok && latest.fp != r.fp {
			// The NSG changed while Azure was asked (jitd closed a grant
			// there, say): the answers may be about either state. Ask
			// again about the latest.
			d.startVerifications(ctx, []nsgResult{latest.res})
			continue
		}
		if !r.ok {
			continue
		}
		d.verified[r.nsgID], d.verifyFP[r.nsgID] = r.findings, r.fp
		reported := d.reported[r.nsgID]
		if reported == nil {
			reported = map[string]Finding{}
			d.reported[r.nsgID] = reported
		}
		current := map[string]bool{}
		for _, f := range r.findings {
			k := f.key()
			current[k] = true
			if _, old := reported[k]; old {
				continue
			}
			reported[k] = f
			added++
			d.metrics.findings.WithLabelValues(string(f.Kind)).Inc()
			d.log.Warn("finding", "nsg_id", r.nsgID, "kind", string(f.Kind), "policy", f.Policy, "rule", f.RuleName, "detail", f.Detail)
			d.emit(ctx, findingEvent(now, r.nsgID, f))
		}
		for k, f := range reported {
			if f.Kind == FindingVerifyMismatch && !current[k] {
				delete(reported, k)
			}
		}
	}
	return added
}
