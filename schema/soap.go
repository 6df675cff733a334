package schema

import (
	"crypto/rand"
	"encoding/hex"
)

// Namespaces of the query interface (opmon-protocol.md §0).
const (
	NSSOAPEnvelope   = "http://schemas.xmlsoap.org/soap/envelope/"
	NSXRoad          = "http://x-road.eu/xsd/xroad.xsd"
	NSIdentifiers    = "http://x-road.eu/xsd/identifiers"
	NSRepresentation = "http://x-road.eu/xsd/representation.xsd"
	NSOpMonitoring   = "http://x-road.eu/xsd/op-monitoring.xsd"
)

// Service codes of the two query operations.
const (
	ServiceOperationalData = "getSecurityServerOperationalData"
	ServiceHealthData      = "getSecurityServerHealthData"
)

// FaultPrefix is prepended to every inner fault code (7.8 spelling).
const FaultPrefix = "server.serverproxy.opmonitor."

// Inner fault codes (opmon-protocol.md §3.9).
const (
	FaultInvalidHTTPMethod       = "invalid_http_method"
	FaultInvalidContentType      = "invalid_content_type"
	FaultGlobalConfOutdated      = "global_conf_outdated"
	FaultInvalidSOAP             = "invalid_soap"
	FaultInvalidXML              = "invalid_xml"
	FaultMissingBody             = "missing_body"
	FaultMissingHeader           = "missing_header"
	FaultDuplicateHeaderField    = "duplicate_header_field"
	FaultMissingHeaderField      = "missing_header_field"
	FaultInvalidProtocolVersion  = "invalid_protocol_version"
	FaultInvalidClientIdentifier = "invalid_client_identifier"
	FaultInvalidBody             = "invalid_body"
	FaultInconsistentHeaders     = "inconsistent_headers"
	FaultInternalError           = "internal_error"
	FaultInvalidRequest          = "client.invalid_request"
)

// SOAPError is a fault to send: Code is the inner code (without
// FaultPrefix), String the faultstring.
type SOAPError struct {
	Code, String string
}

func (e *SOAPError) Error() string { return FaultPrefix + e.Code + ": " + e.String }

// FullCode is the faultcode as written on the wire.
func (e *SOAPError) FullCode() string { return FaultPrefix + e.Code }

func soapErr(code, s string) *SOAPError { return &SOAPError{Code: code, String: s} }

// Operation is the query operation selected by the service code.
type Operation int

// The operations; the zero value is OpUnknown so an unset request is never
// mistaken for a real one.
const (
	OpUnknown Operation = iota
	OpOperationalData
	OpHealthData
)

func (o Operation) String() string {
	switch o {
	case OpOperationalData:
		return ServiceOperationalData
	case OpHealthData:
		return ServiceHealthData
	}
	return "unknown"
}

// QueryRequest is a parsed and validated /query_data SOAP request, plus what
// is needed to build the response from the request envelope (§3.6).
type QueryRequest struct {
	Client          ClientID
	Service         ServiceID
	SecurityServer  *ServerID // nil when the header is absent
	ID              string
	UserID          string
	Issue           string
	ProtocolVersion string
	Operation       Operation

	// getSecurityServerOperationalData
	RecordsFrom  int64
	RecordsTo    int64
	SearchClient *ClientID // searchCriteria/client
	OutputFields []string  // outputSpec/outputField values as given

	// getSecurityServerHealthData
	FilterClient *ClientID // filterCriteria/client

	// head is the XML declaration plus the re-serialised envelope up to and
	// including the Body start tag; tail runs from the Body end tag to the
	// end of the Envelope. The response element goes between them.
	head, tail []byte
	// omPrefix/idPrefix are the prefixes to use in the response element
	// ("" for om means the default namespace); omDecl/idDecl say whether
	// they must be declared on it because nothing in scope binds them.
	omPrefix, idPrefix string
	omDecl, idDecl     bool
}

// NewUUID returns a random (version 4) UUID in its canonical text form, as
// used for fault details and error references.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
