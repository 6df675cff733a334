// Package schema holds the X-Road operational monitoring record, the
// identifiers used by the query interface, and their wire encodings.
// It imports nothing else of opmond.
package schema

// Kind is the JSON type of a record field.
type Kind uint8

// Field kinds.
const (
	KindString Kind = iota
	KindInt         // int64: timestamps (ms) and sizes
	KindInt32       // int32: attachment counts and statusCode
	KindBool        // succeeded
)

// Field identifies one of the 40 record fields, in the order of
// opmon-protocol.md §2.2 (which is also the JSON output order).
type Field uint8

// The record fields. The order is part of the storage format: never reorder,
// only append.
const (
	FMonitoringDataTs Field = iota
	FSecurityServerInternalIP
	FSecurityServerType
	FRequestInTs
	FRequestOutTs
	FResponseInTs
	FResponseOutTs
	FClientXRoadInstance
	FClientMemberClass
	FClientMemberCode
	FClientSubsystemCode
	FServiceXRoadInstance
	FServiceMemberClass
	FServiceMemberCode
	FServiceSubsystemCode
	FServiceCode
	FRestMethod
	FRestPath
	FXRoadVersion
	FServiceVersion
	FRepresentedPartyClass
	FRepresentedPartyCode
	FMessageID
	FMessageUserID
	FMessageIssue
	FMessageProtocolVersion
	FClientSecurityServerAddress
	FServiceSecurityServerAddress
	FRequestSize
	FResponseSize
	FRequestMimeSize
	FRequestAttachmentCount
	FResponseMimeSize
	FResponseAttachmentCount
	FSucceeded
	FFaultCode
	FFaultString
	FXRequestID
	FStatusCode
	FServiceType

	NumFields = iota
)

// FieldInfo describes a field: its JSON name, kind, and where its value lives
// in a Record (Slot indexes Record.Ints for numeric kinds and bool, Record.Strs
// for strings).
type FieldInfo struct {
	Name      string
	Kind      Kind
	Slot      uint8
	MaxRunes  int  // truncation limit for strings (255, faultString 2048)
	Mandatory bool // NOT NULL upstream: a record without it is not stored
}

// Number of value slots in a Record.
const (
	NumInts = 13 // 12 integers and succeeded
	NumStrs = 27
)

// Fields lists the field descriptions, indexed by Field.
var Fields = [NumFields]FieldInfo{}

// FieldSet is a bit set of fields (bit i = Field i).
type FieldSet uint64

// AllFields contains every field.
const AllFields FieldSet = 1<<NumFields - 1

// MandatoryFields are the five fields upstream declares NOT NULL (besides
// monitoringDataTs, which the daemon sets itself).
const MandatoryFields = FieldSet(1)<<FSecurityServerInternalIP | FieldSet(1)<<FSecurityServerType |
	FieldSet(1)<<FRequestInTs | FieldSet(1)<<FResponseOutTs | FieldSet(1)<<FSucceeded

// Has reports whether f is in the set.
func (s FieldSet) Has(f Field) bool { return s&(1<<f) != 0 }

// With returns the set with f added.
func (s FieldSet) With(f Field) FieldSet { return s | 1<<f }

// Without returns the set with f removed.
func (s FieldSet) Without(f Field) FieldSet { return s &^ (1 << f) }

var fieldByName = map[string]Field{}

func init() {
	var ni, ns uint8
	def := func(f Field, name string, k Kind) {
		fi := FieldInfo{Name: name, Kind: k, MaxRunes: 255}
		if k == KindString {
			fi.Slot = ns
			ns++
		} else {
			fi.Slot = ni
			ni++
		}
		if f == FFaultString {
			fi.MaxRunes = 2048
		}
		fi.Mandatory = MandatoryFields.Has(f)
		Fields[f] = fi
		fieldByName[name] = f
	}
	def(FMonitoringDataTs, "monitoringDataTs", KindInt)
	def(FSecurityServerInternalIP, "securityServerInternalIp", KindString)
	def(FSecurityServerType, "securityServerType", KindString)
	def(FRequestInTs, "requestInTs", KindInt)
	def(FRequestOutTs, "requestOutTs", KindInt)
	def(FResponseInTs, "responseInTs", KindInt)
	def(FResponseOutTs, "responseOutTs", KindInt)
	def(FClientXRoadInstance, "clientXRoadInstance", KindString)
	def(FClientMemberClass, "clientMemberClass", KindString)
	def(FClientMemberCode, "clientMemberCode", KindString)
	def(FClientSubsystemCode, "clientSubsystemCode", KindString)
	def(FServiceXRoadInstance, "serviceXRoadInstance", KindString)
	def(FServiceMemberClass, "serviceMemberClass", KindString)
	def(FServiceMemberCode, "serviceMemberCode", KindString)
	def(FServiceSubsystemCode, "serviceSubsystemCode", KindString)
	def(FServiceCode, "serviceCode", KindString)
	def(FRestMethod, "restMethod", KindString)
	def(FRestPath, "restPath", KindString)
	def(FXRoadVersion, "xRoadVersion", KindString)
	def(FServiceVersion, "serviceVersion", KindString)
	def(FRepresentedPartyClass, "representedPartyClass", KindString)
	def(FRepresentedPartyCode, "representedPartyCode", KindString)
	def(FMessageID, "messageId", KindString)
	def(FMessageUserID, "messageUserId", KindString)
	def(FMessageIssue, "messageIssue", KindString)
	def(FMessageProtocolVersion, "messageProtocolVersion", KindString)
	def(FClientSecurityServerAddress, "clientSecurityServerAddress", KindString)
	def(FServiceSecurityServerAddress, "serviceSecurityServerAddress", KindString)
	def(FRequestSize, "requestSize", KindInt)
	def(FResponseSize, "responseSize", KindInt)
	def(FRequestMimeSize, "requestMimeSize", KindInt)
	def(FRequestAttachmentCount, "requestAttachmentCount", KindInt32)
	def(FResponseMimeSize, "responseMimeSize", KindInt)
	def(FResponseAttachmentCount, "responseAttachmentCount", KindInt32)
	def(FSucceeded, "succeeded", KindBool)
	def(FFaultCode, "faultCode", KindString)
	def(FFaultString, "faultString", KindString)
	def(FXRequestID, "xRequestId", KindString)
	def(FStatusCode, "statusCode", KindInt32)
	def(FServiceType, "serviceType", KindString)
	if ni != NumInts || ns != NumStrs {
		panic("schema: field table does not match slot counts")
	}
}

