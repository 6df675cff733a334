package daemon

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opmond/opmond/schema"
)

const (
	// healthMaxBuckets is how many time buckets one statistics period is
	// split into at most. Per-bucket aggregates instead of per-event samples
	// keep memory bounded whatever the request rate.
	healthMaxBuckets = 600

	// healthMaxServices bounds the number of services tracked. Services stay
	// listed until restart (§5.2), so without a bound a sender inventing
	// service codes could grow the map without limit.
	healthMaxServices = 100_000
)

// Health keeps per-service statistics over a sliding window of
// health-statistics-period-seconds, fed by every stored record (§5).
//
// The window is approximate. Events are grouped into buckets of width
// max(1s, ceil(period/600)) rounded up to whole seconds, aligned to the
// startup time, and an event counts while now < bucketStart+width+period:
// it stays in the window for at least the period and at most one bucket
// width longer. Once period+width has passed without new events, a
// service's counts are exactly 0. Each service keeps only its non-empty
// buckets, at most period/width+2 of them (about 140 bytes each), and an
// idle service holds none.
//
// At most healthMaxServices services are tracked. As services are never
// forgotten before restart, once the limit is reached the records of any
// further service are ignored and counted by DroppedRecords; known
// services keep being updated.
//
// Expired buckets are pruned lazily, by Add for the services it touches
// and by Snapshot for all of them; no goroutine is needed.
type Health struct {
	period time.Duration
	width  time.Duration
	now    func() time.Time
	start  time.Time

	maxServices int // healthMaxServices; tests lower it
	maxLive     int // bound on live buckets per service, caps ring growth

	mu       sync.Mutex
	services map[schema.ServiceID]*serviceHealth
	dropped  uint64
}

// NewHealth returns an empty tracker whose startup timestamp is now().
// now is the clock: the daemon passes time.Now, tests a fake one.
func NewHealth(period time.Duration, now func() time.Time) *Health {
	period = max(period, 0)
	width := healthBucketWidth(period)
	return &Health{
		period:      period,
		width:       width,
		now:         now,
		start:       now(),
		maxServices: healthMaxServices,
		maxLive:     int(period/width) + 2,
		services:    make(map[schema.ServiceID]*serviceHealth),
	}
}

// healthBucketWidth is max(1s, ceil(period/healthMaxBuckets)) in whole seconds.
func healthBucketWidth(period time.Duration) time.Duration {
	per := (period + healthMaxBuckets - 1) / healthMaxBuckets
	secs := (per + time.Second - 1) / time.Second
	return max(secs, 1) * time.Second
}

// Add feeds the records of one successfully stored batch. Only Producer
// records with a valid service id count (§5.1); others are ignored. All
// records of the batch are received at the same instant.
func (h *Health) Add(recs []schema.Record) {
	if len(recs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.elapsed()
	cur := floorDiv(e, h.width)
	minLive := floorDiv(e-h.period, h.width)

	var last *serviceHealth
	var lastID schema.ServiceID
	for i := range recs {
		r := &recs[i]
		if r.Str(schema.FSecurityServerType) != "Producer" {
			continue
		}
		id, ok := r.Service()
		if !ok {
			continue
		}
		// Batches tend to repeat a service; skip the map lookup then.
		s := last
		if s == nil || id != lastID {
			s = h.services[id]
			if s == nil {
				if len(h.services) >= h.maxServices {
					h.dropped++
					continue
				}
				id := cloneServiceID(id)
				s = &serviceHealth{key: id.String()}
				h.services[id] = s
			}
			s.ring.dropBefore(minLive)
			last, lastID = s, id
		}
		s.record(r, cur, h.maxLive)
	}
}

// Snapshot returns the health data at now(), services sorted by
// ServiceID.String(). With a filter, only services whose provider equals
// *filter exactly are returned (a member filter matches member-level
// providers only, §5.4). Services is never nil.
//
// The 12 statistics are set only when SuccessfulCount > 0: otherwise
// RequestDuration is zero and both size groups are nil. With successes, a
// size group is nil when no successful record of the service ever carried
// that size, and zero when such records have all left the window (§5.3).
func (h *Health) Snapshot(filter *schema.ClientID) *schema.HealthData {
	type keyed struct {
		key string
		ev  schema.ServiceEvents
	}
	var list []keyed

	h.mu.Lock()
	e := h.elapsed()
	minLive := floorDiv(e-h.period, h.width)
	for id, s := range h.services {
		s.ring.dropBefore(minLive)
		if filter != nil && !sameClient(id.Provider, *filter) {
			continue
		}
		list = append(list, keyed{ev: s.events(id)})
	}
	h.mu.Unlock()

	// Sorting and formatting keys need no lock.
	for i := range list {
		list[i].key = list[i].ev.Service.String()
	}
	slices.SortFunc(list, func(a, b keyed) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		// A present but empty subsystem prints like a member-level
		// provider; keep the order deterministic anyway.
		return cmp.Compare(boolInt(a.ev.Service.Provider.HasSubsystem), boolInt(b.ev.Service.Provider.HasSubsystem))
	})
	hd := &schema.HealthData{
		MonitoringStartupMs:     h.start.UnixMilli(),
		StatisticsPeriodSeconds: int(h.period / time.Second),
		Services:                make([]schema.ServiceEvents, len(list)),
	}
	for i := range list {
		hd.Services[i] = list[i].ev
	}
	return hd
}

