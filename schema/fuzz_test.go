package schema

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeStoreRequest feeds arbitrary bodies to the /store_data decoder,
// which reads bytes straight from the network.
func FuzzDecodeStoreRequest(f *testing.F) {
	f.Add([]byte(exampleStoreBody), false)
	f.Add([]byte(`{"records":[]}`), false)
	f.Add([]byte(`{"records":[{`+minimalRecord+`,"monitoringDataTs":"17"}]}`), true)
	f.Add([]byte(`{"records":[null,5,{"securityServerType":"client"},{`+minimalRecord+`,"requestSoapSize":"1.5e3"}]}`), false)
	f.Add([]byte(`{"records":[{"faultString":"\ud800\udc00\ud800","serviceCode":"`+strings.Repeat("é", 300)+`"}]}`), false)
	f.Add([]byte("\xef\xbb\xbf{\"x\":[[{}]],\"records\":[{\"succeeded\":\"TRUE\",\"requestInTs\":-0.5e1}]} "), true)
	f.Fuzz(func(t *testing.T, body []byte, keep bool) {
		req, err := DecodeStoreRequest(body, DecodeOptions{KeepMonitoringDataTs: keep})
		if err != nil {
			if err != ErrNoData && err != ErrInvalidRequest {
				t.Fatalf("unexpected error %v", err)
			}
			if req != nil {
				t.Fatal("request returned with an error")
			}
			if err == ErrInvalidRequest && wellFormed(body) {
				t.Fatalf("well-formed store request refused: %q", body)
			}
			return
		}
		if !json.Valid(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))) {
			t.Fatalf("invalid JSON accepted: %q", body)
		}
		var buf []byte
		for i := range req.Records {
			r := &req.Records[i]
			if missing := MandatoryFields &^ r.Has; missing != 0 {
				t.Fatalf("record %d lacks mandatory fields %b", i, missing)
			}
			if keep != r.Has.Has(FMonitoringDataTs) {
				t.Fatalf("record %d: monitoringDataTs present %v with keep %v", i, r.Has.Has(FMonitoringDataTs), keep)
			}
			if typ := r.Str(FSecurityServerType); typ != "Client" && typ != "Producer" {
				t.Fatalf("record %d: securityServerType %q", i, typ)
			}
			for f := Field(0); f < NumFields; f++ {
				fi := Fields[f]
				if fi.Kind != KindString {
					continue
				}
				s := r.Str(f)
				if !r.Has.Has(f) && s != "" {
					t.Fatalf("record %d: absent %s holds %q", i, fi.Name, s)
				}
				if !utf8.ValidString(s) {
					t.Fatalf("record %d: %s is not valid UTF-8: %q", i, fi.Name, s)
				}
				if n := utf8.RuneCountInString(s); n > fi.MaxRunes {
					t.Fatalf("record %d: %s has %d runes", i, fi.Name, n)
				}
			}
			buf = AppendRecordJSON(buf[:0], r, AllFields)
			if !json.Valid(buf) {
				t.Fatalf("record %d encodes to invalid JSON: %s", i, buf)
			}
		}
		for _, rej := range req.Rejected {
			if rej.Reason == "" || !json.Valid(rej.Raw) {
				t.Fatalf("rejected %d: reason %q, raw %q", rej.Index, rej.Reason, rej.Raw)
			}
		}

		// Every element is either stored or rejected, in order, and
		// decodes on its own (as import decodes a line) to the same result.
		// A map keeps keys exact (struct fields would match "reCords" too).
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), &obj); err != nil {
			return
		}
		var top struct{ Records []json.RawMessage }
		if err := json.Unmarshal(obj["records"], &top.Records); err != nil {
			return
		}
		if len(top.Records) != len(req.Records)+len(req.Rejected) {
			t.Fatalf("%d elements, %d stored + %d rejected", len(top.Records), len(req.Records), len(req.Rejected))
		}
		stored, rejected := 0, 0
		for i, elem := range top.Records {
			r, err := DecodeRecord(elem, DecodeOptions{KeepMonitoringDataTs: keep})
			if rejected < len(req.Rejected) && req.Rejected[rejected].Index == i {
				rej := req.Rejected[rejected]
				rejected++
				if !bytes.Equal(rej.Raw, elem) {
					t.Fatalf("element %d: Raw %q, want %q", i, rej.Raw, elem)
				}
				if elem[0] == '{' && (err == nil || err.Error() != rej.Reason) {
					t.Fatalf("element %d: DecodeRecord gives %v, the request %q", i, err, rej.Reason)
				}
				continue
			}
			if err != nil {
				t.Fatalf("element %d: stored, but DecodeRecord fails: %v", i, err)
			}
			if r != req.Records[stored] {
				t.Fatalf("element %d: DecodeRecord differs", i)
			}
			stored++
		}
	})
}

// wellFormed reports whether body is a store request that must be accepted:
// valid JSON, an object whose last "records" key holds an array, and nested
// no deeper than the decoder allows.
func wellFormed(body []byte) bool {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if !json.Valid(body) || depth(body) > maxDepth {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return false
	}
	recs, ok := top["records"]
	return ok && len(recs) > 0 && recs[0] == '['
}

// depth is the deepest nesting of arrays and objects in valid JSON.
func depth(data []byte) int {
	d, deepest, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
