package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// ExitMigrationRefused is `jitd migrate`'s exit code when the input cannot
// be migrated (bad input, an active Defender request) or a step of the
// cutover would open a protected port: nothing was written. It is
// ExitFindings: the command ran completely and found what blocks it.
const ExitMigrationRefused = ExitFindings

const migrateAbout = `
Moves Microsoft Defender for Cloud just-in-time VM access to jit policies.
Reads Defender's JIT policies in the scope, maps each VM to its network
interfaces and their NSGs (NIC and subnet level), and writes into --out:

  jit_policies.tf   a jit_policy per VM and set of allowed sources, with an
                    import block where the policy already exists on the NSGs
  CUTOVER.md        the cutover, step by step, with the names of the rules

Before writing, it judges the cutover's steps with the NSG evaluator (now,
after terraform apply beside Defender's rules, after Defender is gone) and
refuses to write when a protected port would be open to the Internet at any
of them, or when the input cannot be migrated (a VM without NSGs, a port a
jit_policy cannot express, no free priorities for a band, a Defender
request active right now). Then nothing is written.

With --check it writes nothing: it verifies with Network Watcher's IP flow
verify that every protected port is closed to the Internet now, judges the
steps still ahead, and exits 3 when any would be open. Run it before each
step of the cutover and after the last.
`

// migrateOptions are `jitd migrate defender`'s parsed flags.
type migrateOptions struct {
	subscription, resourceGroup, out string
	check                            bool
	azure                            azureFlags
}

func migrateFlags(o *migrateOptions) *flag.FlagSet {
	fs := newFlagSet("migrate defender")
	fs.StringVar(&o.subscription, "subscription", "", "subscription id whose Defender JIT policies to migrate (default $"+azure.EnvSubscriptionID+")")
	fs.StringVar(&o.resourceGroup, "resource-group", "", "only the Defender JIT policies of this resource group")
	fs.StringVar(&o.out, "out", "", "directory to create with the jit policies and the cutover plan (must not exist, or be empty)")
	fs.BoolVar(&o.check, "check", false, "write nothing: verify with Network Watcher that the protected ports are closed to the Internet now, and judge the steps ahead")
	o.azure.register(fs)
	return fs
}

func parseMigrateFlags(args []string) (migrateOptions, error) {
	var o migrateOptions
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		return o, flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "defender" {
		if len(args) == 0 {
			return o, usageErrorf("name what to migrate from: jitd migrate defender")
		}
		return o, usageErrorf("unknown source %q: the one supported is defender", args[0])
	}
	fs := migrateFlags(&o)
	if err := parseArgs(fs, args[1:], 0); err != nil {
		return o, err
	}
	switch {
	case !o.check && o.out == "":
		return o, usageErrorf("--out is required (or --check)")
	case o.check && o.out != "":
		return o, usageErrorf("--check writes nothing: leave out --out")
	}
	return o, nil
}

// migrationSource is what migrate reads through (*azure.Client).
type migrationSource interface {
	DefenderPolicies(ctx context.Context, subscriptionID, resourceGroup string) ([]jit.DefenderPolicy, error)
	ListRules(ctx context.Context, nsgID string) ([]jit.SecurityRule, error)
	VerifyMigrationFlow(ctx context.Context, f azure.MigrationFlow) (azure.MigrationFlowVerdict, error)
}

// runMigrate is `jitd migrate`.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseMigrateFlags(args)
	if err != nil {
		return err
	}
	client, cfg, err := o.azure.client(ctx, getenv)
	if err != nil {
		return err
	}
	if o.subscription == "" {
		o.subscription = cfg.SubscriptionID
	}
	if o.subscription == "" {
		return usageErrorf("no subscription: give --subscription or set %s", azure.EnvSubscriptionID)
	}
	return migrate(ctx, client, o, jit.ClockFromEnv(getenv).Now(), stdout, stderr)
}

