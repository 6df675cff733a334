package storage

import (
	"testing"
	"unsafe"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// TestCorruptPackedBodies: a version 4 or 3 body changed at any byte, or
// cut short, is read back by the expansion and by a filtered match with an
// error or as some records, never a panic. (zstd's checksum would catch most
// changes on disk; the decoders are tested behind it.)
func TestCorruptPackedBodies(t *testing.T) {
	recs := schematest.Records(40, 13, 1_700_000_000_000)
	recs = append(recs, mkRec(t, "not-a-uuid", "EE/GOV/1", "", 5, true))
	for _, encode := range []func([]schema.Record) []byte{encodeBlock, encodeBlockV3} {
		corruptPacked(t, encode(recs))
	}
}

func corruptPacked(t *testing.T, v []byte) {
	h, err := parseHeader(v)
	if err != nil {
		t.Fatal(err)
	}
	packed, raw, err := decodePackedFrame(nil, &h)
	if err != nil {
		t.Fatal(err)
	}
	c := schematest.NewDataset().Clients[1]
	has := make([]schema.FieldSet, h.count)
	var mw matchWorker
	try := func(body []byte) {
		var v1 []byte
		var err error
		if h.dict {
			var cols [len(uuidFields)]packedColumn
			var rest []byte
			if cols, rest, err = splitPacked(body, raw); err == nil {
				v1, _, err = expandDict(nil, rest, &cols, has, h.bodyLen, nil)
			}
		} else {
			v1, err = unpackBody(nil, body, raw, h.bodyLen)
		}
		if err == nil {
			_ = decodeBody(string(v1), make([]schema.Record, h.count))
		}
		cols, rest, err := splitPacked(body, raw)
		if err != nil {
			return
		}
		for _, f := range []filter{{assoc: &c}, {prov: &c}} {
			mw.out = mw.out[:0]
			_ = mw.decodeMatching(unsafe.String(unsafe.SliceData(rest), len(rest)), &cols, h.dict, f, h.count)
		}
	}
	for i := range packed {
		for _, b := range []byte{0, 0x80, 0xff, packed[i] + 1} {
			body := append([]byte(nil), packed...)
			body[i] = b
			try(body)
		}
		try(packed[:i])
	}
}
