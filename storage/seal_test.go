package storage

import (
	"bytes"
	"compress/gzip"
	"context"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 100, 4096, 100_003} {
		a, b := make([]byte, rng.IntN(300)), make([]byte, n)
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32.ChecksumIEEE(append(bytes.Clone(a), b...))
		if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(n)); got != want {
			t.Errorf("len %d+%d: %08x, want %08x", len(a), n, got, want)
		}
	}
}

// blockVersions counts the blocks of each version.
func blockVersions(t *testing.T, db *DB) (v1, v2 int) {
	t.Helper()
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlocks).ForEach(func(k, v []byte) error {
			if isSpacer(k) {
				return nil
			}
			if v[0] == blockVersionSealed {
				v2++
			} else {
				v1++
			}
			return nil
		})
	})
	return v1, v2
}

// answerJSON is what QueryAnswer must hold: the JSON of Query's records.
func answerJSON(t *testing.T, db *DB, q Query) ([]byte, QueryResult) {
	t.Helper()
	out := []byte(`{"records":[`)
	first := true
	res, err := db.Query(context.Background(), q, func(r *schema.Record) error {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = schema.AppendRecordJSON(out, r, schema.AllFields)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, "]}"...), res
}

func checkAnswers(t *testing.T, db *DB, qs []Query) {
	t.Helper()
	for _, q := range qs {
		want, wantRes := answerJSON(t, db, q)
		var out bytes.Buffer
		res, err := db.QueryAnswer(context.Background(), q, `{"records":[`, "]}", &out)
		if err != nil {
			t.Fatal(err)
		}
		gz := out.Bytes()
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr) // checks the CRC-32 and the length
		if err != nil {
			t.Fatalf("query %+v: %v", q, err)
		}
		if res != wantRes || !bytes.Equal(got, want) {
			t.Fatalf("query %+v: answer %+v (%d bytes), want %+v (%d bytes)", q, res, len(got), wantRes, len(want))
		}
	}
}

// TestSeal: sealing keeps every query's answer, the indexes and the
// counters as they were, and the answer form is the JSON of the records.
func TestSeal(t *testing.T) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	rng := rand.New(rand.NewPCG(5, 11))
	gen := schematest.Records(9000, 21, 1_700_000_000_000)
	all, ts := storeRandomly(t, db, clk, rng, gen[:5000], 500, 1, 150) // dense seconds
	more, last := storeRandomly(t, db, clk, rng, gen[5000:], ts+1, 3, 40)
	all = append(all, more...)
	d := schematest.NewDataset()
	parties := []schema.ClientID{d.Clients[0], d.Clients[7], d.Clients[29], d.Providers()[0], d.Providers()[5]}
	qs := []Query{{From: 0, To: last, Max: 10000}, {From: 0, To: last, Max: 1}, {From: 0, To: last, Max: 2500},
		{From: 501, To: last, Max: 300}, {From: last - 4, To: last, Max: 10000}}
	checkAnswers(t, db, qs)
	// Traffic intervals: by the minute (the memo's steps) and by 7 s (read
	// from the blocks), all and for a member.
	ivs := []IntervalQuery{
		{FromMs: 1_699_999_000_000, ToMs: 1_700_010_000_000, StepMs: 60_000},
		{FromMs: 1_699_999_000_000, ToMs: 1_700_010_000_000, StepMs: 7_000, Member: &parties[1]},
		{FromMs: 1_699_999_000_000, ToMs: 1_700_010_000_000, StepMs: 60_000, Type: "Producer", Member: &parties[0]},
	}
	intervals := func() [][]Interval {
		var out [][]Interval
		for _, q := range ivs {
			iv, err := db.Intervals(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, iv)
		}
		return out
	}
	ivBefore := intervals()
	before, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}

	clk.Set(last + 10)
	n, err := db.SealPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := blockVersions(t, db)
	if n == 0 || v2 == 0 || v1 == 0 {
		t.Fatalf("sealed %d rounds: %d blocks left in version 1, %d sealed; want some of both (small seconds stay)", n, v1, v2)
	}
	after, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.Records != before.Records || after.Blocks >= before.Blocks {
		t.Errorf("stats %+v after sealing, %+v before", after, before)
	}
	if again, err := db.SealPending(context.Background()); err != nil || again != 0 {
		t.Errorf("second SealPending: %d, %v", again, err)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error { checkIndexes(t, tx); return nil })
	checkFiltered(t, db, all, parties, []int{1, 60, 100000}, []int64{0, 500, 501, last - 5}, last)
	checkAnswers(t, db, qs)
	if got := intervals(); !reflect.DeepEqual(got, ivBefore) {
		t.Errorf("intervals changed by sealing:\n got %v\nwant %v", got, ivBefore)
	}
	var counted int64
	for _, iv := range ivBefore[0] {
		counted += iv.Success + iv.Failure
	}
	if counted == 0 {
		t.Error("the intervals count nothing: the check is empty")
	}
	for i := range 50 {
		from := 500 + int64(rng.IntN(int(last-500+1)))
		q := Query{From: from, To: from + int64(rng.IntN(30)), Max: 1 + rng.IntN(3000)}
		if i%2 == 0 {
			q.Associated = &parties[rng.IntN(len(parties))]
		}
		checkQuery(t, db, all, q)
	}

	// A purge of everything leaves no index entry behind.
	clk.Set(last + 1000)
	if _, _, err := db.Purge(context.Background(), last+1); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{bucketBlocks, bucketParty, bucketReqMin, bucketSealed} {
		if n := bucketLen(t, db, b); n != 0 {
			t.Errorf("%s: %d keys after purging all", b, n)
		}
	}
}

