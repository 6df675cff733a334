package schema

import (
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// AppendRecordJSON appends r as a compact JSON object with the fields of
// fields that r has, in schema field order (the §2.2 order); absent fields
// are omitted, so the object may be {}. Non-ASCII is written raw (no \u
// escapes) and <, >, & are not escaped (§4.6); control characters, " and \
// are escaped, and invalid UTF-8 becomes \ufffd.
func AppendRecordJSON(dst []byte, r *Record, fields FieldSet) []byte {
	dst = append(dst, '{')
	first := true
	// Walking the set bits in increasing order gives the field order.
	for s := uint64(r.Has & fields & AllFields); s != 0; s &= s - 1 {
		f := Field(bits.TrailingZeros64(s))
		fi := &Fields[f]
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, fi.Name...)
		dst = append(dst, '"', ':')
		switch fi.Kind {
		case KindString:
			dst = AppendJSONString(dst, r.Strs[fi.Slot])
		case KindBool:
			if r.Ints[fi.Slot] != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		default:
			dst = strconv.AppendInt(dst, r.Ints[fi.Slot], 10)
		}
	}
	return append(dst, '}')
}

// AppendJSONString appends s as a JSON string: no HTML escaping, non-ASCII
// raw, invalid UTF-8 as \ufffd. Runs of bytes that need no escaping, the
// common case, are copied at once.
func AppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if asciiPlain[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
