package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// Query selects records by monitoringDataTs and party (opmon-protocol §4).
type Query struct {
	From, To   int64            // inclusive bounds on monitoringDataTs (seconds)
	Max        int              // max records (≥1); the last second is never split (opmon-protocol §4.2)
	Associated *schema.ClientID // if set: only records where it MatchesClient or MatchesProvider
	Provider   *schema.ClientID // if set: only records where it MatchesProvider
}

// QueryResult tells how a query ended.
type QueryResult struct {
	Count    int   // records visited
	LimitHit bool  // Count reached Max (then all records of the last second were included)
	Last     int64 // monitoringDataTs of the last visited record (valid when Count > 0)
	More     bool  // LimitHit and some matching record has ts in [Last+1, To]
}

// Limits of one read transaction of a query: reading stops at whichever
// comes first, so a transaction stays short whatever the visitor does. What
// a round reads is held at once (copies of the frames, then the bodies):
// rounds of 256 blocks and 16 MiB raised the daemon's peak RSS in
// opmonbench by about 6 MiB (with the payload blocks, daemon/query.go).
const (
	fetchMaxBlocks = 64
	fetchMaxBytes  = 4 << 20
	fetchFirst     = 16 // blocks fetched first under a filter; doubles per round
)

// filter is the record predicate of a query.
type filter struct {
	assoc, prov *schema.ClientID
}

func (f filter) none() bool { return f.assoc == nil && f.prov == nil }

func (f filter) match(r *schema.Record) bool {
	if f.prov != nil && !r.MatchesProvider(*f.prov) {
		return false
	}
	return f.assoc == nil || r.MatchesClient(*f.assoc) || r.MatchesProvider(*f.assoc)
}

// hashes returns the party index prefixes whose union holds every block
// with a matching record, or nil to scan all blocks.
func (f filter) hashes() []uint64 {
	switch {
	case f.prov != nil:
		return []uint64{partyHash(roleProvider, *f.prov)}
	case f.assoc != nil:
		return []uint64{partyHash(roleClient, *f.assoc), partyHash(roleProvider, *f.assoc)}
	}
	return nil
}

// fetched is a candidate block. Unfiltered, body is its decompressed body.
// Under a filter, fetch copies its zstd frame to zbuf[zlo:zhi] and
// matchRound replaces it by its matching records, workers[w].out[lo:hi], or
// an error.
type fetched struct {
	ts       int64
	count    int
	body     string
	bodyLen  int
	zlo, zhi int
	sealed   bool // zbuf[zlo:zhi] holds a sealed block's value, its stream from slo
	packed   bool // zbuf[zlo:zhi] holds a version 3 or 4 block's frame
	dict     bool // version 4
	slo      int
	crc      uint32 // sealed: the CRC-32 of its JSON
	w        int
	lo, hi   int
	err      error
}

// queryState holds the buffers of one query, reused across queries.
type queryState struct {
	recs    []schema.Record
	batch   []fetched
	zbuf    []byte
	workers []matchWorker
	splice  bool // fetch copies sealed blocks unfiltered (QueryAnswer)
	mapped  int  // bytes of the mapping read since the last releaseMapped
}

// queryReleaseBytes is how much of the mapping a query reads between two
// releases of it (releaseMapped), the rest being released when it ends. A
// release costs 0.1–1 ms whatever it releases: releasing after every round
// took a tenth of a filtered query's time, on its serial part. A variable
// for tests.
var queryReleaseBytes = 4 << 20

// releaseSome releases the mapping if queryReleaseBytes have been read.
func (st *queryState) releaseSome(db *bolt.DB, tx *bolt.Tx) {
	if st.mapped >= queryReleaseBytes {
		releaseMapped(db, tx)
		st.mapped = 0
	}
}

// matchWorker holds the buffers of one goroutine of matchRound.
type matchWorker struct {
	body    []byte            // decompressed block, reused
	has     []schema.FieldSet // scratch of decodeMatching
	idx     []int32
	uuids   []byte                // matching records' UUIDs (decodeMatching), reused
	tab     []string              // a dictionary column's values (decodeMatching)
	matched []int32               // indexes of a block's matching records
	present [schema.NumFields]int // how many of a block's records have each field
	out     []schema.Record       // matching records of the round
}

