package schema

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The -update flag rewrites golden files. It is registered only if another
// test file of the package has not registered it already.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const (
	soapTestCT       = "text/xml; charset=UTF-8"
	soapSpecBoundary = "xroadKdTqmWpZrYbNcVxLsHgFjAeUoIiPlM"
	soapSpecUUID     = "6a1f0c3e-8b2d-4e7a-9c51-3d4e5f6a7b8c"
)

var (
	uuidRE     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	boundaryRE = regexp.MustCompile(`xroad[A-Za-z]{30}`)
)

func readSOAPTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "soap", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGolden compares got with a golden file, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "soap", name)
	if updateGolden() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s mismatch\n got: %q\nwant: %q", name, got, want)
	}
}

func mustParseQuery(t testing.TB, body []byte) *QueryRequest {
	t.Helper()
	q, err := ParseQueryRequest(body, soapTestCT)
	if err != nil {
		t.Fatalf("ParseQueryRequest: %v", err)
	}
	return q
}

// wellFormedXML checks a document with namespace awareness: tags match and
// every prefix is bound.
func wellFormedXML(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []xml.Name
	var scopes []map[string]bool
	bound := func(p string) bool {
		if p == "" || p == "xml" {
			return true
		}
		for i := len(scopes) - 1; i >= 0; i-- {
			if scopes[i][p] {
				return true
			}
		}
		return false
	}
	roots := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				roots++
			}
			m := map[string]bool{}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" {
					m[a.Name.Local] = true
				}
			}
			scopes = append(scopes, m)
			if !bound(t.Name.Space) {
				return fmt.Errorf("unbound prefix %q on <%s>", t.Name.Space, t.Name.Local)
			}
			for _, a := range t.Attr {
				if a.Name.Space != "xmlns" && !bound(a.Name.Space) {
					return fmt.Errorf("unbound attribute prefix %q", a.Name.Space)
				}
			}
			stack = append(stack, t.Name)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != t.Name {
				return fmt.Errorf("mismatched end tag %v", t.Name)
			}
			stack = stack[:len(stack)-1]
			scopes = scopes[:len(scopes)-1]
		case xml.Directive:
			return errors.New("directive in output")
		}
	}
	if len(stack) != 0 || roots != 1 {
		return fmt.Errorf("unclosed elements %v or %d roots", stack, roots)
	}
	return nil
}

func TestSOAPGoldenOperationalData(t *testing.T) {
	q := mustParseQuery(t, readSOAPTestdata(t, "opdata_request.xml"))

	wantClient := ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234"}
	if q.Client != wantClient || q.Operation != OpOperationalData || q.ID != "a3f9c2d4-51b7-4e08-9d6a-7c1e2b3f4a5d" ||
		q.UserID != "EE38001010000" || q.ProtocolVersion != "4.0" || q.Issue != "" {
		t.Errorf("header = %+v", q)
	}
	if want := (ServiceID{Provider: wantClient, Code: ServiceOperationalData}); q.Service != want {
		t.Errorf("service = %+v", q.Service)
	}
	if q.SecurityServer == nil || *q.SecurityServer != (ServerID{"DEV", "COM", "1234", "ss1"}) {
		t.Errorf("securityServer = %+v", q.SecurityServer)
	}
	if q.RecordsFrom != 1760004000 || q.RecordsTo != 1760005000 {
		t.Errorf("window = %d..%d", q.RecordsFrom, q.RecordsTo)
	}
	wantSearch := ClientID{Instance: "DEV", MemberClass: "GOV", MemberCode: "5678", Subsystem: "WeatherService", HasSubsystem: true}
	if q.SearchClient == nil || *q.SearchClient != wantSearch {
		t.Errorf("search client = %+v", q.SearchClient)
	}
	wantFields := []string{"monitoringDataTs", "securityServerInternalIp", "securityServerType", "requestInTs",
		"responseOutTs", "serviceCode", "serviceVersion", "succeeded", "faultCode"}
	if !reflect.DeepEqual(q.OutputFields, wantFields) {
		t.Errorf("output fields = %q", q.OutputFields)
	}
	if q.FilterClient != nil {
		t.Errorf("filter client set")
	}

	soapXML := q.OperationalDataResponse(2, 1760004640, true)
	if err := wellFormedXML(soapXML); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	boundary := NewBoundary()
	if err := WriteOperationalDataMultipart(&buf, boundary, soapTestCT, soapXML, []byte("<gzip bytes>")); err != nil {
		t.Fatal(err)
	}
	got := boundaryRE.ReplaceAll(buf.Bytes(), []byte(soapSpecBoundary))
	checkGolden(t, "opdata_response.golden", got)
}

func specHealthData() *HealthData {
	catalog := ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234", Subsystem: "Catalog", HasSubsystem: true}
	return &HealthData{
		MonitoringStartupMs:     1760000012345,
		StatisticsPeriodSeconds: 600,
		Services: []ServiceEvents{
			{
				Service:             ServiceID{Provider: catalog, Code: "getPrices", Version: "v1", HasVersion: true},
				LastUnsuccessfulMs:  1760004655210,
				HasLastUnsuccessful: true,
				ServiceType:         "WSDL",
				HasServiceType:      true,
				UnsuccessfulCount:   2,
			},
			{
				Service:           ServiceID{Provider: catalog, Code: "products"},
				LastSuccessfulMs:  1760004610093,
				HasLastSuccessful: true,
				ServiceType:       "OPENAPI3",
				HasServiceType:    true,
				SuccessfulCount:   3,
				RequestDuration:   Stat{Min: 91, Max: 121, Avg: 106, StdDev: 15},
				RequestSize:       &Stat{Min: 388, Max: 400, Avg: 392, StdDev: math.Sqrt(48)},
				ResponseSize:      &Stat{Min: 5120, Max: 5180, Avg: 5150, StdDev: 30},
			},
		},
	}
}

func TestSOAPGoldenHealthData(t *testing.T) {
	q := mustParseQuery(t, readSOAPTestdata(t, "health_request.xml"))
	if q.Operation != OpHealthData || q.SecurityServer != nil {
		t.Errorf("request = %+v", q)
	}
	want := ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234", Subsystem: "Catalog", HasSubsystem: true}
	if q.FilterClient == nil || *q.FilterClient != want {
		t.Errorf("filter client = %+v", q.FilterClient)
	}
	got := q.HealthDataResponse(specHealthData())
	if err := wellFormedXML(got); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "health_response.golden", got)
}

func TestFaultXMLGolden(t *testing.T) {
	got := FaultXML(FaultPrefix+FaultInvalidRequest, "Records to timestamp is earlier than records from timestamp", NewUUID())
	got = uuidRE.ReplaceAll(got, []byte(soapSpecUUID))
	checkGolden(t, "fault.golden", got)
}

