package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

func benchAdminDaemon(b *testing.B) *testDaemon {
	b.Helper()
	dir := b.TempDir()
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "opmonitor.db")
	cfg.OpMonitor.KeepRecordsForDays = 36500
	cfg.GlobalConf.Directory = filepath.Join(dir, "none")
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ln, aln := mustListen(b), mustListen(b)
	d, err := New(cfg, Options{LogWriter: io.Discard, Listener: ln, AdminListener: aln})
	if err != nil {
		b.Fatal(err)
	}
	d.Start()
	b.Cleanup(func() { d.Close() })
	return &testDaemon{Daemon: d, url: "http://" + ln.Addr().String(), adminURL: "http://" + aln.Addr().String(), cfg: cfg}
}

// BenchmarkImportHTTP: POST /api/v1/import of 100,000 JSON Lines records
// (opmond import, a migration), reporting records/s.
func BenchmarkImportHTTP(b *testing.B) {
	recs := schematest.Records(100_000, 3, 1_760_000_000_000)
	var body []byte
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, 1_760_000_000+int64(i/50))
		body = schema.AppendRecordJSON(body, &recs[i], schema.AllFields)
		body = append(body, '\n')
	}
	td := benchAdminDaemon(b)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		resp, err := http.Post(td.adminURL+"/api/v1/import", "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var ans struct{ Stored int }
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.Stored != len(recs) {
			b.Fatalf("answer %+v %v", ans, err)
		}
		resp.Body.Close()
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkBackupUnderLoad: GET /api/v1/backup of a database of 500,000
// records while 4 clients store 100-record requests; reports the copy's
// MB/s and the store latency (median, max) during the copies and, for
// comparison, over one second without a copy.
func BenchmarkBackupUnderLoad(b *testing.B) {
	td := benchAdminDaemon(b)
	recs := schematest.Records(500_000, 5, 1_760_000_000_000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, 1_760_000_000+int64(i/100))
	}
	if err := td.DB().Import(context.Background(), recs); err != nil {
		b.Fatal(err)
	}
	bodies := recordBodies(recs[:10_000])
	var (
		mu   sync.Mutex
		lat  []time.Duration
		on   bool
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				resp, err := http.Post(td.url+"/store_data", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					b.Error(err)
					return
				}
				ans, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(ans), `"OK"`) {
					b.Errorf("store: %s", ans)
					return
				}
				mu.Lock()
				if on {
					lat = append(lat, time.Since(start))
				}
				mu.Unlock()
			}
		})
	}
	// The same stores without a backup, for comparison.
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	on = true
	mu.Unlock()
	time.Sleep(time.Second)
	mu.Lock()
	on = false
	idle := slices.Clone(lat)
	lat = lat[:0]
	mu.Unlock()
	slices.Sort(idle)
	var bytesCopied int64
	b.ResetTimer()
	for range b.N {
		mu.Lock()
		on = true
		mu.Unlock()
		bytesCopied += readBackup(b, td.adminURL)
		mu.Lock()
		on = false
		mu.Unlock()
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(bytesCopied)/1e6/b.Elapsed().Seconds(), "MB/s")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "store-p50-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "store-max-ms")
		b.ReportMetric(float64(len(lat)), "stores")
	}
	if len(idle) > 0 {
		b.ReportMetric(float64(idle[len(idle)/2].Microseconds())/1000, "idle-store-p50-ms")
		b.ReportMetric(float64(idle[len(idle)-1].Microseconds())/1000, "idle-store-max-ms")
	}
}
