package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

// Exit codes of every jitd command: one table, so that the usage texts, the
// manual page and the code agree.
const (
	ExitOK      = 0
	ExitFailure = 1 // jitd failed, or could not read everything it was asked to
	ExitUsage   = 2 // the command line is wrong; nothing was read or written
	// ExitFindings: the command ran completely and found something (an
	// exposed port, a status that needs attention). Distinct from 1 so that
	// CI can tell a verdict from a failure.
	ExitFindings = 3
)

// exitCodes describe the codes for usage texts and the manual page; a
// command that can return ExitFindings says what its findings are
// (command.findings).
var exitCodes = []struct {
	code    int
	meaning string
}{
	{ExitOK, "success"},
	{ExitFailure, "failure, or incomplete: a part of the scope or an NSG could not be read (wins over 3)"},
	{ExitUsage, "usage error: unknown command or flag, bad value; nothing was read or written"},
	{ExitFindings, ""},
}

// command is one jitd command. The table of commands (commands) drives
// dispatch, help, shell completion and the manual page, so a new command is
// one entry.
type command struct {
	name     string // "" is the daemon itself
	summary  string // one line, for the command list
	synopsis string // after "Usage: "
	about    string // what it does, paragraphs
	findings string // what exit code 3 means; "" when the command never returns it
	// args are the words completion offers after the command (jitd
	// completion's shells); nil when it takes flags only.
	args []string
	// flags defines the command's flags on a new flag set; the definitions
	// used to parse are the ones help, completion and the manual show.
	flags func() *flag.FlagSet
	run   func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// commands is filled in init: its entries refer to functions that read it.
var commands []command

func init() {
	commands = []command{
		{
			name: "", summary: "watch the NSGs of a scope and close expired and tampered JIT grant rules (the daemon)",
			synopsis: "jitd [flags]\n       jitd <command> [flags]",
			about:    daemonAbout, findings: "",
			flags: func() *flag.FlagSet { var o options; return daemonFlags(&o) },
			run:   runDaemon,
		},
		{
			name: "scan", summary: "find management ports open to the Internet",
			synopsis: "jitd scan [flags]", about: scanAbout,
			findings: "something is exposed (expired grants, bypassed policies and standing access included)",
			flags:    func() *flag.FlagSet { var o scanOptions; return scanFlags(&o) },
			run:      runScan,
		},
		{
			name: "status", summary: "who can reach what through the JIT policies, now",
			synopsis: "jitd status [flags]", about: statusAbout,
			findings: "read completely, something needs attention (standing access, bypass, partial, malformed or missing policy, sessions not ended, an expired or invalid JIT rule still open)",
			flags:    func() *flag.FlagSet { var o statusOptions; return statusFlags(&o) },
			run:      runStatus,
		},
		{
			name: "verify", summary: "prove who can reach what with Network Watcher's IP flow verify",
			synopsis: "jitd verify [flags]", about: verifyAbout,
			findings: "some answer of IP flow verify differs from what the policies and grants require",
			flags:    func() *flag.FlagSet { var o verifyOptions; return verifyFlags(&o) },
			run:      runVerify,
		},
		{
			name: "migrate", summary: "move Defender for Cloud JIT VM access to jit policies, with the ports closed throughout",
			synopsis: "jitd migrate defender [flags]", about: migrateAbout, args: []string{"defender"},
			findings: "the migration is refused, nothing written: input it cannot migrate, a Defender request active now, or a cutover step that would open a port",
			flags:    func() *flag.FlagSet { var o migrateOptions; return migrateFlags(&o) },
			run:      runMigrate,
		},
		{
			name: "request", summary: "write a jit_access_grant request",
			synopsis: `jitd request --policy <policy id> --port 22 --source <address|auto> --for 1h --why "..." [flags]`,
			about:    requestAbout,
			flags:    func() *flag.FlagSet { var o requestOptions; return requestFlags(&o) },
			run:      runRequest,
		},
		{
			name: "completion", summary: "print a shell completion script: bash, zsh or fish",
			synopsis: "jitd completion bash|zsh|fish", about: completionAbout, args: completionShells,
			flags: func() *flag.FlagSet { return newFlagSet("completion") },
			run:   runCompletion,
		},
		{
			name: "man", summary: "print the manual page (roff), jitd.1",
			synopsis: "jitd man", about: manAbout,
			flags: func() *flag.FlagSet { return newFlagSet("man") },
			run:   runMan,
		},
		{
			name: "help", summary: "show the usage of jitd or of a command",
			synopsis: "jitd help [command]", about: "Prints the usage of jitd, or of the command named, to standard output.",
			flags: func() *flag.FlagSet { return newFlagSet("help") },
			run:   runHelp,
		},
	}
	for i := range commands {
		if commands[i].name == "help" {
			commands[i].args = commandNames()
		}
	}
}

// lookupCommand finds a command by name ("" is the daemon).
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run is jitd: the first argument names a command unless it is a flag; with
// none, jitd is the daemon. --help prints the usage to stdout; a usage
// error is returned as a *usageError (exit code 2).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	c, ok := lookupCommand(name)
	if !ok {
		return &usageError{err: fmt.Errorf("unknown command %q; the commands are %s", name, strings.Join(commandNames(), ", "))}
	}
	err := c.run(ctx, args, getenv, stdout, stderr)
	var ue *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return writeUsage(stdout, c)
	case errors.As(err, &ue) && ue.command == "" && c.name != "":
		ue.command = c.name
	}
	return err
}