func TestFaultXMLEscaping(t *testing.T) {
	got := string(FaultXML("server.serverproxy.opmonitor.internal_error",
		"Unknown service: 'SERVICE:A/B/C/<x>&\"y\"\x01\u0080'", "d&"))
	want := `<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault>` +
		`<faultcode>server.serverproxy.opmonitor.internal_error</faultcode>` +
		`<faultstring>Unknown service: &apos;SERVICE:A/B/C/&lt;x&gt;&amp;&quot;y&quot;&#128;&apos;</faultstring>` +
		`<faultactor></faultactor><detail><faultDetail xmlns="">d&amp;</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if err := wellFormedXML([]byte(got)); err != nil {
		t.Error(err)
	}
}

// opReq returns the §13.2 request with replacements applied (pairs of old,
// new; each old must occur).
func opReq(t testing.TB, repl ...string) []byte {
	t.Helper()
	return soapEdit(t, readSOAPTestdata(t, "opdata_request.xml"), repl...)
}

func healthReq(t testing.TB, repl ...string) []byte {
	t.Helper()
	return soapEdit(t, readSOAPTestdata(t, "health_request.xml"), repl...)
}

func soapEdit(t testing.TB, b []byte, repl ...string) []byte {
	t.Helper()
	s := string(b)
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("request has no %q", repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return []byte(s)
}

const (
	opSearch = `      <opm:searchCriteria>
        <opm:recordsFrom>1760004000</opm:recordsFrom>
        <opm:recordsTo>1760005000</opm:recordsTo>`
	opClient = `        <opm:client ident:objectType="SUBSYSTEM">
          <ident:xRoadInstance>DEV</ident:xRoadInstance>
          <ident:memberClass>GOV</ident:memberClass>
          <ident:memberCode>5678</ident:memberCode>
          <ident:subsystemCode>WeatherService</ident:subsystemCode>
        </opm:client>`
	hdrClient = `    <xrd:client ident:objectType="MEMBER">
      <ident:xRoadInstance>DEV</ident:xRoadInstance>
      <ident:memberClass>COM</ident:memberClass>
      <ident:memberCode>1234</ident:memberCode>
    </xrd:client>`
	hdrService = `    <xrd:service ident:objectType="SERVICE">
      <ident:xRoadInstance>DEV</ident:xRoadInstance>
      <ident:memberClass>COM</ident:memberClass>
      <ident:memberCode>1234</ident:memberCode>
      <ident:serviceCode>getSecurityServerOperationalData</ident:serviceCode>
    </xrd:service>`
	opBodyOpen  = "<opm:getSecurityServerOperationalData>"
	opBodyClose = "</opm:getSecurityServerOperationalData>"
	nsOMQuoted  = `"http://x-road.eu/xsd/op-monitoring.xsd"`
)

func billionLaughs() []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">`)
	prev := "lol"
	for i := 1; i <= 9; i++ {
		name := fmt.Sprintf("lol%d", i)
		fmt.Fprintf(&b, `<!ENTITY %s "%s">`, name, strings.Repeat("&"+prev+";", 10))
		prev = name
	}
	b.WriteString(`]><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>&lol9;</env:Body></env:Envelope>`)
	return []byte(b.String())
}

