package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
	"github.com/opmond/opmond/storage"
)

// Benchmark database: OPMOND_BENCH_RECORDS records (default 1,000,000), 1,000
// per second of monitoringDataTs starting at benchBaseTs, built once per
// process and sealed, as a server's past seconds are (otherwise the
// daemon's sealer would be sealing them while the queries are measured).
const benchBaseTs = 1_760_000_000

var (
	benchOnce    sync.Once
	benchDir     string
	benchRecords int
	benchErr     error
)

func benchDB(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		benchRecords = 1_000_000
		if s := os.Getenv("OPMOND_BENCH_RECORDS"); s != "" {
			benchRecords, benchErr = strconv.Atoi(s)
		}
		benchDir, benchErr = os.MkdirTemp("", "opmond-bench-")
		if benchErr != nil {
			return
		}
		db, err := storage.Open(filepath.Join(benchDir, "opmonitor.db"), storage.Options{})
		if err != nil {
			benchErr = err
			return
		}
		defer db.Close()
		const chunk = 100_000
		for done := 0; done < benchRecords; done += chunk {
			n := min(chunk, benchRecords-done)
			recs := schematest.Records(n, uint64(done), int64(benchBaseTs+done/1000)*1000)
			for i := range recs {
				recs[i].SetInt(schema.FMonitoringDataTs, int64(benchBaseTs+(done+i)/1000))
			}
			if benchErr = db.Import(context.Background(), recs); benchErr != nil {
				return
			}
		}
		_, benchErr = db.SealPending(context.Background())
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchDaemon serves the benchmark database with a valid global configuration.
func benchDaemon(b *testing.B) *testDaemon {
	dir := benchDB(b)
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "opmonitor.db")
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	cfg.OpMonitor.KeepRecordsForDays = 36500 // the start-up purge must keep the benchmark data
	cfg.Log.Level = "warn"
	cfg.Admin.Listen = ""
	if _, err := os.Stat(cfg.GlobalConf.Directory); err != nil {
		writeGlobalConf(b, cfg.GlobalConf.Directory, time.Now().Add(24*time.Hour), monitoringID)
	}
	return startDaemonTB(b, cfg)
}

func startDaemonTB(b *testing.B, cfg *Config) *testDaemon {
	b.Helper()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	d, err := New(cfg, Options{LogWriter: io.Discard, Listener: mustListen(b)})
	if err != nil {
		b.Fatal(err)
	}
	d.Start()
	b.Cleanup(func() { d.Close() })
	return &testDaemon{Daemon: d, url: "http://" + d.Addr().String(), cfg: cfg}
}

func benchQuery(b *testing.B, td *testDaemon, as string, server string, from, to int64) {
	o := schema.QuerySpec{As: clientOf(as), To: to}
	if server != "" {
		o.Server = serverOf(server)
	}
	body := schema.BuildQueryRequest(o, from)
	client := &http.Client{}
	var times []time.Duration
	records := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := client.Post(td.url+"/query_data", "text/xml; charset=UTF-8", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		if i == 0 {
			b.StopTimer()
			recs, _, err := schema.ReadOperationalDataAnswer(resp.Header.Get("Content-Type"), bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			records = len(recs)
			b.StartTimer()
		}
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(records), "records")
}

// BenchmarkQueryPage: a 10,000-record page (from the middle of the
// database) end to end over HTTP, answer fully read, as the owner.
func BenchmarkQueryPage(b *testing.B) {
	td := benchDaemon(b)
	mid := int64(benchBaseTs + benchRecords/2000)
	benchQuery(b, td, ownerID, serverID, mid, mid+1000)
}

// BenchmarkQueryFiltered: the same window asked by a regular client, who
// sees only records it is a party of.
func BenchmarkQueryFiltered(b *testing.B) {
	td := benchDaemon(b)
	mid := int64(benchBaseTs + benchRecords/2000)
	clients := schematest.NewDataset().Clients
	benchQuery(b, td, clients[len(clients)/3].String(), "", mid, mid+1000)
}

// storeBodies returns n generated records as store request bodies of 100
// records each, as security servers send them.
func storeBodies(n int) [][]byte {
	return recordBodies(schematest.Records(n, 7, 1_760_000_000_000))
}

// recordBodies encodes recs as store request bodies of 100 records each (a
// last partial hundred is left out).
func recordBodies(recs []schema.Record) [][]byte {
	var bodies [][]byte
	for i := 0; i+100 <= len(recs); i += 100 {
		var buf bytes.Buffer
		buf.WriteString(`{"records":[`)
		for j := i; j < i+100; j++ {
			if j > i {
				buf.WriteByte(',')
			}
			buf.Write(schema.AppendRecordJSON(nil, &recs[j], schema.AllFields.Without(schema.FMonitoringDataTs)))
		}
		buf.WriteString(`]}`)
		bodies = append(bodies, buf.Bytes())
	}
	return bodies
}

// BenchmarkStoreHTTP: decode and store of 100-record batches end to end over
// HTTP from 4 concurrent clients, reporting records/s.
func BenchmarkStoreHTTP(b *testing.B) {
	dir := b.TempDir()
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "opmonitor.db")
	cfg.GlobalConf.Directory = filepath.Join(dir, "none")
	cfg.Log.Level = "warn"
	cfg.Admin.Listen = ""
	td := startDaemonTB(b, cfg)
	bodies := storeBodies(10_000)
	b.SetParallelism(2) // 2 × GOMAXPROCS(2) = 4 concurrent senders
	b.ResetTimer()
	start := time.Now()
	var n sync.Map
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{}
		i := 0
		for pb.Next() {
			resp, err := client.Post(td.url+"/store_data", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
			if err != nil {
				b.Error(err)
				return
			}
			var ans map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans["status"] != "OK" {
				b.Errorf("answer %v %v", ans, err)
			}
			resp.Body.Close()
			i++
		}
		n.Store(fmt.Sprint(i), true)
	})
	b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkDecodeAndStore: what a store request costs without HTTP: decode a
// 100-record body, store it (fsync'd), feed health statistics.
func BenchmarkDecodeAndStore(b *testing.B) {
	db, err := storage.Open(filepath.Join(b.TempDir(), "opmonitor.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	health := NewHealth(10*time.Minute, time.Now)
	recs := schematest.Records(100, 3, 1_760_000_000_000)
	body := []byte(`{"records":[`)
	for i := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = schema.AppendRecordJSON(body, &recs[i], schema.AllFields.Without(schema.FMonitoringDataTs))
	}
	body = append(body, "]}"...)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, err := schema.DecodeStoreRequest(body, schema.DecodeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Store(context.Background(), req.Records, nil); err != nil {
			b.Fatal(err)
		}
		health.Add(req.Records)
		req.Release() // as the store handler does
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
}
