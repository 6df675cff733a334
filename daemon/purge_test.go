package daemon

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
	"github.com/opmond/opmond/storage"
)

// metric scrapes /metrics and returns the value of one series (name with
// its labels as Prometheus prints them); a missing series is a test error.
func (td *testDaemon) metric(series string) float64 {
	td.t.Helper()
	status, _, body := doRequest(td.t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	if status != 200 {
		td.t.Fatalf("/metrics: status %d", status)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				td.t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	td.t.Errorf("/metrics lacks %s", series)
	return 0
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// importAt stores records with the given monitoringDataTs, one each, with
// messageIds prefix0, prefix1, ...
func importAt(t *testing.T, db *storage.DB, prefix string, ts ...int64) {
	t.Helper()
	recs := make([]schema.Record, len(ts))
	for i, s := range ts {
		r := &recs[i]
		r.SetStr(schema.FSecurityServerInternalIP, "10.0.0.1")
		r.SetStr(schema.FSecurityServerType, "Client")
		r.SetInt(schema.FRequestInTs, s*1000)
		r.SetInt(schema.FResponseOutTs, s*1000+10)
		r.SetBool(schema.FSucceeded, true)
		r.SetStr(schema.FMessageID, prefix+strconv.Itoa(i))
		r.SetInt(schema.FMonitoringDataTs, s)
	}
	if err := db.Import(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func messageIDs(t *testing.T, db *storage.DB) []string {
	t.Helper()
	var ids []string
	for _, r := range queryAll(t, db) {
		ids = append(ids, r.Str(schema.FMessageID))
	}
	slices.Sort(ids)
	return ids
}

func quarantineLen(t *testing.T, db *storage.DB) int {
	t.Helper()
	n := 0
	if err := db.ListQuarantine(context.Background(), 0, 1<<62, func(storage.Quarantined) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurgeOnCleanInterval: with clean-interval "1s", records older than
// keep-records-for-days (stored, imported and quarantined) disappear from
// the running daemon and younger ones stay.
func TestPurgeOnCleanInterval(t *testing.T) {
	const day = 86400
	t0 := int64(1_760_000_000)
	clk := newTestClock(t0)
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.CleanInterval = "1s"
	cfg.OpMonitor.KeepRecordsForDays = 7
	td := startDaemon(t, cfg, clk.Now)
	db := td.DB()

	// Old once the clock has moved 8 days on: stored and quarantined now,
	// imported a month ago and a day before the cutoff.
	td.store(jrec("messageId", "old-stored-0"), jrec("messageId", "old-stored-1"), jrec("messageId", "bad", "securityServerType", "Neither"))
	importAt(t, db, "old-imported-", t0-30*day, t0, t0+day-1)
	// Young: imported at the cutoff and after it.
	importAt(t, db, "young-imported-", t0+day, t0+5*day)

	runs := td.metric("opmond_purge_runs_total")
	clk.Advance(8 * day * time.Second) // cutoff t0 + 1 day
	td.store(jrec("messageId", "young-stored-0"), jrec("messageId", "bad-young", "succeeded", "yes"))
	waitFor(t, "two scheduled purges", func() bool { return td.metric("opmond_purge_runs_total") >= runs+2 })

	want := []string{"young-imported-0", "young-imported-1", "young-stored-0"}
	if got := messageIDs(t, db); !slices.Equal(got, want) {
		t.Errorf("records after the purge: %v, want %v", got, want)
	}
	if n := quarantineLen(t, db); n != 1 {
		t.Errorf("%d quarantined records left, want the young one", n)
	}
	if st, _ := db.Stats(); st.Records != int64(len(want)) {
		t.Errorf("stats %+v", st)
	}
	for series, want := range map[string]float64{
		"opmond_records_purged_total":                  5,
		"opmond_quarantine_purged_total":               1,
		`opmond_background_errors_total{task="purge"}`: 0,
		"opmond_purge_duration_seconds_count":          td.metric("opmond_purge_runs_total"),
		"opmond_purge_last_run_timestamp_seconds":      td.metric("opmond_purge_last_success_timestamp_seconds"),
	} {
		if got := td.metric(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if last := td.metric("opmond_purge_last_success_timestamp_seconds"); time.Since(time.Unix(int64(last), 0)) > time.Minute {
		t.Errorf("last success at %v", last)
	}
	if !strings.Contains(td.logs.String(), `"purged old records"`) {
		t.Error("purge not logged")
	}
}

// TestPurgeAtStart: the purge runs once when the daemon starts, whatever
// the schedule.
func TestPurgeAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir) // default clean-interval: twice a day
	now := time.Now().Unix()
	db, err := storage.Open(cfg.OpMonitor.Database, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	importAt(t, db, "old-", now-30*86400, now-8*86400)
	importAt(t, db, "young-", now-6*86400)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	td := startDaemon(t, cfg, nil)
	waitFor(t, "the start-up purge", func() bool { return td.metric("opmond_purge_runs_total") == 1 })
	if got := messageIDs(t, td.DB()); !slices.Equal(got, []string{"young-0"}) {
		t.Errorf("records after the start-up purge: %v", got)
	}
}

// TestPurgeFailureRetried: a purge that fails (here on a corrupt block) is
// logged at error level, counted, retried on the schedule, and the daemon
// keeps storing.
func TestPurgeFailureRetried(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.CleanInterval = "1s"
	db, err := storage.Open(cfg.OpMonitor.Database, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(cfg.OpMonitor.Database, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("blocks")).Put(make([]byte, 16), []byte("not a block"))
	})
	if cerr := bdb.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}

	td := startDaemon(t, cfg, nil)
	waitFor(t, "a retried purge", func() bool { return td.metric(`opmond_background_errors_total{task="purge"}`) >= 2 })
	if !strings.Contains(td.logs.String(), `"level":"error"`) || !strings.Contains(td.logs.String(), "purge records before") {
		t.Errorf("failure not logged at error level:\n%s", td.logs.String())
	}
	if v := td.metric("opmond_purge_last_success_timestamp_seconds"); v != 0 {
		t.Errorf("last success %v after failures only", v)
	}
	if v := td.metric("opmond_purge_last_run_timestamp_seconds"); v == 0 {
		t.Error("last run not set")
	}
	td.store(jrec())
	if st, _ := td.DB().Stats(); st.Records != 1 {
		t.Errorf("stats %+v after one store", st)
	}
}

// BenchmarkPurgeThroughDaemon: the daemon's scheduled purge deletes
// 1,000,000 records (OPMOND_PURGE_RECORDS changes it) while 4 clients send
// 100-record store requests over HTTP; reports the longest and the 99th
// percentile store request from the moment the records became old until
// the purge ended, and the same for the second before.
func BenchmarkPurgeThroughDaemon(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("OPMOND_PURGE_RECORDS")); err == nil && v > 0 {
		n = v
	}
	bodies := storeBodies(10_000)
	gen := schematest.Records(100_000, 5, benchBaseTs*1000)
	for range b.N {
		b.StopTimer()
		clk := newTestClock(benchBaseTs)
		cfg := Default()
		cfg.OpMonitor.Database = filepath.Join(b.TempDir(), "opmonitor.db")
		cfg.GlobalConf.Directory = filepath.Join(b.TempDir(), "none")
		cfg.OpMonitor.CleanInterval = "1s"
		cfg.Log.Level = "warn"
		cfg.Admin.Listen = ""
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		d, err := New(cfg, Options{Now: clk.Now, LogWriter: io.Discard, Listener: mustListen(b)})
		if err != nil {
			b.Fatal(err)
		}
		d.Start()
		for done := 0; done < n; done += len(gen) {
			recs := slices.Clone(gen[:min(len(gen), n-done)])
			for i := range recs {
				recs[i].SetInt(schema.FMonitoringDataTs, benchBaseTs-86400+int64((done+i)/100))
			}
			if err := d.DB().Import(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}

		type sample struct {
			at  time.Time
			lat time.Duration
		}
		var mu sync.Mutex
		var samples []sample
		stop := make(chan struct{})
		var wg sync.WaitGroup
		url := "http://" + d.Addr().String() + "/store_data"
		for w := range 4 {
			wg.Go(func() {
				client := &http.Client{}
				for i := w; ; i += 4 {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
					if err != nil {
						b.Error(err)
						return
					}
					ans, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(ans) != `{"status":"OK"}` {
						b.Errorf("store answer %s", ans)
						return
					}
					mu.Lock()
					samples = append(samples, sample{start, time.Since(start)})
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Second)
		b.StartTimer()
		old := time.Now()
		clk.Advance(30 * 24 * time.Hour)
		purged := func() float64 {
			var m dto.Metric
			_ = d.metrics.purge.recordsPurged.Write(&m)
			return m.GetCounter().GetValue()
		}
		for purged() < float64(n) {
			time.Sleep(5 * time.Millisecond)
		}
		end := time.Now()
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		var before, during []time.Duration
		for _, s := range samples {
			switch {
			case s.at.Before(old):
				before = append(before, s.lat)
			case s.at.Before(end):
				during = append(during, s.lat)
			}
		}
		slices.Sort(before)
		slices.Sort(during)
		if len(before) == 0 || len(during) == 0 {
			b.Fatalf("%d stores before, %d during the purge", len(before), len(during))
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(during[len(during)-1]), "max-store-ms")
		b.ReportMetric(ms(during[len(during)*99/100]), "p99-store-ms")
		b.ReportMetric(ms(before[len(before)-1]), "max-store-ms-before")
		b.ReportMetric(ms(before[len(before)*99/100]), "p99-store-ms-before")
		b.ReportMetric(end.Sub(old).Seconds(), "to-purged-s")
	}
}
