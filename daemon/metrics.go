package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/opmond/opmond/schema"
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

// serviceCollector exposes the health statistics per service at scrape
// time. Services are taken in the order of their slash form; beyond
// [admin] max-service-series they are folded into service="other", so the
// number of series stays bounded.
type serviceCollector struct {
	health   *Health
	max      int
	requests *prometheus.Desc
	lastTs   *prometheus.Desc
}

func newServiceCollector(h *Health, max int) *serviceCollector {
	return &serviceCollector{
		health: h,
		max:    max,
		requests: prometheus.NewDesc("opmond_service_requests",
			"Requests of the service in the last health statistics period.", []string{"service", "result"}, nil),
		lastTs: prometheus.NewDesc("opmond_service_last_request_timestamp_seconds",
			"When the last successful or failed request of the service ended.", []string{"service", "result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.lastTs
}

// Collect implements prometheus.Collector.
func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.health.Snapshot(nil)
	var other schema.ServiceEvents
	folded := false
	for i := range snap.Services {
		s := &snap.Services[i]
		if i < c.max {
			c.emit(ch, s.Service.String(), s)
			continue
		}
		folded = true
		other.SuccessfulCount += s.SuccessfulCount
		other.UnsuccessfulCount += s.UnsuccessfulCount
		if s.HasLastSuccessful && (!other.HasLastSuccessful || s.LastSuccessfulMs > other.LastSuccessfulMs) {
			other.LastSuccessfulMs, other.HasLastSuccessful = s.LastSuccessfulMs, true
		}
		if s.HasLastUnsuccessful && (!other.HasLastUnsuccessful || s.LastUnsuccessfulMs > other.LastUnsuccessfulMs) {
			other.LastUnsuccessfulMs, other.HasLastUnsuccessful = s.LastUnsuccessfulMs, true
		}
	}
	if folded {
		c.emit(ch, "other", &other)
	}
}

func (c *serviceCollector) emit(ch chan<- prometheus.Metric, service string, s *schema.ServiceEvents) {
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(s.SuccessfulCount), service, "success")
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(s.UnsuccessfulCount), service, "failure")
	if s.HasLastSuccessful {
		ch <- prometheus.MustNewConstMetric(c.lastTs, prometheus.GaugeValue, float64(s.LastSuccessfulMs)/1000, service, "success")
	}
	if s.HasLastUnsuccessful {
		ch <- prometheus.MustNewConstMetric(c.lastTs, prometheus.GaugeValue, float64(s.LastUnsuccessfulMs)/1000, service, "failure")
	}
}
