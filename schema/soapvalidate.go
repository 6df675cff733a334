package schema

import (
	"fmt"
	"strconv"
	"strings"
)

// The two request bodies are validated by hand against the op-monitoring
// and identifiers XSDs (opmon-protocol.md §3.4, §3.5). Messages imitate
// Xerces, whose text the reference returns as faultstring.

// xsdParticle is one element of an xs:sequence; max < 0 is unbounded.
type xsdParticle struct {
	space, local string
	min, max     int
}

func xsdOM(local string, min, max int) xsdParticle {
	return xsdParticle{NSOpMonitoring, local, min, max}
}
func xsdID(local string, min, max int) xsdParticle {
	return xsdParticle{NSIdentifiers, local, min, max}
}

// Identifier content models, in XSD order. Indexes into idParts.vals follow
// these slices.
var (
	clientIDSeq  = []xsdParticle{xsdID("xRoadInstance", 1, 1), xsdID("memberClass", 1, 1), xsdID("memberCode", 1, 1), xsdID("subsystemCode", 0, 1)}
	serviceIDSeq = []xsdParticle{xsdID("xRoadInstance", 1, 1), xsdID("memberClass", 1, 1), xsdID("memberCode", 1, 1), xsdID("subsystemCode", 0, 1), xsdID("serviceCode", 1, 1), xsdID("serviceVersion", 0, 1)}
	serverIDSeq  = []xsdParticle{xsdID("xRoadInstance", 1, 1), xsdID("memberClass", 1, 1), xsdID("memberCode", 1, 1), xsdID("serverCode", 1, 1)}
)

// idParts holds the text of an identifier's children by particle index.
type idParts struct {
	names []xsdParticle
	vals  [6]string
	has   [6]bool
}

// firstBlank names the first present-or-required part among idx that is
// empty or whitespace only.
func (p idParts) firstBlank(idx ...int) string {
	for _, i := range idx {
		if i < len(p.names) && (p.has[i] || p.names[i].min > 0) && strings.TrimSpace(p.vals[i]) == "" {
			return p.names[i].local
		}
	}
	return ""
}

// xsdIdentifier checks and reads the children of an identifier element.
func xsdIdentifier(n *soapNode, seq []xsdParticle) (idParts, string) {
	p := idParts{names: seq}
	msg := xsdSequence(n, seq, func(i int, c *soapNode) string {
		v, msg := xsdSimple(c)
		p.vals[i], p.has[i] = v, true
		return msg
	})
	return p, msg
}

// xsdQNames formats names as Xerces lists expected elements.
func xsdExpected(seq []xsdParticle, i, count int) string {
	var names []string
	for j := i; j < len(seq); j++ {
		c := 0
		if j == i {
			c = count
		}
		if seq[j].max < 0 || c < seq[j].max {
			names = append(names, `"`+seq[j].space+`":`+seq[j].local)
		}
		if c < seq[j].min {
			break
		}
	}
	return strings.Join(names, ", ")
}

// xsdSequence validates n as element-only content following seq, calling
// each for every child in document order (so errors come in the order a
// streaming validator finds them).
func xsdSequence(n *soapNode, seq []xsdParticle, each func(i int, c *soapNode) string) string {
	i, count := 0, 0
	for _, c := range n.kids {
		i0, count0 := i, count
		for {
			if i < len(seq) && c.is(seq[i].space, seq[i].local) && (seq[i].max < 0 || count < seq[i].max) {
				break
			}
			if i < len(seq) && count >= seq[i].min {
				i, count = i+1, 0
				continue
			}
			exp := xsdExpected(seq, i0, count0)
			if exp == "" {
				return fmt.Sprintf("cvc-complex-type.2.4.d: Invalid content was found starting with element '%s'. No child element is expected at this point.", c.qname())
			}
			return fmt.Sprintf("cvc-complex-type.2.4.a: Invalid content was found starting with element '%s'. One of '{%s}' is expected.", c.qname(), exp)
		}
		count++
		if msg := each(i, c); msg != "" {
			return msg
		}
	}
	if len(strings.Trim(string(n.text), " \t\r\n")) > 0 {
		return fmt.Sprintf("cvc-complex-type.2.3: Element '%s' cannot have character [children], because the type's content type is element-only.", n.qname())
	}
	for j := i; j < len(seq); j++ {
		c := 0
		if j == i {
			c = count
		}
		if c < seq[j].min {
			return fmt.Sprintf("cvc-complex-type.2.4.b: The content of element '%s' is not complete. One of '{%s}' is expected.", n.qname(), xsdExpected(seq, i, count))
		}
	}
	return ""
}

// xsdAttrs rejects attributes other than the allowed ones (namespace
// declarations are not attributes here; xsi schema hints are tolerated as
// by any validator).
func xsdAttrs(n *soapNode, allowed ...xsdParticle) string {
next:
	for _, a := range n.attrs {
		for _, w := range allowed {
			if a.space == w.space && a.local == w.local {
				continue next
			}
		}
		if a.space == nsXSI && (a.local == "schemaLocation" || a.local == "noNamespaceSchemaLocation") {
			continue
		}
		return fmt.Sprintf("cvc-complex-type.3.2.2: Attribute '%s' is not allowed to appear in element '%s'.", a.qname(), n.qname())
	}
	return ""
}

// xsdSimple returns the text of a simple-typed element without attributes.
func xsdSimple(n *soapNode) (string, string) {
	if msg := xsdAttrs(n); msg != "" {
		return "", msg
	}
	if len(n.kids) > 0 {
		return "", fmt.Sprintf("cvc-type.3.1.2: Element '%s' is a simple type, so it must have no element information item [children].", n.qname())
	}
	return string(n.text), ""
}

