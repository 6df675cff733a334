package daemon

import (
	"cmp"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/opmond/opmond/storage"
)

// metrics are the daemon's Prometheus metrics (interface.md, "Metrics"). Each
// daemon has its own registry so several can run in one test process.
type metrics struct {
	reg *prometheus.Registry
	// services holds the per-service series: the costly part of a scrape
	// (tens of ms at 10,000 services), which only /metrics needs.
	services         *prometheus.Registry
	storeRequests    *prometheus.CounterVec
	recordsStoredCtr prometheus.Counter
	quarantined      prometheus.Counter
	queryRequests    *prometheus.CounterVec
	storeDuration    prometheus.Histogram
	queryDuration    prometheus.Histogram
	commitDuration   prometheus.Histogram
	commitBytes      prometheus.Counter
	tlsFailures      *prometheus.CounterVec
	backgroundErrors *prometheus.CounterVec
	purge            *purgeMetrics
}

// Background tasks, as labelled in opmond_background_errors_total.
const (
	taskPurge      = "purge"
	taskGlobalConf = "globalconf"
)

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		services: prometheus.NewRegistry(),
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
		// A store request's answer waits for one commit, often for two (the
		// one in flight, then its own): commits are most of a store's time,
		// and a slow disk shows here first.
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opmond_commit_duration_seconds", Help: "Time of a database commit, from its start to the end of its fdatasync.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commitBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_commit_written_bytes_total", Help: "Bytes of database pages written by commits.",
		}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_tls_handshake_failures_total", Help: "Failed TLS handshakes on the X-Road interface, by reason.",
		}, []string{"reason"}),
		backgroundErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_background_errors_total", Help: "Failed runs of background tasks, by task.",
		}, []string{"task"}),
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
	m.backgroundErrors.WithLabelValues("purge")
	for _, r := range []string{"no_certificate", "unknown_certificate", "no_shared_cipher", "other"} {
		m.tlsFailures.WithLabelValues(r)
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opmond_build_info", Help: "A constant 1 labelled with the build's version, revision and Go version.",
		ConstLabels: prometheus.Labels{"version": Version, "revision": Commit, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	for _, task := range []string{taskPurge, taskGlobalConf} {
		m.backgroundErrors.WithLabelValues(task)
	}
	m.reg.MustRegister(buildInfo, m.backgroundErrors, m.storeRequests, m.recordsStoredCtr, m.quarantined, m.queryRequests,
		m.storeDuration, m.queryDuration, m.commitDuration, m.commitBytes, m.tlsFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.purge = newPurgeMetrics(m.reg)
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

// Hysteresis of the per-service series: a service outside the kept set
// takes the place of the least busy kept one only when it had at least
// hysteresisFactor times as many requests in the period and at least
// hysteresisMin more, so two services of about the same traffic do not swap
// their series at every scrape.
const (
	hysteresisFactor = 2
	hysteresisMin    = 10
)

// serviceCollector exposes the health statistics per service at scrape
// time: the counts of the period (gauges), the counts since start
// (counters, so that rate() works) and the last request times. At most
// [admin] max-service-series services have series of their own: the busiest
// of the period by request count, kept with hysteresis; the rest are
// folded into service="other".
type serviceCollector struct {
	health   *Health
	max      int
	requests *prometheus.Desc
	total    *prometheus.Desc
	lastTs   *prometheus.Desc

	mu   sync.Mutex
	kept map[string]bool
	// seen is each service's total at the previous scrape, so that
	// "other" grows by what folded services added and never goes down when
	// a service enters or leaves the kept set.
	seen       map[string][2]uint64
	otherTotal [2]uint64
	otherShown bool
}

func newServiceCollector(h *Health, max int) *serviceCollector {
	return &serviceCollector{
		health: h,
		max:    max,
		requests: prometheus.NewDesc("opmond_service_requests",
			"Requests of the service in the last health statistics period.", []string{"service", "result"}, nil),
		total: prometheus.NewDesc("opmond_service_requests_total",
			"Requests of the service since the daemon started (Producer records, as the health data).", []string{"service", "result"}, nil),
		lastTs: prometheus.NewDesc("opmond_service_last_request_timestamp_seconds",
			"When the last successful or failed request of the service ended.", []string{"service", "result"}, nil),
		kept: map[string]bool{},
		seen: map[string][2]uint64{},
	}
}

// Describe implements prometheus.Collector.
func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.total
	ch <- c.lastTs
}

// Collect implements prometheus.Collector.
func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.health.counts()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.choose(counts)
	var other serviceCounts
	folded := false
	for i := range counts {
		s := &counts[i]
		prev := c.seen[s.service]
		c.seen[s.service] = [2]uint64{s.totalOK, s.totalFail}
		if c.kept[s.service] {
			c.emit(ch, s.service, s)
			continue
		}
		folded = true
		c.otherTotal[0] += s.totalOK - prev[0]
		c.otherTotal[1] += s.totalFail - prev[1]
		other.ok += s.ok
		other.fail += s.fail
		if s.ev.HasLastSuccessful && (!other.ev.HasLastSuccessful || s.ev.LastSuccessfulMs > other.ev.LastSuccessfulMs) {
			other.ev.LastSuccessfulMs, other.ev.HasLastSuccessful = s.ev.LastSuccessfulMs, true
		}
		if s.ev.HasLastUnsuccessful && (!other.ev.HasLastUnsuccessful || s.ev.LastUnsuccessfulMs > other.ev.LastUnsuccessfulMs) {
			other.ev.LastUnsuccessfulMs, other.ev.HasLastUnsuccessful = s.ev.LastUnsuccessfulMs, true
		}
	}
	// Once shown, "other" stays, so its counter does not vanish and return.
	if folded || c.otherShown {
		c.otherShown = true
		other.totalOK, other.totalFail = c.otherTotal[0], c.otherTotal[1]
		c.emit(ch, "other", &other)
	}
}

// choose updates the kept set from this scrape's counts: services that are
// gone leave it, free places go to the busiest others, and then a busier
// outsider replaces the least busy kept service only past the hysteresis.
func (c *serviceCollector) choose(counts []serviceCounts) {
	present := make(map[string]bool, len(counts))
	var in, out []*serviceCounts
	for i := range counts {
		s := &counts[i]
		present[s.service] = true
		if c.kept[s.service] {
			in = append(in, s)
		} else {
			out = append(out, s)
		}
	}
	for k := range c.kept {
		if !present[k] {
			delete(c.kept, k)
		}
	}
	busier := func(a, b *serviceCounts) int {
		if d := cmp.Compare(b.ok+b.fail, a.ok+a.fail); d != 0 {
			return d
		}
		return cmp.Compare(a.service, b.service)
	}
	slices.SortFunc(out, busier)
	for len(c.kept) < c.max && len(out) > 0 {
		c.kept[out[0].service] = true
		out = out[1:]
	}
	slices.SortFunc(in, func(a, b *serviceCounts) int { return busier(b, a) }) // least busy first
	for i := 0; i < len(in) && i < len(out); i++ {
		weak, strong := in[i].ok+in[i].fail, out[i].ok+out[i].fail
		if strong < hysteresisFactor*weak || strong-weak < hysteresisMin {
			break
		}
		delete(c.kept, in[i].service)
		c.kept[out[i].service] = true
	}
}

func (c *serviceCollector) emit(ch chan<- prometheus.Metric, service string, s *serviceCounts) {
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(s.ok), service, "success")
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(s.fail), service, "failure")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(s.totalOK), service, "success")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(s.totalFail), service, "failure")
	if s.ev.HasLastSuccessful {
		ch <- prometheus.MustNewConstMetric(c.lastTs, prometheus.GaugeValue, float64(s.ev.LastSuccessfulMs)/1000, service, "success")
	}
	if s.ev.HasLastUnsuccessful {
		ch <- prometheus.MustNewConstMetric(c.lastTs, prometheus.GaugeValue, float64(s.ev.LastUnsuccessfulMs)/1000, service, "failure")
	}
}

