package storage

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// packBody appends to dst the packed form of body, the version 1 body of
// recs whose column of field f starts at starts[f] (appendColumns), and to
// raw the packed UUIDs.
func packBody(dst, raw, body []byte, recs []schema.Record, starts *[schema.NumFields + 1]int) ([]byte, []byte) {
	cut := 0 // bytes cut out of body before the current column
	for _, f := range uuidFields {
		dst, raw, _ = appendUUIDColumn(dst, raw, starts[f]-cut, f, recs)
		cut += starts[f+1] - starts[f]
	}
	prev := 0
	for _, f := range uuidFields {
		dst = append(dst, body[prev:starts[f]]...)
		prev = starts[f+1]
	}
	return append(dst, body[prev:]...), raw
}

// rewriteBlocks returns a transaction that rewrites every block as encode
// writes it, as an older opmond wrote them.
func rewriteBlocks(encode func([]schema.Record) []byte) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			h, err := parseHeader(v)
			if err != nil {
				return err
			}
			body, err := decompress(&h)
			if err != nil {
				return err
			}
			blk := make([]schema.Record, h.count)
			if err := decodeBody(body, blk); err != nil {
				return err
			}
			if err := b.Put(slices.Clone(k), encode(blk)); err != nil {
				return err
			}
		}
		return nil
	}
}

// encodeBlockV3 encodes recs as a version 3 block, as opmond wrote them
// before the dictionary columns.
func encodeBlockV3(recs []schema.Record) []byte {
	var starts [schema.NumFields + 1]int
	body := appendColumns(nil, recs, &starts)
	packed, raw := packBody(nil, nil, body, recs, &starts)
	parties, minutes := blockKeys(recs, nil, nil)
	out := appendHeaderKeys([]byte{blockVersionPacked}, len(recs), len(body), parties, minutes)
	out = binary.AppendUvarint(out, uint64(len(raw)))
	out = append(out, raw...)
	return zstdEncoder().EncodeAll(packed, out)
}

// encodeBlockV1 encodes recs as a version 1 block, as opmond wrote them
// before version 3: such blocks stay readable.
func encodeBlockV1(recs []schema.Record) []byte {
	body := appendColumns(nil, recs, nil)
	parties, minutes := blockKeys(recs, nil, nil)
	out := appendHeaderKeys([]byte{blockVersion}, len(recs), len(body), parties, minutes)
	return zstdEncoder().EncodeAll(body, out)
}

// uuidLike are messageId and xRequestId values around the canonical form.
var uuidLike = []string{
	"7ff82b09-f3bb-45c8-9c70-b8b87b2fdac4",  // packed
	"00000000-0000-0000-0000-000000000000",  // packed
	"7FF82B09-F3BB-45C8-9C70-B8B87B2FDAC4",  // upper case: kept as text
	"7ff82b09-f3bb-45c8-9c70-b8b87b2fdac",   // short
	"7ff82b09-f3bb-45c8-9c70-b8b87b2fdac4x", // long
	"7ff82b09f3bb-45c8-9c70-b8b87b2fdac4-",  // a dash misplaced
	"7ff82b09-f3bb-45c8-9c70-b8b87b2fdag4",  // not hex
	"{7ff82b09-f3bb-45c8-9c70-b8b87b2fdac}",
	"",
	"ä",
	strings.Repeat("x", 126), strings.Repeat("x", 127), strings.Repeat("y", 128), // length prefix grows
	"ID11234",
}

func TestPackedBlockRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 300 {
		recs := make([]schema.Record, 1+rng.IntN(40))
		for i := range recs {
			recs[i] = randomRecord(rng)
			for _, f := range uuidFields {
				switch rng.IntN(3) {
				case 0:
					recs[i].SetStr(f, uuidLike[rng.IntN(len(uuidLike))])
				case 1:
					recs[i].Clear(f)
				}
			}
		}
		if n == 0 {
			recs = schematest.Records(100, 9, 0) // the realistic case
		}
		for _, v := range [][]byte{encodeBlock(recs), encodeBlockV3(recs), encodeBlockV1(recs)} {
			h, err := parseHeader(v)
			if err != nil {
				t.Fatal(err)
			}
			if h.packed != (v[0] != blockVersion) || h.dict != (v[0] == blockVersionDict) {
				t.Fatalf("version %d: packed %v", v[0], h.packed)
			}
			body, err := decompress(&h)
			if err != nil {
				t.Fatalf("version %d: %v", v[0], err)
			}
			if want := string(appendColumns(nil, recs, nil)); body != want {
				t.Fatalf("version %d: body differs from the version 1 body", v[0])
			}
			got := make([]schema.Record, h.count)
			if err := decodeBody(body, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, recs) {
				t.Fatalf("version %d: round trip differs:\n got %+v\nwant %+v", v[0], got, recs)
			}
		}
	}
}

