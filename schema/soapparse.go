package schema

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"mime"
	"strings"
)

// Limits that keep hostile documents cheap: real requests are a few dozen
// elements deep at most and a few hundred tokens long.
const (
	soapMaxDepth  = 64
	soapMaxTokens = 1 << 16
	soapMaxAttrs  = 1024 // per element; the JDK parser's own limit is 10000
)

const (
	nsXMLPrefix = "http://www.w3.org/XML/1998/namespace"
	nsXSI       = "http://www.w3.org/2001/XMLSchema-instance"
)

// soapDeclaration starts every SOAP document we write; the upstream tests
// locate the SOAP part by searching for "<?xml".
const soapDeclaration = `<?xml version="1.0" encoding="UTF-8"?>`

// The message Xerces gives for a DOCTYPE when DTDs are disabled, as the
// reference's parser is configured.
const soapDoctypeMessage = `DOCTYPE is disallowed when the feature "http://apache.org/xml/features/disallow-doctype-decl" set to true.`

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// soapNode is an element of the Header or Body, kept so the checks can run
// in the reference's order once the whole document is known to be
// well-formed.
type soapNode struct {
	space, local, prefix string
	attrs                []soapAttr
	kids                 []*soapNode
	text                 []byte // decoded character data directly inside the element
}

type soapAttr struct {
	space, local, prefix, value string
}

func (n *soapNode) is(space, local string) bool { return n.space == space && n.local == local }

// qname is the name as written, which is what validator messages show.
func (n *soapNode) qname() string {
	if n.prefix == "" {
		return n.local
	}
	return n.prefix + ":" + n.local
}

func (a soapAttr) qname() string {
	if a.prefix == "" {
		return a.local
	}
	return a.prefix + ":" + a.local
}

// expanded is the name in Java's QName.toString form, used by the
// duplicate-header message.
func (n *soapNode) expanded() string {
	if n.space == "" {
		return n.local
	}
	return "{" + n.space + "}" + n.local
}

func (n *soapNode) attr(space, local string) (string, bool) {
	for _, a := range n.attrs {
		if a.space == space && a.local == local {
			return a.value, true
		}
	}
	return "", false
}

type nsBinding struct{ prefix, uri string }

type soapRole uint8

const (
	roleOther soapRole = iota
	roleEnvelope
	roleHeader
	roleBody
	roleNode // inside Header or Body: becomes a soapNode
)

type soapOpen struct {
	name        xml.Name // as written: Space holds the prefix
	nbind       int      // bindings in scope before this element's declarations
	role        soapRole
	node        *soapNode
	selfClosing bool
}

// soapScanner reads the whole document once: it checks well-formedness and
// namespace bindings, re-serialises the envelope around the Body content
// (head and tail) and keeps the Header and Body children as soapNodes.
type soapScanner struct {
	raw      []byte
	d        *xml.Decoder
	bindings []nsBinding         // declarations in document order, popped with their element
	scope    map[string][]string // prefix to the stack of URIs bound to it, for O(1) lookups
	open     []soapOpen
	out      *bytes.Buffer // where envelope tokens are copied; nil inside Body and outside the root
	head     bytes.Buffer
	tail     bytes.Buffer
	tokens   int

	sawRoot, rootClosed bool
	header, body        *soapNode // containers for the children; nil when absent
	bodyScope           []nsBinding
}

func invalidSOAP(format string, args ...any) *SOAPError {
	return soapErr(FaultInvalidSOAP, fmt.Sprintf(format, args...))
}

