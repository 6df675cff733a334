package schema

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// gz is s gzip-compressed.
func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCountRecords: the count of valid attachments, strings holding
// brackets, quotes and escapes included, and an error for the broken ones.
func TestCountRecords(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want int // -1: an error
	}{
		{`{"records":[]}`, 0},
		{`{"records":[]}` + " \n\t\r", 0},
		{`{"records":[{}]}`, 1},
		{`{"records":[{"a":1},{"b":[1,{"c":2}]},{"s":"}]{[,\"\\"}]}`, 3},
		{`{"records":[{"s":"\\"},{"t":"\\\""}]}`, 2},
		{`{"records":[{"x":{"y":{"z":[[],{}]}}}]}`, 1},
		{`{"records":[{"a":1}]`, -1},           // ends early
		{`{"records":[{"a":1}]}}`, -1},         // closes more than it opens
		{`{"records":[{"a":1}]} x`, -1},        // goes on after its end
		{`{"records":[{"a":1}}}`, -1},          // the array closed by a brace
		{`{"records":[{"a":"1}]}`, -1},         // a string that never ends
		{`{"records":{}}`, -1},                 // not an array
		{` {"records":[]}`, -1},                // not as the daemon writes it
		{`{"records":[{"a":1}]]`, -1},          // the object closed by a bracket
		{`{"records":[{"a":tru}]}`, 1},         // tokens are not checked
		{`{"records":[{"a":1}]}` + "\x00", -1}, // not white space
	} {
		n, err := countRecords(bytes.NewReader([]byte(c.doc)))
		switch {
		case c.want < 0 && err == nil:
			t.Errorf("%s: %d records, want an error", c.doc, n)
		case c.want >= 0 && (err != nil || n != c.want):
			t.Errorf("%s: %d records (%v), want %d", c.doc, n, err, c.want)
		}
	}
}

// TestCountRecordsAgreesWithJSON: on generated documents of records with
// nested values and hostile strings, the count is encoding/json's.
func TestCountRecordsAgreesWithJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	alphabet := []string{"a", "\"", "\\", "{", "}", "[", "]", ",", ":", " ", "é", "\u2028", "\x01"}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(6); {
		case k == 0 && depth < 4:
			m := map[string]any{}
			for range rng.IntN(4) {
				m[strconv.Itoa(rng.IntN(100))] = value(depth + 1)
			}
			return m
		case k == 1 && depth < 4:
			a := make([]any, rng.IntN(4))
			for i := range a {
				a[i] = value(depth + 1)
			}
			return a
		case k == 2:
			var b strings.Builder
			for range rng.IntN(8) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			return b.String()
		case k == 3:
			return rng.Float64() < 0.5
		default:
			return rng.IntN(1 << 40)
		}
	}
	for range 300 {
		recs := make([]map[string]any, rng.IntN(40))
		for i := range recs {
			recs[i] = map[string]any{"monitoringDataTs": rng.IntN(1 << 31), "v": value(0)}
		}
		doc, err := json.Marshal(map[string]any{"records": recs})
		if err != nil {
			t.Fatal(err)
		}
		n, err := countRecords(bytes.NewReader(doc))
		if err != nil || n != len(recs) {
			t.Fatalf("%s: %d records (%v), want %d", doc, n, err, len(recs))
		}
	}
}

// TestCountOperationalDataAnswer: the counting reader agrees with the full
// one on an answer of the daemon's encoder, and refuses a wrong
// recordsCount and a corrupt attachment.
func TestCountOperationalDataAnswer(t *testing.T) {
	const boundary = "xroadTESTBOUNDARY"
	answer := func(count int, payload []byte) []byte {
		var b bytes.Buffer
		b.WriteString("--" + boundary + "\r\nContent-Type: text/xml; charset=UTF-8\r\n\r\n")
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Body><om:getSecurityServerOperationalDataResponse><om:recordsCount>` +
			strconv.Itoa(count) + `</om:recordsCount><om:records>cid:` + AttachmentContentID + `</om:records><om:nextRecordsFrom>1700000001</om:nextRecordsFrom></om:getSecurityServerOperationalDataResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>`)
		b.WriteString("\r\n--" + boundary + "\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <" + AttachmentContentID + ">\r\n\r\n")
		b.Write(payload)
		b.WriteString("\r\n--" + boundary + "--\r\n")
		return b.Bytes()
	}
	ct := `multipart/related; type="text/xml"; boundary=` + boundary
	doc := `{"records":[{"a":"}"},{"b":[1,2]},{}]}`
	full, next, err := ReadOperationalDataAnswer(ct, bytes.NewReader(answer(3, gz(t, doc))))
	if err != nil || len(full) != 3 || next == nil || *next != 1700000001 {
		t.Fatalf("full reader: %d records, next %v, %v", len(full), next, err)
	}
	n, next, err := CountOperationalDataAnswer(ct, bytes.NewReader(answer(3, gz(t, doc))))
	if err != nil || n != 3 || next == nil || *next != 1700000001 {
		t.Fatalf("count: %d records, next %v, %v", n, next, err)
	}
	if _, _, err := CountOperationalDataAnswer(ct, bytes.NewReader(answer(4, gz(t, doc)))); err == nil || !strings.Contains(err.Error(), "recordsCount 4") {
		t.Errorf("a wrong recordsCount: %v", err)
	}
	bad := gz(t, doc)
	bad[len(bad)-6] ^= 1 // the CRC-32
	if _, _, err := CountOperationalDataAnswer(ct, bytes.NewReader(answer(3, bad))); err == nil {
		t.Error("a corrupt attachment was counted")
	}
	fault := `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Server.ServerProxy.X</faultcode><faultstring>no</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>`
	var f *Fault
	if _, _, err := CountOperationalDataAnswer("text/xml; charset=UTF-8", strings.NewReader(fault)); err == nil || !errors.As(err, &f) || f.String != "no" {
		t.Errorf("a fault: %v", err)
	}
}
