package daemon

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var (
	uuidRe     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	boundaryRe = regexp.MustCompile(`xroad[A-Za-z]{30}`)
)

// normalise makes an answer comparable: UUIDs and the boundary replaced, the
// gzip attachment replaced by its JSON, and the HTTP head reduced to the
// headers that matter.
func normalise(t *testing.T, status int, hdr http.Header, body []byte) []byte {
	t.Helper()
	if m := strictRe.FindSubmatchIndex(body); m != nil {
		zr, err := gzip.NewReader(bytes.NewReader(body[m[6]:m[7]]))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		body = append(append(append([]byte{}, body[:m[6]]...), plain...), body[m[7]:]...)
	}
	var head bytes.Buffer
	head.WriteString("HTTP " + http.StatusText(status) + "\n")
	for _, h := range []string{"Content-Type", "Connection", "Soapaction"} {
		if v, ok := hdr[h]; ok {
			head.WriteString(h + ": " + strings.Join(v, ",") + "\n")
		}
	}
	head.WriteString("\n")
	out := append(head.Bytes(), body...)
	out = uuidRe.ReplaceAll(out, []byte("UUID"))
	return boundaryRe.ReplaceAll(out, []byte("xroadBOUNDARY"))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

// TestGoldenAnswers pins the bytes of every kind of answer the query
// interface gives, over real HTTP with a fixed clock.
func TestGoldenAnswers(t *testing.T) {
	clock := newTestClock(1760004021)
	td := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.MaxRecordsInPayload = 2 })
	store, err := os.ReadFile("../testdata/store-example.json")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, b := td.post("/store_data", "application/json; charset=UTF-8", store); status != 200 || string(b) != `{"status":"OK"}` {
		t.Fatalf("store: %d %s", status, b)
	}
	clock.Set(1760004300) // records available before 1760004240; health window still holds them
	owner := schema.QuerySpec{As: clientOf(ownerID), Server: serverOf(serverID)}
	req := func(o schema.QuerySpec, from, to int64, fields ...string) []byte {
		o.To, o.Fields = to, fields
		return bytes.Replace(schema.BuildQueryRequest(o, from), []byte("<xroad:id>"), []byte("<xroad:id>fixed-"), 1)
	}
	health := owner
	health.Health = true
	healthFiltered := health
	healthFiltered.Client = clientOf("DEV/COM/1234/Catalog")
	tests := []struct {
		name, method, ctype string
		body                []byte
	}{
		{"operational-data.txt", http.MethodPost, "text/xml; charset=UTF-8", req(owner, 1760004000, 1760005000)},
		{"operational-data-fields.txt", http.MethodPost, "text/xml; charset=UTF-8", req(owner, 1760004000, 1760004100, "serviceCode", "succeeded", "faultCode")},
		{"operational-data-empty.txt", http.MethodPost, "text/xml; charset=UTF-8", req(owner, 100, 200)},
		{"health-data.txt", http.MethodPost, "text/xml; charset=UTF-8", req(health, 0, 0)},
		{"health-data-filtered.txt", http.MethodPost, "text/xml; charset=UTF-8", req(healthFiltered, 0, 0)},
		{"fault-method.txt", http.MethodGet, "text/xml", nil},
		{"fault-content-type.txt", http.MethodPost, "application/soap+xml", req(owner, 0, 10)},
		{"fault-not-xml.txt", http.MethodPost, "text/xml", []byte("<nope")},
		{"fault-to-before-from.txt", http.MethodPost, "text/xml", req(owner, 1760004100, 1760004050)},
		{"fault-not-available.txt", http.MethodPost, "text/xml", req(owner, 1760004240, 1760004250)},
		{"fault-output-field.txt", http.MethodPost, "text/xml", req(owner, 0, 10, "myServiceCode")},
		{"fault-unknown-service.txt", http.MethodPost, "text/xml", bytes.ReplaceAll(req(owner, 0, 10), []byte("getSecurityServerOperationalData"), []byte("getSecurityServerOperationalDataX"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, b := doRequest(t, tc.method, td.url+"/query_data", tc.ctype, tc.body)
			golden(t, tc.name, normalise(t, status, hdr, b))
		})
	}
}

// TestQueryHostileXML: an entity-expansion bomb and an external entity get a
// fault quickly and without memory growth, over HTTP.
func TestQueryHostileXML(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
		`<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">`
	for i := 2; i <= 9; i++ {
		bomb += `<!ENTITY lol` + string(rune('0'+i)) + ` "` + strings.Repeat("&lol"+string(rune('0'+i-1))+";", 10) + `">`
	}
	bomb += `]><lolz>&lol9;</lolz>`
	external := `<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
		`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>&xxe;</SOAP-ENV:Body></SOAP-ENV:Envelope>`
	for name, body := range map[string]string{"bomb": bomb, "external entity": external} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		status, _, b := td.post("/query_data", "text/xml", []byte(body))
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		f := schema.ParseFault(b)
		if status != 200 || f == nil || !strings.HasPrefix(f.Code, "server.serverproxy.opmonitor.invalid_") {
			t.Errorf("%s: %d %s", name, status, b)
		}
		if strings.Contains(string(b), "root:") {
			t.Errorf("%s: answer leaks a file", name)
		}
		if took > 2*time.Second {
			t.Errorf("%s took %v", name, took)
		}
		if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
			t.Errorf("%s: heap grew by %d bytes", name, grown)
		}
	}
}