// stateCollector reports, once per scrape, what alerts watch besides the
// counters: readiness (the /readyz answer), the database's record counts
// (three values from the meta bucket, whatever the number of records) and
// the space left on the filesystem holding the database.
type stateCollector struct {
	db                   *storage.DB
	notReady             func() string
	ready                *prometheus.Desc
	records, quarantined *prometheus.Desc
	fsAvail, fsSize      *prometheus.Desc
}

func newStateCollector(db *storage.DB, notReady func() string) *stateCollector {
	return &stateCollector{
		db:       db,
		notReady: notReady,
		ready:    prometheus.NewDesc("opmond_ready", "1 when /readyz answers ready, else 0.", nil, nil),
		records:  prometheus.NewDesc("opmond_database_records", "Records in the database.", nil, nil),
		quarantined: prometheus.NewDesc("opmond_quarantine_records",
			"Quarantined records in the database.", nil, nil),
		fsAvail: prometheus.NewDesc("opmond_database_filesystem_avail_bytes",
			"Bytes available to the daemon on the filesystem of the database.", nil, nil),
		fsSize: prometheus.NewDesc("opmond_database_filesystem_size_bytes",
			"Size of the filesystem of the database.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.records, c.quarantined, c.fsAvail, c.fsSize} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A closed or failing database
// leaves its series out rather than reporting zero.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ready := 0.0
	if c.notReady() == "" {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
	if st, err := c.db.Stats(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(st.Records))
		ch <- prometheus.MustNewConstMetric(c.quarantined, prometheus.GaugeValue, float64(st.Quarantined))
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(c.db.Path()), &fs); err == nil {
		ch <- prometheus.MustNewConstMetric(c.fsAvail, prometheus.GaugeValue, float64(fs.Bavail)*float64(fs.Bsize))
		ch <- prometheus.MustNewConstMetric(c.fsSize, prometheus.GaugeValue, float64(fs.Blocks)*float64(fs.Bsize))
	}
}

// commit observes one database commit.
func (m *metrics) commit(c storage.Commit) {
	m.commitDuration.Observe(c.Duration.Seconds())
	m.commitBytes.Add(float64(c.Bytes))
}

// gatherer is everything /metrics exposes.
func (m *metrics) gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{m.reg, m.services}
}
