package daemon

import (
	"errors"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// handleStore serves POST /store_data (opmon-protocol.md §2).
func (d *Daemon) handleStore(c *fiber.Ctx) error {
	start := time.Now()
	err := d.store(c)
	if errors.Is(err, errBodyTooLarge) {
		return d.tooLarge(c)
	}
	d.metrics.observeStore(err == nil, time.Since(start))
	return writeStoreAnswer(c, err)
}

// store handles one request; its error becomes the JSON answer in exactly
// one place (writeStoreAnswer).
func (d *Daemon) store(c *fiber.Ctx) error {
	if m := c.Method(); m != fiber.MethodPost {
		return internalError("Must use POST request method instead of " + m)
	}
	ct := c.Get(fiber.HeaderContentType)
	if !mediaTypeIs(ct, "application/json") {
		return internalError("Invalid content type " + ct + ", expecting application/json")
	}
	// The answer holds nothing of the body, and the records are copies.
	b, err := d.readBody(c, storeBodyWeight, true)
	defer b.release()
	if err != nil {
		if !errors.Is(err, errBodyTooLarge) {
			d.log.Warn().Str("remote", c.IP()).Err(err).Msg("store request not read")
		}
		return err
	}
	req, err := schema.DecodeStoreRequest(b.b, schema.DecodeOptions{})
	if err != nil {
		d.log.Warn().Str("remote", c.IP()).Int("bytes", len(b.b)).Err(err).Msg("store request refused")
		return err
	}
	defer req.Release() // Store and Health keep nothing of the records
	// The records are copies: a large JSON can go while they are stored
	// (its budget stays held for them until release; a pooled buffer
	// returns to the pool then).
	b.b = nil
	var quarantine []storage.Quarantined
	if len(req.Rejected) > 0 {
		quarantine = make([]storage.Quarantined, len(req.Rejected))
		for i, r := range req.Rejected {
			quarantine[i] = storage.Quarantined{Reason: r.Reason, Raw: r.Raw}
			d.log.Warn().Str("remote", c.IP()).Int("index", r.Index).Str("reason", r.Reason).Msg("record quarantined")
			// The payload only ever goes out at debug level.
			d.log.Debug().Int("index", r.Index).Bytes("record", r.Raw).Msg("quarantined record content")
		}
	}
	ts, err := d.db.Store(c.UserContext(), req.Records, quarantine)
	if err != nil {
		d.log.Error().Err(err).Int("records", len(req.Records)).Msg("store failed")
		return errDatabase{err}
	}
	d.health.Add(req.Records)
	d.metrics.recordsStored(len(req.Records), len(quarantine))
	if d.log.Enabled(zerolog.DebugLevel) {
		d.log.Debug().Str("remote", c.IP()).Int("records", len(req.Records)).
			Int("quarantined", len(quarantine)).Int64("monitoringDataTs", ts).Msg("stored")
	}
	return nil
}

// storeBodyWeight is what a store request holds of the body budget per
// byte of JSON: the JSON itself and its records, about three times as many
// bytes once decoded (40 MB → 120 MB).
const storeBodyWeight = 4

// upstreamError is an error whose text upstream prefixes with an error
// reference and category ("[uuid] [SYSTEM] internal_error: ...").
type upstreamError struct{ msg string }

func (e upstreamError) Error() string { return e.msg }

func internalError(msg string) error { return upstreamError{msg: msg} }

type errDatabase struct{ err error }

func (e errDatabase) Error() string {
	if errors.Is(e.err, storage.ErrClosed) {
		return "database error: daemon is shutting down"
	}
	return "database error: " + e.err.Error()
}

func writeStoreAnswer(c *fiber.Ctx, failure error) error {
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "application/json;charset=utf-8")
	if failure == nil {
		return c.SendString(`{"status":"OK"}`)
	}
	msg := failure.Error()
	var ue upstreamError
	if errors.As(failure, &ue) {
		msg = "[" + schema.NewUUID() + "] [SYSTEM] internal_error: " + ue.msg
	}
	b := schema.AppendJSONString([]byte(`{"status":"Error","errorMessage":`), msg)
	return c.Send(append(b, '}'))
}

// mediaTypeIs compares the media type of a Content-Type value, without
// parameters and case-insensitively.
func mediaTypeIs(contentType, want string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(contentType, ";")
		mt = strings.TrimSpace(mt)
	}
	return strings.EqualFold(mt, want)
}

func tooLargeStore(limit int64) string {
	return `{"status":"Error","errorMessage":"request body exceeds ` + strconv.FormatInt(limit, 10) + ` bytes"}`
}
