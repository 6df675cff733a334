package daemon

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

const (
	ownerID      = "EE/GOV/70000001"
	monitoringID = "EE/GOV/70000001/MONITORING"
	serverID     = "EE/GOV/70000001/ss1"
	queryNow     = 1760004700 // daemon clock at query time; avail = now - 60
)

func clientOf(s string) *schema.ClientID {
	c, err := schema.ParseClientID(s)
	if err != nil {
		panic(err)
	}
	return &c
}

func serverOf(s string) *schema.ServerID {
	c, err := schema.ParseServerID(s)
	if err != nil {
		panic(err)
	}
	return &c
}

// queryDaemon starts a daemon with a valid global configuration.
func queryDaemon(t *testing.T, clock *testClock, mutate func(*Config)) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	writeGlobalConf(t, cfg.GlobalConf.Directory, time.Now().Add(24*time.Hour), monitoringID)
	if mutate != nil {
		mutate(cfg)
	}
	return startDaemon(t, cfg, clock.Now)
}

// storeAt stores records with the daemon clock at ts.
func (td *testDaemon) storeAt(clock *testClock, ts int64, recs ...map[string]any) {
	td.t.Helper()
	clock.Set(ts)
	td.store(recs...)
}

type opAnswer struct {
	records []map[string]any
	next    *int64
	fault   *schema.Fault
	raw     []byte
	header  http.Header
}

func (td *testDaemon) queryOp(as string, server string, from, to int64, filter string, fields ...string) opAnswer {
	td.t.Helper()
	o := schema.QuerySpec{As: clientOf(as), To: to, Fields: fields}
	if server != "" {
		o.Server = serverOf(server)
	}
	if filter != "" {
		o.Client = clientOf(filter)
	}
	return td.querySOAP(schema.BuildQueryRequest(o, from))
}

func (td *testDaemon) querySOAP(body []byte) opAnswer {
	td.t.Helper()
	status, hdr, b := td.post("/query_data", "text/xml; charset=UTF-8", body)
	if status != 200 {
		td.t.Fatalf("status %d", status)
	}
	raws, next, err := schema.ReadOperationalDataAnswer(hdr.Get("Content-Type"), bytes.NewReader(b))
	a := opAnswer{next: next, raw: b, header: hdr}
	var f *schema.Fault
	if errors.As(err, &f) {
		a.fault = f
		return a
	}
	if err != nil {
		td.t.Fatalf("answer: %v\n%s", err, b)
	}
	// opmond bench's counting reader agrees on every answer of these tests.
	if n, cnext, err := schema.CountOperationalDataAnswer(hdr.Get("Content-Type"), bytes.NewReader(b)); err != nil ||
		n != len(raws) || nextStr(cnext) != nextStr(next) {
		td.t.Fatalf("counting reader: %d records, next %s (%v); the full reader: %d, %s", n, nextStr(cnext), err, len(raws), nextStr(next))
	}
	for _, r := range raws {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			td.t.Fatal(err)
		}
		a.records = append(a.records, m)
	}
	return a
}

func ids(recs []map[string]any) string {
	var s []string
	for _, r := range recs {
		s = append(s, fmt.Sprint(r["messageId"]))
	}
	return strings.Join(s, ",")
}

func nextStr(n *int64) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprint(*n)
}

