package storage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// maxGroup bounds the calls written in one group commit.
const maxGroup = 128

// releaseEvery is how often the committer releases the mapped pages its
// commits have read (see releaseMapped). The kernel maps 64 KiB around each
// page a commit faults in, and a commit reads a score of index pages: at
// 100 ms the file's pages took a median 22 MB of RSS under the soak's load,
// at 20 ms 17 MB. A release with nothing to release costs 50 µs on a 1 GB
// file.
const releaseEvery = 20 * time.Millisecond

// pendingBlock is an encoded block waiting to be written.
type pendingBlock struct {
	ts      int64 // Import only; Store blocks get the commit-time second
	val     []byte
	records int
}

// writeReq is one Store or Import call handed to the committer. Callers
// encode and compress in their own goroutine; the committer only writes.
type writeReq struct {
	stamp  bool // Store: blocks and quarantine get ts from the clock at commit
	blocks []pendingBlock
	quar   [][]byte
	ts     int64       // set by the committer when stamp
	purge  *purgeBatch // Purge: delete old records in the same transaction
	seal   *sealOp     // the sealer's (seal.go)
	done   chan error
}

// Store durably appends recs (monitoringDataTs in the records is ignored and
// replaced by the commit-time second, which is returned) and the quarantined
// records, in one fsync'd transaction. Either may be empty; an empty call
// still returns the ts without writing. The ReceivedAt of q is ignored and
// set to the same second.
func (db *DB) Store(ctx context.Context, recs []schema.Record, q []Quarantined) (ts int64, err error) {
	if err := db.begin(); err != nil {
		return 0, err
	}
	defer db.end()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(recs) == 0 && len(q) == 0 {
		return db.now().Unix(), nil
	}
	req := &writeReq{stamp: true}
	for len(recs) > 0 {
		n := min(len(recs), maxBlockRecords)
		req.blocks = append(req.blocks, pendingBlock{val: encodeBlock(recs[:n]), records: n})
		recs = recs[n:]
	}
	for _, x := range q {
		req.quar = append(req.quar, quarantineValue(x))
	}
	if err := db.write(ctx, req); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return req.ts, nil
}

// Import durably stores records keeping each record's monitoringDataTs
// (required: FMonitoringDataTs must be in Has, else error). Records sharing
// a monitoringDataTs keep their relative order.
func (db *DB) Import(ctx context.Context, recs []schema.Record) error {
	if err := db.begin(); err != nil {
		return err
	}
	defer db.end()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		if !r.Has.Has(schema.FMonitoringDataTs) {
			return fmt.Errorf("import: record %d has no monitoringDataTs", i)
		}
		if r.Int(schema.FMonitoringDataTs) < 0 {
			return fmt.Errorf("import: record %d has negative monitoringDataTs %d", i, r.Int(schema.FMonitoringDataTs))
		}
	}
	if len(recs) == 0 {
		return nil
	}
	byTs := func(a, b schema.Record) int {
		return cmp.Compare(a.Int(schema.FMonitoringDataTs), b.Int(schema.FMonitoringDataTs))
	}
	if !slices.IsSortedFunc(recs, byTs) {
		recs = slices.Clone(recs)
		slices.SortStableFunc(recs, byTs)
	}
	req := &writeReq{}
	var chunks [][]schema.Record
	for len(recs) > 0 {
		ts := recs[0].Int(schema.FMonitoringDataTs)
		n := 1
		for n < len(recs) && n < maxBlockRecords && recs[n].Int(schema.FMonitoringDataTs) == ts {
			n++
		}
		chunks = append(chunks, recs[:n])
		req.blocks = append(req.blocks, pendingBlock{ts: ts, records: n})
		recs = recs[n:]
	}
	encodeParallel(chunks, req.blocks)
	if err := db.write(ctx, req); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// encodeParallel encodes large imports on all cores.
func encodeParallel(chunks [][]schema.Record, out []pendingBlock) {
	workers := min(runtime.GOMAXPROCS(0), len(chunks))
	if workers <= 1 {
		for i, c := range chunks {
			out[i].val = encodeBlock(c)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				out[i].val = encodeBlock(chunks[i])
			}
		})
	}
	for i := range chunks {
		next <- i
	}
	close(next)
	wg.Wait()
}

