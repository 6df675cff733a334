package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
)

// The interval memo keeps per-minute counts of Intervals answers, so that
// the dashboard and the security server UI, which ask for the same windows
// every few seconds, read only the minutes written since: a 24-hour window
// otherwise decompresses every block of the day.
//
// Every bucket of a query whose step is a whole number of minutes is a
// union of whole minutes, so the memo holds, per filter (type, member,
// service), minute → success and failure counts. A query sums the minutes
// it finds and counts the others from their blocks (the reqmin index names
// them), then adds them to the memo.
//
// Exactness: every commit that adds or deletes blocks drops the minutes of
// their headers from the memo of every filter, after the commit and before
// the writer is told it is done (bbolt's OnCommit). A query that read an
// older snapshot must not add its counts afterwards, so each query notes
// the memo's epoch when it starts; an invalidation during a query records
// its epoch per minute, and the query adds no minute invalidated after it
// started.
const (
	memoChunkBits    = 8 // 256 minutes (about 4 hours) per chunk
	memoChunkMinutes = 1 << memoChunkBits
	// memoMaxChunks bounds the memory: 16 bytes per minute, 8 MiB in all.
	memoMaxChunks = 2048
	// memoMaxKeys bounds the filters remembered; the least recently used
	// one is dropped for a new one.
	memoMaxKeys = 64
	// memoMaxMinutes is the widest window that uses the memo (182 days);
	// wider ones are counted from the blocks alone.
	memoMaxMinutes = memoMaxChunks / 2 * memoChunkMinutes
)

// memoCountedHook, when set by a test, is called by a query after it has
// counted the minutes the memo lacks and before it adds them.
var memoCountedHook func()

type minuteCount struct{ success, failure int64 }

// memoChunk holds the counts of memoChunkMinutes consecutive minutes of one
// filter; have marks the minutes known.
type memoChunk struct {
	used uint64 // tick of the last query that read or filled it
	have [memoChunkMinutes / 64]uint64
	n    [memoChunkMinutes]minuteCount
}

func (c *memoChunk) has(off int64) bool { return c.have[off/64]&(1<<(off%64)) != 0 }

type memoFilter struct {
	used   uint64
	chunks map[int64]*memoChunk // by minute >> memoChunkBits
}

// intervalMemo is the memo of a DB; its zero value is empty and ready.
type intervalMemo struct {
	mu      sync.Mutex
	tick    uint64 // counts queries, for least-recently-used eviction
	epoch   uint64 // counts invalidations
	filters map[string]*memoFilter
	nChunks int
	// active counts the queries in flight by the epoch they started at;
	// inval has the epoch of the last invalidation of a minute, kept only
	// while a query that started before it runs.
	active map[uint64]int
	inval  map[int64]uint64
	// counted is the number of minutes queries counted from blocks (tests).
	counted int64
}

// covers reports whether buckets first..last of q use the memo: steps of
// whole minutes, windows of at most memoMaxMinutes, and times far from
// overflowing.
func (m *intervalMemo) covers(q IntervalQuery, first, last int64) bool {
	if q.StepMs%60000 != 0 || q.FromMs < -1<<62 || q.ToMs > 1<<62 {
		return false
	}
	k := q.StepMs / 60000
	return k <= memoMaxMinutes && last-first+1 <= memoMaxMinutes/k
}

// intervals counts into out, buckets first.. of q (covers is true), from
// the memo and the blocks of the minutes it lacks.
func (m *intervalMemo) intervals(ctx context.Context, db *DB, q IntervalQuery, first int64, out []Interval) error {
	k := q.StepMs / 60000
	m0, n := first*k, int64(len(out))*k
	key := filterKey(q)
	cnt := make([]minuteCount, n)
	miss := make([]bool, n)
	e0, ranges := m.start(key, m0, cnt, miss)
	var err error
	if len(ranges) > 0 {
		var keys []blockKey
		if keys, err = db.minuteBlocks(ranges); err == nil {
			err = db.countBlocks(ctx, q, keys, func(reqIn int64, ok bool) {
				i := floorDiv(reqIn, 60000) - m0
				if i < 0 || i >= n || !miss[i] {
					return
				}
				if ok {
					cnt[i].success++
				} else {
					cnt[i].failure++
				}
			})
		}
	}
	if memoCountedHook != nil && len(ranges) > 0 {
		memoCountedHook()
	}
	m.end(key, e0, m0, cnt, miss, len(ranges) > 0 && err == nil)
	if err != nil {
		return err
	}
	for i, c := range cnt {
		b := &out[int64(i)/k]
		b.Success += c.success
		b.Failure += c.failure
	}
	return nil
}

// start registers a query of filter key over minutes m0..m0+len(cnt)-1 and
// returns its epoch and the ranges of minute keys the memo lacks; it fills
// cnt with the counts it has and marks the others in miss.
func (m *intervalMemo) start(key string, m0 int64, cnt []minuteCount, miss []bool) (uint64, [][2]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filters == nil {
		m.filters = map[string]*memoFilter{}
		m.active = map[uint64]int{}
		m.inval = map[int64]uint64{}
	}
	m.tick++
	m.active[m.epoch]++
	f := m.filters[key]
	if f != nil {
		f.used = m.tick
	}
	n := int64(len(cnt))
	for i := int64(0); i < n; {
		mi := m0 + i
		off := mi & (memoChunkMinutes - 1)
		span := min(memoChunkMinutes-off, n-i)
		var c *memoChunk
		if f != nil {
			c = f.chunks[mi>>memoChunkBits]
		}
		if c != nil {
			c.used = m.tick
		}
		for j := range span {
			if c != nil && c.has(off+j) {
				cnt[i+j] = c.n[off+j]
			} else {
				miss[i+j] = true
			}
		}
		i += span
	}
	var ranges [][2]uint64
	for i := int64(0); i < n; i++ {
		if !miss[i] {
			continue
		}
		j := i
		for j+1 < n && miss[j+1] {
			j++
		}
		ranges = append(ranges, [2]uint64{uint64(m0+i) ^ 1<<63, uint64(m0+j) ^ 1<<63})
		m.counted += j - i + 1
		i = j
	}
	return m.epoch, ranges
}