var queryStatePool = sync.Pool{New: func() any { return new(queryState) }}

// release drops references into decoded bodies so that a pooled state does
// not keep them alive.
func (st *queryState) release() {
	clear(st.batch)
	for i := range st.workers {
		clear(st.workers[i].out)
	}
	if cap(st.zbuf) > 4*fetchMaxBytes {
		st.zbuf = nil
	}
}

// decode decodes b into the state's record buffer.
func (st *queryState) decode(b *fetched) ([]schema.Record, error) {
	if cap(st.recs) < b.count {
		st.recs = make([]schema.Record, b.count)
	}
	recs := st.recs[:b.count]
	if err := decodeBody(b.body, recs); err != nil {
		return nil, err
	}
	return recs, nil
}

// matchRound decompresses and decodes the fetched blocks on all cores and
// keeps their matching records: a party spread thinly over many blocks makes
// this the bulk of a filtered query. It returns once every goroutine it
// started has ended; if ctx is cancelled, some blocks stay unprocessed.
func (st *queryState) matchRound(ctx context.Context, f filter) {
	n := min(runtime.GOMAXPROCS(0), len(st.batch))
	if n == 0 {
		return
	}
	if len(st.workers) < n {
		st.workers = append(st.workers, make([]matchWorker, n-len(st.workers))...)
	}
	var next atomic.Int64
	work := func(mw *matchWorker, w int) {
		clear(mw.out)
		mw.out = mw.out[:0]
		for ctx.Err() == nil {
			i := int(next.Add(1)) - 1
			if i >= len(st.batch) {
				return
			}
			b := &st.batch[i]
			b.w, b.lo = w, len(mw.out)
			b.err = mw.match(b, st.zbuf[b.zlo:b.zhi], f)
			b.hi = len(mw.out)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < n; w++ {
		wg.Go(func() { work(&st.workers[w], w) })
	}
	work(&st.workers[0], 0)
	wg.Wait()
}

// match appends the matching records of block b, with zstd frame z, to
// mw.out. Records are decoded from the worker's reused buffer and only the
// kept ones get their own copy of their strings: most of a block is
// usually dropped.
func (mw *matchWorker) match(b *fetched, z []byte, f filter) error {
	if b.sealed {
		return mw.matchSealed(z, f)
	}
	h := &blockHeader{count: b.count, bodyLen: b.bodyLen, zbody: z, packed: b.packed, dict: b.dict}
	var cols *[len(uuidFields)]packedColumn
	var rest []byte
	var err error
	if h.packed {
		// Decoded from the packed form: the UUIDs of the records that do
		// not match are never written out.
		var packed, raw []byte
		if packed, raw, err = decodePackedFrame(mw.body, h); err != nil {
			return err
		}
		mw.body = packed
		var pc [len(uuidFields)]packedColumn
		if pc, rest, err = splitPacked(packed, raw); err != nil {
			return err
		}
		cols = &pc
	} else if mw.body, err = appendBody(mw.body[:0], h); err != nil {
		return err
	} else {
		rest = mw.body
	}
	body := unsafe.String(unsafe.SliceData(rest), len(rest))
	lo := len(mw.out)
	err = mw.decodeMatching(body, cols, h.dict, f, b.count)
	for i := lo; i < len(mw.out); i++ {
		detachStrings(&mw.out[i])
	}
	return err
}

// Query visits matching records in ascending monitoringDataTs, insertion order
// within a second, implementing §4.2: after Max records, keep visiting the
// records of the last visited second, then stop and probe for More. The
// *schema.Record passed to visit (with FMonitoringDataTs set) is only valid
// during the call (it may be reused); strings in it stay valid after.
// A visit error aborts and is returned.
//
// Blocks are read in short read transactions and visited outside them.
func (db *DB) Query(ctx context.Context, q Query, visit func(*schema.Record) error) (QueryResult, error) {
	return db.query(ctx, q, visit, nil, db.newPacer())
}

// query is Query; if splice is set and q has no filter, sealed blocks are
// handed to it whole, as their deflate streams, instead of to visit.
func (db *DB) query(ctx context.Context, q Query, visit func(*schema.Record) error, splice func(stream []byte, crc uint32, n int) error, pc *pacer) (QueryResult, error) {
	var res QueryResult
	if err := db.begin(); err != nil {
		return res, err
	}
	defer db.end()
	// Sealing moves records between blocks: a query that reads in several
	// transactions must not see it happen.
	db.readGate()
	defer db.readDone()
	if q.Max < 1 {
		return res, fmt.Errorf("query: max %d < 1", q.Max)
	}
	if q.To < 0 || q.From > q.To {
		return res, nil
	}
	f := filter{assoc: q.Associated, prov: q.Provider}
	hashes := f.hashes()
	st := queryStatePool.Get().(*queryState)
	defer func() {
		if st.mapped > 0 {
			db.releaseAll()
			st.mapped = 0
		}
		st.release()
		queryStatePool.Put(st)
	}()
	st.splice = splice != nil && f.none()

	start := makeBlockKey(max(q.From, 0), 0)
	want := fetchFirst
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		lim := fetchLimit{to: q.To, onlyTs: -1, maxBlocks: fetchMaxBlocks, maxRecs: q.Max - res.Count}
		if !f.none() {
			// Headers overcount matches under a filter: read growing rounds.
			lim.maxBlocks, lim.maxRecs = want, math.MaxInt
			want = min(2*want, fetchMaxBlocks)
		}
		if res.LimitHit {
			lim.onlyTs, lim.maxRecs = res.Last, math.MaxInt
		}
		var status fetchStatus
		var next blockKey
		var err error
		next, status, err = db.fetch(st, hashes, start, lim, !f.none())
		if err != nil {
			return res, fmt.Errorf("query: %w", err)
		}
		if !f.none() {
			st.matchRound(ctx, f)
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		for i := range st.batch {
			b := &st.batch[i]
			var recs []schema.Record
			switch {
			case f.none():
				if res.LimitHit && b.ts != res.Last {
					// Read in the same round as the last second: only probes.
					if b.count > 0 {
						res.More = true
						return res, nil
					}
					continue
				}
				if b.sealed {
					if err := splice(st.zbuf[b.slo:b.zhi], b.crc, b.bodyLen); err != nil {
						return res, err
					}
					res.Count += b.count
					res.Last = b.ts
					res.LimitHit = res.Count >= q.Max
					continue
				}
				if recs, err = st.decode(b); err != nil {
					return res, fmt.Errorf("query: %w", err)
				}
			case b.err != nil:
				return res, fmt.Errorf("query: %w", b.err)
			default:
				recs = st.workers[b.w].out[b.lo:b.hi]
				if res.LimitHit && b.ts != res.Last {
					if len(recs) > 0 {
						res.More = true
						return res, nil
					}
					continue
				}
			}
			for j := range recs {
				r := &recs[j]
				r.SetInt(schema.FMonitoringDataTs, b.ts)
				if err := visit(r); err != nil {
					return res, err
				}
				res.Count++
				res.Last = b.ts
				if res.Count >= q.Max {
					res.LimitHit = true
				}
			}
		}
		switch status {
		case fetchDone:
			return res, nil
		case fetchBeyond:
			res.More, err = db.probe(st, hashes, next, q.To, f)
			if err != nil {
				return res, fmt.Errorf("query: %w", err)
			}
			return res, nil
		}
		start = next
		pc.pace()
	}
}

func (st *queryState) anyMatch(b *fetched, f filter) (bool, error) {
	if f.none() {
		return b.count > 0, nil
	}
	recs, err := st.decode(b)
	if err != nil {
		return false, err
	}
	for i := range recs {
		if f.match(&recs[i]) {
			return true, nil
		}
	}
	return false, nil
}

type fetchLimit struct {
	to        int64 // last ts
	onlyTs    int64 // if ≥ 0: stop before the first block of another second
	maxBlocks int
	maxRecs   int // stop once the headers count this many records
}

type fetchStatus int

const (
	fetchDone         fetchStatus = iota // no more candidates up to lim.to
	fetchLimitReached                    // more candidates from next on
	fetchBeyond                          // onlyTs given and next is a later candidate
)

// fetch reads candidate blocks from start on into st.batch, in one read
// transaction: decompressed, or if raw as copies of their zstd frames in
// st.zbuf (to be decompressed in parallel after the transaction).
func (db *DB) fetch(st *queryState, hashes []uint64, start blockKey, lim fetchLimit, raw bool) (blockKey, fetchStatus, error) {
	var next blockKey
	status := fetchDone
	out, zbuf := st.batch[:0], st.zbuf[:0]
	defer func() { st.batch, st.zbuf = out, zbuf }()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		// What was read is copied out.
		defer st.releaseSome(db.bolt, tx)
		it := newCandIter(tx, hashes, lim.to)
		recs, size := 0, 0
		for k, v, err := it.seek(start); ; k, v, err = it.next() {
			if err != nil || k == nil {
				return err
			}
			st.mapped += len(v)
			ts := keyTs(k)
			if lim.onlyTs >= 0 && ts != lim.onlyTs {
				next, status = blockKey(k), fetchBeyond
				return nil
			}
			if len(out) >= lim.maxBlocks || recs >= lim.maxRecs || size >= fetchMaxBytes {
				next, status = blockKey(k), fetchLimitReached
				return nil
			}
			h, err := parseHeader(v)
			if err != nil {
				return err
			}
			recs += h.count
			size += h.bodyLen
			if h.sealed && (raw || st.splice) {
				// The whole value: a filter reads its tags (matchSealed),
				// QueryAnswer its stream, from slo on.
				zlo := len(zbuf)
				zbuf = append(zbuf, v...)
				if zbuf, err = appendChunks(tx, k, &h, zbuf); err != nil {
					return err
				}
				st.mapped += len(zbuf) - zlo - len(v)
				out = append(out, fetched{ts: ts, count: h.count, bodyLen: h.bodyLen, zlo: zlo, zhi: len(zbuf),
					slo: zlo + len(v) - len(h.zbody), sealed: true, crc: h.crc})
				continue
			}
			if raw {
				zlo := len(zbuf)
				zbuf = append(zbuf, h.zbody...)
				out = append(out, fetched{ts: ts, count: h.count, bodyLen: h.bodyLen, zlo: zlo, zhi: len(zbuf), packed: h.packed, dict: h.dict})
				continue
			}
			inValue := len(h.zbody)
			if h, err = wholeBlock(tx, k, h); err != nil {
				return err
			}
			st.mapped += len(h.zbody) - inValue // its chunks; the value is counted
			body, err := decompress(&h)
			if err != nil {
				return err
			}
			out = append(out, fetched{ts: ts, count: h.count, body: body})
		}
	})
	return next, status, err
}

