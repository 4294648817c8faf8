// Command jitd is the companion daemon of terraform-provider-jit: it watches
// the network security groups in a scope and closes JIT grant rules the
// moment they expire (and at once when they have been tampered with),
// between Terraform runs. See examples/daemon/README.md.
//
//	jitd --subscription 00000000-0000-0000-0000-000000000000 --listen :9090
//	jitd --resource-group prod-network --once      # cron and CI schedules
//
// Credentials and endpoints come from the same ARM_* environment variables
// as the provider (and the azurerm provider).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
	"github.com/jitaccess/terraform-provider-jit/internal/azure"
	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// version is set by the release build (goreleaser ldflags).
var version = "dev"

// EnvWebhookURL may carry the webhook URL instead of --webhook-url: such
// URLs embed a secret, and command lines are visible to every local user.
const EnvWebhookURL = "JITD_WEBHOOK_URL"

func main() { os.Exit(mainCode()) }

// mainCode is main with an exit code, so that deferred cleanup runs.
func mainCode() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	msg, code := exitStatus(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	return code
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return errors.New("empty value")
	}
	*l = append(*l, v)
	return nil
}

// options are the parsed command line.
type options struct {
	subscriptions, resourceGroups, nsgs listFlag
	allSubscriptions                    bool
	discovery                           string // discoveryARM or discoveryGraph (graphscope.go)

	interval     time.Duration
	watch        time.Duration
	maxLead      time.Duration
	once         bool
	dryRun       bool
	noRestore    bool
	listen       string
	statusRemote bool
	auditLog     string
	webhookURL   string
	logLevel     slog.Level
	concurrency  int
	showVersion  bool
	verify       bool

	// Overrides of the ARM_* variables of the same names.
	subscriptionID, tenantID, clientID, environment, metadataHost string
}

const daemonAbout = `
jitd closes expired and tampered JIT grant rules on the Azure network
security groups of a scope (subscriptions, resource groups, NSGs; by default
the default subscription), between Terraform runs. It refuses to start on a
scope it cannot read. Credentials come from the ARM_* environment
variables, as for the provider.
`

