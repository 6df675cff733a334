package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

func resetIntervalMemo(db *DB) { db.memo.reset() }

// scanned answers q from the blocks alone, without the memo.
func scanned(t testing.TB, db *DB, q IntervalQuery) []Interval {
	t.Helper()
	first, last := floorDiv(q.FromMs, q.StepMs), floorDiv(q.ToMs, q.StepMs)
	out := make([]Interval, last-first+1)
	for i := range out {
		out[i].StartMs = (first + int64(i)) * q.StepMs
	}
	if err := db.scanIntervals(context.Background(), q, first, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// modelIntervals counts recs (the records the database should hold) as
// Intervals should.
func modelIntervals(recs []schema.Record, q IntervalQuery) []Interval {
	first, last := floorDiv(q.FromMs, q.StepMs), floorDiv(q.ToMs, q.StepMs)
	out := make([]Interval, last-first+1)
	for i := range out {
		out[i].StartMs = (first + int64(i)) * q.StepMs
	}
	match := intervalFilter(q)
	for i := range recs {
		r := &recs[i]
		b := floorDiv(r.Int(schema.FRequestInTs), q.StepMs)
		if b < first || b > last || !match(r) {
			continue
		}
		if r.Bool(schema.FSucceeded) {
			out[b-first].Success++
		} else {
			out[b-first].Failure++
		}
	}
	return out
}

// memoFixture makes records and queries for the memo tests: requestInTs in
// span minutes from base, filters drawn from the records.
type memoFixture struct {
	rng        *rand.Rand
	base, span int64
	pool       []schema.Record
}

func (f *memoFixture) records(n int) []schema.Record {
	recs := make([]schema.Record, n)
	for i := range recs {
		recs[i] = f.pool[f.rng.IntN(len(f.pool))]
		recs[i].SetInt(schema.FRequestInTs, f.base+f.rng.Int64N(f.span*60000))
		recs[i].SetBool(schema.FSucceeded, f.rng.IntN(4) > 0)
	}
	return recs
}

func (f *memoFixture) query() IntervalQuery {
	steps := []int64{60000, 60000, 2 * 60000, 5 * 60000, 7 * 60000, 60 * 60000, 90000, 1}
	q := IntervalQuery{StepMs: steps[f.rng.IntN(len(steps))]}
	from := f.base - 30*60000 + f.rng.Int64N((f.span+60)*60000)
	width := f.rng.Int64N(f.span * 60000)
	if q.StepMs == 1 {
		width = f.rng.Int64N(3)
	}
	q.FromMs, q.ToMs = from, from+width
	r := &f.pool[f.rng.IntN(len(f.pool))]
	switch f.rng.IntN(6) {
	case 0:
		q.Type = "Client"
	case 1:
		q.Type = "Producer"
	}
	switch f.rng.IntN(5) {
	case 0, 1:
		id, _ := r.Client()
		if f.rng.IntN(2) == 0 {
			id.Subsystem, id.HasSubsystem = "", false // member level
		}
		q.Member = &id
	case 2:
		s, _ := r.Service()
		if f.rng.IntN(2) == 0 {
			s.Version, s.HasVersion = "", false
		}
		q.Service = &s
	}
	return q
}

// TestIntervalsMemoExact interleaves stores, imports with old
// monitoringDataTs and requestInTs, purges and queries at random, and
// checks each answer, asked twice so that the second comes from the memo,
// against one counted from the blocks alone and against the records that
// should be there.
func TestIntervalsMemoExact(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	clk := &testClock{t: 1_000_000}
	db := openTestDB(t, clk)
	f := &memoFixture{rng: rng, base: 1_700_000_000_000 / 60000 * 60000, span: 120, pool: schematest.Records(500, seed, 0)}
	var model []schema.Record
	ctx := context.Background()
	check := func(q IntervalQuery) {
		t.Helper()
		want := modelIntervals(model, q)
		for range 2 {
			got, err := db.Intervals(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%+v:\ngot  %v\nwant %v", q, got, want)
			}
		}
		if got := scanned(t, db, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v scanned:\ngot  %v\nwant %v", q, got, want)
		}
	}
	for range 200 {
		switch op := rng.IntN(10); {
		case op < 3:
			clk.Set(clk.Now().Unix() + rng.Int64N(3))
			recs := f.records(1 + rng.IntN(100))
			ts := store(t, db, recs...)
			for i := range recs {
				recs[i].SetInt(schema.FMonitoringDataTs, ts)
			}
			model = append(model, recs...)
		case op < 5:
			recs := f.records(1 + rng.IntN(100))
			for i := range recs {
				recs[i].SetInt(schema.FMonitoringDataTs, 1+rng.Int64N(clk.Now().Unix()))
			}
			if err := db.Import(ctx, recs); err != nil {
				t.Fatal(err)
			}
			model = append(model, recs...)
		case op < 6:
			cutoff := rng.Int64N(clk.Now().Unix() + 1)
			if _, _, err := db.Purge(ctx, cutoff); err != nil {
				t.Fatal(err)
			}
			kept := model[:0]
			for _, r := range model {
				if r.Int(schema.FMonitoringDataTs) >= cutoff {
					kept = append(kept, r)
				}
			}
			model = kept
		default:
			check(f.query())
		}
	}
	for range 30 {
		check(f.query())
	}
}

// TestIntervalsMemoStaleSnapshot stores into a minute while a query that
// has counted it from an older snapshot is about to add it to the memo:
// the memo must not keep the older count.
func TestIntervalsMemoStaleSnapshot(t *testing.T) {
	db := openTestDB(t, &testClock{t: 1_000_000})
	const m = 60000
	base := int64(1_700_000_000_000 / m * m)
	store(t, db, mkRec(t, "a", "", "", base+1, true))
	once := true
	memoCountedHook = func() {
		if once {
			once = false
			store(t, db, mkRec(t, "b", "", "", base+2, false))
		}
	}
	t.Cleanup(func() { memoCountedHook = nil })
	q := IntervalQuery{FromMs: base, ToMs: base + 2*m - 1, StepMs: m}
	if _, err := db.Intervals(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	got, err := db.Intervals(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Interval{{base, 1, 1}, {base + m, 0, 0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestIntervalsMemoConcurrent queries while stores and imports go on: an
// answer counts at least what was acknowledged before the call and at most
// what was acknowledged after it; once writes stop, every answer is exact
// (a query that read an older snapshot must not have left its counts).
func TestIntervalsMemoConcurrent(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	clk := &testClock{t: 1_000_000}
	db := openTestDB(t, clk)
	base := int64(1_700_000_000_000 / 60000 * 60000)
	pool := schematest.Records(200, seed, 0)
	newFixture := func(s uint64) *memoFixture {
		// A few minutes only, so that writes hit the minutes queried.
		return &memoFixture{rng: rand.New(rand.NewPCG(seed, s)), base: base, span: 30, pool: pool}
	}
	ctx := context.Background()
	// pending has the records of writes begun, acked those of writes done.
	var mu sync.Mutex
	var pending, acked []schema.Record
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			f := newFixture(uint64(10 + w))
			for {
				select {
				case <-stop:
					return
				default:
				}
				recs := f.records(1 + f.rng.IntN(3))
				mu.Lock()
				pending = append(pending, recs...)
				mu.Unlock()
				if w == 0 {
					if _, err := db.Store(ctx, recs, nil); err != nil {
						t.Error(err)
						return
					}
				} else {
					for i := range recs {
						recs[i].SetInt(schema.FMonitoringDataTs, int64(1+i))
					}
					if err := db.Import(ctx, recs); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				acked = append(acked, recs...)
				mu.Unlock()
			}
		})
	}
	snapshot := func(recs *[]schema.Record) []schema.Record {
		mu.Lock()
		defer mu.Unlock()
		return (*recs)[:len(*recs):len(*recs)]
	}
	var qwg sync.WaitGroup
	for g := range 2 {
		qwg.Go(func() {
			f := newFixture(uint64(20 + g))
			for range 300 {
				q := f.query()
				before := modelIntervals(snapshot(&acked), q)
				got, err := db.Intervals(ctx, q)
				if err != nil {
					t.Error(err)
					return
				}
				after := modelIntervals(snapshot(&pending), q)
				for i := range got {
					if got[i].Success < before[i].Success || got[i].Failure < before[i].Failure ||
						got[i].Success > after[i].Success || got[i].Failure > after[i].Failure {
						t.Errorf("%+v bucket %d: got %v, acknowledged before %v, after %v", q, i, got[i], before[i], after[i])
						return
					}
				}
			}
		})
	}
	qwg.Wait()
	close(stop)
	wg.Wait()
	f := newFixture(30)
	for range 200 {
		q := f.query()
		got, err := db.Intervals(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if want := modelIntervals(acked, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v after the writes:\ngot  %v\nwant %v", q, got, want)
		}
	}
}

// TestIntervalsMemoCountsOnlyChanges checks that a repeated call counts from
// blocks only the minutes written since, and that the memo stays bounded.
func TestIntervalsMemoCountsOnlyChanges(t *testing.T) {
	clk := &testClock{t: 1_000_000}
	db := openTestDB(t, clk)
	const m = 60000
	base := int64(1_700_000_000_000 / (60 * m) * (60 * m))
	store(t, db, mkRec(t, "a", "EE/GOV/1/app", "EE/GOV/2/svc", base+5*m, true))
	ctx := context.Background()
	counted := func(q IntervalQuery) int64 {
		t.Helper()
		n := db.memo.counted
		if _, err := db.Intervals(ctx, q); err != nil {
			t.Fatal(err)
		}
		return db.memo.counted - n
	}
	day := IntervalQuery{FromMs: base, ToMs: base + 24*60*m - 1, StepMs: 60 * m}
	if n := counted(day); n != 24*60 {
		t.Errorf("first call counted %d minutes, want %d", n, 24*60)
	}
	if n := counted(day); n != 0 {
		t.Errorf("repeated call counted %d minutes", n)
	}
	store(t, db, mkRec(t, "b", "", "", base+7*m+1, false), mkRec(t, "c", "", "", base+9*m, true))
	if n := counted(day); n != 2 {
		t.Errorf("call after a store into 2 minutes counted %d", n)
	}
	day.StepMs = m // other steps share the minutes
	if n := counted(day); n != 0 {
		t.Errorf("1-minute steps counted %d minutes", n)
	}
	day.StepMs = 1 // not whole minutes: no memo
	day.ToMs = day.FromMs + 10
	if n := counted(day); n != 0 {
		t.Errorf("1-ms steps counted %d minutes into the memo", n)
	}

	// Many filters and wide windows stay within the bounds, and right.
	for i := range memoMaxKeys + 10 {
		id := schema.ClientID{Instance: "EE", MemberClass: "GOV", MemberCode: fmt.Sprint(i)}
		q := IntervalQuery{FromMs: base - 100*24*60*m, ToMs: base + 24*60*m, StepMs: 24 * 60 * m, Member: &id}
		if i%10 == 0 {
			q.FromMs = base - (memoMaxMinutes-2*24*60)*m
		}
		if _, err := db.Intervals(ctx, q); err != nil {
			t.Fatal(err)
		}
		db.memo.mu.Lock()
		nf, nc := len(db.memo.filters), db.memo.nChunks
		db.memo.mu.Unlock()
		if nf > memoMaxKeys || nc > memoMaxChunks {
			t.Fatalf("memo holds %d filters and %d chunks", nf, nc)
		}
	}
	q := IntervalQuery{FromMs: base, ToMs: base + 10*m, StepMs: m}
	got, err := db.Intervals(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if want := scanned(t, db, q); !reflect.DeepEqual(got, want) {
		t.Errorf("after evictions: got %v\nwant %v", got, want)
	}
}
