package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestAppendRecordJSONEscaping(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the JSON string written
	}{
		{"plain", "getWeather", `"getWeather"`},
		{"empty", "", `""`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"HTML characters raw", "<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`},
		{"non-ASCII raw", "Päring ebaõnnestus: 服务 😀", `"Päring ebaõnnestus: 服务 😀"`},
		{"line separators raw", "a\u2028b\u2029c", "\"a\u2028b\u2029c\""},
		{"short escapes", "\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"other control characters", "\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"DEL raw", "\x7f", "\"\x7f\""},
		{"slash raw", "/products/*", `"/products/*"`},
		{"invalid byte", "a\xffb", `"a\ufffdb"`},
		{"truncated sequence", "a\xe2\x82", `"a\ufffd\ufffd"`},
		{"encoded surrogate", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"replacement character raw", "\ufffd", "\"\ufffd\""},
		{"escape after non-ASCII", "é\"", `"é\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Record
			r.SetStr(FFaultString, tt.in)
			got := string(AppendRecordJSON(nil, &r, AllFields))
			want := `{"faultString":` + tt.want + `}`
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			var m map[string]string
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			// It decodes back to the input with each invalid byte replaced,
			// as converting to runes replaces it.
			if wantStr := string([]rune(tt.in)); m["faultString"] != wantStr {
				t.Errorf("decodes to %q, want %q", m["faultString"], wantStr)
			}
		})
	}
}

func TestAppendRecordJSONFields(t *testing.T) {
	r := mkRecord(map[Field]any{
		FMonitoringDataTs:         1760004021,
		FSecurityServerInternalIP: "10.20.30.40",
		FSecurityServerType:       "Producer",
		FRequestInTs:              1760004010002,
		FResponseOutTs:            -1,
		FServiceCode:              "products",
		FRequestAttachmentCount:   0,
		FSucceeded:                false,
		FStatusCode:               200,
		FServiceType:              "REST",
	})
	tests := []struct {
		name   string
		fields FieldSet
		want   string
	}{
		{"all", AllFields, `{"monitoringDataTs":1760004021,"securityServerInternalIp":"10.20.30.40",` +
			`"securityServerType":"Producer","requestInTs":1760004010002,"responseOutTs":-1,` +
			`"serviceCode":"products","requestAttachmentCount":0,"succeeded":false,"statusCode":200,"serviceType":"REST"}`},
		{"all but the internal IP", AllFields.Without(FSecurityServerInternalIP), `{"monitoringDataTs":1760004021,` +
			`"securityServerType":"Producer","requestInTs":1760004010002,"responseOutTs":-1,` +
			`"serviceCode":"products","requestAttachmentCount":0,"succeeded":false,"statusCode":200,"serviceType":"REST"}`},
		{"projection", FieldSet(0).With(FServiceType).With(FSucceeded).With(FFaultCode), `{"succeeded":false,"serviceType":"REST"}`},
		{"one field", FieldSet(0).With(FMonitoringDataTs), `{"monitoringDataTs":1760004021}`},
		{"no selected field present", FieldSet(0).With(FFaultCode).With(FFaultString), `{}`},
		{"empty set", 0, `{}`},
		{"bits beyond the fields", ^FieldSet(0), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tests[0].want
			}
			if got := string(AppendRecordJSON(nil, &r, tt.fields)); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
	t.Run("succeeded true", func(t *testing.T) {
		r := mkRecord(map[Field]any{FSucceeded: true})
		if got := string(AppendRecordJSON([]byte("x"), &r, AllFields)); got != `x{"succeeded":true}` {
			t.Errorf("got %s", got)
		}
	})
	t.Run("empty record", func(t *testing.T) {
		var r Record
		if got := string(AppendRecordJSON(nil, &r, AllFields)); got != `{}` {
			t.Errorf("got %s", got)
		}
	})
}

// decodeMap decodes one JSON object with encoding/json, numbers kept exact.
func decodeMap(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}

func TestRecordJSONRoundTrip(t *testing.T) {
	// Records as security servers send them: decoding and encoding again
	// gives the same object.
	var example struct{ Records []json.RawMessage }
	if err := json.Unmarshal([]byte(exampleStoreBody), &example); err != nil {
		t.Fatal(err)
	}
	inputs := example.Records
	for _, r := range genRecords(200, 4, true) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	for i, in := range inputs {
		opts := DecodeOptions{KeepMonitoringDataTs: i >= len(example.Records)}
		r, err := DecodeRecord(in, opts)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		out := AppendRecordJSON(nil, &r, AllFields)
		if got, want := decodeMap(t, out), decodeMap(t, in); !reflect.DeepEqual(got, want) {
			t.Errorf("record %d:\n in  %s\n out %s", i, in, out)
		}
	}

	// Coerced, truncated and defaulted values come out in their stored form.
	long := strings.Repeat("€", 300)
	tests := []struct {
		name    string
		in, out string
	}{
		{"coercions",
			`{"securityServerInternalIp":1234,"securityServerType":"Client","requestInTs":"12.9","responseOutTs":1.5e3,` +
				`"succeeded":1,"statusCode":" 404 ","requestSize":"","messageIssue":false,"foo":[1],"requestSoapSize":7}`,
			`{"securityServerInternalIp":"1234","securityServerType":"Client","requestInTs":"12","responseOutTs":"1500",` +
				`"messageIssue":"false","requestSize":"7","succeeded":true,"statusCode":"404"}`},
		{"truncation and replacement",
			`{"securityServerInternalIp":"\ud800","securityServerType":"Producer","requestInTs":1,"responseOutTs":2,` +
				`"succeeded":false,"serviceCode":"` + long + `","faultString":"a\u0000<b>"}`,
			`{"securityServerInternalIp":"\ufffd","securityServerType":"Producer","requestInTs":"1","responseOutTs":"2",` +
				`"serviceCode":"` + long[:255*3] + `","succeeded":false,"faultString":"a\u0000<b>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecord([]byte(tt.in), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out := AppendRecordJSON(nil, &r, AllFields)
			// Compare numbers by their text: the expectation writes them
			// as strings to keep the map comparison simple.
			got := decodeMap(t, out)
			for k, v := range got {
				got[k] = fmt.Sprint(v)
				if b, ok := v.(bool); ok {
					got[k] = b
				}
			}
			if want := decodeMap(t, []byte(tt.out)); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %s\nwant %s", out, tt.out)
			}
		})
	}
}

func TestAppendRecordJSONAllocs(t *testing.T) {
	req, err := DecodeStoreRequest(storeBody(t, genRecords(100, 5, true)), DecodeOptions{KeepMonitoringDataTs: true})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(10, func() {
		buf = buf[:0]
		for i := range req.Records {
			buf = AppendRecordJSON(buf, &req.Records[i], AllFields)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations, want none", allocs)
	}
}

func BenchmarkAppendRecordJSON(b *testing.B) {
	const n = 10000
	req, err := DecodeStoreRequest(storeBody(b, genRecords(n, 6, true)), DecodeOptions{KeepMonitoringDataTs: true})
	if err != nil || len(req.Records) != n {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 16<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range req.Records {
			buf = AppendRecordJSON(buf, &req.Records[i], AllFields)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
