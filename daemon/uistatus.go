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
	// LastPurge is not tracked by the daemon yet: null until it is.
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
	m := d.metrics
	o := &d.cfg.OpMonitor
	s := uiStatus{
		Version: Version, Commit: Commit, GoVersion: runtime.Version(),
		Now: now.Unix(), StartedAt: started.Unix(), UptimeSeconds: int64(now.Sub(started) / time.Second),

		RecordsStoredTotal:      counterValue(m.recordsStoredCtr),
		RecordsQuarantinedTotal: counterValue(m.quarantined),
		StoreRequestsOK:         counterValue(m.storeRequests.WithLabelValues("ok")),
		StoreRequestsError:      counterValue(m.storeRequests.WithLabelValues("error")),
		PurgeRuns:               counterValue(m.purgeRuns),
		RecordsPurgedTotal:      counterValue(m.recordsPurged),

		GlobalConf: uiGlobalConf{Mode: d.gmode.String(), Valid: true,
			Expiry: unixOrNil(d.gconf.Expiry()), LastLoad: unixOrNil(d.gconf.LastLoad())},
		Scheme:               o.Scheme,
		TLSHandshakeFailures: map[string]int64{},

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
	for _, r := range tlsFailureReasons {
		s.TLSHandshakeFailures[r] = counterValue(m.tlsFailures.WithLabelValues(r))
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

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) int64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return int64(m.GetCounter().GetValue())
}
