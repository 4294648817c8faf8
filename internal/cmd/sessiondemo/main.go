// Command sessiondemo makes the local Azure's rules real for one VM with the
// kernel dataplane (internal/dataplane), and holds one client's TCP session
// to it, as an SSH user would: it connects, keeps the session busy, and
// says when the session opens, when a connect is refused and when a held
// session is cut. `make demo` runs it (as root) beside jitd, to show a live
// session ending at expiry.
//
//	sessiondemo -nsg <NSG id> -vm 10.0.1.4 -source 203.0.113.7 -port 22
//	sessiondemo -check    # can this machine run it? (exit 0, or 3 and why)
//
// It reads the local Azure's settings (ARM_*, SSL_CERT_FILE, AZURESIM_URL)
// from the environment, as written by azuresim's env file, prints one line
// per change of state, and stops on SIGINT or SIGTERM, removing its
// network namespaces. Without root, network namespaces, or the ip, nft and
// conntrack tools, it says why on one line and exits with status 3.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jitaccess/terraform-provider-jit/internal/dataplane"
	"github.com/jitaccess/terraform-provider-jit/internal/testproc"
)

// exitUnsupported is the status when this machine cannot run the
// dataplane.
const exitUnsupported = 3

func main() {
	nsg := flag.String("nsg", "", "the NSG in front of the VM (required)")
	vm := flag.String("vm", "10.0.1.4", "the VM's address")
	source := flag.String("source", "203.0.113.7", "the client's address")
	port := flag.Int("port", 22, "the VM's port")
	name := flag.String("name", "alice", "the client's name, in the output")
	check := flag.Bool("check", false, "only say whether this machine can run real packets (exit 0) or why not (exit 3)")
	flag.Parse()
	if *check {
		if why := dataplane.Unsupported(); why != "" {
			fmt.Printf("real packets skipped: %s\n", why)
			os.Exit(exitUnsupported)
		}
		return
	}
	if *nsg == "" {
		fmt.Fprintln(os.Stderr, "sessiondemo: -nsg is required")
		os.Exit(2)
	}
	if why := dataplane.Unsupported(); why != "" {
		fmt.Printf("real packets skipped: %s\n", why)
		os.Exit(exitUnsupported)
	}
	if err := runUntilSignalled(*nsg, *vm, *source, *name, *port); err != nil {
		fmt.Fprintln(os.Stderr, "sessiondemo:", err)
		os.Exit(1)
	}
}

func runUntilSignalled(nsg, vm, source, name string, port int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, nsg, vm, source, name, port)
}

func run(ctx context.Context, nsg, vm, source, name string, port int) error {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "ARM_") || k == "SSL_CERT_FILE" || k == "AZURESIM_URL") {
			env[k] = v
		}
	}
	arm, err := testproc.NewARMClients(ctx, &testproc.Azuresim{Env: env, URL: env["AZURESIM_URL"]})
	if err != nil {
		return err
	}
	dp, err := dataplane.New(ctx, dataplane.Config{
		VM: vm, Sources: []string{source}, Ports: []int{port}, NICNSG: nsg,
		Groups: arm.Groups, SimURL: arm.URL, HTTP: arm.HTTP, PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer dp.Close()

	say := func(format string, args ...any) {
		fmt.Printf("%s %s (%s) -> VM:%d  %s\n", time.Now().Format("15:04:05.000"), name, source, port, fmt.Sprintf(format, args...))
	}
	var held net.Conn
	var openedAt time.Time
	last := ""
	tick := time.NewTicker(100 * time.Millisecond) // a user typing: the session is kept busy
	defer tick.Stop()
	for {
		switch held {
		case nil:
			c, err := dp.Dial(source, port)
			if err != nil {
				if last != "refused" {
					say("connect refused (%v)", err)
					last = "refused"
				}
				break
			}
			held, openedAt, last = c, time.Now(), "open"
			say("connected: session open")
		default:
			if err := dataplane.Echo(held); err != nil {
				say("session CUT after %s open (%v)", time.Since(openedAt).Round(100*time.Millisecond), err)
				_ = held.Close()
				held, last = nil, "cut"
			}
		}
		select {
		case <-ctx.Done():
			if held != nil {
				say("session still open after %s; stopping", time.Since(openedAt).Round(time.Second))
				_ = held.Close()
			}
			return nil
		case <-tick.C:
		}
	}
}
