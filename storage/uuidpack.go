package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/opmond/opmond/schema"
)

// Block version 3 (blockVersionPacked) is version 1 with its body packed:
// the messageId and xRequestId columns, which security servers fill with
// random UUIDs, are cut out of the body, and each canonical UUID among
// their values is kept as its 16 bytes, outside the zstd frame. zstd's
// fast levels store the literals of a block that holds random text or bytes
// nearly raw (one Huffman table for all of them), so the two UUIDs took 46
// of a record's 90 compressed bytes; packed, they take 32 and the rest
// compresses as before.
//
//	after the header: uvarint u, then u bytes: the packed UUIDs, 16 each
//	                  zstd frame of:
//	for each UUID field, in field order:
//	  uvarint offset in rest where its column was cut out
//	  uvarint n, then n values: 0x00 for the next packed UUID
//	  (lowercase, 8-4-4-4-12), or uvarint len+1 and the string's bytes
//	rest: the version 1 body without those columns
//
// Unpacking rebuilds the version 1 body exactly, so everything that reads
// bodies is the same for both versions; the header is version 1's and a
// block's zbody (blockHeader) is all that follows it.
const blockVersionPacked = 3

// uuidFields are the packed columns, in field order.
var uuidFields = [...]schema.Field{schema.FMessageID, schema.FXRequestID}

// storedVersion reports whether a block version is a stored (columnar)
// form, as opposed to sealed.
func storedVersion(v byte) bool {
	return v == blockVersion || v == blockVersionPacked || v == blockVersionDict
}

var packedBufPool = sync.Pool{New: func() any { return new([]byte) }}

// unpackFrame decompresses a version 3 or 4 block's frame and appends the
// unpacked (version 1) body to dst.
func unpackFrame(dst []byte, h *blockHeader) ([]byte, error) {
	bp := packedBufPool.Get().(*[]byte)
	defer packedBufPool.Put(bp)
	packed, raw, err := decodePackedFrame((*bp)[:0], h)
	if err != nil {
		return dst, err
	}
	*bp = packed[:0]
	if !h.dict {
		return unpackBody(dst, packed, raw, h.bodyLen)
	}
	cols, rest, err := splitPacked(packed, raw)
	if err != nil {
		return dst, err
	}
	ds := dictReadPool.Get().(*dictRead)
	defer dictReadPool.Put(ds)
	if cap(ds.has) < h.count {
		ds.has = make([]schema.FieldSet, h.count)
	}
	dst, ds.tab, err = expandDict(dst, rest, &cols, ds.has[:h.count], h.bodyLen, ds.tab)
	return dst, err
}

// dictRead is the scratch of expanding a version 4 body.
type dictRead struct {
	has []schema.FieldSet
	tab []string
}

var dictReadPool = sync.Pool{New: func() any { return new(dictRead) }}

