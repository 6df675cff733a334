package daemon

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// The admin JSON API (interface.md, "The admin interface"). Reads share the
// SOAP query's rules (planRecords) and the storage functions; nothing here
// is restricted by the access rules of §4.3: the admin listener is the
// operator's own.

// badParam is a 400 answer naming the parameter.
type badParam struct{ param, msg string }

func (e *badParam) Error() string { return e.param + ": " + e.msg }

func writeError(w http.ResponseWriter, status int, msg string) {
	b := schema.AppendJSONString([]byte(`{"error":`), msg)
	writeJSON(w, status, string(append(b, '}')))
}

// apiParams reads query string parameters; the first problem is kept.
type apiParams struct {
	v   url.Values
	err *badParam
}

func (p *apiParams) fail(param, msg string) {
	if p.err == nil {
		p.err = &badParam{param, msg}
	}
}

// int64 reads a required (def == nil) or optional integer.
func (p *apiParams) int64(name string, def *int64) int64 {
	s := p.v.Get(name)
	if s == "" {
		if def == nil {
			p.fail(name, "is required")
			return 0
		}
		return *def
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		p.fail(name, strconv.Quote(s)+" is not an integer")
	}
	return n
}

func (p *apiParams) client(name string) *schema.ClientID {
	s := p.v.Get(name)
	if s == "" {
		return nil
	}
	id, err := schema.ParseClientID(s)
	if err != nil {
		p.fail(name, err.Error())
		return nil
	}
	return &id
}

func ptr[T any](v T) *T { return &v }

// handleRecords serves GET /api/v1/records.
func (d *Daemon) handleRecords(w http.ResponseWriter, r *http.Request) {
	p := apiParams{v: r.URL.Query()}
	from := p.int64("from", nil)
	to := p.int64("to", nil)
	limit := p.int64("limit", ptr(int64(d.cfg.OpMonitor.MaxRecordsInPayload)))
	if p.err == nil && limit < 1 {
		p.fail("limit", "must be at least 1")
	}
	client := p.client("client")
	provider := p.client("service-provider")
	var fields []string
	for _, f := range strings.Split(p.v.Get("fields"), ",") {
		if f != "" {
			fields = append(fields, f)
		}
	}
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	plan, perr := d.planRecords(d.now(), from, to, fields, int(min(limit, math.MaxInt32)))
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr.Param+": "+perr.Msg)
		return
	}
	plan.q.Associated, plan.q.Provider = client, provider
	// Streamed: limit has no upper bound, so neither has the answer.
	// nextRecordsFrom comes last, once the query has told it.
	w.Header().Set("Content-Type", "application/json")
	sw := &sentWriter{w: w}
	res, err := d.writeRecords(r.Context(), sw, plan, "")
	if err == nil {
		tail := []byte{}
		if next, ok := plan.nextRecordsFrom(res); ok {
			tail = strconv.AppendInt(append(tail, `,"nextRecordsFrom":`...), next, 10)
		}
		_, err = sw.Write(append(tail, '}'))
	}
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Error().Err(err).Msg("records query failed")
		}
		if !sw.sent {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		// Part of the answer is out: cut the connection so that the client
		// sees a broken answer, not a short one.
		panic(http.ErrAbortHandler)
	}
}

// sentWriter tells whether anything was written to w.
type sentWriter struct {
	w    io.Writer
	sent bool
}

func (s *sentWriter) Write(p []byte) (int, error) {
	s.sent = true
	return s.w.Write(p)
}

// handleHealth serves GET /api/v1/health: the getSecurityServerHealthData
// answer's content as JSON.
func (d *Daemon) handleHealth(w http.ResponseWriter, r *http.Request) {
	p := apiParams{v: r.URL.Query()}
	client := p.client("client")
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	writeJSON(w, http.StatusOK, string(schema.AppendHealthJSON(nil, d.health.Snapshot(client))))
}

// maxAPIIntervals bounds the buckets of one /api/v1/intervals answer.
const maxAPIIntervals = 100_000