// end unregisters a query started at epoch e0 and, when add, puts the
// minutes it counted (miss) into the memo, except those invalidated since.
func (m *intervalMemo) end(key string, e0 uint64, m0 int64, cnt []minuteCount, miss []bool, add bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if add {
		f := m.filter(key)
		var c *memoChunk
		ci := int64(-1 << 63)
		for i, ok := range miss {
			if !ok {
				continue
			}
			mi := m0 + int64(i)
			if ie, found := m.inval[mi]; found && ie > e0 {
				continue
			}
			if mi>>memoChunkBits != ci || c == nil {
				ci = mi >> memoChunkBits
				if c = f.chunks[ci]; c == nil {
					c = &memoChunk{}
					f.chunks[ci] = c
					m.nChunks++
				}
				c.used = m.tick
			}
			off := mi & (memoChunkMinutes - 1)
			c.n[off] = cnt[i]
			c.have[off/64] |= 1 << (off % 64)
		}
		m.evict()
	}
	if m.active[e0]--; m.active[e0] == 0 {
		delete(m.active, e0)
	}
	if len(m.active) == 0 {
		clear(m.inval)
		return
	}
	oldest := uint64(1<<64 - 1)
	for e := range m.active {
		oldest = min(oldest, e)
	}
	for mi, e := range m.inval {
		if e <= oldest {
			delete(m.inval, mi)
		}
	}
}

// filter returns the memo of key, dropping the least recently used one to
// make room. m.mu is held.
func (m *intervalMemo) filter(key string) *memoFilter {
	if f := m.filters[key]; f != nil {
		return f
	}
	if len(m.filters) >= memoMaxKeys {
		var lru string
		var lruF *memoFilter
		for k, f := range m.filters {
			if lruF == nil || f.used < lruF.used {
				lru, lruF = k, f
			}
		}
		m.nChunks -= len(lruF.chunks)
		delete(m.filters, lru)
	}
	f := &memoFilter{used: m.tick, chunks: map[int64]*memoChunk{}}
	m.filters[key] = f
	return f
}

// evict drops the least recently used chunks, down to 7/8 of the bound so
// that evictions are rare. m.mu is held.
func (m *intervalMemo) evict() {
	if m.nChunks <= memoMaxChunks {
		return
	}
	type ref struct {
		f    *memoFilter
		idx  int64
		used uint64
	}
	all := make([]ref, 0, m.nChunks)
	for _, f := range m.filters {
		for idx, c := range f.chunks {
			all = append(all, ref{f, idx, c.used})
		}
	}
	slices.SortFunc(all, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.used, b.used), cmp.Compare(a.idx, b.idx))
	})
	for _, r := range all[:m.nChunks-memoMaxChunks*7/8] {
		delete(r.f.chunks, r.idx)
	}
	m.nChunks = memoMaxChunks * 7 / 8
}

// invalidateOnCommit drops the minutes (reqmin minute keys) from the memo
// of every filter once tx has committed.
func (m *intervalMemo) invalidateOnCommit(tx *bolt.Tx, minuteKeys []uint64) {
	if m == nil || len(minuteKeys) == 0 {
		return
	}
	slices.Sort(minuteKeys)
	minuteKeys = slices.Compact(minuteKeys)
	tx.OnCommit(func() { m.invalidate(minuteKeys) })
}

func (m *intervalMemo) invalidate(minuteKeys []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.filters) == 0 && len(m.active) == 0 {
		return // a query that starts now reads this commit
	}
	m.epoch++
	for _, k := range minuteKeys {
		mi := int64(k ^ 1<<63)
		if len(m.active) > 0 {
			m.inval[mi] = m.epoch
		}
		off := mi & (memoChunkMinutes - 1)
		for _, f := range m.filters {
			if c := f.chunks[mi>>memoChunkBits]; c != nil {
				c.have[off/64] &^= 1 << (off % 64)
			}
		}
	}
}

// reset empties the memo (benchmarks measure a first call with it).
func (m *intervalMemo) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.filters)
	m.nChunks = 0
}

// indexMinutes returns the minute keys of reqmin index keys.
func indexMinutes(keys []indexKey) []uint64 {
	out := make([]uint64, len(keys))
	for i := range keys {
		out[i] = binary.BigEndian.Uint64(keys[i][:8])
	}
	return out
}

// filterKey is the memo's name of q's filter.
func filterKey(q IntervalQuery) string {
	b := append([]byte(nil), q.Type...)
	if q.Member != nil {
		b = appendClientKey(append(b, "\x00m"...), *q.Member)
	}
	if s := q.Service; s != nil {
		b = appendClientKey(append(b, "\x00s"...), s.Provider)
		b = strconv.AppendQuote(b, s.Code)
		if s.HasVersion {
			b = strconv.AppendQuote(append(b, 'v'), s.Version)
		}
	}
	return string(b)
}

func appendClientKey(b []byte, id schema.ClientID) []byte {
	for _, s := range []string{id.Instance, id.MemberClass, id.MemberCode} {
		b = strconv.AppendQuote(b, s)
	}
	if id.HasSubsystem {
		b = strconv.AppendQuote(append(b, '/'), id.Subsystem)
	}
	return append(b, ';')
}
