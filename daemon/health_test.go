package daemon

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

// healthStart is the startup time of §13.5.
var healthStart = time.UnixMilli(1760000012345)

// fakeClock is a clock safe for concurrent use that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// set moves the clock to startup+d.
func (c *fakeClock) set(d time.Duration) { c.ns.Store(healthStart.Add(d).UnixNano()) }

type recOpt func(*schema.Record)

func sizes(req, resp int64) recOpt {
	return func(r *schema.Record) {
		r.SetInt(schema.FRequestSize, req)
		r.SetInt(schema.FResponseSize, resp)
	}
}

func reqSize(v int64) recOpt  { return func(r *schema.Record) { r.SetInt(schema.FRequestSize, v) } }
func respSize(v int64) recOpt { return func(r *schema.Record) { r.SetInt(schema.FResponseSize, v) } }

func svcType(s string) recOpt { return func(r *schema.Record) { r.SetStr(schema.FServiceType, s) } }

func serverType(s string) recOpt {
	return func(r *schema.Record) { r.SetStr(schema.FSecurityServerType, s) }
}

func without(f schema.Field) recOpt { return func(r *schema.Record) { r.Clear(f) } }

// rec builds a Producer record of service svc (slash form) with requestInTs
// in and responseOutTs out.
func rec(t testing.TB, svc string, ok bool, in, out int64, opts ...recOpt) schema.Record {
	t.Helper()
	id, err := schema.ParseServiceID(svc)
	if err != nil {
		t.Fatal(err)
	}
	var r schema.Record
	r.SetStr(schema.FSecurityServerInternalIP, "10.20.30.40")
	r.SetStr(schema.FSecurityServerType, "Producer")
	r.SetInt(schema.FRequestInTs, in)
	r.SetInt(schema.FResponseOutTs, out)
	r.SetBool(schema.FSucceeded, ok)
	r.SetStr(schema.FServiceXRoadInstance, id.Provider.Instance)
	r.SetStr(schema.FServiceMemberClass, id.Provider.MemberClass)
	r.SetStr(schema.FServiceMemberCode, id.Provider.MemberCode)
	if id.Provider.HasSubsystem {
		r.SetStr(schema.FServiceSubsystemCode, id.Provider.Subsystem)
	}
	r.SetStr(schema.FServiceCode, id.Code)
	if id.HasVersion {
		r.SetStr(schema.FServiceVersion, id.Version)
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func mustClient(t testing.TB, s string) *schema.ClientID {
	t.Helper()
	c, err := schema.ParseClientID(s)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func serviceNames(hd *schema.HealthData) []string {
	var names []string
	for _, s := range hd.Services {
		names = append(names, s.Service.String())
	}
	return names
}

func findService(t *testing.T, hd *schema.HealthData, svc string) schema.ServiceEvents {
	t.Helper()
	for _, s := range hd.Services {
		if s.Service.String() == svc {
			return s
		}
	}
	t.Fatalf("service %s not in %v", svc, serviceNames(hd))
	return schema.ServiceEvents{}
}

func statClose(a, b schema.Stat, tol float64) bool {
	return a.Min == b.Min && a.Max == b.Max && closeRel(a.Avg, b.Avg, tol) && closeRel(a.StdDev, b.StdDev, tol)
}

func closeRel(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*max(1, math.Abs(a), math.Abs(b))
}

func TestHealthWorkedExample(t *testing.T) {
	const (
		products = "DEV/COM/1234/Catalog/products"
		prices   = "DEV/COM/1234/Catalog/getPrices/v1"
	)
	// §13.5: three successful products calls, two failed getPrices calls,
	// with Client records of the same services that must not count.
	batches := func(t *testing.T) [][]schema.Record {
		return [][]schema.Record{
			{
				rec(t, products, true, 1760004010002, 1760004010093, sizes(388, 5120), svcType("OPENAPI3")),
				rec(t, products, true, 1760004010002, 1760004010093, sizes(1, 1), svcType("WSDL"), serverType("Client")),
				rec(t, prices, false, 1760004200000, 1760004200010, svcType("WSDL")),
			},
			{
				rec(t, products, true, 1760004300000, 1760004300106, sizes(388, 5150), svcType("OPENAPI3")),
				rec(t, prices, false, 1760004655100, 1760004655210, reqSize(1398), svcType("WSDL")),
				rec(t, prices, true, 1760004655100, 1760004655210, svcType("WSDL"), serverType("Client")),
			},
			{
				rec(t, products, true, 1760004609972, 1760004610093, sizes(400, 5180), svcType("OPENAPI3")),
			},
		}
	}
	for _, tc := range []struct {
		name string
		gap  time.Duration // clock advance between batches
		tol  float64       // 0: exact
	}{
		{"one bucket", 0, 0},
		{"one bucket apart", time.Second, 1e-12},
		{"minutes apart", 150*time.Second + 300*time.Millisecond, 1e-12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(healthStart)
			h := NewHealth(600*time.Second, clk.now)
			clk.advance(4000 * time.Second)
			for _, b := range batches(t) {
				h.Add(b)
				clk.advance(tc.gap)
			}
			for _, filter := range []*schema.ClientID{nil, mustClient(t, "DEV/COM/1234/Catalog")} {
				hd := h.Snapshot(filter)
				if hd.MonitoringStartupMs != 1760000012345 || hd.StatisticsPeriodSeconds != 600 {
					t.Errorf("header = %d, %d", hd.MonitoringStartupMs, hd.StatisticsPeriodSeconds)
				}
				if got := serviceNames(hd); fmt.Sprint(got) != fmt.Sprint([]string{prices, products}) {
					t.Fatalf("services = %v", got)
				}
				p := hd.Services[0]
				want := schema.ServiceEvents{
					Service:            p.Service,
					LastUnsuccessfulMs: 1760004655210, HasLastUnsuccessful: true,
					ServiceType: "WSDL", HasServiceType: true,
					SuccessfulCount: 0, UnsuccessfulCount: 2,
				}
				if p != want {
					t.Errorf("getPrices = %+v, want %+v", p, want)
				}
				s := hd.Services[1]
				if !s.HasLastSuccessful || s.LastSuccessfulMs != 1760004610093 || s.HasLastUnsuccessful ||
					s.ServiceType != "OPENAPI3" || !s.HasServiceType || s.SuccessfulCount != 3 || s.UnsuccessfulCount != 0 {
					t.Errorf("products = %+v", s)
				}
				if s.RequestSize == nil || s.ResponseSize == nil {
					t.Fatalf("products size groups missing: %+v", s)
				}
				for _, c := range []struct {
					what      string
					got, want schema.Stat
				}{
					{"duration", s.RequestDuration, schema.Stat{Min: 91, Max: 121, Avg: 106.0, StdDev: 15.0}},
					{"request size", *s.RequestSize, schema.Stat{Min: 388, Max: 400, Avg: 392.0, StdDev: 6.928203230275509}},
					{"response size", *s.ResponseSize, schema.Stat{Min: 5120, Max: 5180, Avg: 5150.0, StdDev: 30.0}},
				} {
					if !statClose(c.got, c.want, tc.tol) {
						t.Errorf("%s = %+v, want %+v", c.what, c.got, c.want)
					}
				}
			}
		})
	}
}

func TestHealthIgnoredRecords(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	for _, tc := range []struct {
		name string
		opts []recOpt
	}{
		{"client record", []recOpt{serverType("Client")}},
		{"no server type", []recOpt{without(schema.FSecurityServerType)}},
		{"no service instance", []recOpt{without(schema.FServiceXRoadInstance)}},
		{"no member class", []recOpt{without(schema.FServiceMemberClass)}},
		{"no member code", []recOpt{without(schema.FServiceMemberCode)}},
		{"no service code", []recOpt{without(schema.FServiceCode)}},
		{"blank member code", []recOpt{func(r *schema.Record) { r.SetStr(schema.FServiceMemberCode, " ") }}},
		{"blank service code", []recOpt{func(r *schema.Record) { r.SetStr(schema.FServiceCode, "") }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(healthStart)
			h := NewHealth(600*time.Second, clk.now)
			h.Add([]schema.Record{
				rec(t, svc, true, 1000, 1100, tc.opts...),
				rec(t, svc, false, 1000, 1100, tc.opts...),
			})
			if n := h.ServiceCount(); n != 0 {
				t.Errorf("ServiceCount = %d", n)
			}
			if hd := h.Snapshot(nil); hd.Services == nil || len(hd.Services) != 0 {
				t.Errorf("Services = %#v, want empty", hd.Services)
			}
		})
	}
}

func TestHealthServiceKey(t *testing.T) {
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	svcs := []string{
		"DEV/GOV/5678/WeatherService/getWeather",
		"DEV/GOV/5678/WeatherService/getWeather/v2",
		"DEV/GOV/5678//getWeather",
		"DEV/GOV/5678/Other/getWeather",
	}
	var batch []schema.Record
	for i, s := range svcs {
		for range i + 1 {
			r := rec(t, s, true, 0, 10)
			// REST method and path are not part of the key.
			r.SetStr(schema.FRestMethod, fmt.Sprint("GET", i))
			r.SetStr(schema.FRestPath, fmt.Sprint("/p", i))
			batch = append(batch, r)
		}
	}
	h.Add(batch)
	if n := h.ServiceCount(); n != len(svcs) {
		t.Fatalf("ServiceCount = %d, want %d", n, len(svcs))
	}
	hd := h.Snapshot(nil)
	for i, s := range svcs {
		if got := findService(t, hd, s).SuccessfulCount; got != i+1 {
			t.Errorf("%s: count %d, want %d", s, got, i+1)
		}
	}
	want := "[DEV/GOV/5678//getWeather DEV/GOV/5678/Other/getWeather DEV/GOV/5678/WeatherService/getWeather DEV/GOV/5678/WeatherService/getWeather/v2]"
	if got := fmt.Sprint(serviceNames(hd)); got != want {
		t.Errorf("order = %s", got)
	}
}

func TestHealthProcessingOrder(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	for _, tc := range []struct {
		name       string
		batches    [][]schema.Record
		ok, fail   int64 // 0: absent
		stype      string
		hasType    bool
		okN, failN int
	}{
		{
			name: "later record with older timestamps wins",
			batches: [][]schema.Record{{
				rec(t, svc, true, 1900, 2000, svcType("REST")),
				rec(t, svc, true, 900, 1000, svcType("REST")),
				rec(t, svc, false, 4900, 5000, svcType("REST")),
				rec(t, svc, false, 2900, 3000, svcType("REST")),
			}},
			ok: 1000, fail: 3000, stype: "REST", hasType: true, okN: 2, failN: 2,
		},
		{
			name: "across batches",
			batches: [][]schema.Record{
				{rec(t, svc, true, 8000, 9000, svcType("WSDL"))},
				{rec(t, svc, true, 100, 200, svcType("OPENAPI3"))},
			},
			ok: 200, stype: "OPENAPI3", hasType: true, okN: 2,
		},
		{
			name: "service type of the last record, absent",
			batches: [][]schema.Record{{
				rec(t, svc, true, 100, 200, svcType("WSDL")),
				rec(t, svc, false, 100, 300),
			}},
			ok: 200, fail: 300, okN: 1, failN: 1,
		},
		{
			name: "ignored records do not change the state",
			batches: [][]schema.Record{{
				rec(t, svc, true, 100, 200, svcType("WSDL")),
				rec(t, svc, true, 100, 999, serverType("Client")),
				rec(t, svc, false, 100, 999, serverType("Client")),
			}},
			ok: 200, stype: "WSDL", hasType: true, okN: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(healthStart)
			h := NewHealth(600*time.Second, clk.now)
			for _, b := range tc.batches {
				h.Add(b)
				clk.advance(1500 * time.Millisecond)
			}
			s := findService(t, h.Snapshot(nil), svc)
			if s.HasLastSuccessful != (tc.ok != 0) || s.LastSuccessfulMs != tc.ok {
				t.Errorf("last successful = %v %d, want %d", s.HasLastSuccessful, s.LastSuccessfulMs, tc.ok)
			}
			if s.HasLastUnsuccessful != (tc.fail != 0) || s.LastUnsuccessfulMs != tc.fail {
				t.Errorf("last unsuccessful = %v %d, want %d", s.HasLastUnsuccessful, s.LastUnsuccessfulMs, tc.fail)
			}
			if s.HasServiceType != tc.hasType || s.ServiceType != tc.stype {
				t.Errorf("service type = %v %q, want %v %q", s.HasServiceType, s.ServiceType, tc.hasType, tc.stype)
			}
			if s.SuccessfulCount != tc.okN || s.UnsuccessfulCount != tc.failN {
				t.Errorf("counts = %d/%d, want %d/%d", s.SuccessfulCount, s.UnsuccessfulCount, tc.okN, tc.failN)
			}
		})
	}
}

func TestHealthBucketWidth(t *testing.T) {
	for _, tc := range []struct {
		period, width time.Duration
	}{
		{0, time.Second},
		{100 * time.Millisecond, time.Second},
		{60 * time.Second, time.Second},
		{600 * time.Second, time.Second},
		{601 * time.Second, 2 * time.Second},
		{1000 * time.Second, 2 * time.Second},
		{1200 * time.Second, 2 * time.Second},
		{3600 * time.Second, 6 * time.Second},
		{86400 * time.Second, 144 * time.Second},
	} {
		if got := healthBucketWidth(tc.period); got != tc.width {
			t.Errorf("healthBucketWidth(%v) = %v, want %v", tc.period, got, tc.width)
		}
		if n := tc.period / tc.width; n > healthMaxBuckets {
			t.Errorf("period %v: %d buckets", tc.period, n)
		}
	}
}

func TestHealthWindowExpiry(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	for _, tc := range []struct {
		name   string
		period time.Duration
		at     time.Duration // since startup
	}{
		{"default period, bucket start", 600 * time.Second, 10 * time.Second},
		{"default period, bucket end", 600 * time.Second, 10*time.Second + 999*time.Millisecond},
		{"two-second buckets", 1000 * time.Second, 3*time.Second + 500*time.Millisecond},
		{"six-second buckets", 3600 * time.Second, 100 * time.Second},
		{"short period", 5 * time.Second, 7 * time.Second},
		{"sub-second period", 300 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(healthStart)
			h := NewHealth(tc.period, clk.now)
			width := healthBucketWidth(tc.period)
			clk.set(tc.at)
			h.Add([]schema.Record{
				rec(t, svc, true, 1000, 1050, sizes(10, 20), svcType("REST")),
				rec(t, svc, false, 2000, 2100, svcType("REST")),
			})
			check := func(when string, wantOK, wantFail int) {
				t.Helper()
				s := findService(t, h.Snapshot(nil), svc)
				if s.SuccessfulCount != wantOK || s.UnsuccessfulCount != wantFail {
					t.Errorf("%s: counts %d/%d, want %d/%d", when, s.SuccessfulCount, s.UnsuccessfulCount, wantOK, wantFail)
				}
				if !s.HasLastSuccessful || s.LastSuccessfulMs != 1050 || !s.HasLastUnsuccessful || s.LastUnsuccessfulMs != 2100 ||
					!s.HasServiceType || s.ServiceType != "REST" {
					t.Errorf("%s: timestamps or type lost: %+v", when, s)
				}
				if wantOK == 0 && (s.RequestDuration != schema.Stat{} || s.RequestSize != nil || s.ResponseSize != nil) {
					t.Errorf("%s: statistics present: %+v", when, s)
				}
				if wantOK > 0 && (s.RequestDuration != schema.Stat{Min: 50, Max: 50, Avg: 50} || s.RequestSize == nil || s.ResponseSize == nil) {
					t.Errorf("%s: statistics wrong: %+v", when, s)
				}
			}
			check("at once", 1, 1)
			// The event is in the window for at least the period ...
			clk.set(tc.at + tc.period - time.Nanosecond)
			check("just before period", 1, 1)
			// ... and until its bucket's end plus the period, at most one
			// bucket width longer.
			bucketStart := time.Duration(floorDiv(tc.at, width)) * width
			clk.set(bucketStart + width + tc.period - time.Nanosecond)
			check("just before bucket end plus period", 1, 1)
			clk.set(bucketStart + width + tc.period)
			check("at bucket end plus period", 0, 0)
			clk.set(tc.at + tc.period + width)
			check("after period+width", 0, 0)
			clk.advance(24 * time.Hour)
			check("a day later", 0, 0)
			if n := h.ServiceCount(); n != 1 {
				t.Errorf("ServiceCount = %d", n)
			}
		})
	}
}

