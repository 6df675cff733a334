package storage

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/opmond/opmond/schema"
)

// TestFaults: ENOSPC and EIO injected at a commit's write or fsync fail
// Store and Import with that error, leave nothing half-written (counters,
// records and the file's consistency) and are reported by CommitErr until
// a commit succeeds again.
func TestFaults(t *testing.T) {
	var fault atomic.Value // FaultOp + error
	type inj struct {
		op  FaultOp
		err error
	}
	fault.Store(inj{})
	path := filepath.Join(t.TempDir(), "op.db")
	db, err := Open(path, Options{Fault: func(op FaultOp) error {
		if f := fault.Load().(inj); f.op == op {
			return f.err
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := 0
	for i, tc := range []inj{{FaultWrite, syscall.ENOSPC}, {FaultSync, syscall.ENOSPC}, {FaultWrite, syscall.EIO}, {FaultSync, syscall.EIO}} {
		fault.Store(tc)
		if _, err := db.Store(ctx, []schema.Record{mkRec(t, "lost", "", "", 1000, true)}, nil); !errors.Is(err, tc.err) {
			t.Errorf("%d: Store: %v, want %v", i, err, tc.err)
		}
		imp := mkRec(t, "lost-import", "", "", 1000, true)
		imp.SetInt(schema.FMonitoringDataTs, 5)
		if err := db.Import(ctx, []schema.Record{imp}); !errors.Is(err, tc.err) {
			t.Errorf("%d: Import: %v, want %v", i, err, tc.err)
		}
		if err := db.CommitErr(); !errors.Is(err, tc.err) {
			t.Errorf("%d: CommitErr %v", i, err)
		}
		fault.Store(inj{})
		store(t, db, mkRec(t, "kept", "", "", 1000, true))
		want++
		if err := db.CommitErr(); err != nil {
			t.Errorf("%d: CommitErr after a good commit: %v", i, err)
		}
	}
	ids, _, _ := queryIDs(t, db, Query{From: 0, To: 1 << 62, Max: 1000})
	for _, id := range ids {
		if id != "kept" {
			t.Errorf("a failed write is visible: %s", id)
		}
	}
	if st, err := db.Stats(); err != nil || st.Records != int64(want) || len(ids) != want {
		t.Errorf("stats %+v %v, %d records read, want %d", st, err, len(ids), want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)
}
