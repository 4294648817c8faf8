package azuresim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Default identities of a local Azure. They are fixed so that seed files and
// scripts can name them; none of them is a secret worth protecting.
const (
	DefaultTenantID       = "8b1e5c2a-0f3d-4c61-9a7e-3d2f1b6c4e01"
	DefaultSubscriptionID = "2c4a9e71-5b3f-4d8e-a6c2-7f1e0d9b3a52"
	DefaultClientID       = "5e7d3b19-8a2c-4f60-b1d4-9c3e2a7f6b83"
	DefaultClientSecret   = "local-azure-client-secret"

	// servicePrincipalObjectID is the object id of the one application the
	// local tenant knows; tokens carry it as oid and sub.
	servicePrincipalObjectID = "9d3f6a21-4c7b-4e85-b2a9-6e1c0f8d7a34"
)

// Busy modes: what a write to an NSG that is busy with another operation
// meets.
//
// BusyQueue is today's ARM. The network resource provider used to refuse
// such writes (429 RetryableErrorDueToAnotherOperation, or 409
// AnotherOperationInProgress), which is why azurerm serialised the writes
// of one NSG with a lock; azurerm 3.0 removed that lock by default because
// "the upstream API appears to have since solved the concurrency issues"
// (hashicorp/terraform-provider-azurerm#15719, after the relaxed_locking
// feature flag of #15631 and the request of #5119): concurrent rule writes
// to one NSG are now accepted and run one after another. Azure documents
// no bound on that queue; what it still documents for a resource "locked
// by another operation" is 429 RetryableErrorDueToAnotherOperation
// (learn.microsoft.com, azure-resource-manager/management/
// request-limits-and-throttling), so that is what a write meets when the
// queue is full (or 409 AnotherOperationInProgress with BusyStatus 409).
//
// BusyRefuse is the older behaviour, kept to measure clients against it:
// every write to a busy NSG is refused with BusyStatus.
const (
	BusyQueue  = "queue"
	BusyRefuse = "refuse"
)

// DefaultWriteQueue is the default bound of an NSG's queue under
// BusyQueue: five times Terraform's default parallelism (10), so that a few
// applies and jitd writing one NSG at once never overflow it, while a
// runaway client meets Azure's busy error within a bounded backlog (at
// Azure's write latency of seconds, 50 queued writes are minutes of wait).
const DefaultWriteQueue = 50

// Options configure a local Azure. The zero value is a fast, fault-free
// server on a random loopback port.
type Options struct {
	// Addr is the listen address, default "127.0.0.1:0".
	Addr string
	// Hostnames are extra certificate names besides localhost, 127.0.0.1
	// and ::1 (for example a container's name).
	Hostnames []string
	// CA issues the server certificate; nil generates one.
	CA *CA

	// TenantID, SubscriptionID, ClientID and ClientSecret default to the
	// Default* constants.
	TenantID, SubscriptionID, ClientID, ClientSecret string

	// Subscriptions are served besides SubscriptionID, in this order (GET
	// /subscriptions lists the default one first). Each holds its own
	// resource groups and resources; a request naming any other
	// subscription meets 404 SubscriptionNotFound. ExtraSubscriptionIDs
	// makes deterministic ids for a large tenant.
	Subscriptions []string

	// WriteLatency is how long each write's long-running operation takes;
	// the NSG stays busy meanwhile.
	WriteLatency time.Duration
	// WriteRate is the refill per second of the subscription's write token
	// bucket (ARM: 10); 0 means unlimited.
	WriteRate float64
	// WriteBurst is the bucket size (ARM: 200); 0 means 200.
	WriteBurst int
	// ReadRate and ReadBurst are ARM's read limit per subscription and
	// region (DefaultReadRate 25/s, DefaultReadBurst 250; throttle.go);
	// ReadRate 0 (the default) turns it off, ReadBurst 0 means 250.
	ReadRate  float64
	ReadBurst int
	// GraphLag is how far Resource Graph's answers trail ARM
	// (resourcegraph.go): a change to an NSG shows in a query GraphLag
	// after the first query that could have seen it. 0 (the default)
	// answers from the store as it is.
	GraphLag time.Duration

	// FaultRate is the fraction of ARM requests that fail (500, 503, 429,
	// connection reset, or a long-running operation that ends Failed).
	FaultRate float64
	// FaultSeed makes the injected faults reproducible.
	FaultSeed int64

	// BusyMode is what a write to an NSG busy with another operation meets:
	// BusyQueue (the default, "" too) or BusyRefuse.
	BusyMode string
	// WriteQueue bounds the writes queued behind a busy NSG's running
	// operation under BusyQueue; 0 means DefaultWriteQueue.
	WriteQueue int
	// BusyStatus is the status of a write refused because its NSG is busy
	// (BusyRefuse) or its queue is full (BusyQueue): 429 (default,
	// RetryableErrorDueToAnotherOperation) or 409
	// (AnotherOperationInProgress).
	BusyStatus int

	// SeedFile is a JSON file of resources to preload, each an ARM object
	// with its id, loaded in this order:
	// {"networkSecurityGroups":[…], "virtualNetworks":[…],
	// "networkInterfaces":[…], "virtualMachines":[…],
	// "virtualNetworkAdminRules":[{"virtualNetworkId":"…","rules":[<EffectiveSecurityAdminRule>…]}]},
	// and "jitNetworkAccessPolicies":[…] (Defender for Cloud JIT policies
	// with their requests, after the VMs; defender.go). Each resource's id
	// names its subscription, which must be served; the file's
	// "subscriptions":[…] are served too, as if in Subscriptions.
	SeedFile string

	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger

	// Now is the server's clock, which decides when operations complete and
	// tokens expire; nil is time.Now. Tests pass a fake clock to see a
	// write's effect before and after its operation completes.
	Now func() time.Time
}