func TestHealthPartialExpiry(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	add := func(at time.Duration, recs ...schema.Record) {
		clk.set(at)
		h.Add(recs)
	}
	add(500*time.Millisecond, rec(t, svc, true, 0, 10, reqSize(100)))
	add(5*time.Second+900*time.Millisecond, rec(t, svc, false, 0, 20))
	add(10*time.Second+200*time.Millisecond, rec(t, svc, true, 0, 30, respSize(7)), rec(t, svc, true, 0, 50, respSize(9)))

	for _, tc := range []struct {
		at             time.Duration
		ok, fail       int
		dur            schema.Stat
		reqNil, respNl bool
		req, resp      schema.Stat
	}{
		{at: 600*time.Second + 999*time.Millisecond, ok: 3, fail: 1,
			dur: schema.Stat{Min: 10, Max: 50, Avg: 30, StdDev: 20},
			req: schema.Stat{Min: 100, Max: 100, Avg: 100}, resp: schema.Stat{Min: 7, Max: 9, Avg: 8, StdDev: math.Sqrt2}},
		// The first bucket has gone: its request size is outside the window,
		// so the request size group is zero, not absent.
		{at: 601 * time.Second, ok: 2, fail: 1,
			dur:  schema.Stat{Min: 30, Max: 50, Avg: 40, StdDev: math.Sqrt(200)},
			resp: schema.Stat{Min: 7, Max: 9, Avg: 8, StdDev: math.Sqrt2}},
		{at: 605*time.Second + 999*time.Millisecond, ok: 2, fail: 1,
			dur:  schema.Stat{Min: 30, Max: 50, Avg: 40, StdDev: math.Sqrt(200)},
			resp: schema.Stat{Min: 7, Max: 9, Avg: 8, StdDev: math.Sqrt2}},
		{at: 606 * time.Second, ok: 2, fail: 0,
			dur:  schema.Stat{Min: 30, Max: 50, Avg: 40, StdDev: math.Sqrt(200)},
			resp: schema.Stat{Min: 7, Max: 9, Avg: 8, StdDev: math.Sqrt2}},
		{at: 610*time.Second + 999*time.Millisecond, ok: 2,
			dur:  schema.Stat{Min: 30, Max: 50, Avg: 40, StdDev: math.Sqrt(200)},
			resp: schema.Stat{Min: 7, Max: 9, Avg: 8, StdDev: math.Sqrt2}},
		{at: 611 * time.Second, reqNil: true, respNl: true},
	} {
		t.Run(tc.at.String(), func(t *testing.T) {
			clk.set(tc.at)
			s := findService(t, h.Snapshot(nil), svc)
			if s.SuccessfulCount != tc.ok || s.UnsuccessfulCount != tc.fail {
				t.Fatalf("counts %d/%d, want %d/%d", s.SuccessfulCount, s.UnsuccessfulCount, tc.ok, tc.fail)
			}
			if !statClose(s.RequestDuration, tc.dur, 1e-12) {
				t.Errorf("duration %+v, want %+v", s.RequestDuration, tc.dur)
			}
			if (s.RequestSize == nil) != tc.reqNil || s.RequestSize != nil && !statClose(*s.RequestSize, tc.req, 1e-12) {
				t.Errorf("request size %+v, want %+v (nil %v)", s.RequestSize, tc.req, tc.reqNil)
			}
			if (s.ResponseSize == nil) != tc.respNl || s.ResponseSize != nil && !statClose(*s.ResponseSize, tc.resp, 1e-12) {
				t.Errorf("response size %+v, want %+v (nil %v)", s.ResponseSize, tc.resp, tc.respNl)
			}
		})
	}
}