func (s *soapScanner) scan() *SOAPError {
	s.d = xml.NewDecoder(bytes.NewReader(s.raw))
	s.d.Strict = true
	s.d.CharsetReader = soapCharsetReader
	for {
		start := int(s.d.InputOffset())
		tok, err := s.d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return soapErr(FaultInvalidSOAP, err.Error())
		}
		if s.tokens++; s.tokens > soapMaxTokens {
			return invalidSOAP("document has more than %d XML tokens", soapMaxTokens)
		}
		end := int(s.d.InputOffset())
		var e *SOAPError
		switch t := tok.(type) {
		case xml.StartElement:
			e = s.startElement(t, start, end)
		case xml.EndElement:
			e = s.endElement(t, start, end)
		case xml.CharData:
			e = s.charData(t, start, end)
		case xml.Comment:
			s.copyRaw(start, end)
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") {
				if start != 0 {
					return invalidSOAP(`The processing instruction target matching "[xX][mM][lL]" is not allowed.`)
				}
				continue // replaced by our own declaration
			}
			if strings.ContainsRune(t.Target, ':') {
				return invalidSOAP("processing instruction target %q contains a colon", t.Target)
			}
			s.copyRaw(start, end)
		case xml.Directive:
			// DOCTYPE (with any entity declarations) and stray <!...>
			// markup: refused before anything could be expanded.
			return soapErr(FaultInvalidSOAP, soapDoctypeMessage)
		}
		if e != nil {
			return e
		}
	}
	if !s.sawRoot {
		return soapErr(FaultInvalidSOAP, "Malformed SOAP message: envelope missing")
	}
	if len(s.open) > 0 {
		return invalidSOAP("XML document structures must start and end within the same entity (element '%s' is not closed).", rawName(s.open[len(s.open)-1].name))
	}
	return nil
}

// soapCharsetReader accepts the ASCII labels (a subset of UTF-8, so the
// bytes need no conversion and offsets stay valid); UTF-8 itself never
// reaches it.
func soapCharsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf8", "us-ascii", "ascii", "iso646-us":
		return in, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q (only UTF-8 is supported)", label)
}

func (s *soapScanner) bind(prefix, uri string) {
	if s.scope == nil {
		s.scope = make(map[string][]string)
	}
	s.bindings = append(s.bindings, nsBinding{prefix, uri})
	s.scope[prefix] = append(s.scope[prefix], uri)
}

func rawName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func (s *soapScanner) lookup(prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return nsXMLPrefix, true
	case "xmlns":
		return "", false
	}
	if uris := s.scope[prefix]; len(uris) > 0 {
		return uris[len(uris)-1], true
	}
	if prefix == "" {
		return "", true // no default namespace
	}
	return "", false
}

