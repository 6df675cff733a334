// Package client holds the commands that talk to a running daemon.
//
// bench.go is `opmond bench`, a load generator in the binary: security
// servers storing realistic records and, optionally, a monitoring client
// following nextRecordsFrom. Each query is one request of its own (not the
// query command's loop), timed to the last byte of the answer; the request
// and the answer reader are schema's, as the query command's are.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
	"github.com/opmond/opmond/tlsconf"
)

// Limits that keep one bench run bounded whatever its flags say.
const (
	benchMaxBatch      = 100_000
	benchMaxConc       = 1024
	benchRequestLimit  = time.Minute // per request
	benchMaxAnswer     = 1 << 30
	benchGenChunk      = 1000 // records generated at a time per sender
	benchMaxErrorLines = 5
	benchSampleEvery   = time.Second // admin /metrics sampling
)

// BenchOptions are the flags of `opmond bench`.
type BenchOptions struct {
	url        string
	records    int64
	duration   time.Duration
	conc       int
	batch      int
	queryEvery time.Duration
	as         schema.ClientID
	admin      string
	cert, key  string
	json       bool
}

// BenchFlags defines the flags of `opmond bench` on fs; once fs has parsed,
// the returned function checks them and gives the options.
func BenchFlags(fs *flag.FlagSet) func() (*BenchOptions, error) {
	o := &BenchOptions{}
	fs.StringVar(&o.url, "url", "", "daemon base `URL`, e.g. http://127.0.0.1:2080 (required)")
	fs.Int64Var(&o.records, "records", 0, "stop after storing `N` records (this or --duration is required)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after `D`, e.g. 30s")
	fs.IntVar(&o.conc, "conc", 4, "concurrent store connections `N`")
	fs.IntVar(&o.batch, "batch", 100, "records per store request `N`")
	fs.DurationVar(&o.queryEvery, "query-every", 0, "also send a getSecurityServerOperationalData query every `D` (0: no queries)")
	as := fs.String("as", "", "querying client `ID` INSTANCE/CLASS/CODE[/SUBSYSTEM] (default: the generator's busiest client)")
	fs.StringVar(&o.admin, "admin", "", "admin listener `URL`, e.g. http://127.0.0.1:2082: report database size and peak RSS from /metrics")
	fs.StringVar(&o.cert, "cert", "", "client certificate `FILE` for an https daemon (PEM; the server must present the same certificate)")
	fs.StringVar(&o.key, "key", "", "key `FILE` of --cert")
	fs.BoolVar(&o.json, "json", false, "print one JSON object on stdout")
	return func() (*BenchOptions, error) { return o.check(fs, *as) }
}

// RunBench runs a bench: a UsageError never, an ExitError when any request
// failed (the report is printed all the same), else the run's own error.
func RunBench(o *BenchOptions, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runBench(ctx, o, stderr)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if o.json {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		res.writeText(stdout)
	}
	if res.Errors > 0 {
		return ExitError{fmt.Sprintf("bench: %d requests failed", res.Errors)}
	}
	return nil
}

func (o *BenchOptions) check(fs *flag.FlagSet, as string) (*BenchOptions, error) {
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.url == "":
		return nil, errors.New("--url is required")
	case !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://"):
		return nil, fmt.Errorf("--url %q: want http:// or https://", o.url)
	case (o.records > 0) == (o.duration > 0):
		return nil, errors.New("give exactly one of --records N or --duration D (positive)")
	case o.records < 0 || o.duration < 0:
		return nil, errors.New("--records and --duration must be positive")
	case o.conc < 1 || o.conc > benchMaxConc:
		return nil, fmt.Errorf("--conc %d: want 1 to %d", o.conc, benchMaxConc)
	case o.batch < 1 || o.batch > benchMaxBatch:
		return nil, fmt.Errorf("--batch %d: want 1 to %d", o.batch, benchMaxBatch)
	case o.queryEvery < 0:
		return nil, errors.New("--query-every must not be negative")
	case (o.cert == "") != (o.key == ""):
		return nil, errors.New("--cert and --key go together")
	case o.cert != "" && strings.HasPrefix(o.url, "http://"):
		return nil, errors.New("--cert is for an https --url")
	case o.cert == "" && strings.HasPrefix(o.url, "https://"):
		return nil, errors.New("an https --url needs --cert and --key (the daemon requires a client certificate)")
	}
	o.url = strings.TrimSuffix(o.url, "/")
	o.admin = strings.TrimSuffix(o.admin, "/")
	if as != "" {
		id, err := schema.ParseClientID(as)
		if err != nil {
			return nil, fmt.Errorf("--as: %w", err)
		}
		o.as = id
	} else {
		o.as = schematest.NewDataset().Clients[0]
	}
	return o, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// benchResult is what a run prints; the JSON names are interface.md's.
