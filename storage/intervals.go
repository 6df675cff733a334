package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// IntervalQuery asks for traffic counts by requestInTs (opmon-protocol §6).
type IntervalQuery struct {
	FromMs, ToMs, StepMs int64
	Type                 string // "", "Client" or "Producer"
	Member               *schema.ClientID
	Service              *schema.ServiceID
}

// Interval is one bucket of an Intervals answer.
type Interval struct {
	StartMs          int64
	Success, Failure int64
}

// maxIntervals bounds the buckets of one answer.
const maxIntervals = 1 << 20

// intervalBatch is how many blocks one read transaction of Intervals reads.
const intervalBatch = 256

// Intervals counts records by requestInTs (ms) in buckets of stepMs aligned to
// the epoch, from the bucket containing fromMs to the bucket containing toMs
// (half-open [start,start+step)), empty buckets included; filters per §6 of
// opmon-protocol (Type "" / "Client" / "Producer"; Member: MatchesClient or
// MatchesProvider; Service: provider + service code equal, plus version when
// HasVersion — a member-level provider (no subsystem) must match too, fixing
// upstream). Records without succeeded are not counted. Steps of whole
// minutes are answered from the memo where it has the minutes (see
// intervalmemo.go), with the same counts.
func (db *DB) Intervals(ctx context.Context, q IntervalQuery) ([]Interval, error) {
	if err := db.begin(); err != nil {
		return nil, err
	}
	defer db.end()
	switch {
	case q.StepMs <= 0:
		return nil, fmt.Errorf("intervals: step %d ms is not positive", q.StepMs)
	case q.ToMs < q.FromMs:
		return nil, fmt.Errorf("intervals: to %d is before from %d", q.ToMs, q.FromMs)
	case q.Type != "" && q.Type != "Client" && q.Type != "Producer":
		return nil, fmt.Errorf("intervals: unknown security server type %q", q.Type)
	}
	first, last := floorDiv(q.FromMs, q.StepMs), floorDiv(q.ToMs, q.StepMs)
	if uint64(last-first) >= maxIntervals {
		return nil, fmt.Errorf("intervals: more than %d intervals", maxIntervals)
	}
	out := make([]Interval, last-first+1)
	for i := range out {
		out[i].StartMs = (first + int64(i)) * q.StepMs
	}

	// Block keys are read before the blocks: sealing must not move records
	// in between.
	db.readGate()
	defer db.readDone()
	if db.memo.covers(q, first, last) {
		err := db.memo.intervals(ctx, db, q, first, out)
		if err != nil {
			return nil, fmt.Errorf("intervals: %w", err)
		}
		return out, nil
	}
	if err := db.scanIntervals(ctx, q, first, out); err != nil {
		return nil, fmt.Errorf("intervals: %w", err)
	}
	return out, nil
}

// scanIntervals counts into out, buckets first.. of q, reading every block
// that holds a minute of them.
func (db *DB) scanIntervals(ctx context.Context, q IntervalQuery, first int64, out []Interval) error {
	last := first + int64(len(out)) - 1
	// The minutes that can hold requestInTs values of the buckets.
	lastMs := int64(math.MaxInt64)
	if end := out[len(out)-1].StartMs; end <= math.MaxInt64-q.StepMs+1 {
		lastMs = end + q.StepMs - 1
	}
	keys, err := db.minuteBlocks([][2]uint64{{minuteKey(out[0].StartMs), minuteKey(lastMs)}})
	if err != nil {
		return err
	}
	return db.countBlocks(ctx, q, keys, func(reqIn int64, ok bool) {
		b := floorDiv(reqIn, q.StepMs)
		if b < first || b > last {
			return
		}
		if ok {
			out[b-first].Success++
		} else {
			out[b-first].Failure++
		}
	})
}

// countBlocks calls count with the requestInTs and succeeded of every record
// of the blocks keys that q's filter matches and that has both.
func (db *DB) countBlocks(ctx context.Context, q IntervalQuery, keys []blockKey, count func(reqIn int64, ok bool)) error {
	// Blocks whose header lacks the party need not be decompressed.
	var want []uint64
	switch {
	case q.Service != nil:
		want = []uint64{partyHash(roleProvider, q.Service.Provider)}
	case q.Member != nil:
		want = []uint64{partyHash(roleClient, *q.Member), partyHash(roleProvider, *q.Member)}
	}
	match := intervalFilter(q)
	st := queryStatePool.Get().(*queryState)
	defer queryStatePool.Put(st)
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := keys[:min(len(keys), intervalBatch)]
		keys = keys[len(batch):]
		err := db.bolt.View(func(tx *bolt.Tx) error {
			blocks := tx.Bucket(bucketBlocks)
			for _, k := range batch {
				v := blocks.Get(k[:])
				if v == nil {
					continue // purged meanwhile
				}
				h, err := parseHeader(v)
				if err != nil {
					return err
				}
				if want != nil && !slices.ContainsFunc(want, h.hasParty) {
					continue
				}
				if h, err = wholeBlock(tx, k[:], h); err != nil {
					return err
				}
				body, err := decompress(&h)
				if err != nil {
					return err
				}
				recs, err := st.decode(&fetched{count: h.count, body: body})
				if err != nil {
					return err
				}
				for i := range recs {
					r := &recs[i]
					if r.Has.Has(schema.FRequestInTs) && r.Has.Has(schema.FSucceeded) && match(r) {
						count(r.Int(schema.FRequestInTs), r.Bool(schema.FSucceeded))
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// minuteBlocks returns the distinct keys of blocks holding a requestInTs in
// one of the ranges of minute keys [from,to] (ascending, disjoint), in key
// order, read in one transaction.
func (db *DB) minuteBlocks(ranges [][2]uint64) ([]blockKey, error) {
	var keys []blockKey
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReqMin).Cursor()
		var start [8]byte
		for _, r := range ranges {
			binary.BigEndian.PutUint64(start[:], r[0])
			for k, _ := c.Seek(start[:]); k != nil && binary.BigEndian.Uint64(k) <= r[1]; k, _ = c.Next() {
				keys = append(keys, blockKey(k[8:]))
			}
		}
		return nil
	})
	slices.SortFunc(keys, func(a, b blockKey) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(keys), err
}

func intervalFilter(q IntervalQuery) func(*schema.Record) bool {
	return func(r *schema.Record) bool {
		if q.Type != "" && (!r.Has.Has(schema.FSecurityServerType) || r.Str(schema.FSecurityServerType) != q.Type) {
			return false
		}
		if q.Member != nil && !r.MatchesClient(*q.Member) && !r.MatchesProvider(*q.Member) {
			return false
		}
		if s := q.Service; s != nil {
			if !r.MatchesProvider(s.Provider) || !r.Has.Has(schema.FServiceCode) || r.Str(schema.FServiceCode) != s.Code {
				return false
			}
			if s.HasVersion && (!r.Has.Has(schema.FServiceVersion) || r.Str(schema.FServiceVersion) != s.Version) {
				return false
			}
		}
		return true
	}
}