func (s *soapScanner) startElement(t xml.StartElement, start, end int) *SOAPError {
	if s.rootClosed {
		return invalidSOAP("The markup in the document following the root element must be well-formed.")
	}
	if len(s.open) >= soapMaxDepth {
		return invalidSOAP("element nesting deeper than %d", soapMaxDepth)
	}
	qn := rawName(t.Name)
	if strings.ContainsRune(t.Name.Local, ':') {
		return invalidSOAP("Element name %q is not a valid qualified name.", qn)
	}
	if len(t.Attr) > soapMaxAttrs {
		return invalidSOAP("element %q has more than %d attributes", qn, soapMaxAttrs)
	}
	nbind := len(s.bindings)
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "xmlns":
			if a.Name.Local == "xmlns" || (a.Name.Local == "xml") != (a.Value == nsXMLPrefix) {
				return invalidSOAP("The prefix %q cannot be bound to %q.", a.Name.Local, a.Value)
			}
			if a.Value == "" {
				return invalidSOAP("The value of the attribute \"xmlns:%s\" is invalid. Prefixed namespace bindings may not be empty.", a.Name.Local)
			}
			s.bind(a.Name.Local, a.Value)
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			s.bind("", a.Value)
		}
	}
	space, ok := s.lookup(t.Name.Space)
	if !ok {
		return invalidSOAP("The prefix %q for element %q is not bound.", t.Name.Space, qn)
	}
	var attrs []soapAttr
	var seen map[xml.Name]bool // expanded names, or raw names of declarations
	if len(t.Attr) > 1 {
		seen = make(map[xml.Name]bool, len(t.Attr))
	}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			key := xml.Name{Space: "xmlns " + a.Name.Space, Local: a.Name.Local}
			if seen[key] {
				return invalidSOAP("Attribute %q was already specified for element %q.", rawName(a.Name), qn)
			}
			if seen != nil {
				seen[key] = true
			}
			continue
		}
		if strings.ContainsRune(a.Name.Local, ':') {
			return invalidSOAP("Attribute name %q is not a valid qualified name.", rawName(a.Name))
		}
		as := ""
		if a.Name.Space != "" {
			if as, ok = s.lookup(a.Name.Space); !ok {
				return invalidSOAP("The prefix %q for attribute %q associated with an element type %q is not bound.", a.Name.Space, rawName(a.Name), qn)
			}
		}
		if key := (xml.Name{Space: as, Local: a.Name.Local}); seen[key] {
			return invalidSOAP("Attribute %q was already specified for element %q.", rawName(a.Name), qn)
		} else if seen != nil {
			seen[key] = true
		}
		attrs = append(attrs, soapAttr{space: as, local: a.Name.Local, prefix: a.Name.Space, value: a.Value})
	}

	o := soapOpen{name: t.Name, nbind: nbind, selfClosing: bytes.HasSuffix(s.raw[start:end], []byte("/>"))}
	depth := len(s.open)
	var parent soapRole
	if depth > 0 {
		parent = s.open[depth-1].role
	}
	switch {
	case depth == 0:
		if space != NSSOAPEnvelope || t.Name.Local != "Envelope" {
			return soapErr(FaultInvalidSOAP, "Malformed SOAP message: envelope missing")
		}
		s.sawRoot = true
		o.role = roleEnvelope
		s.out = &s.head
	case parent == roleEnvelope && space == NSSOAPEnvelope && t.Name.Local == "Header":
		if s.header != nil {
			return invalidSOAP("Malformed SOAP message: more than one header")
		}
		s.header = &soapNode{space: space, local: "Header", prefix: t.Name.Space}
		o.role = roleHeader
	case parent == roleEnvelope && space == NSSOAPEnvelope && t.Name.Local == "Body":
		if s.body != nil {
			return invalidSOAP("Malformed SOAP message: more than one body")
		}
		s.body = &soapNode{space: space, local: "Body", prefix: t.Name.Space}
		o.role = roleBody
		o.selfClosing = false // written as a start/end pair around the response
	case parent == roleHeader || parent == roleBody || parent == roleNode:
		n := &soapNode{space: space, local: t.Name.Local, prefix: t.Name.Space, attrs: attrs}
		switch parent {
		case roleHeader:
			s.header.kids = append(s.header.kids, n)
		case roleBody:
			s.body.kids = append(s.body.kids, n)
		default:
			p := s.open[depth-1].node
			p.kids = append(p.kids, n)
		}
		o.role, o.node = roleNode, n
	}
	s.open = append(s.open, o)
	if s.out != nil {
		s.writeStartTag(t, o.selfClosing)
	}
	if o.role == roleBody {
		s.bodyScope = append([]nsBinding(nil), s.bindings...)
		s.out = nil // the Body content is replaced by the response
	}
	return nil
}

func (s *soapScanner) endElement(t xml.EndElement, start, end int) *SOAPError {
	if len(s.open) == 0 {
		return invalidSOAP("unexpected end element </%s>", rawName(t.Name))
	}
	o := s.open[len(s.open)-1]
	if o.name != t.Name {
		return invalidSOAP("The element type %q must be terminated by the matching end-tag \"</%s>\".", rawName(o.name), rawName(o.name))
	}
	s.open = s.open[:len(s.open)-1]
	for _, b := range s.bindings[o.nbind:] {
		uris := s.scope[b.prefix]
		s.scope[b.prefix] = uris[:len(uris)-1]
	}
	s.bindings = s.bindings[:o.nbind]
	if o.role == roleBody {
		s.out = &s.tail
	}
	if s.out != nil && !o.selfClosing {
		s.out.WriteString("</")
		s.out.WriteString(rawName(t.Name))
		s.out.WriteByte('>')
	}
	if len(s.open) == 0 {
		s.rootClosed = true
		s.out = nil // anything after the root element is not copied
	}
	return nil
}

func (s *soapScanner) charData(t xml.CharData, start, end int) *SOAPError {
	if len(s.open) == 0 {
		if len(bytes.TrimLeft(t, " \t\r\n")) > 0 {
			if s.rootClosed {
				return invalidSOAP("Content is not allowed in trailing section.")
			}
			return invalidSOAP("Content is not allowed in prolog.")
		}
		return nil
	}
	if o := s.open[len(s.open)-1]; o.role == roleNode {
		o.node.text = append(o.node.text, t...)
	}
	s.copyRaw(start, end)
	return nil
}

