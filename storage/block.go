package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/klauspost/compress/zstd"

	"github.com/opmond/opmond/schema"
)

// A block value is a small uncompressed header followed by a zstd frame
// holding the records in columns:
//
//	header: version byte (blockVersion)
//	        uvarint record count
//	        uvarint length of the uncompressed body
//	        uvarint n, then n party hashes (8 bytes big-endian each)
//	        uvarint m, then m requestInTs minute keys, ascending, as uvarint
//	        deltas (the first from zero)
//	body:   per record the presence mask shifted right by one (uvarint,
//	        monitoringDataTs is the block key's ts and never stored), then
//	        for each field after monitoringDataTs in schema order the values
//	        of the records that have it: strings as uvarint length + bytes,
//	        succeeded as one byte, other numbers as zigzag varints, with
//	        requestInTs as the delta from the previous record's requestInTs
//	        and the other three timestamps as the delta from the record's
//	        own requestInTs.
//
// The header lets purge remove index entries without decompressing.
// Version 3 (uuidpack.go) has the same header and body, the body packed;
// version 4 (dictcols.go), which Store writes, is version 3 with its string
// columns as dictionaries; version 2 is a sealed block (seal.go).
const blockVersion = 1

// maxBlockRecords bounds a block so that a filtered query never decodes a
// huge block for one matching record.
const maxBlockRecords = 1024

// maxBodyLen bounds the uncompressed body a corrupt header could claim.
const maxBodyLen = 64 << 20

var errCorrupt = errors.New("corrupt block")

var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		// A block is at most a few hundred KiB: a small window keeps each
		// concurrent encoder's memory small at no cost in ratio. The
		// fastest level: 0.6 MB per encoder instead of 2.7 (its tables),
		// 25% less time, 2.8 B per record more until the block is sealed
		// (BenchmarkCompressionLevels).
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithWindowSize(512<<10),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only bad options fail
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(1<<20))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// Per-field facts used in the encoding loops.
var (
	fieldKind [schema.NumFields]schema.Kind
	fieldSlot [schema.NumFields]uint8
)

func init() {
	for f := range schema.Fields {
		fieldKind[f] = schema.Fields[f].Kind
		fieldSlot[f] = schema.Fields[f].Slot
	}
}

var slotRequestInTs = schema.Fields[schema.FRequestInTs].Slot

// relToRequestIn reports whether a timestamp field is stored relative to the
// record's requestInTs.
func relToRequestIn(f schema.Field) bool {
	return f == schema.FRequestOutTs || f == schema.FResponseInTs || f == schema.FResponseOutTs
}

type blockEncoder struct {
	packed  []byte
	raw     []byte
	rest    []byte
	dict    dictScratch
	parties []uint64
	minutes []uint64
}

var encoderPool = sync.Pool{New: func() any { return new(blockEncoder) }}

// encodeBlock encodes recs (at most maxBlockRecords) as a block value, of
// version 4 (dictcols.go).
func encodeBlock(recs []schema.Record) []byte {
	e := encoderPool.Get().(*blockEncoder)
	defer encoderPool.Put(e)
	packed, raw, rest, bodyLen := packDict(e.packed[:0], e.raw[:0], e.rest, recs, &e.dict)
	parties, minutes := blockKeys(recs, e.parties[:0], e.minutes[:0])
	out := make([]byte, 0, 32+8*len(parties)+2*len(minutes)+len(raw)+len(packed)/2)
	out = appendHeaderKeys(append(out, blockVersionDict), len(recs), bodyLen, parties, minutes)
	out = binary.AppendUvarint(out, uint64(len(raw)))
	out = append(out, raw...)
	out = zstdEncoder().EncodeAll(packed, out)
	e.packed, e.raw, e.rest, e.parties, e.minutes = packed, raw, rest, parties, minutes
	return out
}

