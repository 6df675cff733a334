package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// fullRecord sets every field, with values of every shape.
func fullRecord() schema.Record {
	var r schema.Record
	for f := schema.Field(1); f < schema.NumFields; f++ {
		switch schema.Fields[f].Kind {
		case schema.KindString:
			r.SetStr(f, fmt.Sprintf("%s-väärtus-€-%d", f.Name(), f))
		case schema.KindBool:
			r.SetBool(f, true)
		default:
			r.SetInt(f, int64(f)*1000+7)
		}
	}
	r.SetInt(schema.FRequestInTs, 1_700_000_000_123)
	r.SetInt(schema.FResponseOutTs, 1_700_000_000_200)
	return r
}

func TestRoundTrip(t *testing.T) {
	withAbsent := fullRecord()
	for _, f := range []schema.Field{schema.FRequestOutTs, schema.FResponseInTs, schema.FClientSubsystemCode,
		schema.FRestPath, schema.FStatusCode, schema.FFaultString, schema.FRequestMimeSize} {
		withAbsent.Clear(f)
	}
	emptyStrings := fullRecord()
	for f := schema.Field(1); f < schema.NumFields; f++ {
		if schema.Fields[f].Kind == schema.KindString {
			emptyStrings.SetStr(f, "")
		}
	}
	negative := fullRecord()
	negative.SetInt(schema.FRequestInTs, -5)
	negative.SetInt(schema.FRequestOutTs, math.MinInt64)
	negative.SetInt(schema.FResponseInTs, math.MaxInt64)
	negative.SetInt(schema.FResponseOutTs, -1)
	negative.SetInt(schema.FRequestSize, -123456789012)
	negative.SetInt(schema.FStatusCode, math.MinInt32)
	negative.SetInt(schema.FResponseAttachmentCount, math.MaxInt32)
	negative.SetBool(schema.FSucceeded, false)
	nonASCII := fullRecord()
	nonASCII.SetStr(schema.FFaultString, strings.Repeat("ÕÄÖÜ 日本語 🙂 ", 100))
	nonASCII.SetStr(schema.FServiceCode, "\x00\xff not utf-8")
	noRequestIn := fullRecord()
	noRequestIn.Clear(schema.FRequestInTs)
	var nothing schema.Record
	succeededOnly := schema.Record{}
	succeededOnly.SetBool(schema.FSucceeded, true)
	withTs := fullRecord()
	withTs.SetInt(schema.FMonitoringDataTs, 12345) // ignored by Store

	cases := []struct {
		name string
		recs []schema.Record
	}{
		{"all fields", []schema.Record{fullRecord()}},
		{"absent fields", []schema.Record{withAbsent}},
		{"empty strings", []schema.Record{emptyStrings}},
		{"negative and extreme numbers", []schema.Record{negative}},
		{"non-ASCII and binary strings", []schema.Record{nonASCII}},
		{"no requestInTs", []schema.Record{noRequestIn, fullRecord()}},
		{"no fields", []schema.Record{nothing, succeededOnly}},
		{"monitoringDataTs replaced", []schema.Record{withTs}},
		{"mixed", []schema.Record{fullRecord(), withAbsent, emptyStrings, negative, nonASCII, noRequestIn, nothing}},
		{"generated", schematest.Records(300, 1, 1_700_000_000_000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := &testClock{t: 1000}
			db := openTestDB(t, clk)
			ts := store(t, db, tc.recs...)
			if ts != 1000 {
				t.Fatalf("ts %d, want 1000", ts)
			}
			var got []schema.Record
			res, err := db.Query(context.Background(), Query{From: 0, To: 2000, Max: 10000}, func(r *schema.Record) error {
				got = append(got, *r)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Count != len(tc.recs) || res.LimitHit || res.More || res.Last != 1000 {
				t.Errorf("result %+v", res)
			}
			for i := range tc.recs {
				want := tc.recs[i]
				want.SetInt(schema.FMonitoringDataTs, 1000)
				if i >= len(got) || !reflect.DeepEqual(got[i], want) {
					t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], want)
				}
			}
		})
	}
}