func migrate(ctx context.Context, src migrationSource, o migrateOptions, now time.Time, stdout, stderr io.Writer) error {
	start := time.Now()
	policies, err := src.DefenderPolicies(ctx, o.subscription, o.resourceGroup)
	if err != nil {
		return err
	}
	if len(policies) == 0 {
		return &exitCodeError{code: ExitMigrationRefused, msg: "no Defender for Cloud JIT policy in the scope: nothing to migrate, nothing written"}
	}
	rules := map[string][]jit.SecurityRule{}
	for _, p := range policies {
		for _, vm := range p.VMs {
			for _, nic := range vm.NICs {
				for _, id := range nic.NSGIDs {
					if _, ok := rules[id]; ok {
						continue
					}
					rs, err := src.ListRules(ctx, id)
					if err != nil {
						return fmt.Errorf("read the rules of %s: %w", id, err)
					}
					rules[id] = rs
				}
			}
		}
	}
	m, err := jit.PlanMigration(jit.MigrationInput{Policies: policies, Rules: rules, Now: now})
	if err != nil {
		fmt.Fprintln(stderr, "jitd migrate defender: cannot migrate; nothing written:")
		for _, e := range jit.MigrationErrors(err) {
			fmt.Fprintf(stderr, "  - %s: %s\n", e.Subject, e.Message)
		}
		return &exitCodeError{code: ExitMigrationRefused, msg: fmt.Sprintf("%d problem(s) in the input; nothing written", len(jit.MigrationErrors(err)))}
	}
	results := m.CheckCutover(rules)
	open := 0
	for _, r := range results {
		if r.Allowed {
			open++
		}
	}
	if o.check {
		return checkMigration(ctx, src, m, results, stdout)
	}
	if open > 0 {
		writeStepReport(stderr, results, true)
		return &exitCodeError{code: ExitMigrationRefused, msg: fmt.Sprintf("%d flow(s) from the Internet to a protected port would be allowed during the cutover; nothing written", open)}
	}
	if err := writeDirAtomically(o.out, migrationFiles(m, o)); err != nil {
		return err
	}
	imports := 0
	for _, p := range m.Policies {
		if p.Import {
			imports++
		}
	}
	fmt.Fprintf(stdout, "Wrote %d jit_policy block(s) (%d to import) for %d Defender JIT policy(ies) into %s, with CUTOVER.md.\n",
		len(m.Policies), imports, len(policies), o.out)
	fmt.Fprintf(stdout, "Every protected port stays closed to the Internet at each step (%d flows judged). Read %s next.\n",
		len(results), filepath.Join(o.out, "CUTOVER.md"))
	fmt.Fprintf(stdout, "Took %s.\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkMigration verifies the ports closed now with Network Watcher and
// reports the steps ahead as judged by the evaluator.
func checkMigration(ctx context.Context, src migrationSource, m jit.Migration, results []jit.CutoverResult, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tFLOW\tVERDICT\tRULE\tBY")
	open := 0
	for _, pr := range m.CutoverProbes() {
		v, err := src.VerifyMigrationFlow(ctx, azure.MigrationFlow{
			VMID: pr.VMID, NICID: pr.NIC.ID, Protocol: strings.ToUpper(string(pr.Protocol)), Source: pr.Source,
			Address: pr.NIC.Addresses[0], Port: pr.Port.Number,
		})
		if err != nil {
			return fmt.Errorf("verify %s: %w", pr, err)
		}
		if v.Allowed {
			open++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tNetwork Watcher\n", jit.StepNow, pr, verdict(v.Allowed), v.Rule)
	}
	for _, r := range results {
		if r.Step == jit.StepNow {
			continue
		}
		if r.Allowed {
			open++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tevaluated\n", r.Step, r.CutoverProbe, verdict(r.Allowed), r.Rule)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if open > 0 {
		return &exitCodeError{code: ExitMigrationRefused, msg: fmt.Sprintf("%d flow(s) from the Internet to a protected port are or would be allowed: do not go on", open)}
	}
	fmt.Fprintln(stdout, "Every protected port is closed to the Internet now and at every step ahead.")
	return nil
}

func verdict(allowed bool) string {
	if allowed {
		return "OPEN"
	}
	return "closed"
}

func writeStepReport(w io.Writer, results []jit.CutoverResult, onlyOpen bool) {
	for _, r := range results {
		if onlyOpen && !r.Allowed {
			continue
		}
		fmt.Fprintf(w, "  - %s: %s is %s (rule %s)\n", r.Step, r.CutoverProbe, verdict(r.Allowed), r.Rule)
	}
}

// writeDirAtomically writes files into a new directory beside dir and
// renames it to dir, so that dir appears complete or not at all. dir must
// not exist, or be an empty directory.
func writeDirAtomically(dir string, files map[string][]byte) error {
	if entries, err := os.ReadDir(dir); err == nil {
		if len(entries) > 0 {
			return &exitCodeError{code: ExitMigrationRefused, msg: fmt.Sprintf("--out %s exists and is not empty; nothing written", dir)}
		}
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("--out %s: %w", dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(tmp, name), files[name], 0o644); err != nil { //nolint:gosec // Terraform files are not secret
			_ = os.RemoveAll(tmp)
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil { //nolint:gosec // a workspace directory
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	return nil
}
