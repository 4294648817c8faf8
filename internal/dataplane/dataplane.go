package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/jitaccess/terraform-provider-jit/internal/azuresim/nsgrules"
)

// Config describes the VM, its clients and the NSGs on its path.
type Config struct {
	// VM is the VM's private IPv4 address, e.g. "10.0.1.4".
	VM string
	// Sources are the client addresses (IPv4) that may try to connect;
	// each gets a namespace of its own.
	Sources []string
	// Ports are the TCP ports the VM listens on (an echo server on each).
	Ports []int

	// SubnetNSG and NICNSG are the ids of the NSGs on the VM's inbound
	// path, met in that order; either may be empty (no NSG at that level).
	SubnetNSG, NICNSG string
	// Groups reads the NSGs from the local Azure over HTTPS.
	Groups *armnetwork.SecurityGroupsClient
	// SimURL is the local Azure's base URL: the dataplane reads its event
	// log (GET /_sim/events) to learn which NSGs changed.
	SimURL string
	// HTTP is the client for SimURL; nil uses one with a 30 s timeout
	// (trusting SSL_CERT_FILE, as the ARM clients do).
	HTTP *http.Client
	// Env gives service tags their address space. The zero value is what
	// the local Azure's flow verification uses.
	Env nsgrules.Env
	// PollInterval is how often the dataplane follows the local Azure on
	// its own; 0 means 100 ms, a negative value turns following off (then
	// only Sync applies changes).
	PollInterval time.Duration
	// Logf, when set, receives one line per applied change and per error
	// of the background follower.
	Logf func(format string, args ...any)
}

// Dataplane is a VM in a network namespace whose inbound TCP traffic is
// filtered by nftables compiled from the NSGs on its path, and one client
// namespace per source address.
type Dataplane struct {
	cfg   Config
	vm    netip.Addr
	vmNS  string
	srcNS map[string]string
	ports map[int]bool
	nss   []string

	connsMu   sync.Mutex
	conns     map[net.Conn]struct{}
	listeners []net.Listener

	mu      sync.Mutex // serialises Sync
	path    []pathNSG
	seen    []string // per path NSG: the event-log fingerprint last applied
	applied string
	synced  bool
	flushes int

	stop    context.CancelFunc
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool
}

var (
	skipOnce   sync.Once
	skipReason string
)

// Unsupported says why this machine cannot run a dataplane ("" when it
// can): not root, a missing tool, or no network namespace support.
func Unsupported() string {
	skipOnce.Do(func() { skipReason = unsupported() })
	return skipReason
}

func unsupported() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces"
	}
	for _, tool := range []string{"ip", "nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "needs " + tool + " on PATH (Debian: apt-get install iproute2 nftables conntrack)"
		}
	}
	ctx := context.Background()
	probe := newBaseName() + "-probe"
	if err := runIP(ctx, nil, "netns", "add", probe); err != nil {
		return "cannot create a network namespace: " + err.Error()
	}
	defer func() { _ = runIP(ctx, nil, "netns", "delete", probe) }()
	if err := runIP(ctx, []byte("table ip probe {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established accept\n\t\treject with tcp reset\n\t}\n}\n"),
		"netns", "exec", probe, "nft", "-f", "-"); err != nil {
		return "nftables with conntrack does not work in a network namespace: " + err.Error()
	}
	return ""
}

// Skip skips the test with one line when this machine cannot run a
// dataplane.
func Skip(t testing.TB) {
	t.Helper()
	if why := Unsupported(); why != "" {
		t.Skip("dataplane: skipped: " + strings.Join(strings.Fields(why), " "))
	}
}

// Start skips the test when the machine cannot run a dataplane, else starts
// one and closes it at the test's cleanup.
func Start(t testing.TB, cfg Config) *Dataplane {
	t.Helper()
	Skip(t)
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("dataplane: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("dataplane: close: %v", err)
		}
	})
	return d
}

