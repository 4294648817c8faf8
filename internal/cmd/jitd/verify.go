package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ExitMismatch is `jitd verify`'s exit code when Azure's answer differs
// from what the policies and grants require: ExitFindings, as for `jitd
// scan`'s exposures and `jitd status`'s attention.
const ExitMismatch = ExitFindings

const verifyAbout = `
Proves what the JIT policies promise with Azure Network Watcher's IP flow
verify, which judges a flow through every layer Azure applies (security
admin rules, the subnet's NSG, the NIC's NSG) and names the rule that
decides. For every NSG in the scope and every VM behind it that a policy
protects, it asks, for each protected port:
  - each active grant's source (the first address of its prefix): must be
    allowed;
  - an address outside the policy's allowed sources (the first of
    192.0.2.1, 198.51.100.1, 203.0.113.1 / 2001:db8::1, 3fff::1 that no
    allowed source contains): must be denied;
  - an allowed address with no grant (the first of the same addresses that
    an allowed source contains and no grant does, else the first address
    of an allowed source that no grant contains): must be denied.
A probe with no such address is skipped, and said so. Every answer that
differs is reported with the rule Azure names. It writes nothing.

Needs a network watcher in each region of the VMs (Azure enables one,
NetworkWatcher_<region> in NetworkWatcherRG) and, besides reading NSGs:
Microsoft.Network/networkWatchers/read, networkWatchers/ipFlowVerify/action,
networkInterfaces/read, virtualNetworks/subnets/read and
Microsoft.Compute/virtualMachines/read. Credentials come from the ARM_*
environment variables, as for the provider.
`

type verifyOptions struct {
	subscriptions, resourceGroups, nsgs listFlag
	output                              string
	concurrency                         int
	noRestore                           bool
	azure                               azureFlags
}

func verifyFlags(o *verifyOptions) *flag.FlagSet {
	fs := newFlagSet("verify")
	fs.Var(&o.subscriptions, "subscription", "verify every NSG of this subscription id (repeatable)")
	fs.Var(&o.resourceGroups, "resource-group", "verify every NSG of this resource group: <subscription id>/<name>, or a name in the default subscription (repeatable)")
	fs.Var(&o.nsgs, "nsg", "verify this NSG, by resource id (repeatable)")
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	fs.BoolFunc("json", "same as --output json", func(string) error { o.output = "json"; return nil })
	fs.IntVar(&o.concurrency, "concurrency", 8, "NSGs read, and IP flow verify questions asked, at once")
	fs.BoolVar(&o.noRestore, "no-restore", false, "judge grants as a jitd running with --no-restore does (grants under a partial policy are closed rather than kept)")
	o.azure.register(fs)
	return fs
}

func parseVerifyFlags(args []string) (verifyOptions, error) {
	var o verifyOptions
	fs := verifyFlags(&o)
	return o, parseReadFlags(fs, args, &o.output, &o.concurrency)
}

// verifyReport is `jitd verify --output json`. Field names are stable.
type verifyReport struct {
	NSGsInScope int `json:"nsgs_in_scope"`
	NSGsRead    int `json:"nsgs_read"`
	Probes      int `json:"probes"`
	// Mismatches are the probes whose answer differs from the one
	// required, each with the rule Azure names.
	Mismatches []daemon.ProbeResult     `json:"mismatches"`
	NSGs       []daemon.NSGVerification `json:"nsgs"`
	Errors     []string                 `json:"errors"`
	// Complete is true when every NSG in scope was read and every probe
	// answered.
	Complete bool `json:"complete"`
}

// verifyReader is what `jitd verify` needs of Azure.
type verifyReader interface {
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
}

// runVerify is `jitd verify`.
func runVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseVerifyFlags(args)
	if err != nil {
		return err
	}
	client, sc, err := o.azure.scope(ctx, getenv, o.subscriptions, o.resourceGroups, o.nsgs)
	if err != nil {
		return err
	}
	rep := verifyScope(ctx, sc, client, azure.NewVerifier(client), o, time.Now)
	if err := writeVerifyReport(stdout, rep, o.output); err != nil {
		return err
	}
	return verifyVerdict(rep)
}

// verifyVerdict is `jitd verify`'s exit: 1 when incomplete, ExitMismatch
// when an answer differs.
func verifyVerdict(rep verifyReport) error {
	if !rep.Complete {
		return fmt.Errorf("the verification is incomplete: %d of %d NSG(s) in scope verified, %d error(s):\n%s",
			rep.NSGsRead, rep.NSGsInScope, len(rep.Errors), strings.Join(rep.Errors, "\n"))
	}
	if len(rep.Mismatches) > 0 {
		return &exitCodeError{code: ExitMismatch, msg: fmt.Sprintf("%d of %d IP flow verify answer(s) differ from what the policies require",
			len(rep.Mismatches), rep.Probes)}
	}
	return nil
}

