package schema

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// The two store errors whose texts upstream answers with (opmon-protocol.md
// §2.7); security servers only look at the status, but the texts are kept.
var (
	//lint:ignore ST1005 upstream's exact answer text
	ErrNoData = errors.New("No data was found in the request to store data")
	//lint:ignore ST1005 upstream's exact answer text
	ErrInvalidRequest = errors.New("Received invalid request")
)

// maxDepth bounds the nesting of arrays and objects, so that the recursive
// skipping of unknown values cannot exhaust the stack.
const maxDepth = 64

// Rejected is a record of a store request that cannot be stored. It is
// quarantined rather than failing the whole batch (interface.md, "no poison
// batches").
type Rejected struct {
	Index  int    // position in the request's records array
	Reason string // why, naming the offending field if there is one
	Raw    []byte // a copy of the record's JSON text as received
}

// StoreRequest is a decoded store request: the records to store, in request
// order, and those to quarantine.
type StoreRequest struct {
	Records  []Record
	Rejected []Rejected
}

// Records are large (about 540 bytes before their strings), and a store
// request's slice is garbage once the records are stored: reusing it took
// 1 KB per stored record off the daemon's allocations, 40% of them.
var recordsPool sync.Pool // *[]Record, empty, cap ≤ maxPooledRecords

const maxPooledRecords = 4096

// Release hands the request's record slice back for reuse by a later
// DecodeStoreRequest. Neither the request nor its records may be used
// afterwards (their strings may: they are not part of the slice).
func (r *StoreRequest) Release() {
	if c := cap(r.Records); c == 0 || c > maxPooledRecords {
		return
	}
	recs := r.Records[:cap(r.Records)]
	clear(recs) // drop the strings
	recs = recs[:0]
	r.Records = nil
	recordsPool.Put(&recs)
}

// DecodeOptions adjusts decoding to the caller.
type DecodeOptions struct {
	// KeepMonitoringDataTs keeps the record's monitoringDataTs and requires
	// it (import). Otherwise it is skipped, since the daemon stamps every
	// record of a store request itself (§2.6).
	KeepMonitoringDataTs bool
}

// DecodeStoreRequest decodes a /store_data body {"records":[...]}.
//
// A blank body gives ErrNoData; a body that is not a well-formed store
// request (not JSON, not an object, no "records" array, nesting deeper than
// 64) gives ErrInvalidRequest. Within a well-formed request every record
// stands alone: one that cannot be stored goes to Rejected and the others are
// decoded.
//
// Values are bound at least as leniently as upstream's Jackson binding, so
// that whatever upstream stores is stored here too:
//   - unknown fields are skipped, the last of duplicate keys wins (but a
//     value that cannot be bound rejects the record, as it fails Jackson's
//     binding at once), null (and for numbers and succeeded also "", a blank
//     string and "null") means absent;
//   - integers accept JSON numbers and strings holding one, with surrounding
//     whitespace trimmed as Java's String.trim does; fractions are truncated
//     toward zero ("12.7" and 1.5e3 give 12 and 1500); a value out of the
//     field's range (int64, or int32 for the counts and statusCode) is
//     rejected, as are booleans, objects and arrays;
//   - succeeded accepts booleans, integers (0 is false, others true) and the
//     strings "true" and "false" in any case; fractions are rejected;
//   - strings accept numbers (their text as written) and booleans; strings are
//     truncated to the field's MaxRunes, never splitting a character;
//   - securityServerType must be exactly Client or Producer;
//   - requestSoapSize and requestRestSize stand in for a missing requestSize,
//     responseSoapSize and responseRestSize for responseSize, as very old
//     security servers sent them; upstream ignores these names, so a value
//     of theirs that cannot be used is ignored too.
//
// Invalid UTF-8 and lone surrogate escapes become U+FFFD, as with
// encoding/json. The decoded strings do not alias body, so the caller may
// reuse it; each record's strings share one allocation.
func DecodeStoreRequest(body []byte, opts DecodeOptions) (*StoreRequest, error) {
	d := decoder{buf: body, opts: opts}
	d.skipBOM()
	d.ws()
	if d.pos == len(d.buf) {
		return nil, ErrNoData
	}
	req, err := d.storeRequest()
	if err != nil {
		return nil, ErrInvalidRequest
	}
	return req, nil
}