// copyRaw copies markup as written (entity references, CDATA sections and
// comments stay as they were), with line ends normalised as any XML parser
// would.
func (s *soapScanner) copyRaw(start, end int) {
	if s.out == nil {
		return
	}
	b := s.raw[start:end]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			s.out.Write(b)
			return
		}
		s.out.Write(b[:i])
		s.out.WriteByte('\n')
		b = b[i+1:]
		if len(b) > 0 && b[0] == '\n' {
			b = b[1:]
		}
	}
}

// writeStartTag re-serialises a start tag the way a DOM serialiser does:
// single spaces between attributes, double quotes.
func (s *soapScanner) writeStartTag(t xml.StartElement, selfClosing bool) {
	w := s.out
	w.WriteByte('<')
	w.WriteString(rawName(t.Name))
	for _, a := range t.Attr {
		w.WriteByte(' ')
		w.WriteString(rawName(a.Name))
		w.WriteString(`="`)
		w.Write(appendEscapeAttr(nil, a.Value))
		w.WriteByte('"')
	}
	if selfClosing {
		w.WriteString("/>")
	} else {
		w.WriteByte('>')
	}
}

// soapCheckCharset accepts the charsets whose bytes are UTF-8.
func soapCheckCharset(contentType string) *SOAPError {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil // the caller has checked the media type; a bad parameter is not a charset
	}
	cs := strings.ToLower(strings.TrimSpace(params["charset"]))
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return nil
	}
	return invalidSOAP("Unsupported charset %q (only UTF-8 is supported)", params["charset"])
}

// ParseQueryRequest parses a /query_data SOAP request body. The media type
// has been checked by the caller; contentType is the full header value and
// supplies the charset. It runs the envelope checks of opmon-protocol.md
// §3.3 step 4, dispatches on the service code (step 6) and validates and
// binds the body (step 7), in the reference's order. Errors are *SOAPError.
func ParseQueryRequest(body []byte, contentType string) (*QueryRequest, error) {
	q, e := parseQueryRequest(body, contentType)
	if e != nil {
		return nil, e
	}
	return q, nil
}

func parseQueryRequest(body []byte, contentType string) (*QueryRequest, *SOAPError) {
	if e := soapCheckCharset(contentType); e != nil {
		return nil, e
	}
	s := &soapScanner{raw: bytes.TrimPrefix(body, utf8BOM)}
	if e := s.scan(); e != nil {
		return nil, e
	}

	if s.body == nil {
		return nil, soapErr(FaultMissingBody, "Malformed SOAP message: body missing")
	}
	for _, k := range s.body.kids {
		if k.is(NSSOAPEnvelope, "Fault") {
			return nil, faultFromBody(k)
		}
	}
	if s.header == nil {
		return nil, soapErr(FaultMissingHeader, "Malformed SOAP message: header missing")
	}
	seen := make(map[[2]string]bool, len(s.header.kids))
	for _, k := range s.header.kids {
		key := [2]string{k.space, k.local}
		if seen[key] {
			return nil, soapErr(FaultDuplicateHeaderField, "SOAP header contains duplicate field '"+k.expanded()+"'")
		}
		seen[key] = true
	}
	q := &QueryRequest{}
	hasService, e := q.readHeader(s.header.kids)
	if e != nil {
		return nil, e
	}
	if len(s.body.kids) != 1 {
		return nil, soapErr(FaultInvalidBody, "Malformed SOAP message: body must have exactly one child element")
	}
	if !hasService {
		return nil, soapErr(FaultMissingHeaderField, "Message header must contain service id")
	}
	el := s.body.kids[0]
	if !strings.HasPrefix(el.local, q.Service.Code) {
		return nil, soapErr(FaultInconsistentHeaders, "Malformed SOAP message: service code does not match in header and body")
	}

	var msg string
	switch q.Service.Code {
	case ServiceOperationalData:
		q.Operation = OpOperationalData
		msg = q.bindOperationalData(el)
	case ServiceHealthData:
		q.Operation = OpHealthData
		msg = q.bindHealthData(el)
	default:
		return nil, soapErr(FaultInternalError, "Unknown service: '"+javaServiceID(q.Service)+"'")
	}
	if msg != "" {
		return nil, soapErr(FaultInvalidRequest, msg)
	}

	q.head = append(append(make([]byte, 0, len(soapDeclaration)+s.head.Len()), soapDeclaration...), s.head.Bytes()...)
	q.tail = s.tail.Bytes()
	q.choosePrefixes(s.bodyScope)
	return q, nil
}