// verifyScope reads every NSG of the scope and verifies it: at most
// o.concurrency NSGs read at once, and at most o.concurrency questions
// asked at once across all of them.
func verifyScope(ctx context.Context, sc *scope, rd verifyReader, vc daemon.VerifyClient, o verifyOptions, now func() time.Time) verifyReport {
	rep := verifyReport{Mismatches: []daemon.ProbeResult{}, NSGs: []daemon.NSGVerification{}, Errors: []string{}}
	ids, err := sc.NSGIDs(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	rep.NSGsInScope = len(ids)
	results := make([]daemon.NSGVerification, len(ids))
	read := make([]bool, len(ids))
	probeLimit := make(chan struct{}, o.concurrency)
	forEachNSG(ctx, ids, o.concurrency, func(ctx context.Context, i int, id string) {
		rules, err := rd.ListRules(ctx, id)
		if err != nil {
			results[i] = daemon.NSGVerification{NSGID: id, Errors: []string{fmt.Sprintf("%s: %v", id, err)}}
			return
		}
		read[i] = true
		policies, active := daemon.VerifyInputs(id, rules, now(), !o.noRestore)
		results[i] = daemon.VerifyNSG(ctx, vc, id, policies, active, probeLimit)
	}, func(i int, id string, err error) {
		results[i] = daemon.NSGVerification{NSGID: id, Errors: []string{fmt.Sprintf("%s: %v", id, err)}}
	})
	for i, v := range results {
		if read[i] {
			rep.NSGsRead++
		}
		if len(v.Probes) == 0 && len(v.Errors) == 0 && len(v.Skipped) == 0 && len(v.Unverifiable) == 0 {
			continue // no policy, nothing behind it to ask about
		}
		rep.NSGs = append(rep.NSGs, v)
		rep.Probes += len(v.Probes)
		rep.Mismatches = append(rep.Mismatches, v.Mismatches()...)
		rep.Errors = append(rep.Errors, v.Errors...)
	}
	rep.Complete = len(rep.Errors) == 0 && rep.NSGsRead == rep.NSGsInScope
	return rep
}

// writeVerifyReport writes the report as a table or as JSON.
func writeVerifyReport(w io.Writer, rep verifyReport, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing the verification: %w", err)
		}
		return nil
	}
	var b strings.Builder
	if rep.Probes > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NSG\tPOLICY\tVM\tPORT\tPROBE\tSOURCE\tDESTINATION\tWANT\tGOT\tRULE\tRESULT")
		for _, v := range rep.NSGs {
			for _, p := range v.Probes {
				kind := p.Kind
				if p.GrantID != "" {
					kind += " " + p.GrantID
				}
				result := "ok"
				switch {
				case p.Error != "":
					result = "error"
				case p.Mismatch():
					result = "MISMATCH"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(shortNSG(v.NSGID)), clean(p.Policy), clean(lastPart(p.VMID)),
					p.Port, clean(kind), p.Source, p.Dest, p.Expect, clean(p.Access), clean(p.RuleName), result)
			}
		}
		_ = tw.Flush()
		b.WriteString("\n")
	}
	if len(rep.Mismatches) > 0 {
		b.WriteString("Mismatches:\n")
		for _, p := range rep.Mismatches {
			fmt.Fprintf(&b, "  %s: %s\n", clean(shortNSG(p.NSGID)), clean(p.Describe()))
		}
		b.WriteString("\n")
	}
	for _, v := range rep.NSGs {
		for _, s := range v.Skipped {
			fmt.Fprintf(&b, "skipped on %s: %s\n", clean(shortNSG(v.NSGID)), clean(s))
		}
		for _, u := range v.Unverifiable {
			fmt.Fprintf(&b, "not verifiable behind %s (IP flow verify asks about VMs): %s\n", clean(shortNSG(v.NSGID)), clean(u))
		}
	}
	switch {
	case !rep.Complete:
		fmt.Fprintf(&b, "INCOMPLETE: %d of %d NSG(s) in scope read, %d probe(s) asked, %d mismatch(es); what is not shown was not verified.\n",
			rep.NSGsRead, rep.NSGsInScope, rep.Probes, len(rep.Mismatches))
	default:
		fmt.Fprintf(&b, "%d NSG(s) read, %d with a policy: %d probe(s) asked, %d mismatch(es).\n", rep.NSGsRead, len(rep.NSGs), rep.Probes, len(rep.Mismatches))
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(&b, "error: %s\n", clean(e))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the verification: %w", err)
	}
	return nil
}

// lastPart is the name at the end of a resource id.
func lastPart(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }
