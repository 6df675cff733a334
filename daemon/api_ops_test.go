package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// TestAPIIntervals: counts equal those computed here, with records on both
// sides of bucket edges and windows that start and end on and beside them.
func TestAPIIntervals(t *testing.T) {
	clock := newTestClock(1760000000)
	td := queryDaemon(t, clock, nil)
	type rec struct {
		in          int64 // requestInTs, ms
		ok          bool
		typ, client string
		provider    string
		code, ver   string
	}
	const base = 1760000040 * 1000 // a minute edge: 1760000040 = 29333334 min
	var recs []rec
	offsets := []int64{-60001, -60000, -1, 0, 1, 59999, 60000, 60001, 299999, 300000, 300001, 599999}
	for i, off := range offsets {
		for j := range 3 {
			r := rec{in: base + off, ok: (i+j)%3 != 0, typ: []string{"Client", "Producer"}[(i+j)%2],
				client: []string{"EE/COM/1/A", "EE/COM/2"}[j%2], provider: []string{"EE/GOV/3/P", "EE/GOV/3", "EE/COM/1/A"}[(i+j)%3],
				code: []string{"getX", "getY"}[i%2]}
			if j == 2 {
				r.ver = "v1"
			}
			recs = append(recs, r)
		}
	}
	var batch []map[string]any
	for i, r := range recs {
		m := jrec("messageId", fmt.Sprint(i), "requestInTs", r.in, "responseOutTs", r.in+5, "succeeded", r.ok,
			"securityServerType", r.typ, "serviceCode", r.code)
		if r.ver != "" {
			m["serviceVersion"] = r.ver
		}
		withParty(m, "client", r.client)
		withParty(m, "service", r.provider)
		batch = append(batch, m)
	}
	td.store(batch...)

	type bucket struct{ IntervalStart, SuccessCount, FailureCount int64 }
	want := func(from, to, minutes int64, match func(rec) bool) []bucket {
		step := minutes * 60
		var out []bucket
		for s := from / step * step; s <= to/step*step; s += step {
			b := bucket{IntervalStart: s}
			for _, r := range recs {
				if r.in >= s*1000 && r.in < (s+step)*1000 && match(r) {
					if r.ok {
						b.SuccessCount++
					} else {
						b.FailureCount++
					}
				}
			}
			out = append(out, b)
		}
		return out
	}
	type filt struct {
		q     string
		match func(rec) bool
	}
	filters := []filt{
		{"", func(rec) bool { return true }},
		{"&type=Client", func(r rec) bool { return r.typ == "Client" }},
		{"&type=Producer", func(r rec) bool { return r.typ == "Producer" }},
		{"&member=EE/COM/1/A", func(r rec) bool { return r.client == "EE/COM/1/A" || r.provider == "EE/COM/1/A" }},
		{"&member=EE/GOV/3", func(r rec) bool { return r.client == "EE/GOV/3" || r.provider == "EE/GOV/3" }},
		{"&service=EE/GOV/3/P/getX", func(r rec) bool { return r.provider == "EE/GOV/3/P" && r.code == "getX" }},
		{"&service=EE/GOV/3//getY/v1", func(r rec) bool { return r.provider == "EE/GOV/3" && r.code == "getY" && r.ver == "v1" }},
		{"&type=Producer&member=EE/COM/2", func(r rec) bool { return r.typ == "Producer" && (r.client == "EE/COM/2" || r.provider == "EE/COM/2") }},
	}
	b := int64(base / 1000)
	windows := [][2]int64{{b, b}, {b - 1, b}, {b, b + 59}, {b, b + 60}, {b - 61, b + 600}, {b - 60, b + 299}, {b + 1, b + 301}}
	checked := 0
	for _, minutes := range []int64{1, 5, 7} {
		for _, w := range windows {
			for _, f := range filters {
				path := fmt.Sprintf("/api/v1/intervals?from=%d&to=%d&interval=%d%s", w[0], w[1], minutes, f.q)
				var got struct{ Intervals []bucket }
				if st := td.apiGet(path, &got); st != 200 {
					t.Fatalf("%s: status %d", path, st)
				}
				exp := want(w[0], w[1], minutes, f.match)
				if !slices.Equal(got.Intervals, exp) {
					t.Errorf("%s:\n got %v\nwant %v", path, got.Intervals, exp)
				}
				checked++
			}
		}
	}
	// Something was counted at all (the model is not trivially empty).
	var all struct{ Intervals []bucket }
	td.apiGet(fmt.Sprintf("/api/v1/intervals?from=%d&to=%d&interval=1", b-120, b+600), &all)
	total := int64(0)
	for _, x := range all.Intervals {
		total += x.SuccessCount + x.FailureCount
	}
	if total != int64(len(recs)) {
		t.Errorf("counted %d records in all buckets, stored %d", total, len(recs))
	}
	t.Logf("%d interval queries checked", checked)
}

// TestAPIQuarantine: quarantined records are listed with their reason and
// as received, filtered on receivedAt with inclusive bounds.
func TestAPIQuarantine(t *testing.T) {
	clock := newTestClock(5000)
	td := queryDaemon(t, clock, nil)
	bad := func(id string) string {
		return `{"messageId":"` + id + `","securityServerType":"Gateway","securityServerInternalIp":"1.2.3.4","requestInTs":1,"responseOutTs":2,"succeeded":true}`
	}
	for i, ts := range []int64{5000, 5001, 5002} {
		clock.Set(ts)
		body := `{"records":[` + bad(fmt.Sprint("q", i)) + `,{"securityServerType":"Client"}]}`
		if st, _, b := td.post("/store_data", "application/json", []byte(body)); st != 200 || string(b) != `{"status":"OK"}` {
			t.Fatalf("store: %d %s", st, b)
		}
	}
	type entry struct {
		ReceivedAt int64
		Reason     string
		Record     json.RawMessage
	}
	var got struct{ Records []entry }
	td.apiGet("/api/v1/quarantine", &got)
	if len(got.Records) != 6 {
		t.Fatalf("%d quarantined, want 6: %+v", len(got.Records), got.Records)
	}
	if e := got.Records[0]; e.ReceivedAt != 5000 || string(e.Record) != bad("q0") || !strings.Contains(e.Reason, "securityServerType") {
		t.Errorf("first entry %+v", e)
	}
	got.Records = nil
	td.apiGet("/api/v1/quarantine?from=5001&to=5001", &got)
	if len(got.Records) != 2 || got.Records[0].ReceivedAt != 5001 || string(got.Records[0].Record) != bad("q1") {
		t.Errorf("[5001,5001]: %+v", got.Records)
	}
	got.Records = nil
	td.apiGet("/api/v1/quarantine?from=5002", &got)
	if len(got.Records) != 2 {
		t.Errorf("from 5002: %+v", got.Records)
	}
}

// TestAPIImport: records keep their monitoringDataTs; bad lines are
// reported by number and the good ones stored.
func TestAPIImport(t *testing.T) {
	clock := newTestClock(100000)
	td := queryDaemon(t, clock, nil)
	good := func(id string, ts int) string {
		return fmt.Sprintf(`{"monitoringDataTs":%d,"securityServerInternalIp":"10.1.1.1","securityServerType":"Producer","requestInTs":%d000,"responseOutTs":%d005,"messageId":%q,"succeeded":true}`, ts, ts, ts, id)
	}
	lines := []string{
		good("g1", 500),
		"",
		`{"messageId":"nots","securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true}`,
		`not json`,
		`{"monitoringDataTs":7,"securityServerType":"Client"}`,
		"  \r",
		`[1,2]`,
		good("g2", 400) + "\r",
		`{"monitoringDataTs":8,"securityServerType":"Gateway","securityServerInternalIp":"1","requestInTs":1,"responseOutTs":2,"succeeded":true}`,
		good("g3", 400),
	}
	st, _, b := doRequest(t, "POST", td.adminURL+"/api/v1/import", "application/x-ndjson", []byte(strings.Join(lines, "\n")))
	if st != 200 {
		t.Fatalf("status %d: %s", st, b)
	}
	var ans struct {
		Stored   int
		Rejected []struct {
			Line   int
			Reason string
		}
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatal(err)
	}
	var gotLines []int
	for _, r := range ans.Rejected {
		gotLines = append(gotLines, r.Line)
		if r.Reason == "" {
			t.Errorf("line %d: no reason", r.Line)
		}
	}
	if ans.Stored != 3 || !slices.Equal(gotLines, []int{3, 4, 5, 7, 9}) {
		t.Errorf("answer %s; want 3 stored, lines 3,4,5,7,9 rejected", b)
	}
	if !strings.Contains(ans.Rejected[0].Reason, "monitoringDataTs") || !strings.Contains(ans.Rejected[4].Reason, "securityServerType") {
		t.Errorf("reasons: %+v", ans.Rejected)
	}
	var a apiRecords
	if st := td.apiGet("/api/v1/records?from=0&to=1000", &a); st != 200 {
		t.Fatalf("records: status %d", st)
	}
	want := []string{good("g2", 400), good("g3", 400), good("g1", 500)}
	var got []string
	for _, r := range a.Records {
		got = append(got, string(r))
	}
	if !slices.Equal(got, want) {
		t.Errorf("stored:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A line longer than max-request-bytes is rejected, the rest stored.
	td2 := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.MaxRequestBytes = 1024 })
	long := `{"monitoringDataTs":1,"messageId":"` + strings.Repeat("x", 200<<10) + `"}`
	_, _, b = doRequest(t, "POST", td2.adminURL+"/api/v1/import", "", []byte(good("a", 1)+"\n"+long+"\n"+good("b", 2)))
	if string(b) != `{"stored":2,"rejected":[{"line":2,"reason":"line longer than 1024 bytes"}]}` {
		t.Errorf("long line: %s", b)
	}
}

// TestAPIBackupUnderLoad: a backup taken while stores go on opens in a
// second daemon with every record acknowledged before it started, and
// passes bbolt's check. The store latency during the backup is logged.
func TestAPIBackupUnderLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	td := startDaemon(t, cfg, nil)
	// Some bulk first, so that the copy takes a while.
	bulk := 50_000
	if os.Getenv("OPMOND_LONG") != "" {
		bulk = 1_000_000
	}
	var recs []schema.Record
	t0 := time.Now()
	base := time.Now().Unix() - 3600
	for i := range bulk {
		r, err := schema.DecodeRecord([]byte(fmt.Sprintf(`{"monitoringDataTs":%d,"messageId":"bulk-%d-%x","securityServerInternalIp":"10.0.%d.%d","securityServerType":"Client","requestInTs":%d,"responseOutTs":%d,"succeeded":true,"clientXRoadInstance":"EE","clientMemberClass":"COM","clientMemberCode":"%d","serviceCode":"svc%d"}`,
			base+int64(i/100), i, i*2654435761, i%256, i/256%256, int64(i)*1000, int64(i)*1000+7, i%97, i%13)), schema.DecodeOptions{KeepMonitoringDataTs: true})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	t1 := time.Now()
	if err := td.DB().Import(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	t.Logf("decode %v, import %v", t1.Sub(t0), time.Since(t1))
	size, _ := td.DB().Size()

	var (
		mu       sync.Mutex
		acked    []string
		lat      []time.Duration // during the backup
		inBackup bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		errs     = make(chan error, 4)
	)
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("load-%d-%d", w, n)
				body, _ := json.Marshal(map[string]any{"records": []any{jrec("messageId", id)}})
				start := time.Now()
				resp, err := http.Post(td.url+"/store_data", "application/json", strings.NewReader(string(body)))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != `{"status":"OK"}` {
					errs <- fmt.Errorf("store: %s", b)
					return
				}
				d := time.Since(start)
				mu.Lock()
				acked = append(acked, id)
				if inBackup {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	before := slices.Clone(acked)
	inBackup = true
	mu.Unlock()
	start := time.Now()
	resp, err := http.Get(td.adminURL + "/api/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	// Read slowly, as over a slow link: the read transaction stays open
	// for about a second while the stores go on.
	var n int64
	buf := make([]byte, 64<<10)
	for {
		k, rerr := io.ReadFull(resp.Body, buf)
		if _, werr := f.Write(buf[:k]); werr != nil {
			t.Fatal(werr)
		}
		n += int64(k)
		if rerr != nil {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				err = nil
			} else {
				err = rerr
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp.Body.Close()
	f.Close()
	took := time.Since(start)
	mu.Lock()
	inBackup = false
	during := slices.Clone(lat)
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("backup: %v status %d", err, resp.StatusCode)
	}
	slices.Sort(during)
	if len(during) == 0 {
		t.Fatal("no store request completed during the backup")
	}
	t.Logf("backup read slowly: %d bytes (database %d bytes) in %v, %.0f MB/s; %d stores during it: median %v, p99 %v, max %v; %d stored before it",
		n, size, took.Round(time.Millisecond), float64(n)/1e6/took.Seconds(), len(during),
		during[len(during)/2], during[len(during)*99/100], during[len(during)-1], len(before))

	// And once at full speed, for the figure.
	start = time.Now()
	fast := readBackup(t, td.adminURL)
	t.Logf("backup at full speed: %d bytes in %v, %.0f MB/s", fast, time.Since(start).Round(time.Millisecond), float64(fast)/1e6/time.Since(start).Seconds())

	bdb, err := bolt.Open(backup, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()

	cfg2 := testConfig(t, t.TempDir())
	cfg2.OpMonitor.Database = backup
	td2 := startDaemon(t, cfg2, nil)
	have := map[string]bool{}
	for _, r := range td2.all() {
		have[r.Str(schema.FMessageID)] = true
	}
	if len(have) < bulk+len(before) {
		t.Errorf("backup has %d records, want at least %d", len(have), bulk+len(before))
	}
	for _, id := range before {
		if !have[id] {
			t.Fatalf("record %s acknowledged before the backup is not in it", id)
		}
	}
}

// readBackup reads GET /api/v1/backup to its end and returns its size.
func readBackup(tb testing.TB, adminURL string) int64 {
	tb.Helper()
	resp, err := http.Get(adminURL + "/api/v1/backup")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
