package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/tlsconf"
)

// QueryOptions are the flags of `opmond query`.
type QueryOptions struct {
	schema.QuerySpec
	ConfigFile string
	URL        string // base URL; "" = from the configuration
	From       int64
	HTTPClient *http.Client // nil: built from the configuration
	// Notice receives a line when the window was clipped by the
	// records-available offset (nil: not told).
	Notice io.Writer
}

// maxAnswerBytes bounds what the client reads of one answer.
const maxAnswerBytes = 1 << 30

// RunQuery sends getSecurityServerOperationalData (following nextRecordsFrom
// until done, one JSON record per line on out) or getSecurityServerHealthData
// (one JSON document shaped as GET /api/v1/health).
func RunQuery(ctx context.Context, o QueryOptions, out io.Writer) error {
	cfg, err := daemon.LoadConfig(o.ConfigFile)
	if err != nil {
		return err
	}
	base := o.URL
	if base == "" {
		base = cfg.BaseURL()
	}
	if o.Server == nil {
		o.Server = cfg.SecurityServerID()
	}
	if o.As == nil {
		if mc, ok := monitoringClientOf(cfg); ok {
			o.As = &mc
		} else {
			return UsageError{"--as is required: no central monitoring client is known from the global configuration"}
		}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
		if strings.HasPrefix(base, "https://") {
			tc, err := tlsconf.ClientConfig(cfg.OpMonitor.TLSCertificate, cfg.OpMonitor.TLSKey)
			if err != nil {
				return err
			}
			hc.Transport = &http.Transport{TLSClientConfig: tc}
		}
	}
	url := strings.TrimSuffix(base, "/") + "/query_data"
	if o.Health {
		return queryHealth(ctx, hc, url, o, out)
	}
	clippedAt, err := queryRecords(ctx, hc, url, o, out)
	if clippedAt >= 0 && o.Notice != nil {
		// The daemon clips at its now - offset, which tells its offset
		// better than this configuration, which may not be the daemon's.
		// Only a window that begins inside the offset (a fault) leaves no
		// clue but the configuration.
		offset := time.Now().Unix() - clippedAt
		if err != nil || offset < 0 {
			offset = int64(cfg.OpMonitor.RecordsAvailableOffset)
		}
		writeClippedNotice(o.Notice, clippedAt, min(o.To, time.Now().Unix()), offset)
	}
	return err
}

// writeClippedNotice tells the operator that records from clippedAt on were
// not returned yet, and from when the whole window will be: a second's
// records are returned once the daemon's now - offset is past it.
func writeClippedNotice(w io.Writer, clippedAt, to, offset int64) {
	at := time.Unix(clippedAt, 0)
	ready := time.Unix(max(to, clippedAt)+offset+1, 0)
	fmt.Fprintf(w, "opmond query: window clipped at %d (%s): records from then on are not returned yet "+
		"(the daemon's records-available-timestamp-offset-seconds is about %d); the whole window will be available from about %s\n",
		clippedAt, at.Format(time.RFC3339), offset, ready.Format(time.RFC3339))
}

func monitoringClientOf(cfg *daemon.Config) (schema.ClientID, bool) {
	mode, err := anchor.DetectMode(cfg.GlobalConf.Anchor, cfg.GlobalConf.Directory)
	if err != nil || mode == anchor.ModeStandalone {
		return schema.ClientID{}, false
	}
	return anchor.NewStaticDir(cfg.GlobalConf.Directory, anchor.StaticOptions{IgnoreExpiry: true}).MonitoringClient()
}

// queryRecords writes the records of [o.From, o.To]. clippedAt is the
// second from which the daemon said records are not available yet when that
// cut the window short (or, with the fault, left nothing of it), else -1.
func queryRecords(ctx context.Context, hc *http.Client, url string, o QueryOptions, out io.Writer) (clippedAt int64, err error) {
	w := bufio.NewWriterSize(out, 64<<10)
	defer func() {
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
	}()
	from := o.From
	for page := 0; ; page++ {
		records, next, err := postOperationalData(ctx, hc, url, schema.BuildQueryRequest(o.QuerySpec, from))
		if err != nil {
			var f *schema.Fault
			if errors.As(err, &f) && strings.Contains(f.String, "not available from") {
				if page > 0 {
					// Paging reached the records-available offset: nothing more yet.
					return from, nil
				}
				return from, err // the whole window is too new
			}
			return -1, err
		}
		for _, r := range records {
			if _, err := w.Write(r); err != nil {
				return -1, err
			}
			if err := w.WriteByte('\n'); err != nil {
				return -1, err
			}
		}
		if next == nil || *next > o.To || *next <= from {
			return -1, nil
		}
		if !pageWasFull(records, *next) {
			return *next, nil
		}
		from = *next
	}
}

// pageWasFull tells whether nextRecordsFrom follows a page cut by the
// records limit (it is then the last record's second + 1) rather than the
// records-available point, from which nothing can be had yet. Without
// monitoringDataTs in the records it cannot tell, and assumes full.
func pageWasFull(records []json.RawMessage, next int64) bool {
	if len(records) == 0 {
		return false
	}
	var last struct {
		Ts *int64 `json:"monitoringDataTs"`
	}
	if err := json.Unmarshal(records[len(records)-1], &last); err != nil || last.Ts == nil {
		return true
	}
	return *last.Ts+1 == next
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml; charset=UTF-8")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("query %s: HTTP status %s", url, resp.Status)
	}
	return resp, nil
}

func postOperationalData(ctx context.Context, hc *http.Client, url string, body []byte) ([]json.RawMessage, *int64, error) {
	resp, err := post(ctx, hc, url, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	return schema.ReadOperationalDataAnswer(resp.Header.Get("Content-Type"), io.LimitReader(resp.Body, maxAnswerBytes))
}

func queryHealth(ctx context.Context, hc *http.Client, url string, o QueryOptions, out io.Writer) error {
	resp, err := post(ctx, hc, url, schema.BuildQueryRequest(o.QuerySpec, 0))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return err
	}
	if f := schema.ParseFault(data); f != nil {
		return f
	}
	h, err := schema.ParseHealthAnswer(data)
	if err != nil {
		return err
	}
	b := schema.AppendHealthJSON(nil, h)
	b = append(b, '\n')
	_, err = out.Write(b)
	return err
}
