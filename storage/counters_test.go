package storage

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema/schematest"
)

// TestQuarantineCounter: Stats counts quarantined records as they are
// stored and purged, and a database written before the counter existed is
// counted once when opened.
func TestQuarantineCounter(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: 1000}
	path := filepath.Join(t.TempDir(), "op.db")
	db, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	recs := schematest.Records(10, 1, 0)
	bad := []Quarantined{{Reason: "a", Raw: []byte(`{"x":1}`)}, {Reason: "b", Raw: []byte("not json")}}
	if _, err := db.Store(ctx, recs, bad); err != nil {
		t.Fatal(err)
	}
	clk.Set(2000)
	if _, err := db.Store(ctx, recs, bad[:1]); err != nil {
		t.Fatal(err)
	}
	if st, err := db.Stats(); err != nil || st.Records != 20 || st.Quarantined != 3 {
		t.Fatalf("after store: %+v %v", st, err)
	}
	if _, q, err := db.Purge(ctx, 1500); err != nil || q != 2 {
		t.Fatalf("purge: %d %v", q, err)
	}
	if st, err := db.Stats(); err != nil || st.Quarantined != 1 {
		t.Fatalf("after purge: %+v %v", st, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// As an older opmond left it: no counter.
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaQuarantined) }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	db, err = Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := db.Stats(); err != nil || st.Quarantined != 1 {
		t.Errorf("after reopen: %+v %v", st, err)
	}
	db.Close()
	checkFile(t, path)
}