func TestHealthSizeGroups(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	zero := &schema.Stat{}
	for _, tc := range []struct {
		name      string
		old, last []schema.Record // old is added 700 s before last
		req, resp *schema.Stat
	}{
		{
			name: "never carried",
			last: []schema.Record{rec(t, svc, true, 0, 5)},
		},
		{
			name: "only failed records carried sizes",
			old:  []schema.Record{rec(t, svc, false, 0, 5, sizes(1, 2))},
			last: []schema.Record{rec(t, svc, true, 0, 5), rec(t, svc, false, 0, 5, sizes(1, 2))},
		},
		{
			name: "in window",
			last: []schema.Record{rec(t, svc, true, 0, 5, sizes(10, 20)), rec(t, svc, true, 0, 5)},
			req:  &schema.Stat{Min: 10, Max: 10, Avg: 10}, resp: &schema.Stat{Min: 20, Max: 20, Avg: 20},
		},
		{
			name: "only outside the window",
			old:  []schema.Record{rec(t, svc, true, 0, 5, sizes(10, 20))},
			last: []schema.Record{rec(t, svc, true, 0, 5)},
			req:  zero, resp: zero,
		},
		{
			name: "request size only",
			old:  []schema.Record{rec(t, svc, true, 0, 5, reqSize(10))},
			last: []schema.Record{rec(t, svc, true, 0, 5, reqSize(30))},
			req:  &schema.Stat{Min: 30, Max: 30, Avg: 30},
		},
		{
			name: "no success in window",
			old:  []schema.Record{rec(t, svc, true, 0, 5, sizes(10, 20))},
			last: []schema.Record{rec(t, svc, false, 0, 5, sizes(10, 20))},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(healthStart)
			h := NewHealth(600*time.Second, clk.now)
			h.Add(tc.old)
			clk.advance(700 * time.Second)
			h.Add(tc.last)
			s := findService(t, h.Snapshot(nil), svc)
			for _, g := range []struct {
				what      string
				got, want *schema.Stat
			}{{"request", s.RequestSize, tc.req}, {"response", s.ResponseSize, tc.resp}} {
				if (g.got == nil) != (g.want == nil) || g.got != nil && *g.got != *g.want {
					t.Errorf("%s size = %+v, want %+v", g.what, g.got, g.want)
				}
			}
		})
	}
}

