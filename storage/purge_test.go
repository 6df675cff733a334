package storage

import (
	"context"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// indexEntriesBefore counts the entries of an index bucket that point to
// blocks with ts < cutoff.
func indexEntriesBefore(t *testing.T, db *DB, name []byte, cutoff int64) (before, total int) {
	t.Helper()
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, _ []byte) error {
			total++
			if keyTs(k) < cutoff {
				before++
			}
			return nil
		})
	})
	return before, total
}

func TestPurge(t *testing.T) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	ctx := context.Background()
	gen := schematest.Records(1000, 5, 1_700_000_000_000)
	for i := range 10 {
		clk.Set(int64(100 + i))
		q := []Quarantined{{Reason: fmt.Sprint(i), Raw: []byte("{}")}}
		if _, err := db.Store(ctx, gen[i*100:(i+1)*100], q); err != nil {
			t.Fatal(err)
		}
	}
	partyOld, partyAll := indexEntriesBefore(t, db, bucketParty, 105)
	minOld, minAll := indexEntriesBefore(t, db, bucketReqMin, 105)
	if partyOld == 0 || minOld == 0 {
		t.Fatal("no index entries to purge")
	}

	recs, quar, err := db.Purge(ctx, 105)
	if err != nil || recs != 500 || quar != 5 {
		t.Fatalf("Purge = %d, %d, %v", recs, quar, err)
	}
	if _, n := indexEntriesBefore(t, db, bucketParty, 105); n != partyAll-partyOld {
		t.Errorf("party index has %d entries, want %d", n, partyAll-partyOld)
	}
	if _, n := indexEntriesBefore(t, db, bucketReqMin, 105); n != minAll-minOld {
		t.Errorf("reqmin index has %d entries, want %d", n, minAll-minOld)
	}
	_, tss, res := queryIDs(t, db, Query{From: 0, To: 1000, Max: 10000})
	if res.Count != 500 || tss[0] != 105 {
		t.Errorf("after purge: %d records from %d", res.Count, tss[0])
	}
	var received []int64
	_ = db.ListQuarantine(ctx, 0, 1000, func(q Quarantined) error {
		received = append(received, q.ReceivedAt)
		return nil
	})
	if len(received) != 5 || received[0] != 105 {
		t.Errorf("quarantine after purge: %v", received)
	}
	if st, _ := db.Stats(); st != (Stats{Blocks: 5, Records: 500, Quarantined: 5}) {
		t.Errorf("stats %+v", st)
	}
	// Purging again deletes nothing; cutoff 0 neither.
	if recs, quar, err := db.Purge(ctx, 105); recs != 0 || quar != 0 || err != nil {
		t.Errorf("second purge: %d %d %v", recs, quar, err)
	}
	if recs, quar, err := db.Purge(ctx, 0); recs != 0 || quar != 0 || err != nil {
		t.Errorf("purge 0: %d %d %v", recs, quar, err)
	}
	// Everything.
	if recs, quar, err := db.Purge(ctx, 1<<40); recs != 500 || quar != 5 || err != nil {
		t.Errorf("purge all: %d %d %v", recs, quar, err)
	}
	for _, b := range [][]byte{bucketBlocks, bucketParty, bucketReqMin, bucketQuarantine} {
		if n := bucketLen(t, db, b); n != 0 {
			t.Errorf("%s has %d keys", b, n)
		}
	}
}

func TestPurgeManyBatches(t *testing.T) {
	db := openTestDB(t, nil)
	ctx := context.Background()
	// More blocks than one purge transaction deletes.
	recs := make([]schema.Record, 2*purgeBlocks+10)
	for i := range recs {
		recs[i] = mkRec(t, fmt.Sprint(i), "EE/GOV/1", "EE/GOV/2/a", int64(i)*60000, true)
		recs[i].SetInt(schema.FMonitoringDataTs, int64(i))
	}
	if err := db.Import(ctx, recs); err != nil {
		t.Fatal(err)
	}
	n, _, err := db.Purge(ctx, int64(len(recs)-5))
	if err != nil || n != len(recs)-5 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if n := bucketLen(t, db, bucketReqMin); n != 5 {
		t.Errorf("reqmin has %d entries", n)
	}
}