// TestQueryPaging covers the window, offset and paging rules of §4.1–4.2.
func TestQueryPaging(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.MaxRecordsInPayload = 10 })
	batch := func(prefix string, n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = jrec("messageId", fmt.Sprintf("%s%02d", prefix, i))
		}
		return out
	}
	td.storeAt(clock, 980, batch("a", 8)...)
	td.storeAt(clock, 981, batch("b", 17)...)
	clock.Set(queryNow)
	avail := int64(queryNow - 60)

	tests := []struct {
		name     string
		from, to int64
		count    int
		next     string
	}{
		{"limit hit, nothing after", 980, 990, 25, "none"},
		{"exact one second", 981, 981, 17, "none"},
		{"to clipped to avail-1", 970, avail + 100, 25, fmt.Sprint(avail)},
		{"to equal to avail clipped", 970, avail, 25, fmt.Sprint(avail)},
		{"nothing in window", 100, 200, 0, "none"},
		{"empty window after records", 982, 990, 0, "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := td.queryOp(ownerID, serverID, tc.from, tc.to, "")
			if a.fault != nil {
				t.Fatal(a.fault)
			}
			if len(a.records) != tc.count || nextStr(a.next) != tc.next {
				t.Errorf("got %d records next %s, want %d next %s", len(a.records), nextStr(a.next), tc.count, tc.next)
			}
		})
	}
	// Ascending ts, insertion order within a second.
	a := td.queryOp(ownerID, serverID, 980, 990, "")
	want := []string{}
	for _, r := range append(batch("a", 8), batch("b", 17)...) {
		want = append(want, r["messageId"].(string))
	}
	if ids(a.records) != strings.Join(want, ",") {
		t.Errorf("order %s", ids(a.records))
	}
	// One more record later in the window: still 25, nextRecordsFrom = 982.
	td.storeAt(clock, 985, jrec("messageId", "c"))
	clock.Set(queryNow)
	a = td.queryOp(ownerID, serverID, 980, 990, "")
	if len(a.records) != 25 || nextStr(a.next) != "982" {
		t.Errorf("with later record: %d records next %s, want 25 next 982", len(a.records), nextStr(a.next))
	}
	// Following nextRecordsFrom returns the rest.
	a = td.queryOp(ownerID, serverID, 982, 990, "")
	if ids(a.records) != "c" || a.next != nil {
		t.Errorf("second page %s next %s", ids(a.records), nextStr(a.next))
	}
}

// TestQueryPagingMax8 is §4.2's third example: max 8 over [960,990].
func TestQueryPagingMax8(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.MaxRecordsInPayload = 8 })
	for i := 0; i < 8; i++ {
		td.storeAt(clock, 980, jrec("messageId", fmt.Sprint("a", i)))
	}
	for i := 0; i < 17; i++ {
		td.storeAt(clock, 981, jrec("messageId", fmt.Sprint("b", i)))
	}
	clock.Set(queryNow)
	a := td.queryOp(ownerID, serverID, 960, 990, "")
	if len(a.records) != 8 || nextStr(a.next) != "981" {
		t.Errorf("got %d next %s, want 8 next 981", len(a.records), nextStr(a.next))
	}
}

// TestQueryAccess covers who sees what (§4.3, §4.4) and outputSpec (§4.5).
func TestQueryAccess(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	mk := partyRecord
	td.storeAt(clock, 1000,
		mk("r1", "EE/COM/10000001/CRM", "EE/GOV/70000001/MONITORING"),
		mk("r2", "EE/COM/10000001", "EE/GOV/70000002/API"),
		mk("r3", "EE/GOV/70000002/API", "EE/COM/10000001/CRM"),
		mk("r4", "EE/GOV/70000002", "EE/GOV/70000002/API"),
		mk("r5", "EE/GOV/70000001", "EE/COM/10000001"),
		mk("r6", "EE/GOV/70000001/PORTAL", "EE/COM/10000001/CRM"),
	)
	clock.Set(queryNow)
	tests := []struct {
		name, as, server, filter string
		want                     string
		internalIP               bool
	}{
		{"owner with server header", ownerID, serverID, "", "r1,r2,r3,r4,r5,r6", true},
		{"owner without header", ownerID, "", "", "r5", false},
		{"owner naming another server", ownerID, "EE/COM/10000001/ss2", "", "r5", false},
		{"subsystem of owner", "EE/GOV/70000001/PORTAL", serverID, "", "r6", false},
		{"monitoring client, no header", monitoringID, "", "", "r1,r2,r3,r4,r5,r6", true},
		{"regular subsystem", "EE/COM/10000001/CRM", "", "", "r1,r3,r6", false},
		{"regular member", "EE/COM/10000001", "", "", "r2,r5", false},
		{"unknown client", "EE/COM/99999999", "", "", "", false},
		{"owner of ss2 with header", "EE/COM/10000001", "EE/COM/10000001/ss2", "", "r1,r2,r3,r4,r5,r6", true},
		{"privileged with provider filter", ownerID, serverID, "EE/GOV/70000002/API", "r2,r4", true},
		{"privileged, member provider filter", ownerID, serverID, "EE/COM/10000001", "r5", true},
		{"regular with provider filter", "EE/COM/10000001", "", "EE/GOV/70000002/API", "r2", false},
		{"unknown provider filter", ownerID, serverID, "EE/XXX/1/Y", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := td.queryOp(tc.as, tc.server, 900, 1100, tc.filter)
			if a.fault != nil {
				t.Fatal(a.fault)
			}
			if got := ids(a.records); got != tc.want {
				t.Errorf("records %s, want %s", got, tc.want)
			}
			for _, r := range a.records {
				if _, has := r["securityServerInternalIp"]; has != tc.internalIP {
					t.Errorf("securityServerInternalIp present %v, want %v", has, tc.internalIP)
				}
			}
		})
	}
	t.Run("security-server set: header must name it", func(t *testing.T) {
		clock2 := newTestClock(1000)
		td2 := queryDaemon(t, clock2, func(c *Config) { c.OpMonitor.SecurityServer = "EE/COM/10000001/ss2" })
		td2.storeAt(clock2, 1000, mk("r1", "EE/COM/10000001/CRM", "EE/GOV/70000001/MONITORING"), mk("r5", "EE/GOV/70000001", "EE/COM/10000001"))
		clock2.Set(queryNow)
		if got := ids(td2.queryOp(ownerID, serverID, 900, 1100, "").records); got != "r5" {
			t.Errorf("owner of another server: %s, want r5", got)
		}
		if got := ids(td2.queryOp("EE/COM/10000001", "EE/COM/10000001/ss2", 900, 1100, "").records); got != "r1,r5" {
			t.Errorf("owner of the configured server: %s", got)
		}
	})
}

func TestQueryOutputSpec(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	td.storeAt(clock, 1000, jrec("messageId", "m1", "serviceCode", "svc", "requestSize", 10), jrec("messageId", "m2"))
	clock.Set(queryNow)
	keys := func(m map[string]any) string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return strings.Join(k, ",")
	}
	tests := []struct {
		name   string
		as     string
		server string
		fields []string
		want   []string // sorted keys per record
	}{
		{"four fields", ownerID, serverID, []string{"monitoringDataTs", "messageId", "serviceCode", "succeeded"},
			[]string{"messageId,monitoringDataTs,serviceCode,succeeded", "messageId,monitoringDataTs,succeeded"}},
		{"only faultCode", ownerID, serverID, []string{"faultCode"}, []string{"", ""}},
		{"duplicates ignored", ownerID, serverID, []string{"messageId", "messageId"}, []string{"messageId", "messageId"}},
		{"internal ip for owner", ownerID, serverID, []string{"securityServerInternalIp", "xRequestId"}, []string{"securityServerInternalIp", "securityServerInternalIp"}},
		{"internal ip dropped for monitoring? no: kept", monitoringID, "", []string{"securityServerInternalIp"}, []string{"securityServerInternalIp", "securityServerInternalIp"}},
		{"all fields", ownerID, serverID, nil, []string{
			"messageId,monitoringDataTs,requestInTs,requestSize,responseOutTs,securityServerInternalIp,securityServerType,serviceCode,succeeded",
			"messageId,monitoringDataTs,requestInTs,responseOutTs,securityServerInternalIp,securityServerType,succeeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := td.queryOp(tc.as, tc.server, 900, 1100, "", tc.fields...)
			if a.fault != nil {
				t.Fatal(a.fault)
			}
			if len(a.records) != len(tc.want) {
				t.Fatalf("%d records", len(a.records))
			}
			for i, r := range a.records {
				if keys(r) != tc.want[i] {
					t.Errorf("record %d keys %q, want %q", i, keys(r), tc.want[i])
				}
			}
		})
	}
	// A regular client never gets the internal IP, and asking is no error.
	clock.Set(1000)
	r := jrec("messageId", "m3")
	withParty(r, "client", "EE/COM/10000001/CRM")
	td.store(r)
	clock.Set(queryNow)
	a := td.queryOp("EE/COM/10000001/CRM", "", 900, 1100, "", "securityServerInternalIp", "messageId")
	if a.fault != nil || len(a.records) != 1 || keys(a.records[0]) != "messageId" {
		t.Errorf("regular client: %+v %v", a.records, a.fault)
	}
}

