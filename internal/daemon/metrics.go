package daemon

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
)

// Metrics are jitd's Prometheus metrics, on a registry of their own so that
// nothing registered globally by a library leaks into /metrics.
type Metrics struct {
	registry *prometheus.Registry

	buildInfo         *prometheus.GaugeVec
	activeGrants      prometheus.Gauge
	activeByPolicy    *prometheus.GaugeVec
	nextExpiry        prometheus.Gauge
	nsgs              prometheus.Gauge
	closes            *prometheus.CounterVec
	restores          *prometheus.CounterVec
	findings          *prometheus.CounterVec
	openFindings      *prometheus.GaugeVec
	reconcileDuration *prometheus.HistogramVec
	lastSuccess       prometheus.Gauge
	closeLag          prometheus.Histogram
	closeLead         prometheus.Gauge
	errors            *prometheus.CounterVec
	verifyProbes      *prometheus.CounterVec
	inventoryQueries  prometheus.Counter
	inventoryWait     prometheus.Counter
	inventoryReads    prometheus.Counter
}

// Operations counted by jitd_errors_total.
const (
	opDiscover = "discover"
	opList     = "list"
	opDelete   = "delete"
	opRestore  = "restore"
	opAudit    = "audit"
	opAdmin    = "admin_rules"
	opVerify   = "verify"
)

// NewMetrics registers jitd's metrics, with the Go runtime and process
// collectors, on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitd_build_info",
			Help: "Always 1; the labels say which jitd runs.",
		}, []string{"version", "goversion"}),
		activeGrants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitd_active_grants",
			Help: "Grant rules open and valid in scope, as of each NSG's last reconcile.",
		}),
		activeByPolicy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitd_active_grants_by_policy",
			Help: "Grant rules open and valid in scope, by policy (every policy seen intact in scope has a series, 0 without grants).",
		}, []string{"policy"}),
		nextExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitd_next_expiry_timestamp_seconds",
			Help: "Unix time of the earliest expiry among the open grants in scope; 0 when none is open.",
		}),
		nsgs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitd_watched_nsgs",
			Help: "Network security groups in scope at the last full resync.",
		}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitd_closes_total",
			Help: "Grant rules closed, by reason (expired or a fail-closed reason) and result (success, failure, dry_run).",
		}, []string{"reason", "result"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitd_restores_total",
			Help: "Partial policies whose missing guard and deny-all rules were written back (one per policy and NSG), by result (success, failure, dry_run).",
		}, []string{"result"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitd_findings_total",
			Help: "Findings reported (each counted once while it persists), by kind.",
		}, []string{"kind"}),
		openFindings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitd_open_findings",
			Help: "Findings present at each NSG's last reconcile, by kind.",
		}, []string{"kind"}),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitd_reconcile_duration_seconds",
			Help:    "Duration of reconcile passes: full resyncs (scope=full) and timer-driven reconciles of single NSGs (scope=nsg).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"scope"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitd_last_successful_pass_timestamp_seconds",
			Help: "Unix time of the end of the last full resync that had no error.",
		}),
		closeLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitd_expiry_to_close_lag_seconds",
			Help: "Time from a grant's expiry to the completed deletion of its rule, as jitd sees the write end; negative when the " +
				"close, started ahead of the expiry by the close lead, ended before it (never by more than the lead).",
			Buckets: []float64{-30, -10, -5, -2, -1, -.5, -.1, 0, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 900},
		}),
		closeLead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitd_close_lead_seconds",
			Help: "How long before a grant's expiry jitd starts the write that closes it: the median duration of its recent close writes, at most --max-close-lead; 0 until a close write has been seen.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitd_errors_total",
			Help: "Failed operations, by operation (discover, list, delete, restore, audit, admin_rules, verify).",
		}, []string{"op"}),
		verifyProbes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitd_verify_probes_total",
			Help: "IP flow verify questions asked with --verify, by result (match, mismatch, error).",
		}, []string{"result"}),
		inventoryQueries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitd_inventory_queries_total",
			Help: "Queries (pages) sent to the inventory, Azure Resource Graph with --discovery resource-graph.",
		}),
		inventoryWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitd_inventory_quota_wait_seconds_total",
			Help: "Time spent waiting for Azure Resource Graph's user quota to reset before a query.",
		}),
		inventoryReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitd_inventory_reads_total",
			Help: "NSGs read through ARM on the inventory's word: new, changed or missing from its answer, or holding grants at a full resync.",
		}),
	}
	m.registry.MustRegister(m.buildInfo, m.activeGrants, m.activeByPolicy, m.nextExpiry, m.nsgs, m.closes, m.restores, m.findings, m.openFindings,
		m.reconcileDuration, m.lastSuccess, m.closeLag, m.closeLead, m.errors, m.verifyProbes,
		m.inventoryQueries, m.inventoryWait, m.inventoryReads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the error series so that rate() and alerts see zeros
	// rather than absent series.
	for _, op := range []string{opDiscover, opList, opDelete, opRestore, opAudit, opAdmin, opVerify} {
		m.errors.WithLabelValues(op)
	}
	for _, r := range []string{"match", "mismatch", "error"} {
		m.verifyProbes.WithLabelValues(r)
	}
	for _, k := range findingKinds {
		m.findings.WithLabelValues(string(k))
		m.openFindings.WithLabelValues(string(k))
	}
	// Every counter starts at 0 for every label value it can take, so that
	// increase() sees the first event (a series born at 1 has no increase).
	for _, r := range []audit.Result{audit.ResultSuccess, audit.ResultFailure, audit.ResultDryRun} {
		m.restores.WithLabelValues(string(r))
		for _, reason := range closeReasons {
			m.closes.WithLabelValues(string(reason), string(r))
		}
	}
	m.SetVersion("dev")
	return m
}

// SetVersion sets jitd_build_info's version label (the release's version;
// "dev" until set).
func (m *Metrics) SetVersion(version string) {
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// Registry returns the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) observeDuration(scope string, d time.Duration) {
	m.reconcileDuration.WithLabelValues(scope).Observe(d.Seconds())
}

// observeInventory counts what one inventory answer cost.
func (m *Metrics) observeInventory(s InventoryStats) {
	m.inventoryQueries.Add(float64(s.Queries))
	m.inventoryWait.Add(s.QuotaWait.Seconds())
}
