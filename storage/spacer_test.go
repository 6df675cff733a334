package storage

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// spacerCount returns the spacers of the blocks bucket: all of them, and
// those after the first of their commit.
func spacerCount(t *testing.T, db *DB) (all, later int) {
	t.Helper()
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlocks).ForEach(func(k, _ []byte) error {
			if isSpacer(k) {
				all++
				if k[blockKeyLen] > 1 {
					later++
				}
			}
			return nil
		})
	})
	return all, later
}

// storePages stores recs in 100-record calls one after the other (a commit
// each) and returns the bytes of pages the commits wrote and those of the
// block values they added.
func storePages(t *testing.T, db *DB, clk *testClock, recs [][]schema.Record, ts int64) (pages, values int64) {
	t.Helper()
	before := db.bolt.Stats()
	for i, batch := range recs {
		clk.Set(ts + int64(i/10))
		if _, err := db.Store(context.Background(), batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	after := db.bolt.Stats()
	d := after.TxStats.Sub(&before.TxStats)
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlocks).Cursor()
		from := makeBlockKey(ts, 0)
		for k, v := c.Seek(from[:]); k != nil; k, v = c.Next() {
			values += int64(len(v))
		}
		return nil
	})
	return d.GetPageAlloc(), values
}

// TestSpacersSpareOlderBlocks: a Store commit writes its own block and
// little else, not the blocks of the commits before it; spacers stay one
// per commit at most, and after a restart the first commit deletes the
// last run's.
func TestSpacersSpareOlderBlocks(t *testing.T) {
	clk := &testClock{}
	path := filepath.Join(t.TempDir(), "opmon.db")
	db, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	gen := schematest.Records(30_000, 11, 1_700_000_000_000)
	calls := make([][]schema.Record, 0, len(gen)/100)
	for i := 0; i < len(gen); i += 100 {
		calls = append(calls, gen[i:i+100])
	}
	const t0 = 1_700_000_000
	pages, values := storePages(t, db, clk, calls, t0)
	// Each commit writes its block, a leaf of spacers, the branch pages
	// above them, a few index leaves and the buckets' root: measured 2.5
	// times the block. Rewriting the last leaf's three or four blocks as
	// well made it 5.8 times.
	ratio := float64(pages) / float64(values)
	t.Logf("%d commits: pages written %.0f B per record, %.2f times the blocks", len(calls), float64(pages)/float64(len(gen)), ratio)
	if ratio > 3 {
		t.Errorf("commits wrote %.2f times the bytes of their blocks", ratio)
	}
	all, later := spacerCount(t, db)
	if later != spacersPerCommit-1 || all > len(calls)+spacersPerCommit {
		t.Errorf("%d spacers after %d commits, %d of them later than the first of their commit", all, len(calls), later)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, Options{Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		checkFile(t, path)
	}()
	if n := len(db.spc.old); n != spacersPerCommit-1 {
		t.Errorf("Open found %d spacers to delete, want %d", n, spacersPerCommit-1)
	}
	storePages(t, db, clk, calls[:3], t0+10_000)
	if all2, later2 := spacerCount(t, db); later2 != spacersPerCommit-1 || all2 > all+3 {
		t.Errorf("after a restart and 3 commits: %d spacers (%d before), %d later than the first of their commit", all2, all, later2)
	}
	// Queries and the index check (checkFile) see blocks only.
	var n int
	if _, err := db.Query(context.Background(), Query{From: 0, To: t0 + 20_000, Max: len(gen) + 1000}, func(*schema.Record) error {
		n++
		return nil
	}); err != nil || n != len(gen)+300 {
		t.Errorf("query: %d records (%v), want %d", n, err, len(gen)+300)
	}
}

// TestOpenUpgradesVersion4: a format 4 file (no spacers) opens as format 5,
// its records read as before, and Store commits add spacers to it.
func TestOpenUpgradesVersion4(t *testing.T) {
	recs := schematest.Records(2000, 3, 1_700_000_000_000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, int64(1000+i/100))
	}
	clk := &testClock{}
	db := oldFile(t, recs, 100, "opmond-db 4", nil, Options{Now: clk.Now})
	if all, _ := spacerCount(t, db); all != 0 {
		t.Fatalf("%d spacers in a format 4 file", all)
	}
	clk.Set(1_800_000_000)
	if _, err := db.Store(context.Background(), recs[:100], nil); err != nil {
		t.Fatal(err)
	}
	if _, later := spacerCount(t, db); later != spacersPerCommit-1 {
		t.Errorf("%d spacers after a Store commit, want %d", later, spacersPerCommit-1)
	}
	var n int
	if _, err := db.Query(context.Background(), Query{From: 0, To: 1_800_000_000, Max: 10_000}, func(*schema.Record) error {
		n++
		return nil
	}); err != nil || n != len(recs)+100 {
		t.Errorf("query: %d records (%v), want %d", n, err, len(recs)+100)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		checkIndexes(t, tx)
		return nil
	})
}