// TestQueryFaults checks the daemon-level faults of §3.9 and §4.1.
func TestQueryFaults(t *testing.T) {
	clock := newTestClock(queryNow)
	td := queryDaemon(t, clock, nil)
	avail := int64(queryNow - 60)
	req := func(from, to int64, fields ...string) []byte {
		return schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(ownerID), Server: serverOf(serverID), To: to, Fields: fields}, from)
	}
	const invalid = "server.serverproxy.opmonitor.client.invalid_request"
	tests := []struct {
		name, method, ctype string
		body                []byte
		code, str           string
		connClose           bool
	}{
		{"GET", http.MethodGet, "text/xml", nil, "server.serverproxy.opmonitor.invalid_http_method", "Must use POST request method instead of GET", false},
		{"content type", http.MethodPost, "application/json", req(0, 10), "server.serverproxy.opmonitor.invalid_content_type", "Invalid content type application/json, expecting text/xml", false},
		{"multipart request", http.MethodPost, "multipart/related; boundary=x", req(0, 10), "server.serverproxy.opmonitor.invalid_content_type", "Invalid content type multipart/related; boundary=x, expecting text/xml", false},
		{"from negative", http.MethodPost, "text/xml", req(-1, 10), invalid, "Records from timestamp is a negative number", true},
		{"to negative", http.MethodPost, "text/xml", req(0, -5), invalid, "Records to timestamp is a negative number", true},
		{"to before from", http.MethodPost, "text/xml", req(1760004100, 1760004050), invalid, "Records to timestamp is earlier than records from timestamp", true},
		{"from not yet available", http.MethodPost, "text/xml", req(avail, avail+10), invalid, fmt.Sprintf("Records not available from %d yet", avail), true},
		{"unknown output field", http.MethodPost, "text/xml", req(0, 10, "serviceCode", "myServiceCode"), invalid, "Unknown output field in search criteria: myServiceCode", true},
		{"id is not a field", http.MethodPost, "text/xml", req(0, 10, "id"), invalid, "Unknown output field in search criteria: id", true},
		{"not XML", http.MethodPost, "text/xml", []byte("not xml"), "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, b := doRequest(t, tc.method, td.url+"/query_data", tc.ctype, tc.body)
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			if hdr.Get("Content-Type") != "text/xml;charset=utf-8" {
				t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
			}
			if _, ok := hdr["Soapaction"]; !ok {
				t.Errorf("no SOAPAction header: %v", hdr)
			}
			f := schema.ParseFault(b)
			if f == nil {
				t.Fatalf("no fault: %s", b)
			}
			if tc.code != "" && (f.Code != tc.code || f.String != tc.str) {
				t.Errorf("fault %q %q, want %q %q", f.Code, f.String, tc.code, tc.str)
			}
			if tc.code != "" && (hdr.Get("Connection") == "close") != tc.connClose {
				t.Errorf("Connection %q, want close=%v", hdr.Get("Connection"), tc.connClose)
			}
			if !regexp.MustCompile(`^<\?xml version="1.0" encoding="UTF-8"\?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>[^<]+</faultcode><faultstring>[^<]*</faultstring><faultactor></faultactor><detail><faultDetail xmlns="">[0-9a-f-]{36}</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>$`).Match(b) {
				t.Errorf("fault bytes: %s", b)
			}
		})
	}
}

// TestQueryOutdatedGlobalConf: expired or invalid configuration → fault for
// both operations, and /readyz says why.
func TestQueryOutdatedGlobalConf(t *testing.T) {
	clock := newTestClock(queryNow)
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	writeGlobalConf(t, cfg.GlobalConf.Directory, time.Now().Add(-time.Minute), monitoringID)
	td := startDaemon(t, cfg, time.Now)
	for _, health := range []bool{false, true} {
		o := schema.QuerySpec{As: clientOf(ownerID), To: 10, Health: health}
		_, _, b := td.post("/query_data", "text/xml", schema.BuildQueryRequest(o, 0))
		f := schema.ParseFault(b)
		if f == nil || f.Code != "server.serverproxy.opmonitor.global_conf_outdated" || f.String != "Global configuration is expired" {
			t.Errorf("health=%v: %s", health, b)
		}
	}
	status, _, b := doRequest(t, http.MethodGet, td.adminURL+"/readyz", "", nil)
	if status != 503 || !bytes.Contains(b, []byte(`"status":"not ready"`)) {
		t.Errorf("readyz: %d %s", status, b)
	}
	_ = clock
	// A configured directory without instance-identifier is invalid, not standalone.
	dir2 := t.TempDir()
	cfg2 := testConfig(t, dir2)
	cfg2.GlobalConf.Directory = filepath.Join(dir2, "globalconf")
	if err := os.MkdirAll(cfg2.GlobalConf.Directory, 0o755); err != nil {
		t.Fatal(err)
	}
	td2 := startDaemon(t, cfg2, nil)
	_, _, b = td2.post("/query_data", "text/xml", schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(ownerID), To: 10}, 0))
	if f := schema.ParseFault(b); f == nil || f.Code != "server.serverproxy.opmonitor.global_conf_outdated" {
		t.Errorf("empty directory: %s", b)
	}
}

// strictRe is how X-Road Metrics' collector finds the attachment: lowercase
// part headers, CRLF, content-id last, boundary starting with xroad.
var strictRe = regexp.MustCompile(`(?s)^--(xroad[A-Za-z]{30})\r\ncontent-type:text/xml; charset=UTF-8\r\n\r\n(<\?xml.*?)\r\n--xroad[A-Za-z]{30}\r\ncontent-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data\.json\.gz>\r\n\r\n(.*)\r\n--xroad[A-Za-z]{30}--\r\n$`)

// TestQueryStrictClients parses a real answer the way strict byte-level
// clients do.
func TestQueryStrictClients(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	td.storeAt(clock, 1000, jrec("messageId", "m1"), jrec("messageId", "m2", "serviceVersion", "красивая родина"))
	clock.Set(queryNow)
	a := td.queryOp(ownerID, serverID, 900, 1760005000, "")
	if a.fault != nil {
		t.Fatal(a.fault)
	}
	ct := a.header.Get("Content-Type")
	if !regexp.MustCompile(`^multipart/related; type="text/xml"; charset=UTF-8; boundary=xroad[A-Za-z]{30}$`).MatchString(ct) {
		t.Errorf("Content-Type %q", ct)
	}
	if a.header.Get("Connection") != "close" {
		t.Errorf("Connection %q", a.header.Get("Connection"))
	}
	m := strictRe.FindSubmatch(a.raw)
	if m == nil {
		t.Fatalf("strict regexp does not match:\n%q", a.raw)
	}
	if !strings.HasSuffix(ct, string(m[1])) {
		t.Errorf("boundary in body %s differs from header", m[1])
	}
	soap := m[2]
	if !bytes.Contains(soap, []byte("<om:recordsCount>2</om:recordsCount>")) ||
		!bytes.Contains(soap, []byte("<om:records>cid:operational-monitoring-data.json.gz</om:records>")) ||
		!bytes.Contains(soap, []byte(fmt.Sprintf("<om:nextRecordsFrom>%d</om:nextRecordsFrom>", queryNow-60))) {
		t.Errorf("SOAP part: %s", soap)
	}
	gunzip := func(b []byte) string { return string(gunzipOne(t, b)) }
	payload := gunzip(m[3])
	if !strings.HasPrefix(payload, `{"records":[{"monitoringDataTs":1000,`) || !strings.Contains(payload, "красивая родина") {
		t.Errorf("payload %s", payload)
	}
	// Upstream's Python tests cut the attachment headers by their exact length.
	const attHeaders = "content-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data.json.gz>\r\n\r\n"
	i := bytes.Index(a.raw, []byte(attHeaders))
	if i < 0 {
		t.Fatal("attachment headers not found verbatim")
	}
	rest := a.raw[i+len(attHeaders):]
	end := bytes.LastIndex(rest, []byte("\r\n--xroad"))
	if gunzip(rest[:end]) != payload {
		t.Error("cutting by header length finds another payload")
	}
}

