package storage

import (
	"encoding/binary"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// TestCorruptPackedBodies: a version 4 or 3 body changed at any byte, or cut short,
// and compressed again (so that zstd's checksum holds) is read back by the
// expansion and by a filtered match with an error or as some records, never
// a panic.
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
	head := v[:len(v)-len(h.zbody)]
	block := func(body []byte) []byte {
		out := append([]byte(nil), head...)
		out = binary.AppendUvarint(out, uint64(len(raw)))
		out = append(out, raw...)
		return zstdEncoder().EncodeAll(body, out)
	}
	c := schematest.NewDataset().Clients[1]
	try := func(body []byte) {
		h, err := parseHeader(block(body))
		if err != nil {
			t.Fatal(err)
		}
		if s, err := decompress(&h); err == nil {
			_ = decodeBody(s, make([]schema.Record, h.count))
		}
		var mw matchWorker
		for _, f := range []filter{{assoc: &c}, {prov: &c}} {
			_ = mw.match(&fetched{count: h.count, bodyLen: h.bodyLen, packed: h.packed, dict: h.dict}, h.zbody, f)
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
