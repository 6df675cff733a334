package storage

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Spacers keep a commit from rewriting the blocks of the commits before it.
//
// Store appends its blocks at the end of the blocks bucket, so into its
// last leaf, and bbolt writes a changed leaf whole. A leaf of ~9 KB blocks
// never holds fewer than two of them, and one of at most four is never
// split, so the last leaf kept three or four blocks of earlier commits, and
// every commit wrote them again: 290 bytes of pages per record of 82 bytes
// of blocks, and 850 bytes of disk writes per record once the kernel rounds
// the scattered 1 KiB pages up to its own 4 KiB ones (BenchmarkStore).
//
// After its blocks, a Store commit puts four spacers: keys one byte longer
// than the last block key (so right after it), with empty values. bbolt
// splits a leaf from its left, at least two keys and as many more as fit a
// page each, and leaves the rest when four keys or fewer remain; so the
// last leaf now ends as the last three or four spacers, and the next
// commit, which deletes spacers 2 to 4 of the one before, writes into a
// leaf of a few bytes. Spacer 1 may share a leaf with the last block; it
// stays (33 bytes of a page per commit) rather than make its deletion
// rewrite that block. Measured with BenchmarkStore/group (4 writers):
// pages written per record 290 → 147 bytes, disk writes 850 → 320 bytes;
// with one block per commit (TestSpacersSpareOlderBlocks) 480 → 203 bytes
// of pages. Leaves of a single block waste more of their last page (2 B
// per record of pages in use, BenchmarkDiskUsage), and the file ends up
// smaller all the same, as fewer rewritten runs are freed and reused
// (opmonbench: 97.4 → 95.5 B per record on disk).
//
// Every reader of the blocks bucket skips them (isSpacer), purge deletes
// them with their second, and the spacers of a daemon's last commit are
// found and deleted by the first commit after the next Open.
const spacersPerCommit = 4

type spacerKey [blockKeyLen + 1]byte

// isSpacer reports whether a key of the blocks bucket is a spacer.
func isSpacer(k []byte) bool { return len(k) == blockKeyLen+1 }

// skipSpacers returns k, v, or the first block after them when k is a
// spacer (nil at the end).
func skipSpacers(c *bolt.Cursor, k, v []byte) ([]byte, []byte) {
	for k != nil && isSpacer(k) {
		k, v = c.Next()
	}
	return k, v
}

// spacers is the Store path's memory of the spacers to delete at the next
// Store commit; guarded by the party index memory's lock (writeGroup).
type spacers struct {
	last    blockKey // the last Store block of the commit being applied
	has     bool
	old     []spacerKey // written by the last commit, to delete
	pending []spacerKey // written by the commit being applied
}

// note records a Store block written by the commit being applied.
func (s *spacers) note(k blockKey) {
	if !s.has || bytes.Compare(k[:], s.last[:]) > 0 {
		s.last, s.has = k, true
	}
}

// apply deletes the last commit's spacers and puts this one's, when it
// wrote Store blocks.
func (s *spacers) apply(blocks *bolt.Bucket) error {
	if !s.has {
		return nil
	}
	for _, k := range s.old {
		if err := blocks.Delete(k[:]); err != nil {
			return err
		}
	}
	s.pending = s.pending[:0]
	for i := range byte(spacersPerCommit) {
		var k spacerKey
		copy(k[:], s.last[:])
		k[blockKeyLen] = i + 1
		if err := blocks.Put(k[:], empty); err != nil {
			return err
		}
		if i > 0 {
			s.pending = append(s.pending, k)
		}
	}
	return nil
}

// settle keeps what the commit wrote if it committed.
func (s *spacers) settle(committed bool) {
	if committed && s.has {
		s.old = append(s.old[:0], s.pending...)
	}
	s.has = false
}

// findSpacers returns the spacers at the end of the blocks bucket but the
// first of their commit: those the next Store commit deletes.
func findSpacers(tx *bolt.Tx) []spacerKey {
	var out []spacerKey
	c := tx.Bucket(bucketBlocks).Cursor()
	for k, _ := c.Last(); k != nil && isSpacer(k); k, _ = c.Prev() {
		if k[blockKeyLen] > 1 {
			out = append(out, spacerKey(k))
		}
	}
	return out
}