type benchResult struct {
	Records          int64         `json:"records"`
	Seconds          float64       `json:"seconds"`
	RecordsPerSecond float64       `json:"records_per_second"`
	StoreRequests    int           `json:"store_requests"`
	StoreP50         float64       `json:"store_p50_ms"`
	StoreP99         float64       `json:"store_p99_ms"`
	StoreMax         float64       `json:"store_max_ms"`
	Queries          int           `json:"queries"`
	QueryRecords     int64         `json:"query_records"`
	QueryP50         float64       `json:"query_p50_ms"`
	QueryP99         float64       `json:"query_p99_ms"`
	QueryMax         float64       `json:"query_max_ms"`
	Errors           int64         `json:"errors"`
	DatabaseBytes    int64         `json:"database_bytes,omitempty"`
	PeakRSSBytes     int64         `json:"peak_rss_bytes,omitempty"`
	Minutes          []benchMinute `json:"minutes"`
}

// benchMinute holds the figures of one minute of the run (the last one may
// be partial).
type benchMinute struct {
	Minute           int     `json:"minute"`
	RecordsPerSecond float64 `json:"records_per_second"`
	StoreP99         float64 `json:"store_p99_ms"`
	QueryP99         float64 `json:"query_p99_ms"`
	Errors           int64   `json:"errors"`
	RSSBytes         int64   `json:"rss_bytes,omitempty"`
}

// benchStats collects latencies per minute of the run.
type benchStats struct {
	start time.Time
	mu    sync.Mutex
	mins  []minuteStats
	errN  atomic.Int64
	errs  []string
}

type minuteStats struct {
	records     int64
	store       []float64 // ms
	query       []float64 // ms
	queryRecs   int64
	errors      int64
	rss, dbSize int64 // last admin sample of the minute
}

func (s *benchStats) minute(t time.Time) *minuteStats {
	i := int(t.Sub(s.start) / time.Minute)
	for len(s.mins) <= i {
		s.mins = append(s.mins, minuteStats{})
	}
	return &s.mins[i]
}

func (s *benchStats) store(at time.Time, d time.Duration, n int) {
	s.mu.Lock()
	m := s.minute(at)
	m.store = append(m.store, ms(d))
	m.records += int64(n)
	s.mu.Unlock()
}

func (s *benchStats) query(at time.Time, d time.Duration, n int) {
	s.mu.Lock()
	m := s.minute(at)
	m.query = append(m.query, ms(d))
	m.queryRecs += int64(n)
	s.mu.Unlock()
}

func (s *benchStats) sample(at time.Time, rss, db int64) {
	s.mu.Lock()
	m := s.minute(at)
	if rss > 0 {
		m.rss = max(m.rss, rss)
	}
	if db > 0 {
		m.dbSize = db
	}
	s.mu.Unlock()
}

