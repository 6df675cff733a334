package storage

import "time"

// Store requests come first. A query that compresses or filters many
// records not sealed yet keeps a core busy for hundreds of milliseconds; on
// a small host that core is taken from the store path, whose latency the
// security servers wait on. While Store commits keep coming, a query sleeps
// after every paceSlice of work as long as it worked, so that it takes at
// most half a core from them; without store traffic it runs at full speed.
const (
	paceSlice    = 2 * time.Millisecond
	paceMaxSleep = 20 * time.Millisecond
	// paceStoreGap: store traffic is a Store commit within this time.
	paceStoreGap = 100 * time.Millisecond
)

// pacer paces one query.
type pacer struct {
	db    *DB
	since time.Time // start of the work not paced yet
}

func (db *DB) newPacer() *pacer {
	return &pacer{db: db, since: time.Now()}
}

// pace is called between pieces of a query's work, outside read
// transactions.
func (p *pacer) pace() {
	now := time.Now()
	work := now.Sub(p.since)
	if work < paceSlice {
		return
	}
	if now.Sub(time.Unix(0, p.db.lastStore.Load())) < paceStoreGap {
		d := min(work, paceMaxSleep)
		time.Sleep(d)
		now = time.Now()
		p.db.paced.Add(int64(now.Sub(p.since) - work))
	}
	p.since = now
}

// PacedTime is how long queries have slept so far to let store requests
// through (pacer).
func (db *DB) PacedTime() time.Duration {
	return time.Duration(db.paced.Load())
}