// blockKeys appends the sorted distinct party hashes and requestInTs
// minute keys of recs to parties and minutes.
func blockKeys(recs []schema.Record, parties, minutes []uint64) ([]uint64, []uint64) {
	for i := range recs {
		r := &recs[i]
		if h, ok := recordPartyHash(r, roleClient, schema.FClientXRoadInstance); ok {
			parties = append(parties, h)
		}
		if h, ok := recordPartyHash(r, roleProvider, schema.FServiceXRoadInstance); ok {
			parties = append(parties, h)
		}
		if r.Has.Has(schema.FRequestInTs) {
			minutes = append(minutes, minuteKey(r.Ints[slotRequestInTs]))
		}
	}
	slices.Sort(parties)
	parties = slices.Compact(parties)
	slices.Sort(minutes)
	minutes = slices.Compact(minutes)
	return parties, minutes
}

// appendHeaderKeys appends the header fields both block versions share.
func appendHeaderKeys(out []byte, count, bodyLen int, parties, minutes []uint64) []byte {
	out = binary.AppendUvarint(out, uint64(count))
	out = binary.AppendUvarint(out, uint64(bodyLen))
	out = binary.AppendUvarint(out, uint64(len(parties)))
	for _, h := range parties {
		out = binary.BigEndian.AppendUint64(out, h)
	}
	out = binary.AppendUvarint(out, uint64(len(minutes)))
	var prev uint64
	for _, m := range minutes {
		out = binary.AppendUvarint(out, m-prev)
		prev = m
	}
	return out
}

// appendColumns appends the uncompressed (version 1) body of recs to body.
// If starts is not nil, starts[f] is set to the offset in the appended body
// where the column of field f starts, and starts[NumFields] to its length.
func appendColumns(body []byte, recs []schema.Record, starts *[schema.NumFields + 1]int) []byte {
	base := len(body)
	for i := range recs {
		body = binary.AppendUvarint(body, uint64(recs[i].Has&schema.AllFields)>>1)
	}
	for f := schema.Field(1); f < schema.NumFields; f++ {
		if starts != nil {
			starts[f] = len(body) - base
		}
		if fieldKind[f] == schema.KindString {
			body = appendStringColumn(body, f, recs)
		} else {
			body = appendScalarColumn(body, f, recs)
		}
	}
	if starts != nil {
		starts[schema.NumFields] = len(body) - base
	}
	return body
}

// appendStringColumn appends the column of f, a string field, of recs to
// body as version 1 writes it.
func appendStringColumn(body []byte, f schema.Field, recs []schema.Record) []byte {
	slot := fieldSlot[f]
	for i := range recs {
		if r := &recs[i]; r.Has.Has(f) {
			body = binary.AppendUvarint(body, uint64(len(r.Strs[slot])))
			body = append(body, r.Strs[slot]...)
		}
	}
	return body
}

// appendScalarColumn appends the column of f, a bool or number field, of
// recs to body as version 1 writes it.
func appendScalarColumn(body []byte, f schema.Field, recs []schema.Record) []byte {
	slot := fieldSlot[f]
	if fieldKind[f] == schema.KindBool {
		for i := range recs {
			if r := &recs[i]; r.Has.Has(f) {
				var b byte
				if r.Ints[slot] != 0 {
					b = 1
				}
				body = append(body, b)
			}
		}
		return body
	}
	var prev int64
	for i := range recs {
		r := &recs[i]
		if !r.Has.Has(f) {
			continue
		}
		v := r.Ints[slot]
		switch {
		case f == schema.FRequestInTs:
			v, prev = v-prev, v
		case relToRequestIn(f) && r.Has.Has(schema.FRequestInTs):
			v -= r.Ints[slotRequestInTs]
		}
		body = binary.AppendVarint(body, v)
	}
	return body
}

