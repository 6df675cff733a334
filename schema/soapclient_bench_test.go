package schema_test

import (
	"bytes"
	"compress/gzip"
	"strconv"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// BenchmarkReadAnswer compares the readers of a 10,000-record answer:
// ReadOperationalDataAnswer (opmond query) and CountOperationalDataAnswer
// (opmond bench, which shares the daemon's machine).
func BenchmarkReadAnswer(b *testing.B) {
	recs := schematest.Records(10_000, 7, 1_760_000_000_000)
	doc := []byte(`{"records":[`)
	for i := range recs {
		if i > 0 {
			doc = append(doc, ',')
		}
		doc = schema.AppendRecordJSON(doc, &recs[i], schema.AllFields)
	}
	doc = append(doc, "]}"...)
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	zw.Write(doc)
	zw.Close()
	const boundary = "xroadBENCH"
	var ans bytes.Buffer
	ans.WriteString("--" + boundary + "\r\nContent-Type: text/xml; charset=UTF-8\r\n\r\n")
	ans.WriteString(`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Body><om:getSecurityServerOperationalDataResponse><om:recordsCount>` +
		strconv.Itoa(len(recs)) + `</om:recordsCount><om:records>cid:` + schema.AttachmentContentID + `</om:records></om:getSecurityServerOperationalDataResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>`)
	ans.WriteString("\r\n--" + boundary + "\r\nContent-Type: application/gzip\r\nContent-ID: <" + schema.AttachmentContentID + ">\r\n\r\n")
	ans.Write(z.Bytes())
	ans.WriteString("\r\n--" + boundary + "--\r\n")
	ct := `multipart/related; type="text/xml"; boundary=` + boundary
	data := ans.Bytes()
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			if recs, _, err := schema.ReadOperationalDataAnswer(ct, bytes.NewReader(data)); err != nil || len(recs) != 10_000 {
				b.Fatal(len(recs), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e4, "ns/record")
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if n, _, err := schema.CountOperationalDataAnswer(ct, bytes.NewReader(data)); err != nil || n != 10_000 {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e4, "ns/record")
	})
}