// Server is a running local Azure.
type Server struct {
	ca       *CA
	listener net.Listener
	http     *http.Server
	url      string
	host     string
	port     string
	names    map[string]bool // lower-case certificate names
	log      *slog.Logger
	now      func() time.Time

	tenantID, subscriptionID, clientID, clientSecret string
	// subscriptions are the served subscriptions, the default one first;
	// subscriptionIDs maps each lower-cased id to its canonical spelling.
	subscriptions   []string
	subscriptionIDs map[string]string
	busyStatus      int
	busyMode        string
	writeQueue      int

	// identityHeader and githubRequestToken guard the managed identity and
	// GitHub-style id-token endpoints, as their real counterparts do.
	identityHeader     string
	githubRequestToken string

	tokenKey *signingKey   // signs Entra ID access tokens
	oidcKey  *signingKey   // signs federated (workload identity) tokens
	identity identityState // identity.go: client certificates, Azure DevOps OIDC

	mu           sync.Mutex
	nsgs         map[string]*nsgEntry // by lower-case NSG id
	vnets        map[string]*resourceEntry[vnetState]
	nics         map[string]*resourceEntry[nicState]
	groups       map[string]*resourceGroup
	ops          map[string]*operation // by lower-case operation id
	conns        connectionTable
	events       []Event
	eventSeq     int64
	counters     counterState
	writeLatency time.Duration
	faultRate    float64
	rng          *mrand.Rand
	bucket       tokenBucket
	pageSize     int
	reads        *readLimiter // ARM's read limit (throttle.go)
	graph        graphState   // Resource Graph's quota and counters (resourcegraph.go)

	// Resources beside the NSG and network stores, each nil until first
	// used: virtual machines (vm.go) and network watchers (watcher.go) by
	// key, the regions whose automatic watcher was deleted, and the
	// effective security admin rules of virtual networks by vnetKey
	// (adminrules.go).
	vms           map[string]*vmState
	watchers      map[string]*watcherState
	watcherOptOut map[string]bool
	adminRules    map[string][]AdminRule
	jitPolicies   map[string]*jitPolicyState // Defender JIT policies (defender.go)

	// fresh holds connections that have not sent a request yet. Shutdown
	// leaves such connections open for seconds (clients open spare ones), so
	// Close closes them itself.
	connMu sync.Mutex
	fresh  map[net.Conn]bool
}

