package storage

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

const benchBaseMs = 1_760_000_000_000

// benchTmp holds databases shared by the benchmarks of one process.
var benchTmp string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchTmp != "" {
		os.RemoveAll(benchTmp)
	}
	os.Exit(code)
}

var benchRecords = sync.OnceValue(func() []schema.Record {
	return schematest.Records(200_000, 42, benchBaseMs)
})

// storeParallel stores n records from recs (cycling) in calls of batch
// records from 4 goroutines, and returns the elapsed time.
func storeParallel(tb testing.TB, db *DB, recs []schema.Record, n, batch int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(int64(batch))) - batch
				if i >= n {
					return
				}
				lo := i % len(recs)
				hi := min(lo+batch, len(recs), lo+n-i)
				if _, err := db.Store(context.Background(), recs[lo:hi], nil); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// procWriteBytes is the bytes this process has caused to be written to
// storage (/proc/self/io), or -1 where that is not known.
func procWriteBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// BenchmarkStore measures fsync'd stores of 100-record calls from 4
// goroutines, with group commit and with one transaction per call.
func BenchmarkStore(b *testing.B) {
	recs := benchRecords()
	for _, mode := range []struct {
		name    string
		perCall bool
	}{{"group", false}, {"pertx", true}} {
		b.Run(mode.name, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "opmon.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.perCall = mode.perCall
			before, io0 := db.bolt.Stats(), procWriteBytes()
			b.ResetTimer()
			d := storeParallel(b, db, recs, b.N, 100)
			b.StopTimer()
			after := db.bolt.Stats()
			written := after.TxStats.Sub(&before.TxStats)
			b.ReportMetric(float64(b.N)/d.Seconds(), "records/s")
			// What the commits wrote per record: bbolt's pages, and what
			// reached the disk (the kernel writes whole 4 KiB pages).
			b.ReportMetric(float64(written.GetPageAlloc())/float64(b.N), "page-B/record")
			if io1 := procWriteBytes(); io0 >= 0 && io1 >= 0 {
				b.ReportMetric(float64(io1-io0)/float64(b.N), "disk-write-B/record")
			}
		})
	}
}

// BenchmarkDiskUsage stores 200,000 records as the daemon would and reports
// the file size and the bytes in use per record.
func BenchmarkDiskUsage(b *testing.B) {
	recs := benchRecords()
	for range b.N {
		path := filepath.Join(b.TempDir(), "opmon.db")
		db, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		d := storeParallel(b, db, recs, len(recs), 100)
		n := float64(len(recs))
		size, _ := db.Size()
		var used, blockBytes, partyN, minN int64
		_ = db.bolt.View(func(tx *bolt.Tx) error {
			st := db.bolt.Stats()
			used = tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(db.bolt.Info().PageSize)
			_ = tx.Bucket(bucketBlocks).ForEach(func(_, v []byte) error {
				blockBytes += int64(len(v))
				return nil
			})
			partyN = int64(tx.Bucket(bucketParty).Stats().KeyN)
			minN = int64(tx.Bucket(bucketReqMin).Stats().KeyN)
			return nil
		})
		db.Close()
		b.ReportMetric(float64(size)/n, "file-B/record")
		b.ReportMetric(float64(used)/n, "used-B/record")
		b.ReportMetric(float64(blockBytes)/n, "block-B/record")
		b.ReportMetric(float64(partyN)/n*100, "party-entries/block")
		b.ReportMetric(float64(minN)/n*100, "reqmin-entries/block")
		b.ReportMetric(n/d.Seconds(), "records/s")
	}
}

// A database of benchQueryRecords records in 100-record blocks, one second
// each, built once per process with Import. OPMOND_BENCH_DB_RECORDS changes
// the size, to check that query time does not depend on it.
var benchQueryRecords = func() int {
	if n, err := strconv.Atoi(os.Getenv("OPMOND_BENCH_DB_RECORDS")); err == nil && n >= 100_000 {
		return n / 100_000 * 100_000
	}
	return 1_000_000
}()