// xsdLong parses an xs:long: whitespace collapsed, optional sign, digits.
func xsdLong(n *soapNode) (int64, string) {
	text, msg := xsdSimple(n)
	if msg != "" {
		return 0, msg
	}
	s := strings.Trim(text, " \t\r\n")
	digits := strings.TrimLeft(s, "+-")
	ok := len(s)-len(digits) <= 1 && digits != ""
	for i := 0; ok && i < len(digits); i++ {
		ok = digits[i] >= '0' && digits[i] <= '9'
	}
	if !ok {
		return 0, fmt.Sprintf("cvc-datatype-valid.1.2.1: '%s' is not a valid value for 'integer'.", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if s[0] == '-' {
			return 0, fmt.Sprintf("cvc-minInclusive-valid: Value '%s' is not facet-valid with respect to minInclusive '-9223372036854775808' for type 'long'.", s)
		}
		return 0, fmt.Sprintf("cvc-maxInclusive-valid: Value '%s' is not facet-valid with respect to maxInclusive '9223372036854775807' for type 'long'.", s)
	}
	return v, ""
}

// xsdRoot checks the body element's name and attributes.
func xsdRoot(n *soapNode, local string) string {
	if !n.is(NSOpMonitoring, local) {
		return fmt.Sprintf("cvc-elt.1.a: Cannot find the declaration of element '%s'.", n.qname())
	}
	return xsdAttrs(n)
}

// filterClient validates a client identifier used as a filter in the body
// (searchCriteria/client, filterCriteria/client). Beyond the XSD it
// rejects object types other than MEMBER/SUBSYSTEM and blank parts, which
// the reference silently accepts (opmon-protocol.md §14 rows 17–18).
func filterClient(n *soapNode) (*ClientID, string) {
	objectType := xsdID("objectType", 1, 1)
	if msg := xsdAttrs(n, objectType); msg != "" {
		return nil, msg
	}
	ot, ok := n.attr(NSIdentifiers, "objectType")
	if !ok {
		return nil, fmt.Sprintf("cvc-complex-type.4: Attribute 'objectType' must appear on element '%s'.", n.qname())
	}
	if !isXRoadObjectType(ot) {
		return nil, fmt.Sprintf("cvc-enumeration-valid: Value '%s' is not facet-valid with respect to enumeration '[%s]'. It must be a value from the enumeration.", ot, strings.Join(xRoadObjectTypes, ", "))
	}
	p, msg := xsdIdentifier(n, clientIDSeq)
	if msg != "" {
		return nil, msg
	}
	if ot != "MEMBER" && ot != "SUBSYSTEM" {
		return nil, fmt.Sprintf("Invalid client identifier in '%s': objectType must be MEMBER or SUBSYSTEM, not '%s'", n.qname(), ot)
	}
	if b := p.firstBlank(0, 1, 2, 3); b != "" && !subsystemMismatch(ot, p) {
		return nil, fmt.Sprintf("Invalid client identifier in '%s': blank %s", n.qname(), b)
	}
	id, msg := clientFromParts(ot, p)
	if msg != "" {
		// The reference wraps the identifier error of its binder.
		return nil, "[" + NewUUID() + "] [SYSTEM] invalid_client_identifier: " + msg
	}
	return &id, ""
}

// bindOperationalData validates getSecurityServerOperationalData and
// binds its values; it returns a validator message on error.
func (q *QueryRequest) bindOperationalData(n *soapNode) string {
	if msg := xsdRoot(n, ServiceOperationalData); msg != "" {
		return msg
	}
	return xsdSequence(n, []xsdParticle{xsdOM("searchCriteria", 1, 1), xsdOM("outputSpec", 0, 1)}, func(i int, c *soapNode) string {
		if msg := xsdAttrs(c); msg != "" {
			return msg
		}
		if i == 1 {
			q.OutputFields = []string{}
			return xsdSequence(c, []xsdParticle{xsdOM("outputField", 0, -1)}, func(_ int, f *soapNode) string {
				v, msg := xsdSimple(f)
				q.OutputFields = append(q.OutputFields, v)
				return msg
			})
		}
		seq := []xsdParticle{xsdOM("recordsFrom", 1, 1), xsdOM("recordsTo", 1, 1), xsdOM("client", 0, 1)}
		return xsdSequence(c, seq, func(i int, f *soapNode) string {
			var msg string
			switch i {
			case 0:
				q.RecordsFrom, msg = xsdLong(f)
			case 1:
				q.RecordsTo, msg = xsdLong(f)
			case 2:
				q.SearchClient, msg = filterClient(f)
			}
			return msg
		})
	})
}

// bindHealthData validates getSecurityServerHealthData and binds its
// optional provider filter.
func (q *QueryRequest) bindHealthData(n *soapNode) string {
	if msg := xsdRoot(n, ServiceHealthData); msg != "" {
		return msg
	}
	return xsdSequence(n, []xsdParticle{xsdOM("filterCriteria", 0, 1)}, func(_ int, c *soapNode) string {
		if msg := xsdAttrs(c); msg != "" {
			return msg
		}
		return xsdSequence(c, []xsdParticle{xsdOM("client", 0, 1)}, func(_ int, f *soapNode) string {
			var msg string
			q.FilterClient, msg = filterClient(f)
			return msg
		})
	})
}
