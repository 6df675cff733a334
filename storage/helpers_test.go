package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  int64
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(c.t, 0)
}

func (c *testClock) Set(t int64) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// openTestDB opens a database in a fresh folder (below a missing
// subfolder, to exercise its creation). When the test ends the database is
// closed and the file is checked: bbolt's page consistency, and that the
// indexes and counters agree with the blocks.
func openTestDB(t testing.TB, clk *testClock) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "opmon.db")
	opts := Options{}
	if clk != nil {
		opts.Now = clk.Now
	}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		checkFile(t, path)
	})
	return db
}

func checkFile(t testing.TB, path string) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopen for check: %v", err)
		return
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		checkIndexes(t, tx)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// checkIndexes verifies that the index entries are exactly those the block
// headers call for and that the counters match.
func checkIndexes(t testing.TB, tx *bolt.Tx) {
	t.Helper()
	wantParty, wantMin := map[string]bool{}, map[string]bool{}
	var blocks, records int64
	chunks := map[string]bool{}
	err := tx.Bucket(bucketBlocks).ForEach(func(k, v []byte) error {
		if isSpacer(k) {
			if len(v) != 0 || k[blockKeyLen] < 1 || k[blockKeyLen] > spacersPerCommit {
				t.Errorf("spacer %x has value %x", k, v)
			}
			return nil
		}
		h, err := parseHeader(v)
		if err != nil {
			return err
		}
		blocks++
		records += int64(h.count)
		for i := range h.chunks {
			ck := chunkKey(blockKey(k), i)
			chunks[string(ck[:])] = true
		}
		add := func(m map[string]bool) func(uint64) error {
			return func(p uint64) error {
				m[string(binary.BigEndian.AppendUint64(nil, p))+string(k)] = true
				return nil
			}
		}
		if err := h.eachParty(add(wantParty)); err != nil {
			return err
		}
		return h.eachMinute(add(wantMin))
	})
	if err != nil {
		t.Errorf("blocks: %v", err)
	}
	// Every party of a block has an entry for that block or for one less
	// than partyWindow blocks before it in the same second, and every entry
	// names a block holding its party.
	party := tx.Bucket(bucketParty)
	for k := range wantParty {
		c := party.Cursor()
		p, bk := []byte(k[:8]), []byte(k[8:])
		ts, seq := keyTs(bk), binary.BigEndian.Uint64(bk[8:])
		from := makeBlockKey(ts, seq-min(seq, partyWindow-1))
		ek, _ := c.Seek(append(bytes.Clone(p), from[:]...))
		if ek == nil || !bytes.Equal(ek[:8], p) || bytes.Compare(ek[8:], bk) > 0 {
			t.Errorf("party %x of block %x has no index entry in its window", p, bk)
		}
	}
	_ = party.ForEach(func(k, _ []byte) error {
		if !wantParty[string(k)] {
			t.Errorf("party: stray entry %x", k)
		}
		return nil
	})
	for _, ix := range []struct {
		name []byte
		want map[string]bool
	}{{bucketReqMin, wantMin}} {
		n := 0
		_ = tx.Bucket(ix.name).ForEach(func(k, _ []byte) error {
			n++
			if !ix.want[string(k)] {
				t.Errorf("%s: stray entry %x", ix.name, k)
			}
			return nil
		})
		if n != len(ix.want) {
			t.Errorf("%s: %d entries, want %d", ix.name, n, len(ix.want))
		}
	}
	n := 0
	_ = tx.Bucket(bucketSealed).ForEach(func(k, _ []byte) error {
		n++
		if !chunks[string(k)] {
			t.Errorf("sealed: stray chunk %x", k)
		}
		return nil
	})
	if n != len(chunks) {
		t.Errorf("sealed: %d chunks, the blocks name %d", n, len(chunks))
	}
	meta := tx.Bucket(bucketMeta)
	if got := getCounter(meta, metaBlocks); got != blocks {
		t.Errorf("blocks counter %d, have %d", got, blocks)
	}
	if got := getCounter(meta, metaRecords); got != records {
		t.Errorf("records counter %d, have %d", got, records)
	}
	if got, have := getCounter(meta, metaQuarantined), int64(tx.Bucket(bucketQuarantine).Stats().KeyN); got != have {
		t.Errorf("quarantined counter %d, have %d", got, have)
	}
}

