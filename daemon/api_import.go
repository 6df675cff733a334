package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// importBatch is how many records one storage Import call takes: it bounds
// the memory of an import of any size.
const importBatch = 10_000

// handleImport serves POST /api/v1/import: JSON Lines, each record stored
// with the monitoringDataTs it carries. Lines that are not records are
// reported with their number (from 1) and reason; the others are stored all
// the same. Nothing is quarantined: the sender has the lines.
func (d *Daemon) handleImport(w http.ResponseWriter, r *http.Request) {
	maxLine := d.cfg.OpMonitor.MaxRequestBytes
	br := bufio.NewReaderSize(r.Body, 64<<10)
	var (
		batch    []schema.Record
		stored   int
		rejected = []byte(`[`)
		nrej     int
		line     int
	)
	reject := func(reason string) {
		if nrej > 0 {
			rejected = append(rejected, ',')
		}
		nrej++
		rejected = append(rejected, `{"line":`...)
		rejected = strconv.AppendInt(rejected, int64(line), 10)
		rejected = append(rejected, `,"reason":`...)
		rejected = schema.AppendJSONString(rejected, reason)
		rejected = append(rejected, '}')
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := d.db.Import(r.Context(), batch); err != nil {
			return err
		}
		stored += len(batch)
		d.metrics.recordsStored(len(batch), 0)
		clear(batch)
		batch = batch[:0]
		return nil
	}
	var fail error
	for fail == nil {
		text, tooLong, err := readLine(br, maxLine)
		if err != nil && !errors.Is(err, io.EOF) {
			fail = err
			break
		}
		if err == nil || len(text) > 0 || tooLong {
			line++
		}
		switch {
		case tooLong:
			reject("line longer than " + strconv.FormatInt(maxLine, 10) + " bytes")
		case len(bytes.TrimSpace(text)) == 0:
		default:
			rec, derr := schema.DecodeRecord(text, schema.DecodeOptions{KeepMonitoringDataTs: true})
			if derr != nil {
				reject(derr.Error())
				break
			}
			batch = append(batch, rec)
			if len(batch) >= importBatch {
				fail = flush()
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if fail == nil {
		fail = flush()
	}
	if fail != nil {
		d.log.Error().Err(fail).Int("stored", stored).Int("line", line).Msg("import failed")
		msg := "line " + strconv.Itoa(line) + ": " + fail.Error() + " (" + strconv.Itoa(stored) + " records stored before)"
		if errors.Is(fail, storage.ErrClosed) {
			msg = "daemon is shutting down (" + strconv.Itoa(stored) + " records stored)"
		}
		writeError(w, http.StatusInternalServerError, msg)
		return
	}
	d.log.Info().Int("stored", stored).Int("rejected", nrej).Msg("import")
	b := append([]byte(`{"stored":`), strconv.Itoa(stored)...)
	b = append(b, `,"rejected":`...)
	b = append(b, rejected...)
	writeJSON(w, http.StatusOK, string(append(b, "]}"...)))
}

// readLine returns the next line without its newline; a line is counted
// even when it is the last one and lacks a newline. A line longer than max
// is skipped and reported as tooLong.
func readLine(br *bufio.Reader, max int64) (line []byte, tooLong bool, err error) {
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if int64(len(long)+len(frag)) > max+1 {
				tooLong, long = true, nil
			} else if errors.Is(err, bufio.ErrBufferFull) || long != nil {
				long = append(long, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		if long != nil {
			frag = long
		}
		return bytes.TrimSuffix(frag, []byte{'\n'}), false, err
	}
}