// decodePackedFrame decompresses a version 3 block's zstd frame into dst's
// storage (grown if needed) and returns it with the packed UUIDs, which stay
// in h.zbody.
func decodePackedFrame(dst []byte, h *blockHeader) (packed, raw []byte, err error) {
	u, k := binary.Uvarint(h.zbody)
	if k <= 0 || u%16 != 0 || u > uint64(len(h.zbody)-k) || u/16 > 2*maxBlockRecords {
		return dst, nil, fmt.Errorf("%w: packed UUIDs", errCorrupt)
	}
	raw, frame := h.zbody[k:k+int(u)], h.zbody[k+int(u):]
	// Packing shrinks a canonical UUID and may grow another string's
	// length by a byte; each column adds two uvarints. A dictionary column
	// adds a mode byte and at most an index byte per record.
	limit := h.bodyLen + 2*h.count + 4*binary.MaxVarintLen64
	if h.dict {
		limit += (h.count + 1) * schema.NumFields
	}
	if cap(dst) < limit {
		dst = make([]byte, 0, limit)
	}
	packed, err = zstdDecoder().DecodeAll(frame, dst[:0:limit])
	if err != nil {
		return dst, nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	// The limit is this block's: the buffer keeps its whole capacity for the
	// next one, which a smaller block's limit would have taken from it.
	return dst[:len(packed)], raw, nil
}

// packedColumn is a UUID column of a packed body.
type packedColumn struct {
	at     int    // offset in rest where the column was cut out
	values []byte // the packed values
	raw    []byte // the packed UUIDs of its values
	n      int    // values
}

// splitPacked checks the UUID columns of a packed body against raw, the
// packed UUIDs, and returns them and the rest of the body.
func splitPacked(packed, raw []byte) (cols [len(uuidFields)]packedColumn, rest []byte, err error) {
	bad := func(what string) error { return fmt.Errorf("%w: packed body: %s", errCorrupt, what) }
	p, nraw := 0, 0
	uv := func() (uint64, bool) {
		x, k := binary.Uvarint(packed[p:])
		if k <= 0 {
			return 0, false
		}
		p += k
		return x, true
	}
	for c := range cols {
		at, ok1 := uv()
		n, ok2 := uv()
		if !ok1 || !ok2 || n > maxBlockRecords {
			return cols, nil, bad("column header")
		}
		start, rawStart := p, nraw
		for range n {
			if p >= len(packed) {
				return cols, nil, bad("truncated value")
			}
			if packed[p] == 0 {
				p++
				if len(raw) < 16*(nraw+1) {
					return cols, nil, bad("packed UUIDs")
				}
				nraw++
			} else if l, ok := uv(); !ok || l-1 > uint64(len(packed)-p) {
				return cols, nil, bad("value length")
			} else {
				p += int(l - 1)
			}
			if p > len(packed) {
				return cols, nil, bad("truncated value")
			}
		}
		cols[c] = packedColumn{at: int(at), values: packed[start:p], raw: raw[16*rawStart : 16*nraw], n: int(n)}
	}
	if 16*nraw != len(raw) {
		return cols, nil, bad("packed UUIDs left over")
	}
	return cols, packed[p:], nil
}

// unpackBody appends to dst the version 1 body of bodyLen bytes that packed
// and raw (the packed UUIDs) hold.
func unpackBody(dst, packed, raw []byte, bodyLen int) ([]byte, error) {
	cols, rest, err := splitPacked(packed, raw)
	if err != nil {
		return dst, err
	}
	prev, base := 0, len(dst)
	for _, c := range cols {
		if c.at < prev || c.at > len(rest) {
			return dst, fmt.Errorf("%w: packed body: column offset", errCorrupt)
		}
		dst = append(dst, rest[prev:c.at]...)
		prev = c.at
		dst = appendUUIDValues(dst, &c)
	}
	dst = append(dst, rest[prev:]...)
	if len(dst)-base != bodyLen {
		return dst, fmt.Errorf("%w: packed body: body length", errCorrupt)
	}
	return dst, nil
}

// parseUUID returns the 16 bytes of s if s is a UUID in the canonical form
// that appendUUID writes back identically.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	var bad byte
	for j, i := range uuidHexAt {
		hi, lo := unhex[s[i]], unhex[s[i+1]]
		bad |= hi | lo
		u[j] = hi<<4 | lo&15
	}
	return u, bad&0x80 == 0
}

// uuidHexAt are the offsets of the 16 hex pairs in a canonical UUID.
var uuidHexAt = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// unhex maps a lower-case hex digit to its value and anything else
// (upper case too: it would not come back the same) to 0x80.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x80
	}
	for i, c := range hexDigits {
		t[c] = byte(i)
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendUUID appends the canonical form of the 16 bytes u. Unrolled, with
// constant offsets, it has no bounds checks: it was 70% of unpacking.
func appendUUID(dst []byte, u *[16]byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 36)[:n+36]
	b := (*[36]byte)(dst[n:])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	b[0], b[1] = hexPairs[u[0]][0], hexPairs[u[0]][1]
	b[2], b[3] = hexPairs[u[1]][0], hexPairs[u[1]][1]
	b[4], b[5] = hexPairs[u[2]][0], hexPairs[u[2]][1]
	b[6], b[7] = hexPairs[u[3]][0], hexPairs[u[3]][1]
	b[9], b[10] = hexPairs[u[4]][0], hexPairs[u[4]][1]
	b[11], b[12] = hexPairs[u[5]][0], hexPairs[u[5]][1]
	b[14], b[15] = hexPairs[u[6]][0], hexPairs[u[6]][1]
	b[16], b[17] = hexPairs[u[7]][0], hexPairs[u[7]][1]
	b[19], b[20] = hexPairs[u[8]][0], hexPairs[u[8]][1]
	b[21], b[22] = hexPairs[u[9]][0], hexPairs[u[9]][1]
	b[24], b[25] = hexPairs[u[10]][0], hexPairs[u[10]][1]
	b[26], b[27] = hexPairs[u[11]][0], hexPairs[u[11]][1]
	b[28], b[29] = hexPairs[u[12]][0], hexPairs[u[12]][1]
	b[30], b[31] = hexPairs[u[13]][0], hexPairs[u[13]][1]
	b[32], b[33] = hexPairs[u[14]][0], hexPairs[u[14]][1]
	b[34], b[35] = hexPairs[u[15]][0], hexPairs[u[15]][1]
	return dst
}

// hexPairs are the two lower-case hex digits of every byte.
var hexPairs = func() (t [256][2]byte) {
	for i := range t {
		t[i] = [2]byte{hexDigits[i>>4], hexDigits[i&15]}
	}
	return t
}()