// New builds the namespaces, starts the listeners, installs the ruleset for
// the NSGs as they are now and starts following the local Azure. Close
// undoes all of it; New undoes what it built when it fails.
func New(ctx context.Context, cfg Config) (_ *Dataplane, err error) {
	d, err := newDataplane(cfg)
	if err != nil {
		return nil, err
	}
	staleCleanup.Do(func() { removeStaleNamespaces(ctx) })
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	if err := d.buildTopology(ctx); err != nil {
		return nil, err
	}
	if err := d.listen(); err != nil {
		return nil, err
	}
	if err := d.Sync(ctx); err != nil {
		return nil, err
	}
	if err := runIP(ctx, nil, "netns", "exec", d.vmNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=1"); err != nil {
		return nil, fmt.Errorf("let conntrack pick up flushed flows: %w", err)
	}
	interval := cfg.PollInterval
	if interval == 0 {
		interval = 100 * time.Millisecond
	}
	if interval > 0 {
		loopCtx, cancel := context.WithCancel(context.Background())
		d.stop, d.done = cancel, make(chan struct{})
		go d.follow(loopCtx, interval)
	}
	return d, nil
}

func newDataplane(cfg Config) (*Dataplane, error) {
	vm, err := netip.ParseAddr(cfg.VM)
	if err != nil || !vm.Is4() {
		return nil, fmt.Errorf("VM address %q is not an IPv4 address", cfg.VM)
	}
	if cfg.Groups == nil || cfg.SimURL == "" {
		return nil, errors.New("the dataplane needs Groups and SimURL: it follows the local Azure")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	base := newBaseName()
	d := &Dataplane{cfg: cfg, vm: vm, vmNS: base + "-vm", srcNS: map[string]string{}, ports: map[int]bool{},
		conns: map[net.Conn]struct{}{}}
	for i, s := range cfg.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || a == vm {
			return nil, fmt.Errorf("source %q is not an IPv4 address other than the VM's", s)
		}
		if _, dup := d.srcNS[a.String()]; dup {
			return nil, fmt.Errorf("source %s is listed twice", s)
		}
		d.srcNS[a.String()] = base + "-s" + strconv.Itoa(i)
	}
	for _, p := range cfg.Ports {
		if p < 1 || p > 65535 || d.ports[p] {
			return nil, fmt.Errorf("port %d is outside 1-65535 or listed twice", p)
		}
		d.ports[p] = true
	}
	for _, id := range []string{cfg.SubnetNSG, cfg.NICNSG} {
		if id != "" {
			d.path = append(d.path, pathNSG{id: id})
		}
	}
	d.seen = make([]string, len(d.path))
	return d, nil
}

// buildTopology creates the VM's namespace and one per source, each source
// joined to the VM by a veth pair with /32 routes both ways. Both ends are
// created inside their namespaces, so deleting the namespaces removes
// everything.
func (d *Dataplane) buildTopology(ctx context.Context) error {
	ip := func(args ...string) error { return runIP(ctx, nil, args...) }
	if err := ip("netns", "add", d.vmNS); err != nil {
		return err
	}
	d.nss = append(d.nss, d.vmNS)
	if err := ip("-n", d.vmNS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	vm := d.vm.String()
	for i, s := range d.cfg.Sources {
		src := netip.MustParseAddr(s).String()
		ns, vmIf := d.srcNS[src], "s"+strconv.Itoa(i)
		steps := [][]string{
			{"netns", "add", ns},
			{"link", "add", vmIf, "netns", d.vmNS, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", d.vmNS, "addr", "add", vm + "/32", "dev", vmIf},
			{"-n", d.vmNS, "link", "set", vmIf, "up"},
			{"-n", d.vmNS, "route", "add", src + "/32", "dev", vmIf, "src", vm},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "addr", "add", src + "/32", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "route", "add", vm + "/32", "dev", "eth0", "src", src},
		}
		for j, args := range steps {
			if err := ip(args...); err != nil {
				return fmt.Errorf("connect source %s: %w", src, err)
			}
			if j == 0 {
				d.nss = append(d.nss, ns)
			}
		}
	}
	return nil
}

// listen starts an echo server on every port in the VM's namespace: it
// sends back what it reads, so a client can tell its connection still
// works by a write followed by a read.
func (d *Dataplane) listen() error {
	for _, p := range d.cfg.Ports {
		var l net.Listener
		err := inNetns(d.vmNS, func() error {
			var err error
			l, err = net.Listen("tcp4", netip.AddrPortFrom(d.vm, uint16(p)).String())
			return err
		})
		if err != nil {
			return fmt.Errorf("listen on %s:%d: %w", d.vm, p, err)
		}
		d.listeners = append(d.listeners, l)
		go d.serve(l)
	}
	return nil
}

func (d *Dataplane) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !d.track(c) {
			return
		}
		go func() {
			defer d.untrack(c)
			_, _ = io.Copy(c, c)
		}()
	}
}

