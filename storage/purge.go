package storage

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A purge is done in batches, each in a write transaction of the store
// committer (see store.go): a batch shares its commit, and the fsync, with
// the stores queued at the same time. Each batch deletes for at most
// purgeTxWork, and at most purgeTxKeys blocks or quarantined records, so
// the stores sharing its transaction, and those queued behind it, wait for
// little more than their own commit. Between two batches the purge rests
// purgeRestFactor times as long as the last one took, queueing and commit
// included (at most maxPurgeRest), so that however much is purged it takes
// at most about a quarter of the commits and of a core.
const (
	purgeTxWork     = 2 * time.Millisecond
	purgeTxKeys     = 1000
	purgeRestFactor = 3
	maxPurgeRest    = 50 * time.Millisecond
)

// purgeTxHook, when set by a test, is called after each committed purge
// batch with what it deleted and how long its deleting took.
var purgeTxHook func(records, quarantined int, work time.Duration)

// Purge deletes the records whose monitoringDataTs < cutoff, with their
// index entries, and the quarantined records whose receivedAt < cutoff, in
// many short batches (see purgeTxWork). The pages it frees are reused by
// later writes, so a database under a fixed retention stops growing; the
// file itself never shrinks (Compact does that, offline). It returns the
// records and quarantined records deleted, also when ctx ends it early.
func (db *DB) Purge(ctx context.Context, cutoff int64) (records int, quarantined int, err error) {
	if err := db.begin(); err != nil {
		return 0, 0, err
	}
	defer db.end()
	if cutoff <= 0 {
		return 0, 0, nil
	}
	end := makeBlockKey(cutoff, 0)
	for {
		if err := ctx.Err(); err != nil {
			return records, quarantined, err
		}
		start := time.Now()
		b := &purgeBatch{end: end[:], memo: &db.memo}
		var err error
		if db.perCall {
			err = db.update(b.run)
		} else {
			err = db.write(ctx, &writeReq{purge: b})
		}
		if err != nil {
			return records, quarantined, fmt.Errorf("purge: %w", err)
		}
		records += b.records
		quarantined += b.quarantined
		if purgeTxHook != nil {
			purgeTxHook(b.records, b.quarantined, b.work)
		}
		if b.done {
			return records, quarantined, nil
		}
		rest := time.NewTimer(min(purgeRestFactor*time.Since(start), maxPurgeRest))
		select {
		case <-ctx.Done():
			rest.Stop()
		case <-rest.C:
		}
	}
}

// purgeFailure is a purge batch's error inside a shared transaction.
type purgeFailure struct{ err error }

func (f purgeFailure) Error() string { return f.err.Error() }

// purgeBatch is the work of one purge transaction. Its results are valid
// once the transaction has committed.
type purgeBatch struct {
	end                  []byte // the first block key to keep
	deadline             time.Time
	work                 time.Duration
	keys                 int // blocks and quarantined records deleted
	blocks               int
	records, quarantined int
	done                 bool // nothing before end is left
	memo                 *intervalMemo
	minutes              []uint64 // of the blocks deleted, for memo
}

// full reports that the batch has done its share; every batch deletes at
// least one key, so a purge always progresses.
func (p *purgeBatch) full() bool {
	if p.keys == 0 {
		return false
	}
	// A clock read (tens of ns) per key, each of which costs tens of µs, so
	// a batch ends as soon as it is late, also after the thread was
	// descheduled on a busy machine.
	return p.keys >= purgeTxKeys || time.Now().After(p.deadline)
}

// run deletes blocks (with their index entries) before p.end, oldest
// first, then quarantined records before p.end, until the batch is full,
// and updates the Stats counters.
func (p *purgeBatch) run(tx *bolt.Tx) error {
	start := time.Now()
	p.deadline = start.Add(purgeTxWork)
	defer func() { p.work = time.Since(start) }()
	if err := p.delete(tx); err != nil {
		return err
	}
	p.memo.invalidateOnCommit(tx, p.minutes)
	meta := tx.Bucket(bucketMeta)
	if err := addCounter(meta, metaBlocks, -int64(p.blocks)); err != nil {
		return err
	}
	if err := addCounter(meta, metaQuarantined, -int64(p.quarantined)); err != nil {
		return err
	}
	return addCounter(meta, metaRecords, -int64(p.records))
}

func (p *purgeBatch) delete(tx *bolt.Tx) error {
	blocks, party, reqmin := tx.Bucket(bucketBlocks), tx.Bucket(bucketParty), tx.Bucket(bucketReqMin)
	sealed := tx.Bucket(bucketSealed)
	// Seek past the key just deleted rather than First or Next: First walks
	// every leaf emptied so far in the transaction (the tree is rebalanced
	// only at commit), and bbolt's Next after Delete skips a key.
	var at blockKey
	c := blocks.Cursor()
	for k, v := c.Seek(at[:]); k != nil && bytes.Compare(k, p.end) < 0; k, v = c.Seek(at[:]) {
		if p.full() {
			return nil
		}
		if isSpacer(k) {
			// Seeking its block's key after the deletion finds what follows.
			copy(at[:], k)
			if err := c.Delete(); err != nil {
				return err
			}
			p.keys++
			continue
		}
		h, err := parseHeader(v)
		if err != nil {
			return fmt.Errorf("block %x: %w", k, err)
		}
		copy(at[:], k)
		if err := deleteEntries(party, reqmin, k, &h, func(m uint64) { p.minutes = append(p.minutes, m) }); err != nil {
			return err
		}
		for i := range h.chunks {
			ck := chunkKey(blockKey(k), i)
			if err := sealed.Delete(ck[:]); err != nil {
				return err
			}
		}
		p.keys += h.chunks
		if err := c.Delete(); err != nil {
			return err
		}
		p.keys++
		p.blocks++
		p.records += h.count
	}
	at = blockKey{}
	c = tx.Bucket(bucketQuarantine).Cursor()
	for k, _ := c.Seek(at[:]); k != nil && bytes.Compare(k, p.end) < 0; k, _ = c.Seek(at[:]) {
		if p.full() {
			return nil
		}
		copy(at[:], k)
		if err := c.Delete(); err != nil {
			return err
		}
		p.keys++
		p.quarantined++
	}
	p.done = true
	return nil
}
