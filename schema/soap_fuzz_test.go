package schema

import (
	"errors"
	"testing"
)

// FuzzParseQueryRequest checks that any request body yields either a
// *SOAPError whose fault document is well-formed, or a request whose
// responses are well-formed XML.
func FuzzParseQueryRequest(f *testing.F) {
	f.Add(readSOAPTestdata(f, "opdata_request.xml"))
	f.Add(readSOAPTestdata(f, "health_request.xml"))
	f.Add(billionLaughs())
	f.Add([]byte(xxeDoc))
	f.Add(opReq(f, "<env:Body>", `<env:Body xmlns="http://x-road.eu/xsd/op-monitoring.xsd" xmlns:i="http://x-road.eu/xsd/identifiers">`))
	f.Add(healthReq(f, "<om:filterCriteria>", "<om:filterCriteria/><!--", "</om:filterCriteria>", "-->"))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := ParseQueryRequest(body, "text/xml; charset=UTF-8")
		if err != nil {
			var se *SOAPError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SOAPError", err)
			}
			if err := wellFormedXML(FaultXML(se.FullCode(), se.String, "d")); err != nil {
				t.Fatalf("fault XML: %v", err)
			}
			return
		}
		if q.Operation != OpOperationalData && q.Operation != OpHealthData {
			t.Fatalf("operation %v", q.Operation)
		}
		if err := wellFormedXML(q.OperationalDataResponse(1, 2, true)); err != nil {
			t.Fatalf("operational data response: %v", err)
		}
		if err := wellFormedXML(q.HealthDataResponse(specHealthData())); err != nil {
			t.Fatalf("health data response: %v", err)
		}
	})
}
