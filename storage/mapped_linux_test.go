package storage

import (
	"context"
	"testing"

	"github.com/opmond/opmond/internal/procmaps"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// mappedRSS returns the resident kilobytes of this process's mappings of
// path.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	ms, err := procmaps.Self()
	if err != nil {
		t.Fatal(err)
	}
	return procmaps.ResidentKB(ms, path, nil)
}

// storedFile returns a database of n generated records stored per records
// at a time, 500 a second.
func storedFile(t *testing.T, n, per int) *DB {
	clk := &testClock{t: 1000}
	db := openTestDB(t, clk)
	recs := schematest.Records(n, 9, 1_700_000_000_000)
	for i := 0; i < len(recs); i += per {
		clk.Set(1000 + int64(i/500))
		store(t, db, recs[i:i+per]...)
	}
	return db
}

// wholeFileQueries are an unfiltered and a filtered query of all seconds.
func wholeFileQueries() []Query {
	c := schematest.NewDataset().Clients[3]
	return []Query{{From: 0, To: 2000, Max: 100000}, {From: 0, To: 2000, Max: 100000, Associated: &c}}
}

// TestQueriesReleaseMappedPages: after queries that read the whole file,
// its pages do not stay in the process's resident memory.
func TestQueriesReleaseMappedPages(t *testing.T) {
	db := storedFile(t, 30000, 500)
	size, _ := db.Size()
	for _, q := range wholeFileQueries() {
		n := 0
		if _, err := db.Query(context.Background(), q, func(*schema.Record) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("query: %d records, %v", n, err)
		}
		if kb := mappedRSS(t, db.Path()); kb*1024 > int(size)/8 {
			t.Errorf("after a query over the whole %d-byte file, %d kB of it are resident", size, kb)
		}
	}
}

// TestLongQueriesReleaseAsTheyRead: a query hands back the pages it has read
// every queryReleaseBytes, not only when it ends.
func TestLongQueriesReleaseAsTheyRead(t *testing.T) {
	db := storedFile(t, 60000, 100)
	defer func(n int) { queryReleaseBytes = n }(queryReleaseBytes)
	// The blocks take about 6 MB: unreleased, all would be resident at the end.
	queryReleaseBytes = 512 << 10
	for _, q := range wholeFileQueries() {
		// What the committer's last writes left resident (it releases at
		// most ten times a second) is not the query's.
		db.releaseAll()
		n, peak := 0, 0
		visit := func(*schema.Record) error {
			if n++; n%200 == 0 {
				peak = max(peak, mappedRSS(t, db.Path()))
			}
			return nil
		}
		if _, err := db.Query(context.Background(), q, visit); err != nil || n == 0 {
			t.Fatalf("query: %d records, %v", n, err)
		}
		if peak*1024 > 4*queryReleaseBytes {
			t.Errorf("filter %v: %d kB of the file resident during a query", q.Associated != nil, peak)
		}
		t.Logf("filter %v: at most %d kB of the file resident during the query", q.Associated != nil, peak)
	}
}
