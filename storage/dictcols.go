package storage

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/opmond/opmond/schema"
)

// Block version 4 (blockVersionDict) is version 3 with each string column
// of the rest of the body (every string field but the two UUIDs) coded as a
// dictionary: a block's records come from a few dozen parties, services and
// servers, and writing each of their names once, then a byte per record,
// leaves zstd a third of the bytes. Measured on the shared generator's
// records, 100-record blocks: 201 → 73 B per record before zstd, 47 → 37 B
// after, zstd's decoding twice as fast, and encoding faster too. A filtered
// query compares a party column's few names with the filter once and then
// reads one byte per record.
//
//	packed UUIDs and the UUID columns: as version 3, the column offsets
//	being offsets in the rest below
//	rest: the presence masks, as version 1, then per field after
//	      monitoringDataTs in schema order but the UUID fields:
//	  string: a mode byte m; m = 0: the values as version 1;
//	          m ≥ 1: m-1 distinct values (uvarint length + bytes), then a
//	          byte per record that has the field: its value's index
//	  other kinds: as version 1
//
// The header is version 1's and its body length the version 1 body's:
// expanding rebuilds that body exactly, so every reader of bodies but the
// filtered match reads version 4 blocks as it reads the others.
const blockVersionDict = 4

// dictMaxValues bounds a column's dictionary: a column with more distinct
// values in one block is written plainly (its values are mostly unique,
// and finding each in a long table would cost the store path).
const dictMaxValues = 64

// dictScratch holds a column's distinct values while it is encoded.
type dictScratch struct {
	tab []string
	ix  []byte
}

// packDict appends to dst the version 4 packed body of recs, to raw the
// packed UUIDs, and returns them with the length of recs' version 1 body;
// rest is scratch for the rest of the body.
func packDict(dst, raw, rest []byte, recs []schema.Record, ds *dictScratch) ([]byte, []byte, []byte, int) {
	rest = rest[:0]
	for i := range recs {
		rest = binary.AppendUvarint(rest, uint64(recs[i].Has&schema.AllFields)>>1)
	}
	v1Len := len(rest)
	c := 0
	for f := schema.Field(1); f < schema.NumFields; f++ {
		if c < len(uuidFields) && f == uuidFields[c] {
			var n int
			dst, raw, n = appendUUIDColumn(dst, raw, len(rest), f, recs)
			v1Len += n
			c++
			continue
		}
		if fieldKind[f] == schema.KindString {
			var n int
			rest, n = appendDictColumn(rest, f, recs, ds)
			v1Len += n
			continue
		}
		start := len(rest)
		rest = appendScalarColumn(rest, f, recs)
		v1Len += len(rest) - start
	}
	return append(dst, rest...), raw, rest, v1Len
}

// appendUUIDColumn appends to dst the packed column of UUID field f, cut out
// at offset at of the rest, and to raw its packed UUIDs; n is the column's
// length in a version 1 body.
func appendUUIDColumn(dst, raw []byte, at int, f schema.Field, recs []schema.Record) (_, _ []byte, n int) {
	slot := fieldSlot[f]
	count := 0
	for i := range recs {
		if recs[i].Has.Has(f) {
			count++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(at))
	dst = binary.AppendUvarint(dst, uint64(count))
	for i := range recs {
		if !recs[i].Has.Has(f) {
			continue
		}
		s := recs[i].Strs[slot]
		n += uvarintLen(uint64(len(s))) + len(s)
		if u, ok := parseUUID(s); ok {
			dst = append(dst, 0)
			raw = append(raw, u[:]...)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(s))+1)
		dst = append(dst, s...)
	}
	return dst, raw, n
}

