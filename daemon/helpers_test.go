package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/anchor/anchortest"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// testClock is a settable clock shared by a test and its daemon.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(unix int64) *testClock { return &testClock{t: time.Unix(unix, 0)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(unix int64) {
	c.mu.Lock()
	c.t = time.Unix(unix, 0)
	c.mu.Unlock()
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testDaemon is a daemon running on loopback with a temporary database.
type testDaemon struct {
	*Daemon
	t        *testing.T
	url      string // http://127.0.0.1:port
	adminURL string
	cfg      *Config
	logs     *syncBuffer
	hc       *http.Client // nil: http.DefaultClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig returns a configuration for a test: database in dir, standalone
// unless a global configuration directory is given.
func testConfig(t *testing.T, dir string) *Config {
	t.Helper()
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "data", "opmonitor.db")
	cfg.GlobalConf.Directory = filepath.Join(dir, "no-globalconf")
	cfg.Log.Level = "debug"
	cfg.Admin.Listen = "" // startDaemon passes its own admin listener on :0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startDaemon(t *testing.T, cfg *Config, now func() time.Time) *testDaemon {
	t.Helper()
	return startDaemonWith(t, cfg, Options{Now: now})
}

// startDaemonWith is startDaemon with more options; listeners and the log
// writer are the test's own.
func startDaemonWith(t *testing.T, cfg *Config, opts Options) *testDaemon {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ln, aln := mustListen(t), mustListen(t)
	logs := &syncBuffer{}
	opts.LogWriter, opts.Listener, opts.AdminListener = logs, ln, aln
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	td := &testDaemon{Daemon: d, t: t, url: "http://" + ln.Addr().String(), adminURL: "http://" + aln.Addr().String(), cfg: cfg, logs: logs}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return td
}

// post sends a request and returns status, headers and body.
func (td *testDaemon) post(path, contentType string, body []byte) (int, http.Header, []byte) {
	td.t.Helper()
	return doRequestWith(td.t, td.hc, http.MethodPost, td.url+path, contentType, body)
}

func doRequest(t *testing.T, method, url, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	return doRequestWith(t, nil, method, url, contentType, body)
}

func doRequestWith(t *testing.T, hc *http.Client, method, url, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// net/http moves "Connection: close" into resp.Close; put it back for tests.
	if resp.Close {
		resp.Header.Set("Connection", "close")
	}
	return resp.StatusCode, resp.Header, b
}

// store posts records and requires {"status":"OK"}.
func (td *testDaemon) store(records ...map[string]any) {
	td.t.Helper()
	body, err := json.Marshal(map[string]any{"records": records})
	if err != nil {
		td.t.Fatal(err)
	}
	status, _, b := td.post("/store_data", "application/json; charset=UTF-8", body)
	if status != 200 || string(b) != `{"status":"OK"}` {
		td.t.Fatalf("store: status %d body %s", status, b)
	}
}

// all reads every stored record back through the storage API.
func (td *testDaemon) all() []schema.Record {
	td.t.Helper()
	return queryAll(td.t, td.DB())
}

func queryAll(t *testing.T, db *storage.DB) []schema.Record {
	t.Helper()
	var out []schema.Record
	_, err := db.Query(context.Background(), storage.Query{From: 0, To: 1 << 62, Max: 1 << 30}, func(r *schema.Record) error {
		out = append(out, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rec builds a minimal valid record with overrides.
func jrec(kv ...any) map[string]any {
	m := map[string]any{
		"securityServerInternalIp": "10.0.0.1",
		"securityServerType":       "Client",
		"requestInTs":              int64(1760000000000),
		"responseOutTs":            int64(1760000000100),
		"succeeded":                true,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = kv[i+1]
		}
	}
	return m
}

// partyRecord is a record with messageId id between client and provider
// (slash forms), service code svc.
func partyRecord(id, client, provider string) map[string]any {
	r := jrec("messageId", id)
	withParty(r, "client", client)
	withParty(r, "service", provider)
	r["serviceCode"] = "svc"
	return r
}

// party adds client or service identifier fields to a record map.
func withParty(m map[string]any, prefix string, id string) map[string]any {
	c, err := schema.ParseClientID(id)
	if err != nil {
		panic(err)
	}
	inst := "XRoadInstance"
	m[prefix+inst] = c.Instance
	m[prefix+"MemberClass"] = c.MemberClass
	m[prefix+"MemberCode"] = c.MemberCode
	if c.HasSubsystem {
		m[prefix+"SubsystemCode"] = c.Subsystem
	}
	return m
}

// writeGlobalConf writes a global configuration directory as a security
// server's configuration client leaves it (global-configuration.md §3–4):
// owner EE/GOV/70000001 owns server ss1; the central monitoring client is
// EE/GOV/70000001/MONITORING unless monitoring is "" (no client).
func writeGlobalConf(t testing.TB, root string, expire time.Time, monitoring string) {
	t.Helper()
	dir := filepath.Join(root, "EE")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(file, id string) {
		write("EE/"+file+".metadata", fmt.Sprintf(`{"contentIdentifier":%q,"instanceIdentifier":"EE","expirationDate":%q,"contentLocation":"/V6/20260101000000000000000/%s","configurationVersion":"6"}`,
			id, expire.UTC().Format(time.RFC3339), file))
	}
	write("instance-identifier", "EE")
	write("EE/private-params.xml", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
  <instanceIdentifier>EE</instanceIdentifier>
  <timeStampingIntervalSeconds>60</timeStampingIntervalSeconds>
</xr:conf>`)
	meta("private-params.xml", "PRIVATE-PARAMETERS")
	write("EE/shared-params.xml", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
  <instanceIdentifier>EE</instanceIdentifier>
  <member id="id0">
    <memberClass><code>GOV</code><description>Government</description></memberClass>
    <memberCode>70000001</memberCode>
    <name>Owner</name>
    <subsystem id="id1"><subsystemCode>MONITORING</subsystemCode></subsystem>
  </member>
  <member id="id2">
    <memberClass><code>COM</code><description>Commercial</description></memberClass>
    <memberCode>10000001</memberCode>
    <name>Company</name>
    <subsystem id="id3"><subsystemCode>CRM</subsystemCode></subsystem>
  </member>
  <securityServer>
    <owner>id0</owner>
    <serverCode>ss1</serverCode>
    <address>ss1.example.org</address>
    <client>id1</client>
  </securityServer>
  <securityServer>
    <owner>id2</owner>
    <serverCode>ss2</serverCode>
    <address>ss2.example.org</address>
  </securityServer>
  <globalSettings><ocspFreshnessSeconds>3600</ocspFreshnessSeconds></globalSettings>
</xr:conf>`)
	meta("shared-params.xml", "SHARED-PARAMETERS")
	if monitoring != "" {
		write("EE/monitoring-params.xml", anchortest.MonitoringXML(monitoring))
		meta("monitoring-params.xml", "MONITORING")
	}
}

func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}
