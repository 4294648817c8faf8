package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
	"github.com/jitaccess/terraform-provider-jit/internal/scan"
)

// ExitExposed is `jitd scan`'s exit code when a management port is open to
// the Internet: distinct from 1 (the scan failed) so that CI can gate on it.
const ExitExposed = ExitFindings

const scanAbout = `
Lists every network security group in the scope whose inbound rules let a
management port in from the Internet (any public source address, with
Azure's first-match semantics), with the rule responsible and whether a JIT
policy on that NSG covers the port, and every rule that gives a JIT
policy's allowed sources standing access to a port it protects (no grant
needed). Credentials come from the ARM_* environment variables, as for the
provider.

It never says that nothing is open unless it read every NSG in scope: when
a part of the scope or an NSG cannot be read it prints what it found, says
how much it could not read, and exits 1.
`

// scanOptions are `jitd scan`'s parsed flags.
type scanOptions struct {
	subscriptions, resourceGroups, nsgs listFlag
	ports                               []uint16
	destinations                        []netip.Addr
	output                              string
	concurrency                         int
	noAdminRules                        bool
	azure                               azureFlags
}

// adminReader reads the security admin rules in effect for an NSG's
// virtual networks (*azure.Client does).
type adminReader interface {
	AdminRules(ctx context.Context, nsgID string) ([]jit.AdminRule, error)
}

// scanFlags defines `jitd scan`'s flags on a new flag set.
func scanFlags(o *scanOptions) *flag.FlagSet {
	o.ports = slices.Clone(scan.DefaultPorts)
	fs := newFlagSet("scan")
	fs.Var(&o.subscriptions, "subscription", "scan every NSG of this subscription id (repeatable)")
	fs.Var(&o.resourceGroups, "resource-group", "scan every NSG of this resource group: <subscription id>/<name>, or a name in the default subscription (repeatable)")
	fs.Var(&o.nsgs, "nsg", "scan this NSG, by resource id (repeatable)")
	fs.Func("ports", "comma-separated TCP ports to check (default 22,3389,5985,5986)", func(v string) error {
		ports, err := parsePortList(v)
		o.ports = ports
		return err
	})
	fs.Func("destination", "also judge this VM address, besides those the rules name (repeatable)", func(v string) error {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not an IP address", v)
		}
		o.destinations = append(o.destinations, a)
		return nil
	})
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	fs.IntVar(&o.concurrency, "concurrency", 8, "NSGs read at once")
	fs.BoolVar(&o.noAdminRules, "no-admin-rules", false, "do not read the Virtual Network Manager security admin rules in effect for each NSG's virtual networks (they are judged before the NSG's rules)")
	o.azure.register(fs)
	return fs
}

func parseScanFlags(args []string) (scanOptions, error) {
	var o scanOptions
	fs := scanFlags(&o)
	return o, parseReadFlags(fs, args, &o.output, &o.concurrency)
}

// parsePortList reads "22,3389".
func parsePortList(v string) ([]uint16, error) {
	var ports []uint16
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q is not a port (1–65535)", strings.TrimSpace(s))
		}
		if !slices.Contains(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	return ports, nil
}

// scanReport is `jitd scan --output json`. Field names are stable.
type scanReport struct {
	// Complete is true when every part of the scope was listed and every
	// NSG in it read; only then does the report say that nothing is open.
	Complete    bool `json:"complete"`
	ScannedNSGs int  `json:"scanned_nsgs"`
	// UnreadNSGs were listed (or named) but could not be read;
	// UnlistedScopeParts are subscriptions and resource groups whose NSGs
	// could not be listed, so their number is not known.
	UnreadNSGs         int              `json:"unread_nsgs"`
	UnlistedScopeParts int              `json:"unlisted_scope_parts"`
	Ports              []uint16         `json:"ports"`
	Exposed            int              `json:"exposed"` // findings whose status is an exposure
	Findings           []scan.Finding   `json:"findings"`
	Protected          []scan.Protected `json:"protected"`
	Errors             []string         `json:"errors"`
}