// DecodeRecord decodes one record object, such as a line of the JSON Lines
// that opmond import reads, with the rules of DecodeStoreRequest. The error
// text is the reason the record cannot be stored.
func DecodeRecord(data []byte, opts DecodeOptions) (Record, error) {
	d := decoder{buf: data, opts: opts}
	d.skipBOM()
	d.ws()
	if d.pos == len(d.buf) {
		return Record{}, errors.New("no JSON value")
	}
	if d.buf[d.pos] != '{' {
		if err := d.skipValue(1); err != nil {
			return Record{}, err
		}
		return Record{}, errors.New("not a JSON object")
	}
	var r Record
	reason, err := d.record(&r, 1)
	if err != nil {
		return Record{}, err
	}
	d.ws()
	if d.pos != len(d.buf) {
		return Record{}, d.errAt("data after the record")
	}
	if reason != "" {
		return Record{}, errors.New(reason)
	}
	return r, nil
}

// syntaxError is a JSON syntax error; DecodeRecord returns it as the reason.
type syntaxError struct {
	Offset int // byte offset in the input
	Msg    string
}

func (e *syntaxError) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// decoder reads JSON from buf without reflection: the store path has to keep
// up with every security server of a cluster on one core.
type decoder struct {
	buf     []byte
	pos     int
	opts    DecodeOptions
	scratch []byte // the decoded strings of the current record
	tmp     []byte // decoded keys with escapes and string values of numeric fields

	// succ[f] is the field that followed f in the previous record
	// (succ[NumFields]: the first field). A sender writes its records'
	// keys in one order, so comparing the key with the predicted name
	// replaces most map lookups (8% of the store path's CPU).
	succ [NumFields + 1]Field
}

// lookupField returns the field named key, trying the successor of prev
// (NumFields at the start of a record) first.
func (d *decoder) lookupField(prev Field, key []byte) (Field, bool) {
	if p := d.succ[prev]; p < NumFields && Fields[p].Name == string(key) {
		return p, true
	}
	f, ok := fieldByName[string(key)]
	if ok {
		d.succ[prev] = f
	}
	return f, ok
}

func (d *decoder) errAt(msg string) error {
	return &syntaxError{Offset: d.pos, Msg: msg}
}

func (d *decoder) skipBOM() {
	if bytes.HasPrefix(d.buf, []byte("\xef\xbb\xbf")) {
		d.pos = 3
	}
}

func (d *decoder) ws() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the byte at pos, or 0 at the end (never valid JSON there).
func (d *decoder) peek() byte {
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

// colon consumes the ':' after a key and the whitespace around it.
func (d *decoder) colon() error {
	d.ws()
	if d.peek() != ':' {
		return d.errAt("expected ':'")
	}
	d.pos++
	d.ws()
	return nil
}

// next consumes whitespace and then ',' (more follows: true) or the closing
// byte of the container.
func (d *decoder) next(closing byte) (more bool, err error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.pos++
		d.ws()
		return true, nil
	case closing:
		d.pos++
		return false, nil
	}
	return false, d.errAt("expected ',' or '" + string(closing) + "'")
}

