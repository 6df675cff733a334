package storage

import (
	"context"
	"math/rand/v2"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// TestFilteredQueryDenseSeconds: hundreds of small blocks in one second
// share party index entries; filtered queries with limits that end inside
// fetch rounds and windows still find every record once, and the index is
// much smaller than one entry per block and party.
func TestFilteredQueryDenseSeconds(t *testing.T) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	rng := rand.New(rand.NewPCG(5, 11))
	gen := schematest.Records(4000, 21, 1_700_000_000_000)
	all, ts := storeRandomly(t, db, clk, rng, gen[:2500], 500, 1, 6) // all in second 500
	more, last := storeRandomly(t, db, clk, rng, gen[2500:], ts+1, 3, 8)
	all = append(all, more...)
	d := schematest.NewDataset()
	parties := []schema.ClientID{d.Clients[0], d.Clients[7], d.Clients[29], d.Providers()[0], d.Providers()[5]}
	checkFiltered(t, db, all, parties, []int{1, 5, 60, 100000}, []int64{0, 500, 501, last - 5}, last)
	var dense, entries int
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		checkIndexes(t, tx)
		_ = tx.Bucket(bucketBlocks).ForEach(func(k, v []byte) error {
			if h, _ := parseHeader(v); keyTs(k) == 500 {
				dense += len(h.parties) / 8
			}
			return nil
		})
		return tx.Bucket(bucketParty).ForEach(func(k, _ []byte) error {
			if keyTs(k) == 500 {
				entries++
			}
			return nil
		})
	})
	if entries*4 > dense {
		t.Errorf("second 500: %d party index entries for %d block parties: not sparse", entries, dense)
	}
}

// TestPartyIndexMemoryRollback: entries of a transaction that did not
// commit are not remembered, so the next block writes them again.
func TestPartyIndexMemoryRollback(t *testing.T) {
	var m partyIndexMemory
	if !m.needEntry(7, 100, 1) || m.needEntry(7, 100, 2) {
		t.Fatal("first block needs the entry, the next one not")
	}
	m.settle(false)
	if !m.needEntry(7, 100, 3) {
		t.Fatal("rolled-back entry remembered")
	}
	m.settle(true)
	if m.needEntry(7, 100, 3+partyWindow-1) || !m.needEntry(7, 100, 3+partyWindow) {
		t.Fatal("window")
	}
	m.settle(true)
	if !m.needEntry(7, 101, 3+partyWindow+1) {
		t.Fatal("a new second needs new entries")
	}
}

// TestOpenUpgradesVersion1: a version 1 file (an entry per block and party)
// opens, is marked version 2, and answers filtered queries.
func TestOpenUpgradesVersion1(t *testing.T) {
	recs := schematest.Records(300, 3, 1_700_000_000_000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, 1000)
	}
	// Import writes an entry for every block and party, as version 1 did.
	db := oldFile(t, recs, 10, "opmond-db 1", nil, Options{})
	c := schematest.NewDataset().Clients[2]
	q := Query{From: 0, To: 2000, Max: 1000, Associated: &c}
	want, _ := refRecords(recs, q)
	n := 0
	if _, err := db.Query(context.Background(), q, func(*schema.Record) error { n++; return nil }); err != nil || n != len(want) || n == 0 {
		t.Errorf("filtered query: %d records, %v; want %d", n, err, len(want))
	}
}
