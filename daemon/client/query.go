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
	return queryRecords(ctx, hc, url, o, out)
}

func monitoringClientOf(cfg *daemon.Config) (schema.ClientID, bool) {
	mode, err := anchor.DetectMode(cfg.GlobalConf.Anchor, cfg.GlobalConf.Directory)
	if err != nil || mode == anchor.ModeStandalone {
		return schema.ClientID{}, false
	}
	return anchor.NewStaticDir(cfg.GlobalConf.Directory, anchor.StaticOptions{IgnoreExpiry: true}).MonitoringClient()
}

func queryRecords(ctx context.Context, hc *http.Client, url string, o QueryOptions, out io.Writer) error {
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	from := o.From
	for page := 0; ; page++ {
		records, next, err := postOperationalData(ctx, hc, url, schema.BuildQueryRequest(o.QuerySpec, from))
		if err != nil {
			var f *schema.Fault
			if page > 0 && errors.As(err, &f) && strings.Contains(f.String, "not available from") {
				// Paging reached the records-available offset: nothing more yet.
				return nil
			}
			return err
		}
		for _, r := range records {
			if _, err := w.Write(r); err != nil {
				return err
			}
			if err := w.WriteByte('\n'); err != nil {
				return err
			}
		}
		if next == nil || *next > o.To || *next <= from || !pageWasFull(records, *next) {
			return nil
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