// faultFromBody turns a Fault received as a request into the fault we
// answer with: its code (prefixed by the caller as usual) and string.
func faultFromBody(f *soapNode) *SOAPError {
	var code, str string
	for _, k := range f.kids {
		switch k.local {
		case "faultcode":
			code = strings.TrimSpace(string(k.text))
		case "faultstring":
			str = string(k.text)
		}
	}
	if code == "" {
		code = FaultInvalidSOAP
	}
	return soapErr(code, str)
}

// javaServiceID formats a service id as upstream's ServiceId.toString:
// SERVICE:inst/class/code[/sub]/svc[/ver].
func javaServiceID(s ServiceID) string {
	p := s.Provider
	str := "SERVICE:" + p.Instance + "/" + p.MemberClass + "/" + p.MemberCode
	if p.HasSubsystem {
		str += "/" + p.Subsystem
	}
	str += "/" + s.Code
	if s.HasVersion {
		str += "/" + s.Version
	}
	return str
}

// readHeader binds the X-Road header fields in document order, so the
// first malformed field is the one reported, then checks the required
// ones. It reports whether a service header was present.
func (q *QueryRequest) readHeader(kids []*soapNode) (hasService bool, e *SOAPError) {
	var hasClient, hasID, hasVersion bool
	for _, k := range kids {
		if k.space != NSXRoad {
			continue
		}
		switch k.local {
		case "client":
			if e := q.readHeaderClient(k); e != nil {
				return false, e
			}
			hasClient = true
		case "service":
			if e := q.readHeaderService(k); e != nil {
				return false, e
			}
			hasService = true
		case "securityServer":
			id, e := readHeaderServer(k)
			if e != nil {
				return false, e
			}
			q.SecurityServer = id
		case "id", "userId", "issue", "protocolVersion":
			if len(k.kids) > 0 {
				return false, soapErr(FaultInvalidXML, fmt.Sprintf("Header field '%s' must not contain elements", k.local))
			}
			v := string(k.text)
			switch k.local {
			case "id":
				q.ID, hasID = v, true
			case "userId":
				q.UserID = v
			case "issue":
				q.Issue = v
			case "protocolVersion":
				if !strings.HasPrefix(v, "4.") {
					return false, soapErr(FaultInvalidProtocolVersion, "Invalid protocol version (supported: 4.x, provided: "+v+")")
				}
				q.ProtocolVersion, hasVersion = v, true
			}
		}
	}
	switch {
	case !hasClient:
		return false, soapErr(FaultMissingHeaderField, "Required field 'client' is missing")
	case !hasID:
		return false, soapErr(FaultMissingHeaderField, "Required field 'id' is missing")
	case !hasVersion:
		return false, soapErr(FaultMissingHeaderField, "Required field 'protocolVersion' is missing")
	}
	return hasService, nil
}

// xRoadObjectTypes is the XRoadObjectType enumeration of identifiers.xsd.
var xRoadObjectTypes = []string{"MEMBER", "SUBSYSTEM", "SERVER", "GLOBALGROUP", "SECURITYCATEGORY", "SERVICE", "CENTRALSERVICE", "LOCALGROUP"}

func isXRoadObjectType(v string) bool {
	for _, t := range xRoadObjectTypes {
		if v == t {
			return true
		}
	}
	return false
}

// headerObjectType checks the objectType attribute of a header identifier
// (the X-Road parser's messages; code invalid_xml).
func headerObjectType(n *soapNode, want ...string) (string, *SOAPError) {
	v, ok := n.attr(NSIdentifiers, "objectType")
	if !ok {
		return "", soapErr(FaultInvalidXML, "Missing objectType attribute")
	}
	if !isXRoadObjectType(v) {
		return "", soapErr(FaultInvalidXML, "Unknown objectType: "+v)
	}
	for _, w := range want {
		if v == w {
			return v, nil
		}
	}
	return "", soapErr(FaultInvalidXML, "Unexpected objectType: "+v)
}

