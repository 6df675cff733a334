package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// TestStoreExampleRoundTrip stores the example of opmon-protocol.md §13.1 and
// reads it back through the storage API, field by field.
func TestStoreExampleRoundTrip(t *testing.T) {
	clock := newTestClock(1760004021)
	td := startDaemon(t, testConfig(t, t.TempDir()), clock.Now)
	body, err := os.ReadFile("../testdata/store-example.json")
	if err != nil {
		t.Fatal(err)
	}
	status, hdr, b := td.post("/store_data", "application/json; charset=UTF-8", body)
	if status != 200 || string(b) != `{"status":"OK"}` {
		t.Fatalf("status %d body %s", status, b)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json;charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if hdr.Get("Server") != "" {
		t.Errorf("Server header %q must not be sent", hdr.Get("Server"))
	}
	var doc struct {
		Records []map[string]any `json:"records"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	got := td.all()
	if len(got) != len(doc.Records) {
		t.Fatalf("stored %d records, want %d", len(got), len(doc.Records))
	}
	for i, want := range doc.Records {
		r := &got[i]
		if !r.Has.Has(schema.FMonitoringDataTs) || r.Int(schema.FMonitoringDataTs) != 1760004021 {
			t.Errorf("record %d: monitoringDataTs %d, want 1760004021", i, r.Int(schema.FMonitoringDataTs))
		}
		for f := schema.Field(1); f < schema.NumFields; f++ {
			name := f.Name()
			v, present := want[name]
			if r.Has.Has(f) != present {
				t.Errorf("record %d field %s: present %v, want %v", i, name, r.Has.Has(f), present)
				continue
			}
			if !present {
				continue
			}
			var gotStr string
			switch schema.Fields[f].Kind {
			case schema.KindString:
				gotStr = r.Str(f)
			case schema.KindBool:
				gotStr = fmt.Sprint(r.Bool(f))
			default:
				gotStr = fmt.Sprint(r.Int(f))
			}
			if gotStr != fmt.Sprint(v) {
				t.Errorf("record %d field %s = %q, want %q", i, name, gotStr, fmt.Sprint(v))
			}
		}
	}
	// The Producer record feeds health data; the Client records do not.
	h := td.health.Snapshot(nil)
	if len(h.Services) != 1 || h.Services[0].Service.String() != "DEV/COM/1234/Catalog/products" {
		t.Errorf("health services %+v", h.Services)
	}
}

var uuidPrefix = `\[[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\] \[SYSTEM\] internal_error: `

// TestStoreErrors checks every error answer of opmon-protocol.md §2.7.
func TestStoreErrors(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	tests := []struct {
		name, method, ctype, body string
		want                      string // regexp for errorMessage
	}{
		{"GET", http.MethodGet, "application/json", "", `^` + uuidPrefix + `Must use POST request method instead of GET$`},
		{"PUT", http.MethodPut, "application/json", `{"records":[]}`, `^` + uuidPrefix + `Must use POST request method instead of PUT$`},
		{"content type", http.MethodPost, "text/plain", `{"records":[]}`, `^` + uuidPrefix + `Invalid content type text/plain, expecting application/json$`},
		{"no content type", http.MethodPost, "", `{"records":[]}`, `^` + uuidPrefix + `Invalid content type , expecting application/json$`},
		{"empty body", http.MethodPost, "application/json", "", `^No data was found in the request to store data$`},
		{"blank body", http.MethodPost, "application/json", " \r\n\t ", `^No data was found in the request to store data$`},
		{"not JSON", http.MethodPost, "application/json", `{"records":[`, `^Received invalid request$`},
		{"array", http.MethodPost, "application/json", `[]`, `^Received invalid request$`},
		{"empty object", http.MethodPost, "application/json", `{}`, `^Received invalid request$`},
		{"records null", http.MethodPost, "application/json", `{"records":null}`, `^Received invalid request$`},
		{"records object", http.MethodPost, "application/json", `{"records":{}}`, `^Received invalid request$`},
		{"trailing garbage", http.MethodPost, "application/json", `{"records":[]}x`, `^Received invalid request$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, b := doRequest(t, tc.method, td.url+"/store_data", tc.ctype, []byte(tc.body))
			if status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json;charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var ans map[string]string
			if err := json.Unmarshal(b, &ans); err != nil {
				t.Fatalf("answer %s: %v", b, err)
			}
			if ans["status"] != "Error" || !regexp.MustCompile(tc.want).MatchString(ans["errorMessage"]) {
				t.Errorf("answer %s, want errorMessage matching %s", b, tc.want)
			}
		})
	}
	if n := len(td.all()); n != 0 {
		t.Errorf("%d records stored by refused requests", n)
	}
	// Media type parameters and case do not matter; an empty batch is OK.
	status, _, b := td.post("/store_data", "Application/JSON; charset=ISO-8859-1", []byte(`{"records":[]}`))
	if status != 200 || string(b) != `{"status":"OK"}` {
		t.Errorf("empty batch: %d %s", status, b)
	}
}

// TestStoreCoercionAndTruncation checks the lenient binding and truncation
// rules end to end (their full tables are in schema's tests).
func TestStoreCoercionAndTruncation(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	long := strings.Repeat("ä", 300)
	longFault := strings.Repeat("€", 3000)
	td.store(jrec(
		"requestInTs", "1760000000123", // string → number
		"responseOutTs", 1760000000456.9, // float → truncated
		"succeeded", 0, // number → bool
		"requestSize", "42",
		"messageId", 12345, // number → string
		"serviceCode", long,
		"faultString", longFault,
		"monitoringDataTs", 5, // ignored
		"unknownField", map[string]any{"x": 1}, // ignored
		"requestSoapSize", 7, // old name → requestSize only when absent
		"responseSoapSize", 9, // old name → responseSize
	))
	got := td.all()
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	r := &got[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"requestInTs", r.Int(schema.FRequestInTs) == 1760000000123},
		{"responseOutTs", r.Int(schema.FResponseOutTs) == 1760000000456},
		{"succeeded", r.Has.Has(schema.FSucceeded) && !r.Bool(schema.FSucceeded)},
		{"requestSize", r.Int(schema.FRequestSize) == 42},
		{"responseSize", r.Int(schema.FResponseSize) == 9},
		{"messageId", r.Str(schema.FMessageID) == "12345"},
		{"serviceCode 255 runes", utf8.RuneCountInString(r.Str(schema.FServiceCode)) == 255 && utf8.ValidString(r.Str(schema.FServiceCode))},
		{"faultString 2048 runes", utf8.RuneCountInString(r.Str(schema.FFaultString)) == 2048 && utf8.ValidString(r.Str(schema.FFaultString))},
		{"monitoringDataTs stamped", r.Int(schema.FMonitoringDataTs) > 1700000000},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got record %+v", c.name, r)
		}
	}
}

