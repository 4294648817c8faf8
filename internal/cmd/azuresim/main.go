// Command azuresim runs the local Azure (package azuresim) standalone, for
// demos, scripts and end-to-end tests of the provider and the daemon.
//
//	go run ./internal/cmd/azuresim -listen 127.0.0.1:8443 -env-file /tmp/azure.env
//	. /tmp/azure.env   # ARM_METADATA_HOSTNAME, SSL_CERT_FILE, ARM_* credentials
//
// The env file is written atomically once the server is serving, so a script
// can wait for it to appear; it is removed again on a clean shutdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim"
)

func main() {
	os.Exit(runMain())
}

// runMain runs the command and returns its exit code, so that deferred
// cleanup has run before main exits.
func runMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "azuresim:", err)
		return 1
	}
	return 0
}

// hostnames collects the repeatable -hostname flag.
type hostnames []string

func (h *hostnames) String() string     { return strings.Join(*h, ",") }
func (h *hostnames) Set(v string) error { *h = append(*h, v); return nil }

// run starts the server, writes the CA and env files, and serves until ctx
// is cancelled.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("azuresim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts      azuresim.Options
		names     hostnames
		envFile   = fs.String("env-file", "", "write shell export lines for the ARM_* variables and SSL_CERT_FILE to this file once ready (default: print them to stdout)")
		caFile    = fs.String("ca-file", "", "write the CA certificate here (default: azuresim-ca.pem beside the env file, else in a temporary directory)")
		logFormat = fs.String("log-format", "text", "log format: json or text")
		logLevel  = fs.String("log-level", "info", "log level: debug (one line per request), info, warn or error")
		subs      = fs.String("subscriptions", "", "subscriptions served besides the default one: a count N (N deterministic ids, azuresim.ExtraSubscriptionIDs(N), the same every run) or a comma-separated list of ids")
	)
	fs.StringVar(&opts.Addr, "listen", "127.0.0.1:0", "listen address")
	fs.Var(&names, "hostname", "extra certificate host name (repeatable)")
	fs.DurationVar(&opts.WriteLatency, "write-latency", 0, "duration of each write's long-running operation")
	fs.Float64Var(&opts.WriteRate, "write-rate", 0, "subscription write token refill per second (ARM: 10); 0 = unlimited")
	fs.IntVar(&opts.WriteBurst, "write-burst", 200, "subscription write token bucket size")
	fs.Float64Var(&opts.FaultRate, "fault-rate", 0, "fraction of ARM requests that fail (500, 503, 429, reset, failed operation)")
	fs.Int64Var(&opts.FaultSeed, "fault-seed", 1, "seed of the fault injection")
	fs.StringVar(&opts.BusyMode, "busy-mode", azuresim.BusyQueue, "what a write to a busy NSG meets: queue (today's ARM: it waits its turn) or refuse (the busy status)")
	fs.IntVar(&opts.WriteQueue, "write-queue", azuresim.DefaultWriteQueue, "writes a busy NSG queues (busy-mode queue); one more is refused with the busy status")
	fs.IntVar(&opts.BusyStatus, "busy-status", 429, "status of a write refused because its NSG is busy or its queue full: 429 or 409")
	fs.DurationVar(&opts.GraphLag, "graph-lag", 0, "how far Azure Resource Graph's answers trail ARM: a change shows in a query this long after the first query that could have seen it; 0 = none")
	fs.StringVar(&opts.SeedFile, "seed-file", "", `JSON file of resources to preload ({"networkSecurityGroups":[…], "virtualNetworks":[…], …}, each with its id; "subscriptions":[…] serves more subscriptions)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	opts.Hostnames = names
	if opts.Subscriptions, err = parseSubscriptions(*subs); err != nil {
		return err
	}

	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	opts.Logger = logger

	ca, err := azuresim.NewCA()
	if err != nil {
		return err
	}
	opts.CA = ca
	caPath := *caFile
	switch {
	case caPath != "":
	case *envFile != "":
		caPath = filepath.Join(filepath.Dir(*envFile), "azuresim-ca.pem")
	default:
		dir, err := os.MkdirTemp("", "azuresim-")
		if err != nil {
			return fmt.Errorf("create directory for the CA file: %w", err)
		}
		caPath = filepath.Join(dir, "ca.pem")
	}
	if caPath, err = filepath.Abs(caPath); err != nil {
		return fmt.Errorf("resolve CA file path: %w", err)
	}
	if err := ca.WriteCertFile(caPath); err != nil {
		return err
	}

	srv, err := azuresim.Start(opts)
	if err != nil {
		return err
	}
	env := exportLines(srv, caPath)
	if *envFile != "" {
		if err := writeFileAtomic(*envFile, env); err != nil {
			_ = srv.Close()
			return err
		}
		defer os.Remove(*envFile)
		fmt.Fprintf(stdout, "local Azure ready at %s (environment in %s)\n", srv.URL(), *envFile)
	} else {
		fmt.Fprintf(stdout, "# local Azure ready at %s\n%s", srv.URL(), env)
	}

	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", level, err)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want json or text", format)
	}
}

// exportLines renders the environment as POSIX shell export lines, sorted
// and single-quoted.
func exportLines(srv *azuresim.Server, caFile string) []byte {
	env := srv.Environ(caFile)
	env["AZURESIM_URL"] = srv.URL()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	return []byte(b.String())
}

// shellQuote quotes s for a POSIX shell: single quotes, with embedded
// single quotes closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeFileAtomic writes data beside path and renames it into place, so a
// script polling for path never reads half of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write env file %s: %w", path, err)
	}
	return nil
}

// parseSubscriptions reads the -subscriptions flag: empty, a count of
// generated ids, or a comma-separated list of ids.
func parseSubscriptions(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > 100000 {
			return nil, fmt.Errorf("-subscriptions %d: want a count from 0 to 100000 or a list of ids", n)
		}
		return azuresim.ExtraSubscriptionIDs(n), nil
	}
	var out []string
	for _, id := range strings.Split(v, ",") {
		if id = strings.TrimSpace(id); id == "" {
			return nil, fmt.Errorf("-subscriptions %q: empty id in the list", v)
		}
		out = append(out, id)
	}
	return out, nil
}