// daemonFlags defines jitd's own flags on a new flag set.
func daemonFlags(o *options) *flag.FlagSet {
	fs := newFlagSet("")
	fs.Var(&o.subscriptions, "subscription", "watch every NSG of this subscription id (repeatable)")
	fs.Var(&o.resourceGroups, "resource-group", "watch every NSG of this resource group: <subscription id>/<name>, or a name in the default subscription (repeatable)")
	fs.Var(&o.nsgs, "nsg", "watch this NSG, by resource id (repeatable)")
	fs.BoolVar(&o.allSubscriptions, "all-subscriptions", false, "watch every subscription the credential can see (GET /subscriptions, listed again every 5m), instead of --subscription, --resource-group and --nsg")
	fs.StringVar(&o.discovery, "discovery", discoveryARM, "how NSGs are found and watched: "+discoveryARM+" (list and read every NSG through ARM; exact and fresh) or "+discoveryGraph+" (ask Azure Resource Graph which NSGs hold JIT rules and which changed, read only those through ARM; for thousands of NSGs, a grant written between watches is seen up to Resource Graph's lag later)")
	fs.DurationVar(&o.interval, "interval", 5*time.Minute, "period of the full resync (discovers NSGs, reads all); expiries are handled by a timer in between")
	fs.DurationVar(&o.watch, "watch-interval", 30*time.Second, "how often every NSG in scope is read between resyncs, so new policies and grants are seen before a grant expires; keep it under 1m (the shortest grant); 0 turns it off")
	fs.DurationVar(&o.maxLead, "max-close-lead", jit.MaxCloseLead, "start closing a grant this much ahead of its expiry at most: jitd starts each close ahead by the time its recent NSG writes took (their median), so that the rule is gone at about the expiry rather than a write after it, and never more than that ahead; 0 closes at the expiry; at most "+jit.MaxCloseLead.String()+" (half the shortest grant)")
	fs.BoolVar(&o.once, "once", false, "run one full pass and exit; the exit code is 1 if anything failed (for cron jobs and CI schedules)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "report what would be closed or restored, delete and write nothing")
	fs.BoolVar(&o.noRestore, "no-restore", false, "only report a policy with some of its guard or deny-all rules missing (and close its grants) instead of writing the missing rules back; for a role without networkSecurityGroups/write")
	fs.StringVar(&o.listen, "listen", "", "serve /healthz, /readyz, /metrics and the status page (/status) on this address (e.g. 127.0.0.1:9090 or :9090); off when empty")
	fs.BoolVar(&o.statusRemote, "status-remote", false, "serve the status page to any client, not only loopback ones (put it behind authentication)")
	fs.StringVar(&o.auditLog, "audit-log", "", "append audit events (JSON lines) to this file instead of stdout")
	fs.StringVar(&o.webhookURL, "webhook-url", "", "also POST every audit event to this URL (generic JSON with a Slack/Teams text field); default $"+EnvWebhookURL)
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.IntVar(&o.concurrency, "concurrency", 8, "NSGs reconciled at once")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.verify, "verify", false, "after each change jitd makes or sees on an NSG, ask Network Watcher's IP flow verify whether grants' sources get in and others do not, and report each wrong answer (a verify_mismatch finding); see jitd verify")
	fs.StringVar(&o.subscriptionID, "subscription-id", "", "default subscription (overrides $"+azure.EnvSubscriptionID+")")
	fs.StringVar(&o.tenantID, "tenant-id", "", "tenant (overrides $"+azure.EnvTenantID+")")
	fs.StringVar(&o.clientID, "client-id", "", "client id of the service principal or managed identity (overrides $"+azure.EnvClientID+")")
	fs.StringVar(&o.environment, "environment", "", "cloud: public, usgovernment, usgovernmentl5, china or an azurerm alias (overrides $"+azure.EnvEnvironment+")")
	fs.StringVar(&o.metadataHost, "metadata-host", "", "discover endpoints from this host (overrides $"+azure.EnvMetadataHost+")")
	return fs
}

func parseFlags(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := daemonFlags(&o)
	if err := parseArgs(fs, args, 0); err != nil {
		return o, err
	}
	if o.webhookURL == "" {
		// Read after parsing so that the URL's secret never shows up as a
		// flag default in the usage text.
		o.webhookURL = strings.TrimSpace(getenv(EnvWebhookURL))
	}
	switch {
	case o.interval < time.Second:
		return o, usageErrorf("--interval %s is too short: use at least 1s", o.interval)
	case o.watch < 0 || (o.watch > 0 && o.watch < time.Second):
		return o, usageErrorf("--watch-interval %s must be 0 (off) or at least 1s", o.watch)
	case o.concurrency < 1:
		return o, usageErrorf("--concurrency must be at least 1, not %d", o.concurrency)
	case o.maxLead < 0 || o.maxLead > jit.MaxCloseLead:
		return o, usageErrorf("--max-close-lead %s must be between 0 (close at the expiry) and %s (half the shortest grant)", o.maxLead, jit.MaxCloseLead)
	case o.discovery != discoveryARM && o.discovery != discoveryGraph:
		return o, usageErrorf("--discovery %q: want %s or %s", o.discovery, discoveryARM, discoveryGraph)
	}
	return o, nil
}

