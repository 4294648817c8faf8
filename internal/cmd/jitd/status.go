package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ExitAttention is `jitd status`'s exit code when the status was read
// completely and something needs attention (standing access, a bypass, a
// partial, malformed or missing policy, sessions not ended, a JIT rule jitd
// closes). The same code as `jitd scan`'s exposures.
const ExitAttention = ExitFindings

const statusAbout = `
Shows who can reach what through the JIT policies of the network security
groups in the scope, now: per policy, NSG and protected port, the active
grants (grant id, requester, source, ports, expiry, time left), the rules
that give standing access or bypass the policy, partial, malformed and
missing policies, and whether live sessions are ended at expiry. Grants are
judged as jitd judges them: one jitd closes is shown with the reason.
It reads every NSG in scope (no write); it never says that nothing is open
unless it read them all. Credentials come from the ARM_* environment
variables, as for the provider.

Filters: --policy NAME, --requester WHO (the view only; every NSG in scope
is still read); --nsg ID narrows the scope itself, as for jitd scan.
`

type statusOptions struct {
	subscriptions, resourceGroups, nsgs listFlag
	policy, requester                   string
	output                              string
	concurrency                         int
	noRestore                           bool
	azure                               azureFlags
}

// statusFlags defines `jitd status`'s flags on a new flag set.
func statusFlags(o *statusOptions) *flag.FlagSet {
	fs := newFlagSet("status")
	fs.Var(&o.subscriptions, "subscription", "read every NSG of this subscription id (repeatable)")
	fs.Var(&o.resourceGroups, "resource-group", "read every NSG of this resource group: <subscription id>/<name>, or a name in the default subscription (repeatable)")
	fs.Var(&o.nsgs, "nsg", "read this NSG, by resource id (repeatable)")
	fs.StringVar(&o.policy, "policy", "", "show only this policy")
	fs.StringVar(&o.requester, "requester", "", "show only this requester's grants")
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	fs.BoolFunc("json", "same as --output json", func(string) error { o.output = "json"; return nil })
	fs.IntVar(&o.concurrency, "concurrency", 8, "NSGs read at once")
	fs.BoolVar(&o.noRestore, "no-restore", false, "judge grants as a jitd running with --no-restore does (grants under a partial policy are closed rather than kept)")
	o.azure.register(fs)
	return fs
}

func parseStatusFlags(args []string) (statusOptions, error) {
	var o statusOptions
	fs := statusFlags(&o)
	return o, parseReadFlags(fs, args, &o.output, &o.concurrency)
}

// statusClient is what `jitd status` needs of *azure.Client.
type statusClient interface {
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
	FlushConnection(ctx context.Context, nsgID string) (bool, error)
	AdminRules(ctx context.Context, nsgID string) ([]jit.AdminRule, error)
}

// runStatus is `jitd status`.
func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseStatusFlags(args)
	if err != nil {
		return err
	}
	client, sc, err := o.azure.scope(ctx, getenv, o.subscriptions, o.resourceGroups, o.nsgs)
	if err != nil {
		return err
	}
	st := readStatus(ctx, sc, client, o, time.Now, stderr)
	if err := writeStatus(stdout, st, o.output); err != nil {
		return err
	}
	return statusVerdict(st)
}

// statusVerdict is `jitd status`'s exit: 1 when incomplete, ExitAttention
// when something needs attention.
func statusVerdict(st daemon.Status) error {
	if !st.Complete {
		return fmt.Errorf("the status is incomplete: %d of %d NSG(s) in scope read, %d error(s):\n%s",
			st.NSGsRead, st.NSGsInScope, len(st.Errors), strings.Join(st.Errors, "\n"))
	}
	if st.NeedsAttention() {
		return &exitCodeError{code: ExitAttention, msg: fmt.Sprintf("%d finding(s) need attention", len(st.Findings))}
	}
	return nil
}

// readStatus reads every NSG of the scope, at most o.concurrency at once
// (and flushConnection where a policy ends sessions at expiry), and builds
// the status.
func readStatus(ctx context.Context, sc *scope, client statusClient, o statusOptions, now func() time.Time, stderr io.Writer) daemon.Status {
	var scopeErrs []string
	ids, err := sc.NSGIDs(ctx)
	if err != nil {
		scopeErrs = append(scopeErrs, err.Error())
	}
	reads := make([]daemon.NSGRead, len(ids))
	var warnMu sync.Mutex
	var warnings []string
	forEachNSG(ctx, ids, o.concurrency, func(ctx context.Context, i int, id string) {
		reads[i] = daemon.NSGRead{ID: id}
		rules, err := client.ListRules(ctx, id)
		if err != nil {
			reads[i].Err = err.Error()
			return
		}
		reads[i].Rules, reads[i].ReadAt = rules, now()
		view := jit.ReadNSG(rules)
		if len(view.Policies) > 0 {
			admin, err := client.AdminRules(ctx, id)
			if err != nil {
				// The NSGs were read; what admin rules do to them is
				// not known, and the status says so.
				warnMu.Lock()
				warnings = append(warnings, fmt.Sprintf("the security admin rules in effect for %s could not be read, so "+
					"admin-rule overrides there are not shown: %v", id, err))
				warnMu.Unlock()
			} else {
				reads[i].AdminRules = admin
			}
		}
		if daemon.EndsSessions(view) {
			on, err := client.FlushConnection(ctx, id)
			if err != nil {
				// Shown as unknown; the rest of the status stands.
				return
			}
			reads[i].FlushConnection = &on
		}
	}, func(i int, id string, err error) { reads[i] = daemon.NSGRead{ID: id, Err: err.Error()} })
	slices.Sort(warnings)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return daemon.BuildStatus(reads, daemon.StatusOptions{Now: now(), Restore: !o.noRestore, InScope: len(ids), ScopeErrors: scopeErrs,
		Filter: daemon.StatusFilter{Policy: o.policy, Requester: o.requester}})
}

