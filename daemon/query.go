package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/klauspost/pgzip"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// Operation labels for metrics.
const (
	opOperationalData = "getSecurityServerOperationalData"
	opHealthData      = "getSecurityServerHealthData"
	opOther           = "other"
)

// queryFault is a SOAP fault to answer with; connClose tells whether it
// happened after the message was parsed (upstream then primes Connection: close).
type queryFault struct {
	*schema.SOAPError
	connClose bool
	tooLarge  bool // answered with 413 instead (interface.md)
}

// handleQuery serves POST /query_data (opmon-protocol.md §3–5).
func (d *Daemon) handleQuery(c *fiber.Ctx) error {
	start := time.Now()
	op, fault := d.query(c)
	if fault != nil && fault.tooLarge {
		return d.tooLarge(c)
	}
	if fault != nil {
		d.writeFault(c, fault)
	}
	d.metrics.observeQuery(op, fault == nil, time.Since(start))
	return nil
}

func (d *Daemon) query(c *fiber.Ctx) (string, *queryFault) {
	if m := c.Method(); m != fiber.MethodPost {
		return opOther, &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInvalidHTTPMethod,
			String: "Must use POST request method instead of " + m}}
	}
	ct := c.Get(fiber.HeaderContentType)
	if !mediaTypeIs(ct, "text/xml") {
		return opOther, &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInvalidContentType,
			String: "Invalid content type " + ct + ", expecting text/xml"}}
	}
	now := d.now()
	if err := d.gconf.Valid(now); err != nil {
		d.log.Warn().Err(err).Msg("query refused: global configuration is not valid")
		return opOther, &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultGlobalConfOutdated,
			String: "Global configuration is expired"}}
	}
	// Not reused: the answer splices the request envelope.
	b, err := d.readBody(c, 1, false)
	defer b.release()
	if errors.Is(err, errBodyTooLarge) {
		return opOther, &queryFault{tooLarge: true}
	}
	if err != nil {
		return opOther, &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError, String: err.Error()}, connClose: true}
	}
	req, err := schema.ParseQueryRequest(b.b, ct)
	if err != nil {
		var se *schema.SOAPError
		if !errors.As(err, &se) {
			se = &schema.SOAPError{Code: schema.FaultInternalError, String: err.Error()}
		}
		// Faults from dispatch and body validation come after upstream primed
		// Connection: close; envelope-level ones come before.
		late := se.Code == schema.FaultInvalidRequest || se.Code == schema.FaultInternalError
		return opOther, &queryFault{SOAPError: se, connClose: late}
	}
	c.Context().SetConnectionClose()
	switch req.Operation {
	case schema.OpOperationalData:
		return opOperationalData, d.operationalData(c, req, now)
	case schema.OpHealthData:
		return opHealthData, d.healthData(c, req)
	}
	// The parser answers unknown services itself; this only guards the switch.
	return opOther, &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError,
		String: "unsupported operation " + req.Operation.String()}, connClose: true}
}

func invalidRequest(msg string) *queryFault {
	return &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInvalidRequest, String: msg}, connClose: true}
}

// operationalData answers getSecurityServerOperationalData (§4).
func (d *Daemon) operationalData(c *fiber.Ctx, req *schema.QueryRequest, now time.Time) *queryFault {
	privileged := d.privileged(req)
	plan, perr := d.planRecords(now, req.RecordsFrom, req.RecordsTo, req.OutputFields, d.cfg.OpMonitor.MaxRecordsInPayload)
	if perr != nil {
		return invalidRequest(perr.Msg)
	}
	if !privileged {
		plan.fields = plan.fields.Without(schema.FSecurityServerInternalIP)
		client := req.Client
		plan.q.Associated = &client
	}
	plan.q.Provider = req.SearchClient
	var payload []byte
	var res storage.QueryResult
	var err error
	release := func() {}
	if plan.fields == schema.AllFields && plan.q.Associated == nil && plan.q.Provider == nil {
		// Whole seconds with every field: sealed blocks are sent in the
		// answer form they are stored in (storage/seal.go).
		pb := payloadPool.Get().(*bytes.Buffer)
		release = func() {
			if pb.Cap() <= maxPooledPayload {
				pb.Reset()
				payloadPool.Put(pb)
			}
		}
		res, err = d.db.QueryAnswer(c.UserContext(), plan.q, `{"records":[`, "]}", pb)
		payload = pb.Bytes()
	} else {
		payload, res, err = d.recordsPayload(c, plan)
	}
	if err != nil {
		release()
		d.log.Error().Err(err).Msg("operational data query failed")
		return &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError,
			String: "Failed to get records for response: " + err.Error()}, connClose: true}
	}
	next, hasNext := plan.nextRecordsFrom(res)
	soap := req.OperationalDataResponse(res.Count, next, hasNext)
	boundary := schema.NewBoundary()
	var head, tail bytes.Buffer
	if err := schema.WriteMultipartHead(&head, boundary, c.Get(fiber.HeaderContentType), soap); err != nil {
		release()
		return &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError, String: err.Error()}, connClose: true}
	}
	_ = schema.WriteMultipartTail(&tail, boundary) // a bytes.Buffer does not fail
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, schema.MultipartContentType(boundary))
	body := &answerBody{parts: [3][]byte{head.Bytes(), payload, tail.Bytes()}, release: release}
	c.Response().SetBodyStream(body, head.Len()+len(payload)+tail.Len())
	d.log.Debug().Str("client", req.Client.String()).Bool("privileged", privileged).
		Int64("from", plan.q.From).Int64("to", plan.q.To).Int("records", res.Count).Bool("more", res.More).Msg("operational data query")
	return nil
}

