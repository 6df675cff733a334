package schema

import (
	"crypto/rand"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AttachmentContentID is the Content-ID of the operational data attachment
// (without angle brackets); the SOAP body refers to it as cid:<id>.
const AttachmentContentID = "operational-monitoring-data.json.gz"

// OperationalDataResponse builds the SOAP part of a
// getSecurityServerOperationalData answer: the request envelope with the
// Body content replaced by the response element (§3.6, §3.7).
func (q *QueryRequest) OperationalDataResponse(recordsCount int, nextRecordsFrom int64, hasNext bool) []byte {
	b := make([]byte, 0, len(q.head)+len(q.tail)+384)
	b = append(b, q.head...)
	w := q.responseWriter(b)
	w.open("getSecurityServerOperationalDataResponse", false)
	w.int("recordsCount", int64(recordsCount))
	w.text("records", "cid:"+AttachmentContentID)
	if hasNext {
		w.int("nextRecordsFrom", nextRecordsFrom)
	}
	w.end("getSecurityServerOperationalDataResponse")
	return append(w.b, q.tail...)
}

// HealthDataResponse builds a getSecurityServerHealthData answer (§3.8).
// Services are written in the order given.
func (q *QueryRequest) HealthDataResponse(h *HealthData) []byte {
	if h == nil {
		h = &HealthData{}
	}
	b := make([]byte, 0, len(q.head)+len(q.tail)+512+1536*len(h.Services))
	b = append(b, q.head...)
	w := q.responseWriter(b)
	w.open("getSecurityServerHealthDataResponse", true)
	w.int("monitoringStartupTimestamp", h.MonitoringStartupMs)
	w.int("statisticsPeriodSeconds", int64(h.StatisticsPeriodSeconds))
	if len(h.Services) == 0 {
		w.empty("servicesEvents")
	} else {
		w.start("servicesEvents")
		for i := range h.Services {
			w.serviceEvents(&h.Services[i])
		}
		w.end("servicesEvents")
	}
	w.end("getSecurityServerHealthDataResponse")
	return append(w.b, q.tail...)
}

// soapResponseWriter appends the compact response element with the
// prefixes chosen for the request's scope.
type soapResponseWriter struct {
	b      []byte
	om, id string // "om:" (or "" for the default namespace) and "id:"
	q      *QueryRequest
}

func (q *QueryRequest) responseWriter(b []byte) *soapResponseWriter {
	w := &soapResponseWriter{b: b, q: q, id: q.idPrefix + ":"}
	if q.omPrefix != "" {
		w.om = q.omPrefix + ":"
	}
	return w
}

func (w *soapResponseWriter) open(name string, needID bool) {
	w.b = append(append(append(w.b, '<'), w.om...), name...)
	if w.q.omDecl {
		w.b = append(w.b, " xmlns:"...)
		w.b = append(w.b, w.q.omPrefix...)
		w.b = append(w.b, `="`+NSOpMonitoring+`"`...)
	}
	if needID && w.q.idDecl {
		w.b = append(w.b, " xmlns:"...)
		w.b = append(w.b, w.q.idPrefix...)
		w.b = append(w.b, `="`+NSIdentifiers+`"`...)
	}
	w.b = append(w.b, '>')
}

func (w *soapResponseWriter) start(name string) {
	w.b = append(append(append(w.b, '<'), w.om...), name...)
	w.b = append(w.b, '>')
}

func (w *soapResponseWriter) end(name string) {
	w.b = append(append(append(w.b, "</"...), w.om...), name...)
	w.b = append(w.b, '>')
}

func (w *soapResponseWriter) empty(name string) {
	w.b = append(append(append(w.b, '<'), w.om...), name...)
	w.b = append(w.b, "/>"...)
}

func (w *soapResponseWriter) int(name string, v int64) {
	w.start(name)
	w.b = strconv.AppendInt(w.b, v, 10)
	w.end(name)
}

func (w *soapResponseWriter) double(name string, v float64) {
	w.start(name)
	w.b = append(w.b, FormatJavaDouble(v)...)
	w.end(name)
}

func (w *soapResponseWriter) text(name, v string) {
	w.start(name)
	w.b = appendEscapeText(w.b, v)
	w.end(name)
}

func (w *soapResponseWriter) idText(name, v string) {
	w.b = append(append(append(w.b, '<'), w.id...), name...)
	w.b = append(w.b, '>')
	w.b = appendEscapeText(w.b, v)
	w.b = append(append(append(w.b, "</"...), w.id...), name...)
	w.b = append(w.b, '>')
}

func (w *soapResponseWriter) serviceEvents(se *ServiceEvents) {
	w.start("serviceEvents")
	w.b = append(append(append(w.b, '<'), w.om...), "service "...)
	w.b = append(append(w.b, w.id...), `objectType="SERVICE">`...)
	p := se.Service.Provider
	w.idText("xRoadInstance", p.Instance)
	w.idText("memberClass", p.MemberClass)
	w.idText("memberCode", p.MemberCode)
	if p.HasSubsystem {
		w.idText("subsystemCode", p.Subsystem)
	}
	w.idText("serviceCode", se.Service.Code)
	if se.Service.HasVersion {
		w.idText("serviceVersion", se.Service.Version)
	}
	w.end("service")
	if se.HasLastSuccessful {
		w.int("lastSuccessfulRequestTimestamp", se.LastSuccessfulMs)
	}
	if se.HasLastUnsuccessful {
		w.int("lastUnsuccessfulRequestTimestamp", se.LastUnsuccessfulMs)
	}
	if se.HasServiceType {
		w.text("serviceType", se.ServiceType)
	}
	w.start("lastPeriodStatistics")
	w.int("successfulRequestCount", int64(se.SuccessfulCount))
	w.int("unsuccessfulRequestCount", int64(se.UnsuccessfulCount))
	for _, g := range se.StatGroups() {
		w.int(g.Names[0], g.Stat.Min)
		w.double(g.Names[1], g.Stat.Avg)
		w.int(g.Names[2], g.Stat.Max)
		w.double(g.Names[3], g.Stat.StdDev)
	}
	w.end("lastPeriodStatistics")
	w.end("serviceEvents")
}

// FaultXML returns the SOAP 1.1 fault document exactly as the reference
// writes it (§3.9); code is the full fault code (FaultPrefix + inner).
// The code is escaped like the rest, which changes nothing for real codes
// and keeps a code derived from a request well-formed.
func FaultXML(code, faultString, detail string) []byte {
	b := make([]byte, 0, 320+len(code)+len(faultString)+len(detail))
	b = append(b, soapDeclaration+`<SOAP-ENV:Envelope xmlns:SOAP-ENV="`+NSSOAPEnvelope+`"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>`...)
	b = appendEscapeXML10(b, code)
	b = append(b, "</faultcode><faultstring>"...)
	b = appendEscapeXML10(b, faultString)
	b = append(b, `</faultstring><faultactor></faultactor><detail><faultDetail xmlns="">`...)
	b = appendEscapeXML10(b, detail)
	return append(b, "</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"...)
}

// appendEscapeXML10 escapes like Apache Commons' escapeXml10, which the
// reference applies to fault strings: the five entities, C1 controls as
// numeric references, characters XML 1.0 cannot hold removed.
func appendEscapeXML10(b []byte, s string) []byte { return appendEscaped(b, s, escapeXML10) }

// appendEscapeText escapes element text as a DOM serialiser does; quotes
// stay literal and characters XML cannot hold are dropped.
func appendEscapeText(b []byte, s string) []byte { return appendEscaped(b, s, escapeText) }

// appendEscapeAttr escapes an attribute value for a double-quoted
// attribute; whitespace characters are referenced so they survive
// attribute-value normalisation.
func appendEscapeAttr(b []byte, s string) []byte { return appendEscaped(b, s, escapeAttr) }

// appendEscaped appends s with each rune that repl names replaced, and
// characters XML 1.0 cannot hold dropped.
func appendEscaped(b []byte, s string, repl func(rune) string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if e := repl(r); e != "" {
			b = append(b, e...)
		} else if xmlChar(r, size) {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// escapeMarkup is what every context escapes.
func escapeMarkup(r rune) string {
	switch r {
	case '&':
		return "&amp;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	}
	return ""
}

func escapeXML10(r rune) string {
	switch {
	case r == '"':
		return "&quot;"
	case r == '\'':
		return "&apos;"
	case r >= 0x7f && r <= 0x84 || r >= 0x86 && r <= 0x9f:
		return "&#" + strconv.Itoa(int(r)) + ";"
	}
	return escapeMarkup(r)
}

func escapeText(r rune) string {
	if r == '\r' {
		return "&#13;"
	}
	return escapeMarkup(r)
}

func escapeAttr(r rune) string {
	switch r {
	case '"':
		return "&quot;"
	case '\t':
		return "&#9;"
	case '\n':
		return "&#10;"
	case '\r':
		return "&#13;"
	}
	return escapeMarkup(r)
}

// xmlChar reports whether r (decoded with size bytes) is a valid XML 1.0
// character; invalid UTF-8 is not.
func xmlChar(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return false
	case r == '\t' || r == '\n' || r == '\r':
		return true
	case r < 0x20:
		return false
	case r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
		return false
	}
	return true
}

// FormatJavaDouble formats v as Java's Double.toString does (JDK 19+):
// the shortest decimal that round-trips, plain for 1e-3 <= |v| < 1e7 with
// at least one fractional digit, otherwise d.dddE<n>.
func FormatJavaDouble(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "Infinity"
	case math.IsInf(v, -1):
		return "-Infinity"
	case v == 0:
		if math.Signbit(v) {
			return "-0.0"
		}
		return "0.0"
	}
	var sb strings.Builder
	if v < 0 {
		sb.WriteByte('-')
		v = -v
	}
	// Shortest round-trip digits d1.d2d3...e<exp>.
	e := strconv.FormatFloat(v, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	if len(mant) == 1 {
		// Java picks the closest decimal of length 1 or 2 when the
		// shortest has one digit (Double.MIN_VALUE is 4.9E-324, not 5E-324).
		if two := strconv.FormatFloat(v, 'e', 1, 64); two[2] != '0' {
			if f, err := strconv.ParseFloat(two, 64); err == nil && f == v {
				e = two
				mant, expStr, _ = strings.Cut(e, "e")
			}
		}
	}
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	if v >= 1e-3 && v < 1e7 {
		if exp >= 0 {
			if len(digits) <= exp+1 {
				sb.WriteString(digits)
				sb.WriteString(strings.Repeat("0", exp+1-len(digits)))
				sb.WriteString(".0")
			} else {
				sb.WriteString(digits[:exp+1])
				sb.WriteByte('.')
				sb.WriteString(digits[exp+1:])
			}
		} else {
			sb.WriteString("0.")
			sb.WriteString(strings.Repeat("0", -exp-1))
			sb.WriteString(digits)
		}
		return sb.String()
	}
	sb.WriteByte(digits[0])
	sb.WriteByte('.')
	if len(digits) > 1 {
		sb.WriteString(digits[1:])
	} else {
		sb.WriteByte('0')
	}
	sb.WriteByte('E')
	sb.WriteString(strconv.Itoa(exp))
	return sb.String()
}

const boundaryLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewBoundary returns a multipart boundary as the reference makes them:
// "xroad" followed by 30 random ASCII letters.
func NewBoundary() string {
	var out [35]byte
	copy(out[:], "xroad")
	n := 5
	var buf [48]byte
	for n < len(out) {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails (Go 1.24+)
		for _, c := range buf {
			// Rejection sampling keeps the letters uniform: 208 = 4*52.
			if c < 208 && n < len(out) {
				out[n] = boundaryLetters[c%52]
				n++
			}
		}
	}
	return string(out[:])
}

// MultipartContentType is the Content-Type of an operational data answer.
func MultipartContentType(boundary string) string {
	return `multipart/related; type="text/xml"; charset=UTF-8; boundary=` + boundary
}

// WriteOperationalDataMultipart writes the multipart/related body of §3.7:
// the SOAP part (content type = the request's Content-Type value) and the
// gzip attachment. Strict clients parse these bytes with fixed patterns,
// so header spelling, case and CRLFs are exact.
func WriteOperationalDataMultipart(w io.Writer, boundary, soapContentType string, soapXML, gzipPayload []byte) error {
	if err := WriteMultipartHead(w, boundary, soapContentType, soapXML); err != nil {
		return err
	}
	if _, err := w.Write(gzipPayload); err != nil {
		return err
	}
	return WriteMultipartTail(w, boundary)
}

// WriteMultipartHead writes everything before the attachment bytes, so a
// caller can stream the gzip payload and then call WriteMultipartTail.
func WriteMultipartHead(w io.Writer, boundary, soapContentType string, soapXML []byte) error {
	// A header value cannot carry line breaks; dropping them keeps a
	// hostile Content-Type from adding part headers.
	ct := strings.NewReplacer("\r", "", "\n", "").Replace(soapContentType)
	b := make([]byte, 0, len(soapXML)+2*len(boundary)+len(ct)+160)
	b = append(b, "--"...)
	b = append(b, boundary...)
	b = append(b, "\r\ncontent-type:"...)
	b = append(b, ct...)
	b = append(b, "\r\n\r\n"...)
	b = append(b, soapXML...)
	b = append(b, "\r\n--"...)
	b = append(b, boundary...)
	b = append(b, "\r\ncontent-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <"+AttachmentContentID+">\r\n\r\n"...)
	_, err := w.Write(b)
	return err
}

// WriteMultipartTail writes the closing delimiter after the attachment.
func WriteMultipartTail(w io.Writer, boundary string) error {
	_, err := io.WriteString(w, "\r\n--"+boundary+"--\r\n")
	return err
}
