package schema

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
)

// The client side of the query interface: the requests `opmond query`
// sends and readers for the answers of opmond and of upstream's daemon.

// QuerySpec is what a query request asks.
type QuerySpec struct {
	As     *ClientID // the SOAP header client (required)
	Server *ServerID // the securityServer header; nil = none
	Health bool      // getSecurityServerHealthData instead of operational data
	To     int64     // recordsTo (operational data)
	Client *ClientID // searchCriteria/client, or filterCriteria/client for health
	Fields []string  // outputSpec (operational data)
}

// BuildQueryRequest writes the SOAP request of q with recordsFrom from.
func BuildQueryRequest(q QuerySpec, from int64) []byte {
	b := make([]byte, 0, 1536)
	id := func(tag, objType string, inst, class, code string, extra ...[2]string) {
		b = append(b, '<')
		b = append(b, tag...)
		b = append(b, ` id:objectType="`...)
		b = append(b, objType...)
		b = append(b, `">`...)
		for _, e := range append([][2]string{{"xRoadInstance", inst}, {"memberClass", class}, {"memberCode", code}}, extra...) {
			b = append(b, "<id:"+e[0]+">"...)
			b = appendEscapeText(b, e[1])
			b = append(b, "</id:"+e[0]+">"...)
		}
		b = append(b, "</"+tag+">"...)
	}
	client := func(tag string, c ClientID) {
		var extra [][2]string
		if c.HasSubsystem {
			extra = append(extra, [2]string{"subsystemCode", c.Subsystem})
		}
		id(tag, c.ObjectType(), c.Instance, c.MemberClass, c.MemberCode, extra...)
	}
	op := "getSecurityServerOperationalData"
	if q.Health {
		op = "getSecurityServerHealthData"
	}
	provider := q.As.Member()
	if q.Server != nil {
		provider = q.Server.Owner()
	}
	b = append(b, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xroad="http://x-road.eu/xsd/xroad.xsd" `+
		`xmlns:id="http://x-road.eu/xsd/identifiers" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Header>`...)
	client("xroad:client", *q.As)
	id("xroad:service", "SERVICE", provider.Instance, provider.MemberClass, provider.MemberCode, [2]string{"serviceCode", op})
	if s := q.Server; s != nil {
		id("xroad:securityServer", "SERVER", s.Instance, s.MemberClass, s.MemberCode, [2]string{"serverCode", s.ServerCode})
	}
	b = append(b, "<xroad:id>"...)
	b = append(b, NewUUID()...)
	b = append(b, "</xroad:id><xroad:protocolVersion>4.0</xroad:protocolVersion></SOAP-ENV:Header><SOAP-ENV:Body>"...)
	if q.Health {
		b = append(b, "<om:getSecurityServerHealthData>"...)
		if q.Client != nil {
			b = append(b, "<om:filterCriteria>"...)
			client("om:client", *q.Client)
			b = append(b, "</om:filterCriteria>"...)
		}
		b = append(b, "</om:getSecurityServerHealthData>"...)
	} else {
		b = append(b, "<om:getSecurityServerOperationalData><om:searchCriteria><om:recordsFrom>"...)
		b = strconv.AppendInt(b, from, 10)
		b = append(b, "</om:recordsFrom><om:recordsTo>"...)
		b = strconv.AppendInt(b, q.To, 10)
		b = append(b, "</om:recordsTo>"...)
		if q.Client != nil {
			client("om:client", *q.Client)
		}
		b = append(b, "</om:searchCriteria>"...)
		if len(q.Fields) > 0 {
			b = append(b, "<om:outputSpec>"...)
			for _, f := range q.Fields {
				b = append(b, "<om:outputField>"...)
				b = appendEscapeText(b, f)
				b = append(b, "</om:outputField>"...)
			}
			b = append(b, "</om:outputSpec>"...)
		}
		b = append(b, "</om:getSecurityServerOperationalData>"...)
	}
	return append(b, "</SOAP-ENV:Body></SOAP-ENV:Envelope>"...)
}

// Fault is a SOAP fault answer as received (Code with its prefix).
type Fault struct{ Code, String string }

func (f *Fault) Error() string { return "SOAP fault " + f.Code + ": " + f.String }

// ParseFault returns the fault in data, or nil when it is not one.
func ParseFault(data []byte) *Fault {
	if !bytes.Contains(data, []byte("Fault")) {
		return nil
	}
	v := xmlValues(data, "Fault", "faultcode", "faultstring")
	code, ok := v["faultcode"]
	if !ok {
		return nil
	}
	return &Fault{Code: strings.TrimSpace(code), String: v["faultstring"]}
}

// ReadOperationalDataAnswer reads a getSecurityServerOperationalData answer —
// opmond's or upstream's (as relayed by a security server) — and returns its
// records (compacted) and nextRecordsFrom. A SOAP fault is returned as a
// *Fault error.
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
		if f := ParseFault(data); f != nil {
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
		case strings.Trim(p.Header.Get("Content-Id"), "<> ") == AttachmentContentID:
			payload = data
		}
	}
	if soap == nil {
		return nil, nil, errors.New("answer has no SOAP part")
	}
	if f := ParseFault(soap); f != nil {
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
		return nil, nil, errors.New("answer has no " + AttachmentContentID + " attachment")
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