// ServiceCount returns the number of services tracked.
func (h *Health) ServiceCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.services)
}

// DroppedRecords returns how many records were ignored because the limit on
// tracked services had been reached.
func (h *Health) DroppedRecords() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

// elapsed is the time since startup on the injected clock.
func (h *Health) elapsed() time.Duration { return h.now().Sub(h.start) }

// floorDiv is a/b rounded towards minus infinity, so that a clock set
// before startup still maps to ordered buckets.
func floorDiv(a, b time.Duration) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return int64(q)
}

func sameClient(p, f schema.ClientID) bool {
	if p.Instance != f.Instance || p.MemberClass != f.MemberClass || p.MemberCode != f.MemberCode ||
		p.HasSubsystem != f.HasSubsystem {
		return false
	}
	return !f.HasSubsystem || p.Subsystem == f.Subsystem
}

// cloneServiceID copies the strings of a key kept for the daemon's
// lifetime, so it does not pin the buffer of the request it came from.
func cloneServiceID(id schema.ServiceID) schema.ServiceID {
	id.Provider.Instance = strings.Clone(id.Provider.Instance)
	id.Provider.MemberClass = strings.Clone(id.Provider.MemberClass)
	id.Provider.MemberCode = strings.Clone(id.Provider.MemberCode)
	id.Provider.Subsystem = strings.Clone(id.Provider.Subsystem)
	id.Code = strings.Clone(id.Code)
	id.Version = strings.Clone(id.Version)
	return id
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// serviceHealth is the state of one service (§5.2).
type serviceHealth struct {
	lastOK, lastFail int64 // responseOutTs, ms
	hasOK, hasFail   bool
	serviceType      string
	hasType          bool
	everReqSize      bool // some successful record carried requestSize
	everRespSize     bool
	ring             bucketRing
	// Requests since start, for the _total counters of /metrics, and the
	// slash form that labels them (formatted once, not per scrape).
	totalOK, totalFail uint64
	key                string
}

func (s *serviceHealth) record(r *schema.Record, idx int64, maxLive int) {
	if r.Has.Has(schema.FServiceType) {
		if t := r.Str(schema.FServiceType); !s.hasType || s.serviceType != t {
			s.serviceType, s.hasType = strings.Clone(t), true
		}
	} else {
		s.serviceType, s.hasType = "", false
	}
	out := r.Int(schema.FResponseOutTs)
	b := s.ring.bucketFor(idx, maxLive)
	if !r.Bool(schema.FSucceeded) {
		s.lastFail, s.hasFail = out, true
		b.fail++
		s.totalFail++
		return
	}
	s.lastOK, s.hasOK = out, true
	s.totalOK++
	b.dur.add(out - r.Int(schema.FRequestInTs))
	if r.Has.Has(schema.FRequestSize) {
		s.everReqSize = true
		b.req.add(r.Int(schema.FRequestSize))
	}
	if r.Has.Has(schema.FResponseSize) {
		s.everRespSize = true
		b.resp.add(r.Int(schema.FResponseSize))
	}
}

// events merges the live buckets; the caller has pruned expired ones.
func (s *serviceHealth) events(id schema.ServiceID) schema.ServiceEvents {
	ev := schema.ServiceEvents{
		Service:             id,
		LastSuccessfulMs:    s.lastOK,
		HasLastSuccessful:   s.hasOK,
		LastUnsuccessfulMs:  s.lastFail,
		HasLastUnsuccessful: s.hasFail,
		ServiceType:         s.serviceType,
		HasServiceType:      s.hasType,
	}
	var dur, req, resp moments
	var fail int64
	for i := range s.ring.n {
		b := s.ring.at(i)
		fail += b.fail
		dur.merge(&b.dur)
		req.merge(&b.req)
		resp.merge(&b.resp)
	}
	ev.SuccessfulCount = int(dur.n)
	ev.UnsuccessfulCount = int(fail)
	if dur.n == 0 {
		return ev
	}
	ev.RequestDuration = dur.stat()
	if s.everReqSize {
		st := req.stat()
		ev.RequestSize = &st
	}
	if s.everRespSize {
		st := resp.stat()
		ev.ResponseSize = &st
	}
	return ev
}

// healthBucket aggregates the events received in one bucket width.
type healthBucket struct {
	idx  int64 // bucket start = startup + idx*width
	fail int64
	// Every successful record has a duration (requestInTs and responseOutTs
	// are mandatory), so dur.n is also the successful count.
	dur, req, resp moments
}

// moments is a sample set's count, extremes, mean and sum of squared
// deviations (Welford), which merge without loss of accuracy.
type moments struct {
	n        int64
	min, max int64
	mean, m2 float64
}

func (m *moments) add(v int64) {
	if m.n == 0 {
		m.min, m.max = v, v
	} else {
		m.min, m.max = min(m.min, v), max(m.max, v)
	}
	m.n++
	x := float64(v)
	d := x - m.mean
	m.mean += d / float64(m.n)
	m.m2 += d * (x - m.mean)
}

// merge adds o's samples with Chan et al.'s parallel formula.
func (m *moments) merge(o *moments) {
	if o.n == 0 {
		return
	}
	if m.n == 0 {
		*m = *o
		return
	}
	na, nb := float64(m.n), float64(o.n)
	n := na + nb
	d := o.mean - m.mean
	m.mean += d * nb / n
	m.m2 += o.m2 + d*d*na*nb/n
	m.n += o.n
	m.min, m.max = min(m.min, o.min), max(m.max, o.max)
}

// stat is §5.3: sample standard deviation, 0 for n ≤ 1, zeros when empty.
func (m *moments) stat() schema.Stat {
	if m.n == 0 {
		return schema.Stat{}
	}
	st := schema.Stat{Min: m.min, Max: m.max, Avg: m.mean}
	if m.n > 1 {
		st.StdDev = math.Sqrt(max(m.m2, 0) / float64(m.n-1))
	}
	return st
}

// bucketRing holds a service's non-empty buckets in increasing idx order.
type bucketRing struct {
	buf     []healthBucket
	head, n int
}

func (r *bucketRing) at(i int) *healthBucket {
	j := r.head + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return &r.buf[j]
}

// bucketFor returns the bucket for idx, appending one if needed. A clock
// that went backwards maps to the newest bucket, keeping the order; such
// events merely stay a little longer.
func (r *bucketRing) bucketFor(idx int64, maxLive int) *healthBucket {
	if r.n > 0 {
		if b := r.at(r.n - 1); b.idx >= idx {
			return b
		}
	}
	if r.n == len(r.buf) {
		c := max(2*len(r.buf), 4)
		if c > maxLive && maxLive > r.n {
			c = maxLive
		}
		r.resize(c)
	}
	r.n++
	b := r.at(r.n - 1)
	*b = healthBucket{idx: idx}
	return b
}

// dropBefore removes the buckets older than minIdx and gives back memory
// that an idle or slowed-down service no longer needs.
func (r *bucketRing) dropBefore(minIdx int64) {
	for r.n > 0 && r.buf[r.head].idx < minIdx {
		r.head++
		if r.head == len(r.buf) {
			r.head = 0
		}
		r.n--
	}
	switch {
	case r.n == 0:
		r.buf, r.head = nil, 0
	case len(r.buf) > 16 && r.n <= len(r.buf)/4:
		r.resize(len(r.buf) / 2)
	}
}

func (r *bucketRing) resize(c int) {
	nb := make([]healthBucket, c)
	for i := range r.n {
		nb[i] = *r.at(i)
	}
	r.buf, r.head = nb, 0
}
