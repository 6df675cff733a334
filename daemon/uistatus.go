package daemon

import (
	"encoding/json"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/opmond/opmond/anchor"
)

// uiStatus is the daemon's own state for the dashboard (GET /ui/api/status):
// what the page shows about the daemon, and the settings the page needs to
// keep its API calls inside the daemon's rules. Times are Unix seconds; a
// value the daemon does not know is null.
type uiStatus struct {
	Version       string `json:"version"`
	Commit        string `json:"commit"`
	GoVersion     string `json:"goVersion"`
	Now           int64  `json:"now"`
	StartedAt     int64  `json:"startedAt"`
	UptimeSeconds int64  `json:"uptimeSeconds"`

	DatabaseBytes           *int64 `json:"databaseBytes"`
	RecordCount             *int64 `json:"recordCount"`
	RecordsStoredTotal      int64  `json:"recordsStoredTotal"`
	RecordsQuarantinedTotal int64  `json:"recordsQuarantinedTotal"`
	StoreRequestsOK         int64  `json:"storeRequestsOk"`
	StoreRequestsError      int64  `json:"storeRequestsError"`
	PurgeRuns               int64  `json:"purgeRuns"`
	RecordsPurgedTotal      int64  `json:"recordsPurgedTotal"`
	// LastPurge is opmond_purge_last_run_timestamp_seconds: null while the
	// daemon does not export it or no run has ended.
	LastPurge *int64 `json:"lastPurge"`

	GlobalConf           uiGlobalConf     `json:"globalConf"`
	Scheme               string           `json:"scheme"`
	TLSHandshakeFailures map[string]int64 `json:"tlsHandshakeFailures"`

	RecordsAvailableOffsetSeconds int `json:"recordsAvailableOffsetSeconds"`
	MaxRecordsInPayload           int `json:"maxRecordsInPayload"`
	HealthStatisticsPeriodSeconds int `json:"healthStatisticsPeriodSeconds"`
	KeepRecordsForDays            int `json:"keepRecordsForDays"`
}

type uiGlobalConf struct {
	Mode     string `json:"mode"`
	Valid    bool   `json:"valid"`
	Error    string `json:"error,omitempty"`
	Expiry   *int64 `json:"expiry"`
	LastLoad *int64 `json:"lastLoad"`
}

func (d *Daemon) serveUIStatus(started time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := json.Marshal(d.uiStatus(started))
		if err != nil { // a plain struct of numbers and strings always marshals
			writeJSON(w, http.StatusInternalServerError, `{"error":"status"}`)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, string(b))
	}
}

func (d *Daemon) uiStatus(started time.Time) uiStatus {
	now := d.now()
	o := &d.cfg.OpMonitor
	m := gatherMetrics(d.metrics.reg)
	s := uiStatus{
		Version: Version, Commit: Commit, GoVersion: runtime.Version(),
		Now: now.Unix(), StartedAt: started.Unix(), UptimeSeconds: int64(now.Sub(started) / time.Second),

		RecordsStoredTotal:      m.int("opmond_records_stored_total", "", ""),
		RecordsQuarantinedTotal: m.int("opmond_records_quarantined_total", "", ""),
		StoreRequestsOK:         m.int("opmond_store_requests_total", "result", "ok"),
		StoreRequestsError:      m.int("opmond_store_requests_total", "result", "error"),
		PurgeRuns:               m.int("opmond_purge_runs_total", "", ""),
		RecordsPurgedTotal:      m.int("opmond_records_purged_total", "", ""),
		LastPurge:               m.time("opmond_purge_last_run_timestamp_seconds"),

		GlobalConf: uiGlobalConf{Mode: d.gmode.String(), Valid: true,
			Expiry: unixOrNil(d.gconf.Expiry()), LastLoad: unixOrNil(d.gconf.LastLoad())},
		Scheme:               o.Scheme,
		TLSHandshakeFailures: m.byLabel("opmond_tls_handshake_failures_total", "reason"),

		RecordsAvailableOffsetSeconds: o.RecordsAvailableOffset,
		MaxRecordsInPayload:           o.MaxRecordsInPayload,
		HealthStatisticsPeriodSeconds: o.HealthStatisticsPeriod,
		KeepRecordsForDays:            o.KeepRecordsForDays,
	}
	if n, err := d.db.Size(); err == nil {
		s.DatabaseBytes = &n
	}
	if st, err := d.db.Stats(); err == nil {
		s.RecordCount = &st.Records
	}
	if d.gmode != anchor.ModeStandalone {
		if err := d.gconf.Valid(now); err != nil {
			s.GlobalConf.Valid, s.GlobalConf.Error = false, err.Error()
		}
	}
	return s
}

func unixOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	return &u
}

// uiMetrics are the daemon's metric families by name, read through the
// registry so the status follows whatever the daemon registers.
type uiMetrics map[string]*dto.MetricFamily

func gatherMetrics(g prometheus.Gatherer) uiMetrics {
	fams, _ := g.Gather() // a failing collector leaves its values out, the rest stands
	m := make(uiMetrics, len(fams))
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

// value sums the series of a counter or gauge whose label has the value
// (all series when label is ""); ok is false when the metric is not there.
func (m uiMetrics) value(name, label, value string) (v float64, ok bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.GetMetric() {
		if label != "" && labelValue(s, label) != value {
			continue
		}
		switch {
		case s.Counter != nil:
			v += s.Counter.GetValue()
		case s.Gauge != nil:
			v += s.Gauge.GetValue()
		}
	}
	return v, true
}

func (m uiMetrics) int(name, label, value string) int64 {
	v, _ := m.value(name, label, value)
	return int64(v)
}

// time reads a timestamp gauge: nil when absent or never set.
func (m uiMetrics) time(name string) *int64 {
	v, ok := m.value(name, "", "")
	if !ok || v <= 0 {
		return nil
	}
	t := int64(v)
	return &t
}

func (m uiMetrics) byLabel(name, label string) map[string]int64 {
	out := map[string]int64{}
	if f := m[name]; f != nil {
		for _, s := range f.GetMetric() {
			out[labelValue(s, label)] += int64(s.GetCounter().GetValue() + s.GetGauge().GetValue())
		}
	}
	return out
}

func labelValue(s *dto.Metric, name string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
