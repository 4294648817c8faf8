package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jitaccess/terraform-provider-jit/internal/azure"
)

// exitCodeError ends jitd with a given exit code. A subcommand that has a
// verdict rather than a failure (`jitd scan` finding exposed ports) returns
// one so that CI can tell the two apart.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

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

// newFlagSet is a subcommand's flag set with its usage text.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("jitd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, strings.TrimSpace(usage)+"\n\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseReadFlags parses the flags of a command that reads a scope (jitd
// scan, jitd status) and checks what they share: no arguments, an output
// format of table or json, and a concurrency of at least 1.
func parseReadFlags(fs *flag.FlagSet, args []string, output *string, concurrency *int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	case *output != "table" && *output != "json":
		return fmt.Errorf("--output %q: want table or json", *output)
	case *concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, not %d", *concurrency)
	}
	return nil
}