// TestVersion5FileWithVersion3Blocks: a file of format version 5, whose
// blocks are of version 3, opens as version 6; its blocks answer queries as
// the records are, next to version 4 blocks stored after the upgrade, and
// are sealed.
func TestVersion5FileWithVersion3Blocks(t *testing.T) {
	recs := schematest.Records(3000, 6, 1_700_000_000_000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, int64(1000+i/100))
	}
	rewrite := rewriteBlocks(encodeBlockV3)
	clk := &testClock{t: 5000}
	db := oldFile(t, recs[:2000], 100, "opmond-db 5", rewrite, Options{Now: clk.Now})
	if err := db.Import(context.Background(), recs[2000:]); err != nil {
		t.Fatal(err)
	}
	versions := map[byte]int{}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlocks).ForEach(func(_, v []byte) error { versions[v[0]]++; return nil })
	})
	if versions[blockVersionPacked] == 0 || versions[blockVersionDict] == 0 {
		t.Fatalf("block versions %v: want both 3 and 4", versions)
	}
	ds := schematest.NewDataset()
	queries := []Query{{From: 0, To: 5000, Max: 1000}, {From: 0, To: 5000, Max: 10000, Associated: &ds.Clients[1]},
		{From: 0, To: 5000, Max: 10000, Provider: &ds.Clients[0]}}
	checkQueriesAroundSealing(t, db, recs, queries)
}

// checkQueriesAroundSealing checks queries against recs, seals the
// database's past seconds (some must be sealed) and checks them again.
func checkQueriesAroundSealing(t *testing.T, db *DB, recs []schema.Record, queries []Query) {
	t.Helper()
	for _, q := range queries {
		checkQuery(t, db, recs, q)
	}
	if n, err := db.SealPending(context.Background()); err != nil || n == 0 {
		t.Fatalf("sealing: %d, %v", n, err)
	}
	for _, q := range queries {
		checkQuery(t, db, recs, q)
	}
}

// TestPackedBlockIsSmaller: the reason for version 3.
func TestPackedBlockIsSmaller(t *testing.T) {
	recs := schematest.Records(1000, 5, 0)
	var v1, v3 int
	for i := 0; i < len(recs); i += 100 {
		v1 += len(encodeBlockV1(recs[i : i+100]))
		v3 += len(encodeBlock(recs[i : i+100]))
	}
	t.Logf("version 1: %.1f B/record, version 3: %.1f B/record", float64(v1)/1000, float64(v3)/1000)
	if v3 > v1*9/10 {
		t.Errorf("version 3 blocks are %d bytes, version 1 %d: packing saves less than 10%%", v3, v1)
	}
}

func TestUnpackCorrupt(t *testing.T) {
	recs := schematest.Records(30, 2, 0)
	var starts [schema.NumFields + 1]int
	body := appendColumns(nil, recs, &starts)
	packed, raw := packBody(nil, nil, body, recs, &starts)
	if got, err := unpackBody(nil, packed, raw, len(body)); err != nil || string(got) != string(body) {
		t.Fatalf("unpack: %v", err)
	}
	// Every truncation and every single-byte change fails cleanly or
	// yields a body of the stated length.
	for i := range packed {
		if _, err := unpackBody(nil, packed[:i], raw, len(body)); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
		for _, b := range []byte{0, 1, 0x7f, 0x80, 0xff} {
			p := append([]byte(nil), packed...)
			p[i] = b
			if got, err := unpackBody(nil, p, raw, len(body)); err == nil && len(got) != len(body) {
				t.Fatalf("byte %d = %#x: %d bytes without error", i, b, len(got))
			}
		}
	}
	if _, err := unpackBody(nil, packed, raw[:len(raw)-16], len(body)); err == nil {
		t.Error("a packed UUID missing: no error")
	}
	if _, err := unpackBody(nil, packed, append(raw, raw[:16]...), len(body)); err == nil {
		t.Error("a packed UUID too many: no error")
	}
}

// TestOpenUpgradesVersion3: a format 3 file, whose stored blocks are all
// version 1, opens as format 4, answers every query as before, and seals
// its version 1 blocks like version 3 ones.
func TestOpenUpgradesVersion3(t *testing.T) {
	recs := schematest.Records(3000, 7, 1_700_000_000_000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, int64(1000+i/300))
	}
	// Every block rewritten as version 1.
	rewrite := rewriteBlocks(encodeBlockV1)
	clk := &testClock{t: 5000}
	db := oldFile(t, recs, 100, "opmond-db 3", rewrite, Options{Now: clk.Now})
	c := schematest.NewDataset().Clients[1]
	queries := []Query{{From: 0, To: 2000, Max: 1000}, {From: 0, To: 2000, Max: 10000, Associated: &c}}
	checkQueriesAroundSealing(t, db, recs, queries)
}

// BenchmarkUnpack measures unpacking the bodies of 100-record blocks, which
// every read of a stored block does.
func BenchmarkUnpack(b *testing.B) {
	recs := schematest.Records(100, 4, 0)
	var starts [schema.NumFields + 1]int
	body := appendColumns(nil, recs, &starts)
	packed, raw := packBody(nil, nil, body, recs, &starts)
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var err error
		if dst, err = unpackBody(dst[:0], packed, raw, len(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/record")
}

// BenchmarkPack measures packing, which every store does.
func BenchmarkPack(b *testing.B) {
	recs := schematest.Records(100, 4, 0)
	var starts [schema.NumFields + 1]int
	body := appendColumns(nil, recs, &starts)
	var packed, raw []byte
	for b.Loop() {
		packed, raw = packBody(packed[:0], raw[:0], body, recs, &starts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/record")
}