// probe reports whether a matching record exists in the candidate blocks
// from start up to ts to.
func (db *DB) probe(st *queryState, hashes []uint64, start blockKey, to int64, f filter) (bool, error) {
	found := false
	err := db.bolt.View(func(tx *bolt.Tx) error {
		defer func() {
			// All the query read, so its end need not release again.
			releaseMapped(db.bolt, tx)
			st.mapped = 0
		}()
		it := newCandIter(tx, hashes, to)
		for k, v, err := it.seek(start); ; k, v, err = it.next() {
			if err != nil || k == nil {
				return err
			}
			h, err := parseHeader(v)
			if err != nil {
				return err
			}
			if f.none() && h.count > 0 {
				found = true
				return nil
			}
			if h, err = wholeBlock(tx, k, h); err != nil {
				return err
			}
			body, err := decompress(&h)
			if err != nil {
				return err
			}
			if found, err = st.anyMatch(&fetched{ts: keyTs(k), count: h.count, body: body}, f); found || err != nil {
				return err
			}
		}
	})
	return found, err
}

// candIter walks the blocks that may hold matching records in key order:
// all blocks, or those of the party index entries' windows (partyWindow
// blocks of the entry's second from the entry's block on) whose headers
// hold one of the hashes.
type candIter struct {
	blocks *bolt.Bucket
	scan   *bolt.Cursor
	to     int64

	idx    []idxCursor
	hashes []uint64
	win    *bolt.Cursor // blocks of the current window
	inWin  bool
	winEnd blockKey // end (exclusive) of the current window
	lower  blockKey // no block before it is returned
	wk, wv []byte   // the window cursor's current block
}