func bucketLen(t testing.TB, db *DB, name []byte) int {
	t.Helper()
	n := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		// Blocks only, not the spacers between them.
		return tx.Bucket(name).ForEach(func(k, _ []byte) error {
			if !bytes.Equal(name, bucketBlocks) || !isSpacer(k) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustID(t testing.TB, s string) schema.ClientID {
	t.Helper()
	if s == "" {
		return schema.ClientID{}
	}
	// "INST/CLASS/CODE/" is a subsystem with an empty code.
	if parts := bytes.Split([]byte(s), []byte("/")); len(parts) == 4 && len(parts[3]) == 0 {
		return schema.ClientID{Instance: string(parts[0]), MemberClass: string(parts[1]),
			MemberCode: string(parts[2]), HasSubsystem: true}
	}
	id, err := schema.ParseClientID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// mkRec makes a minimal valid record; client and provider are slash ids
// ("" leaves them out), id goes to messageId.
func mkRec(t testing.TB, id, client, provider string, reqIn int64, ok bool) schema.Record {
	t.Helper()
	var r schema.Record
	r.SetStr(schema.FSecurityServerInternalIP, "10.0.0.1")
	r.SetStr(schema.FSecurityServerType, "Client")
	r.SetInt(schema.FRequestInTs, reqIn)
	r.SetInt(schema.FResponseOutTs, reqIn+10)
	r.SetBool(schema.FSucceeded, ok)
	r.SetStr(schema.FMessageID, id)
	if client != "" {
		schematest.SetParty(&r, schema.FClientXRoadInstance, mustID(t, client))
	}
	if provider != "" {
		schematest.SetParty(&r, schema.FServiceXRoadInstance, mustID(t, provider))
	}
	return r
}

// queryIDs runs a query and returns the messageIds and ts of the visited records.
func queryIDs(t testing.TB, db *DB, q Query) ([]string, []int64, QueryResult) {
	t.Helper()
	var ids []string
	var tss []int64
	res, err := db.Query(context.Background(), q, func(r *schema.Record) error {
		ids = append(ids, r.Str(schema.FMessageID))
		tss = append(tss, r.Int(schema.FMonitoringDataTs))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, tss, res
}

func store(t testing.TB, db *DB, recs ...schema.Record) int64 {
	t.Helper()
	ts, err := db.Store(context.Background(), recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// storeRandomly stores gen in Store calls of 1..maxBatch records, advancing
// the clock by 0..maxStep-1 seconds before each (so some seconds get several
// calls), and returns the records as stored (with monitoringDataTs) and the
// last second.
func storeRandomly(t testing.TB, db *DB, clk *testClock, rng *rand.Rand, gen []schema.Record, ts int64, maxStep, maxBatch int) ([]schema.Record, int64) {
	t.Helper()
	var all []schema.Record
	for len(gen) > 0 {
		ts += int64(rng.IntN(maxStep))
		clk.Set(ts)
		n := min(len(gen), 1+rng.IntN(maxBatch))
		store(t, db, gen[:n]...)
		for _, r := range gen[:n] {
			r.SetInt(schema.FMonitoringDataTs, ts)
			all = append(all, r)
		}
		gen = gen[n:]
	}
	return all, ts
}

// oldFile writes recs into a new database file with Import, batch records
// at a time, then lets rewrite change the file (in one transaction) into
// what an older version wrote, marks it format old, and reopens it. It
// checks that opening upgraded the format.
func oldFile(t *testing.T, recs []schema.Record, batch int, old string, rewrite func(tx *bolt.Tx) error, opts Options) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += batch {
		if err := db.Import(context.Background(), recs[i:min(i+batch, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		if rewrite != nil {
			if err := rewrite(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(path, opts); err != nil {
		t.Fatalf("%s refused: %v", old, err)
	}
	t.Cleanup(func() { db.Close() })
	var format string
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		format = string(tx.Bucket(bucketMeta).Get(metaFormat))
		return nil
	})
	if format != formatString() {
		t.Errorf("format %q after open, want %q", format, formatString())
	}
	return db
}
