package daemon

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/tlsconf"
)

// QueryOptions are the flags of `opmond query`.
type QueryOptions struct {
	ConfigFile string
	URL        string // base URL; "" = from the configuration
	Health     bool
	From, To   int64
	Client     *schema.ClientID // searchCriteria/client or filterCriteria/client
	Fields     []string
	As         *schema.ClientID // SOAP header client
	Server     *schema.ServerID // securityServer header
	HTTPClient *http.Client     // nil: built from the configuration
}

// UsageError is a mistake in the query's arguments (exit code 2).
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// maxAnswerBytes bounds what the client reads of one answer.
const maxAnswerBytes = 1 << 30

// RunQuery sends getSecurityServerOperationalData (following nextRecordsFrom
// until done, one JSON record per line on out) or getSecurityServerHealthData
// (one JSON document shaped as GET /api/v1/health).
func RunQuery(ctx context.Context, o QueryOptions, out io.Writer) error {
	cfg, err := LoadConfig(o.ConfigFile)
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

func monitoringClientOf(cfg *Config) (schema.ClientID, bool) {
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
		body := buildQueryRequest(o, from)
		records, next, err := postOperationalData(ctx, hc, url, body)
		if err != nil {
			var f *soapFault
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

// soapFault is a fault answer.
type soapFault struct{ Code, String string }

func (f *soapFault) Error() string { return "SOAP fault " + f.Code + ": " + f.String }

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
	return ReadOperationalDataAnswer(resp.Header.Get("Content-Type"), io.LimitReader(resp.Body, maxAnswerBytes))
}

// ReadOperationalDataAnswer reads a getSecurityServerOperationalData answer —
// opmond's or upstream's (as relayed by a security server) — and returns its
// records and nextRecordsFrom. A SOAP fault is returned as an error.
func ReadOperationalDataAnswer(contentType string, body io.Reader) ([]json.RawMessage, *int64, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, nil, fmt.Errorf("answer has a bad content type %q: %w", contentType, err)
	}
	if !strings.HasPrefix(strings.ToLower(mt), "multipart/") {
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, nil, err
		}
		if f := parseFault(data); f != nil {
			return nil, nil, f
		}
		return nil, nil, fmt.Errorf("answer is %s, not a multipart operational data answer", mt)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var soap, payload []byte
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read multipart answer: %w", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read multipart answer: %w", err)
		}
		switch {
		case soap == nil:
			soap = data
		case strings.Trim(p.Header.Get("Content-Id"), "<> ") == "operational-monitoring-data.json.gz":
			payload = data
		}
	}
	if soap == nil {
		return nil, nil, errors.New("answer has no SOAP part")
	}
	if f := parseFault(soap); f != nil {
		return nil, nil, f
	}
	vals := xmlValues(soap, "recordsCount", "nextRecordsFrom")
	var next *int64
	if s, ok := vals["nextRecordsFrom"]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("answer has a bad nextRecordsFrom %q", s)
		}
		next = &n
	}
	if payload == nil {
		return nil, nil, errors.New("answer has no operational-monitoring-data.json.gz attachment")
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, fmt.Errorf("attachment is not gzip: %w", err)
	}
	var doc struct {
		Records []json.RawMessage `json:"records"`
	}
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("attachment is not the expected JSON: %w", err)
	}
	if s, ok := vals["recordsCount"]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n != len(doc.Records) {
			return nil, nil, fmt.Errorf("answer says recordsCount %d but its attachment holds %d records", n, len(doc.Records))
		}
	}
	for i, r := range doc.Records {
		var b bytes.Buffer
		if err := json.Compact(&b, r); err == nil {
			doc.Records[i] = b.Bytes()
		}
	}
	return doc.Records, next, nil
}

// xmlValues returns the text of the first element with each local name.
func xmlValues(data []byte, names ...string) map[string]string {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]string{}
	d := xml.NewDecoder(bytes.NewReader(data))
	var cur string
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case xml.StartElement:
			cur = ""
			if want[t.Name.Local] {
				if _, seen := out[t.Name.Local]; !seen {
					cur = t.Name.Local
					text.Reset()
				}
			}
		case xml.CharData:
			if cur != "" {
				text.Write(t)
			}
		case xml.EndElement:
			if cur != "" && t.Name.Local == cur {
				out[cur] = text.String()
				cur = ""
			}
		}
	}
}