type idxCursor struct {
	c      *bolt.Cursor
	prefix [8]byte
	key    []byte // block key of the current entry; nil when exhausted
}

func (ic *idxCursor) set(k []byte) {
	if len(k) == 8+blockKeyLen && bytes.Equal(k[:8], ic.prefix[:]) {
		ic.key = k[8:]
	} else {
		ic.key = nil
	}
}

func newCandIter(tx *bolt.Tx, hashes []uint64, to int64) *candIter {
	it := &candIter{blocks: tx.Bucket(bucketBlocks), to: to, hashes: hashes}
	if hashes == nil {
		it.scan = it.blocks.Cursor()
		return it
	}
	party := tx.Bucket(bucketParty)
	it.idx = make([]idxCursor, len(hashes))
	for i, h := range hashes {
		it.idx[i] = idxCursor{c: party.Cursor()}
		binary.BigEndian.PutUint64(it.idx[i].prefix[:], h)
	}
	it.win = it.blocks.Cursor()
	return it
}

// seek positions the iterator at the first candidate ≥ start and returns it
// (nil key when there is none up to it.to).
func (it *candIter) seek(start blockKey) (k, v []byte, err error) {
	if it.scan != nil {
		k, v = it.scan.Seek(start[:])
		return it.bound(skipSpacers(it.scan, k, v))
	}
	// An entry up to partyWindow blocks before start in its second opens a
	// window that may cover start.
	ts, seq := keyTs(start[:]), binary.BigEndian.Uint64(start[8:])
	from := makeBlockKey(ts, seq-min(seq, partyWindow-1))
	for i := range it.idx {
		ic := &it.idx[i]
		k, _ := ic.c.Seek(append(ic.prefix[:], from[:]...))
		ic.set(k)
	}
	it.lower, it.inWin = start, false
	return it.next()
}

