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

// TestQueriesReleaseMappedPages: after queries that read the whole file,
// its pages do not stay in the process's resident memory.
func TestQueriesReleaseMappedPages(t *testing.T) {
	clk := &testClock{t: 1000}
	db := openTestDB(t, clk)
	recs := schematest.Records(30000, 9, 1_700_000_000_000)
	for i := 0; i < len(recs); i += 500 {
		clk.Set(1000 + int64(i/500))
		store(t, db, recs[i:i+500]...)
	}
	size, _ := db.Size()
	c := schematest.NewDataset().Clients[3]
	for _, q := range []Query{{From: 0, To: 2000, Max: 100000}, {From: 0, To: 2000, Max: 100000, Associated: &c}} {
		n := 0
		if _, err := db.Query(context.Background(), q, func(*schema.Record) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("query: %d records, %v", n, err)
		}
		if kb := mappedRSS(t, db.Path()); kb*1024 > int(size)/8 {
			t.Errorf("after a query over the whole %d-byte file, %d kB of it are resident", size, kb)
		}
	}
}
