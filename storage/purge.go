package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Per-transaction limits of Purge, so that a large purge never holds the
// write lock for long.
const (
	purgeBlocks     = 1000
	purgeQuarantine = 10000
)

// Purge deletes records (with their index entries) whose monitoringDataTs < cutoff,
// and quarantined records with receivedAt < cutoff, in bounded transactions
// so writers are not blocked for long. Returns records deleted.
func (db *DB) Purge(ctx context.Context, cutoff int64) (records int, quarantined int, err error) {
	if err := db.begin(); err != nil {
		return 0, 0, err
	}
	defer db.end()
	if cutoff <= 0 {
		return 0, 0, nil
	}
	end := makeBlockKey(cutoff, 0)
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return records, quarantined, err
		}
		var n int
		err := db.update(func(tx *bolt.Tx) error {
			var err error
			n, done, err = purgeBlockBatch(tx, end[:])
			return err
		})
		if err != nil {
			return records, quarantined, fmt.Errorf("purge: %w", err)
		}
		records += n
	}
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return records, quarantined, err
		}
		var n int
		err := db.update(func(tx *bolt.Tx) error {
			keys := firstKeysBefore(tx.Bucket(bucketQuarantine), end[:], purgeQuarantine)
			done = len(keys) < purgeQuarantine
			n = len(keys)
			if err := deleteKeys(tx.Bucket(bucketQuarantine), keys); err != nil {
				return err
			}
			return addCounter(tx.Bucket(bucketMeta), metaQuarantined, -int64(n))
		})
		if err != nil {
			return records, quarantined, fmt.Errorf("purge quarantine: %w", err)
		}
		quarantined += n
	}
	return records, quarantined, nil
}

// purgeBlockBatch deletes up to purgeBlocks blocks with keys before end and
// their index entries. done reports that no such block is left.
func purgeBlockBatch(tx *bolt.Tx, end []byte) (records int, done bool, err error) {
	blocks, party, reqmin := tx.Bucket(bucketBlocks), tx.Bucket(bucketParty), tx.Bucket(bucketReqMin)
	keys := firstKeysBefore(blocks, end, purgeBlocks)
	var ik [8 + blockKeyLen]byte
	del := func(b *bolt.Bucket) func(uint64) error {
		return func(p uint64) error {
			binary.BigEndian.PutUint64(ik[:8], p)
			return b.Delete(ik[:])
		}
	}
	for _, k := range keys {
		h, err := parseHeader(blocks.Get(k))
		if err != nil {
			return 0, false, fmt.Errorf("block %x: %w", k, err)
		}
		copy(ik[8:], k)
		if err := h.eachParty(del(party)); err != nil {
			return 0, false, err
		}
		if err := h.eachMinute(del(reqmin)); err != nil {
			return 0, false, err
		}
		records += h.count
	}
	if err := deleteKeys(blocks, keys); err != nil {
		return 0, false, err
	}
	meta := tx.Bucket(bucketMeta)
	if err := addCounter(meta, metaBlocks, -int64(len(keys))); err != nil {
		return 0, false, err
	}
	if err := addCounter(meta, metaRecords, -int64(records)); err != nil {
		return 0, false, err
	}
	return records, len(keys) < purgeBlocks, nil
}

// firstKeysBefore returns copies of up to n first keys of b that sort before end.
func firstKeysBefore(b *bolt.Bucket, end []byte, n int) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < n && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

func deleteKeys(b *bolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