func (d *Dataplane) track(c net.Conn) bool {
	d.connsMu.Lock()
	defer d.connsMu.Unlock()
	if d.conns == nil {
		_ = c.Close()
		return false
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *Dataplane) untrack(c net.Conn) {
	_ = c.Close()
	d.connsMu.Lock()
	defer d.connsMu.Unlock()
	delete(d.conns, c)
}

// Keepalive makes the VM speak first on every connection it holds: it
// writes msg to each, as an SSH server's keepalive would, and returns how
// many it wrote to. Whether a connection then still works must not depend
// on who spoke last.
func (d *Dataplane) Keepalive(msg []byte) (int, error) {
	d.connsMu.Lock()
	conns := make([]net.Conn, 0, len(d.conns))
	for c := range d.conns {
		// The VM's side of a connection, not a client's.
		if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.Equal(net.IP(d.vm.AsSlice())) {
			conns = append(conns, c)
		}
	}
	d.connsMu.Unlock()
	for _, c := range conns {
		if _, err := c.Write(msg); err != nil {
			return 0, fmt.Errorf("keepalive: %w", err)
		}
	}
	return len(conns), nil
}

// dialTimeout bounds a connect: a denied connect is answered with a reset
// at once, so only a broken dataplane waits this long.
const dialTimeout = 10 * time.Second

// Dial connects from source to the VM's port with a real TCP connection
// created in the source's namespace. A connect the rules deny fails with
// ECONNREFUSED (the dataplane answers it with a reset).
func (d *Dataplane) Dial(source string, port int) (net.Conn, error) {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return nil, fmt.Errorf("dial: source %q: %w", source, err)
	}
	ns, ok := d.srcNS[a.String()]
	if !ok {
		return nil, fmt.Errorf("dial: %s is not one of the configured sources", source)
	}
	if !d.ports[port] {
		return nil, fmt.Errorf("dial: nothing listens on port %d (configured: %v)", port, d.cfg.Ports)
	}
	var c net.Conn
	err = inNetns(ns, func() error {
		var err error
		dialer := net.Dialer{Timeout: dialTimeout}
		c, err = dialer.Dial("tcp4", netip.AddrPortFrom(d.vm, uint16(port)).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	if !d.track(c) {
		return nil, errors.New("dial: dataplane closed")
	}
	return c, nil
}

// Probe makes a fresh connection from source to port and reports whether
// the VM accepted it (and echoed a write) or answered with a reset.
func (d *Dataplane) Probe(source string, port int) (allowed bool, err error) {
	c, err := d.Dial(source, port)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer d.untrack(c)
	if err := Echo(c); err != nil {
		return false, fmt.Errorf("probe %s -> %d: connected but no echo: %w", source, port, err)
	}
	return true, nil
}

// Echo writes to a connection to the VM and reads the echo back: nil when
// the connection still works. A connection the dataplane cut fails with a
// reset (ECONNRESET) at once.
func Echo(c net.Conn) error {
	msg := []byte("jit-dataplane-echo\n")
	if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return err
	}
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echo %q, sent %q", buf, msg)
	}
	return nil
}

// VM is the VM's address.
func (d *Dataplane) VM() string { return d.vm.String() }

// Ruleset is the nftables ruleset last installed in the VM's namespace.
func (d *Dataplane) Ruleset() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied
}

// Flushes counts the conntrack flushes done so far (flushConnection).
func (d *Dataplane) Flushes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushes
}

// Close stops following, closes every listener and connection and deletes
// the namespaces. It is safe to call more than once.
func (d *Dataplane) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.stop != nil {
		d.stop()
		<-d.done
	}
	for _, l := range d.listeners {
		_ = l.Close()
	}
	d.connsMu.Lock()
	for c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
	d.connsMu.Unlock()
	var errs []error
	for _, ns := range d.nss {
		if err := runIP(context.Background(), nil, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
