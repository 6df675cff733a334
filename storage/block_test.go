package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// randomRecord sets a random subset of fields to random values.
func randomRecord(rng *rand.Rand) schema.Record {
	var r schema.Record
	for f := schema.Field(1); f < schema.NumFields; f++ {
		if rng.IntN(4) == 0 {
			continue
		}
		switch schema.Fields[f].Kind {
		case schema.KindString:
			r.SetStr(f, strings.Repeat(string(rune(rng.IntN(0x2000))), rng.IntN(5)))
		case schema.KindBool:
			r.SetBool(f, rng.IntN(2) == 0)
		default:
			v := rng.Int64()
			switch rng.IntN(3) {
			case 0:
				v = -v
			case 1:
				v %= 100000
			}
			r.SetInt(f, v)
		}
	}
	return r
}

func TestBlockRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		recs := make([]schema.Record, 1+rng.IntN(50))
		for i := range recs {
			recs[i] = randomRecord(rng)
		}
		h, err := parseHeader(encodeBlock(recs))
		if err != nil {
			t.Fatal(err)
		}
		if h.count != len(recs) {
			t.Fatalf("count %d", h.count)
		}
		body, err := decompress(&h)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]schema.Record, h.count)
		if err := decodeBody(body, got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, recs) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, recs)
		}
	}
}

func TestBlockHeader(t *testing.T) {
	a := mkRec(t, "1", "EE/GOV/1/a", "EE/GOV/2", 60000*5+1, true)
	b := mkRec(t, "2", "EE/GOV/1/a", "EE/GOV/3/x", -1, true)
	c := mkRec(t, "3", "", "EE/GOV/2", 60000*5+2, true)
	h, err := parseHeader(encodeBlock([]schema.Record{a, b, c}))
	if err != nil {
		t.Fatal(err)
	}
	var parties, minutes []uint64
	_ = h.eachParty(func(p uint64) error { parties = append(parties, p); return nil })
	_ = h.eachMinute(func(m uint64) error { minutes = append(minutes, m); return nil })
	if len(parties) != 3 {
		t.Errorf("parties %x", parties)
	}
	for _, p := range []uint64{
		partyHash(roleClient, mustID(t, "EE/GOV/1/a")),
		partyHash(roleProvider, mustID(t, "EE/GOV/2")),
		partyHash(roleProvider, mustID(t, "EE/GOV/3/x")),
	} {
		if !h.hasParty(p) {
			t.Errorf("party %x missing", p)
		}
	}
	if h.hasParty(partyHash(roleClient, mustID(t, "EE/GOV/2"))) {
		t.Error("role ignored")
	}
	if want := []uint64{minuteKey(-1), minuteKey(60000 * 5)}; !reflect.DeepEqual(minutes, want) {
		t.Errorf("minutes %x, want %x", minutes, want)
	}
}

func TestPartyHashDistinguishes(t *testing.T) {
	ids := []string{"EE/GOV/1", "EE/GOV/1/", "EE/GOV/1/a", "EE/GOV/1a", "EE/GO/V1", "E/EGOV/1"}
	seen := map[uint64]string{}
	for _, s := range ids {
		for _, role := range []byte{roleClient, roleProvider} {
			h := partyHash(role, mustID(t, s))
			if prev, ok := seen[h]; ok {
				t.Errorf("%s and %s hash alike", prev, s)
			}
			seen[h] = s
			var r schema.Record
			schematest.SetParty(&r, schema.FClientXRoadInstance, mustID(t, s))
			if rh, _ := recordPartyHash(&r, role, schema.FClientXRoadInstance); rh != h {
				t.Errorf("%s: record hash differs", s)
			}
		}
	}
}

func FuzzDecodeBlock(f *testing.F) {
	f.Add(encodeBlock([]schema.Record{mkRec(f, "1", "EE/GOV/1/a", "EE/GOV/2", 5, true)}))
	f.Add(encodeBlock(schematest.Records(20, 1, 0)))
	f.Add(encodeBlockV1(schematest.Records(20, 1, 0)))
	f.Add(encodeBlockV3(schematest.Records(20, 1, 0)))
	var sb sealBuf
	sealed, _, ok, err := sb.encodeSealed(schematest.Records(6, 1, 0), 77)
	if err != nil || !ok {
		f.Fatal("encodeSealed", err)
	}
	f.Add(sealed)
	client := schematest.NewDataset().Clients[0]
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := parseHeader(v)
		if err != nil {
			return
		}
		_ = h.eachParty(func(uint64) error { return nil })
		_ = h.eachMinute(func(uint64) error { return nil })
		if h.sealed {
			if h.chunks > 0 {
				return // the rest of the stream is in another bucket
			}
			var mw matchWorker
			_ = mw.matchSealed(v, filter{assoc: &client})
		}
		if !h.sealed {
			var mw matchWorker
			_ = mw.match(&fetched{count: h.count, bodyLen: h.bodyLen, packed: h.packed, dict: h.dict}, h.zbody, filter{assoc: &client})
		}
		body, err := decompress(&h)
		if err != nil {
			return
		}
		_ = decodeBody(body, make([]schema.Record, h.count))
	})
}

