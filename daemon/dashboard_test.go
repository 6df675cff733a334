package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/prometheus/client_golang/prometheus"
)

func TestDashboardAssets(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	tests := []struct {
		name, path string
		status     int
		typ        string // Content-Type prefix
		body       string // a substring of the body
	}{
		{"page", "/", 200, "text/html", `<script src="/ui/app.js" defer></script>`},
		{"script", "/ui/app.js", 200, "text/javascript", "REFRESH_MS"},
		{"style", "/ui/style.css", 200, "text/css", "--bad"},
		{"chart library", "/ui/vendor/uPlot.iife.min.js", 200, "text/javascript", "uPlot (v1.6.32)"},
		{"chart style", "/ui/vendor/uPlot.min.css", 200, "text/css", ".uplot"},
		{"no folder listing", "/ui/", 404, "", ""},
		{"no folder listing below", "/ui/vendor/", 404, "", ""},
		{"page only at /", "/ui/index.html", 404, "", ""},
		{"unknown asset", "/ui/nope.js", 404, "", ""},
		{"unknown page", "/nope", 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := doRequest(t, http.MethodGet, td.adminURL+tc.path, "", nil)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, tc.typ) {
				t.Errorf("Content-Type %q, want %s", ct, tc.typ)
			}
			if !strings.Contains(string(b), tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
			if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") || strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

// The page works offline: everything it loads is under /ui/ and nothing in
// it runs inline.
func TestDashboardPageSelfContained(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	_, _, b := doRequest(t, http.MethodGet, td.adminURL+"/", "", nil)
	page := string(b)
	for _, bad := range []string{"http://", "https://", "//cdn", " on", "style=", "<style", "javascript:"} {
		if bad == " on" {
			// inline handlers: onclick=, onload=, ...
			for _, attr := range []string{" onclick=", " onload=", " onchange=", " onsubmit=", " oninput="} {
				if strings.Contains(page, attr) {
					t.Errorf("page has an inline handler %q", attr)
				}
			}
			continue
		}
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if strings.Count(page, "<script") != strings.Count(page, `<script src="/ui/`) {
		t.Error("a script that is not an embedded file")
	}
}

func TestDashboardStatus(t *testing.T) {
	clock := newTestClock(1_760_000_000)
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.OpMonitor.RecordsAvailableOffset = 5
	td := startDaemon(t, cfg, clock.Now)
	td.store(jrec("requestInTs", int64(1_760_000_000_000)), jrec("securityServerType", "Gateway"))
	clock.Advance(90 * time.Second)

	status, h, b := doRequest(t, http.MethodGet, td.adminURL+"/ui/api/status", "", nil)
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, %s", status, h.Get("Content-Type"))
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := map[string]any{
		"version": Version, "now": 1_760_000_090.0, "startedAt": 1_760_000_000.0, "uptimeSeconds": 90.0,
		"recordCount": 1.0, "recordsStoredTotal": 1.0, "recordsQuarantinedTotal": 1.0,
		"storeRequestsOk": 1.0, "storeRequestsError": 0.0,
		"scheme": "http", "recordsAvailableOffsetSeconds": 5.0, "maxRecordsInPayload": 10000.0,
		"healthStatisticsPeriodSeconds": 600.0, "keepRecordsForDays": 7.0,
	}
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	// The start-up purge runs beside the first requests: 0 or 1 runs so far.
	if n, ok := s["purgeRuns"].(float64); !ok || n > 1 {
		t.Errorf("purgeRuns = %v", s["purgeRuns"])
	}
	if _, ok := s["lastPurge"]; !ok {
		t.Error("no lastPurge field")
	}
	if n, _ := s["databaseBytes"].(float64); n <= 0 {
		t.Errorf("databaseBytes = %v", s["databaseBytes"])
	}
	g, _ := s["globalConf"].(map[string]any)
	if g["mode"] != "standalone" || g["valid"] != true || g["expiry"] != nil {
		t.Errorf("globalConf = %v", g)
	}
	tls, _ := s["tlsHandshakeFailures"].(map[string]any)
	if len(tls) != 4 || tls["unknown_certificate"] != 0.0 {
		t.Errorf("tlsHandshakeFailures = %v", tls)
	}
}

// In static mode the status says whether the configuration is valid and
// when it expires.
func TestDashboardStatusGlobalConf(t *testing.T) {
	clock := newTestClock(time.Now().Unix())
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	expiry := clock.Now().Add(time.Hour)
	writeGlobalConf(t, cfg.GlobalConf.Directory, expiry, monitoringID)
	td := startDaemon(t, cfg, clock.Now)

	get := func() map[string]any {
		_, _, b := doRequest(t, http.MethodGet, td.adminURL+"/ui/api/status", "", nil)
		var s struct{ GlobalConf map[string]any }
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s.GlobalConf
	}
	g := get()
	if g["mode"] != "static" || g["valid"] != true || g["expiry"] != float64(expiry.Unix()) || g["lastLoad"] == nil {
		t.Errorf("valid configuration: %v", g)
	}
	clock.Advance(2 * time.Hour)
	g = get()
	if g["valid"] != false || g["error"] == nil || g["error"] == "" {
		t.Errorf("expired configuration: %v", g)
	}
}

// The status reads metrics by name, so a metric registered later (such as
// the last purge time) shows up without the status knowing its owner.
func TestUIMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "opmond_purge_last_run_timestamp_seconds", Help: "h"})
	byReason := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opmond_tls_handshake_failures_total", Help: "h"}, []string{"reason"})
	reg.MustRegister(last, byReason)
	m := gatherMetrics(reg)
	if got := m.time("opmond_purge_last_run_timestamp_seconds"); got != nil {
		t.Errorf("unset gauge: %v, want nil", *got)
	}
	if got := m.time("opmond_no_such_metric"); got != nil {
		t.Errorf("absent metric: %v, want nil", *got)
	}
	last.Set(1_760_000_123.9)
	byReason.WithLabelValues("no_certificate").Add(2)
	byReason.WithLabelValues("other").Add(1)
	m = gatherMetrics(reg)
	if got := m.time("opmond_purge_last_run_timestamp_seconds"); got == nil || *got != 1_760_000_123 {
		t.Errorf("last purge %v", got)
	}
	if got := m.int("opmond_tls_handshake_failures_total", "", ""); got != 3 {
		t.Errorf("sum %d, want 3", got)
	}
	if got := m.int("opmond_tls_handshake_failures_total", "reason", "other"); got != 1 {
		t.Errorf("reason=other %d, want 1", got)
	}
	if got := m.byLabel("opmond_tls_handshake_failures_total", "reason"); len(got) != 2 || got["no_certificate"] != 2 {
		t.Errorf("by reason %v", got)
	}
}

// BenchmarkUIStatus is the dashboard's status call with 10,000 services in
// the health statistics (the page asks for it every 10 s).
func BenchmarkUIStatus(b *testing.B) {
	dir := b.TempDir()
	cfg := Default()
	cfg.OpMonitor.Database = dir + "/op.db"
	cfg.GlobalConf.Directory = dir + "/none"
	cfg.Admin.Listen = ""
	cfg.Log.Level = "error"
	d, err := New(cfg, Options{LogWriter: io.Discard, Listener: mustListen(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	recs := make([]schema.Record, 10_000)
	for i := range recs {
		recs[i] = rec(b, fmt.Sprintf("EE/COM/1/SUB/svc%05d", i), i%7 != 0, 1, 2)
	}
	d.health.Add(recs)
	started := time.Now()
	for b.Loop() {
		d.uiStatus(started)
	}
}
