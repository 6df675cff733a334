// Package schematest makes realistic operational monitoring records for
// tests and benchmarks: about 30 Clients and 50 services with Zipf-like
// popularity, a SOAP/REST mix, UUID message ids, long-tailed durations and
// sizes, and about 5% failures — the mix of opmonbench.
package schematest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/opmond/opmond/schema"
)

type genService struct {
	provider schema.ClientID
	code     string
	version  string // WSDL only
	typ      string // WSDL, REST, OPENAPI3
	method   string // REST only
	path     string // REST only
}

// Dataset is the population records are drawn from.
type Dataset struct {
	Clients    []schema.ClientID
	clientCum  []float64
	services   []genService
	serviceCum []float64
	nodeIPs    []string
}

var (
	genSubsystems = []string{
		"population-registry", "tax-portal", "health-info", "vehicle-registry", "land-registry",
		"business-registry", "social-insurance", "unemployment-fund", "education-portal", "police-dispatch",
		"customs-declarations", "pension-fund", "statistics", "energy-market", "e-prescription",
		"border-guard", "rescue-board", "court-records", "notary-chamber", "bank-aml",
		"insurance-claims", "telecom-portability", "postal-tracking", "city-services", "transport-tickets",
		"environment-permits", "agriculture-subsidies", "defence-logistics", "archives", "labour-inspection",
	}
	genClasses     = []string{"GOV", "COM", "GOV", "NGO", "GOV", "COM"}
	genWsdlVerbs   = []string{"get", "list", "find", "check", "submit", "update"}
	genWsdlNouns   = []string{"Person", "Vehicle", "Company", "Address", "Document", "Permit", "Payment", "Claim", "Prescription", "Certificate"}
	genRestNouns   = []string{"persons", "vehicles", "companies", "addresses", "documents", "permits", "payments", "claims", "prescriptions", "certificates"}
	genRestMethods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	genFaults      = []struct{ code, text string }{
		{"server.serverproxy.network_error", "Could not connect to any target host ([https://%s:5500/]): Connect timed out"},
		{"server.clientproxy.network_error", "Connection reset while reading the response from the service provider's security server %s"},
		{"server.serverproxy.service_failed.http_error", "Server returned HTTP error 500: Internal Server Error; request %s could not be processed by the service"},
		{"server.serverproxy.service_failed.internal_error", "Service responded with a SOAP fault: java.lang.IllegalStateException: no record found for key %s"},
		{"server.serverproxy.unknown_service", "Unknown service: request %s names a service that is not registered on the provider's security server"},
		{"server.clientproxy.access_denied", "Request is not allowed: subsystem of message %s has no access rights to the service"},
		{"server.serverproxy.database_error", "Error accessing database (serverconf): timeout while acquiring a connection for %s"},
		{"server.serverproxy.ssl_authentication_failed", "Security server %s has no valid authentication certificate"},
	}
)

func genZipf(n int, s float64) []float64 {
	cum := make([]float64, n)
	total := 0.0
	for k := range n {
		total += 1 / math.Pow(float64(k+1), s)
		cum[k] = total
	}
	for k := range cum {
		cum[k] /= total
	}
	return cum
}