// Start starts a local Azure. It is listening and serving when it returns.
func Start(opts Options) (*Server, error) {
	s := &Server{
		log:            opts.Logger,
		now:            time.Now,
		tenantID:       orDefault(opts.TenantID, DefaultTenantID),
		subscriptionID: orDefault(opts.SubscriptionID, DefaultSubscriptionID),
		clientID:       orDefault(opts.ClientID, DefaultClientID),
		clientSecret:   orDefault(opts.ClientSecret, DefaultClientSecret),
		busyStatus:     opts.BusyStatus,
		busyMode:       orDefault(opts.BusyMode, BusyQueue),
		writeQueue:     opts.WriteQueue,
		nsgs:           make(map[string]*nsgEntry),
		vnets:          make(map[string]*resourceEntry[vnetState]),
		nics:           make(map[string]*resourceEntry[nicState]),
		groups:         make(map[string]*resourceGroup),
		ops:            make(map[string]*operation),
		conns:          newConnectionTable(),
		counters:       newCounterState(),
		writeLatency:   opts.WriteLatency,
		faultRate:      opts.FaultRate,
		rng:            mrand.New(mrand.NewPCG(uint64(opts.FaultSeed), 0x6a6974)), //nolint:gosec // reproducible faults, not security
		pageSize:       100,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Now != nil {
		s.now = opts.Now
	}
	switch s.busyStatus {
	case 0:
		s.busyStatus = http.StatusTooManyRequests
	case http.StatusTooManyRequests, http.StatusConflict:
	default:
		return nil, fmt.Errorf("busy status %d: want 429 or 409", opts.BusyStatus)
	}
	if s.busyMode != BusyQueue && s.busyMode != BusyRefuse {
		return nil, fmt.Errorf("busy mode %q: want %q or %q", opts.BusyMode, BusyQueue, BusyRefuse)
	}
	switch {
	case s.writeQueue == 0:
		s.writeQueue = DefaultWriteQueue
	case s.writeQueue < 0:
		return nil, fmt.Errorf("write queue %d: must not be negative", opts.WriteQueue)
	}
	if opts.WriteLatency < 0 || opts.WriteRate < 0 || opts.WriteBurst < 0 || opts.FaultRate < 0 || opts.FaultRate > 1 {
		return nil, errors.New("write latency, write rate and burst must not be negative, and the fault rate must be within [0, 1]")
	}
	if err := s.setSubscriptions(opts.Subscriptions); err != nil {
		return nil, err
	}
	s.bucket = newTokenBucket(opts.WriteRate, opts.WriteBurst, s.now())
	s.reads = newReadLimiter(opts.ReadRate, opts.ReadBurst)
	s.graph.lag = opts.GraphLag

	var err error
	if s.identityHeader, err = randomHex(16); err != nil {
		return nil, err
	}
	if s.githubRequestToken, err = randomHex(16); err != nil {
		return nil, err
	}
	if s.tokenKey, err = newSigningKey("accounts.local-azure"); err != nil {
		return nil, err
	}
	if s.oidcKey, err = newSigningKey("oidc.local-azure"); err != nil {
		return nil, err
	}
	s.ca = opts.CA
	if s.ca == nil {
		if s.ca, err = NewCA(); err != nil {
			return nil, err
		}
	}
	if opts.SeedFile != "" {
		if err := s.loadSeedFile(opts.SeedFile); err != nil {
			return nil, err
		}
	}

	names := append([]string{"localhost", "127.0.0.1", "::1"}, opts.Hostnames...)
	cert, err := s.ca.issue(names)
	if err != nil {
		return nil, err
	}
	s.names = make(map[string]bool, len(names))
	for _, n := range names {
		s.names[strings.ToLower(n)] = true
	}

	addr := orDefault(opts.Addr, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.listener = ln
	s.host = ln.Addr().String()
	_, s.port, _ = net.SplitHostPort(s.host)
	s.url = "https://" + s.host
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		// HTTP/1.1 only: an injected connection reset needs to hijack the
		// connection, which HTTP/2 does not allow.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:    s.trackConn,
	}
	tlsLn := tls.NewListener(ln, s.http.TLSConfig)
	go func() {
		if err := s.http.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("local Azure stopped serving", "error", err)
		}
	}()
	s.log.Info("local Azure listening", "url", s.url)
	return s, nil
}

// Close stops the server gracefully, waiting for in-flight requests.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.http.Shutdown(ctx) }()
	// Shutdown has closed the listener and idle connections; connections that
	// never sent a request would keep it waiting, so close them now.
	s.connMu.Lock()
	for c := range s.fresh {
		_ = c.Close()
	}
	s.connMu.Unlock()
	if err := <-shutdown; err != nil {
		return fmt.Errorf("shut down local Azure: %w", err)
	}
	return nil
}

func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if state == http.StateNew {
		if s.fresh == nil {
			s.fresh = map[net.Conn]bool{}
		}
		s.fresh[c] = true
		return
	}
	delete(s.fresh, c)
}

// URL is the server's base URL, "https://127.0.0.1:PORT".
func (s *Server) URL() string { return s.url }

// Host is "127.0.0.1:PORT", the value for ARM_METADATA_HOSTNAME.
func (s *Server) Host() string { return s.host }

// CA is the root that issued the server's certificate.
func (s *Server) CA() *CA { return s.ca }

