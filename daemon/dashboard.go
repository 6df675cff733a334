package daemon

import (
	"bytes"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/opmond/opmond/daemon/ui"
)

// dashboardCSP allows nothing but the admin listener itself: no inline
// scripts or styles, no other origin, no framing.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// registerDashboard serves the dashboard: the page on GET /, its assets and
// its own status endpoint under /ui/ (interface.md, "The dashboard").
func (d *Daemon) registerDashboard(mux *http.ServeMux) {
	started := d.now()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		dashboardHeaders(w)
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(ui.Page))
	})
	mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		// Files only: the page lives at / and folders are not listed.
		name := strings.TrimPrefix(r.URL.Path, "/ui/")
		if fi, err := fs.Stat(ui.Assets, name); err != nil || fi.IsDir() || name == "index.html" {
			http.NotFound(w, r)
			return
		}
		dashboardHeaders(w)
		http.ServeFileFS(w, r, ui.Assets, name)
	})
	mux.HandleFunc("GET /ui/api/status", d.serveUIStatus(started))
}

func dashboardHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	// The assets change only with the binary; revalidating is cheap.
	h.Set("Cache-Control", "no-cache")
}
