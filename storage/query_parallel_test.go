package storage

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// manyBlocksDB stores records in many small blocks, several per second in
// places, and returns them in storage order with monitoringDataTs set.
func manyBlocksDB(t *testing.T) (*DB, []schema.Record, int64) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	rng := rand.New(rand.NewPCG(3, 9))
	all, ts := storeRandomly(t, db, clk, rng, schematest.Records(5000, 5, 1_700_000_000_000), 500, 2, 12)
	return db, all, ts
}

// refRecords is refQuery returning the records.
func refRecords(all []schema.Record, q Query) ([]schema.Record, QueryResult) {
	f := filter{assoc: q.Associated, prov: q.Provider}
	var out []schema.Record
	var res QueryResult
	for i := range all {
		r := &all[i]
		ts := r.Int(schema.FMonitoringDataTs)
		if ts < q.From || ts > q.To || !f.match(r) {
			continue
		}
		if res.LimitHit && ts != res.Last {
			res.More = true
			break
		}
		out = append(out, *r)
		res.Count++
		res.Last = ts
		if res.Count >= q.Max {
			res.LimitHit = true
		}
	}
	return out, res
}

// TestFilteredQueryManyBlocks checks filtered queries over hundreds of
// blocks, with limits that end inside a round, against a scan and filter.
func TestFilteredQueryManyBlocks(t *testing.T) {
	db, all, last := manyBlocksDB(t)
	d := schematest.NewDataset()
	parties := []schema.ClientID{d.Clients[0], d.Clients[5], d.Clients[15], d.Providers()[0], d.Providers()[1]}
	checkFiltered(t, db, all, parties, []int{1, 2, 3, 7, 40, 100000}, []int64{0, 600, last - 20}, last)
}

// checkFiltered compares filtered queries (each party as associated and as
// provider, each limit and start, up to last) with refRecords.
func checkFiltered(t *testing.T, db *DB, all []schema.Record, parties []schema.ClientID, maxes []int, froms []int64, last int64) {
	t.Helper()
	for _, p := range parties {
		for _, max := range maxes {
			for _, from := range froms {
				for _, prov := range []bool{false, true} {
					q := Query{From: from, To: last, Max: max, Associated: &p}
					if prov {
						q.Associated, q.Provider = nil, &p
					}
					checkQuery(t, db, all, q)
				}
			}
		}
	}
}

// checkQuery runs q and compares its records and result with the
// reference implementation's over all.
func checkQuery(t *testing.T, db *DB, all []schema.Record, q Query) {
	t.Helper()
	want, wantRes := refRecords(all, q)
	var got []schema.Record
	res, err := db.Query(context.Background(), q, func(r *schema.Record) error {
		got = append(got, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res != wantRes || !reflect.DeepEqual(got, want) {
		t.Fatalf("query %+v:\n got %+v (%d records)\nwant %+v (%d records)", q, res, len(got), wantRes, len(want))
	}
}

// waitGoroutines fails unless the number of goroutines falls to n soon.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines, want %d", runtime.NumGoroutine(), n)
}

// TestFilteredQueryStops checks that a visit error and a cancelled context
// end a filtered query with that error and leave no goroutine behind.
func TestFilteredQueryStops(t *testing.T) {
	db, all, last := manyBlocksDB(t)
	p := schematest.NewDataset().Clients[0]
	q := Query{From: 0, To: last, Max: len(all), Associated: &p}
	want, _ := refRecords(all, q)
	if len(want) < 100 {
		t.Fatalf("only %d matching records", len(want))
	}
	base := runtime.NumGoroutine()

	stop := errors.New("stop")
	n := 0
	_, err := db.Query(context.Background(), q, func(*schema.Record) error {
		if n++; n == len(want)/2 {
			return stop
		}
		return nil
	})
	if err != stop || n != len(want)/2 {
		t.Errorf("visit error: %v after %d", err, n)
	}
	waitGoroutines(t, base)

	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	_, err = db.Query(ctx, q, func(*schema.Record) error {
		if n++; n == len(want)/2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= len(want) {
		t.Errorf("cancel: %v after %d of %d", err, n, len(want))
	}
	waitGoroutines(t, base)

	if _, err := db.Query(ctx, q, func(*schema.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: %v", err)
	}
	waitGoroutines(t, base)
}
