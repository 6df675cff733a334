package daemon

import "github.com/opmond/opmond/schema"

// serviceCounts is what /metrics shows of one service: the counts of the
// period, the counts since start and the last request times.
type serviceCounts struct {
	service            string // slash form
	ok, fail           int64  // in the period
	totalOK, totalFail uint64 // since start
	ev                 schema.ServiceEvents
}

// counts returns every tracked service's counts at now(), in no order. It
// merges only the counts of each bucket, not the duration and size
// statistics that Snapshot computes.
func (h *Health) counts() []serviceCounts {
	h.mu.Lock()
	e := h.elapsed()
	minLive := floorDiv(e-h.period, h.width)
	out := make([]serviceCounts, 0, len(h.services))
	for id, s := range h.services {
		s.ring.dropBefore(minLive)
		c := serviceCounts{service: s.key, totalOK: s.totalOK, totalFail: s.totalFail, ev: schema.ServiceEvents{
			Service:          id,
			LastSuccessfulMs: s.lastOK, HasLastSuccessful: s.hasOK,
			LastUnsuccessfulMs: s.lastFail, HasLastUnsuccessful: s.hasFail,
		}}
		for i := range s.ring.n {
			b := s.ring.at(i)
			c.ok += b.dur.n
			c.fail += b.fail
		}
		out = append(out, c)
	}
	h.mu.Unlock()
	return out
}
