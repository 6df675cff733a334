package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

func TestOrdering(t *testing.T) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	ctx := context.Background()
	var want []string
	for s := int64(10); s < 15; s++ {
		clk.Set(s)
		for call := range 3 {
			var recs []schema.Record
			for i := range 4 {
				id := fmt.Sprintf("%d-%d-%d", s, call, i)
				recs = append(recs, mkRec(t, id, "", "", 0, true))
				want = append(want, id)
			}
			if _, err := db.Store(ctx, recs, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids, tss, res := queryIDs(t, db, Query{From: 0, To: 100, Max: 1000})
	if !reflect.DeepEqual(ids, want) || res.Count != 60 || res.LimitHit || res.Last != 14 {
		t.Fatalf("ids %v res %+v", ids, res)
	}
	for i := 1; i < len(tss); i++ {
		if tss[i] < tss[i-1] {
			t.Fatal("not ascending")
		}
	}
	ids, _, _ = queryIDs(t, db, Query{From: 12, To: 12, Max: 1000})
	if !reflect.DeepEqual(ids, want[24:36]) {
		t.Errorf("one second: %v", ids)
	}
	if ids, _, _ = queryIDs(t, db, Query{From: 20, To: 10, Max: 1000}); len(ids) != 0 {
		t.Errorf("empty window: %v", ids)
	}
	if ids, _, _ = queryIDs(t, db, Query{From: -100, To: -1, Max: 1000}); len(ids) != 0 {
		t.Errorf("negative window: %v", ids)
	}
	if _, err := db.Query(ctx, Query{To: 100}, func(*schema.Record) error { return nil }); err == nil {
		t.Error("max 0 accepted")
	}
	stop := errors.New("stop")
	n := 0
	if _, err := db.Query(ctx, Query{To: 100, Max: 1000}, func(*schema.Record) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	}); err != stop || n != 3 {
		t.Errorf("visit error: %v after %d", err, n)
	}
}

// TestLimitExamples runs the examples of opmon-protocol §4.2, unfiltered and
// under filters that every record passes.
func TestLimitExamples(t *testing.T) {
	all := mustID(t, "EE/GOV/1/sub")
	filters := []struct {
		name      string
		assoc, pr *schema.ClientID
	}{{"none", nil, nil}, {"associated", &all, nil}, {"provider", nil, &all}, {"both", &all, &all}}
	for _, fl := range filters {
		t.Run(fl.name, func(t *testing.T) {
			clk := &testClock{}
			db := openTestDB(t, clk)
			put := func(ts int64, n int, calls int) {
				clk.Set(ts)
				for c := range calls {
					var recs []schema.Record
					for i := range n / calls {
						recs = append(recs, mkRec(t, fmt.Sprintf("%d-%d-%d", ts, c, i), "EE/GOV/9", "EE/GOV/1/sub", 0, true))
					}
					store(t, db, recs...)
				}
			}
			put(980, 8, 2)
			put(981, 17, 1)
			q := func(from, to int64, max int) ([]int64, QueryResult) {
				_, tss, res := queryIDs(t, db, Query{From: from, To: to, Max: max, Associated: fl.assoc, Provider: fl.pr})
				return tss, res
			}
			tss, res := q(980, 990, 10)
			if res != (QueryResult{Count: 25, LimitHit: true, Last: 981}) || len(tss) != 25 {
				t.Errorf("example 1: %+v", res)
			}
			put(985, 1, 1)
			tss, res = q(980, 990, 10)
			if res != (QueryResult{Count: 25, LimitHit: true, Last: 981, More: true}) || len(tss) != 25 {
				t.Errorf("example 2: %+v", res)
			}
			tss, res = q(960, 990, 8)
			if res != (QueryResult{Count: 8, LimitHit: true, Last: 980, More: true}) || tss[7] != 980 {
				t.Errorf("example 3: %+v", res)
			}
			// The next page starts at Last+1.
			tss, res = q(981, 990, 8)
			if res != (QueryResult{Count: 17, LimitHit: true, Last: 981, More: true}) || tss[0] != 981 {
				t.Errorf("page 2: %+v", res)
			}
			tss, res = q(982, 990, 8)
			if res != (QueryResult{Count: 1, Last: 985}) || tss[0] != 985 {
				t.Errorf("page 3: %+v", res)
			}
			// Exactly Max records up to the window's end: nothing more.
			_, res = q(960, 985, 26)
			if res != (QueryResult{Count: 26, LimitHit: true, Last: 985}) {
				t.Errorf("exact: %+v", res)
			}
			_, res = q(960, 984, 25)
			if res != (QueryResult{Count: 25, LimitHit: true, Last: 981}) {
				t.Errorf("window ends before 985: %+v", res)
			}
		})
	}
}

func TestPartyFilters(t *testing.T) {
	clk := &testClock{t: 100}
	db := openTestDB(t, clk)
	recs := []schema.Record{
		mkRec(t, "member-client", "EE/GOV/1", "EE/GOV/2/svc", 0, true),
		mkRec(t, "sub-client", "EE/GOV/1/app", "EE/GOV/2/svc", 0, true),
		mkRec(t, "empty-sub-client", "EE/GOV/1/", "EE/GOV/2/svc", 0, true),
		mkRec(t, "member-provider", "EE/COM/3/x", "EE/GOV/1", 0, true),
		mkRec(t, "sub-provider", "EE/COM/3/x", "EE/GOV/1/app", 0, true),
		mkRec(t, "self", "EE/GOV/1/app", "EE/GOV/1/app", 0, true),
		mkRec(t, "other-instance", "FI/GOV/1", "FI/GOV/1", 0, true),
		mkRec(t, "no-parties", "", "", 0, true),
	}
	store(t, db, recs[:4]...)
	clk.Set(101)
	store(t, db, recs[4:]...)
	id := func(s string) *schema.ClientID { x := mustID(t, s); return &x }
	cases := []struct {
		name        string
		assoc, prov *schema.ClientID
		want        []string
	}{
		{"member associated", id("EE/GOV/1"), nil, []string{"member-client", "member-provider"}},
		{"subsystem associated", id("EE/GOV/1/app"), nil, []string{"sub-client", "sub-provider", "self"}},
		{"empty subsystem", id("EE/GOV/1/"), nil, []string{"empty-sub-client"}},
		{"member provider", nil, id("EE/GOV/1"), []string{"member-provider"}},
		{"subsystem provider", nil, id("EE/GOV/1/app"), []string{"sub-provider", "self"}},
		{"provider of a client", nil, id("EE/COM/3/x"), nil},
		{"both", id("EE/COM/3/x"), id("EE/GOV/1/app"), []string{"sub-provider"}},
		{"both, none", id("EE/GOV/1"), id("EE/GOV/1/app"), nil},
		{"unknown", id("EE/GOV/404"), nil, nil},
		{"other instance", id("FI/GOV/1"), nil, []string{"other-instance"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids, _, res := queryIDs(t, db, Query{From: 0, To: 1000, Max: 100, Associated: tc.assoc, Provider: tc.prov})
			if !reflect.DeepEqual(ids, tc.want) || res.Count != len(tc.want) {
				t.Errorf("got %v", ids)
			}
		})
	}
}

// refQuery is §4.2 over a plain list in storage order.
func refQuery(all []schema.Record, q Query) ([]string, QueryResult) {
	recs, res := refRecords(all, q)
	var ids []string
	for i := range recs {
		ids = append(ids, recs[i].Str(schema.FMessageID))
	}
	return ids, res
}

// TestQueryMatchesReference compares random queries, and paging through
// whole windows, with a reference implementation.
func TestQueryMatchesReference(t *testing.T) {
	clk := &testClock{}
	db := openTestDB(t, clk)
	rng := rand.New(rand.NewPCG(7, 7))
	all, ts := storeRandomly(t, db, clk, rng, schematest.Records(6000, 11, 1_700_000_000_000), 1000, 3, 150)
	d := schematest.NewDataset()
	parties := append(append([]schema.ClientID{}, d.Clients...), d.Providers()[0], d.Providers()[1])
	randID := func() *schema.ClientID {
		if rng.IntN(3) == 0 {
			return nil
		}
		return &parties[rng.IntN(len(parties))]
	}
	for i := range 300 {
		from := 1000 + int64(rng.IntN(int(ts-1000+5)))
		q := Query{From: from, To: from + int64(rng.IntN(100)), Max: 1 + rng.IntN(400), Associated: randID(), Provider: randID()}
		if i%10 == 0 {
			q.Provider = nil
		}
		wantIDs, wantRes := refQuery(all, q)
		ids, _, res := queryIDs(t, db, q)
		if res != wantRes || !reflect.DeepEqual(ids, wantIDs) {
			t.Fatalf("query %+v:\n got %+v (%d ids)\nwant %+v (%d ids)", q, res, len(ids), wantRes, len(wantIDs))
		}
	}
	// Paging a whole window under each kind of filter returns every record once.
	for _, q := range []Query{
		{From: 0, To: ts, Max: 97},
		{From: 0, To: ts, Max: 50, Associated: &parties[3]},
		{From: 0, To: ts, Max: 20, Provider: &parties[0]},
		{From: 0, To: ts, Max: 5, Associated: &parties[17]},
	} {
		want, _ := refQuery(all, Query{From: q.From, To: q.To, Max: len(all) + 1, Associated: q.Associated, Provider: q.Provider})
		var got []string
		for pages := 0; ; pages++ {
			ids, _, res := queryIDs(t, db, q)
			got = append(got, ids...)
			if !res.More {
				break
			}
			if pages > len(all) {
				t.Fatal("paging does not end")
			}
			q.From = res.Last + 1
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("paging %+v: %d records, want %d", q, len(got), len(want))
		}
	}
}

func TestQueryCancelled(t *testing.T) {
	db := openTestDB(t, &testClock{t: 1})
	store(t, db, schematest.Records(10, 1, 0)...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Query(ctx, Query{To: 10, Max: 10}, func(*schema.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}