var benchQueryDB = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "opmond-storage-bench-")
	if err != nil {
		return "", err
	}
	benchTmp = dir
	path := filepath.Join(dir, "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		return "", err
	}
	defer db.Close()
	const chunk = 100_000 / 5
	var wg sync.WaitGroup
	errs := make(chan error, benchQueryRecords/chunk)
	sem := make(chan struct{}, 2)
	for c := range benchQueryRecords / chunk {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			recs := schematest.Records(chunk, uint64(c), benchBaseMs+int64(c*chunk)*3)
			for i := range recs {
				recs[i].SetInt(schema.FMonitoringDataTs, benchBaseMs/1000+int64((c*chunk+i)/100))
			}
			if err := db.Import(context.Background(), recs); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return path, <-errs
})

func openQueryDB(b *testing.B) *DB {
	path, err := benchQueryDB()
	if err != nil {
		b.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if st, err := db.Stats(); err != nil || st.Records != int64(benchQueryRecords) {
		b.Fatalf("database has %+v, %v", st, err)
	}
	return db
}

func benchQuery(b *testing.B, db *DB, q Query) {
	var strBytes int
	visit := func(r *schema.Record) error {
		strBytes += len(r.Str(schema.FMessageID))
		return nil
	}
	var res QueryResult
	var err error
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if res, err = db.Query(context.Background(), q, visit); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(res.Count), "records/op")
}

// BenchmarkQueryPage reads a 10,000-record page at the start, middle and end
// of a 1,000,000-record database.
func BenchmarkQueryPage(b *testing.B) {
	db := openQueryDB(b)
	first := int64(benchBaseMs / 1000)
	secs := int64(benchQueryRecords / 100)
	for _, at := range []struct {
		name string
		from int64
	}{{"start", first}, {"middle", first + secs/2}, {"end", first + secs - 101}} {
		b.Run(at.name, func(b *testing.B) {
			benchQuery(b, db, Query{From: at.from, To: first + secs, Max: 10000})
		})
	}
}

// BenchmarkQueryFiltered reads a 10,000-record page for a client of middle
// popularity (about 1.5% of the records) and for a popular one (the second
// most frequent, about 12%).
func BenchmarkQueryFiltered(b *testing.B) {
	db := openQueryDB(b)
	first := int64(benchBaseMs / 1000)
	clients := schematest.NewDataset().Clients
	for _, c := range []struct {
		name string
		id   schema.ClientID
	}{{"mid", clients[15]}, {"popular", clients[1]}} {
		b.Run(c.name, func(b *testing.B) {
			benchQuery(b, db, Query{From: first, To: first + int64(benchQueryRecords/100), Max: 10000, Associated: &c.id})
		})
	}
}

// BenchmarkCompressionLevels compares zstd levels on 100-record blocks
// (B/record without the 32 bytes of packed UUIDs).
func BenchmarkCompressionLevels(b *testing.B) {
	recs := benchRecords()[:10000]
	// What encodeBlock compresses: packed bodies, without their UUIDs.
	var bodies [][]byte
	for i := 0; i < len(recs); i += 100 {
		var starts [schema.NumFields + 1]int
		body := appendColumns(nil, recs[i:i+100], &starts)
		packed, _ := packBody(nil, nil, body, recs[i:i+100], &starts)
		bodies = append(bodies, packed)
	}
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(fmt.Sprint(lvl), func(b *testing.B) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			var raw, out int
			var buf []byte
			b.ResetTimer()
			for i := range b.N {
				body := bodies[i%len(bodies)]
				buf = enc.EncodeAll(body, buf[:0])
				raw += len(body)
				out += len(buf)
			}
			b.StopTimer()
			b.ReportMetric(float64(out)/float64(b.N)/100, "B/record")
			b.ReportMetric(float64(raw)/float64(b.N)/100, "raw-B/record")
			b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkOpen measures start-up: opening the benchmark database (1M
// records; OPMOND_BENCH_DB_RECORDS=10000000 for 10M) and reading its
// counters, as the daemon does before it serves.
func BenchmarkOpen(b *testing.B) {
	path, err := benchQueryDB()
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for range b.N {
		start := time.Now()
		db, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Stats(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
}

// benchStoredDB is 200,000 records written as the daemon writes them:
// 100-record Store calls from 4 goroutines on the real clock, so busy
// seconds hold many blocks (unlike benchQueryDB's one block per second).
var benchStoredDB = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "opmond-storage-bench-stored-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		return "", err
	}
	defer db.Close()
	storeParallel(&testing.B{}, db, benchRecords(), len(benchRecords()), 100)
	return path, nil
})

// BenchmarkQueryStored: a page over the whole of benchStoredDB, unfiltered
// (the first 10,000 records) and for a client of middle popularity and a
// popular one (a regular client's view: every block of the window is a
// candidate).
func BenchmarkQueryStored(b *testing.B) {
	path, err := benchStoredDB()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(filepath.Dir(path)) })
	db, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	clients := schematest.NewDataset().Clients
	for _, c := range []struct {
		name string
		id   *schema.ClientID
	}{{"page", nil}, {"mid", &clients[15]}, {"popular", &clients[1]}} {
		b.Run(c.name, func(b *testing.B) {
			benchQuery(b, db, Query{From: 0, To: math.MaxInt32, Max: 10000, Associated: c.id})
		})
	}
}

