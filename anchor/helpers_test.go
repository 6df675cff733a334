package anchor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// t0 is the fixed clock of the directory tests.
var t0 = time.Date(2026, 1, 15, 8, 30, 0, 0, time.UTC)

// testLogger writes the package's logs into the test output.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// member and server describe shared parameters content.
type member struct {
	id, class, code string
	subsystems      map[string]string // id -> subsystem code
}

type server struct{ owner, code string }

// sharedXML renders shared parameters as a central server does (§4.1).
func sharedXML(instance string, members []member, servers []server) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n")
	b.WriteString(`<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">` + "\n")
	fmt.Fprintf(&b, "  <instanceIdentifier>%s</instanceIdentifier>\n", instance)
	b.WriteString("  <source><address>cs1.example.org</address><internalVerificationCert>AAAA</internalVerificationCert></source>\n")
	for _, m := range members {
		fmt.Fprintf(&b, "  <member id=%q>\n    <memberClass><code>%s</code><description>d</description></memberClass>\n    <memberCode>%s</memberCode>\n    <name>n</name>\n", m.id, m.class, m.code)
		for id, code := range m.subsystems {
			fmt.Fprintf(&b, "    <subsystem id=%q><subsystemCode>%s</subsystemCode><subsystemName>s</subsystemName></subsystem>\n", id, code)
		}
		b.WriteString("  </member>\n")
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "  <securityServer>\n    <owner>%s</owner>\n    <serverCode>%s</serverCode>\n    <address>ss.example.org</address>\n    <authCertHash>3q2+7w==</authCertHash>\n    <inMaintenanceMode><message>m</message></inMaintenanceMode>\n  </securityServer>\n", s.owner, s.code)
	}
	b.WriteString(`  <globalGroup><groupCode>security-server-owners</groupCode><description>o</description>
    <groupMember idf:objectType="MEMBER"><idf:xRoadInstance>` + instance + `</idf:xRoadInstance><idf:memberClass>COM</idf:memberClass><idf:memberCode>10000001</idf:memberCode></groupMember>
  </globalGroup>
  <globalSettings><memberClass><code>COM</code><description>c</description></memberClass><ocspFreshnessSeconds>3600</ocspFreshnessSeconds></globalSettings>
</xr:conf>
`)
	return b.String()
}

func privateXML(instance string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:conf xmlns:ns2="http://x-road.eu/xsd/identifiers" xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">
    <instanceIdentifier>` + instance + `</instanceIdentifier>
    <managementService>
        <authCertRegServiceAddress>https://cs1.example.org:4001/managementservice/</authCertRegServiceAddress>
        <managementRequestServiceProviderId ns2:objectType="SUBSYSTEM">
            <ns2:xRoadInstance>` + instance + `</ns2:xRoadInstance>
            <ns2:memberClass>GOV</ns2:memberClass>
            <ns2:memberCode>70000001</ns2:memberCode>
            <ns2:subsystemCode>MANAGEMENT</ns2:subsystemCode>
        </managementRequestServiceProviderId>
    </managementService>
    <timeStampingIntervalSeconds>60</timeStampingIntervalSeconds>
</ns3:conf>
`
}

// monitoringXML wraps the content of monitoringClient.
func monitoringXML(inner string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
    <monitoringClient>` + inner + `</monitoringClient>
</xr:conf>
`
}

// monitoringID renders a monitoringClientId; subsystem "" leaves out subsystemCode.
func monitoringID(objectType, instance, class, code, subsystem string) string {
	s := `<monitoringClientId idf:objectType="` + objectType + `">
            <idf:xRoadInstance>` + instance + `</idf:xRoadInstance>
            <idf:memberClass>` + class + `</idf:memberClass>
            <idf:memberCode>` + code + `</idf:memberCode>`
	if subsystem != "" {
		s += `
            <idf:subsystemCode>` + subsystem + `</idf:subsystemCode>`
	}
	return s + `
        </monitoringClientId>`
}

func metadataJSON(contentID, instance, expiry string) string {
	return fmt.Sprintf(`{"contentIdentifier":%q,"instanceIdentifier":%q,"expirationDate":%q,"contentLocation":"/V6/20260115083000123456789/x.xml","configurationVersion":"6"}`,
		contentID, instance, expiry)
}

// Expiry dates of the base directory: main private and shared parameters
// expire 10 minutes after t0 (the shared ones written with an offset and a
// fraction), FI's a day later, and XX's shared parameters have expired.
const (
	privateExpiry = "2026-01-15T08:40:00Z"
	sharedExpiry  = "2026-01-15T10:41:00.5+02:00" // 08:41:00.5Z
	fiExpiry      = "2026-01-16T08:30:00Z"
	xxExpiry      = "2026-01-15T08:29:00Z"
)

// writeBase writes a directory as a configuration client leaves it: main
// instance EE with private, shared and monitoring parameters, federated
// instance FI, and instance XX whose shared parameters have expired.
func writeBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "instance-identifier"), "EE")
	ee := filepath.Join(dir, "EE")
	writeFile(t, filepath.Join(ee, "private-params.xml"), privateXML("EE"))
	writeFile(t, filepath.Join(ee, "private-params.xml.metadata"), metadataJSON("PRIVATE-PARAMETERS", "EE", privateExpiry))
	writeFile(t, filepath.Join(ee, "shared-params.xml"), sharedXML("EE",
		[]member{
			{id: "id0", class: "GOV", code: "70000001", subsystems: map[string]string{"id1": "MONITORING"}},
			{id: "id2", class: "COM", code: "10000001", subsystems: map[string]string{"id3": "CRM"}},
		},
		[]server{{owner: "id2", code: "SS1"}, {owner: "id0", code: "SS2"}}))
	writeFile(t, filepath.Join(ee, "shared-params.xml.metadata"), metadataJSON("SHARED-PARAMETERS", "EE", sharedExpiry))
	writeFile(t, filepath.Join(ee, "monitoring-params.xml"), monitoringXML(monitoringID("SUBSYSTEM", "EE", "GOV", "70000001", "MONITORING")))
	writeFile(t, filepath.Join(ee, "monitoring-params.xml.metadata"), metadataJSON("MONITORING", "EE", privateExpiry))
	writeFile(t, filepath.Join(ee, "fetchinterval-params.xml"), "<conf/>")

	fi := filepath.Join(dir, "FI")
	writeFile(t, filepath.Join(fi, "shared-params.xml"), sharedXML("FI",
		[]member{{id: "id0", class: "COM", code: "FI1"}}, []server{{owner: "id0", code: "FISS"}}))
	writeFile(t, filepath.Join(fi, "shared-params.xml.metadata"), metadataJSON("SHARED-PARAMETERS", "FI", fiExpiry))

	xx := filepath.Join(dir, "XX")
	writeFile(t, filepath.Join(xx, "shared-params.xml"), sharedXML("XX",
		[]member{{id: "id0", class: "COM", code: "X1"}}, []server{{owner: "id0", code: "XSS"}}))
	writeFile(t, filepath.Join(xx, "shared-params.xml.metadata"), metadataJSON("SHARED-PARAMETERS", "XX", xxExpiry))
	return dir
}

// clock is an adjustable test clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}

func (c *clock) Now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