// storeRequest reads the top-level object.
func (d *decoder) storeRequest() (*StoreRequest, error) {
	if d.peek() != '{' {
		return nil, d.errAt("not an object")
	}
	d.pos++
	d.ws()
	var req *StoreRequest
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			key, err := d.key()
			if err != nil {
				return nil, err
			}
			isRecords := string(key) == "records"
			if err := d.colon(); err != nil {
				return nil, err
			}
			if isRecords {
				if req, err = d.records(); err != nil {
					return nil, err
				}
			} else if err := d.skipValue(2); err != nil {
				return nil, err
			}
			more, err := d.next('}')
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	}
	d.ws()
	if d.pos != len(d.buf) {
		return nil, d.errAt("data after the request")
	}
	if req == nil {
		return nil, d.errAt(`no "records" array`)
	}
	return req, nil
}

// records reads the records array.
func (d *decoder) records() (*StoreRequest, error) {
	if d.peek() != '[' {
		return nil, d.errAt(`"records" is not an array`)
	}
	d.pos++
	d.ws()
	req := &StoreRequest{}
	if d.peek() == ']' {
		d.pos++
		return req, nil
	}
	// Security servers send records of about 500 to 1000 bytes; sizing the
	// slice for that spares most regrowth of these large structs.
	want := min((len(d.buf)-d.pos)/512+1, maxPooledRecords)
	if p, _ := recordsPool.Get().(*[]Record); p != nil && cap(*p) >= want {
		req.Records = *p
	} else {
		req.Records = make([]Record, 0, want)
	}
	for i := 0; ; i++ {
		start := d.pos
		var reason string
		if d.peek() == '{' {
			req.Records = append(req.Records, Record{})
			n := len(req.Records)
			var err error
			if reason, err = d.record(&req.Records[n-1], 3); err != nil {
				return nil, err
			}
			if reason != "" {
				req.Records = req.Records[:n-1]
			}
		} else {
			c := d.peek()
			if err := d.skipValue(3); err != nil {
				return nil, err
			}
			reason = "record is " + describe(c) + ", not an object"
		}
		if reason != "" {
			req.Rejected = append(req.Rejected, Rejected{Index: i, Reason: reason, Raw: bytes.Clone(d.buf[start:d.pos])})
		}
		more, err := d.next(']')
		if err != nil {
			return nil, err
		}
		if !more {
			return req, nil
		}
	}
}