func (s *benchStats) fail(at time.Time, err error) {
	s.errN.Add(1)
	s.mu.Lock()
	s.minute(at).errors++
	if len(s.errs) < benchMaxErrorLines {
		s.errs = append(s.errs, oneLine(err.Error()))
	}
	s.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile of sorted values, nearest rank; 0 for none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func runBench(ctx context.Context, o *BenchOptions, stderr io.Writer) (*benchResult, error) {
	hc, err := benchHTTPClient(o)
	if err != nil {
		return nil, err
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	st := &benchStats{start: time.Now()}
	done := make(chan struct{})
	var aux sync.WaitGroup
	if o.admin != "" {
		aux.Go(func() { sampleAdmin(ctx, done, o.admin, st) })
	}
	if o.queryEvery > 0 {
		aux.Go(func() { queryLoop(ctx, done, hc, o, st) })
	}
	var claimed atomic.Int64
	var senders sync.WaitGroup
	for w := range o.conc {
		senders.Go(func() { storeLoop(ctx, hc, o, st, w, &claimed) })
	}
	senders.Wait()
	elapsed := time.Since(st.start)
	close(done)
	aux.Wait()
	if o.admin != "" {
		// One last sample after the stores, for the final database size.
		rss, db, err := readAdminMetrics(context.Background(), o.admin)
		if err != nil {
			st.fail(time.Now(), err)
		}
		st.sample(st.start.Add(elapsed), rss, db)
	}
	for _, e := range st.errs {
		fmt.Fprintf(stderr, "opmond: bench: %s\n", e)
	}
	return st.result(elapsed), nil
}

func (s *benchStats) result(elapsed time.Duration) *benchResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &benchResult{Seconds: elapsed.Seconds(), Errors: s.errN.Load(), Minutes: []benchMinute{}}
	// The final admin sample and requests cut off at the end may open a
	// minute of their own just past the run: fold it into the one before.
	for n := len(s.mins); n > 1 && s.mins[n-1].records == 0 && len(s.mins[n-1].query) == 0 && s.mins[n-1].errors == 0; n-- {
		last, prev := &s.mins[n-1], &s.mins[n-2]
		prev.rss = max(prev.rss, last.rss)
		if last.dbSize > 0 {
			prev.dbSize = last.dbSize
		}
		s.mins = s.mins[:n-1]
	}
	var store, query []float64
	for i := range s.mins {
		m := &s.mins[i]
		r.Records += m.records
		r.QueryRecords += m.queryRecs
		store = append(store, m.store...)
		query = append(query, m.query...)
		slices.Sort(m.store)
		slices.Sort(m.query)
		secs := min(60, elapsed.Seconds()-float64(60*i))
		bm := benchMinute{Minute: i + 1, StoreP99: percentile(m.store, 99), QueryP99: percentile(m.query, 99),
			Errors: m.errors, RSSBytes: m.rss}
		if secs > 0 {
			bm.RecordsPerSecond = float64(m.records) / secs
		}
		r.Minutes = append(r.Minutes, bm)
		r.PeakRSSBytes = max(r.PeakRSSBytes, m.rss)
		if m.dbSize > 0 {
			r.DatabaseBytes = m.dbSize
		}
	}
	slices.Sort(store)
	slices.Sort(query)
	r.StoreRequests, r.Queries = len(store), len(query)
	r.StoreP50, r.StoreP99 = percentile(store, 50), percentile(store, 99)
	r.QueryP50, r.QueryP99 = percentile(query, 50), percentile(query, 99)
	if len(store) > 0 {
		r.StoreMax = store[len(store)-1]
	}
	if len(query) > 0 {
		r.QueryMax = query[len(query)-1]
	}
	if r.Seconds > 0 {
		r.RecordsPerSecond = float64(r.Records) / r.Seconds
	}
	return r
}

func (r *benchResult) writeText(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "records            %d in %.2f s\n", r.Records, r.Seconds)
	fmt.Fprintf(bw, "records/s          %.0f\n", r.RecordsPerSecond)
	fmt.Fprintf(bw, "store p50/p99/max  %.2f / %.2f / %.2f ms (%d requests)\n", r.StoreP50, r.StoreP99, r.StoreMax, r.StoreRequests)
	if r.Queries > 0 {
		fmt.Fprintf(bw, "query p50/p99/max  %.2f / %.2f / %.2f ms (%d queries, %d records)\n", r.QueryP50, r.QueryP99, r.QueryMax, r.Queries, r.QueryRecords)
	}
	fmt.Fprintf(bw, "errors             %d\n", r.Errors)
	if r.DatabaseBytes > 0 {
		fmt.Fprintf(bw, "database size      %.1f MiB", float64(r.DatabaseBytes)/(1<<20))
		if r.Records > 0 {
			fmt.Fprintf(bw, " (%.0f B per record stored in this run)", float64(r.DatabaseBytes)/float64(r.Records))
		}
		fmt.Fprintln(bw)
	}
	if r.PeakRSSBytes > 0 {
		fmt.Fprintf(bw, "peak RSS           %.1f MiB (sampled every %s)\n", float64(r.PeakRSSBytes)/(1<<20), benchSampleEvery)
	}
	if len(r.Minutes) > 1 {
		fmt.Fprintf(bw, "\nminute  records/s  store p99 ms  query p99 ms  errors  RSS MiB\n")
		for _, m := range r.Minutes {
			fmt.Fprintf(bw, "%6d  %9.0f  %12.2f  %12.2f  %6d  %7.1f\n", m.Minute, m.RecordsPerSecond, m.StoreP99, m.QueryP99, m.Errors, float64(m.RSSBytes)/(1<<20))
		}
	}
}

func benchHTTPClient(o *BenchOptions) (*http.Client, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: o.conc + 2, IdleConnTimeout: 30 * time.Second}
	if o.cert != "" {
		tc, err := tlsconf.ClientConfig(o.cert, o.key)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, Timeout: benchRequestLimit}, nil
}