func TestEmptyStore(t *testing.T) {
	clk := &testClock{t: 42}
	db := openTestDB(t, clk)
	ts, err := db.Store(context.Background(), nil, nil)
	if err != nil || ts != 42 {
		t.Fatalf("Store(nil) = %d, %v", ts, err)
	}
	if n := bucketLen(t, db, bucketBlocks); n != 0 {
		t.Errorf("%d blocks after empty store", n)
	}
}

func TestStoreCancelled(t *testing.T) {
	db := openTestDB(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Store(ctx, []schema.Record{mkRec(t, "a", "", "", 1, true)}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestBigStoreSplitsBlocks(t *testing.T) {
	clk := &testClock{t: 7}
	db := openTestDB(t, clk)
	recs := schematest.Records(2*maxBlockRecords+5, 3, 0)
	store(t, db, recs...)
	if n := bucketLen(t, db, bucketBlocks); n != 3 {
		t.Errorf("%d blocks, want 3", n)
	}
	ids, _, res := queryIDs(t, db, Query{From: 7, To: 7, Max: 100000})
	if res.Count != len(recs) {
		t.Fatalf("count %d", res.Count)
	}
	for i := range recs {
		if ids[i] != recs[i].Str(schema.FMessageID) {
			t.Fatalf("record %d out of order", i)
		}
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	clk := &testClock{t: 500}
	path := filepath.Join(t.TempDir(), "opmon.db")
	db, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	recs := schematest.Records(250, 2, 1_000_000)
	store(t, db, recs[:100]...)
	clk.Set(501)
	if _, err := db.Store(context.Background(), recs[100:], []Quarantined{{Reason: "bad", Raw: []byte(`{"x":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer checkFile(t, path)
	defer db.Close()
	ids, tss, res := queryIDs(t, db, Query{From: 0, To: 1000, Max: 10000})
	if res.Count != 250 {
		t.Fatalf("count %d", res.Count)
	}
	for i := range recs {
		wantTs := int64(500)
		if i >= 100 {
			wantTs = 501
		}
		if ids[i] != recs[i].Str(schema.FMessageID) || tss[i] != wantTs {
			t.Fatalf("record %d: %s@%d", i, ids[i], tss[i])
		}
	}
	st, err := db.Stats()
	if err != nil || st != (Stats{Blocks: 2, Records: 250, Quarantined: 1}) {
		t.Errorf("stats %+v %v", st, err)
	}
	n := 0
	if err := db.ListQuarantine(context.Background(), 0, 1000, func(Quarantined) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("quarantine %d %v", n, err)
	}
}

func TestConcurrentStores(t *testing.T) {
	db := openTestDB(t, nil)
	const writers, each = 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			recs := make([]schema.Record, each)
			for i := range recs {
				recs[i] = mkRec(t, fmt.Sprintf("w%d-%d", w, i), "EE/GOV/1/a", "EE/GOV/2/b", int64(i), true)
			}
			if _, err := db.Store(context.Background(), recs, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids, _, res := queryIDs(t, db, Query{From: 0, To: math.MaxInt64, Max: 100000})
	if res.Count != writers*each {
		t.Fatalf("count %d", res.Count)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct records", len(seen))
	}
	// Records of one call stay together and in order.
	for i := 0; i < len(ids); i += each {
		w := strings.SplitN(ids[i], "-", 2)[0]
		for j := range each {
			if ids[i+j] != fmt.Sprintf("%s-%d", w, j) {
				t.Fatalf("record %d is %s", i+j, ids[i+j])
			}
		}
	}
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	db := openTestDB(t, nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := context.Background()
	calls := map[string]error{}
	_, calls["Store"] = db.Store(ctx, nil, nil)
	calls["Import"] = db.Import(ctx, nil)
	_, calls["Query"] = db.Query(ctx, Query{Max: 1}, func(*schema.Record) error { return nil })
	_, calls["Intervals"] = db.Intervals(ctx, IntervalQuery{StepMs: 1})
	calls["ListQuarantine"] = db.ListQuarantine(ctx, 0, 1, func(Quarantined) error { return nil })
	_, _, calls["Purge"] = db.Purge(ctx, 1)
	_, calls["Backup"] = db.Backup(ctx, &bytes.Buffer{})
	_, calls["Size"] = db.Size()
	_, calls["Stats"] = db.Stats()
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

func TestCloseWaitsForPendingStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				_, err := db.Store(context.Background(), []schema.Record{mkRec(t, fmt.Sprint(w, i), "", "", 1, true)}, nil)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				stored++
				mu.Unlock()
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer checkFile(t, path)
	defer db.Close()
	st, _ := db.Stats()
	if st.Records != int64(stored) {
		t.Errorf("%d acknowledged, %d stored", stored, st.Records)
	}
}

func TestOpenLocked(t *testing.T) {
	db := openTestDB(t, nil)
	start := time.Now()
	_, err := Open(db.Path(), Options{})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestOpenRejectsForeignFormats(t *testing.T) {
	cases := []struct {
		name  string
		setup func(tx *bolt.Tx) error
		want  string
	}{
		{"newer version", func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket(bucketMeta)
			return b.Put(metaFormat, []byte("opmond-db 7"))
		}, "not supported"},
		{"other bbolt database", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("widgets"))
			return err
		}, "not an opmond database"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			bdb, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := bdb.Update(tc.setup); err != nil {
				t.Fatal(err)
			}
			bdb.Close()
			_, err = Open(path, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("not bbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("junk"), 2000), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, Options{}); err == nil {
			t.Fatal("opened junk")
		}
	})
}

func TestFileModes(t *testing.T) {
	db := openTestDB(t, nil)
	fi, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(db.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v", di.Mode())
	}
	if n, err := db.Size(); err != nil || n <= 0 {
		t.Errorf("size %d %v", n, err)
	}
}

func TestImport(t *testing.T) {
	db := openTestDB(t, nil)
	ctx := context.Background()
	at := func(id string, ts int64) schema.Record {
		r := mkRec(t, id, "EE/GOV/1", "", 5, true)
		r.SetInt(schema.FMonitoringDataTs, ts)
		return r
	}
	// Unsorted input: equal seconds keep their order.
	if err := db.Import(ctx, []schema.Record{at("c1", 30), at("a1", 10), at("c2", 30), at("b1", 20), at("a2", 10)}); err != nil {
		t.Fatal(err)
	}
	ids, tss, _ := queryIDs(t, db, Query{From: 0, To: 100, Max: 100})
	if want := []string{"a1", "a2", "b1", "c1", "c2"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ids %v", ids)
	}
	if want := []int64{10, 10, 20, 30, 30}; !reflect.DeepEqual(tss, want) {
		t.Errorf("ts %v", tss)
	}
	if n := bucketLen(t, db, bucketBlocks); n != 3 {
		t.Errorf("%d blocks, want 3", n)
	}

	noTs := mkRec(t, "x", "", "", 1, true)
	if err := db.Import(ctx, []schema.Record{at("ok", 1), noTs}); err == nil {
		t.Error("import without monitoringDataTs succeeded")
	}
	if err := db.Import(ctx, []schema.Record{at("neg", -1)}); err == nil {
		t.Error("import with negative monitoringDataTs succeeded")
	}
	if _, _, res := queryIDs(t, db, Query{From: 0, To: 100, Max: 100}); res.Count != 5 {
		t.Errorf("failed imports stored records: %d", res.Count)
	}
}

func TestBackup(t *testing.T) {
	clk := &testClock{t: 100}
	db := openTestDB(t, clk)
	recs := schematest.Records(500, 9, 0)
	store(t, db, recs[:250]...)
	clk.Set(101)
	store(t, db, recs[250:]...)

	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.Backup(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != n {
		t.Errorf("wrote %d, file has %d", n, fi.Size())
	}
	checkFile(t, path)
	bk, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	want, _, _ := queryIDs(t, db, Query{From: 0, To: 1000, Max: 10000})
	got, _, _ := queryIDs(t, bk, Query{From: 0, To: 1000, Max: 10000})
	if len(got) != 500 || !reflect.DeepEqual(got, want) {
		t.Errorf("backup has %d records", len(got))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Backup(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled backup: %v", err)
	}
}

func TestQuarantine(t *testing.T) {
	clk := &testClock{t: 100}
	db := openTestDB(t, clk)
	raws := []Quarantined{
		{Reason: "missing requestInTs", Raw: []byte(`{"a": 1,  "b":"<&>"}`)},
		{Reason: "not json", Raw: []byte(`{"a":`)},
		{Reason: "bad utf-8", Raw: []byte("\xff\xfe")},
		{Reason: "white space", Raw: []byte(" {} ")},
		{Reason: "json string", Raw: []byte(`"text"`)},
		{Reason: "empty", Raw: []byte{}},
	}
	ts, err := db.Store(context.Background(), nil, raws[:3])
	if err != nil || ts != 100 {
		t.Fatal(ts, err)
	}
	clk.Set(200)
	if _, err := db.Store(context.Background(), []schema.Record{mkRec(t, "r", "", "", 1, true)}, raws[3:]); err != nil {
		t.Fatal(err)
	}
	var got []Quarantined
	if err := db.ListQuarantine(context.Background(), 0, 1000, func(q Quarantined) error {
		got = append(got, q)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(raws) {
		t.Fatalf("%d entries", len(got))
	}
	for i, q := range got {
		want := raws[i].Raw
		if q.Reason != raws[i].Reason || !bytes.Equal(q.Raw, want) {
			t.Errorf("entry %d: %q %q", i, q.Reason, q.Raw)
		}
		if wantAt := int64(100 + 100*(i/3)); q.ReceivedAt != wantAt {
			t.Errorf("entry %d received at %d", i, q.ReceivedAt)
		}
	}
	n := 0
	_ = db.ListQuarantine(context.Background(), 150, 200, func(Quarantined) error { n++; return nil })
	if n != 3 {
		t.Errorf("window [150,200]: %d", n)
	}
	stop := errors.New("stop")
	if err := db.ListQuarantine(context.Background(), 0, 1000, func(Quarantined) error { return stop }); err != stop {
		t.Errorf("visit error: %v", err)
	}
}

func TestQuarantineManyBatches(t *testing.T) {
	db := openTestDB(t, &testClock{t: 5})
	q := make([]Quarantined, 3*listBatch+7)
	for i := range q {
		q[i] = Quarantined{Reason: fmt.Sprint(i), Raw: []byte("{}")}
	}
	if _, err := db.Store(context.Background(), nil, q); err != nil {
		t.Fatal(err)
	}
	i := 0
	err := db.ListQuarantine(context.Background(), 5, 5, func(x Quarantined) error {
		if x.Reason != fmt.Sprint(i) {
			return fmt.Errorf("entry %d is %s", i, x.Reason)
		}
		i++
		return nil
	})
	if err != nil || i != len(q) {
		t.Fatalf("%d entries, %v", i, err)
	}
}

// metaFreelist returns the freelist page id of the newer meta page of the
// bbolt file at path, as bbolt lays it out: a page header of 16 bytes,
// then magic, version, page size and flags (4 bytes each), the root bucket
// (16), the freelist page id (8), the high-water mark (8) and the txid (8).
func metaFreelist(t *testing.T, path string, pageSize int) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if tx := binary.LittleEndian.Uint64(m[48:]); tx >= txid {
			txid, freelist = tx, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist
}

// TestFreelistWrittenAtClose: commits do not write bbolt's freelist, Close
// does, and a file closed without it (a crash) opens with the same data.
func TestFreelistWrittenAtClose(t *testing.T) {
	const none = ^uint64(0)
	path := filepath.Join(t.TempDir(), "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := schematest.Records(2000, 3, 1_700_000_000_000)
	for i := 0; i < len(recs); i += 100 {
		if _, err := db.Store(context.Background(), recs[i:i+100], nil); err != nil {
			t.Fatal(err)
		}
	}
	ps := db.bolt.Info().PageSize
	if f := metaFreelist(t, path, ps); f != none {
		t.Fatalf("a commit wrote the freelist (page %d)", f)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if f := metaFreelist(t, path, ps); f == none {
		t.Fatal("Close did not write the freelist")
	}
	// A crash: the last commit without a freelist. The file copy taken
	// while the daemon ran is such a file.
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Store(context.Background(), recs[:100], nil); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if f := metaFreelist(t, crashed, ps); f != none {
		t.Fatalf("the crashed copy has a freelist (page %d)", f)
	}
	db, err = Open(crashed, Options{})
	if err != nil {
		t.Fatalf("open after a crash: %v", err)
	}
	st, err := db.Stats()
	if err != nil || st.Records != 2100 {
		t.Fatalf("after a crash: %d records, %v; want 2100", st.Records, err)
	}
	if _, err := db.Store(context.Background(), recs[100:200], nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, crashed) // pages, freelist and indexes agree
}