// TestConcurrentUse runs every operation at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	clk := &testClock{t: 100}
	db := openTestDB(t, clk)
	ctx := context.Background()
	gen := schematest.Records(4000, 3, 0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w * 1000; i < (w+1)*1000; i += 100 {
				if _, err := db.Store(ctx, gen[i:i+100], []Quarantined{{Reason: "x"}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for s := int64(100); s < 120; s++ {
			clk.Set(s)
			if _, _, err := db.Purge(ctx, s-5); err != nil {
				t.Error(err)
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for range 20 {
				if _, err := db.Query(ctx, Query{From: 0, To: 1000, Max: 150}, func(*schema.Record) error { return nil }); err != nil {
					t.Error(err)
				}
				if _, err := db.Intervals(ctx, IntervalQuery{FromMs: 0, ToMs: 20000, StepMs: 1000}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// TestMatchAgreesWithDecode: a worker's match of a stored block, of each
// stored version, keeps exactly the records that decoding the whole block and
// filter.match keep, with every field equal, whichever filter a query
// sets. The records include a client without a subsystem, one with the
// subsystem of another, missing parties and UUIDs that do not pack.
func TestMatchAgreesWithDecode(t *testing.T) {
	recs := schematest.Records(600, 11, 1_700_000_000_000)
	recs = append(recs,
		mkRec(t, "not-a-uuid", "EE/GOV/1", "EE/GOV/2/a", 5, true),
		mkRec(t, "6f1c0a52-9a0f-4b8e-8a3c-2d1e4f5a6b7C", "EE/GOV/1/a", "EE/GOV/1", 6, false),
		mkRec(t, "", "", "EE/GOV/1", 7, true),
		mkRec(t, "x", "EE/GOV/1", "", 8, true))
	recs[3].Clear(schema.FXRequestID)
	for i := range 150 {
		// More distinct values than a dictionary holds: the plain column.
		recs[i].SetStr(schema.FRestPath, fmt.Sprintf("/api/items/%d", i))
		recs[i].SetStr(schema.FClientMemberCode, fmt.Sprintf("%d", i%70))
	}
	ids := []schema.ClientID{mustID(t, "EE/GOV/1"), mustID(t, "EE/GOV/1/a"), mustID(t, "EE/GOV/2/a")}
	ids = append(ids, schematest.NewDataset().Clients[:6]...)
	var filters []filter
	for i := range ids {
		filters = append(filters, filter{assoc: &ids[i]}, filter{prov: &ids[i]}, filter{assoc: &ids[i], prov: &ids[(i+1)%len(ids)]})
	}
	var mw matchWorker
	for version, encode := range map[int]func([]schema.Record) []byte{4: encodeBlock, 3: encodeBlockV3, 1: encodeBlockV1} {
		for lo := 0; lo < len(recs); lo += 97 {
			blk := recs[lo:min(lo+97, len(recs))]
			v := encode(blk)
			if int(v[0]) != version {
				t.Fatalf("version %d, want %d", v[0], version)
			}
			h, err := parseHeader(v)
			if err != nil {
				t.Fatal(err)
			}
			body, err := decompress(&h)
			if err != nil {
				t.Fatal(err)
			}
			all := make([]schema.Record, h.count)
			if err := decodeBody(body, all); err != nil {
				t.Fatal(err)
			}
			b := &fetched{count: h.count, bodyLen: h.bodyLen, packed: h.packed, dict: h.dict}
			for _, f := range filters {
				var want []schema.Record
				for i := range all {
					if f.match(&all[i]) {
						want = append(want, all[i])
					}
				}
				mw.out = mw.out[:0]
				if err := mw.match(b, h.zbody, f); err != nil {
					t.Fatalf("version %d, block at %d: %v", version, lo, err)
				}
				if len(mw.out) != len(want) {
					t.Fatalf("version %d, block at %d, filter %v/%v: %d records, want %d", version, lo, f.assoc, f.prov, len(mw.out), len(want))
				}
				for i := range want {
					if mw.out[i] != want[i] {
						t.Fatalf("version %d, block at %d, record %d:\n got %+v\nwant %+v", version, lo, i, mw.out[i], want[i])
					}
				}
			}
		}
	}
}