// benchDo sends a POST (a GET without body) and returns an HTTP 200 answer;
// anything else is an error naming what was sent.
func benchDo(ctx context.Context, hc *http.Client, what, url, contentType string, body []byte) (*http.Response, error) {
	method := http.MethodGet
	var rd io.Reader
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP %s: %s", what, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// storeLoop sends store requests until the records are claimed or ctx ends.
// Records are generated and encoded before a request is timed.
func storeLoop(ctx context.Context, hc *http.Client, o *BenchOptions, st *benchStats, w int, claimed *atomic.Int64) {
	var pool []schema.Record
	chunk := uint64(0)
	fields := schema.AllFields.Without(schema.FMonitoringDataTs)
	body := make([]byte, 0, o.batch*1024)
	for ctx.Err() == nil {
		n := o.batch
		if o.records > 0 {
			lo := claimed.Add(int64(n)) - int64(n)
			if lo >= o.records {
				return
			}
			n = int(min(int64(n), o.records-lo))
		}
		body = append(body[:0], `{"records":[`...)
		for i := range n {
			if len(pool) == 0 {
				// Distinct seeds per sender and chunk; timestamps are now.
				pool = schematest.Records(max(benchGenChunk, o.batch), uint64(w)<<32|chunk, time.Now().UnixMilli())
				chunk++
			}
			if i > 0 {
				body = append(body, ',')
			}
			body = schema.AppendRecordJSON(body, &pool[0], fields)
			pool = pool[1:]
		}
		body = append(body, "]}"...)
		start := time.Now()
		err := postStore(ctx, hc, o.url+"/store_data", body)
		d := time.Since(start)
		switch {
		case err == nil:
			st.store(start, d, n)
		case ctx.Err() != nil:
			// Cut off by the end of the run: not the daemon's failure.
			return
		default:
			st.fail(start, err)
		}
	}
}

func postStore(ctx context.Context, hc *http.Client, url string, body []byte) error {
	resp, err := benchDo(ctx, hc, "store", url, "application/json; charset=UTF-8", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var a struct {
		Status       string `json:"status"`
		ErrorMessage string `json:"errorMessage"`
	}
	if err := json.Unmarshal(ans, &a); err != nil || a.Status != "OK" {
		return fmt.Errorf("store: answer %s", bytes.TrimSpace(ans))
	}
	return nil
}

// queryLoop sends a getSecurityServerOperationalData every o.queryEvery,
// from the start of the run on, following nextRecordsFrom.
func queryLoop(ctx context.Context, done <-chan struct{}, hc *http.Client, o *BenchOptions, st *benchStats) {
	from := st.start.Unix()
	t := time.NewTicker(o.queryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		start := time.Now()
		n, next, d, err := postQuery(ctx, hc, o, from, start.Unix())
		switch {
		case errors.Is(err, errNotYet):
			// The records-available offset has not passed yet: nothing to ask.
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			st.fail(start, err)
		default:
			st.query(start, d, n)
			if next > from {
				from = next
			}
		}
	}
}

// errNotYet is the fault for a recordsFrom inside the records-available offset.
var errNotYet = errors.New("records not available yet")

// postQuery sends one query and reads its answer to the last byte, which
// ends the time it took; the answer is checked after that. It returns the
// records count and nextRecordsFrom (0 when absent).
func postQuery(ctx context.Context, hc *http.Client, o *BenchOptions, from, to int64) (int, int64, time.Duration, error) {
	start := time.Now()
	q := schema.QuerySpec{As: &o.as, To: to}
	resp, err := benchDo(ctx, hc, "query", o.url+"/query_data", "text/xml; charset=UTF-8", schema.BuildQueryRequest(q, from))
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, benchMaxAnswer))
	d := time.Since(start)
	if err != nil {
		return 0, 0, d, fmt.Errorf("query: answer: %w", err)
	}
	records, next, err := schema.CountOperationalDataAnswer(resp.Header.Get("Content-Type"), bytes.NewReader(data))
	var f *schema.Fault
	switch {
	case errors.As(err, &f) && strings.Contains(f.String, "not available from"):
		return 0, 0, d, errNotYet
	case err != nil:
		return 0, 0, d, fmt.Errorf("query: %w", err)
	case next == nil:
		return records, 0, d, nil
	}
	return records, *next, d, nil
}

// sampleAdmin reads the daemon's RSS and database size from /metrics every
// benchSampleEvery until done.
func sampleAdmin(ctx context.Context, done <-chan struct{}, admin string, st *benchStats) {
	t := time.NewTicker(benchSampleEvery)
	defer t.Stop()
	for {
		rss, db, err := readAdminMetrics(ctx, admin)
		if err != nil && ctx.Err() == nil {
			st.fail(time.Now(), err)
		}
		st.sample(time.Now(), rss, db)
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
	}
}

// readAdminMetrics returns process_resident_memory_bytes and
// opmond_database_size_bytes.
var adminClient = &http.Client{Timeout: 10 * time.Second}

func readAdminMetrics(ctx context.Context, admin string) (rss, db int64, err error) {
	// The admin listener is plain HTTP: no client certificate goes there.
	resp, err := benchDo(ctx, adminClient, "admin metrics", admin+"/metrics", "", nil)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "process_resident_memory_bytes":
			dst = &rss
		case "opmond_database_size_bytes":
			dst = &db
		default:
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err == nil {
			*dst = int64(f)
		}
	}
	return rss, db, sc.Err()
}