func genPick(rng *rand.Rand, cum []float64) int {
	x := rng.Float64()
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if cum[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// NewDataset builds the fixed population.
func NewDataset() *Dataset {
	d := &Dataset{nodeIPs: []string{"192.0.2.10", "192.0.2.11"}}
	for i := range 30 {
		c := schema.ClientID{Instance: "EE", MemberClass: genClasses[i%len(genClasses)],
			MemberCode: fmt.Sprintf("%08d", 10000000+(i*7919+1234)%89999999),
			Subsystem:  genSubsystems[i], HasSubsystem: true}
		if i%10 == 9 {
			c.Instance = "FI"
		}
		if i%10 == 3 {
			c.Subsystem, c.HasSubsystem = "", false
		}
		d.Clients = append(d.Clients, c)
	}
	d.clientCum = genZipf(len(d.Clients), 1.0)
	var providers []schema.ClientID
	for i := range 8 {
		providers = append(providers, schema.ClientID{Instance: "EE", MemberClass: "GOV",
			MemberCode: fmt.Sprintf("%08d", 70000001+i*13), Subsystem: fmt.Sprintf("provider-%02d", i), HasSubsystem: true})
	}
	providers = append(providers, d.Clients[0], d.Clients[1], d.Clients[5], d.Clients[7])
	for j := range 50 {
		s := genService{provider: providers[j%len(providers)]}
		switch j % 5 {
		case 0, 1, 2:
			s.typ = "WSDL"
			s.code = genWsdlVerbs[j%len(genWsdlVerbs)] + genWsdlNouns[(j/3)%len(genWsdlNouns)]
			s.version = "v1"
			if j%7 == 0 {
				s.version = "v2"
			}
		default:
			s.typ = "REST"
			if j%4 == 0 {
				s.typ = "OPENAPI3"
			}
			noun := genRestNouns[(j/2)%len(genRestNouns)]
			s.code = noun
			s.method = genRestMethods[j%len(genRestMethods)]
			s.path = "/api/v1/" + noun + "/*"
			if s.method == "POST" {
				s.path = "/api/v1/" + noun
			}
		}
		d.services = append(d.services, s)
	}
	d.serviceCum = genZipf(len(d.services), 0.9)
	return d
}

func genUUID(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	a = (a &^ (0xf << 12)) | (0x4 << 12)
	b = (b &^ (0x3 << 62)) | (0x2 << 62)
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

func genHost(c schema.ClientID) string {
	return "ss-" + strings.ToLower(c.MemberClass) + "-" + c.MemberCode + ".example.org"
}

// SetParty sets the four id fields starting at first.
// Providers returns the distinct service providers.
func (d *Dataset) Providers() []schema.ClientID {
	var out []schema.ClientID
	seen := map[schema.ClientID]bool{}
	for _, s := range d.services {
		if !seen[s.provider] {
			seen[s.provider] = true
			out = append(out, s.provider)
		}
	}
	return out
}

// SetParty sets the four identifier fields starting at first.
func SetParty(r *schema.Record, first schema.Field, id schema.ClientID) {
	r.SetStr(first, id.Instance)
	r.SetStr(first+1, id.MemberClass)
	r.SetStr(first+2, id.MemberCode)
	if id.HasSubsystem {
		r.SetStr(first+3, id.Subsystem)
	}
}

// Records makes n realistic records, deterministically from seed; requests
// start at baseMs and are about 3 ms apart.
func Records(n int, seed uint64, baseMs int64) []schema.Record {
	d := NewDataset()
	rng := rand.New(rand.NewPCG(seed, 0x6f706d6f6e64))
	out := make([]schema.Record, n)
	for i := range out {
		r := &out[i]
		c := d.Clients[genPick(rng, d.clientCum)]
		s := d.services[genPick(rng, d.serviceCum)]
		r.SetStr(schema.FSecurityServerInternalIP, d.nodeIPs[rng.IntN(len(d.nodeIPs))])
		typ := "Client"
		if rng.IntN(100) < 45 {
			typ = "Producer"
		}
		r.SetStr(schema.FSecurityServerType, typ)
		SetParty(r, schema.FClientXRoadInstance, c)
		SetParty(r, schema.FServiceXRoadInstance, s.provider)
		r.SetStr(schema.FServiceCode, s.code)
		r.SetStr(schema.FServiceType, s.typ)
		r.SetStr(schema.FXRoadVersion, "7.8.0")
		r.SetStr(schema.FClientSecurityServerAddress, genHost(c))
		r.SetStr(schema.FServiceSecurityServerAddress, genHost(s.provider))
		msgID := genUUID(rng)
		r.SetStr(schema.FMessageID, msgID)
		r.SetStr(schema.FXRequestID, genUUID(rng))
		if s.typ == "WSDL" {
			r.SetStr(schema.FServiceVersion, s.version)
			r.SetStr(schema.FMessageProtocolVersion, "4.0")
			if rng.IntN(100) < 40 {
				r.SetStr(schema.FMessageUserID, fmt.Sprintf("EE3%010d", rng.Int64N(1e10)))
			}
			if rng.IntN(100) < 10 {
				r.SetStr(schema.FMessageIssue, fmt.Sprintf("ISSUE-%06d", rng.IntN(1000000)))
			}
		} else {
			r.SetStr(schema.FMessageProtocolVersion, "1")
			r.SetStr(schema.FRestMethod, s.method)
			if typ == "Producer" && rng.IntN(100) < 90 {
				r.SetStr(schema.FRestPath, s.path)
			}
			if rng.IntN(100) < 20 {
				r.SetStr(schema.FMessageUserID, fmt.Sprintf("EE3%010d", rng.Int64N(1e10)))
			}
		}
		if rng.IntN(100) < 5 {
			r.SetStr(schema.FRepresentedPartyClass, "COM")
			r.SetStr(schema.FRepresentedPartyCode, fmt.Sprintf("%08d", 10000000+rng.IntN(89999999)))
		}

		reqIn := baseMs + int64(i)*3 + rng.Int64N(3)
		reqOut := reqIn + 3 + rng.Int64N(25)
		dur := min(int64(math.Exp(rng.NormFloat64()*0.9+4.5))+5, 60000)
		respIn := reqOut + dur
		respOut := respIn + 1 + rng.Int64N(12)
		r.SetInt(schema.FRequestInTs, reqIn)
		r.SetInt(schema.FRequestOutTs, reqOut)
		r.SetInt(schema.FResponseInTs, respIn)
		r.SetInt(schema.FResponseOutTs, respOut)

		var reqSize int64
		if s.typ == "WSDL" {
			reqSize = 900 + rng.Int64N(3000)
		} else if s.method == "POST" || s.method == "PUT" {
			reqSize = 200 + rng.Int64N(4000)
		}
		respSize := int64(math.Exp(rng.NormFloat64()*1.2 + 7.5))
		r.SetInt(schema.FRequestSize, reqSize)
		r.SetInt(schema.FResponseSize, respSize)
		r.SetInt(schema.FRequestAttachmentCount, 0)
		r.SetInt(schema.FResponseAttachmentCount, 0)
		if s.typ == "WSDL" && rng.IntN(100) < 3 {
			n := int64(1 + rng.IntN(3))
			r.SetInt(schema.FRequestAttachmentCount, n)
			r.SetInt(schema.FRequestMimeSize, reqSize+n*(2000+rng.Int64N(200000)))
		}
		if s.typ == "WSDL" && rng.IntN(100) < 3 {
			n := int64(1 + rng.IntN(2))
			r.SetInt(schema.FResponseAttachmentCount, n)
			r.SetInt(schema.FResponseMimeSize, respSize+n*(2000+rng.Int64N(500000)))
		}

		r.SetBool(schema.FSucceeded, true)
		status := int64(200)
		if s.method == "POST" {
			status = 201
		}
		if rng.IntN(100) < 5 {
			r.SetBool(schema.FSucceeded, false)
			f := genFaults[rng.IntN(len(genFaults))]
			r.SetStr(schema.FFaultCode, f.code)
			arg := msgID
			if strings.Contains(f.text, "host") || strings.Contains(f.text, "server %s") {
				arg = genHost(s.provider)
			}
			r.SetStr(schema.FFaultString, fmt.Sprintf(f.text, arg))
			status = []int64{500, 502, 503, 504, 400, 404}[rng.IntN(6)]
		}
		if s.typ != "WSDL" {
			r.SetInt(schema.FStatusCode, status)
		}
	}
	return out
}