// TestQueryReadsUpstreamAnswer: opmond query's reader accepts a real answer
// of upstream's daemon relayed by a security server.
func TestQueryReadsUpstreamAnswer(t *testing.T) {
	data, err := os.ReadFile("../../shared/fixtures/upstream-operational-data-response.dat")
	if err != nil {
		t.Skip("shared fixtures not present:", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	boundary := strings.TrimSpace(strings.TrimPrefix(string(line), "--"))
	recs, next, err := schema.ReadOperationalDataAnswer(`multipart/related; type="text/xml"; boundary=`+boundary, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5230 || next == nil {
		t.Fatalf("%d records, next %v", len(recs), next)
	}
	if n, cnext, err := schema.CountOperationalDataAnswer(`multipart/related; type="text/xml"; boundary=`+boundary, bytes.NewReader(data)); err != nil || n != 5230 || cnext == nil || *cnext != *next {
		t.Errorf("counting reader: %d records, next %v, %v", n, cnext, err)
	}
	var r map[string]any
	if err := json.Unmarshal(recs[0], &r); err != nil || r["monitoringDataTs"] == nil {
		t.Errorf("first record %s: %v", recs[0], err)
	}
	fault, err := os.ReadFile("../../shared/fixtures/upstream-fault-response.dat")
	if err == nil {
		if f := schema.ParseFault(fault); f == nil || f.Code == "" {
			t.Errorf("upstream fault not recognised: %s", fault)
		}
	}
}

// TestHealthData: statistics over HTTP match values computed here from the
// records sent.
func TestHealthData(t *testing.T) {
	clock := newTestClock(1760004000)
	td := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.HealthStatisticsPeriod = 20 })
	type call struct {
		dur, req, resp int64
		ok             bool
	}
	calls := []call{{91, 388, 5120, true}, {106, 388, 5150, true}, {121, 400, 5180, true}, {50, 10, 0, false}}
	var recs []map[string]any
	for i, c := range calls {
		in := int64(1760004000000 + i*1000)
		r := jrec("securityServerType", "Producer", "requestInTs", in, "responseOutTs", in+c.dur,
			"succeeded", c.ok, "requestSize", c.req, "responseSize", c.resp, "serviceCode", "products", "serviceType", "REST")
		withParty(r, "service", "EE/COM/10000001/CRM")
		recs = append(recs, r)
	}
	other := jrec("securityServerType", "Producer", "serviceCode", "getX", "serviceVersion", "v1")
	withParty(other, "service", "EE/GOV/70000001")
	client := jrec("serviceCode", "ignored")
	withParty(client, "service", "EE/GOV/70000001")
	td.store(append(recs, other, client)...)

	get := func(filter string) *schema.HealthData {
		o := schema.QuerySpec{As: clientOf("EE/COM/10000001/CRM"), Health: true}
		if filter != "" {
			o.Client = clientOf(filter)
		}
		status, hdr, b := td.post("/query_data", "text/xml; charset=UTF-8", schema.BuildQueryRequest(o, 0))
		if status != 200 || hdr.Get("Content-Type") != "text/xml; charset=UTF-8" {
			t.Fatalf("status %d content type %q", status, hdr.Get("Content-Type"))
		}
		if f := schema.ParseFault(b); f != nil {
			t.Fatal(f)
		}
		h, err := schema.ParseHealthAnswer(b)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := get("")
	if h.StatisticsPeriodSeconds != 20 || h.MonitoringStartupMs != 1760004000000 || len(h.Services) != 2 {
		t.Fatalf("health %+v", h)
	}
	s := get("EE/COM/10000001/CRM").Services
	if len(s) != 1 {
		t.Fatalf("filtered services %+v", s)
	}
	ev := s[0]
	mean := func(v ...float64) float64 {
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		return sum / float64(len(v))
	}
	sd := func(v ...float64) float64 {
		m, ss := mean(v...), 0.0
		for _, x := range v {
			ss += (x - m) * (x - m)
		}
		return math.Sqrt(ss / float64(len(v)-1))
	}
	if ev.SuccessfulCount != 3 || ev.UnsuccessfulCount != 1 || ev.ServiceType != "REST" ||
		ev.LastSuccessfulMs != 1760004002000+121 || ev.LastUnsuccessfulMs != 1760004003000+50 {
		t.Errorf("service events %+v", ev)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if ev.RequestDuration.Min != 91 || ev.RequestDuration.Max != 121 || !near(ev.RequestDuration.Avg, mean(91, 106, 121)) || !near(ev.RequestDuration.StdDev, sd(91, 106, 121)) {
		t.Errorf("duration %+v", ev.RequestDuration)
	}
	if ev.RequestSize == nil || !near(ev.RequestSize.StdDev, sd(388, 388, 400)) || !near(ev.RequestSize.Avg, mean(388, 388, 400)) {
		t.Errorf("request size %+v", ev.RequestSize)
	}
	if ev.ResponseSize == nil || !near(ev.ResponseSize.StdDev, sd(5120, 5150, 5180)) {
		t.Errorf("response size %+v", ev.ResponseSize)
	}
	if len(get("EE/COM/99999999").Services) != 0 {
		t.Error("unknown filter client lists services")
	}
	// After the period the counts are 0 and the statistics gone.
	clock.Advance(25 * time.Second)
	ev = get("EE/COM/10000001/CRM").Services[0]
	if ev.SuccessfulCount != 0 || ev.UnsuccessfulCount != 0 || ev.RequestSize != nil || ev.LastSuccessfulMs == 0 {
		t.Errorf("after the period: %+v", ev)
	}
}

// TestQueryLargePayload: a payload compressed in several parallel blocks is
// still one gzip member holding every record in order.
func TestQueryLargePayload(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	const n = 3000
	recs := make([]map[string]any, 0, 100)
	for i := 0; i < n; i++ {
		recs = append(recs, jrec("messageId", fmt.Sprint(i), "faultString", strings.Repeat(fmt.Sprint(i%97), 400)))
		if len(recs) == 100 {
			td.storeAt(clock, 1000+int64(i/1000), recs...)
			recs = recs[:0]
		}
	}
	clock.Set(queryNow)
	a := td.queryOp(ownerID, serverID, 900, 1100, "")
	if a.fault != nil {
		t.Fatal(a.fault)
	}
	if len(a.records) != n {
		t.Fatalf("%d records", len(a.records))
	}
	for i, r := range a.records {
		if r["messageId"] != fmt.Sprint(i) {
			t.Fatalf("record %d is %v", i, r["messageId"])
		}
	}
	m := strictRe.FindSubmatch(a.raw)
	if m == nil {
		t.Fatal("strict regexp does not match")
	}
	br := bytes.NewReader(m[3])
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	plain, err := io.ReadAll(zr)
	if err != nil || br.Len() != 0 || len(plain) < 2*512<<10 {
		t.Errorf("first member: %d bytes, %d bytes left, %v", len(plain), br.Len(), err)
	}
}

// TestQueryConcurrentPages: privileged pages asked at the same time each
// get their own records whole. Their payload buffers are pooled and sent
// without a copy, so a buffer must not go back to the pool before its
// answer is written.
func TestQueryConcurrentPages(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	const seconds, perSecond = 6, 1500
	for s := range seconds {
		recs := make([]map[string]any, 0, 500)
		for i := range perSecond {
			recs = append(recs, jrec("messageId", fmt.Sprintf("%d-%d", s, i), "faultString", strings.Repeat(fmt.Sprint(i%89), 60)))
			if len(recs) == cap(recs) {
				td.storeAt(clock, 1000+int64(s), recs...)
				recs = recs[:0]
			}
		}
	}
	clock.Set(queryNow)
	var wg sync.WaitGroup
	for g := range 2 * seconds {
		wg.Go(func() {
			s := g % seconds
			body := schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(monitoringID), To: 1000 + int64(s)}, 1000+int64(s))
			for range 10 {
				resp, err := http.Post(td.url+"/query_data", "text/xml; charset=UTF-8", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				raws, _, err := schema.ReadOperationalDataAnswer(resp.Header.Get("Content-Type"), bytes.NewReader(b))
				if resp.StatusCode != 200 || err != nil || len(raws) != perSecond {
					t.Errorf("second %d: status %d, %d records, %v", s, resp.StatusCode, len(raws), err)
					return
				}
				for i, r := range raws {
					if want := fmt.Sprintf(`"messageId":"%d-%d"`, s, i); !bytes.Contains(r, []byte(want)) {
						t.Errorf("second %d: record %d is %.80s", s, i, r)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestQueryChunkedBody: the security server streams query bodies with
// chunked transfer encoding and an empty accept-encoding header.
func TestQueryChunkedBody(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	td.storeAt(clock, 1000, jrec("messageId", "chunked"))
	clock.Set(queryNow)
	body := schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(ownerID), Server: serverOf(serverID), To: 2000}, 0)
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(body); i += 100 {
			pw.Write(body[i:min(i+100, len(body))])
		}
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, td.url+"/query_data", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml; charset=UTF-8")
	req.Header["accept-encoding"] = []string{""}
	req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	recs, _, err := schema.ReadOperationalDataAnswer(resp.Header.Get("Content-Type"), resp.Body)
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0]), "chunked") {
		t.Errorf("answer %s: %v", recs, err)
	}
}