const xxeDoc = `<?xml version="1.0"?><!DOCTYPE env:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
	`<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Header/><env:Body><x>&xxe;</x></env:Body></env:Envelope>`

// TestParseQueryRequestFaults has one case per fault this layer raises
// (§3.3 step 4, 6, 7; §3.9), checking code and string.
func TestParseQueryRequestFaults(t *testing.T) {
	const uuidPrefix = `^\[[0-9a-f-]{36}\] \[SYSTEM\] invalid_client_identifier: `
	cases := []struct {
		name string
		body []byte
		ct   string
		code string
		str  string // exact faultstring, or a regexp when it starts with ^
	}{
		{name: "not well-formed", body: []byte(`<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>`),
			code: FaultInvalidSOAP, str: "^XML document structures must start and end"},
		{name: "mismatched tags", body: opReq(t, "</env:Header>", "</env:Headerx>"),
			code: FaultInvalidSOAP, str: `^The element type "env:Header" must be terminated`},
		{name: "syntax error", body: opReq(t, "<xrd:id>", "<xrd:id a=>"),
			code: FaultInvalidSOAP, str: "^XML syntax error"},
		{name: "empty document", body: nil, code: FaultInvalidSOAP, str: "Malformed SOAP message: envelope missing"},
		{name: "root is not Envelope", body: []byte(`<Envelope/>`), code: FaultInvalidSOAP, str: "Malformed SOAP message: envelope missing"},
		{name: "SOAP 1.2 envelope", body: opReq(t, "http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope"),
			code: FaultInvalidSOAP, str: "Malformed SOAP message: envelope missing"},
		{name: "doctype", body: opReq(t, "<env:Envelope", "<!DOCTYPE x><env:Envelope"), code: FaultInvalidSOAP, str: soapDoctypeMessage},
		{name: "billion laughs", body: billionLaughs(), code: FaultInvalidSOAP, str: soapDoctypeMessage},
		{name: "external entity", body: []byte(xxeDoc), code: FaultInvalidSOAP, str: soapDoctypeMessage},
		{name: "undeclared entity", body: opReq(t, "<xrd:id>", "<xrd:id>&xxe;"), code: FaultInvalidSOAP, str: "^XML syntax error.*entity"},
		{name: "unbound prefix", body: opReq(t, "<xrd:userId>EE38001010000</xrd:userId>", "<foo:x/>"),
			code: FaultInvalidSOAP, str: `The prefix "foo" for element "foo:x" is not bound.`},
		{name: "duplicate attribute", body: opReq(t, `<xrd:client ident:objectType="MEMBER">`, `<xrd:client ident:objectType="MEMBER" ident:objectType="MEMBER">`),
			code: FaultInvalidSOAP, str: `Attribute "ident:objectType" was already specified for element "xrd:client".`},
		{name: "content after root", body: append(opReq(t), "x"...), code: FaultInvalidSOAP, str: "Content is not allowed in trailing section."},
		{name: "second root", body: append(opReq(t), "<a/>"...), code: FaultInvalidSOAP, str: "The markup in the document following the root element must be well-formed."},
		{name: "declaration not first", body: append([]byte("\n"), opReq(t)...), code: FaultInvalidSOAP, str: `^The processing instruction target`},
		{name: "unsupported charset", body: opReq(t), ct: "text/xml; charset=ISO-8859-1", code: FaultInvalidSOAP, str: `Unsupported charset "ISO-8859-1" (only UTF-8 is supported)`},
		{name: "unsupported encoding declaration", body: opReq(t, `encoding="UTF-8"`, `encoding="ISO-8859-1"`), code: FaultInvalidSOAP, str: `^.*unsupported encoding "ISO-8859-1"`},
		{name: "too deep", body: opReq(t, "<xrd:userId>EE38001010000</xrd:userId>", strings.Repeat("<a>", 100)+strings.Repeat("</a>", 100)),
			code: FaultInvalidSOAP, str: "element nesting deeper than 64"},
		{name: "too many tokens", body: opReq(t, "<xrd:userId>EE38001010000</xrd:userId>", strings.Repeat("<a/>", soapMaxTokens)),
			code: FaultInvalidSOAP, str: "document has more than 65536 XML tokens"},

		{name: "too many attributes", body: opReq(t, "<xrd:userId>", "<xrd:userId"+soapManyAttrs(soapMaxAttrs+1)+">"),
			code: FaultInvalidSOAP, str: `element "xrd:userId" has more than 1024 attributes`},

		{name: "missing body", body: opReq(t, "<env:Body>", "<env:Bodyx>", "</env:Body>", "</env:Bodyx>"),
			code: FaultMissingBody, str: "Malformed SOAP message: body missing"},
		{name: "missing body and header", body: []byte(`<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>`),
			code: FaultMissingBody, str: "Malformed SOAP message: body missing"},
		{name: "fault in body", body: []byte(`<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>Server.Oops</faultcode><faultstring>bad &amp; sad</faultstring></e:Fault></e:Body></e:Envelope>`),
			code: "Server.Oops", str: "bad & sad"},
		{name: "missing header", body: opReq(t, "<env:Header>", "<env:Headerx>", "</env:Header>", "</env:Headerx>"),
			code: FaultMissingHeader, str: "Malformed SOAP message: header missing"},
		{name: "duplicate header field", body: opReq(t, "<xrd:userId>", "<xrd:id>x</xrd:id><xrd:userId>"),
			code: FaultDuplicateHeaderField, str: "SOAP header contains duplicate field '{http://x-road.eu/xsd/xroad.xsd}id'"},
		{name: "duplicate unknown header field", body: opReq(t, "<xrd:userId>", "<x:a xmlns:x='urn:x'/><x:a xmlns:x='urn:x'/><xrd:userId>"),
			code: FaultDuplicateHeaderField, str: "SOAP header contains duplicate field '{urn:x}a'"},
		{name: "missing client", body: opReq(t, hdrClient, ""),
			code: FaultMissingHeaderField, str: "Required field 'client' is missing"},
		{name: "missing id", body: opReq(t, "<xrd:id>a3f9c2d4-51b7-4e08-9d6a-7c1e2b3f4a5d</xrd:id>", ""),
			code: FaultMissingHeaderField, str: "Required field 'id' is missing"},
		{name: "missing protocolVersion", body: opReq(t, "<xrd:protocolVersion>4.0</xrd:protocolVersion>", ""),
			code: FaultMissingHeaderField, str: "Required field 'protocolVersion' is missing"},
		{name: "invalid protocol version", body: opReq(t, ">4.0<", ">5.0<"),
			code: FaultInvalidProtocolVersion, str: "Invalid protocol version (supported: 4.x, provided: 5.0)"},
		{name: "header client subsystem missing", body: opReq(t, `<xrd:client ident:objectType="MEMBER">`, `<xrd:client ident:objectType="SUBSYSTEM">`),
			code: FaultInvalidClientIdentifier, str: "Missing required subsystem code"},
		{name: "header client subsystem redundant", body: opReq(t, "<ident:memberCode>1234</ident:memberCode>\n    </xrd:client>", "<ident:memberCode>1234</ident:memberCode><ident:subsystemCode>X</ident:subsystemCode></xrd:client>"),
			code: FaultInvalidClientIdentifier, str: "Redundant subsystem code"},
		{name: "header client blank part", body: opReq(t, "<ident:memberCode>1234</ident:memberCode>\n    </xrd:client>", "<ident:memberCode> </ident:memberCode></xrd:client>"),
			code: FaultInvalidClientIdentifier, str: "Client identifier has a blank memberCode"},
		{name: "header client without objectType", body: opReq(t, `<xrd:client ident:objectType="MEMBER">`, `<xrd:client objectType="MEMBER">`),
			code: FaultInvalidXML, str: "Missing objectType attribute"},
		{name: "header client unknown objectType", body: opReq(t, `<xrd:client ident:objectType="MEMBER">`, `<xrd:client ident:objectType="PERSON">`),
			code: FaultInvalidXML, str: "Unknown objectType: PERSON"},
		{name: "header service wrong objectType", body: opReq(t, `<xrd:service ident:objectType="SERVICE">`, `<xrd:service ident:objectType="MEMBER">`),
			code: FaultInvalidXML, str: "Unexpected objectType: MEMBER"},
		{name: "header client missing memberCode", body: opReq(t, "<ident:memberCode>1234</ident:memberCode>\n    </xrd:client>", "</xrd:client>"),
			code: FaultInvalidXML, str: `^cvc-complex-type.2.4.b: The content of element 'xrd:client' is not complete.`},
		{name: "header id with element", body: opReq(t, "<xrd:id>", "<xrd:id><a/>"),
			code: FaultInvalidXML, str: "Header field 'id' must not contain elements"},
		{name: "two body children", body: opReq(t, "</env:Body>", "<opm:x/></env:Body>"),
			code: FaultInvalidBody, str: "Malformed SOAP message: body must have exactly one child element"},
		{name: "empty body", body: opReq(t, "<env:Body>", "<env:Body/><!--", "</env:Body>", "-->"),
			code: FaultInvalidBody, str: "Malformed SOAP message: body must have exactly one child element"},
		{name: "missing service", body: opReq(t, hdrService, ""),
			code: FaultMissingHeaderField, str: "Message header must contain service id"},
		{name: "inconsistent headers", body: opReq(t, "<ident:serviceCode>getSecurityServerOperationalData<", "<ident:serviceCode>getSecurityServerHealthData<"),
			code: FaultInconsistentHeaders, str: "Malformed SOAP message: service code does not match in header and body"},
		{name: "unknown service", body: opReq(t, "<ident:serviceCode>getSecurityServerOperationalData<", "<ident:serviceCode>getSecurityServer<"),
			code: FaultInternalError, str: "Unknown service: 'SERVICE:DEV/COM/1234/getSecurityServer'"},
		{name: "unknown service with subsystem and version", body: opReq(t,
			"<ident:serviceCode>getSecurityServerOperationalData</ident:serviceCode>", "<ident:subsystemCode>Sub</ident:subsystemCode><ident:serviceCode>get</ident:serviceCode><ident:serviceVersion>v1</ident:serviceVersion>"),
			code: FaultInternalError, str: "Unknown service: 'SERVICE:DEV/COM/1234/Sub/get/v1'"},

		{name: "empty searchCriteria", body: opReq(t, opSearch, "<opm:searchCriteria>", opClient, ""),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.b: The content of element 'opm:searchCriteria' is not complete. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":recordsFrom}' is expected.`},
		{name: "missing searchCriteria", body: opReq(t, opSearch, "<opm:x>", "</opm:searchCriteria>", "</opm:x>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.a: Invalid content was found starting with element 'opm:x'. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":searchCriteria}' is expected.`},
		{name: "no body content", body: opReq(t, "<opm:searchCriteria>", "<!--", "</opm:outputSpec>", "-->"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.b: The content of element 'opm:getSecurityServerOperationalData' is not complete. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":searchCriteria}' is expected.`},
		{name: "missing recordsTo", body: opReq(t, "<opm:recordsTo>1760005000</opm:recordsTo>", ""),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.a: Invalid content was found starting with element 'opm:client'. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":recordsTo}' is expected.`},
		{name: "wrong order", body: opReq(t, "<opm:recordsFrom>1760004000</opm:recordsFrom>\n        <opm:recordsTo>1760005000</opm:recordsTo>", "<opm:recordsTo>1760005000</opm:recordsTo><opm:recordsFrom>1760004000</opm:recordsFrom>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.a: Invalid content was found starting with element 'opm:recordsTo'. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":recordsFrom}' is expected.`},
		{name: "unexpected element at end", body: opReq(t, "</opm:outputSpec>", "</opm:outputSpec><opm:extra/>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.d: Invalid content was found starting with element 'opm:extra'. No child element is expected at this point.`},
		{name: "element in wrong namespace", body: opReq(t, "<opm:recordsFrom>1760004000</opm:recordsFrom>", "<recordsFrom>1760004000</recordsFrom>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.a: Invalid content was found starting with element 'recordsFrom'. One of '{"http://x-road.eu/xsd/op-monitoring.xsd":recordsFrom}' is expected.`},
		{name: "unexpected attribute", body: opReq(t, "<opm:searchCriteria>", `<opm:searchCriteria a="1">`),
			code: FaultInvalidRequest, str: `cvc-complex-type.3.2.2: Attribute 'a' is not allowed to appear in element 'opm:searchCriteria'.`},
		{name: "attribute on body element", body: opReq(t, opBodyOpen, `<opm:getSecurityServerOperationalData opm:x="1">`),
			code: FaultInvalidRequest, str: `cvc-complex-type.3.2.2: Attribute 'opm:x' is not allowed to appear in element 'opm:getSecurityServerOperationalData'.`},
		{name: "text in element-only content", body: opReq(t, "<opm:searchCriteria>", "<opm:searchCriteria>text"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.3: Element 'opm:searchCriteria' cannot have character [children], because the type's content type is element-only.`},
		{name: "recordsFrom not a number", body: opReq(t, ">1760004000<", ">abc<"),
			code: FaultInvalidRequest, str: `cvc-datatype-valid.1.2.1: 'abc' is not a valid value for 'integer'.`},
		{name: "recordsFrom empty", body: opReq(t, "<opm:recordsFrom>1760004000</opm:recordsFrom>", "<opm:recordsFrom/>"),
			code: FaultInvalidRequest, str: `cvc-datatype-valid.1.2.1: '' is not a valid value for 'integer'.`},
		{name: "recordsFrom double sign", body: opReq(t, ">1760004000<", ">+-1<"),
			code: FaultInvalidRequest, str: `cvc-datatype-valid.1.2.1: '+-1' is not a valid value for 'integer'.`},
		{name: "recordsTo overflow", body: opReq(t, ">1760005000<", ">888888888888888888888<"),
			code: FaultInvalidRequest, str: `cvc-maxInclusive-valid: Value '888888888888888888888' is not facet-valid with respect to maxInclusive '9223372036854775807' for type 'long'.`},
		{name: "recordsTo underflow", body: opReq(t, ">1760005000<", ">-9223372036854775809<"),
			code: FaultInvalidRequest, str: `cvc-minInclusive-valid: Value '-9223372036854775809' is not facet-valid with respect to minInclusive '-9223372036854775808' for type 'long'.`},
		{name: "recordsFrom with element", body: opReq(t, ">1760004000<", "><opm:x/><"),
			code: FaultInvalidRequest, str: `cvc-type.3.1.2: Element 'opm:recordsFrom' is a simple type, so it must have no element information item [children].`},
		{name: "outputField with element", body: opReq(t, "<opm:outputField>faultCode</opm:outputField>", "<opm:outputField><b/></opm:outputField>"),
			code: FaultInvalidRequest, str: `cvc-type.3.1.2: Element 'opm:outputField' is a simple type, so it must have no element information item [children].`},
		{name: "body element longer name", body: opReq(t, opBodyOpen, "<opm:getSecurityServerOperationalDataX>", opBodyClose, "</opm:getSecurityServerOperationalDataX>"),
			code: FaultInvalidRequest, str: `cvc-elt.1.a: Cannot find the declaration of element 'opm:getSecurityServerOperationalDataX'.`},
		{name: "body element in other namespace", body: opReq(t, opBodyOpen, "<getSecurityServerOperationalData>", opBodyClose, "</getSecurityServerOperationalData>"),
			code: FaultInvalidRequest, str: `cvc-elt.1.a: Cannot find the declaration of element 'getSecurityServerOperationalData'.`},
		{name: "filter client without objectType", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client>`),
			code: FaultInvalidRequest, str: `cvc-complex-type.4: Attribute 'objectType' must appear on element 'opm:client'.`},
		{name: "filter client unqualified objectType", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client objectType="SUBSYSTEM">`),
			code: FaultInvalidRequest, str: `cvc-complex-type.3.2.2: Attribute 'objectType' is not allowed to appear in element 'opm:client'.`},
		{name: "filter client unknown objectType", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client ident:objectType="PERSON">`),
			code: FaultInvalidRequest, str: `^cvc-enumeration-valid: Value 'PERSON' is not facet-valid with respect to enumeration`},
		{name: "filter client SERVICE objectType", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client ident:objectType="SERVICE">`),
			code: FaultInvalidRequest, str: `Invalid client identifier in 'opm:client': objectType must be MEMBER or SUBSYSTEM, not 'SERVICE'`},
		{name: "filter client blank memberCode", body: opReq(t, "<ident:memberCode>5678</ident:memberCode>", "<ident:memberCode></ident:memberCode>"),
			code: FaultInvalidRequest, str: `Invalid client identifier in 'opm:client': blank memberCode`},
		{name: "filter client missing subsystem", body: opReq(t, "<ident:subsystemCode>WeatherService</ident:subsystemCode>", ""),
			code: FaultInvalidRequest, str: uuidPrefix + `Missing required subsystem code$`},
		{name: "filter client redundant subsystem", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client ident:objectType="MEMBER">`),
			code: FaultInvalidRequest, str: uuidPrefix + `Redundant subsystem code$`},
		{name: "filter client children out of order", body: opReq(t, "<ident:xRoadInstance>DEV</ident:xRoadInstance>\n          <ident:memberClass>GOV</ident:memberClass>", "<ident:memberClass>GOV</ident:memberClass><ident:xRoadInstance>DEV</ident:xRoadInstance>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.a: Invalid content was found starting with element 'ident:memberClass'. One of '{"http://x-road.eu/xsd/identifiers":xRoadInstance}' is expected.`},
		{name: "second client in searchCriteria", body: opReq(t, opClient, opClient+opClient),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.d: Invalid content was found starting with element 'opm:client'. No child element is expected at this point.`},
		{name: "health filter client missing subsystem", body: healthReq(t, "<id:subsystemCode>Catalog</id:subsystemCode>", ""),
			code: FaultInvalidRequest, str: uuidPrefix + `Missing required subsystem code$`},
		{name: "health filter client redundant subsystem", body: healthReq(t, `<om:client id:objectType="SUBSYSTEM">`, `<om:client id:objectType="MEMBER">`),
			code: FaultInvalidRequest, str: uuidPrefix + `Redundant subsystem code$`},
		{name: "health unexpected element", body: healthReq(t, "</om:filterCriteria>", "</om:filterCriteria><om:filterCriteria/>"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.4.d: Invalid content was found starting with element 'om:filterCriteria'. No child element is expected at this point.`},
		{name: "health text in filterCriteria", body: healthReq(t, "<om:filterCriteria>", "<om:filterCriteria>x"),
			code: FaultInvalidRequest, str: `cvc-complex-type.2.3: Element 'om:filterCriteria' cannot have character [children], because the type's content type is element-only.`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ct
			if ct == "" {
				ct = soapTestCT
			}
			q, err := ParseQueryRequest(tc.body, ct)
			if err == nil {
				t.Fatalf("no error; request %+v", q)
			}
			var se *SOAPError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a *SOAPError", err, err)
			}
			if se.Code != tc.code {
				t.Errorf("code = %q, want %q (string %q)", se.Code, tc.code, se.String)
			}
			if strings.HasPrefix(tc.str, "^") {
				if !regexp.MustCompile(tc.str).MatchString(se.String) {
					t.Errorf("string = %q, want match %q", se.String, tc.str)
				}
			} else if se.String != tc.str {
				t.Errorf("string = %q\n          want %q", se.String, tc.str)
			}
			if err := wellFormedXML(FaultXML(se.FullCode(), se.String, NewUUID())); err != nil {
				t.Errorf("fault XML: %v", err)
			}
		})
	}
}

func TestParseQueryRequestValid(t *testing.T) {
	cases := []struct {
		name  string
		body  []byte
		ct    string
		check func(t *testing.T, q *QueryRequest)
	}{
		{name: "long lexical forms", body: opReq(t, ">1760004000<", "> \n+0042\t<", ">1760005000<", ">-5<"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.RecordsFrom != 42 || q.RecordsTo != -5 {
					t.Errorf("window = %d..%d", q.RecordsFrom, q.RecordsTo)
				}
			}},
		{name: "long extremes", body: opReq(t, ">1760004000<", ">-9223372036854775808<", ">1760005000<", ">9223372036854775807<"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.RecordsFrom != math.MinInt64 || q.RecordsTo != math.MaxInt64 {
					t.Errorf("window = %d..%d", q.RecordsFrom, q.RecordsTo)
				}
			}},
		{name: "long split by comment", body: opReq(t, ">1760004000<", ">17600<!-- c -->04000<"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.RecordsFrom != 1760004000 {
					t.Errorf("from = %d", q.RecordsFrom)
				}
			}},
		{name: "no filter client, no outputSpec", body: opReq(t, opClient, "", "<opm:outputSpec>", "<!--", "</opm:outputSpec>", "-->"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.SearchClient != nil || q.OutputFields != nil {
					t.Errorf("client %v fields %q", q.SearchClient, q.OutputFields)
				}
			}},
		{name: "empty outputSpec", body: opReq(t, "<opm:outputSpec>", "<opm:outputSpec/><!--", "</opm:outputSpec>", "-->"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.OutputFields == nil || len(q.OutputFields) != 0 {
					t.Errorf("fields %q", q.OutputFields)
				}
			}},
		{name: "outputField kept as given", body: opReq(t, "<opm:outputField>faultCode</opm:outputField>", "<opm:outputField> id&amp;<![CDATA[<x>]]></opm:outputField>"),
			check: func(t *testing.T, q *QueryRequest) {
				if last := q.OutputFields[len(q.OutputFields)-1]; last != " id&<x>" {
					t.Errorf("last field %q", last)
				}
			}},
		{name: "member search client", body: opReq(t, `<opm:client ident:objectType="SUBSYSTEM">`, `<opm:client ident:objectType="MEMBER">`, "<ident:subsystemCode>WeatherService</ident:subsystemCode>", ""),
			check: func(t *testing.T, q *QueryRequest) {
				if *q.SearchClient != (ClientID{Instance: "DEV", MemberClass: "GOV", MemberCode: "5678"}) {
					t.Errorf("client %+v", q.SearchClient)
				}
			}},
		{name: "health without filter", body: healthReq(t, "<om:filterCriteria>", "<!--", "</om:filterCriteria>", "-->"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.Operation != OpHealthData || q.FilterClient != nil {
					t.Errorf("request %+v", q)
				}
			}},
		{name: "health empty filterCriteria", body: healthReq(t, "<om:filterCriteria>", "<om:filterCriteria/><!--", "</om:filterCriteria>", "-->"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.FilterClient != nil {
					t.Errorf("filter %+v", q.FilterClient)
				}
			}},
		{name: "BOM, no declaration, CRLF, ASCII charset", ct: "text/xml;charset=\"us-ascii\"",
			body: append([]byte("\xEF\xBB\xBF"), bytes.ReplaceAll(bytes.TrimPrefix(opReq(t), []byte(`<?xml version="1.0" encoding="UTF-8"?>`)), []byte("\n"), []byte("\r\n"))...),
			check: func(t *testing.T, q *QueryRequest) {
				out := q.OperationalDataResponse(0, 0, false)
				if !bytes.HasPrefix(out, []byte(soapDeclaration+"<env:Envelope")) || bytes.Contains(out, []byte("\r")) {
					t.Errorf("response %q", out)
				}
			}},
		{name: "header values round-trip", body: opReq(t,
			"<ident:serviceCode>getSecurityServerOperationalData</ident:serviceCode>", "<ident:serviceCode>getSecurityServerOperationalData</ident:serviceCode><ident:serviceVersion>красивая родина</ident:serviceVersion>",
			"<xrd:userId>EE38001010000</xrd:userId>", "<xrd:userId>a&amp;b &lt; c</xrd:userId><xrd:issue>&#x41;</xrd:issue><repr:representedParty xmlns:repr=\"http://x-road.eu/xsd/representation.xsd\"><repr:partyCode>P</repr:partyCode></repr:representedParty><x:unknown xmlns:x='urn:x' a = 'q\"'><x:y/></x:unknown>"),
			check: func(t *testing.T, q *QueryRequest) {
				if q.Service.Version != "красивая родина" || q.UserID != "a&b < c" || q.Issue != "A" {
					t.Errorf("header %+v", q)
				}
				out := string(q.OperationalDataResponse(1, 0, false))
				for _, want := range []string{
					"<ident:serviceVersion>красивая родина</ident:serviceVersion>",
					"<xrd:userId>a&amp;b &lt; c</xrd:userId><xrd:issue>&#x41;</xrd:issue>",
					`<x:unknown xmlns:x="urn:x" a="q&quot;"><x:y/></x:unknown>`,
				} {
					if !strings.Contains(out, want) {
						t.Errorf("response lacks %s:\n%s", want, out)
					}
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ct
			if ct == "" {
				ct = soapTestCT
			}
			q, err := ParseQueryRequest(tc.body, ct)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, q)
			for _, out := range [][]byte{q.OperationalDataResponse(3, 7, true), q.HealthDataResponse(specHealthData())} {
				if err := wellFormedXML(out); err != nil {
					t.Errorf("%v in %s", err, out)
				}
			}
		})
	}
}

// TestSOAPResponsePrefixes covers §3.6's prefix rules: reuse what is in
// scope at Body, otherwise declare om / id on the response element.
func TestSOAPResponsePrefixes(t *testing.T) {
	movedNS := func(t *testing.T) []byte {
		// The op-monitoring and identifiers bindings move from the
		// Envelope to the body element, so they leave scope with it.
		return opReq(t,
			"\n    xmlns:ident=\"http://x-road.eu/xsd/identifiers\"\n    xmlns:opm="+nsOMQuoted, "",
			"<env:Header>", `<env:Header xmlns:ident="http://x-road.eu/xsd/identifiers">`,
			opBodyOpen, `<opm:getSecurityServerOperationalData xmlns:opm=`+nsOMQuoted+` xmlns:ident="http://x-road.eu/xsd/identifiers">`)
	}
	cases := []struct {
		name       string
		body       func(t *testing.T) []byte
		opWant     string // the response element start of the operational data answer
		healthWant string // the start of the health answer's response element up to the service's first id element
	}{
		{name: "envelope prefixes reused", body: func(t *testing.T) []byte { return opReq(t) },
			opWant: "<env:Body><opm:getSecurityServerOperationalDataResponse><opm:recordsCount>",
			healthWant: "<env:Body><opm:getSecurityServerHealthDataResponse><opm:monitoringStartupTimestamp>1760000012345</opm:monitoringStartupTimestamp>" +
				"<opm:statisticsPeriodSeconds>600</opm:statisticsPeriodSeconds><opm:servicesEvents><opm:serviceEvents><opm:service ident:objectType=\"SERVICE\"><ident:xRoadInstance>"},
		{name: "declared on body element", body: movedNS,
			opWant: `<env:Body><om:getSecurityServerOperationalDataResponse xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><om:recordsCount>`,
			healthWant: `<env:Body><om:getSecurityServerHealthDataResponse xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">` +
				`<om:monitoringStartupTimestamp>1760000012345</om:monitoringStartupTimestamp><om:statisticsPeriodSeconds>600</om:statisticsPeriodSeconds><om:servicesEvents><om:serviceEvents><om:service id:objectType="SERVICE"><id:xRoadInstance>`},
		{name: "declared on Body", body: func(t *testing.T) []byte {
			return soapEdit(t, movedNS(t), "<env:Body>", `<env:Body xmlns:o="http://x-road.eu/xsd/op-monitoring.xsd" xmlns:i="http://x-road.eu/xsd/identifiers">`)
		},
			opWant:     `<o:getSecurityServerOperationalDataResponse><o:recordsCount>`,
			healthWant: `<o:getSecurityServerHealthDataResponse><o:monitoringStartupTimestamp>`},
		{name: "default namespace", body: func(t *testing.T) []byte {
			return soapEdit(t, movedNS(t), "<env:Body>", `<env:Body xmlns="http://x-road.eu/xsd/op-monitoring.xsd">`)
		},
			opWant:     `<getSecurityServerOperationalDataResponse><recordsCount>0</recordsCount><records>cid:operational-monitoring-data.json.gz</records></getSecurityServerOperationalDataResponse></env:Body>`,
			healthWant: `<getSecurityServerHealthDataResponse xmlns:id="http://x-road.eu/xsd/identifiers"><monitoringStartupTimestamp>`},
		{name: "om and id prefixes taken", body: func(t *testing.T) []byte {
			return soapEdit(t, movedNS(t), "<env:Body>", `<env:Body xmlns:om="http://x-road.eu/xsd/identifiers">`)
		},
			opWant:     `<om2:getSecurityServerOperationalDataResponse xmlns:om2="http://x-road.eu/xsd/op-monitoring.xsd"><om2:recordsCount>`,
			healthWant: `<om2:getSecurityServerHealthDataResponse xmlns:om2="http://x-road.eu/xsd/op-monitoring.xsd"><om2:monitoringStartupTimestamp>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := mustParseQuery(t, tc.body(t))
			op := q.OperationalDataResponse(0, 0, false)
			if !bytes.Contains(op, []byte(tc.opWant)) {
				t.Errorf("operational data response lacks %s:\n%s", tc.opWant, op)
			}
			h := q.HealthDataResponse(specHealthData())
			if !bytes.Contains(h, []byte(tc.healthWant)) {
				t.Errorf("health response lacks %s:\n%s", tc.healthWant, h)
			}
			for _, b := range [][]byte{op, h} {
				if err := wellFormedXML(b); err != nil {
					t.Errorf("%v:\n%s", err, b)
				}
				// Resolve the response with namespaces to be sure the
				// prefixes bind where they should.
				var r struct {
					Body struct {
						Inner []struct {
							XMLName xml.Name
						} `xml:",any"`
					} `xml:"http://schemas.xmlsoap.org/soap/envelope/ Body"`
				}
				if err := xml.Unmarshal(b, &r); err != nil || len(r.Body.Inner) != 1 || r.Body.Inner[0].XMLName.Space != NSOpMonitoring {
					t.Errorf("response element %+v (%v)", r.Body.Inner, err)
				}
			}
		})
	}
}

func TestSOAPHealthDataVariants(t *testing.T) {
	q := mustParseQuery(t, readSOAPTestdata(t, "health_request.xml"))
	got := string(q.HealthDataResponse(&HealthData{MonitoringStartupMs: 5, StatisticsPeriodSeconds: 60}))
	if !strings.Contains(got, "<om:getSecurityServerHealthDataResponse><om:monitoringStartupTimestamp>5</om:monitoringStartupTimestamp><om:statisticsPeriodSeconds>60</om:statisticsPeriodSeconds><om:servicesEvents/></om:getSecurityServerHealthDataResponse>") {
		t.Errorf("empty health response:\n%s", got)
	}
	member := ClientID{Instance: "I", MemberClass: "C", MemberCode: "M&<>"}
	got = string(q.HealthDataResponse(&HealthData{Services: []ServiceEvents{{
		Service:         ServiceID{Provider: member, Code: "s'\"\r"},
		SuccessfulCount: 1, RequestDuration: Stat{Min: 1, Max: 1, Avg: 1},
	}}}))
	want := `<om:serviceEvents><om:service id:objectType="SERVICE"><id:xRoadInstance>I</id:xRoadInstance><id:memberClass>C</id:memberClass>` +
		`<id:memberCode>M&amp;&lt;&gt;</id:memberCode><id:serviceCode>s'"&#13;</id:serviceCode></om:service><om:lastPeriodStatistics>` +
		`<om:successfulRequestCount>1</om:successfulRequestCount><om:unsuccessfulRequestCount>0</om:unsuccessfulRequestCount>` +
		`<om:requestMinDuration>1</om:requestMinDuration><om:requestAverageDuration>1.0</om:requestAverageDuration>` +
		`<om:requestMaxDuration>1</om:requestMaxDuration><om:requestDurationStdDev>0.0</om:requestDurationStdDev></om:lastPeriodStatistics></om:serviceEvents>`
	if !strings.Contains(got, want) {
		t.Errorf("health response:\n%s\nwant part\n%s", got, want)
	}
	if got := q.HealthDataResponse(nil); wellFormedXML(got) != nil {
		t.Errorf("nil health data: %s", got)
	}
}

// TestParseQueryRequestHostileDocuments checks that DTD-based attacks are
// refused before any expansion: fast and with little memory.
func TestParseQueryRequestHostileDocuments(t *testing.T) {
	for name, doc := range map[string][]byte{"billion laughs": billionLaughs(), "external entity": []byte(xxeDoc)} {
		t.Run(name, func(t *testing.T) {
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			_, err := ParseQueryRequest(doc, soapTestCT)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&ms1)
			var se *SOAPError
			if !errors.As(err, &se) || se.Code != FaultInvalidSOAP || se.String != soapDoctypeMessage {
				t.Fatalf("err = %v", err)
			}
			if elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
			if grown := ms1.TotalAlloc - ms0.TotalAlloc; grown > 256<<10 {
				t.Errorf("allocated %d bytes", grown)
			}
			if allocs := testing.AllocsPerRun(20, func() { _, _ = ParseQueryRequest(doc, soapTestCT) }); allocs > 200 {
				t.Errorf("%v allocations per parse", allocs)
			}
		})
	}
}

func soapManyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

// wideScopeRequest has many namespace declarations in scope of many prefixed
// elements and attributes: prefix lookups must stay cheap there.
func wideScopeRequest(t testing.TB) []byte {
	var decls, attrs strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&decls, ` xmlns:p%d="urn:%d"`, i, i)
	}
	for i := range 1000 {
		fmt.Fprintf(&attrs, ` p%d:a="1"`, i)
	}
	el := "<p999:e" + attrs.String() + "/>"
	return opReq(t, "<env:Header>", "<env:Header"+decls.String()+">",
		"<xrd:userId>EE38001010000</xrd:userId>", "<p0:w>"+strings.Repeat(el, 200)+"</p0:w>")
}

// TestParseQueryRequestWideScope checks the answer; its cost is measured by
// BenchmarkParseQueryRequestWideScope (timings do not belong in tests).
func TestParseQueryRequestWideScope(t *testing.T) {
	q := mustParseQuery(t, wideScopeRequest(t))
	if q.UserID != "" {
		t.Errorf("userId %q", q.UserID)
	}
}

func BenchmarkParseQueryRequestWideScope(b *testing.B) {
	body := wideScopeRequest(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		mustParseQuery(b, body)
	}
}

func TestFormatJavaDouble(t *testing.T) {
	cases := []struct {
		v    float64
		want string
	}{
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1, "1.0"},
		{135, "135.0"},
		{106, "106.0"},
		{5150, "5150.0"},
		{6.928203230275509, "6.928203230275509"},
		{1e7, "1.0E7"},
		{1.2345e7, "1.2345E7"},
		{9999999, "9999999.0"},
		{9999999.5, "9999999.5"},
		{0.001, "0.001"},
		{0.002, "0.002"},
		{0.0009, "9.0E-4"},
		{1e-4, "1.0E-4"},
		{123456.789, "123456.789"},
		{-2.5, "-2.5"},
		{0.1, "0.1"},
		{100.0 / 3, "33.333333333333336"},
		{1e21, "1.0E21"},
		{-1.5e-7, "-1.5E-7"},
		{math.MaxFloat64, "1.7976931348623157E308"},
		{math.SmallestNonzeroFloat64, "4.9E-324"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
	}
	for _, tc := range cases {
		if got := FormatJavaDouble(tc.v); got != tc.want {
			t.Errorf("FormatJavaDouble(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestMultipartBoundaryAndContentType(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		b := NewBoundary()
		if !regexp.MustCompile(`^xroad[A-Za-z]{30}$`).MatchString(b) || seen[b] {
			t.Fatalf("boundary %q", b)
		}
		seen[b] = true
	}
	if got := MultipartContentType("xroadX"); got != `multipart/related; type="text/xml"; charset=UTF-8; boundary=xroadX` {
		t.Errorf("content type %q", got)
	}
}

// multipartAnswer builds a full operational data answer for the §13.2
// request, with a gzip payload.
func multipartAnswer(t *testing.T) (boundary string, body, soapXML, json []byte) {
	q := mustParseQuery(t, readSOAPTestdata(t, "opdata_request.xml"))
	json = []byte(`{"records":[{"monitoringDataTs":1760004021,"serviceCode":"getWeather","faultString":"\r\n--xroad"}]}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(json)
	_ = zw.Close()
	soapXML = q.OperationalDataResponse(1, 1760004640, true)
	boundary = NewBoundary()
	var buf bytes.Buffer
	if err := WriteOperationalDataMultipart(&buf, boundary, soapTestCT, soapXML, gz.Bytes()); err != nil {
		t.Fatal(err)
	}
	return boundary, buf.Bytes(), soapXML, json
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMultipartStrictClients parses a full answer the way strict clients
// do: X-Road Metrics' collector regexp, upstream's Python tests (cut the
// attachment headers by length, search for "<?xml", find nextRecordsFrom by
// the request's prefix), and a MIME library.
func TestMultipartStrictClients(t *testing.T) {
	boundary, body, soapXML, json := multipartAnswer(t)

	t.Run("metrics regexp", func(t *testing.T) {
		re := regexp.MustCompile(`(?s)^--(xroad[A-Za-z]+)\r\ncontent-type:text/xml.*?\r\n\r\n(.*?)\r\n--xroad[A-Za-z]+\r\ncontent-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data.json.gz>\r\n\r\n(.*)\r\n--xroad[A-Za-z]+--\r\n$`)
		m := re.FindSubmatch(body)
		if m == nil {
			t.Fatalf("no match in %q", body)
		}
		if string(m[1]) != boundary || !bytes.Equal(m[2], soapXML) {
			t.Errorf("boundary %q, soap %q", m[1], m[2])
		}
		if got := gunzip(t, m[3]); !bytes.Equal(got, json) {
			t.Errorf("payload %q", got)
		}
		next := regexp.MustCompile(`<opm:nextRecordsFrom>(\d+)</opm:nextRecordsFrom>`).FindSubmatch(m[2])
		if next == nil || string(next[1]) != "1760004640" {
			t.Errorf("nextRecordsFrom not found by the request's prefix")
		}
	})

	t.Run("cut by header length", func(t *testing.T) {
		parts := bytes.Split(body, []byte("--"+boundary))
		if len(parts) != 4 || len(parts[0]) != 0 || string(parts[3]) != "--\r\n" {
			t.Fatalf("parts %q", parts)
		}
		soapPart := parts[1]
		i := bytes.Index(soapPart, []byte("<?xml"))
		if i < 0 || !bytes.Equal(soapPart[i:len(soapPart)-2], soapXML) {
			t.Errorf("SOAP part %q", soapPart)
		}
		const headers = "content-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data.json.gz>\r\n\r\n"
		att := bytes.TrimPrefix(parts[2], []byte("\r\n"))
		if string(att[:len(headers)]) != headers {
			t.Errorf("attachment headers %q", att[:len(headers)])
		}
		payload := bytes.TrimSuffix(att[len(headers):], []byte("\r\n"))
		if got := gunzip(t, payload); !bytes.Equal(got, json) {
			t.Errorf("payload %q", got)
		}
	})

	t.Run("mime/multipart", func(t *testing.T) {
		mt, params, err := mime.ParseMediaType(MultipartContentType(boundary))
		if err != nil || mt != "multipart/related" || params["type"] != "text/xml" || params["boundary"] != boundary {
			t.Fatalf("media type %q %v %v", mt, params, err)
		}
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		p, err := r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if p.Header.Get("Content-Type") != soapTestCT || !bytes.Equal(got, soapXML) {
			t.Errorf("SOAP part %v %q", p.Header, got)
		}
		p, err = r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Type") != "application/gzip" || p.Header.Get("Content-Id") != "<operational-monitoring-data.json.gz>" ||
			p.Header.Get("Content-Transfer-Encoding") != "binary" {
			t.Errorf("attachment headers %v", p.Header)
		}
		gz, _ := io.ReadAll(p)
		if got := gunzip(t, gz); !bytes.Equal(got, json) {
			t.Errorf("payload %q", got)
		}
		if _, err := r.NextPart(); err != io.EOF {
			t.Errorf("after the attachment: %v", err)
		}
	})
}

func TestMultipartHeadTailStreaming(t *testing.T) {
	boundary := NewBoundary()
	soapXML := []byte("<x/>")
	var whole, streamed bytes.Buffer
	if err := WriteOperationalDataMultipart(&whole, boundary, "text/xml\r\nX: y", soapXML, []byte("GZ")); err != nil {
		t.Fatal(err)
	}
	_ = WriteMultipartHead(&streamed, boundary, "text/xml\r\nX: y", soapXML)
	streamed.WriteString("GZ")
	_ = WriteMultipartTail(&streamed, boundary)
	if !bytes.Equal(whole.Bytes(), streamed.Bytes()) {
		t.Errorf("streamed %q != whole %q", streamed.Bytes(), whole.Bytes())
	}
	want := "--" + boundary + "\r\ncontent-type:text/xmlX: y\r\n\r\n<x/>\r\n--" + boundary +
		"\r\ncontent-type:application/gzip\r\ncontent-transfer-encoding: binary\r\ncontent-id: <operational-monitoring-data.json.gz>\r\n\r\nGZ\r\n--" + boundary + "--\r\n"
	if whole.String() != want {
		t.Errorf("got %q\nwant %q", whole.String(), want)
	}
}

func TestSOAPNewUUID(t *testing.T) {
	a, b := NewUUID(), NewUUID()
	if !uuidRE.MatchString(a) || len(a) != 36 || a == b {
		t.Errorf("uuids %q %q", a, b)
	}
}

func BenchmarkParseQueryRequest(b *testing.B) {
	body := readSOAPTestdata(b, "opdata_request.xml")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseQueryRequest(body, soapTestCT); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSOAPHealthDataResponse(b *testing.B) {
	q := mustParseQuery(b, readSOAPTestdata(b, "health_request.xml"))
	h := specHealthData()
	b.ReportAllocs()
	for b.Loop() {
		_ = q.HealthDataResponse(h)
	}
}

// TestSOAPResponseAttributeEscaping: attribute values copied from the
// request header are re-escaped so that tabs, line feeds and carriage
// returns survive attribute-value normalisation, and markup stays markup.
func TestSOAPResponseAttributeEscaping(t *testing.T) {
	req := readSOAPTestdata(t, "opdata_request.xml")
	req = bytes.Replace(req, []byte("<xrd:userId>"),
		[]byte(`<ext:note xmlns:ext="urn:example" v="1&#9;2&#10;3&#13;4&amp;&lt;&quot;'"/><xrd:userId>`), 1)
	q, err := ParseQueryRequest(req, "text/xml; charset=UTF-8")
	if err != nil {
		t.Fatal(err)
	}
	out := string(q.OperationalDataResponse(0, 0, false))
	if want := `v="1&#9;2&#10;3&#13;4&amp;&lt;&quot;'"`; !strings.Contains(out, want) {
		t.Errorf("response lacks %s:\n%s", want, out)
	}
}
