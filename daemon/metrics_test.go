package daemon

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opmond/opmond/schema"
)

// scrape reads /metrics with Prometheus's own text parser, so that a
// malformed exposition fails the test.
func scrape(t *testing.T, td *testDaemon) map[string]*dto.MetricFamily {
	t.Helper()
	status, _, b := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	if status != 200 {
		t.Fatalf("/metrics: status %d", status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the series of name with exactly the given
// labels (pairs), and whether it exists.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(want) {
			continue
		}
		for _, l := range m.Label {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// services lists the service label values of a family.
func services(fams map[string]*dto.MetricFamily, name string) map[string]bool {
	out := map[string]bool{}
	if f := fams[name]; f != nil {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "service" {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out
}

func TestMetricsBuildInfoAndDatabase(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	td.store(jrec(), jrec(), jrec("securityServerType", "Bogus"))
	fams := scrape(t, td)
	if v, ok := sample(fams, "opmond_build_info", "version", Version, "revision", Commit, "goversion", runtime.Version()); !ok || v != 1 {
		t.Errorf("opmond_build_info: %v %v", v, ok)
	}
	if v, ok := sample(fams, "opmond_database_records"); !ok || v != 2 {
		t.Errorf("opmond_database_records = %v (%v), want 2", v, ok)
	}
	if v, ok := sample(fams, "opmond_quarantine_records"); !ok || v != 1 {
		t.Errorf("opmond_quarantine_records = %v (%v), want 1", v, ok)
	}
	if v, ok := sample(fams, "opmond_ready"); !ok || v != 1 {
		t.Errorf("opmond_ready = %v (%v), want 1", v, ok)
	}
	avail, ok1 := sample(fams, "opmond_database_filesystem_avail_bytes")
	size, ok2 := sample(fams, "opmond_database_filesystem_size_bytes")
	if !ok1 || !ok2 || avail <= 0 || size < avail {
		t.Errorf("filesystem: avail %v (%v), size %v (%v)", avail, ok1, size, ok2)
	}
	for name, typ := range map[string]dto.MetricType{
		"opmond_database_records":       dto.MetricType_GAUGE,
		"opmond_quarantine_records":     dto.MetricType_GAUGE,
		"opmond_build_info":             dto.MetricType_GAUGE,
		"opmond_service_requests_total": dto.MetricType_COUNTER,
		"opmond_records_stored_total":   dto.MetricType_COUNTER,
	} {
		if f := fams[name]; f != nil && f.GetType() != typ {
			t.Errorf("%s is %v, want %v", name, f.GetType(), typ)
		}
	}
}

// TestServiceSeriesBusiestWithHysteresis: the kept services are the
// busiest of the period; an outsider takes a place only when clearly
// busier (twice the requests and 10 more), so near-equal services do not
// flap; "other" and the _total counters never go down.
func TestServiceSeriesBusiestWithHysteresis(t *testing.T) {
	clock := newTestClock(1760004000)
	cfg := testConfig(t, t.TempDir())
	cfg.Admin.MaxServiceSeries = 2
	cfg.OpMonitor.HealthStatisticsPeriod = 60
	td := startDaemon(t, cfg, clock.Now)
	const prefix = "EE/COM/1/SUB/"
	send := func(code string, n int) {
		recs := make([]map[string]any, n)
		for i := range recs {
			recs[i] = withParty(jrec("securityServerType", "Producer", "serviceCode", code, "succeeded", true,
				"responseOutTs", clock.Now().UnixMilli()), "service", "EE/COM/1/SUB")
		}
		td.store(recs...)
	}
	kept := func(fams map[string]*dto.MetricFamily) string {
		s := services(fams, "opmond_service_requests")
		var out []string
		for _, c := range []string{"a", "b", "c", "z"} {
			if s[prefix+c] {
				out = append(out, c)
			}
		}
		if s["other"] {
			out = append(out, "other")
		}
		return strings.Join(out, ",")
	}
	var lastOther float64
	check := func(step, wantKept string, wantOtherTotal float64) map[string]*dto.MetricFamily {
		t.Helper()
		fams := scrape(t, td)
		if got := kept(fams); got != wantKept {
			t.Errorf("%s: series for %q, want %q", step, got, wantKept)
		}
		other, _ := sample(fams, "opmond_service_requests_total", "service", "other", "result", "success")
		if other != wantOtherTotal || other < lastOther {
			t.Errorf("%s: other total %v, want %v (was %v)", step, other, wantOtherTotal, lastOther)
		}
		lastOther = other
		return fams
	}

	// "z" sorts last but is busiest: the cap is by traffic, not by name.
	send("z", 30)
	send("b", 20)
	send("a", 5)
	fams0 := check("start", "b,z,other", 5)
	if f := fams0["opmond_service_requests_total"]; f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("opmond_service_requests_total is %v", f.GetType())
	}

	send("a", 30) // a: 35 in the period, b: 20 — not twice as many
	fams := check("a busier, within the hysteresis", "b,z,other", 35)
	if v, _ := sample(fams, "opmond_service_requests", "service", "other", "result", "success"); v != 35 {
		t.Errorf("other in the period: %v, want 35", v)
	}

	send("a", 10) // a: 45 ≥ 2 × 20 and 25 more: a takes b's place
	fams = check("a clearly busier", "a,z,other", 35)
	if v, _ := sample(fams, "opmond_service_requests_total", "service", prefix+"a", "result", "success"); v != 45 {
		t.Errorf("a's total %v, want 45", v)
	}

	send("b", 30) // b: 50 against a: 45 — busier, but not enough to swap back
	check("b back above a", "a,z,other", 65)

	// After the period, the gauges fall to zero and the counters stay.
	clock.Advance(2 * time.Minute)
	fams = check("after the period", "a,z,other", 65)
	if v, _ := sample(fams, "opmond_service_requests", "service", prefix+"z", "result", "success"); v != 0 {
		t.Errorf("z in the period after it: %v", v)
	}
	if v, _ := sample(fams, "opmond_service_requests_total", "service", prefix+"z", "result", "success"); v != 30 {
		t.Errorf("z's total %v, want 30", v)
	}
}

// TestReadyMetric: opmond_ready follows /readyz (here: an expired static
// global configuration), and the expiry is exported for alerting.
func TestReadyMetric(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.GlobalConf.Directory = dir + "/globalconf"
	expired := time.Now().Add(-time.Minute)
	writeGlobalConf(t, cfg.GlobalConf.Directory, expired, monitoringID)
	td := startDaemon(t, cfg, time.Now)
	fams := scrape(t, td)
	if v, ok := sample(fams, "opmond_ready"); !ok || v != 0 {
		t.Errorf("opmond_ready = %v (%v), want 0", v, ok)
	}
	if v, _ := sample(fams, "opmond_globalconf_expiry_timestamp_seconds"); v != float64(expired.Unix()) {
		t.Errorf("expiry %v, want %d", v, expired.Unix())
	}
}

// BenchmarkServiceCollector: one scrape's per-service work with 10,000
// services tracked and the default cap of 1,000 series.
func BenchmarkServiceCollector(b *testing.B) {
	h := NewHealth(10*time.Minute, time.Now)
	recs := make([]schema.Record, 10_000)
	for i := range recs {
		recs[i] = rec(b, fmt.Sprintf("EE/COM/1/SUB/svc%05d", i), i%7 != 0, 1, 2)
	}
	h.Add(recs)
	c := newServiceCollector(h, 1000)
	ch := make(chan prometheus.Metric, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
}

// TestMetricsCommitsAndSealLag: every commit of a store is counted with its
// time and the bytes it wrote, and the sealer's lag is exported.
func TestMetricsCommitsAndSealLag(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	before := scrape(t, td)
	const stores = 3
	for range stores {
		td.store(jrec(), jrec())
	}
	fams := scrape(t, td)
	count := func(fams map[string]*dto.MetricFamily) (uint64, float64) {
		f := fams["opmond_commit_duration_seconds"]
		if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.Metric) != 1 {
			t.Fatalf("opmond_commit_duration_seconds: %v", f)
		}
		h := f.Metric[0].GetHistogram()
		return h.GetSampleCount(), h.GetSampleSum()
	}
	n0, _ := count(before)
	n1, sum := count(fams)
	// Each store request waits for its own commit; sequential ones share none.
	if n1-n0 < stores || sum <= 0 {
		t.Errorf("commits: %d more (sum %v s), want at least %d", n1-n0, sum, stores)
	}
	b0, _ := sample(before, "opmond_commit_written_bytes_total")
	b1, ok := sample(fams, "opmond_commit_written_bytes_total")
	// A commit writes at least one page (1 KiB).
	if !ok || b1-b0 < stores*1024 {
		t.Errorf("opmond_commit_written_bytes_total grew by %v (%v)", b1-b0, ok)
	}
	if v, ok := sample(fams, "opmond_seal_lag_seconds"); !ok || v < 0 || fams["opmond_seal_lag_seconds"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("opmond_seal_lag_seconds = %v (%v)", v, ok)
	}
	// Pacing itself is storage's test (TestQueriesPaceUnderStores).
	if v, ok := sample(fams, "opmond_query_paced_seconds_total"); !ok || v < 0 || fams["opmond_query_paced_seconds_total"].GetType() != dto.MetricType_COUNTER {
		t.Errorf("opmond_query_paced_seconds_total = %v (%v)", v, ok)
	}
}