// appendDictColumn appends string column f of recs to rest, as a dictionary
// when its distinct values are few enough; n is the column's length in a
// version 1 body.
func appendDictColumn(rest []byte, f schema.Field, recs []schema.Record, ds *dictScratch) (_ []byte, n int) {
	slot := fieldSlot[f]
	tab, ix := ds.tab[:0], ds.ix[:0]
	plain := false
	for i := range recs {
		if !recs[i].Has.Has(f) {
			continue
		}
		s := recs[i].Strs[slot]
		n += uvarintLen(uint64(len(s))) + len(s)
		if plain {
			continue
		}
		k := -1
		// Newest first: a value is most often its predecessor's.
		for j := len(tab) - 1; j >= 0; j-- {
			if tab[j] == s {
				k = j
				break
			}
		}
		if k < 0 {
			if len(tab) == dictMaxValues {
				plain = true
				continue
			}
			k = len(tab)
			tab = append(tab, s)
		}
		ix = append(ix, byte(k))
	}
	if plain {
		rest = appendStringColumn(append(rest, 0), f, recs)
	} else {
		rest = append(rest, byte(len(tab)+1))
		for _, s := range tab {
			rest = binary.AppendUvarint(rest, uint64(len(s)))
			rest = append(rest, s...)
		}
		rest = append(rest, ix...)
	}
	clear(tab) // no references to the records kept in the pool
	ds.tab, ds.ix = tab[:0], ix[:0]
	return rest, n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// dictTable reads a dictionary column's mode byte and table into r.tab; it
// reports false for a plain column.
func (r *bodyReader) dictTable() bool {
	m := r.byte()
	if m == 0 {
		return false
	}
	r.tab = r.tab[:0]
	for range int(m) - 1 {
		r.tab = append(r.tab, r.str())
	}
	return true
}

// dictIndex reads a record's index into the table read last; on a bad
// index it sets r.bad, and the index it returns must not be used.
func (r *bodyReader) dictIndex() int {
	k := int(r.byte())
	if k >= len(r.tab) {
		r.bad = true
		return 0
	}
	return k
}

// expandDict appends to dst the version 1 body of bodyLen bytes that a
// version 4 packed body holds: rest and its UUID columns cols. has (one per
// record) is scratch.
func expandDict(dst []byte, rest []byte, cols *[len(uuidFields)]packedColumn, has []schema.FieldSet, bodyLen int, tab []string) ([]byte, []string, error) {
	r := bodyReader{s: unsafe.String(unsafe.SliceData(rest), len(rest)), tab: tab}
	base := len(dst)
	for i := range has {
		has[i] = schema.FieldSet(r.uvarint() << 1)
	}
	dst = append(dst, rest[:r.off]...)
	c := 0
	for f := schema.Field(1); f < schema.NumFields && !r.bad; f++ {
		if c < len(uuidFields) && f == uuidFields[c] {
			if cols[c].at != r.off {
				return dst, r.tab, fmt.Errorf("%w: packed body: column offset", errCorrupt)
			}
			dst = appendUUIDValues(dst, &cols[c])
			c++
			continue
		}
		if fieldKind[f] != schema.KindString || !r.dictTable() {
			// As version 1 has it (a plain string column after its mode byte).
			start := r.off
			skipColumn(&r, f, has, false)
			dst = append(dst, rest[start:r.off]...)
			continue
		}
		for i := range has {
			if !has[i].Has(f) {
				continue
			}
			e := r.dictIndex()
			if r.bad {
				break
			}
			dst = binary.AppendUvarint(dst, uint64(len(r.tab[e])))
			dst = append(dst, r.tab[e]...)
		}
	}
	clear(r.tab)
	switch {
	case r.bad:
		return dst, r.tab, errCorrupt
	case r.off != len(rest):
		return dst, r.tab, fmt.Errorf("%w: trailing bytes", errCorrupt)
	case len(dst)-base != bodyLen:
		return dst, r.tab, fmt.Errorf("%w: packed body: body length", errCorrupt)
	}
	return dst, r.tab, nil
}

// appendUUIDValues appends the values of a packed UUID column as a version
// 1 column (splitPacked has checked it).
func appendUUIDValues(dst []byte, c *packedColumn) []byte {
	v, raw := c.values, c.raw
	for range c.n {
		if v[0] == 0 {
			dst = append(dst, 36)
			dst = appendUUID(dst, (*[16]byte)(raw))
			raw, v = raw[16:], v[1:]
			continue
		}
		l, k := binary.Uvarint(v)
		dst = binary.AppendUvarint(dst, l-1)
		dst = append(dst, v[k:k+int(l-1)]...)
		v = v[k+int(l-1):]
	}
	return dst
}
