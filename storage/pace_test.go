package storage

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema/schematest"
)

// TestQueriesPaceUnderStores: a long query sleeps between its pieces of work
// while Store commits keep coming, and not without them; its answer is the
// same either way.
func TestQueriesPaceUnderStores(t *testing.T) {
	clk := &testClock{t: 1000}
	db := openTestDB(t, clk)
	recs := schematest.Records(20000, 9, 1_700_000_000_000)
	for i := 0; i < len(recs); i += 100 {
		clk.Set(1000 + int64(i/1000))
		store(t, db, recs[i:i+100]...)
	}
	clk.Set(2000) // later stores fall outside the window
	q := Query{From: 1000, To: 1019, Max: 100000}
	answer := func() []byte {
		var out bytes.Buffer
		if _, err := db.QueryAnswer(context.Background(), q, `{"records":[`, "]}", &out); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}

	db.lastStore.Store(0) // no store traffic
	quiet := answer()
	if p := db.PacedTime(); p != 0 {
		t.Fatalf("without store traffic the query slept %v", p)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				if _, err := db.Store(context.Background(), recs[:1], nil); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	time.Sleep(20 * time.Millisecond)
	busy := answer()
	close(stop)
	wg.Wait()
	if db.PacedTime() == 0 {
		t.Error("under store traffic the query never slept")
	}
	if !bytes.Equal(quiet, busy) {
		t.Error("the paced answer differs")
	}
}