// blockHeader is the parsed uncompressed header of a block value. Its slices
// point into the value.
type blockHeader struct {
	count   int
	bodyLen int
	parties []byte // 8 bytes per hash
	minutes []byte // uvarint deltas
	nMin    int
	zbody   []byte // the zstd frame (version 3: the packed UUIDs, then the frame), or for a sealed block its deflate stream
	sealed  bool   // block version 2 (seal.go); bodyLen is then its JSON's
	packed  bool   // block version 3 or 4: zbody holds the packed body (uuidpack.go)
	dict    bool   // block version 4: the packed body's string columns are dictionaries (dictcols.go)
	crc     uint32 // sealed: CRC-32 (IEEE) of the JSON
	tagW    int    // sealed: bytes per tag
	tags    []byte // sealed: 2 tags per record (seal.go)
	chunks  int    // sealed: pieces of the stream in bucketSealed after zbody
}

func parseHeader(v []byte) (blockHeader, error) {
	var h blockHeader
	if len(v) == 0 || !storedVersion(v[0]) && v[0] != blockVersionSealed {
		return h, fmt.Errorf("%w: unknown block version", errCorrupt)
	}
	h.sealed = v[0] == blockVersionSealed
	h.packed = v[0] == blockVersionPacked || v[0] == blockVersionDict
	h.dict = v[0] == blockVersionDict
	p := 1
	uv := func() uint64 {
		if p < 0 {
			return 0
		}
		x, n := binary.Uvarint(v[p:])
		if n <= 0 {
			p = -1
			return 0
		}
		p += n
		return x
	}
	count, bodyLen, np := uv(), uv(), uv()
	if p < 0 || count > maxBlockRecords || count > bodyLen || bodyLen > maxBodyLen || np > uint64(len(v)-p)/8 {
		return h, errCorrupt
	}
	h.count, h.bodyLen = int(count), int(bodyLen)
	h.parties = v[p : p+int(np)*8]
	p += int(np) * 8
	nm := uv()
	if p < 0 || nm > uint64(len(v)-p) {
		return h, errCorrupt
	}
	start := p
	for range nm {
		if uv(); p < 0 {
			return h, errCorrupt
		}
	}
	h.minutes, h.nMin = v[start:p], int(nm)
	if h.sealed {
		if len(v)-p < 4 {
			return h, errCorrupt
		}
		h.crc = binary.BigEndian.Uint32(v[p:])
		p += 4
		if p >= len(v) || v[p] != 1 && v[p] != 2 {
			return h, errCorrupt
		}
		h.tagW = int(v[p])
		p++
		if n := 2 * h.tagW * h.count; n+2 > len(v)-p {
			return h, errCorrupt
		} else {
			h.tags = v[p : p+n]
			p += n
		}
		h.chunks = int(binary.BigEndian.Uint16(v[p:]))
		p += 2
	}
	h.zbody = v[p:]
	return h, nil
}

// hasParty reports whether the block holds a party with hash ph.
func (h *blockHeader) hasParty(ph uint64) bool {
	for i := 0; i+8 <= len(h.parties); i += 8 {
		if binary.BigEndian.Uint64(h.parties[i:]) == ph {
			return true
		}
	}
	return false
}

// eachParty calls fn with every party hash of the block.
func (h *blockHeader) eachParty(fn func(uint64) error) error {
	for i := 0; i+8 <= len(h.parties); i += 8 {
		if err := fn(binary.BigEndian.Uint64(h.parties[i:])); err != nil {
			return err
		}
	}
	return nil
}

// eachMinute calls fn with every requestInTs minute key of the block.
func (h *blockHeader) eachMinute(fn func(uint64) error) error {
	var m uint64
	b := h.minutes
	for range h.nMin {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			return errCorrupt
		}
		b = b[n:]
		m += d
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

var bodyBufPool = sync.Pool{New: func() any { return new([]byte) }}

// decompress returns the uncompressed body of a block as one string; the
// strings of decoded records are substrings of it, so decoding allocates
// nothing per field.
func decompress(h *blockHeader) (string, error) {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf, err := decompressInto(*bp, h)
	if err != nil {
		return "", err
	}
	*bp = buf[:0]
	return string(buf), nil
}

// decompressInto decompresses a block's body into dst's storage (grown if
// needed) and returns it.
func decompressInto(dst []byte, h *blockHeader) ([]byte, error) {
	if h.sealed {
		return sealedColumns(dst, h)
	}
	return appendBody(dst[:0], h)
}

// appendBody appends the uncompressed body of a stored block to dst.
func appendBody(dst []byte, h *blockHeader) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, h.bodyLen)
	if h.packed {
		return unpackFrame(dst, h)
	}
	buf, err := zstdDecoder().DecodeAll(h.zbody, dst[:n:n+h.bodyLen])
	if err != nil {
		return dst, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if len(buf)-n != h.bodyLen {
		return dst, fmt.Errorf("%w: body length", errCorrupt)
	}
	return buf, nil
}