func TestHealthFilter(t *testing.T) {
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	svcs := []string{
		"DEV/COM/1234//memberService",
		"DEV/COM/1234/Catalog/products",
		"DEV/COM/1234/Catalog/getPrices/v1",
		"DEV/COM/1234/Other/products",
		"DEV/GOV/1234/Catalog/products",
		"TEST/COM/1234/Catalog/products",
		"DEV/COM/12345/Catalog/products",
	}
	var batch []schema.Record
	for _, s := range svcs {
		batch = append(batch, rec(t, s, true, 0, 1))
	}
	h.Add(batch)
	for _, tc := range []struct {
		filter string // "": nil
		want   string
	}{
		{"", fmt.Sprint([]string{svcs[0], svcs[2], svcs[1], svcs[3], svcs[6], svcs[4], svcs[5]})},
		{"DEV/COM/1234", fmt.Sprint([]string{svcs[0]})},
		{"DEV/COM/1234/Catalog", fmt.Sprint([]string{svcs[2], svcs[1]})},
		{"DEV/COM/1234/Other", fmt.Sprint([]string{svcs[3]})},
		{"DEV/GOV/1234/Catalog", fmt.Sprint([]string{svcs[4]})},
		{"DEV/COM/1234/Unknown", "[]"},
		{"DEV/COM/999", "[]"},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			var f *schema.ClientID
			if tc.filter != "" {
				f = mustClient(t, tc.filter)
			}
			hd := h.Snapshot(f)
			if hd.Services == nil {
				t.Errorf("Services is nil")
			}
			if got := fmt.Sprint(serviceNames(hd)); got != tc.want {
				t.Errorf("services = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHealthServiceLimit(t *testing.T) {
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	h.maxServices = 2
	a, b, c := "DEV/COM/1/S/a", "DEV/COM/1/S/b", "DEV/COM/1/S/c"
	h.Add([]schema.Record{rec(t, a, true, 0, 1), rec(t, c, true, 0, 1), rec(t, c, false, 0, 1), rec(t, b, true, 0, 1)})
	h.Add([]schema.Record{rec(t, b, true, 0, 1), rec(t, a, false, 0, 1)})
	if n := h.ServiceCount(); n != 2 {
		t.Errorf("ServiceCount = %d, want 2", n)
	}
	if n := h.DroppedRecords(); n != 2 {
		t.Errorf("DroppedRecords = %d, want 2", n)
	}
	hd := h.Snapshot(nil)
	if got := fmt.Sprint(serviceNames(hd)); got != fmt.Sprint([]string{a, c}) {
		t.Fatalf("services = %s", got)
	}
	if s := hd.Services[0]; s.SuccessfulCount != 1 || s.UnsuccessfulCount != 1 {
		t.Errorf("%s counts %d/%d", a, s.SuccessfulCount, s.UnsuccessfulCount)
	}
	if s := hd.Services[1]; s.SuccessfulCount != 1 || s.UnsuccessfulCount != 1 {
		t.Errorf("%s counts %d/%d", c, s.SuccessfulCount, s.UnsuccessfulCount)
	}
	h.Add([]schema.Record{rec(t, b, true, 0, 1), rec(t, b, true, 0, 1)})
	if n := h.DroppedRecords(); n != 4 {
		t.Errorf("DroppedRecords = %d, want 4", n)
	}
}

// TestHealthMemoryBounded checks that a busy service keeps at most
// period/width+2 buckets and that an idle one gives its buckets back.
func TestHealthMemoryBounded(t *testing.T) {
	const svc = "DEV/COM/1234/Catalog/products"
	clk := newFakeClock(healthStart)
	h := NewHealth(60*time.Second, clk.now)
	batch := []schema.Record{rec(t, svc, true, 0, 1, sizes(1, 2)), rec(t, svc, false, 0, 1)}
	var id schema.ServiceID
	for i := range 20000 {
		h.Add(batch)
		clk.advance(300 * time.Millisecond)
		if i == 0 {
			id, _ = batch[0].Service()
		}
		r := &h.services[id].ring
		if r.n > h.maxLive || len(r.buf) > h.maxLive {
			t.Fatalf("step %d: %d buckets in %d slots, bound %d", i, r.n, len(r.buf), h.maxLive)
		}
	}
	if s := h.Snapshot(nil).Services[0]; s.SuccessfulCount < 200 || s.SuccessfulCount > 204 {
		t.Errorf("SuccessfulCount = %d, want about 60 s of 1 per 300 ms", s.SuccessfulCount)
	}
	clk.advance(61 * time.Second)
	h.Snapshot(nil)
	if r := &h.services[id].ring; r.n != 0 || r.buf != nil {
		t.Errorf("idle service keeps %d buckets in %d slots", r.n, len(r.buf))
	}
}

// TestHealthRandom compares the tracker with statistics computed naively
// from the events sent, under the documented bucket rule.
func TestHealthRandom(t *testing.T) {
	type event struct {
		svc      int
		at       time.Duration // since startup, when added
		ok       bool
		dur      int64
		req, rsp int64 // -1: absent
		out      int64
	}
	svcs := []string{"DEV/COM/1/A/s", "DEV/COM/1/A/s/v2", "DEV/COM/2//t", "DEV/GOV/3/B/u"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 42))
			period := []time.Duration{5 * time.Second, 60 * time.Second, 601 * time.Second, 1000 * time.Second}[seed%4]
			width := healthBucketWidth(period)
			clk := newFakeClock(healthStart)
			h := NewHealth(period, clk.now)
			var events []event
			var elapsed time.Duration
			value := func(scale int64) int64 {
				if rnd.IntN(8) == 0 {
					return -1
				}
				return rnd.Int64N(scale)
			}
			for step := range 400 {
				switch rnd.IntN(10) {
				case 0:
					elapsed += time.Duration(rnd.Int64N(int64(2 * period)))
				default:
					elapsed += time.Duration(rnd.Int64N(int64(3 * time.Second)))
				}
				clk.set(elapsed)
				var batch []schema.Record
				for range rnd.IntN(6) {
					e := event{svc: rnd.IntN(len(svcs)), at: elapsed, ok: rnd.IntN(4) != 0,
						dur: rnd.Int64N(100000), req: value(1 << 20), rsp: value(1 << 40), out: rnd.Int64N(1 << 45)}
					var opts []recOpt
					if e.req >= 0 {
						opts = append(opts, reqSize(e.req))
					}
					if e.rsp >= 0 {
						opts = append(opts, respSize(e.rsp))
					}
					events = append(events, e)
					batch = append(batch, rec(t, svcs[e.svc], e.ok, e.out-e.dur, e.out, opts...))
				}
				h.Add(batch)
				if step%7 != 0 {
					continue
				}
				// Snapshot later, keeping the clock monotonic: a tracker
				// prunes for good what expired at the latest time it saw.
				elapsed += time.Duration(rnd.Int64N(int64(period)))
				clk.set(elapsed)
				now := elapsed
				hd := h.Snapshot(nil)
				for si, name := range svcs {
					var ok, fail int
					var dur, req, rsp []int64
					var lastOK, lastFail int64
					var everReq, everRsp, seen bool
					for _, e := range events {
						if e.svc != si {
							continue
						}
						seen = true
						if e.ok {
							lastOK = e.out
							everReq = everReq || e.req >= 0
							everRsp = everRsp || e.rsp >= 0
						} else {
							lastFail = e.out
						}
						b := time.Duration(floorDiv(e.at, width)) * width
						if now >= b+width+period {
							continue
						}
						if !e.ok {
							fail++
							continue
						}
						ok++
						dur = append(dur, e.dur)
						if e.req >= 0 {
							req = append(req, e.req)
						}
						if e.rsp >= 0 {
							rsp = append(rsp, e.rsp)
						}
					}
					if !seen {
						continue
					}
					s := findService(t, hd, name)
					if s.SuccessfulCount != ok || s.UnsuccessfulCount != fail {
						t.Fatalf("step %d %s: counts %d/%d, want %d/%d", step, name, s.SuccessfulCount, s.UnsuccessfulCount, ok, fail)
					}
					if lastOK != 0 && s.LastSuccessfulMs != lastOK || lastFail != 0 && s.LastUnsuccessfulMs != lastFail {
						t.Fatalf("step %d %s: last timestamps %d/%d, want %d/%d", step, name, s.LastSuccessfulMs, s.LastUnsuccessfulMs, lastOK, lastFail)
					}
					if ok == 0 {
						if s.RequestSize != nil || s.ResponseSize != nil {
							t.Fatalf("step %d %s: size groups without successes", step, name)
						}
						continue
					}
					if want := naiveStat(dur); !statClose(s.RequestDuration, want, 1e-9) {
						t.Fatalf("step %d %s: duration %+v, want %+v", step, name, s.RequestDuration, want)
					}
					for _, g := range []struct {
						what    string
						got     *schema.Stat
						ever    bool
						samples []int64
					}{{"request size", s.RequestSize, everReq, req}, {"response size", s.ResponseSize, everRsp, rsp}} {
						if (g.got != nil) != g.ever {
							t.Fatalf("step %d %s: %s %+v, ever carried %v", step, name, g.what, g.got, g.ever)
						}
						if want := naiveStat(g.samples); g.got != nil && !statClose(*g.got, want, 1e-9) {
							t.Fatalf("step %d %s: %s %+v, want %+v", step, name, g.what, *g.got, want)
						}
					}
				}
			}
		})
	}
}