func (it *candIter) next() (k, v []byte, err error) {
	if it.scan != nil {
		k, v = it.scan.Next()
		return it.bound(skipSpacers(it.scan, k, v))
	}
	for {
		if it.inWin {
			k, v := it.wk, it.wv
			if k != nil {
				wk, wv := it.win.Next()
				it.wk, it.wv = skipSpacers(it.win, wk, wv)
			}
			// Entries inside the window up to this block extend it.
			for m := it.minEntry(); m != nil && bytes.Compare(m, it.winEnd[:]) < 0 &&
				(k == nil || bytes.Compare(m, k) <= 0); m = it.minEntry() {
				if e := windowEnd(m); bytes.Compare(e[:], it.winEnd[:]) > 0 {
					it.winEnd = e
				}
				it.advance(m)
			}
			if k != nil && bytes.Compare(k, it.winEnd[:]) < 0 {
				if keyTs(k) > it.to {
					return nil, nil, nil
				}
				h, err := parseHeader(v)
				if err != nil {
					return nil, nil, err
				}
				for _, p := range it.hashes {
					if h.hasParty(p) {
						return k, v, nil
					}
				}
				continue
			}
			it.inWin = false
		}
		m := it.minEntry()
		if m == nil || keyTs(m) > it.to {
			return nil, nil, nil
		}
		it.winEnd = windowEnd(m)
		it.advance(m)
		at := m
		if bytes.Compare(at, it.lower[:]) < 0 {
			at = it.lower[:]
		}
		wk, wv := it.win.Seek(at)
		it.wk, it.wv = skipSpacers(it.win, wk, wv)
		it.inWin = true
	}
}

// windowEnd is the end of the window of the entry for block key m.
func windowEnd(m []byte) blockKey {
	return makeBlockKey(keyTs(m), binary.BigEndian.Uint64(m[8:])+partyWindow)
}

// minEntry returns the smallest current block key of the index cursors.
func (it *candIter) minEntry() []byte {
	var k []byte
	for i := range it.idx {
		if key := it.idx[i].key; key != nil && (k == nil || bytes.Compare(key, k) < 0) {
			k = key
		}
	}
	return k
}

// advance moves every index cursor positioned on block key k to its next
// entry.
func (it *candIter) advance(k []byte) {
	var kk blockKey // the cursors' keys change under k
	copy(kk[:], k)
	for i := range it.idx {
		ic := &it.idx[i]
		if ic.key != nil && bytes.Equal(ic.key, kk[:]) {
			nk, _ := ic.c.Next()
			ic.set(nk)
		}
	}
}

func (it *candIter) bound(k, v []byte) ([]byte, []byte, error) {
	if k == nil || keyTs(k) > it.to {
		return nil, nil, nil
	}
	return k, v, nil
}