// recordsPlan is an operational data query after the window and field rules
// of §4.1, shared by the SOAP query and GET /api/v1/records; callers add
// the party filters.
type recordsPlan struct {
	q       storage.Query
	fields  schema.FieldSet
	next    int64 // nextRecordsFrom from clipping recordsTo, when hasNext
	hasNext bool
}

// paramError is a parameter that breaks a §4.1 rule: Param names it for the
// admin API, Msg is upstream's fault string.
type paramError struct{ Param, Msg string }

// planRecords applies §4.1 to a window and output field names, with limit
// records per answer (§4.2).
func (d *Daemon) planRecords(now time.Time, from, to int64, fieldNames []string, limit int) (*recordsPlan, *paramError) {
	avail := now.Unix() - int64(d.cfg.OpMonitor.RecordsAvailableOffset)
	switch {
	case from < 0:
		return nil, &paramError{"from", "Records from timestamp is a negative number"}
	case to < 0:
		return nil, &paramError{"to", "Records to timestamp is a negative number"}
	case to < from:
		return nil, &paramError{"to", "Records to timestamp is earlier than records from timestamp"}
	case from >= avail:
		return nil, &paramError{"from", "Records not available from " + strconv.FormatInt(from, 10) + " yet"}
	}
	p := &recordsPlan{fields: schema.AllFields}
	if len(fieldNames) > 0 {
		p.fields = 0
		for _, name := range fieldNames {
			f, ok := schema.FieldByName(name)
			if !ok {
				return nil, &paramError{"fields", "Unknown output field in search criteria: " + name}
			}
			p.fields = p.fields.With(f)
		}
	}
	if to >= avail {
		to, p.next, p.hasNext = avail-1, avail, true
	}
	p.q = storage.Query{From: from, To: to, Max: limit}
	return p, nil
}

// nextRecordsFrom is the answer's nextRecordsFrom (§4.2): last + 1 when the
// limit was hit and matching records remain, else the clipping point if any.
func (p *recordsPlan) nextRecordsFrom(res storage.QueryResult) (int64, bool) {
	if res.More {
		return res.Last + 1, true
	}
	return p.next, p.hasNext
}

// privileged is upstream's rule (§4.3): the central monitoring client, or the
// owner of the server named in the securityServer header. When the daemon
// knows its own server id, the header must name it.
func (d *Daemon) privileged(req *schema.QueryRequest) bool {
	if mc, ok := d.gconf.MonitoringClient(); ok && mc == req.Client {
		return true
	}
	if req.SecurityServer == nil {
		return false
	}
	if own := d.cfg.SecurityServerID(); own != nil && *own != *req.SecurityServer {
		return false
	}
	owner, ok := d.gconf.OwnerOf(*req.SecurityServer)
	return ok && owner == req.Client
}

// payloadPool holds the payload buffers of privileged answers; a
// 10,000-record payload is about 1 MB, a page of a busy second not sealed
// yet several.
var payloadPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledPayload = 8 << 20