// FieldByName returns the field with the exact (case-sensitive) JSON name.
func FieldByName(name string) (Field, bool) {
	f, ok := fieldByName[name]
	return f, ok
}

// Name returns the field's JSON name.
func (f Field) Name() string { return Fields[f].Name }

// Record is one operational monitoring record. Absent (null) fields have
// their bit clear in Has; their slot value is then meaningless (zero).
type Record struct {
	Has  FieldSet
	Ints [NumInts]int64
	Strs [NumStrs]string
}

// Str returns a string field's value ("" when absent).
func (r *Record) Str(f Field) string { return r.Strs[Fields[f].Slot] }

// Int returns a numeric field's value (0 when absent). For succeeded it is 0 or 1.
func (r *Record) Int(f Field) int64 { return r.Ints[Fields[f].Slot] }

// Bool returns succeeded (false when absent).
func (r *Record) Bool(f Field) bool { return r.Ints[Fields[f].Slot] != 0 }

// SetStr sets a string field present.
func (r *Record) SetStr(f Field, v string) {
	r.Strs[Fields[f].Slot] = v
	r.Has |= 1 << f
}

// SetInt sets a numeric field present.
func (r *Record) SetInt(f Field, v int64) {
	r.Ints[Fields[f].Slot] = v
	r.Has |= 1 << f
}

// SetBool sets a bool field present.
func (r *Record) SetBool(f Field, v bool) {
	var n int64
	if v {
		n = 1
	}
	r.Ints[Fields[f].Slot] = n
	r.Has |= 1 << f
}

// Clear makes a field absent.
func (r *Record) Clear(f Field) {
	fi := Fields[f]
	if fi.Kind == KindString {
		r.Strs[fi.Slot] = ""
	} else {
		r.Ints[fi.Slot] = 0
	}
	r.Has &^= 1 << f
}

// Client returns the record's service client identifier (ok=false when the
// record lacks instance, class or code).
func (r *Record) Client() (ClientID, bool) {
	return r.party(FClientXRoadInstance)
}

// Provider returns the record's service provider identifier.
func (r *Record) Provider() (ClientID, bool) {
	return r.party(FServiceXRoadInstance)
}

// party reads the four identifier fields starting at first (instance, class,
// code, subsystem are consecutive fields for both roles).
func (r *Record) party(first Field) (ClientID, bool) {
	if !r.Has.Has(first) || !r.Has.Has(first+1) || !r.Has.Has(first+2) {
		return ClientID{}, false
	}
	id := ClientID{Instance: r.Str(first), MemberClass: r.Str(first + 1), MemberCode: r.Str(first + 2)}
	if r.Has.Has(first + 3) {
		id.Subsystem = r.Str(first + 3)
		id.HasSubsystem = true
	}
	return id, true
}

// MatchesClient reports upstream's matches(id, "client") of §4.3: instance,
// class and code equal, and the subsystem equal (absent matches only absent).
func (r *Record) MatchesClient(id ClientID) bool { return r.matches(FClientXRoadInstance, id) }

// MatchesProvider reports matches(id, "service").
func (r *Record) MatchesProvider(id ClientID) bool { return r.matches(FServiceXRoadInstance, id) }

func (r *Record) matches(first Field, id ClientID) bool {
	if !r.Has.Has(first) || r.Str(first) != id.Instance ||
		!r.Has.Has(first+1) || r.Str(first+1) != id.MemberClass ||
		!r.Has.Has(first+2) || r.Str(first+2) != id.MemberCode {
		return false
	}
	if !id.HasSubsystem {
		return !r.Has.Has(first + 3)
	}
	return r.Has.Has(first+3) && r.Str(first+3) == id.Subsystem
}