// write hands req to the committer and waits for its commit. ctx is obeyed
// only until the committer has taken the request.
func (db *DB) write(ctx context.Context, req *writeReq) error {
	if db.perCall {
		return db.writeGroup([]*writeReq{req})
	}
	req.done = make(chan error, 1)
	select {
	case db.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

// committer writes the calls that queued up while the previous commit was
// being fsync'd in one transaction, so that concurrent writers share fsyncs.
func (db *DB) committer() {
	defer close(db.committerDone)
	group := make([]*writeReq, 0, maxGroup)
	var released time.Time
	for {
		select {
		case r := <-db.reqs:
			group = append(group[:0], r)
		case <-db.stop:
			return
		}
	drain:
		for len(group) < maxGroup {
			select {
			case r := <-db.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		err := db.writeGroup(group)
		var pf purgeFailure
		if errors.As(err, &pf) {
			// A failed purge batch must not fail the stores it shared the
			// transaction with: they are written again without it.
			i := slices.IndexFunc(group, func(r *writeReq) bool { return r.purge != nil })
			group[i].done <- pf.err
			group = slices.Delete(group, i, i+1)
			err = nil
			if len(group) > 0 {
				err = db.writeGroup(group)
			}
		}
		for _, r := range group {
			r.done <- err
		}
		clear(group)
		if time.Since(released) >= releaseEvery {
			// Commits read the pages they append to through the mapping.
			released = time.Now()
			db.releaseAll()
		}
	}
}

var empty = []byte{}

// indexKey is a party or reqmin index entry: 8-byte prefix || block key.
type indexKey [8 + blockKeyLen]byte

// writeGroup writes reqs in one transaction. The party index's memory of the
// entries it wrote is kept only if the transaction commits.
func (db *DB) writeGroup(reqs []*writeReq) error {
	db.pidx.mu.Lock()
	defer db.pidx.mu.Unlock()
	err := db.update(func(tx *bolt.Tx) error { return db.apply(tx, reqs) })
	db.pidx.settle(err == nil)
	db.spc.settle(err == nil)
	return err
}

// partyWindow is how far apart, in block sequence numbers within one
// second, the party index entries of a party may be: a stored block gets an
// entry for a party only when the party's last entry in that second is
// partyWindow or more blocks back. A query for a party scans the blocks of
// each entry's window and checks their headers. Busy seconds, with many
// blocks that all hold the same few dozen parties, so need about 1/32 of
// the entries of one per block and party (14 bytes per record measured on
// the shared generator's data); a second with a single block is unchanged.
const partyWindow = 32

// maxPartyMemory bounds the parties remembered for the current second; past
// it the memory starts afresh, which only writes more entries.
const maxPartyMemory = 1 << 16

// partyIndexMemory remembers, for the second of the latest stored block,
// the sequence number of each party's last index entry. Only Store blocks
// use it: their second is the clock's, so purge (which removes whole old
// seconds) never removes an entry remembered here. Import blocks always get
// entries.
type partyIndexMemory struct {
	mu      sync.Mutex
	ts      int64
	last    map[uint64]uint64
	pending map[uint64]uint64 // written by the transaction in progress
	pendTs  int64
	reset   bool // the transaction in progress started a new second
}

// needEntry reports whether party p needs an entry for block (ts, seq) and
// if so notes it as written by the transaction in progress.
func (m *partyIndexMemory) needEntry(p uint64, ts int64, seq uint64) bool {
	if m.pending == nil {
		m.pending = make(map[uint64]uint64)
	}
	if len(m.pending) > 0 && m.pendTs != ts || len(m.pending) >= maxPartyMemory {
		// A new second (or too many parties) within one transaction.
		clear(m.pending)
		m.reset = true
	}
	if len(m.pending) == 0 && ts != m.ts {
		m.reset = true
	}
	m.pendTs = ts
	last, ok := m.pending[p]
	if !ok && !m.reset {
		last, ok = m.last[p]
	}
	if ok && seq-last < partyWindow {
		return false
	}
	m.pending[p] = seq
	return true
}

// settle keeps the notes of the transaction in progress if it committed.
func (m *partyIndexMemory) settle(committed bool) {
	if committed && len(m.pending) > 0 {
		if m.reset || m.last == nil || len(m.last) >= maxPartyMemory {
			m.last = make(map[uint64]uint64, len(m.pending))
		}
		for p, s := range m.pending {
			m.last[p] = s
		}
		m.ts = m.pendTs
	}
	clear(m.pending)
	m.reset = false
}

// apply writes the blocks, index entries and quarantined records of reqs,
// then deletes what a purge batch among them has to.
func (db *DB) apply(tx *bolt.Tx, reqs []*writeReq) error {
	blocks, party, reqmin := tx.Bucket(bucketBlocks), tx.Bucket(bucketParty), tx.Bucket(bucketReqMin)
	quar, meta := tx.Bucket(bucketQuarantine), tx.Bucket(bucketMeta)
	// All keys append per bucket, party or minute: full pages waste nothing.
	blocks.FillPercent, party.FillPercent, reqmin.FillPercent, quar.FillPercent = 1, 1, 1, 1

	var nBlocks, nRecords, nQuar int64
	// Index entries are put in key order: bbolt inserts into a node's
	// sorted slice before splitting it at commit, so keys put out of order
	// cost a copy of the node's tail each, quadratic in a large import
	// (minutes for 200,000 records; a second sorted).
	var partyKeys, minKeys, sealMinKeys []indexKey
	var purge *purgeBatch
	for _, r := range reqs {
		if r.purge != nil {
			purge = r.purge
			continue
		}
		if r.seal != nil {
			// Sealing moves records between blocks but changes no count:
			// its minute entries leave the interval memo as it is.
			d, err := r.seal.apply(tx, &db.pidx, &partyKeys, &sealMinKeys)
			if err != nil {
				return err
			}
			nBlocks += d
			continue
		}
		if r.stamp {
			r.ts = db.now().Unix()
			if r.ts < 0 {
				return fmt.Errorf("clock before 1970: %d", r.ts)
			}
			if len(r.blocks) > 0 {
				db.lastStore.Store(time.Now().UnixNano())
			}
		} else if len(r.blocks) > 0 {
			db.noteImport(r.blocks[0].ts) // blocks are in ts order
		}
		for _, b := range r.blocks {
			ts := b.ts
			if r.stamp {
				ts = r.ts
			}
			seq, err := blocks.NextSequence()
			if err != nil {
				return err
			}
			key := makeBlockKey(ts, seq)
			if err := blocks.Put(key[:], b.val); err != nil {
				return err
			}
			if r.stamp {
				db.spc.note(key)
			}
			h, err := parseHeader(b.val)
			if err != nil {
				return err
			}
			addParty := addEntry(&partyKeys, key)
			if r.stamp {
				// Only the first block of a party in each window of a
				// second gets an entry (see partyWindow).
				all := addParty
				addParty = func(p uint64) error {
					if !db.pidx.needEntry(p, ts, seq) {
						return nil
					}
					return all(p)
				}
			}
			if err := h.eachParty(addParty); err != nil {
				return err
			}
			if err := h.eachMinute(addEntry(&minKeys, key)); err != nil {
				return err
			}
			nBlocks++
			nRecords += int64(b.records)
		}
		for _, v := range r.quar {
			seq, err := quar.NextSequence()
			if err != nil {
				return err
			}
			key := makeBlockKey(r.ts, seq)
			if err := quar.Put(key[:], v); err != nil {
				return err
			}
		}
		nQuar += int64(len(r.quar))
	}
	if err := db.spc.apply(blocks); err != nil {
		return err
	}
	for _, ix := range []struct {
		b    *bolt.Bucket
		keys []indexKey
	}{{party, partyKeys}, {reqmin, minKeys}, {reqmin, sealMinKeys}} {
		slices.SortFunc(ix.keys, func(a, b indexKey) int { return bytes.Compare(a[:], b[:]) })
		for i := range ix.keys {
			if err := ix.b.Put(ix.keys[i][:], empty); err != nil {
				return err
			}
		}
	}
	db.memo.invalidateOnCommit(tx, indexMinutes(minKeys))
	if err := addCounter(meta, metaBlocks, nBlocks); err != nil {
		return err
	}
	if err := addCounter(meta, metaQuarantined, nQuar); err != nil {
		return err
	}
	if err := addCounter(meta, metaRecords, nRecords); err != nil {
		return err
	}
	if purge != nil {
		if err := purge.run(tx); err != nil {
			return purgeFailure{err}
		}
	}
	return nil
}