func commandNames() []string {
	var names []string
	for _, c := range commands {
		if c.name != "" {
			names = append(names, c.name)
		}
	}
	return names
}

// runHelp is `jitd help [command]`.
func runHelp(_ context.Context, args []string, _ func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("help")
	if err := parseArgs(fs, args, 1); err != nil {
		return err
	}
	name := fs.Arg(0)
	c, ok := lookupCommand(name)
	if !ok || (name == "" && fs.NArg() > 0) {
		return usageErrorf("no help for %q: the commands are %s", name, strings.Join(commandNames(), ", "))
	}
	return writeUsage(stdout, c)
}

// usageError is a wrong command line: jitd prints it once, with a pointer
// to --help, and exits with ExitUsage.
type usageError struct {
	command string
	err     error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf is a usage error with a message.
func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCodeError ends jitd with a given exit code. A subcommand that has a
// verdict rather than a failure (`jitd scan` finding exposed ports) returns
// one so that CI can tell the two apart.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// exitStatus is what jitd prints to stderr for err (empty for none) and
// the exit code it ends with.
func exitStatus(err error) (string, int) {
	var (
		ue   *usageError
		exit *exitCodeError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return "", ExitOK
	case errors.As(err, &ue):
		prefix, help := "jitd: ", "jitd --help"
		if ue.command != "" {
			prefix, help = "jitd "+ue.command+": ", "jitd "+ue.command+" --help"
		}
		return prefix + ue.Error() + "\nRun '" + help + "' for usage.", ExitUsage
	case errors.As(err, &exit):
		return "jitd: " + exit.msg, exit.code
	}
	return "jitd: " + err.Error(), ExitFailure
}

// scope builds the Azure client of a command that reads a scope (jitd
// scan, status, verify) and the scope its flags name; a scope that names
// nothing to read is a usage error.
func (a *azureFlags) scope(ctx context.Context, getenv func(string) string, subscriptions, resourceGroups, nsgs listFlag) (*azure.Client, *scope, error) {
	client, cfg, err := a.client(ctx, getenv)
	if err != nil {
		return nil, nil, err
	}
	sc, err := newScope(options{subscriptions: subscriptions, resourceGroups: resourceGroups, nsgs: nsgs}, cfg.SubscriptionID)
	if err != nil {
		return nil, nil, &usageError{err: err}
	}
	sc.client = client
	return client, sc, nil
}

// newFlagSet is a command's flag set. It prints nothing itself: run prints
// the usage (to stdout, on --help) and mainCode the error (once).
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("jitd "+name), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses a command's flags and allows at most maxArgs arguments
// after them. Its errors are usage errors, except flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string, maxArgs int) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		return &usageError{err: err}
	case fs.NArg() > maxArgs:
		return usageErrorf("unexpected arguments: %q", fs.Args()[maxArgs:])
	}
	return nil
}