// handleIntervals serves GET /api/v1/intervals: half-open, epoch-aligned
// buckets of requestInTs, empty ones included.
func (d *Daemon) handleIntervals(w http.ResponseWriter, r *http.Request) {
	p := apiParams{v: r.URL.Query()}
	// Seconds as milliseconds must not overflow.
	const maxSec = math.MaxInt64/1000 - 1
	from := p.int64("from", nil)
	to := p.int64("to", nil)
	interval := p.int64("interval", nil)
	q := storage.IntervalQuery{Type: p.v.Get("type"), Member: p.client("member")}
	if s := p.v.Get("service"); s != "" {
		id, err := schema.ParseServiceID(s)
		if err != nil {
			p.fail("service", err.Error())
		}
		q.Service = &id
	}
	switch {
	case p.err != nil:
	case from < 0 || from > maxSec:
		p.fail("from", "must be between 0 and "+strconv.FormatInt(maxSec, 10))
	case to < 0 || to > maxSec:
		p.fail("to", "must be between 0 and "+strconv.FormatInt(maxSec, 10))
	case to < from:
		p.fail("to", "is before from")
	case interval < 1 || interval > math.MaxInt32:
		p.fail("interval", "must be a positive number of minutes")
	case q.Type != "" && q.Type != "Client" && q.Type != "Producer":
		p.fail("type", strconv.Quote(q.Type)+" is neither Client nor Producer")
	case to/(interval*60)-from/(interval*60) >= maxAPIIntervals:
		p.fail("interval", "more than "+strconv.Itoa(maxAPIIntervals)+" intervals in [from, to]")
	}
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	q.FromMs, q.ToMs, q.StepMs = from*1000, to*1000, interval*60_000
	buckets, err := d.db.Intervals(r.Context(), q)
	if err != nil {
		d.log.Error().Err(err).Msg("intervals query failed")
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	b := make([]byte, 0, 32+len(buckets)*64)
	b = append(b, `{"intervals":[`...)
	for i, x := range buckets {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"intervalStart":`...)
		b = strconv.AppendInt(b, x.StartMs/1000, 10)
		b = append(b, `,"successCount":`...)
		b = strconv.AppendInt(b, x.Success, 10)
		b = append(b, `,"failureCount":`...)
		b = strconv.AppendInt(b, x.Failure, 10)
		b = append(b, '}')
	}
	writeJSON(w, http.StatusOK, string(append(b, "]}"...)))
}

// handleQuarantine serves GET /api/v1/quarantine, streamed: the quarantine
// has no upper bound of its own. A record kept as bytes that are not JSON
// (invalid UTF-8) is given as "raw", base64, instead of "record".
func (d *Daemon) handleQuarantine(w http.ResponseWriter, r *http.Request) {
	p := apiParams{v: r.URL.Query()}
	from := p.int64("from", ptr(int64(0)))
	to := p.int64("to", ptr(int64(math.MaxInt64)))
	if p.err == nil && to < from {
		p.fail("to", "is before from")
	}
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	sw := &sentWriter{w: w}
	b := append(make([]byte, 0, 64<<10), `{"records":[`...)
	first := true
	err := d.db.ListQuarantine(r.Context(), from, to, func(q storage.Quarantined) error {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"receivedAt":`...)
		b = strconv.AppendInt(b, q.ReceivedAt, 10)
		b = append(b, `,"reason":`...)
		b = schema.AppendJSONString(b, q.Reason)
		b = appendQuarantined(b, q.Raw)
		b = append(b, '}')
		if len(b) >= 60<<10 {
			_, err := sw.Write(b)
			b = b[:0]
			return err
		}
		return nil
	})
	if err == nil {
		_, err = sw.Write(append(b, "]}"...))
	}
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Error().Err(err).Msg("quarantine listing failed")
		}
		if !sw.sent {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		panic(http.ErrAbortHandler) // as in handleRecords
	}
}

// appendQuarantined appends the record as received: as JSON when it is,
// else its bytes in base64.
func appendQuarantined(b, raw []byte) []byte {
	if len(bytes.TrimSpace(raw)) == len(raw) && json.Valid(raw) {
		b = append(b, `,"record":`...)
		return append(b, raw...)
	}
	b = append(b, `,"raw":"`...)
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}
