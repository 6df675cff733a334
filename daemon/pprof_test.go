package daemon

import (
	"bytes"
	"net/http"
	"testing"
)

// TestPprof: the profiles are on the admin listener only with [admin] pprof.
func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := testConfig(t, t.TempDir())
		cfg.Admin.Pprof = on
		td := startDaemon(t, cfg, nil)
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1",
			"/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
			code, _, body := doRequest(t, http.MethodGet, td.adminURL+path, "", nil)
			if code != want {
				t.Errorf("pprof=%v: GET %s: HTTP %d, want %d", on, path, code, want)
			}
			if on && len(body) == 0 {
				t.Errorf("GET %s: empty profile", path)
			}
		}
		if on {
			_, _, body := doRequest(t, http.MethodGet, td.adminURL+"/debug/pprof/heap?debug=1", "", nil)
			if !bytes.Contains(body, []byte("heap profile:")) {
				t.Errorf("heap profile is not one: %.100s", body)
			}
		}
		// The X-Road listener never serves profiles.
		if code, _, _ := doRequest(t, http.MethodGet, td.url+"/debug/pprof/", "", nil); code == http.StatusOK {
			t.Errorf("pprof=%v: the X-Road listener serves /debug/pprof/", on)
		}
	}
}
