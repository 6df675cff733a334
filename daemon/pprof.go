package daemon

import (
	"net/http"
	"net/http/pprof"
)

// registerPprof serves net/http/pprof under /debug/pprof/ on the admin mux
// ([admin] pprof): CPU, heap, allocation, goroutine, block and mutex
// profiles of the running daemon, for `go tool pprof URL`.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