func parseFault(data []byte) *soapFault {
	if !bytes.Contains(data, []byte("Fault")) {
		return nil
	}
	v := xmlValues(data, "Fault", "faultcode", "faultstring")
	code, ok := v["faultcode"]
	if !ok {
		return nil
	}
	return &soapFault{Code: strings.TrimSpace(code), String: v["faultstring"]}
}

func queryHealth(ctx context.Context, hc *http.Client, url string, o QueryOptions, out io.Writer) error {
	resp, err := post(ctx, hc, url, buildQueryRequest(o, 0))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return err
	}
	if f := parseFault(data); f != nil {
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

// buildQueryRequest writes the SOAP request of `opmond query`.
func buildQueryRequest(o QueryOptions, from int64) []byte {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	id := func(tag, objType string, inst, class, code string, extra ...[2]string) {
		fmt.Fprintf(&b, `<%s id:objectType="%s"><id:xRoadInstance>%s</id:xRoadInstance><id:memberClass>%s</id:memberClass><id:memberCode>%s</id:memberCode>`,
			tag, objType, esc(inst), esc(class), esc(code))
		for _, e := range extra {
			fmt.Fprintf(&b, "<id:%s>%s</id:%s>", e[0], esc(e[1]), e[0])
		}
		fmt.Fprintf(&b, "</%s>", tag)
	}
	client := func(tag string, c schema.ClientID) {
		var extra [][2]string
		if c.HasSubsystem {
			extra = append(extra, [2]string{"subsystemCode", c.Subsystem})
		}
		id(tag, c.ObjectType(), c.Instance, c.MemberClass, c.MemberCode, extra...)
	}
	op := "getSecurityServerOperationalData"
	if o.Health {
		op = "getSecurityServerHealthData"
	}
	provider := o.As.Member()
	if o.Server != nil {
		provider = o.Server.Owner()
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` +
		`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xroad="http://x-road.eu/xsd/xroad.xsd" ` +
		`xmlns:id="http://x-road.eu/xsd/identifiers" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Header>`)
	client("xroad:client", *o.As)
	id("xroad:service", "SERVICE", provider.Instance, provider.MemberClass, provider.MemberCode, [2]string{"serviceCode", op})
	if s := o.Server; s != nil {
		id("xroad:securityServer", "SERVER", s.Instance, s.MemberClass, s.MemberCode, [2]string{"serverCode", s.ServerCode})
	}
	fmt.Fprintf(&b, "<xroad:id>%s</xroad:id><xroad:protocolVersion>4.0</xroad:protocolVersion></SOAP-ENV:Header><SOAP-ENV:Body>", uuid.NewString())
	if o.Health {
		b.WriteString("<om:getSecurityServerHealthData>")
		if o.Client != nil {
			b.WriteString("<om:filterCriteria>")
			client("om:client", *o.Client)
			b.WriteString("</om:filterCriteria>")
		}
		b.WriteString("</om:getSecurityServerHealthData>")
	} else {
		fmt.Fprintf(&b, "<om:getSecurityServerOperationalData><om:searchCriteria><om:recordsFrom>%d</om:recordsFrom><om:recordsTo>%d</om:recordsTo>", from, o.To)
		if o.Client != nil {
			client("om:client", *o.Client)
		}
		b.WriteString("</om:searchCriteria>")
		if len(o.Fields) > 0 {
			b.WriteString("<om:outputSpec>")
			for _, f := range o.Fields {
				fmt.Fprintf(&b, "<om:outputField>%s</om:outputField>", esc(f))
			}
			b.WriteString("</om:outputSpec>")
		}
		b.WriteString("</om:getSecurityServerOperationalData>")
	}
	b.WriteString("</SOAP-ENV:Body></SOAP-ENV:Envelope>")
	return b.Bytes()
}