// TestStoreQuarantine: invalid records of a well-formed batch are kept apart
// with their reason; the valid ones are stored; the answer is OK.
func TestStoreQuarantine(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	td.store(
		jrec("messageId", "good-1"),
		jrec("securityServerType", "client", "messageId", "bad-type"),
		jrec("succeeded", nil, "messageId", "no-succeeded"),
		jrec("messageId", "good-2"),
		jrec("requestInTs", "abc", "messageId", "bad-number"),
	)
	got := td.all()
	if len(got) != 2 || got[0].Str(schema.FMessageID) != "good-1" || got[1].Str(schema.FMessageID) != "good-2" {
		t.Fatalf("stored %+v", got)
	}
	var reasons []string
	var raws []string
	err := td.DB().ListQuarantine(context.Background(), 0, 1<<62, func(q storage.Quarantined) error {
		reasons = append(reasons, q.Reason)
		raws = append(raws, string(q.Raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reasons) != 3 {
		t.Fatalf("quarantined %d: %v", len(reasons), reasons)
	}
	for i, want := range []string{"securityServerType", "succeeded", "requestInTs"} {
		if !strings.Contains(reasons[i], want) {
			t.Errorf("reason %q does not name %s", reasons[i], want)
		}
	}
	for i, id := range []string{"bad-type", "no-succeeded", "bad-number"} {
		if !strings.Contains(raws[i], id) {
			t.Errorf("quarantined record %d %q lacks %s", i, raws[i], id)
		}
	}
	if !strings.Contains(td.logs.String(), `"record quarantined"`) {
		t.Error("quarantine not logged")
	}
	_, _, metrics := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	if !bytes.Contains(metrics, []byte("opmond_records_quarantined_total 3")) {
		t.Error("quarantine not counted in /metrics")
	}
}

// TestStoreConcurrent: 1,000 records from 20 concurrent requests all land.
func TestStoreConcurrent(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			recs := make([]map[string]any, 50)
			for i := range recs {
				recs[i] = jrec("messageId", fmt.Sprintf("%d-%d", g, i))
			}
			body, _ := json.Marshal(map[string]any{"records": recs})
			req, _ := http.NewRequest(http.MethodPost, td.url+"/store_data", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var ans map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans["status"] != "OK" {
				t.Errorf("answer %v %v", ans, err)
			}
		}(g)
	}
	wg.Wait()
	got := td.all()
	seen := map[string]bool{}
	for i := range got {
		seen[got[i].Str(schema.FMessageID)] = true
	}
	if len(got) != 1000 || len(seen) != 1000 {
		t.Fatalf("stored %d records, %d distinct, want 1000", len(got), len(seen))
	}
}

// TestStoreSurvivesRestart: a new daemon on the same file finds every
// acknowledged record.
func TestStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	d, err := New(cfg, Options{LogWriter: &syncBuffer{}, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	td := &testDaemon{Daemon: d, t: t, url: "http://" + ln.Addr().String()}
	for i := 0; i < 10; i++ {
		td.store(jrec("messageId", fmt.Sprint(i)), jrec("messageId", fmt.Sprint(i, "b")))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	td2 := startDaemon(t, testConfig(t, dir), nil)
	if n := len(td2.all()); n != 20 {
		t.Fatalf("after restart %d records, want 20", n)
	}
	if fi, err := os.Stat(cfg.OpMonitor.Database); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode: %v %v", fi.Mode(), err)
	}
}

// TestStoreOversized: a body over max-request-bytes gets 413 and its error
// body, and nothing is stored.
func TestStoreOversized(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.MaxRequestBytes = 4096
	td := startDaemon(t, cfg, nil)
	recs := make([]map[string]any, 40)
	for i := range recs {
		recs[i] = jrec("messageId", strings.Repeat("x", 100))
	}
	body, _ := json.Marshal(map[string]any{"records": recs})
	status, hdr, b := td.post("/store_data", "application/json", body)
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", status)
	}
	if string(b) != `{"status":"Error","errorMessage":"request body exceeds 4096 bytes"}` || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("answer %s (%s)", b, hdr.Get("Content-Type"))
	}
	status, _, b = td.post("/query_data", "text/xml", bytes.Repeat([]byte(" "), 5000))
	if status != http.StatusRequestEntityTooLarge || !bytes.Contains(b, []byte("<faultstring>request body exceeds 4096 bytes</faultstring>")) ||
		!bytes.Contains(b, []byte("server.serverproxy.opmonitor.client.invalid_request")) {
		t.Errorf("query: %d %s", status, b)
	}
	if n := len(td.all()); n != 0 {
		t.Errorf("%d records stored", n)
	}
	// The daemon still serves normal requests.
	td.store(jrec())
}

// TestUnknownPath: anything but the two endpoints is 400 with no body.
func TestUnknownPath(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	for _, p := range []string{"/", "/store_data/", "/STORE_DATA", "/metrics", "/query_data/x"} {
		status, hdr, b := td.post(p, "application/json", []byte(`{"records":[]}`))
		if status != 400 || len(b) != 0 || hdr.Get("Content-Type") != "" {
			t.Errorf("%s: status %d, body %q, content type %q", p, status, b, hdr.Get("Content-Type"))
		}
	}
	// Query strings are ignored by routing.
	status, _, b := td.post("/store_data?x=1", "application/json", []byte(`{"records":[]}`))
	if status != 200 || string(b) != `{"status":"OK"}` {
		t.Errorf("with query string: %d %s", status, b)
	}
}

func TestAdminHealthChecks(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	for path, want := range map[string]string{"/healthz": `{"status":"ok"}`, "/readyz": `{"status":"ready"}`} {
		status, _, b := doRequest(t, http.MethodGet, td.adminURL+path, "", nil)
		if status != 200 || string(b) != want {
			t.Errorf("%s: %d %s", path, status, b)
		}
	}
}

// TestShutdownFinishesInFlight: Close waits for a request being handled.
func TestShutdownDrains(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			body, _ := json.Marshal(map[string]any{"records": []any{jrec("messageId", fmt.Sprint(i))}})
			req, _ := http.NewRequest(http.MethodPost, td.url+"/store_data", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // refused after shutdown began
			}
			resp.Body.Close()
		}
	}()
	time.Sleep(5 * time.Millisecond)
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	// Reopen: whatever was acknowledged is there and the file is consistent.
	td2 := startDaemon(t, testConfig(t, filepath.Dir(filepath.Dir(td.cfg.OpMonitor.Database))), nil)
	_ = td2.all()
}