// TestSealKeepsOddRecords: a record whose JSON would not read back the same
// (invalid UTF-8) keeps its block in version 1; the others of its second
// are sealed in their own runs only if they are many.
func TestSealKeepsOddRecords(t *testing.T) {
	clk := &testClock{t: 100}
	db := openTestDB(t, clk)
	recs := schematest.Records(300, 3, 1_700_000_000_000)
	recs[150].SetStr(schema.FServiceCode, "bad\xffutf8")
	store(t, db, recs[:100]...)
	store(t, db, recs[100:200]...)
	store(t, db, recs[200:]...)
	clk.Set(200)
	if _, err := db.SealPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	v1, v2 := blockVersions(t, db)
	if v1 != 3 || v2 != 0 {
		t.Errorf("%d blocks in version 1, %d sealed; want the three blocks of one run kept", v1, v2)
	}
	ids, _, _ := queryIDs(t, db, Query{From: 0, To: 200, Max: 1000})
	if len(ids) != 300 {
		t.Errorf("%d records, want 300", len(ids))
	}
}

// TestSealerInBackground: the sealer of Options.Seal seals while queries
// run, and every query sees every record exactly once throughout.
func TestSealerInBackground(t *testing.T) {
	clk := &testClock{}
	path := t.TempDir() + "/opmon.db"
	db, err := Open(path, Options{Now: clk.Now, Seal: true, OnSealError: func(err error) { t.Errorf("seal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		checkFile(t, path)
	}()
	rng := rand.New(rand.NewPCG(9, 9))
	all, last := storeRandomly(t, db, clk, rng, schematest.Records(6000, 5, 1_700_000_000_000), 100, 2, 120)
	client := schematest.NewDataset().Clients[3]
	queries := []Query{{From: 0, To: last, Max: 700}, {From: 0, To: last, Max: 400, Associated: &client}}
	clk.Set(last + 60)
	check := func() {
		for _, q := range queries {
			want, _ := refRecords(all, Query{From: q.From, To: q.To, Max: len(all) + 1, Associated: q.Associated})
			var got []schema.Record
			for page := q; ; {
				res, err := db.Query(context.Background(), page, func(r *schema.Record) error {
					got = append(got, *r)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !res.More {
					break
				}
				page.From = res.Last + 1
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("paging %+v while sealing: %d records, want %d", q, len(got), len(want))
			}
		}
	}
	// Queries back to back while the sealer works, then none until it is done.
	for start := time.Now(); time.Since(start) < 5*time.Second; {
		check()
	}
	if _, v2 := blockVersions(t, db); v2 == 0 {
		t.Fatal("the sealer sealed nothing in 5 s of queries")
	}
	deadline := time.Now().Add(60 * time.Second)
	for last, changed := -1, time.Now(); time.Since(changed) < 3*time.Second; time.Sleep(100 * time.Millisecond) {
		if _, v2 := blockVersions(t, db); v2 != last {
			last, changed = v2, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("sealing did not settle in 60 s")
		}
	}
	check()
	// The sealer left nothing to seal.
	if n, err := db.SealPending(context.Background()); err != nil || n != 0 {
		t.Errorf("SealPending after the sealer: %d rounds, %v", n, err)
	}
}

// TestSealLag: the lag is 0 until the sealer has looked, 0 when it has
// sealed everything old enough, the age of the oldest second it has not
// reached when a round stops short, and it grows with the clock while no
// round runs.
func TestSealLag(t *testing.T) {
	clk := &testClock{}
	var commits []Commit
	var mu sync.Mutex
	db, err := Open(t.TempDir()+"/opmon.db", Options{Now: clk.Now, OnCommit: func(c Commit) {
		mu.Lock()
		commits = append(commits, c)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const t0 = 1_700_000_000
	recs := schematest.Records(3*sealRoundRecords, 5, t0*1000)
	// Three seconds of sealRoundRecords records each, in 100-record calls.
	for s := range int64(3) {
		clk.Set(t0 + s)
		part := recs[s*sealRoundRecords : (s+1)*sealRoundRecords]
		for i := 0; i < len(part); i += 100 {
			if _, err := db.Store(context.Background(), part[i:min(i+100, len(part))], nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Lock()
	if len(commits) == 0 {
		t.Fatal("OnCommit was not called")
	}
	for _, c := range commits {
		if c.Duration <= 0 || c.Bytes < pageSize {
			t.Fatalf("commit %+v", c)
		}
	}
	mu.Unlock()
	now := time.Unix(t0+20, 0)
	clk.Set(now.Unix())
	if lag := db.SealLag(now); lag != 0 {
		t.Errorf("lag before any round: %v", lag)
	}
	// One round seals about sealRoundRecords records: the first second.
	var pos blockKey
	next, did, _, err := db.sealRound(context.Background(), new(sealBuf), &pos)
	if err != nil || !did {
		t.Fatalf("round: %v %v", did, err)
	}
	if got, want := db.SealLag(now), time.Duration(now.Unix()-sealAfter-(keyTs(next[:])-1))*time.Second; got != want || got <= 0 {
		t.Errorf("lag after a partial round: %v, want %v (> 0)", got, want)
	}
	if _, err := db.SealPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lag := db.SealLag(now); lag != 0 {
		t.Errorf("lag when all is sealed: %v", lag)
	}
	if lag := db.SealLag(now.Add(30 * time.Second)); lag != 30*time.Second {
		t.Errorf("lag 30 s later without a round: %v", lag)
	}
}