// detachStrings gives a record decoded from a reused buffer its own copy of
// its strings, in one allocation.
func detachStrings(r *schema.Record) {
	n := 0
	for _, s := range r.Strs {
		n += len(s)
	}
	if n == 0 {
		return
	}
	b := make([]byte, 0, n)
	for _, s := range r.Strs {
		b = append(b, s...)
	}
	all := unsafe.String(unsafe.SliceData(b), n)
	off := 0
	for i, s := range r.Strs {
		r.Strs[i] = all[off : off+len(s)]
		off += len(s)
	}
}

// bodyReader reads varints and strings from a body without allocating.
type bodyReader struct {
	s   string
	off int
	bad bool
	tab []string // the dictionary column read last (dictcols.go)
	// Set by decodeMatching: how many records have each field, and the
	// matching records (indexes).
	present *[schema.NumFields]int
	matched []int32
}

// count returns how many of the records, whose masks are has, have fl.
func (r *bodyReader) count(fl schema.Field, has []schema.FieldSet) int {
	if r.present != nil {
		return r.present[fl]
	}
	n := 0
	for i := range has {
		if has[i].Has(fl) {
			n++
		}
	}
	return n
}

// countPresent sets present[f] to how many of the records whose masks are
// has have field f. Records of a block mostly share a few masks, so it
// counts the distinct masks first.
func countPresent(has []schema.FieldSet, present *[schema.NumFields]int) {
	*present = [schema.NumFields]int{}
	add := func(m schema.FieldSet, n int) {
		for b := uint64(m & schema.AllFields); b != 0; b &= b - 1 {
			present[bits.TrailingZeros64(b)] += n
		}
	}
	var masks [8]schema.FieldSet
	var counts [8]int
	n := 0
	for _, m := range has {
		k := 0
		for k < n && masks[k] != m {
			k++
		}
		if k == n {
			if n == len(masks) {
				add(m, 1)
				continue
			}
			masks[n] = m
			n++
		}
		counts[k]++
	}
	for k := range n {
		add(masks[k], counts[k])
	}
}

func (r *bodyReader) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.s) {
			break
		}
		b := r.s[r.off]
		r.off++
		if b < 0x80 {
			return x | uint64(b)<<shift
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	r.bad = true
	return 0
}

// skipStr reads past a string.
func (r *bodyReader) skipStr() {
	if r.off < len(r.s) && r.s[r.off] < 0x80 {
		r.off += 1 + int(r.s[r.off])
		if r.off > len(r.s) {
			r.bad = true
			r.off = len(r.s)
		}
		return
	}
	if n := r.uvarint(); n > uint64(len(r.s)-r.off) {
		r.bad = true
	} else {
		r.off += int(n)
	}
}

// skipVarint reads past a varint.
func (r *bodyReader) skipVarint() {
	if r.off < len(r.s) && r.s[r.off] < 0x80 {
		r.off++
		return
	}
	r.uvarint()
}

func (r *bodyReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (r *bodyReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.s)-r.off) {
		r.bad = true
		return ""
	}
	s := r.s[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *bodyReader) byte() byte {
	if r.off >= len(r.s) {
		r.bad = true
		return 0
	}
	b := r.s[r.off]
	r.off++
	return b
}