// benchSealDB is 200 seconds of 1,000 records each, in 100-record blocks
// as Store writes them, sealed or not.
func benchSealDB(b *testing.B, seal bool) *DB {
	b.Helper()
	db, err := Open(filepath.Join(b.TempDir(), "opmon.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	recs := slices.Clone(benchRecords())
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, 1000+int64(i/1000))
	}
	for i := 0; i < len(recs); i += 100 {
		if err := db.Import(context.Background(), recs[i:min(i+100, len(recs))]); err != nil {
			b.Fatal(err)
		}
	}
	if seal {
		if _, err := db.SealPending(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// BenchmarkQueryAnswer makes the gzip payload of a privileged 10,000-record
// page (QueryAnswer), from blocks as stored and from sealed blocks, and a
// regular client's page over all 200,000 records (Query, filtered).
func BenchmarkQueryAnswer(b *testing.B) {
	clients := schematest.NewDataset().Clients
	for _, sealed := range []bool{false, true} {
		db := benchSealDB(b, sealed)
		name := map[bool]string{false: "stored", true: "sealed"}[sealed]
		b.Run("page/"+name, func(b *testing.B) {
			var size int
			var out bytes.Buffer
			b.ReportAllocs()
			for range b.N {
				out.Reset()
				if _, err := db.QueryAnswer(context.Background(), Query{From: 1000, To: 1199, Max: 10000}, `{"records":[`, "]}", &out); err != nil {
					b.Fatal(err)
				}
				size = out.Len()
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op")
			b.ReportMetric(float64(size)/10000, "payload-B/record")
		})
		b.Run("filtered/"+name, func(b *testing.B) {
			benchQuery(b, db, Query{From: 1000, To: 1199, Max: 10000, Associated: &clients[15]})
		})
	}
}

// BenchmarkMatchBlock is a filtered query's work on one block as Store
// writes it (100 records), for clients[15] (1.6% of the records): the zstd
// frame decompressed, the party columns compared, the matching records
// decoded (matchWorker.match, without the read transaction).
func BenchmarkMatchBlock(b *testing.B) {
	recs := benchRecords()[:100_000]
	var blocks [][]byte
	var heads []blockHeader
	for i := 0; i < len(recs); i += 100 {
		blocks = append(blocks, encodeBlock(recs[i:i+100]))
	}
	for _, v := range blocks {
		h, err := parseHeader(v)
		if err != nil {
			b.Fatal(err)
		}
		heads = append(heads, h)
	}
	f := filter{assoc: &schematest.NewDataset().Clients[15]}
	var mw matchWorker
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		h := &heads[n%len(heads)]
		mw.out = mw.out[:0]
		if err := mw.match(&fetched{count: h.count, bodyLen: h.bodyLen, packed: h.packed, dict: h.dict}, h.zbody, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/record")
}