// describe names the kind of JSON value that starts with c.
func describe(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// Keys of old security servers' size fields (§2.3).
const (
	oldNone = iota
	oldRequestSize
	oldResponseSize
)

// strSpan locates a decoded string in decoder.scratch.
type strSpan struct{ start, end int }

// record reads one record object at pos into r (which must be zero). A
// syntax error is returned as err; a record that is well-formed JSON but
// cannot be stored gives a non-empty reason.
func (d *decoder) record(r *Record, depth int) (reason string, err error) {
	d.pos++ // '{'
	d.scratch = d.scratch[:0]
	var spans [NumStrs]strSpan
	var old [3]int64
	var hasOld [3]bool
	d.ws()
	if d.peek() == '}' {
		d.pos++
	} else {
		prev := Field(NumFields)
		for {
			key, err := d.key()
			if err != nil {
				return "", err
			}
			f, known := d.lookupField(prev, key)
			if known {
				prev = f
			}
			oldKey := oldNone
			if !known {
				switch string(key) {
				case "requestSoapSize", "requestRestSize":
					oldKey = oldRequestSize
				case "responseSoapSize", "responseRestSize":
					oldKey = oldResponseSize
				}
			}
			if err := d.colon(); err != nil {
				return "", err
			}
			switch {
			case known && (f != FMonitoringDataTs || d.opts.KeepMonitoringDataTs):
				msg, err := d.field(r, f, &spans, depth+1)
				if err != nil {
					return "", err
				}
				if msg != "" && reason == "" {
					reason = "field " + strconv.Quote(Fields[f].Name) + ": " + msg
				}
			case oldKey != oldNone:
				tok, text, err := d.scalar(depth + 1)
				if err != nil {
					return "", err
				}
				v, present, msg := coerceInt(tok, text, KindInt)
				if msg == "" {
					old[oldKey], hasOld[oldKey] = v, present
				}
			default:
				if err := d.skipValue(depth + 1); err != nil {
					return "", err
				}
			}
			more, err := d.next('}')
			if err != nil {
				return "", err
			}
			if !more {
				break
			}
		}
	}
	if reason != "" {
		return reason, nil
	}
	if hasOld[oldRequestSize] && !r.Has.Has(FRequestSize) {
		r.SetInt(FRequestSize, old[oldRequestSize])
	}
	if hasOld[oldResponseSize] && !r.Has.Has(FResponseSize) {
		r.SetInt(FResponseSize, old[oldResponseSize])
	}
	if missing := MandatoryFields &^ r.Has; missing != 0 {
		return missingReason(missing), nil
	}
	if d.opts.KeepMonitoringDataTs && !r.Has.Has(FMonitoringDataTs) {
		return "missing monitoringDataTs", nil
	}
	if len(d.scratch) > 0 {
		// One allocation for all the record's strings, which thereby stop
		// aliasing the request buffer.
		all := string(d.scratch)
		for f := Field(0); f < NumFields; f++ {
			if fi := &Fields[f]; fi.Kind == KindString && r.Has.Has(f) {
				sp := spans[fi.Slot]
				r.Strs[fi.Slot] = all[sp.start:sp.end]
			}
		}
	}
	return "", nil
}

func missingReason(missing FieldSet) string {
	var names []string
	for f := Field(0); f < NumFields; f++ {
		if missing.Has(f) {
			names = append(names, strconv.Quote(Fields[f].Name))
		}
	}
	if len(names) == 1 {
		return "missing mandatory field " + names[0]
	}
	return "missing mandatory fields " + strings.Join(names, ", ")
}

// field reads the value of a known field into r. msg is non-empty when the
// value cannot be bound.
func (d *decoder) field(r *Record, f Field, spans *[NumStrs]strSpan, depth int) (msg string, err error) {
	fi := &Fields[f]
	if fi.Kind != KindString {
		tok, text, err := d.scalar(depth)
		if err != nil {
			return "", err
		}
		var v int64
		present := false
		if fi.Kind == KindBool {
			var b bool
			if b, present, msg = coerceBool(tok, text); b {
				v = 1
			}
		} else {
			v, present, msg = coerceInt(tok, text, fi.Kind)
		}
		switch {
		case msg != "":
		case present:
			r.SetInt(f, v)
		default:
			r.Clear(f)
		}
		return msg, nil
	}

	start := len(d.scratch)
	switch c := d.peek(); c {
	case '"':
		if d.scratch, err = d.appendString(d.scratch, fi.MaxRunes); err != nil {
			return "", err
		}
	case 't', 'f', 'n':
		word := "null"
		if c == 't' {
			word = "true"
		} else if c == 'f' {
			word = "false"
		}
		if err := d.literal(word); err != nil {
			return "", err
		}
		if c == 'n' {
			r.Clear(f)
			return "", nil
		}
		d.scratch = append(d.scratch, word...)
	case '{', '[':
		if err := d.skipValue(depth); err != nil {
			return "", err
		}
		return "cannot use " + describe(c) + " as a string", nil
	default:
		lit, _, err := d.number()
		if err != nil {
			return "", err
		}
		// A number's text is ASCII: one byte per rune.
		d.scratch = append(d.scratch, lit[:min(len(lit), fi.MaxRunes)]...)
	}
	spans[fi.Slot] = strSpan{start, len(d.scratch)}
	r.Has = r.Has.With(f)
	if f == FSecurityServerType {
		if v := d.scratch[start:]; string(v) != "Client" && string(v) != "Producer" {
			return quoteShort(v) + " is not Client or Producer", nil
		}
	}
	return "", nil
}

// Tokens of scalar values.
const (
	tokNull = iota
	tokTrue
	tokFalse
	tokInt   // a JSON number without fraction or exponent
	tokFloat // any other JSON number
	tokString
	tokObject
	tokArray
)

// scalar reads any value for a numeric or boolean field. text is a number's
// literal or a string's decoded content (valid until the next call).
// Objects and arrays are skipped.
func (d *decoder) scalar(depth int) (tok int, text []byte, err error) {
	switch c := d.peek(); c {
	case '"':
		d.tmp, err = d.appendString(d.tmp[:0], math.MaxInt)
		return tokString, d.tmp, err
	case 't':
		return tokTrue, nil, d.literal("true")
	case 'f':
		return tokFalse, nil, d.literal("false")
	case 'n':
		return tokNull, nil, d.literal("null")
	case '{', '[':
		tok = tokObject
		if c == '[' {
			tok = tokArray
		}
		return tok, nil, d.skipValue(depth)
	}
	lit, isInt, err := d.number()
	if isInt {
		return tokInt, lit, err
	}
	return tokFloat, lit, err
}

// coerceInt binds a value to an integer field the way Jackson binds it to a
// Long or Integer with scalar coercion enabled.
func coerceInt(tok int, text []byte, kind Kind) (v int64, present bool, msg string) {
	switch tok {
	case tokNull:
		return 0, false, ""
	case tokTrue:
		return 0, false, "cannot use true as a number"
	case tokFalse:
		return 0, false, "cannot use false as a number"
	case tokObject:
		return 0, false, "cannot use an object as a number"
	case tokArray:
		return 0, false, "cannot use an array as a number"
	}
	show := string(text)
	if tok == tokString {
		text = trimJava(text)
		if len(text) == 0 || string(text) == "null" {
			return 0, false, ""
		}
		show = quoteShort(text)
	}
	v, ok, inRange := parseTruncated(text)
	if !ok {
		return 0, false, "cannot use " + show + " as a number"
	}
	if kind == KindInt32 && (v < math.MinInt32 || v > math.MaxInt32) {
		inRange = false
	}
	if !inRange {
		typ := "int64"
		if kind == KindInt32 {
			typ = "int32"
		}
		return 0, false, show + " is out of range for " + typ
	}
	return v, true, ""
}

// coerceBool binds a value to succeeded the way Jackson binds it to a Boolean.
func coerceBool(tok int, text []byte) (v, present bool, msg string) {
	switch tok {
	case tokNull:
		return false, false, ""
	case tokTrue, tokFalse:
		return tok == tokTrue, true, ""
	case tokInt:
		// Only "0" and "-0" are zero: JSON forbids other leading zeros.
		return string(text) != "0" && string(text) != "-0", true, ""
	case tokFloat:
		return false, false, "cannot use " + string(text) + " as a boolean"
	case tokObject:
		return false, false, "cannot use an object as a boolean"
	case tokArray:
		return false, false, "cannot use an array as a boolean"
	}
	text = trimJava(text)
	switch {
	case len(text) == 0 || string(text) == "null":
		return false, false, ""
	case bytes.EqualFold(text, []byte("true")):
		return true, true, ""
	case bytes.EqualFold(text, []byte("false")):
		return false, true, ""
	}
	return false, false, "cannot use " + quoteShort(text) + " as a boolean"
}

// trimJava trims as Java's String.trim, which Jackson applies to strings it
// coerces: every byte up to and including the space.
func trimJava(b []byte) []byte {
	for len(b) > 0 && b[0] <= ' ' {
		b = b[1:]
	}
	for len(b) > 0 && b[len(b)-1] <= ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// quoteShort quotes a value for a reason text, shortened to keep the
// quarantine readable.
func quoteShort(b []byte) string {
	const max = 64
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strconv.Quote(string(b[:cut])) + "..."
}

// parseTruncated parses [+-]digits[.digits][(e|E)[+-]digits] (leading zeros
// allowed) and returns its value truncated toward zero. ok is false when b is
// not such a number; inRange is false when the value does not fit an int64.
// It works on the digits rather than through float64, so that large integers
// written with a fraction or exponent keep their exact value.
func parseTruncated(b []byte) (v int64, ok, inRange bool) {
	i := 0
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	intStart := i
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	intEnd := i
	if intEnd == intStart {
		return 0, false, false
	}
	fracStart, fracEnd := i, i
	if i < len(b) && b[i] == '.' {
		i++
		fracStart = i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return 0, false, false
		}
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		expNeg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			expNeg = b[i] == '-'
			i++
		}
		start := i
		for ; i < len(b) && isDigit(b[i]); i++ {
			// Saturate: beyond a million digits the answer (0 or out of
			// range) no longer changes.
			if exp < 1e6 {
				exp = exp*10 + int(b[i]-'0')
			}
		}
		if i == start {
			return 0, false, false
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(b) {
		return 0, false, false
	}

	// The mantissa's digits are the integer digits followed by the fraction
	// digits; the value's integer part is its first nInt digits (padded with
	// zeros when nInt exceeds them).
	nIntDigits, nFracDigits := intEnd-intStart, fracEnd-fracStart
	nDigits := nIntDigits + nFracDigits
	digit := func(k int) byte {
		switch {
		case k < nIntDigits:
			return b[intStart+k] - '0'
		case k < nDigits:
			return b[fracStart+k-nIntDigits] - '0'
		}
		return 0
	}
	nInt := nIntDigits + exp
	k := 0
	for k < nInt && k < nDigits && digit(k) == 0 {
		k++
	}
	if k >= nInt || k >= nDigits {
		return 0, true, true // zero, or only a fraction
	}
	if nInt-k > 19 {
		return 0, true, false
	}
	var u uint64
	for ; k < nInt; k++ {
		if u > (math.MaxUint64-9)/10 {
			return 0, true, false
		}
		u = u*10 + uint64(digit(k))
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true, true
	case !neg && u <= math.MaxInt64:
		return int64(u), true, true
	}
	return 0, true, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// key reads an object key. Without escapes it aliases buf, otherwise tmp;
// either way it is only valid until the next read.
func (d *decoder) key() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.errAt("expected a string key")
	}
	for i := d.pos + 1; i < len(d.buf); i++ {
		switch c := d.buf[i]; {
		case c == '"':
			k := d.buf[d.pos+1 : i]
			d.pos = i + 1
			return k, nil
		case c == '\\' || c < 0x20:
			var err error
			d.tmp, err = d.appendString(d.tmp[:0], math.MaxInt)
			return d.tmp, err
		}
	}
	d.pos = len(d.buf)
	return nil, d.errAt("unterminated string")
}

// appendString decodes the string at pos (its opening quote) and appends at
// most max runes of it to dst. The rest is still read and checked.
func (d *decoder) appendString(dst []byte, max int) ([]byte, error) {
	buf := d.buf
	i := d.pos + 1
	n := 0 // runes appended
	for {
		start := i
		for i < len(buf) && asciiPlain[buf[i]] {
			i++
		}
		if k := min(i-start, max-n); k > 0 {
			dst = append(dst, buf[start:start+k]...)
			n += k
		}
		if i >= len(buf) {
			d.pos = i
			return dst, d.errAt("unterminated string")
		}
		switch c := buf[i]; {
		case c == '"':
			d.pos = i + 1
			return dst, nil
		case c == '\\':
			r, size := unescape(buf[i:])
			if size == 0 {
				d.pos = i
				return dst, d.errAt("invalid escape in string")
			}
			if n < max {
				dst = utf8.AppendRune(dst, r)
				n++
			}
			i += size
		case c < 0x20:
			d.pos = i
			return dst, d.errAt("control character in string")
		default:
			r, size := utf8.DecodeRune(buf[i:])
			if n < max {
				if r == utf8.RuneError && size == 1 {
					dst = utf8.AppendRune(dst, utf8.RuneError)
				} else {
					dst = append(dst, buf[i:i+size]...)
				}
				n++
			}
			i += size
		}
	}
}

// asciiPlain marks the bytes a string can hold as they are: printable ASCII
// other than '"' and '\'.
var asciiPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// unescape decodes the escape sequence at the start of b (a backslash). A
// surrogate pair is one rune; a lone surrogate is U+FFFD, as encoding/json
// decodes it. size 0 means the sequence is invalid.
func unescape(b []byte) (r rune, size int) {
	if len(b) < 2 {
		return 0, 0
	}
	switch b[1] {
	case '"', '\\', '/':
		return rune(b[1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r, ok := hex4(b[2:])
		if !ok {
			return 0, 0
		}
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
			if r2, ok := hex4(b[8:]); ok {
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					return dec, 12
				}
			}
		}
		return utf8.RuneError, 6
	}
	return 0, 0
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipString checks and skips the string at pos.
func (d *decoder) skipString() error {
	buf := d.buf
	for i := d.pos + 1; i < len(buf); {
		switch c := buf[i]; {
		case c == '"':
			d.pos = i + 1
			return nil
		case c == '\\':
			_, size := unescape(buf[i:])
			if size == 0 {
				d.pos = i
				return d.errAt("invalid escape in string")
			}
			i += size
		case c < 0x20:
			d.pos = i
			return d.errAt("control character in string")
		default:
			i++
		}
	}
	d.pos = len(buf)
	return d.errAt("unterminated string")
}

// number checks and skips the number at pos and returns its text.
func (d *decoder) number() (lit []byte, isInt bool, err error) {
	buf := d.buf
	start, i := d.pos, d.pos
	if i < len(buf) && buf[i] == '-' {
		i++
	}
	switch {
	case i < len(buf) && buf[i] == '0':
		i++
	case i < len(buf) && '1' <= buf[i] && buf[i] <= '9':
		i = d.skipDigits(buf, i)
	default:
		return nil, false, d.errAt("invalid value")
	}
	isInt = true
	if i < len(buf) && buf[i] == '.' {
		if i = d.skipDigits(buf, i+1); i < 0 {
			return nil, false, d.errAt("invalid number")
		}
		isInt = false
	}
	if i < len(buf) && (buf[i] == 'e' || buf[i] == 'E') {
		i++
		if i < len(buf) && (buf[i] == '+' || buf[i] == '-') {
			i++
		}
		if i = d.skipDigits(buf, i); i < 0 {
			return nil, false, d.errAt("invalid number")
		}
		isInt = false
	}
	d.pos = i
	return buf[start:i], isInt, nil
}

// skipDigits returns the index after the run of digits at i, or -1 when
// there is none; the decoder's position is then left at i for the error.
func (d *decoder) skipDigits(buf []byte, i int) int {
	if i >= len(buf) || !isDigit(buf[i]) {
		d.pos = i
		return -1
	}
	for i < len(buf) && isDigit(buf[i]) {
		i++
	}
	return i
}

func (d *decoder) literal(word string) error {
	if !bytes.HasPrefix(d.buf[d.pos:], []byte(word)) {
		return d.errAt("invalid value")
	}
	d.pos += len(word)
	return nil
}

// skipValue checks and skips any value at pos; depth is the nesting level an
// object or array there would have.
func (d *decoder) skipValue(depth int) error {
	switch c := d.peek(); c {
	case '"':
		return d.skipString()
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case '{', '[':
		if depth > maxDepth {
			return d.errAt(fmt.Sprintf("nested deeper than %d levels", maxDepth))
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		d.pos++
		d.ws()
		if d.peek() == closing {
			d.pos++
			return nil
		}
		for {
			if c == '{' {
				if d.peek() != '"' {
					return d.errAt("expected a string key")
				}
				if err := d.skipString(); err != nil {
					return err
				}
				if err := d.colon(); err != nil {
					return err
				}
			}
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			more, err := d.next(closing)
			if err != nil || !more {
				return err
			}
		}
	}
	_, _, err := d.number()
	return err
}