// Payload compression: one gzip member, compressed in parallel blocks of
// payloadBlock bytes (each block primed with the previous one's last 32 KiB,
// so the ratio matches a serial gzip); a 10,000-record page is about 7 MB of
// JSON, and compression is most of the time of a page. Three blocks in
// flight keep two cores busy; each holds its input, output and compressor.
const (
	payloadBlock  = 256 << 10
	payloadBlocks = 3
	payloadChunk  = 64 << 10 // JSON handed over at a time
)

// recordsPayload runs the query and returns the gzip of {"records":[...]}.
// Records are read and JSON-encoded on this goroutine while the compressor
// works on earlier blocks.
func (d *Daemon) recordsPayload(c *fiber.Ctx, p *recordsPlan) ([]byte, storage.QueryResult, error) {
	var out bytes.Buffer
	zw, err := pgzip.NewWriterLevel(&out, pgzip.BestSpeed)
	if err != nil {
		return nil, storage.QueryResult{}, err
	}
	if err := zw.SetConcurrency(payloadBlock, payloadBlocks); err != nil {
		return nil, storage.QueryResult{}, err
	}
	res, qerr := d.writeRecords(c.UserContext(), zw, p, "}")
	if err := zw.Close(); err != nil && qerr == nil {
		qerr = err
	}
	if qerr != nil {
		return nil, res, qerr
	}
	return out.Bytes(), res, nil
}

// writeRecords runs the plan's query and writes {"records":[...] and then
// tail to w, handing over about payloadChunk bytes at a time.
func (d *Daemon) writeRecords(ctx context.Context, w io.Writer, p *recordsPlan, tail string) (storage.QueryResult, error) {
	buf := make([]byte, 0, payloadChunk+4<<10)
	buf = append(buf, `{"records":[`...)
	first := true
	res, err := d.db.Query(ctx, p.q, func(r *schema.Record) error {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = schema.AppendRecordJSON(buf, r, p.fields)
		if len(buf) >= payloadChunk {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	buf = append(buf, ']')
	buf = append(buf, tail...)
	_, err = w.Write(buf)
	return res, err
}

// healthData answers getSecurityServerHealthData (§5); it has no access control.
func (d *Daemon) healthData(c *fiber.Ctx, req *schema.QueryRequest) *queryFault {
	snap := d.health.Snapshot(req.FilterClient)
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, c.Get(fiber.HeaderContentType))
	c.Response().SetBodyRaw(req.HealthDataResponse(snap))
	return nil
}

// writeFault is the one place where query errors become SOAP faults (§3.9).
func (d *Daemon) writeFault(c *fiber.Ctx, f *queryFault) {
	detail := schema.NewUUID()
	code := schema.FaultPrefix + f.Code
	if f.Code == schema.FaultInternalError {
		d.log.Error().Str("faultCode", code).Str("faultString", f.String).Str("faultDetail", detail).Msg("query fault")
	} else {
		d.log.Info().Str("faultCode", code).Str("faultString", f.String).Str("faultDetail", detail).Msg("query fault")
	}
	c.Response().Reset()
	if f.connClose {
		c.Context().SetConnectionClose()
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/xml;charset=utf-8")
	c.Set("SOAPAction", "")
	c.Response().SetBodyRaw(schema.FaultXML(code, f.String, detail))
}

func tooLargeQuery(limit int64) []byte {
	return schema.FaultXML(schema.FaultPrefix+schema.FaultInvalidRequest,
		"request body exceeds "+strconv.FormatInt(limit, 10)+" bytes", schema.NewUUID())
}

// answerBody is an operational data answer sent from its parts, the
// multipart head, the payload and the tail, so that the payload is never
// copied into one body; its pooled buffer goes back when fasthttp is done
// with the response (Close, also after a failed write).
type answerBody struct {
	parts   [3][]byte
	release func()
}

func (a *answerBody) Read(p []byte) (int, error) {
	for i := range a.parts {
		if len(a.parts[i]) > 0 {
			n := copy(p, a.parts[i])
			a.parts[i] = a.parts[i][n:]
			return n, nil
		}
	}
	return 0, io.EOF
}

// WriteTo writes the parts whole: fasthttp uses it instead of copying
// through a small buffer.
func (a *answerBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for i := range a.parts {
		n, err := w.Write(a.parts[i])
		total += int64(n)
		a.parts[i] = a.parts[i][n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (a *answerBody) Close() error {
	if a.release != nil {
		a.release()
		a.release = nil
	}
	return nil
}