// naiveStat is §5.3 computed in two passes.
func naiveStat(v []int64) schema.Stat {
	if len(v) == 0 {
		return schema.Stat{}
	}
	st := schema.Stat{Min: v[0], Max: v[0]}
	var sum float64
	for _, x := range v {
		st.Min, st.Max = min(st.Min, x), max(st.Max, x)
		sum += float64(x)
	}
	st.Avg = sum / float64(len(v))
	if len(v) > 1 {
		var ss float64
		for _, x := range v {
			d := float64(x) - st.Avg
			ss += d * d
		}
		st.StdDev = math.Sqrt(ss / float64(len(v)-1))
	}
	return st
}

func TestHealthConcurrent(t *testing.T) {
	const (
		writers = 8
		batches = 200
		perOK   = 7
		perFail = 3
	)
	svcs := []string{"DEV/COM/1/A/s", "DEV/COM/1/A/s/v2", "DEV/COM/2//t"}
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	var batch []schema.Record
	for i := range perOK + perFail {
		batch = append(batch, rec(t, svcs[i%len(svcs)], i < perOK, 0, int64(i), sizes(int64(i), 1)))
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	for range writers {
		wg.Go(func() {
			for range batches {
				h.Add(batch)
				clk.advance(10 * time.Millisecond)
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				hd := h.Snapshot(nil)
				for _, s := range hd.Services {
					if s.SuccessfulCount < 0 || s.UnsuccessfulCount < 0 {
						t.Errorf("negative count")
					}
				}
				_ = h.ServiceCount()
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()

	var ok, fail int
	for _, s := range h.Snapshot(nil).Services {
		ok += s.SuccessfulCount
		fail += s.UnsuccessfulCount
	}
	if ok != writers*batches*perOK || fail != writers*batches*perFail {
		t.Errorf("counts %d/%d, want %d/%d", ok, fail, writers*batches*perOK, writers*batches*perFail)
	}
}

func BenchmarkHealthAdd(b *testing.B) {
	clk := newFakeClock(healthStart)
	h := NewHealth(600*time.Second, clk.now)
	var batch []schema.Record
	for i := range 100 {
		svc := fmt.Sprintf("DEV/COM/1234/Catalog/service%d", i%10)
		batch = append(batch, rec(b, svc, i%5 != 0, 1000, 1000+int64(i), sizes(int64(300+i), int64(5000+i)), svcType("REST")))
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		h.Add(batch)
		clk.advance(10 * time.Millisecond)
		n++
	}
	b.ReportMetric(float64(n*len(batch))/b.Elapsed().Seconds(), "records/s")
}
