package daemon

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
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
	b, err := d.readBody(c, 1)
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
	avail := now.Unix() - int64(d.cfg.OpMonitor.RecordsAvailableOffset)
	from, to := req.RecordsFrom, req.RecordsTo
	switch {
	case from < 0:
		return invalidRequest("Records from timestamp is a negative number")
	case to < 0:
		return invalidRequest("Records to timestamp is a negative number")
	case to < from:
		return invalidRequest("Records to timestamp is earlier than records from timestamp")
	case from >= avail:
		return invalidRequest("Records not available from " + strconv.FormatInt(from, 10) + " yet")
	}
	fields := schema.AllFields
	if len(req.OutputFields) > 0 {
		fields = 0
		for _, name := range req.OutputFields {
			f, ok := schema.FieldByName(name)
			if !ok {
				return invalidRequest("Unknown output field in search criteria: " + name)
			}
			fields = fields.With(f)
		}
	}
	privileged := d.privileged(req)
	if !privileged {
		fields = fields.Without(schema.FSecurityServerInternalIP)
	}
	var next int64
	hasNext := false
	if to >= avail {
		to, next, hasNext = avail-1, avail, true
	}
	q := storage.Query{From: from, To: to, Max: d.cfg.OpMonitor.MaxRecordsInPayload, Provider: req.SearchClient}
	if !privileged {
		client := req.Client
		q.Associated = &client
	}
	payload, res, err := d.recordsPayload(c, q, fields)
	if err != nil {
		d.log.Error().Err(err).Msg("operational data query failed")
		return &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError,
			String: "Failed to get records for response: " + err.Error()}, connClose: true}
	}
	if res.More {
		next, hasNext = res.Last+1, true
	}
	soap := req.OperationalDataResponse(res.Count, next, hasNext)
	boundary := schema.NewBoundary()
	var body bytes.Buffer
	body.Grow(len(soap) + len(payload) + 512)
	if err := schema.WriteOperationalDataMultipart(&body, boundary, c.Get(fiber.HeaderContentType), soap, payload); err != nil {
		return &queryFault{SOAPError: &schema.SOAPError{Code: schema.FaultInternalError, String: err.Error()}, connClose: true}
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, schema.MultipartContentType(boundary))
	c.Response().SetBodyRaw(body.Bytes())
	d.log.Debug().Str("client", req.Client.String()).Bool("privileged", privileged).
		Int64("from", from).Int64("to", to).Int("records", res.Count).Bool("more", res.More).Msg("operational data query")
	return nil
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

// Payload compression: one gzip member, compressed in parallel blocks of
// payloadBlock bytes (each block primed with the previous one's last 32 KiB,
// so the ratio matches a serial gzip); a 10,000-record page is about 7 MB of
// JSON, and compression is most of the time of a page.
const (
	payloadBlock  = 512 << 10
	payloadBlocks = 4
	payloadChunk  = 64 << 10 // JSON handed over at a time
)

// recordsPayload runs the query and returns the gzip of {"records":[...]}.
// Records are read and JSON-encoded on this goroutine while the compressor
// works on earlier blocks.
func (d *Daemon) recordsPayload(c *fiber.Ctx, q storage.Query, fields schema.FieldSet) ([]byte, storage.QueryResult, error) {
	var out bytes.Buffer
	zw, err := pgzip.NewWriterLevel(&out, pgzip.BestSpeed)
	if err != nil {
		return nil, storage.QueryResult{}, err
	}
	if err := zw.SetConcurrency(payloadBlock, payloadBlocks); err != nil {
		return nil, storage.QueryResult{}, err
	}
	buf := make([]byte, 0, payloadChunk+4<<10)
	buf = append(buf, `{"records":[`...)
	first := true
	res, qerr := d.db.Query(c.UserContext(), q, func(r *schema.Record) error {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = schema.AppendRecordJSON(buf, r, fields)
		if len(buf) >= payloadChunk {
			if _, err := zw.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		return nil
	})
	if qerr == nil {
		buf = append(buf, "]}"...)
		_, qerr = zw.Write(buf)
	}
	if err := zw.Close(); err != nil && qerr == nil {
		qerr = err
	}
	if qerr != nil {
		return nil, res, qerr
	}
	return out.Bytes(), res, nil
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
	detail := uuid.NewString()
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
		"request body exceeds "+strconv.FormatInt(limit, 10)+" bytes", uuid.NewString())
}