func (q *QueryRequest) readHeaderClient(n *soapNode) *SOAPError {
	ot, e := headerObjectType(n, "MEMBER", "SUBSYSTEM")
	if e != nil {
		return e
	}
	p, msg := xsdIdentifier(n, clientIDSeq)
	if msg != "" {
		return soapErr(FaultInvalidXML, msg)
	}
	id, msg := clientFromParts(ot, p)
	if msg != "" {
		return soapErr(FaultInvalidClientIdentifier, msg)
	}
	q.Client = id
	return nil
}

func (q *QueryRequest) readHeaderService(n *soapNode) *SOAPError {
	if _, e := headerObjectType(n, "SERVICE"); e != nil {
		return e
	}
	p, msg := xsdIdentifier(n, serviceIDSeq)
	if msg != "" {
		return soapErr(FaultInvalidXML, msg)
	}
	if b := p.firstBlank(0, 1, 2, 3, 4, 5); b != "" {
		return soapErr(FaultInvalidXML, "Service identifier has a blank "+b)
	}
	q.Service = ServiceID{
		Provider: ClientID{Instance: p.vals[0], MemberClass: p.vals[1], MemberCode: p.vals[2],
			Subsystem: p.vals[3], HasSubsystem: p.has[3]},
		Code: p.vals[4], Version: p.vals[5], HasVersion: p.has[5],
	}
	return nil
}

func readHeaderServer(n *soapNode) (*ServerID, *SOAPError) {
	if _, e := headerObjectType(n, "SERVER"); e != nil {
		return nil, e
	}
	p, msg := xsdIdentifier(n, serverIDSeq)
	if msg != "" {
		return nil, soapErr(FaultInvalidXML, msg)
	}
	if b := p.firstBlank(0, 1, 2, 3); b != "" {
		return nil, soapErr(FaultInvalidXML, "Security server identifier has a blank "+b)
	}
	return &ServerID{Instance: p.vals[0], MemberClass: p.vals[1], MemberCode: p.vals[2], ServerCode: p.vals[3]}, nil
}

// subsystemMismatch reports the subsystem rule violations of §3.2.
func subsystemMismatch(objectType string, p idParts) bool {
	return objectType == "SUBSYSTEM" && !p.has[3] || objectType == "MEMBER" && p.has[3]
}

// clientFromParts applies the semantic rules of client identifiers
// (§3.2): subsystem code presence must agree with the object type, and no
// part may be blank.
func clientFromParts(objectType string, p idParts) (ClientID, string) {
	switch {
	case objectType == "SUBSYSTEM" && !p.has[3]:
		return ClientID{}, "Missing required subsystem code"
	case objectType == "MEMBER" && p.has[3]:
		return ClientID{}, "Redundant subsystem code"
	}
	if b := p.firstBlank(0, 1, 2, 3); b != "" {
		return ClientID{}, "Client identifier has a blank " + b
	}
	return ClientID{Instance: p.vals[0], MemberClass: p.vals[1], MemberCode: p.vals[2],
		Subsystem: p.vals[3], HasSubsystem: p.has[3]}, ""
}

// choosePrefixes picks the response element's prefixes (§3.6): a prefix in
// scope at Body bound to the namespace is reused (for the op-monitoring
// namespace a default-namespace binding counts too); otherwise om / id is
// declared on the response element, renamed if it would shadow the other.
func (q *QueryRequest) choosePrefixes(scope []nsBinding) {
	effective := func(prefix string) string {
		for i := len(scope) - 1; i >= 0; i-- {
			if scope[i].prefix == prefix {
				return scope[i].uri
			}
		}
		return ""
	}
	find := func(uri string, allowDefault bool) (string, bool) {
		for _, b := range scope {
			if b.prefix != "" && b.uri == uri && effective(b.prefix) == uri {
				return b.prefix, true
			}
		}
		return "", allowDefault && effective("") == uri
	}
	fresh := func(base, avoid string) string {
		p := base
		for i := 2; p == avoid; i++ {
			p = fmt.Sprintf("%s%d", base, i)
		}
		return p
	}
	om, omOK := find(NSOpMonitoring, true)
	id, idOK := find(NSIdentifiers, false)
	if !omOK {
		q.omDecl = true
		om = fresh("om", id)
	}
	if !idOK {
		q.idDecl = true
		id = fresh("id", om)
	}
	q.omPrefix, q.idPrefix = om, id
}