// closeLeadOption maps --max-close-lead to daemon.Options.MaxCloseLead,
// where 0 means the default and a negative value off.
func closeLeadOption(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// runDaemon is jitd without a command: parse, connect, check the scope,
// then reconcile until ctx ends (or once).
func runDaemon(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "jitd", version)
		return nil
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))

	cfg, err := azure.ConfigFromEnv(getenv)
	if err != nil {
		return fmt.Errorf("azure configuration: %w", err)
	}
	override(&cfg.SubscriptionID, o.subscriptionID)
	override(&cfg.TenantID, o.tenantID)
	override(&cfg.ClientID, o.clientID)
	override(&cfg.Environment, o.environment)
	override(&cfg.MetadataHost, o.metadataHost)
	for _, w := range cfg.Warnings() {
		log.Warn("azure setting has no effect", "detail", w)
	}

	sc, err := newScope(o, cfg.SubscriptionID)
	if err != nil {
		return &usageError{err: err}
	}
	client, err := azure.NewClient(ctx, cfg, azure.ClientOptions{UserAgent: "jitd/" + version})
	if err != nil {
		return err
	}
	sc.client, sc.lister = client, client
	var ds daemon.Scope = sc
	check := sc.check
	if o.discovery == discoveryGraph {
		g := &graphScope{scope: sc, graph: client, log: log}
		ds, check = g, g.check
	}

	checkCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = check(checkCtx)
	cancel()
	if err != nil {
		return err
	}

	sink, closeSinks, err := auditSinks(o, stdout, log)
	if err != nil {
		return err
	}
	defer closeSinks()

	var verifier daemon.VerifyClient
	if o.verify {
		verifier = azure.NewVerifier(client)
	}
	d, err := daemon.New(daemon.Options{Verify: verifier,
		Rules: client, Scope: ds, Interval: o.interval, Watch: watchOption(o.watch), Concurrency: o.concurrency, NoRestore: o.noRestore,
		MaxCloseLead: closeLeadOption(o.maxLead),
		DryRun:       o.dryRun, Audit: sink, Logger: log, Version: version, StatusRemote: o.statusRemote,
		// The system clock unless the testing hook JIT_TEST_CLOCK_OFFSET_FILE
		// is set (jit.ClockFromEnv); timers still run in real time, so a
		// jump is seen at the next watch read.
		Now: jit.ClockFromEnv(getenv).Now,
	})
	if err != nil {
		return err
	}
	log.Info("starting", "version", version, "scope", sc.String(), "discovery", o.discovery, "interval", o.interval.String(),
		"once", o.once, "dry_run", o.dryRun, "restore", !o.noRestore)

	if o.listen != "" {
		stopServer, err := serve(o.listen, d.Handler(), log)
		if err != nil {
			return err
		}
		defer stopServer()
	}

	if o.once {
		sum := d.Pass(ctx)
		if err := sum.Err(); err != nil {
			return fmt.Errorf("the pass had %d failure(s): %w", len(sum.Errors), err)
		}
		if ctx.Err() != nil {
			return errors.New("interrupted before the pass completed")
		}
		return nil
	}
	return d.Run(ctx)
}

func override(dst *string, v string) {
	if v = strings.TrimSpace(v); v != "" {
		*dst = v
	}
}

// auditSinks builds the audit sink: stdout or a file, and the webhook.
// The returned func flushes the webhook for a few seconds at exit.
func auditSinks(o options, stdout io.Writer, log *slog.Logger) (audit.Sink, func(), error) {
	var primary audit.Sink = audit.NewWriter(stdout)
	if o.auditLog != "" {
		f, err := audit.OpenFile(o.auditLog)
		if err != nil {
			return nil, nil, fmt.Errorf("--audit-log: %w", err)
		}
		primary = f
	}
	if o.webhookURL == "" {
		return primary, func() {}, nil
	}
	wh, err := audit.NewWebhook(o.webhookURL, audit.WebhookOptions{
		OnError: func(err error) { log.Error("webhook delivery failed", "error", err) },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--webhook-url: %w", err)
	}
	closeWebhook := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := wh.Close(ctx); err != nil {
			log.Warn("webhook not fully flushed", "error", err)
		}
	}
	return audit.Multi{primary, wh}, closeWebhook, nil
}

// serve starts the health and metrics server; the returned func stops it.
func serve(addr string, h http.Handler, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving health and metrics", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health and metrics server failed", "error", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// watchOption maps the flag (0 = off) to daemon.Options.Watch (negative = off).
func watchOption(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