// decodeBody decodes count records from body into recs[:count] (recs must
// have that length). FMonitoringDataTs is left absent.
func decodeBody(body string, recs []schema.Record) error {
	r := bodyReader{s: body}
	for i := range recs {
		recs[i] = schema.Record{Has: schema.FieldSet(r.uvarint() << 1)}
		if recs[i].Has&^schema.AllFields != 0 {
			r.bad = true
		}
	}
	if r.bad {
		return errCorrupt
	}
	for f := schema.Field(1); f < schema.NumFields; f++ {
		slot := fieldSlot[f]
		switch fieldKind[f] {
		case schema.KindString:
			for i := range recs {
				if recs[i].Has.Has(f) {
					recs[i].Strs[slot] = r.str()
				}
			}
		case schema.KindBool:
			for i := range recs {
				if recs[i].Has.Has(f) {
					recs[i].Ints[slot] = int64(r.byte() & 1)
				}
			}
		default:
			var prev int64
			for i := range recs {
				rec := &recs[i]
				if !rec.Has.Has(f) {
					continue
				}
				v := r.varint()
				switch {
				case f == schema.FRequestInTs:
					v += prev
					prev = v
				case relToRequestIn(f) && rec.Has.Has(schema.FRequestInTs):
					v += rec.Ints[slotRequestInTs]
				}
				rec.Ints[slot] = v
			}
		}
		if r.bad {
			return errCorrupt
		}
	}
	if r.off != len(r.s) {
		return fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	return nil
}

// decodeMatching appends to mw.out the records of body (count records) that
// f matches, using mw.has and mw.idx as scratch: the presence masks are read
// in every column, and a dense array of them stays in the first-level cache
// where records (hundreds of bytes each) do not. For a version 3 or 4
// block, body is the packed body's rest and cols its UUID columns (dict: its
// string columns are dictionaries); matching records' UUIDs are written to
// mw.uuids and their strings point there, as the others point into body.
// Most records of a candidate block do not match, so the party columns are
// compared in place and only matching records are decoded: a block without
// one is left after its party columns.
func (mw *matchWorker) decodeMatching(body string, cols *[len(uuidFields)]packedColumn, dict bool, f filter, count int) error {
	if cap(mw.has) < count {
		mw.has = make([]schema.FieldSet, count)
		mw.idx = make([]int32, count)
	}
	has, idx := mw.has[:count], mw.idx[:count]
	r := bodyReader{s: body, tab: mw.tab}
	defer func() { clear(r.tab); mw.tab = r.tab[:0] }()
	for i := range has {
		has[i] = schema.FieldSet(r.uvarint() << 1)
		if has[i]&^schema.AllFields != 0 {
			r.bad = true
		}
	}
	if r.bad {
		return fmt.Errorf("%w: presence masks", errCorrupt)
	}
	if dict {
		countPresent(has, &mw.present)
		r.present = &mw.present
	}
	first := r.off
	for fl := schema.Field(1); fl < schema.FClientXRoadInstance; fl++ {
		skipColumn(&r, fl, has, dict)
	}
	matchParties(&r, f, has, idx, dict)
	if r.bad {
		return fmt.Errorf("%w: parties", errCorrupt)
	}
	matched := mw.matched[:0]
	for i := range has {
		if idx[i] == 0 {
			idx[i] = -1
			continue
		}
		idx[i] = int32(len(mw.out))
		mw.out = append(mw.out, schema.Record{Has: has[i]})
		matched = append(matched, int32(i))
	}
	mw.matched = matched
	n := len(matched)
	if n == 0 {
		return nil
	}
	r.matched = matched
	if cols != nil && cap(mw.uuids) < 36*len(uuidFields)*n {
		mw.uuids = make([]byte, 0, 36*len(uuidFields)*n)
	}
	uuids := mw.uuids[:0]
	defer func() { mw.uuids = uuids }()
	r.off = first
	c := 0
	for fl := schema.Field(1); fl < schema.NumFields; fl++ {
		if cols != nil && c < len(uuidFields) && fl == uuidFields[c] {
			if cols[c].at != r.off {
				return fmt.Errorf("%w: packed body: column offset", errCorrupt)
			}
			var ok bool
			if uuids, ok = decodeUUIDColumn(&cols[c], fl, has, idx, mw.out, uuids); !ok {
				return fmt.Errorf("%w: packed body: UUID column", errCorrupt)
			}
			c++
			continue
		}
		decodeColumn(&r, fl, has, idx, mw.out, dict)
	}
	if r.bad {
		return fmt.Errorf("%w: columns", errCorrupt)
	}
	if r.off != len(r.s) {
		return fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	return nil
}

// Bits of matchParties: which of the filter's conditions a record still meets.
const (
	matchClient    = 1 << iota // f.assoc is its client
	matchProvAssoc             // f.assoc is its provider
	matchProv                  // f.prov is its provider
)

// matchParties reads the party columns and sets idx[i] to non-zero for the
// records f matches, zero for the others.
func matchParties(r *bodyReader, f filter, has []schema.FieldSet, idx []int32, dict bool) {
	var all int32
	if f.assoc != nil {
		all |= matchClient | matchProvAssoc
	}
	if f.prov != nil {
		all |= matchProv
	}
	for i := range idx {
		idx[i] = all
	}
	for k := range 4 {
		compareColumn(r, schema.FClientXRoadInstance+schema.Field(k), has, idx, f.assoc, k, matchClient, dict)
	}
	for k := range 4 {
		fl := schema.FServiceXRoadInstance + schema.Field(k)
		if f.prov != nil && f.assoc != nil {
			// Both: the column is read twice, from the same start.
			at := r.off
			compareColumn(r, fl, has, idx, f.assoc, k, matchProvAssoc, dict)
			r.off = at
		}
		if f.prov != nil {
			compareColumn(r, fl, has, idx, f.prov, k, matchProv, dict)
		} else {
			compareColumn(r, fl, has, idx, f.assoc, k, matchProvAssoc, dict)
		}
	}
	for i := range idx {
		m := idx[i]
		if f.prov != nil && m&matchProv == 0 || f.assoc != nil && m&(matchClient|matchProvAssoc) == 0 {
			idx[i] = 0
		} else {
			idx[i] = 1
		}
	}
}

// compareColumn reads the string column of fl, the k-th part of a client
// identifier (schema.Record.matches), and clears bit in idx[i] of the
// records whose value is not id's. A nil id only skips the column.
func compareColumn(r *bodyReader, fl schema.Field, has []schema.FieldSet, idx []int32, id *schema.ClientID, k int, bit int32, dict bool) {
	if id == nil {
		skipColumn(r, fl, has, dict)
		return
	}
	want, present := id.Instance, true
	switch k {
	case 1:
		want = id.MemberClass
	case 2:
		want = id.MemberCode
	case 3:
		want, present = id.Subsystem, id.HasSubsystem
	}
	if dict && r.dictTable() {
		// Each distinct value is compared once.
		var ok [4]uint64 // bit e: value e is want
		for e, s := range r.tab {
			if present && s == want {
				ok[e>>6] |= 1 << (e & 63)
			}
		}
		for i := range has {
			if !has[i].Has(fl) {
				if present {
					idx[i] &^= bit
				}
				continue
			}
			if e := r.dictIndex(); ok[e>>6]&(1<<(e&63)) == 0 {
				idx[i] &^= bit
			}
		}
		return
	}
	for i := range has {
		if !has[i].Has(fl) {
			if present {
				idx[i] &^= bit
			}
			continue
		}
		if s := r.str(); !present || s != want {
			idx[i] &^= bit
		}
	}
}

// skipColumn reads past the values of field fl, has the records' masks.
func skipColumn(r *bodyReader, fl schema.Field, has []schema.FieldSet, dict bool) {
	switch fieldKind[fl] {
	case schema.KindString:
		if dict && r.dictTable() {
			if r.off += r.count(fl, has); r.off > len(r.s) {
				r.bad = true
				r.off = len(r.s)
			}
			return
		}
		for i := range has {
			if has[i].Has(fl) {
				r.skipStr()
			}
		}
	case schema.KindBool:
		for i := range has {
			if has[i].Has(fl) {
				r.off++
			}
		}
		if r.off > len(r.s) {
			r.bad = true
			r.off = len(r.s)
		}
	default:
		for i := range has {
			if has[i].Has(fl) {
				r.skipVarint()
			}
		}
	}
}

// decodeUUIDColumn reads the packed column c of field fl, storing into
// out[idx[i]] the values of records with idx[i] ≥ 0 (UUIDs written to uuids,
// whose capacity must hold them all) and skipping the others.
func decodeUUIDColumn(c *packedColumn, fl schema.Field, has []schema.FieldSet, idx []int32, out []schema.Record, uuids []byte) ([]byte, bool) {
	slot := fieldSlot[fl]
	v, raw, n := c.values, c.raw, 0
	for i := range has {
		if !has[i].Has(fl) {
			continue
		}
		if n++; n > c.n || len(v) == 0 {
			return uuids, false
		}
		j := idx[i]
		if v[0] == 0 {
			if j >= 0 {
				at := len(uuids)
				uuids = appendUUID(uuids, (*[16]byte)(raw))
				out[j].Strs[slot] = unsafe.String(&uuids[at], 36)
			}
			raw, v = raw[16:], v[1:]
			continue
		}
		l, k := binary.Uvarint(v) // checked by splitPacked
		if j >= 0 {
			out[j].Strs[slot] = unsafe.String(unsafe.SliceData(v[k:]), int(l-1))
		}
		v = v[k+int(l-1):]
	}
	return uuids, n == c.n
}

// decodeColumn reads the values of field fl of the records whose masks are
// has, storing into out[idx[i]] those of records with idx[i] ≥ 0 and
// skipping the others; a dictionary column (dict) reads only those of
// r.matched.
func decodeColumn(r *bodyReader, fl schema.Field, has []schema.FieldSet, idx []int32, out []schema.Record, dict bool) {
	slot := fieldSlot[fl]
	switch fieldKind[fl] {
	case schema.KindString:
		if dict && r.dictTable() {
			start, n := r.off, r.count(fl, has)
			if n > len(r.s)-start {
				r.bad = true
				return
			}
			// A matching record's index byte is found from the masks alone,
			// without reading the other records' (directly when every record
			// has the field).
			last, pos := -1, start
			for _, i := range r.matched {
				if n == len(has) {
					pos = start + int(i)
				} else {
					for last++; last < int(i); last++ {
						if has[last].Has(fl) {
							pos++
						}
					}
					if !has[i].Has(fl) {
						continue
					}
				}
				e := int(r.s[pos])
				if e >= len(r.tab) {
					r.bad = true
					return
				}
				out[idx[i]].Strs[slot] = r.tab[e]
				pos++
			}
			r.off = start + n
			return
		}
		for i := range has {
			if !has[i].Has(fl) {
				continue
			}
			if j := idx[i]; j >= 0 {
				out[j].Strs[slot] = r.str()
			} else {
				r.skipStr()
			}
		}
	case schema.KindBool:
		for i := range has {
			if has[i].Has(fl) {
				b := r.byte()
				if j := idx[i]; j >= 0 {
					out[j].Ints[slot] = int64(b & 1)
				}
			}
		}
	default:
		var prev int64
		for i := range has {
			if !has[i].Has(fl) {
				continue
			}
			j := idx[i]
			switch {
			case fl == schema.FRequestInTs:
				// Delta-coded across records: accumulated for every record.
				prev += r.varint()
				if j >= 0 {
					out[j].Ints[slot] = prev
				}
			case j < 0:
				r.skipVarint()
			default:
				v := r.varint()
				if relToRequestIn(fl) && has[i].Has(schema.FRequestInTs) {
					v += out[j].Ints[slotRequestInTs]
				}
				out[j].Ints[slot] = v
			}
		}
	}
}
