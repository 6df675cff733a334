package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

// FuzzHTTPHandlers feeds the store and query handlers arbitrary methods,
// headers and bodies over a real listener: every request gets a well-formed
// answer in the endpoint's own format (or 400 for what is not HTTP), never
// a panic or a hang. The framing headers are the fuzzer's only where they
// cannot make the daemon wait for bytes that never come.
func FuzzHTTPHandlers(f *testing.F) {
	query := schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(ownerID), Server: serverOf(serverID), To: 2000}, 0)
	f.Add(uint8(0), "POST", "application/json", "", []byte(okStore))
	f.Add(uint8(0), "POST", "application/json; charset=UTF-8", "Accept-Encoding: \r\n", []byte(`{"records":[{"x":1}]}`))
	f.Add(uint8(0), "GET", "text/plain", "X-A: b\r\n", []byte("{"))
	f.Add(uint8(1), "POST", "text/xml", "SOAPAction: \"\"\r\n", query)
	f.Add(uint8(1), "POST", "text/xml; charset=UTF-8", "", []byte("<a>"+strings.Repeat("<b>", 100)))
	f.Add(uint8(2), "PUT", "", "Host: y\r\n", []byte{0, 1, 2})
	f.Add(uint8(0), "HEAD", "application/json", "", []byte(okStore))
	f.Add(uint8(0), "POST", "application/json", "", bytes.Repeat([]byte("x"), 5000))

	cfg := Default()
	dir := f.TempDir()
	cfg.OpMonitor.Database = dir + "/op.db"
	cfg.GlobalConf.Directory = dir + "/none"
	cfg.OpMonitor.MaxRequestBytes = 4096
	cfg.OpMonitor.MaxInflightBytes = 1 << 20
	cfg.Admin.Listen = ""
	cfg.Log.Level = "error"
	ln := mustListen(f)
	d, err := New(cfg, Options{LogWriter: io.Discard, Listener: ln})
	if err != nil {
		f.Fatal(err)
	}
	d.Start()
	f.Cleanup(func() { d.Close() })
	paths := []string{"/store_data", "/query_data", "/other"}

	f.Fuzz(func(t *testing.T, which uint8, method, ctype, headers string, body []byte) {
		path := paths[int(which)%len(paths)]
		if !validToken(method) {
			method = "POST"
		}
		var hdr strings.Builder
		for _, line := range strings.Split(headers, "\r\n") {
			name, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "content-length", "transfer-encoding", "expect", "connection", "":
				continue
			}
			if strings.ContainsAny(line, "\r\n") {
				continue
			}
			hdr.WriteString(line + "\r\n")
		}
		ctype = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, ctype)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n",
			method, path, ctype, hdr.String(), len(body))
		_, _ = c.Write(body)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: no answer: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: answer cut: %v", method, path, err)
		}
		switch {
		case method == http.MethodHead:
			// the status and headers of the GET answer, no body
		case resp.StatusCode == http.StatusBadRequest:
			// not HTTP the server accepts, or not one of the endpoints
		case path == "/store_data" && (resp.StatusCode == 200 || resp.StatusCode == 413):
			if !bytes.HasPrefix(b, []byte(`{"status":"`)) {
				t.Fatalf("store answer %d %q", resp.StatusCode, b)
			}
		case path == "/query_data" && (resp.StatusCode == 200 || resp.StatusCode == 413):
			if !bytes.HasPrefix(b, []byte(`<?xml`)) && !bytes.Contains(b, []byte("Envelope")) {
				t.Fatalf("query answer %d %q", resp.StatusCode, b)
			}
		default:
			t.Fatalf("%s %s: status %d %q", method, path, resp.StatusCode, b)
		}
	})
}

// validToken: an HTTP method the fuzzer may send as it is.
func validToken(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}