// writeUsage prints a command's usage: synopsis, description, commands (for
// jitd itself), flags and exit codes.
func writeUsage(w io.Writer, c command) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", c.synopsis, strings.TrimSpace(c.about))
	if c.name == "" {
		b.WriteString("\nCommands:\n")
		for _, sub := range commands {
			if sub.name != "" {
				fmt.Fprintf(&b, "  %-11s %s\n", sub.name, sub.summary)
			}
		}
		b.WriteString("\nRun 'jitd help <command>' or 'jitd <command> --help' for a command's usage.\n")
	}
	if flags := commandFlags(c); len(flags) > 0 {
		b.WriteString("\nFlags:\n")
		for _, f := range flags {
			b.WriteString("  --" + f.name)
			if f.takesValue {
				b.WriteString(" " + f.valueName)
			}
			b.WriteString("\n      " + f.usage)
			if f.takesValue && !zeroDefault(f.defValue) {
				fmt.Fprintf(&b, " (default %s)", f.defValue)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nExit codes:\n")
	for _, e := range commandExitCodes(c) {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.meaning)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// commandExitCodes are the exit codes c can end with.
func commandExitCodes(c command) []struct {
	code    int
	meaning string
} {
	var out []struct {
		code    int
		meaning string
	}
	for _, e := range exitCodes {
		if e.code == ExitFindings {
			if c.findings == "" {
				continue
			}
			e.meaning = c.findings
		}
		out = append(out, e)
	}
	return out
}

// zeroDefault is true for the defaults not worth showing: empty values.
func zeroDefault(v string) bool { return v == "" || v == "[]" || v == "0" }

// azureFlags are the overrides of the ARM_* variables that every jitd
// command accepts, as the daemon does.
type azureFlags struct {
	subscriptionID, tenantID, clientID, environment, metadataHost string
}

func (a *azureFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.subscriptionID, "subscription-id", "", "default subscription (overrides $"+azure.EnvSubscriptionID+")")
	fs.StringVar(&a.tenantID, "tenant-id", "", "tenant (overrides $"+azure.EnvTenantID+")")
	fs.StringVar(&a.clientID, "client-id", "", "client id of the service principal or managed identity (overrides $"+azure.EnvClientID+")")
	fs.StringVar(&a.environment, "environment", "", "cloud: public, usgovernment, usgovernmentl5, china or an azurerm alias (overrides $"+azure.EnvEnvironment+")")
	fs.StringVar(&a.metadataHost, "metadata-host", "", "discover endpoints from this host (overrides $"+azure.EnvMetadataHost+")")
}

// config reads the ARM_* variables and applies the overrides.
func (a *azureFlags) config(getenv func(string) string) (azure.Config, error) {
	cfg, err := azure.ConfigFromEnv(getenv)
	if err != nil {
		return cfg, fmt.Errorf("azure configuration: %w", err)
	}
	override(&cfg.SubscriptionID, a.subscriptionID)
	override(&cfg.TenantID, a.tenantID)
	override(&cfg.ClientID, a.clientID)
	override(&cfg.Environment, a.environment)
	override(&cfg.MetadataHost, a.metadataHost)
	return cfg, nil
}

// client builds the Azure client a subcommand reads with.
func (a *azureFlags) client(ctx context.Context, getenv func(string) string) (*azure.Client, azure.Config, error) {
	cfg, err := a.config(getenv)
	if err != nil {
		return nil, cfg, err
	}
	c, err := azure.NewClient(ctx, cfg, azure.ClientOptions{UserAgent: "jitd/" + version})
	return c, cfg, err
}

// parseReadFlags parses the flags of a command that reads a scope (jitd
// scan, jitd status) and checks what they share: no arguments, an output
// format of table or json, and a concurrency of at least 1.
func parseReadFlags(fs *flag.FlagSet, args []string, output *string, concurrency *int) error {
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *output != "table" && *output != "json":
		return usageErrorf("--output %q: want table or json", *output)
	case *concurrency < 1:
		return usageErrorf("--concurrency must be at least 1, not %d", *concurrency)
	}
	return nil
}

// missingGroup says plainly that a resource group of the scope does not
// exist (Azure's 404 ResourceGroupNotFound, a typo more often than not);
// other errors are returned as they are.
func missingGroup(rg resourceGroupRef, err error) error {
	var ae *azure.Error
	if errors.As(err, &ae) && strings.EqualFold(ae.Code, "ResourceGroupNotFound") {
		return fmt.Errorf("resource group %s does not exist in subscription %s (a typo?): %w", rg.name, rg.subscription, err)
	}
	return err
}