// runScan is `jitd scan`.
func runScan(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseScanFlags(args)
	if err != nil {
		return err
	}
	_, sc, err := o.azure.scope(ctx, getenv, o.subscriptions, o.resourceGroups, o.nsgs)
	if err != nil {
		return err
	}
	rep := scanScope(ctx, sc, o, time.Now(), stderr)
	if err := writeScanReport(stdout, rep, o.output); err != nil {
		return err
	}
	return scanVerdict(rep)
}

// scanVerdict turns a report into jitd's exit: an error (1) when the scan
// is incomplete, ExitExposed when something is exposed.
func scanVerdict(rep scanReport) error {
	if !rep.Complete {
		return fmt.Errorf("the scan is incomplete: %s:\n%s", unreadSummary(rep), strings.Join(rep.Errors, "\n"))
	}
	if rep.Exposed > 0 {
		return &exitCodeError{code: ExitExposed, msg: fmt.Sprintf("%d management port finding(s) open to the Internet", rep.Exposed)}
	}
	return nil
}

// scanScope reads every NSG of the scope, at most o.concurrency at once,
// and judges each. Progress goes to progress for scopes of 50 NSGs or
// more, where a scan takes long enough to wonder.
func scanScope(ctx context.Context, sc *scope, o scanOptions, now time.Time, progress io.Writer) scanReport {
	rep := scanReport{Ports: o.ports, Findings: []scan.Finding{}, Protected: []scan.Protected{}, Errors: []string{}}
	ids, err := sc.NSGIDs(ctx)
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			rep.Errors = append(rep.Errors, e.Error())
		}
		rep.UnlistedScopeParts = len(errs)
	}
	results := make([]scan.Result, len(ids))
	errs := make([]error, len(ids))
	var (
		mu   sync.Mutex
		done int
	)
	step := max(len(ids)/10, 1)
	forEachNSG(ctx, ids, o.concurrency, func(ctx context.Context, i int, id string) {
		rules, err := sc.client.ListRules(ctx, id)
		if err != nil {
			errs[i] = err
		} else {
			so := scan.Options{Ports: o.ports, Destinations: o.destinations, Now: now}
			if ar, ok := sc.client.(adminReader); ok && !o.noAdminRules {
				admin, err := ar.AdminRules(ctx, id)
				if err != nil {
					// The NSG's own rules are still judged; what admin
					// rules do there is not known, and the scan says so.
					mu.Lock()
					fmt.Fprintf(progress, "jitd scan: warning: the security admin rules in effect for %s could not be read: %v\n", id, err)
					mu.Unlock()
				}
				so.AdminRules = admin
			}
			results[i] = scan.NSG(id, rules, so)
		}
		mu.Lock()
		defer mu.Unlock()
		if done++; len(ids) >= 50 && (done%step == 0 || done == len(ids)) {
			fmt.Fprintf(progress, "jitd scan: %d/%d NSGs read\n", done, len(ids))
		}
	}, func(i int, id string, err error) { errs[i] = fmt.Errorf("%s: %w", id, err) })
	for i := range ids {
		if errs[i] != nil {
			rep.Errors = append(rep.Errors, errs[i].Error())
			rep.UnreadNSGs++
			continue
		}
		rep.ScannedNSGs++
		rep.Findings = append(rep.Findings, results[i].Findings...)
		rep.Protected = append(rep.Protected, results[i].Protected...)
	}
	slices.SortStableFunc(rep.Findings, func(a, b scan.Finding) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.NSGID), strings.ToLower(b.NSGID)), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Priority, b.Priority))
	})
	slices.SortStableFunc(rep.Protected, func(a, b scan.Protected) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.NSGID), strings.ToLower(b.NSGID)), cmp.Compare(a.Port, b.Port))
	})
	for _, f := range rep.Findings {
		if f.Status.Exposed() {
			rep.Exposed++
		}
	}
	rep.Complete = len(rep.Errors) == 0
	return rep
}

