package daemon

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/schema"
)

// adminHandler serves metrics, health checks and the JSON API.
func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := d.notReady(); reason != "" {
			b := schema.AppendJSONString([]byte(`{"status":"not ready","reason":`), reason)
			writeJSON(w, http.StatusServiceUnavailable, string(b)+"}")
			return
		}
		writeJSON(w, http.StatusOK, `{"status":"ready"}`)
	})
	mux.HandleFunc("GET /api/v1/records", d.handleRecords)
	mux.HandleFunc("GET /api/v1/health", d.handleHealth)
	mux.HandleFunc("GET /api/v1/intervals", d.handleIntervals)
	mux.HandleFunc("GET /api/v1/quarantine", d.handleQuarantine)
	mux.HandleFunc("POST /api/v1/import", d.handleImport)
	mux.HandleFunc("GET /api/v1/backup", d.handleBackup)
	d.registerDashboard(mux)
	if d.cfg.Admin.Pprof {
		registerPprof(mux)
	}
	return mux
}

func (d *Daemon) notReady() string {
	if _, err := d.db.Stats(); err != nil {
		return "database: " + err.Error()
	}
	if err := d.db.CommitErr(); err != nil {
		return "database: the last commit failed: " + err.Error()
	}
	if p := d.failedErr.Load(); p != nil {
		return (*p).Error()
	}
	for _, l := range []*connLimiter{d.xlim, d.alim} {
		if err := l.down(); err != nil {
			return l.name + ": accept fails, retrying: " + err.Error()
		}
	}
	if d.gmode != anchor.ModeStandalone {
		if err := d.gconf.Valid(d.now()); err != nil {
			return "global configuration: " + err.Error()
		}
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
