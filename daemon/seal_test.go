package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// TestQuerySealedAnswers: the answers of privileged and regular clients
// are the same records, byte for byte in the payload JSON, before and after
// the blocks were sealed (sent in their stored answer form).
func TestQuerySealedAnswers(t *testing.T) {
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, nil)
	const regular = "EE/COM/222/app"
	for s := range int64(4) {
		for call := range 3 {
			var recs []map[string]any
			for i := range 70 {
				client := "EE/COM/111/web"
				if (i+call)%5 == 0 {
					client = regular
				}
				recs = append(recs, partyRecord(fmt.Sprintf("m%d-%d-%d", s, call, i), client, "EE/GOV/70000001/svc"))
			}
			td.storeAt(clock, 1000+s, recs...)
		}
	}
	clock.Set(queryNow)
	queries := []struct{ as, server string }{{ownerID, serverID}, {regular, serverID}}
	answer := func() [][]byte {
		var out [][]byte
		for _, q := range queries {
			for _, to := range []int64{1001, 1003} {
				a := td.queryOp(q.as, q.server, 900, to, "")
				if a.fault != nil {
					t.Fatal(a.fault)
				}
				out = append(out, []byte(fmt.Sprintf("%d records %s next %s", len(a.records), ids(a.records), nextStr(a.next))), payloadOf(t, a.raw))
			}
		}
		return out
	}
	before := answer()
	n, err := td.DB().SealPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		// The daemon's own sealer may have been first.
		t.Log("sealed by the daemon's sealer")
	}
	if st, _ := td.DB().Stats(); st.Blocks != 4 {
		t.Fatalf("%d blocks, want the 12 stored ones sealed into 4", st.Blocks)
	}
	after := answer()
	if !reflect.DeepEqual(before, after) {
		for i := range before {
			if string(before[i]) != string(after[i]) {
				t.Errorf("answer %d changed by sealing:\nbefore %.300s\nafter  %.300s", i, before[i], after[i])
			}
		}
	}
}

// payloadOf is the JSON of an answer's attachment, which must be exactly
// one gzip member.
func payloadOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	m := strictRe.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("strict regexp does not match:\n%q", raw)
	}
	return gunzipOne(t, m[3])
}

// gunzipOne reads b as exactly one gzip member (RFC 1952): reading a single
// member must consume every byte.
func gunzipOne(t *testing.T, b []byte) []byte {
	t.Helper()
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if br.Len() != 0 {
		t.Errorf("%d bytes after the first gzip member", br.Len())
	}
	return out
}