// writeStatus writes the status as a table or as JSON.
func writeStatus(w io.Writer, st daemon.Status, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("writing the status: %w", err)
		}
		return nil
	}
	var b strings.Builder
	if len(st.Policies) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "POLICY\tNSG\tPORT\tGRANT\tREQUESTER\tSOURCE\tOPENED\tEXPIRES\tLEFT\tSTATE")
		for _, p := range st.Policies {
			for _, n := range p.NSGs {
				nsg := shortNSG(n.NSGID)
				for _, pt := range n.Ports {
					for _, g := range pt.Grants {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tunknown\t%s\t%s\t%s\n", clean(p.Name), clean(nsg), clean(pt.Port), clean(g.ID),
							clean(g.Requester), clean(g.Source), g.ExpiresAt.UTC().Format(time.RFC3339), left(g.TimeLeft), grantState(g))
					}
					if len(pt.Grants) == 0 {
						fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\tno grant\n", clean(p.Name), clean(nsg), clean(pt.Port))
					}
					for _, r := range pt.StandingAccess {
						fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t%s\t-\t-\t-\tstanding access: rule %s\n", clean(p.Name), clean(nsg), clean(pt.Port),
							clean(strings.Join(r.Sources, ",")), clean(r.Name))
					}
					for _, r := range pt.Bypasses {
						fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t%s\t-\t-\t-\tbypass: rule %s\n", clean(p.Name), clean(nsg), clean(pt.Port),
							clean(strings.Join(r.Sources, ",")), clean(r.Name))
					}
					for _, a := range pt.AdminRuleOverrides {
						fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\tadmin rule %s: %s\n", clean(p.Name), clean(nsg), clean(pt.Port),
							clean(a.Name), clean(a.Action))
					}
				}
				for _, g := range n.OtherGrants {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tunknown\t%s\t%s\t%s\n", clean(p.Name), clean(nsg), clean(strings.Join(g.Ports, ",")),
						clean(g.ID), clean(g.Requester), clean(g.Source), g.ExpiresAt.UTC().Format(time.RFC3339), left(g.TimeLeft), grantState(g))
				}
			}
		}
		_ = tw.Flush()
		b.WriteString("\n")
		for _, p := range st.Policies {
			for _, n := range p.NSGs {
				fmt.Fprintf(&b, "%s on %s: %s", clean(p.Name), clean(shortNSG(n.NSGID)), n.State)
				if n.Problem != "" {
					fmt.Fprintf(&b, " (%s)", clean(n.Problem))
				}
				fmt.Fprintf(&b, "; sessions ended at expiry: %s (%s)", n.SessionsEnded, clean(n.SessionsDetail))
				if n.Stale != "" {
					fmt.Fprintf(&b, "; as read at %s, the latest read failed", n.ReadAt.UTC().Format(time.RFC3339))
				}
				b.WriteString("\n")
			}
		}
		b.WriteString("\n")
	}
	if len(st.Findings) > 0 {
		b.WriteString("Needs attention:\n")
		for _, f := range st.Findings {
			fmt.Fprintf(&b, "  %s %s", clean(shortNSG(f.NSGID)), f.Kind)
			if f.Policy != "" {
				fmt.Fprintf(&b, " policy %s", clean(f.Policy))
			}
			if f.Rule != "" {
				fmt.Fprintf(&b, " rule %s", clean(f.Rule))
			}
			fmt.Fprintf(&b, ": %s\n", clean(f.Detail))
		}
		b.WriteString("\n")
	}
	next := ""
	if st.NextExpiry != nil {
		next = ", next expiry " + st.NextExpiry.UTC().Format(time.RFC3339)
	}
	filtered := ""
	if st.Filter.Policy != "" || st.Filter.Requester != "" {
		filtered = " (filtered)"
	}
	switch {
	case !st.Complete:
		fmt.Fprintf(&b, "INCOMPLETE: %d of %d NSG(s) in scope read; what is shown is not everything that is open.\n", st.NSGsRead, st.NSGsInScope)
	case st.ActiveGrants == 0 && len(st.Findings) == 0:
		fmt.Fprintf(&b, "%d NSG(s) read: no grant is open and nothing needs attention%s.\n", st.NSGsRead, filtered)
	default:
		fmt.Fprintf(&b, "%d NSG(s) read: %d active grant(s)%s; %d finding(s) need attention%s.\n", st.NSGsRead, st.ActiveGrants, next,
			len(st.Findings), filtered)
	}
	for _, e := range st.Errors {
		fmt.Fprintf(&b, "error: %s\n", clean(e))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	return nil
}

func grantState(g daemon.GrantStatus) string {
	if g.Closing != "" {
		return "closing: " + g.Closing
	}
	return "open"
}

func left(secs int64) string {
	if secs <= 0 {
		return "expired"
	}
	return (time.Duration(secs) * time.Second).String()
}

// clean makes untrusted text safe for a terminal and a table: a string
// with control characters (escape sequences, tabs, newlines) is printed
// quoted, with them escaped.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) < 0 {
		return cmp.Or(s, "-")
	}
	return strconv.Quote(s)
}