// unreadSummary says what an incomplete scan could not read.
func unreadSummary(rep scanReport) string {
	var parts []string
	if rep.UnlistedScopeParts > 0 {
		parts = append(parts, fmt.Sprintf("%d part(s) of the scope could not be listed (how many NSGs they hold is not known)", rep.UnlistedScopeParts))
	}
	if rep.UnreadNSGs > 0 {
		parts = append(parts, fmt.Sprintf("%d NSG(s) could not be read", rep.UnreadNSGs))
	}
	return fmt.Sprintf("%d NSG(s) scanned; ", rep.ScannedNSGs) + strings.Join(parts, ", and ")
}

func writeScanReport(w io.Writer, rep scanReport, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		return nil
	}
	var b strings.Builder
	ports := make([]string, len(rep.Ports))
	for i, p := range rep.Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	if len(rep.Findings) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NSG\tPORT\tSTATUS\tRULE\tPRIORITY\tSOURCE\tEXAMPLE\tDESTINATION\tJIT POLICY")
		for _, f := range rep.Findings {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", shortNSG(f.NSGID), f.Port, f.Status, f.Rule, f.Priority,
				strings.Join(f.RuleSources, ","), f.ExampleSource, strings.Join(f.Destinations, ","), cmp.Or(f.Policy, "-"))
		}
		_ = tw.Flush()
		for _, f := range rep.Findings {
			if f.Detail != "" {
				fmt.Fprintf(&b, "  %s %d/Tcp: %s\n", shortNSG(f.NSGID), f.Port, f.Detail)
			}
		}
		b.WriteString("\n")
	}
	if len(rep.Protected) > 0 {
		b.WriteString("Closed by JIT policies:\n")
		for _, p := range rep.Protected {
			fmt.Fprintf(&b, "  %s %d/Tcp  policy %s\n", shortNSG(p.NSGID), p.Port, p.Policy)
		}
		b.WriteString("\n")
	}
	nsgs := map[string]bool{}
	standing := 0
	for _, f := range rep.Findings {
		if f.Status.Exposed() {
			nsgs[strings.ToLower(f.NSGID)] = true
		}
		if f.Status == scan.StatusStandingAccess {
			standing++
		}
	}
	switch {
	case !rep.Complete:
		// Never the all-clear: what could not be read may be open.
		fmt.Fprintf(&b, "INCOMPLETE: %s; what is shown is not everything that is open.\n", unreadSummary(rep))
		if rep.Exposed > 0 {
			fmt.Fprintf(&b, "In what was read, %d finding(s) on %d NSG(s) let the Internet reach a management port (TCP %s).\n",
				rep.Exposed, len(nsgs), strings.Join(ports, ", "))
		}
	case rep.Exposed == 0:
		fmt.Fprintf(&b, "%d NSG(s) scanned: no management port (TCP %s) is open to the Internet.\n", rep.ScannedNSGs, strings.Join(ports, ", "))
	case standing == 0:
		fmt.Fprintf(&b, "%d NSG(s) scanned: %d finding(s) on %d NSG(s) let the Internet reach a management port (TCP %s).\n",
			rep.ScannedNSGs, rep.Exposed, len(nsgs), strings.Join(ports, ", "))
	default:
		fmt.Fprintf(&b, "%d NSG(s) scanned: %d finding(s) on %d NSG(s) open a management port (TCP %s) with no grant (%d of them standing access for a JIT policy's allowed sources).\n",
			rep.ScannedNSGs, rep.Exposed, len(nsgs), strings.Join(ports, ", "), standing)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// shortNSG is "<resource group>/<name>" for the table; the JSON output
// keeps full ids.
func shortNSG(id string) string {
	if p, err := azure.ParseNSGID(id); err == nil {
		return p.ResourceGroup + "/" + p.Name
	}
	return id
}