// TenantID is the Entra ID tenant the server answers for.
func (s *Server) TenantID() string { return s.tenantID }

// SubscriptionID is the default subscription, the one Environ names.
func (s *Server) SubscriptionID() string { return s.subscriptionID }

// Subscriptions are all the subscriptions ARM serves, the default one first.
func (s *Server) Subscriptions() []string { return slices.Clone(s.subscriptions) }

// ClientID is the application (client) id the token endpoint accepts.
func (s *Server) ClientID() string { return s.clientID }

// ClientSecret is the client secret the token endpoint accepts.
func (s *Server) ClientSecret() string { return s.clientSecret }

// Environ returns the environment a client needs to use this server with
// azurerm's conventions: ARM_METADATA_HOSTNAME, SSL_CERT_FILE (caFile, which
// must hold CA().CertPEM()), ARM_TENANT_ID, ARM_CLIENT_ID, ARM_CLIENT_SECRET
// and ARM_SUBSCRIPTION_ID.
func (s *Server) Environ(caFile string) map[string]string {
	return map[string]string{
		"ARM_METADATA_HOSTNAME": s.host,
		"SSL_CERT_FILE":         caFile,
		"ARM_TENANT_ID":         s.tenantID,
		"ARM_CLIENT_ID":         s.clientID,
		"ARM_CLIENT_SECRET":     s.clientSecret,
		"ARM_SUBSCRIPTION_ID":   s.subscriptionID,
	}
}

// ManagedIdentityEndpoint returns the values of IDENTITY_ENDPOINT and
// IDENTITY_HEADER for an App Service style managed identity whose tokens
// this server issues and accepts.
func (s *Server) ManagedIdentityEndpoint() (endpoint, header string) {
	return s.url + "/_sim/msi/token", s.identityHeader
}

// GitHubIDTokenRequest returns the values of ACTIONS_ID_TOKEN_REQUEST_URL
// and ACTIONS_ID_TOKEN_REQUEST_TOKEN for a GitHub Actions style OIDC token
// endpoint whose tokens the token endpoint accepts as client assertions.
func (s *Server) GitHubIDTokenRequest() (url, token string) {
	return s.url + "/_sim/github/idtoken", s.githubRequestToken
}

// SetFaultRate changes the fraction of ARM requests that fail.
func (s *Server) SetFaultRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultRate = min(max(rate, 0), 1)
}

// SetWriteLatency changes how long later writes' operations take.
func (s *Server) SetWriteLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLatency = max(d, 0)
}

// SetBusyMode changes what later writes to a busy NSG meet: BusyQueue or
// BusyRefuse. Writes queued already still run.
func (s *Server) SetBusyMode(mode string) error {
	if mode != BusyQueue && mode != BusyRefuse {
		return fmt.Errorf("busy mode %q: want %q or %q", mode, BusyQueue, BusyRefuse)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busyMode = mode
	return nil
}

// ServeHTTP routes a request to the metadata endpoint, Entra ID, ARM or the
// simulator's control endpoints, counting and logging it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	kind := s.route(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if rec.hijacked {
		status = 0
	}
	s.countRequest(r.Method, kind, status)
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "kind", kind, "status", status, "duration", time.Since(start))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) string {
	p := r.URL.Path
	lp := strings.ToLower(p)
	switch {
	case lp == "/metadata/endpoints":
		s.serveMetadata(w, r)
		return "metadata"
	case lp == imdsTokenPath:
		s.serveIMDSToken(w, r)
		return "msi"
	case strings.HasPrefix(lp, "/_sim/"):
		return s.serveSim(w, r)
	case lp == "/providers/microsoft.resourcegraph/resources":
		return s.serveResourceGraph(w, r)
	case lp == "/subscriptions" || strings.HasPrefix(lp, "/subscriptions/") || lp == "/tenants":
		return s.serveARM(w, r)
	default:
		return s.serveEntra(w, r)
	}
}

// baseURL is the URL clients reached this server by, so that links the
// server hands out (token endpoints, polling URLs) work for a client that
// uses one of the extra host names.
func (s *Server) baseURL(r *http.Request) string {
	if r.Host == "" || !s.knownHost(r.Host) {
		return s.url
	}
	return "https://" + r.Host
}

// knownHost reports whether hostport names this server.
func (s *Server) knownHost(hostport string) bool {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		h, p = hostport, "443"
	}
	return p == s.port && s.names[strings.ToLower(strings.Trim(h, "[]"))]
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (for resets).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}
