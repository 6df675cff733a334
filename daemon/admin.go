package daemon

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/schema"
)

// adminHandler serves metrics, health checks and (in later versions) the JSON API.
func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
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
	if d.cfg.Admin.Pprof {
		registerPprof(mux)
	}
	return mux
}

func (d *Daemon) notReady() string {
	if _, err := d.db.Stats(); err != nil {
		return "database: " + err.Error()
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