// TestStoreLogsNoPayloadAboveDebug: at info level a quarantined record is
// logged with its reason but without its content.
func TestStoreLogsNoPayloadAboveDebug(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Log.Level = "info"
	td := startDaemon(t, cfg, nil)
	td.store(jrec("securityServerType", "nonsense", "messageId", "secret-payload-marker"))
	logs := td.logs.String()
	if !strings.Contains(logs, `"record quarantined"`) || strings.Contains(logs, "secret-payload-marker") {
		t.Errorf("log at info level:\n%s", logs)
	}
}

// TestServiceMetrics: per-service series from the health statistics,
// capped at max-service-series with the rest folded into "other".
func TestServiceMetrics(t *testing.T) {
	clock := newTestClock(1760004000)
	cfg := testConfig(t, t.TempDir())
	cfg.Admin.MaxServiceSeries = 2
	td := startDaemon(t, cfg, clock.Now)
	producer := func(code string, ok bool, out int64) map[string]any {
		r := jrec("securityServerType", "Producer", "serviceCode", code, "succeeded", ok, "responseOutTs", out)
		return withParty(r, "service", "EE/COM/1/SUB")
	}
	td.store(producer("a", true, 1760004000500), producer("a", false, 1760004000600),
		producer("b", true, 1760004000700), producer("c", true, 1760004000800), producer("d", false, 1760004000900))
	_, _, b := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	metrics := string(b)
	for _, want := range []string{
		`opmond_service_requests{result="success",service="EE/COM/1/SUB/a"} 1`,
		`opmond_service_requests{result="failure",service="EE/COM/1/SUB/a"} 1`,
		`opmond_service_requests{result="success",service="EE/COM/1/SUB/b"} 1`,
		`opmond_service_requests{result="success",service="other"} 1`,
		`opmond_service_requests{result="failure",service="other"} 1`,
		`opmond_service_last_request_timestamp_seconds{result="failure",service="other"} 1.7600040009e+09`,
		`opmond_service_last_request_timestamp_seconds{result="success",service="EE/COM/1/SUB/b"} 1.7600040007e+09`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `service="EE/COM/1/SUB/c"`) {
		t.Error("a service beyond max-service-series has its own series")
	}
}

// TestNewFailureReleasesPort: when New fails after binding the X-Road
// listener (here: the admin address is taken), the listener and the
// database are released.
func TestNewFailureReleasesPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.OpMonitor.Host, cfg.OpMonitor.Port = "127.0.0.1", port
	cfg.Admin.Listen = taken.Addr().String()
	if _, err := New(cfg, Options{LogWriter: &syncBuffer{}}); err == nil {
		t.Fatal("New succeeded with the admin address taken")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("X-Road port still held: %v", err)
	}
	ln.Close()
	cfg.Admin.Listen = ""
	d, err := New(cfg, Options{LogWriter: &syncBuffer{}})
	if err != nil {
		t.Fatalf("database still locked: %v", err)
	}
	d.Close()
}
