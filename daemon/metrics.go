package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the daemon's Prometheus metrics (interface.md, "Metrics"). Each
// daemon has its own registry so several can run in one test process.
type metrics struct {
	reg              *prometheus.Registry
	storeRequests    *prometheus.CounterVec
	recordsStoredCtr prometheus.Counter
	quarantined      prometheus.Counter
	queryRequests    *prometheus.CounterVec
	storeDuration    prometheus.Histogram
	queryDuration    prometheus.Histogram
	tlsFailures      *prometheus.CounterVec
	purgeRuns        prometheus.Counter
	recordsPurged    prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		storeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_store_requests_total", Help: "Store requests answered, by result.",
		}, []string{"result"}),
		recordsStoredCtr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_records_stored_total", Help: "Records stored.",
		}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_records_quarantined_total", Help: "Records kept in quarantine because they could not be stored.",
		}),
		queryRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_query_requests_total", Help: "Query requests answered, by operation and result.",
		}, []string{"operation", "result"}),
		storeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opmond_store_duration_seconds", Help: "Time to answer a store request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		queryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opmond_query_duration_seconds", Help: "Time to answer a query request.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_tls_handshake_failures_total", Help: "Failed TLS handshakes on the X-Road interface, by reason.",
		}, []string{"reason"}),
		purgeRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_purge_runs_total", Help: "Retention purge runs.",
		}),
		recordsPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_records_purged_total", Help: "Records deleted by the retention purge.",
		}),
	}
	// Pre-create label values so dashboards see zeros, not gaps.
	for _, r := range []string{"ok", "error"} {
		m.storeRequests.WithLabelValues(r)
	}
	for _, op := range []string{opOperationalData, opHealthData, opOther} {
		for _, r := range []string{"ok", "fault"} {
			m.queryRequests.WithLabelValues(op, r)
		}
	}
	for _, r := range []string{"no_certificate", "unknown_certificate", "no_shared_cipher", "other"} {
		m.tlsFailures.WithLabelValues(r)
	}
	m.reg.MustRegister(m.storeRequests, m.recordsStoredCtr, m.quarantined, m.queryRequests,
		m.storeDuration, m.queryDuration, m.tlsFailures, m.purgeRuns, m.recordsPurged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeStore(ok bool, d time.Duration) {
	r := "ok"
	if !ok {
		r = "error"
	}
	m.storeRequests.WithLabelValues(r).Inc()
	m.storeDuration.Observe(d.Seconds())
}

func (m *metrics) recordsStored(stored, quarantined int) {
	m.recordsStoredCtr.Add(float64(stored))
	m.quarantined.Add(float64(quarantined))
}

func (m *metrics) observeQuery(op string, ok bool, d time.Duration) {
	r := "ok"
	if !ok {
		r = "fault"
	}
	m.queryRequests.WithLabelValues(op, r).Inc()
	m.queryDuration.Observe(d.Seconds())
}

func (m *metrics) tlsFailure(reason string) { m.tlsFailures.WithLabelValues(reason).Inc() }
