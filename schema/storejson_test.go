package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// exampleStoreBody is the store request of opmon-protocol.md §13.1, verbatim.
const exampleStoreBody = `{
  "records": [
    {
      "securityServerInternalIp": "10.20.30.40",
      "securityServerType": "Client",
      "requestInTs": 1760004004120,
      "requestOutTs": 1760004004181,
      "responseInTs": 1760004004452,
      "responseOutTs": 1760004004467,
      "clientXRoadInstance": "DEV",
      "clientMemberClass": "COM",
      "clientMemberCode": "1234",
      "clientSubsystemCode": "Portal",
      "serviceXRoadInstance": "DEV",
      "serviceMemberClass": "GOV",
      "serviceMemberCode": "5678",
      "serviceSubsystemCode": "WeatherService",
      "serviceCode": "getWeather",
      "serviceVersion": "v2",
      "messageId": "8c6b1f0e-3f5e-4c1a-9a55-0d2b7f6e1c11",
      "messageUserId": "EE38001010000",
      "messageIssue": "case-2025-117",
      "messageProtocolVersion": "4.0",
      "clientSecurityServerAddress": "ss1.dev.example",
      "serviceSecurityServerAddress": "ss2.dev.example",
      "requestSize": 1412,
      "responseSize": 2987,
      "requestAttachmentCount": 0,
      "responseAttachmentCount": 0,
      "succeeded": true,
      "xRequestId": "0b7d5a4e-6f71-4c55-8e0a-1f8e2c3d4b5a",
      "xRoadVersion": "7.8.0",
      "serviceType": "WSDL"
    },
    {
      "securityServerInternalIp": "10.20.30.40",
      "securityServerType": "Producer",
      "requestInTs": 1760004010002,
      "requestOutTs": 1760004010009,
      "responseInTs": 1760004010088,
      "responseOutTs": 1760004010093,
      "clientXRoadInstance": "DEV",
      "clientMemberClass": "GOV",
      "clientMemberCode": "5678",
      "clientSubsystemCode": "Dashboard",
      "serviceXRoadInstance": "DEV",
      "serviceMemberClass": "COM",
      "serviceMemberCode": "1234",
      "serviceSubsystemCode": "Catalog",
      "serviceCode": "products",
      "restMethod": "GET",
      "restPath": "/products/*",
      "messageId": "DEV-2f4e8a10-7c3b-4d2e-b1a9-5e6f7a8b9c0d",
      "messageProtocolVersion": "1",
      "clientSecurityServerAddress": "ss2.dev.example",
      "serviceSecurityServerAddress": "ss1.dev.example",
      "requestSize": 388,
      "responseSize": 5120,
      "requestAttachmentCount": 0,
      "responseAttachmentCount": 0,
      "succeeded": true,
      "statusCode": 200,
      "xRequestId": "5d0c9e8b-2a41-4f3c-8b7d-6e5f4a3b2c1d",
      "xRoadVersion": "7.8.0",
      "serviceType": "OPENAPI3"
    },
    {
      "securityServerInternalIp": "10.20.30.40",
      "securityServerType": "Client",
      "requestInTs": 1760004020500,
      "requestOutTs": 1760004020512,
      "responseInTs": 1760004020526,
      "responseOutTs": 1760004020531,
      "clientXRoadInstance": "DEV",
      "clientMemberClass": "COM",
      "clientMemberCode": "1234",
      "clientSubsystemCode": "Portal",
      "serviceXRoadInstance": "DEV",
      "serviceMemberClass": "GOV",
      "serviceMemberCode": "5678",
      "serviceSubsystemCode": "WeatherService",
      "serviceCode": "getTide",
      "serviceVersion": "v1",
      "messageId": "c41d7e2a-90b8-4f61-a3c5-2b9e8d7f6a10",
      "messageProtocolVersion": "4.0",
      "clientSecurityServerAddress": "ss1.dev.example",
      "serviceSecurityServerAddress": "ss2.dev.example",
      "requestSize": 1398,
      "requestAttachmentCount": 0,
      "succeeded": false,
      "faultCode": "server.serverproxy.unknown_service",
      "faultString": "Unknown service: SERVICE:DEV/GOV/5678/WeatherService/getTide/v1",
      "xRequestId": "e7a6b5c4-d3e2-4f10-9a8b-7c6d5e4f3a2b",
      "xRoadVersion": "7.8.0",
      "serviceType": "WSDL"
    }
  ]
}`

// mkRecord builds a record from field values (string, int, int64 or bool).
func mkRecord(vals map[Field]any) Record {
	var r Record
	for f, v := range vals {
		switch v := v.(type) {
		case string:
			r.SetStr(f, v)
		case int:
			r.SetInt(f, int64(v))
		case int64:
			r.SetInt(f, v)
		case bool:
			r.SetBool(f, v)
		default:
			panic(fmt.Sprintf("mkRecord: %T", v))
		}
	}
	return r
}

// fieldValue returns a field's value as mkRecord takes it, or nil when absent.
func fieldValue(r *Record, f Field) any {
	if !r.Has.Has(f) {
		return nil
	}
	switch Fields[f].Kind {
	case KindString:
		return r.Str(f)
	case KindBool:
		return r.Bool(f)
	}
	return r.Int(f)
}

// checkRecord reports every field in which got differs from want.
func checkRecord(t *testing.T, name string, got, want *Record) {
	t.Helper()
	for f := Field(0); f < NumFields; f++ {
		g, w := fieldValue(got, f), fieldValue(want, f)
		if g != w {
			t.Errorf("%s: field %s = %#v, want %#v", name, f.Name(), g, w)
		}
	}
	if *got != *want {
		t.Errorf("%s: records differ beyond their fields", name)
	}
}

func TestDecodeStoreRequestExample(t *testing.T) {
	const ip, ver = "10.20.30.40", "7.8.0"
	want := []Record{
		mkRecord(map[Field]any{
			FSecurityServerInternalIP:     ip,
			FSecurityServerType:           "Client",
			FRequestInTs:                  1760004004120,
			FRequestOutTs:                 1760004004181,
			FResponseInTs:                 1760004004452,
			FResponseOutTs:                1760004004467,
			FClientXRoadInstance:          "DEV",
			FClientMemberClass:            "COM",
			FClientMemberCode:             "1234",
			FClientSubsystemCode:          "Portal",
			FServiceXRoadInstance:         "DEV",
			FServiceMemberClass:           "GOV",
			FServiceMemberCode:            "5678",
			FServiceSubsystemCode:         "WeatherService",
			FServiceCode:                  "getWeather",
			FServiceVersion:               "v2",
			FMessageID:                    "8c6b1f0e-3f5e-4c1a-9a55-0d2b7f6e1c11",
			FMessageUserID:                "EE38001010000",
			FMessageIssue:                 "case-2025-117",
			FMessageProtocolVersion:       "4.0",
			FClientSecurityServerAddress:  "ss1.dev.example",
			FServiceSecurityServerAddress: "ss2.dev.example",
			FRequestSize:                  1412,
			FResponseSize:                 2987,
			FRequestAttachmentCount:       0,
			FResponseAttachmentCount:      0,
			FSucceeded:                    true,
			FXRequestID:                   "0b7d5a4e-6f71-4c55-8e0a-1f8e2c3d4b5a",
			FXRoadVersion:                 ver,
			FServiceType:                  "WSDL",
		}),
		mkRecord(map[Field]any{
			FSecurityServerInternalIP:     ip,
			FSecurityServerType:           "Producer",
			FRequestInTs:                  1760004010002,
			FRequestOutTs:                 1760004010009,
			FResponseInTs:                 1760004010088,
			FResponseOutTs:                1760004010093,
			FClientXRoadInstance:          "DEV",
			FClientMemberClass:            "GOV",
			FClientMemberCode:             "5678",
			FClientSubsystemCode:          "Dashboard",
			FServiceXRoadInstance:         "DEV",
			FServiceMemberClass:           "COM",
			FServiceMemberCode:            "1234",
			FServiceSubsystemCode:         "Catalog",
			FServiceCode:                  "products",
			FRestMethod:                   "GET",
			FRestPath:                     "/products/*",
			FMessageID:                    "DEV-2f4e8a10-7c3b-4d2e-b1a9-5e6f7a8b9c0d",
			FMessageProtocolVersion:       "1",
			FClientSecurityServerAddress:  "ss2.dev.example",
			FServiceSecurityServerAddress: "ss1.dev.example",
			FRequestSize:                  388,
			FResponseSize:                 5120,
			FRequestAttachmentCount:       0,
			FResponseAttachmentCount:      0,
			FSucceeded:                    true,
			FStatusCode:                   200,
			FXRequestID:                   "5d0c9e8b-2a41-4f3c-8b7d-6e5f4a3b2c1d",
			FXRoadVersion:                 ver,
			FServiceType:                  "OPENAPI3",
		}),
		mkRecord(map[Field]any{
			FSecurityServerInternalIP:     ip,
			FSecurityServerType:           "Client",
			FRequestInTs:                  1760004020500,
			FRequestOutTs:                 1760004020512,
			FResponseInTs:                 1760004020526,
			FResponseOutTs:                1760004020531,
			FClientXRoadInstance:          "DEV",
			FClientMemberClass:            "COM",
			FClientMemberCode:             "1234",
			FClientSubsystemCode:          "Portal",
			FServiceXRoadInstance:         "DEV",
			FServiceMemberClass:           "GOV",
			FServiceMemberCode:            "5678",
			FServiceSubsystemCode:         "WeatherService",
			FServiceCode:                  "getTide",
			FServiceVersion:               "v1",
			FMessageID:                    "c41d7e2a-90b8-4f61-a3c5-2b9e8d7f6a10",
			FMessageProtocolVersion:       "4.0",
			FClientSecurityServerAddress:  "ss1.dev.example",
			FServiceSecurityServerAddress: "ss2.dev.example",
			FRequestSize:                  1398,
			FRequestAttachmentCount:       0,
			FSucceeded:                    false,
			FFaultCode:                    "server.serverproxy.unknown_service",
			FFaultString:                  "Unknown service: SERVICE:DEV/GOV/5678/WeatherService/getTide/v1",
			FXRequestID:                   "e7a6b5c4-d3e2-4f10-9a8b-7c6d5e4f3a2b",
			FXRoadVersion:                 ver,
			FServiceType:                  "WSDL",
		}),
	}
	req, err := DecodeStoreRequest([]byte(exampleStoreBody), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Rejected) != 0 {
		t.Errorf("rejected: %+v", req.Rejected)
	}
	if len(req.Records) != len(want) {
		t.Fatalf("got %d records, want %d", len(req.Records), len(want))
	}
	for i := range want {
		checkRecord(t, fmt.Sprintf("record %d", i), &req.Records[i], &want[i])
	}
}

// minimalRecord has exactly the mandatory fields.
const minimalRecord = `"securityServerInternalIp":"10.0.0.1","securityServerType":"Client",` +
	`"requestInTs":1,"responseOutTs":2,"succeeded":true`

// decodeOne decodes a request holding one record: the mandatory fields
// followed by extra (later keys win).
func decodeOne(t *testing.T, extra string, opts DecodeOptions) (*Record, string) {
	t.Helper()
	body := `{"records":[{` + minimalRecord
	if extra != "" {
		body += "," + extra
	}
	body += `}]}`
	req, err := DecodeStoreRequest([]byte(body), opts)
	if err != nil {
		t.Fatalf("DecodeStoreRequest(%s): %v", body, err)
	}
	switch {
	case len(req.Records) == 1 && len(req.Rejected) == 0:
		return &req.Records[0], ""
	case len(req.Records) == 0 && len(req.Rejected) == 1:
		if got := string(req.Rejected[0].Raw); got != body[len(`{"records":[`):len(body)-2] {
			t.Errorf("Raw = %s", got)
		}
		return nil, req.Rejected[0].Reason
	}
	t.Fatalf("got %d records and %d rejected", len(req.Records), len(req.Rejected))
	return nil, ""
}

func TestDecodeStoreCoercion(t *testing.T) {
	tests := []struct {
		name   string
		extra  string // appended to a record with the mandatory fields
		field  Field
		want   any    // nil: absent
		reject string // the reason, when the record is rejected
	}{
		// Integers.
		{name: "int", extra: `"requestSize":1412`, field: FRequestSize, want: int64(1412)},
		{name: "int negative", extra: `"requestSize":-5`, field: FRequestSize, want: int64(-5)},
		{name: "int max", extra: `"requestSize":9223372036854775807`, field: FRequestSize, want: int64(1<<63 - 1)},
		{name: "int min", extra: `"requestSize":-9223372036854775808`, field: FRequestSize, want: int64(-1 << 63)},
		{name: "int fraction truncated", extra: `"requestSize":12.7`, field: FRequestSize, want: int64(12)},
		{name: "int negative fraction toward zero", extra: `"requestSize":-12.7`, field: FRequestSize, want: int64(-12)},
		{name: "int exponent", extra: `"requestSize":1.5e3`, field: FRequestSize, want: int64(1500)},
		{name: "int negative exponent", extra: `"requestSize":15E-1`, field: FRequestSize, want: int64(1)},
		{name: "int tiny", extra: `"requestSize":1e-300`, field: FRequestSize, want: int64(0)},
		{name: "int zero huge exponent", extra: `"requestSize":0e999999999999`, field: FRequestSize, want: int64(0)},
		{name: "int max with fraction", extra: `"requestSize":9223372036854775807.99`, field: FRequestSize, want: int64(1<<63 - 1)},
		{name: "int string", extra: `"requestSize":"12"`, field: FRequestSize, want: int64(12)},
		{name: "int string trimmed", extra: `"requestSize":" 12\t"`, field: FRequestSize, want: int64(12)},
		{name: "int string fraction", extra: `"requestSize":"12.7"`, field: FRequestSize, want: int64(12)},
		{name: "int string exponent", extra: `"requestSize":"1.5e3"`, field: FRequestSize, want: int64(1500)},
		{name: "int string plus", extra: `"requestSize":"+7"`, field: FRequestSize, want: int64(7)},
		{name: "int string leading zeros", extra: `"requestSize":"007"`, field: FRequestSize, want: int64(7)},
		{name: "int string escaped digits", extra: `"requestSize":"\u0031\u0032"`, field: FRequestSize, want: int64(12)},
		{name: "int empty string absent", extra: `"requestSize":""`, field: FRequestSize},
		{name: "int blank string absent", extra: `"requestSize":"  "`, field: FRequestSize},
		{name: "int string null absent", extra: `"requestSize":"null"`, field: FRequestSize},
		{name: "int null absent", extra: `"requestSize":null`, field: FRequestSize},
		{name: "int overflow", extra: `"requestSize":9223372036854775808`,
			reject: `field "requestSize": 9223372036854775808 is out of range for int64`},
		{name: "int underflow", extra: `"requestSize":-9223372036854775809`,
			reject: `field "requestSize": -9223372036854775809 is out of range for int64`},
		{name: "int exponent overflow", extra: `"requestSize":1e19`,
			reject: `field "requestSize": 1e19 is out of range for int64`},
		{name: "int huge exponent", extra: `"requestSize":1e999999999999`,
			reject: `field "requestSize": 1e999999999999 is out of range for int64`},
		{name: "int string overflow", extra: `"requestSize":"1e30"`,
			reject: `field "requestSize": "1e30" is out of range for int64`},
		{name: "int string not a number", extra: `"requestInTs":"abc"`,
			reject: `field "requestInTs": cannot use "abc" as a number`},
		{name: "int string hex", extra: `"requestSize":"0x10"`,
			reject: `field "requestSize": cannot use "0x10" as a number`},
		{name: "int string NaN", extra: `"requestSize":"NaN"`,
			reject: `field "requestSize": cannot use "NaN" as a number`},
		{name: "int string trailing dot", extra: `"requestSize":"12."`,
			reject: `field "requestSize": cannot use "12." as a number`},
		{name: "int true", extra: `"requestSize":true`, reject: `field "requestSize": cannot use true as a number`},
		{name: "int false", extra: `"requestSize":false`, reject: `field "requestSize": cannot use false as a number`},
		{name: "int object", extra: `"requestSize":{"a":1}`, reject: `field "requestSize": cannot use an object as a number`},
		{name: "int array", extra: `"requestSize":[1]`, reject: `field "requestSize": cannot use an array as a number`},
		{name: "int first bad value wins over later good one", extra: `"requestSize":"x","requestSize":1`,
			reject: `field "requestSize": cannot use "x" as a number`},

		// int32 fields.
		{name: "int32", extra: `"statusCode":200`, field: FStatusCode, want: int64(200)},
		{name: "int32 max", extra: `"statusCode":2147483647`, field: FStatusCode, want: int64(2147483647)},
		{name: "int32 min", extra: `"statusCode":-2147483648`, field: FStatusCode, want: int64(-2147483648)},
		{name: "int32 string", extra: `"requestAttachmentCount":"3"`, field: FRequestAttachmentCount, want: int64(3)},
		{name: "int32 overflow", extra: `"statusCode":2147483648`,
			reject: `field "statusCode": 2147483648 is out of range for int32`},
		{name: "int32 string overflow", extra: `"responseAttachmentCount":"-2147483649"`,
			reject: `field "responseAttachmentCount": "-2147483649" is out of range for int32`},

		// succeeded.
		{name: "bool true", extra: `"succeeded":true`, field: FSucceeded, want: true},
		{name: "bool false", extra: `"succeeded":false`, field: FSucceeded, want: false},
		{name: "bool one", extra: `"succeeded":1`, field: FSucceeded, want: true},
		{name: "bool zero", extra: `"succeeded":0`, field: FSucceeded, want: false},
		{name: "bool negative zero", extra: `"succeeded":-0`, field: FSucceeded, want: false},
		{name: "bool other integer", extra: `"succeeded":-2`, field: FSucceeded, want: true},
		{name: "bool huge integer", extra: `"succeeded":123456789012345678901234567890`, field: FSucceeded, want: true},
		{name: "bool string true", extra: `"succeeded":"true"`, field: FSucceeded, want: true},
		{name: "bool string FALSE", extra: `"succeeded":"FALSE"`, field: FSucceeded, want: false},
		{name: "bool string mixed case trimmed", extra: `"succeeded":" True "`, field: FSucceeded, want: true},
		{name: "bool empty string absent", extra: `"succeeded":""`, reject: `missing mandatory field "succeeded"`},
		{name: "bool string null absent", extra: `"succeeded":"null"`, reject: `missing mandatory field "succeeded"`},
		{name: "bool null absent", extra: `"succeeded":null`, reject: `missing mandatory field "succeeded"`},
		{name: "bool fraction", extra: `"succeeded":1.0`, reject: `field "succeeded": cannot use 1.0 as a boolean`},
		{name: "bool string yes", extra: `"succeeded":"yes"`, reject: `field "succeeded": cannot use "yes" as a boolean`},
		{name: "bool string digit", extra: `"succeeded":"1"`, reject: `field "succeeded": cannot use "1" as a boolean`},
		{name: "bool object", extra: `"succeeded":{}`, reject: `field "succeeded": cannot use an object as a boolean`},
		{name: "bool array", extra: `"succeeded":[true]`, reject: `field "succeeded": cannot use an array as a boolean`},

		// Strings.
		{name: "string", extra: `"serviceCode":"getWeather"`, field: FServiceCode, want: "getWeather"},
		{name: "string empty kept", extra: `"serviceCode":""`, field: FServiceCode, want: ""},
		{name: "string escapes", extra: `"faultString":"a\"b\\c\/d\n\u00e9\ud83d\ude00"`, field: FFaultString, want: "a\"b\\c/d\né😀"},
		{name: "string raw non-ASCII", extra: `"faultString":"Päring ebaõnnestus: 服务"`, field: FFaultString, want: "Päring ebaõnnestus: 服务"},
		{name: "string from integer", extra: `"messageUserId":123`, field: FMessageUserID, want: "123"},
		{name: "string from number as written", extra: `"messageUserId":-1.50E+3`, field: FMessageUserID, want: "-1.50E+3"},
		{name: "string from true", extra: `"messageIssue":true`, field: FMessageIssue, want: "true"},
		{name: "string from false", extra: `"messageIssue":false`, field: FMessageIssue, want: "false"},
		{name: "string null absent", extra: `"serviceCode":"x","serviceCode":null`, field: FServiceCode},
		{name: "string object", extra: `"serviceCode":{"a":"b"}`, reject: `field "serviceCode": cannot use an object as a string`},
		{name: "string array", extra: `"serviceCode":["a"]`, reject: `field "serviceCode": cannot use an array as a string`},
		{name: "string duplicate last wins", extra: `"serviceCode":"a","serviceCode":"b"`, field: FServiceCode, want: "b"},
		{name: "string escaped key", extra: `"service\u0043ode":"k"`, field: FServiceCode, want: "k"},
		{name: "string key case-sensitive", extra: `"ServiceCode":"k"`, field: FServiceCode},

		// securityServerType.
		{name: "type Producer", extra: `"securityServerType":"Producer"`, field: FSecurityServerType, want: "Producer"},
		{name: "type lower case", extra: `"securityServerType":"client"`,
			reject: `field "securityServerType": "client" is not Client or Producer`},
		{name: "type upper case", extra: `"securityServerType":"PRODUCER"`,
			reject: `field "securityServerType": "PRODUCER" is not Client or Producer`},
		{name: "type padded", extra: `"securityServerType":" Client"`,
			reject: `field "securityServerType": " Client" is not Client or Producer`},
		{name: "type empty", extra: `"securityServerType":""`,
			reject: `field "securityServerType": "" is not Client or Producer`},
		{name: "type number", extra: `"securityServerType":1`,
			reject: `field "securityServerType": "1" is not Client or Producer`},
		{name: "type null", extra: `"securityServerType":null`, reject: `missing mandatory field "securityServerType"`},

		// Other keys.
		{name: "unknown field skipped", extra: `"foo":{"a":[1,2.5,{"b":null}],"c":"\u00e9"},"bar":[]`, field: FServiceCode},
		{name: "monitoringDataTs ignored", extra: `"monitoringDataTs":"garbage"`, field: FMonitoringDataTs},
		{name: "monitoringDataTs object ignored", extra: `"monitoringDataTs":{"x":[]}`, field: FMonitoringDataTs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reason := decodeOne(t, tt.extra, DecodeOptions{})
			if reason != tt.reject {
				t.Fatalf("reason = %q, want %q", reason, tt.reject)
			}
			if r == nil {
				return
			}
			if got := fieldValue(r, tt.field); got != tt.want {
				t.Errorf("%s = %#v, want %#v", tt.field.Name(), got, tt.want)
			}
		})
	}
}

func TestDecodeStoreTruncation(t *testing.T) {
	mixed := strings.Repeat("aé€😀", 75) // 300 runes of 1 to 4 bytes
	escaped := strings.Repeat(`\u00e9`, 300)
	digits := strings.Repeat("7", 300)
	tests := []struct {
		name  string
		field Field
		value string // JSON value
		want  string
	}{
		{name: "multi-byte", field: FServiceCode, value: `"` + mixed + `"`, want: string([]rune(mixed)[:255])},
		{name: "escaped", field: FMessageID, value: `"` + escaped + `"`, want: strings.Repeat("é", 255)},
		{name: "number as string", field: FMessageUserID, value: digits, want: digits[:255]},
		{name: "exactly 255", field: FServiceCode, value: `"` + mixed[:len(string([]rune(mixed)[:255]))] + `"`,
			want: string([]rune(mixed)[:255])},
		{name: "faultString 2048", field: FFaultString, value: `"` + strings.Repeat(mixed, 10) + `"`,
			want: string([]rune(strings.Repeat(mixed, 10))[:2048])},
		{name: "faultString short kept", field: FFaultString, value: `"` + mixed + `"`, want: mixed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reason := decodeOne(t, `"`+tt.field.Name()+`":`+tt.value, DecodeOptions{})
			if reason != "" {
				t.Fatal(reason)
			}
			got := r.Str(tt.field)
			if !utf8.ValidString(got) {
				t.Errorf("not valid UTF-8: %q", got)
			}
			if n, max := utf8.RuneCountInString(got), Fields[tt.field].MaxRunes; n > max {
				t.Errorf("%d runes, limit %d", n, max)
			}
			if got != tt.want {
				t.Errorf("got %d runes %q, want %d runes %q",
					utf8.RuneCountInString(got), got, utf8.RuneCountInString(tt.want), tt.want)
			}
		})
	}
}

func TestDecodeStoreStringDecoding(t *testing.T) {
	// Each JSON string must decode as encoding/json decodes it, including
	// invalid UTF-8 and lone surrogates.
	tests := []struct{ name, json string }{
		{"plain", `"abc"`},
		{"short escapes", `"\"\\\/\b\f\n\r\t"`},
		{"nul", `"a\u0000b"`},
		{"BMP escape", `"\u20ac\u00E9"`},
		{"surrogate pair", `"\ud83d\ude00"`},
		{"lone high surrogate", `"\ud800x"`},
		{"lone low surrogate", `"\udc00"`},
		{"high then non-surrogate escape", `"\ud800\u0041"`},
		{"high high low", `"\ud800\ud800\udc00"`},
		{"high at end", `"\ud83d"`},
		{"invalid UTF-8", "\"a\xffb\xfe\""},
		{"truncated UTF-8", "\"a\xe2\x82\""},
		{"encoded surrogate", "\"\xed\xa0\x80\""},
		{"overlong", "\"\xc0\xaf\""},
		{"literal replacement char", "\"\xef\xbf\xbd\""},
		{"DEL and U+2028", "\"\x7f\u2028\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want string
			if err := json.Unmarshal([]byte(tt.json), &want); err != nil {
				t.Fatal(err)
			}
			r, reason := decodeOne(t, `"faultString":`+tt.json, DecodeOptions{})
			if reason != "" {
				t.Fatal(reason)
			}
			if got := r.Str(FFaultString); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestDecodeStoreRequestErrors(t *testing.T) {
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty", "", ErrNoData},
		{"whitespace", " \t\r\n ", ErrNoData},
		{"BOM only", "\xef\xbb\xbf", ErrNoData},
		{"array", "[]", ErrInvalidRequest},
		{"string", `"records"`, ErrInvalidRequest},
		{"null", "null", ErrInvalidRequest},
		{"empty object", "{}", ErrInvalidRequest},
		{"other keys only", `{"record":[]}`, ErrInvalidRequest},
		{"records null", `{"records":null}`, ErrInvalidRequest},
		{"records object", `{"records":{}}`, ErrInvalidRequest},
		{"records string", `{"records":"[]"}`, ErrInvalidRequest},
		{"records number", `{"records":1}`, ErrInvalidRequest},
		{"unclosed", `{"records":[]`, ErrInvalidRequest},
		{"unclosed array", `{"records":[`, ErrInvalidRequest},
		{"trailing garbage", `{"records":[]}x`, ErrInvalidRequest},
		{"two objects", `{"records":[]} {}`, ErrInvalidRequest},
		{"trailing comma in array", `{"records":[{},]}`, ErrInvalidRequest},
		{"trailing comma in object", `{"records":[{"a":1,}]}`, ErrInvalidRequest},
		{"trailing comma at top", `{"records":[],}`, ErrInvalidRequest},
		{"missing colon", `{"records" []}`, ErrInvalidRequest},
		{"missing comma", `{"records":[{"a":1 "b":2}]}`, ErrInvalidRequest},
		{"bare word", `{"records":[tru]}`, ErrInvalidRequest},
		{"leading zero", `{"records":[01]}`, ErrInvalidRequest},
		{"lone minus", `{"records":[-]}`, ErrInvalidRequest},
		{"fraction without digits", `{"records":[{"requestSize":1.}]}`, ErrInvalidRequest},
		{"exponent without digits", `{"records":[{"requestSize":1e}]}`, ErrInvalidRequest},
		{"plus sign", `{"records":[{"requestSize":+1}]}`, ErrInvalidRequest},
		{"control character in string", "{\"records\":[{\"serviceCode\":\"a\x01\"}]}", ErrInvalidRequest},
		{"newline in key", "{\"records\":[{\"service\nCode\":\"a\"}]}", ErrInvalidRequest},
		{"bad escape", `{"records":[{"serviceCode":"\q"}]}`, ErrInvalidRequest},
		{"short unicode escape", `{"records":[{"serviceCode":"\u12"}]}`, ErrInvalidRequest},
		{"unterminated string", `{"records":[{"serviceCode":"abc}]}`, ErrInvalidRequest},
		{"single quotes", `{'records':[]}`, ErrInvalidRequest},
		{"non-string key", `{"records":[{1:2}]}`, ErrInvalidRequest},
		{"syntax error after a bad record", `{"records":[{"succeeded":"yes"},{"a":]}`, ErrInvalidRequest},
		{"syntax error in skipped key", `{"x":[1 2],"records":[]}`, ErrInvalidRequest},
		{"too deep in other key", `{"x":` + deep + `,"records":[]}`, ErrInvalidRequest},
		{"too deep in record", `{"records":[{"x":` + deep + `}]}`, ErrInvalidRequest},
		{"too deep in records", `{"records":[` + deep + `]}`, ErrInvalidRequest},
		{"NaN", `{"records":[{"requestSize":NaN}]}`, ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeStoreRequest([]byte(tt.body), DecodeOptions{})
			if err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if req != nil {
				t.Errorf("got a request: %+v", req)
			}
		})
	}
}

func TestDecodeStoreRequestAccepted(t *testing.T) {
	tests := []struct {
		name string
		body string
		n    int
	}{
		{"empty batch", `{"records":[]}`, 0},
		{"spaced empty batch", " \r\n{ \"records\" : [ ] } \n", 0},
		{"BOM", "\xef\xbb\xbf" + `{"records":[]}`, 0},
		{"other keys", `{"a":{"records":null},"records":[{` + minimalRecord + `}],"z":[1,"x",true,null]}`, 1},
		{"duplicate records key, last wins", `{"records":[{` + minimalRecord + `}],"records":[]}`, 0},
		{"escaped records key", `{"r\u0065cords":[{` + minimalRecord + `}]}`, 1},
		{"nested up to the limit", `{"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `,"records":[]}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeStoreRequest([]byte(tt.body), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(req.Records) != tt.n || len(req.Rejected) != 0 {
				t.Errorf("got %d records, %d rejected; want %d records", len(req.Records), len(req.Rejected), tt.n)
			}
		})
	}
}

func TestDecodeStoreQuarantine(t *testing.T) {
	mandatory := map[string]string{
		"securityServerInternalIp": `"10.0.0.1"`,
		"securityServerType":       `"Producer"`,
		"requestInTs":              `1`,
		"responseOutTs":            `2`,
		"succeeded":                `true`,
	}
	without := func(skip string) string {
		var parts []string
		for f := Field(0); f < NumFields; f++ {
			if v, ok := mandatory[f.Name()]; ok && f.Name() != skip {
				parts = append(parts, `"`+f.Name()+`":`+v)
			}
		}
		return "{" + strings.Join(parts, ",") + `,"serviceCode":"svc"}`
	}
	elements := []struct {
		json   string
		reject string // "": stored
	}{
		{json: without("") + ` `},
		{json: without("securityServerInternalIp"), reject: `missing mandatory field "securityServerInternalIp"`},
		{json: without("securityServerType"), reject: `missing mandatory field "securityServerType"`},
		{json: without("requestInTs"), reject: `missing mandatory field "requestInTs"`},
		{json: without("responseOutTs"), reject: `missing mandatory field "responseOutTs"`},
		{json: without("succeeded"), reject: `missing mandatory field "succeeded"`},
		{json: `{"serviceCode":"x"}`, reject: `missing mandatory fields "securityServerInternalIp", "securityServerType", "requestInTs", "responseOutTs", "succeeded"`},
		{json: `{` + minimalRecord + `,"securityServerType":"client"}`, reject: `field "securityServerType": "client" is not Client or Producer`},
		{json: `{` + minimalRecord + `,"requestInTs":"abc"}`, reject: `field "requestInTs": cannot use "abc" as a number`},
		{json: `5`, reject: "record is a number, not an object"},
		{json: `null`, reject: "record is null, not an object"},
		{json: `"record"`, reject: "record is a string, not an object"},
		{json: `[{` + minimalRecord + `}]`, reject: "record is an array, not an object"},
		{json: `true`, reject: "record is a boolean, not an object"},
		{json: "{" + minimalRecord + `,"serviceCode":"last"}`},
	}
	var parts []string
	for _, e := range elements {
		parts = append(parts, e.json)
	}
	body := []byte(`{"records":[` + strings.Join(parts, " ,\n") + `]}`)
	req, err := DecodeStoreRequest(body, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wantRejected []Rejected
	for i, e := range elements {
		if e.reject != "" {
			wantRejected = append(wantRejected, Rejected{Index: i, Reason: e.reject, Raw: []byte(strings.TrimSpace(e.json))})
		}
	}
	if len(req.Records) != 2 {
		t.Fatalf("got %d records, want 2", len(req.Records))
	}
	if got := req.Records[0]; got.Str(FServiceCode) != "svc" || got.Str(FSecurityServerType) != "Producer" {
		t.Errorf("first record: %+v", got)
	}
	if got := req.Records[1]; got.Str(FServiceCode) != "last" || got.Str(FSecurityServerType) != "Client" {
		t.Errorf("second record: %+v", got)
	}
	if len(req.Rejected) != len(wantRejected) {
		t.Fatalf("got %d rejected, want %d", len(req.Rejected), len(wantRejected))
	}
	for i, want := range wantRejected {
		got := req.Rejected[i]
		if got.Index != want.Index || got.Reason != want.Reason || !bytes.Equal(got.Raw, want.Raw) {
			t.Errorf("rejected %d = {%d %q %s}, want {%d %q %s}", i, got.Index, got.Reason, got.Raw, want.Index, want.Reason, want.Raw)
		}
	}
	// Raw is a copy: the caller may reuse the body.
	for i := range body {
		body[i] = 'x'
	}
	if got := string(req.Rejected[0].Raw); got != strings.TrimSpace(elements[1].json) {
		t.Errorf("Raw aliases the body: %s", got)
	}
}

func TestDecodeStoreOldSizeNames(t *testing.T) {
	tests := []struct {
		name          string
		extra         string
		request, resp any // nil: absent
	}{
		{"SOAP names", `"requestSoapSize":10,"responseSoapSize":20`, int64(10), int64(20)},
		{"REST names", `"requestRestSize":"11","responseRestSize":21.9`, int64(11), int64(21)},
		{"new names win when first", `"requestSize":1,"requestSoapSize":10,"responseSize":2,"responseRestSize":20`, int64(1), int64(2)},
		{"new names win when last", `"requestSoapSize":10,"requestSize":1,"responseRestSize":20,"responseSize":2`, int64(1), int64(2)},
		{"new name null", `"requestSize":null,"requestSoapSize":10`, int64(10), nil},
		{"last old name wins", `"requestSoapSize":10,"requestRestSize":11`, int64(11), nil},
		{"old name null", `"requestSoapSize":10,"requestSoapSize":null`, nil, nil},
		{"unusable old value ignored", `"requestSoapSize":"abc","responseSoapSize":{"a":1}`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reason := decodeOne(t, tt.extra, DecodeOptions{})
			if reason != "" {
				t.Fatal(reason)
			}
			if got := fieldValue(r, FRequestSize); got != tt.request {
				t.Errorf("requestSize = %#v, want %#v", got, tt.request)
			}
			if got := fieldValue(r, FResponseSize); got != tt.resp {
				t.Errorf("responseSize = %#v, want %#v", got, tt.resp)
			}
		})
	}
}

func TestDecodeStoreMonitoringDataTs(t *testing.T) {
	tests := []struct {
		name   string
		keep   bool
		extra  string
		want   any // nil: absent
		reject string
	}{
		{name: "ignored", extra: `"monitoringDataTs":1760004021`},
		{name: "ignored when bad", extra: `"monitoringDataTs":[1]`},
		{name: "ignored when missing"},
		{name: "kept", keep: true, extra: `"monitoringDataTs":1760004021`, want: int64(1760004021)},
		{name: "kept coerced", keep: true, extra: `"monitoringDataTs":"1760004021.9"`, want: int64(1760004021)},
		{name: "kept missing", keep: true, reject: "missing monitoringDataTs"},
		{name: "kept null", keep: true, extra: `"monitoringDataTs":null`, reject: "missing monitoringDataTs"},
		{name: "kept bad", keep: true, extra: `"monitoringDataTs":"now"`,
			reject: `field "monitoringDataTs": cannot use "now" as a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reason := decodeOne(t, tt.extra, DecodeOptions{KeepMonitoringDataTs: tt.keep})
			if reason != tt.reject {
				t.Fatalf("reason = %q, want %q", reason, tt.reject)
			}
			if r == nil {
				return
			}
			if got := fieldValue(r, FMonitoringDataTs); got != tt.want {
				t.Errorf("monitoringDataTs = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeStoreStringsDoNotAliasBody(t *testing.T) {
	body := []byte(exampleStoreBody)
	req, err := DecodeStoreRequest(body, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for i := range req.Records {
		before = append(before, string(AppendRecordJSON(nil, &req.Records[i], AllFields)))
	}
	for i := range body {
		body[i] = '#'
	}
	for i := range req.Records {
		if got := string(AppendRecordJSON(nil, &req.Records[i], AllFields)); got != before[i] {
			t.Errorf("record %d changed with the body: %s", i, got)
		}
	}
}

func TestDecodeRecord(t *testing.T) {
	const line = `{"monitoringDataTs":1760004021,` + minimalRecord + `,"serviceCode":"s"}`
	tests := []struct {
		name    string
		data    string
		keep    bool
		wantErr string // "": decoded
	}{
		{name: "line", data: line, keep: true},
		{name: "surrounding whitespace", data: " \t" + line + "\r\n", keep: true},
		{name: "without keep", data: `{` + minimalRecord + `}`},
		{name: "missing monitoringDataTs", data: `{` + minimalRecord + `}`, keep: true, wantErr: "missing monitoringDataTs"},
		{name: "missing mandatory", data: `{"monitoringDataTs":1}`, keep: true,
			wantErr: `missing mandatory fields "securityServerInternalIp", "securityServerType", "requestInTs", "responseOutTs", "succeeded"`},
		{name: "bad type", data: `{` + minimalRecord + `,"securityServerType":"X"}`, wantErr: `field "securityServerType": "X" is not Client or Producer`},
		{name: "array", data: `[` + line + `]`, wantErr: "not a JSON object"},
		{name: "number", data: `12`, wantErr: "not a JSON object"},
		{name: "blank", data: "  ", wantErr: "no JSON value"},
		{name: "syntax error", data: `{"requestInTs":}`, wantErr: "invalid JSON at byte 15: invalid value"},
		{name: "truncated", data: line[:40], wantErr: "invalid JSON at byte 40: unterminated string"},
		{name: "data after", data: line + ` {}`, keep: true, wantErr: fmt.Sprintf("invalid JSON at byte %d: data after the record", len(line)+1)},
		{name: "too deep", data: `{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, wantErr: "invalid JSON at byte 68: nested deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecord([]byte(tt.data), DecodeOptions{KeepMonitoringDataTs: tt.keep})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if missing := MandatoryFields &^ r.Has; missing != 0 {
				t.Errorf("mandatory fields missing: %b", missing)
			}
			if tt.keep && r.Int(FMonitoringDataTs) != 1760004021 {
				t.Errorf("monitoringDataTs = %d", r.Int(FMonitoringDataTs))
			}
		})
	}
	var se *syntaxError
	if _, err := DecodeRecord([]byte(`{"a"}`), DecodeOptions{}); !errors.As(err, &se) || se.Offset != 4 {
		t.Errorf("err = %#v, want a syntax error at byte 4", err)
	}
}

// testRecord is a record as a security server sends it, for generated
// batches (after the benchmark generator of /work/shared/bench).
type testRecord struct {
	MonitoringDataTs             *int64 `json:"monitoringDataTs,omitempty"`
	SecurityServerInternalIP     string `json:"securityServerInternalIp"`
	SecurityServerType           string `json:"securityServerType"`
	RequestInTs                  int64  `json:"requestInTs"`
	RequestOutTs                 *int64 `json:"requestOutTs,omitempty"`
	ResponseInTs                 *int64 `json:"responseInTs,omitempty"`
	ResponseOutTs                int64  `json:"responseOutTs"`
	ClientXRoadInstance          string `json:"clientXRoadInstance,omitempty"`
	ClientMemberClass            string `json:"clientMemberClass,omitempty"`
	ClientMemberCode             string `json:"clientMemberCode,omitempty"`
	ClientSubsystemCode          string `json:"clientSubsystemCode,omitempty"`
	ServiceXRoadInstance         string `json:"serviceXRoadInstance,omitempty"`
	ServiceMemberClass           string `json:"serviceMemberClass,omitempty"`
	ServiceMemberCode            string `json:"serviceMemberCode,omitempty"`
	ServiceSubsystemCode         string `json:"serviceSubsystemCode,omitempty"`
	ServiceCode                  string `json:"serviceCode,omitempty"`
	RestMethod                   string `json:"restMethod,omitempty"`
	RestPath                     string `json:"restPath,omitempty"`
	XRoadVersion                 string `json:"xRoadVersion,omitempty"`
	ServiceVersion               string `json:"serviceVersion,omitempty"`
	RepresentedPartyClass        string `json:"representedPartyClass,omitempty"`
	RepresentedPartyCode         string `json:"representedPartyCode,omitempty"`
	MessageID                    string `json:"messageId,omitempty"`
	MessageUserID                string `json:"messageUserId,omitempty"`
	MessageIssue                 string `json:"messageIssue,omitempty"`
	MessageProtocolVersion       string `json:"messageProtocolVersion,omitempty"`
	ClientSecurityServerAddress  string `json:"clientSecurityServerAddress,omitempty"`
	ServiceSecurityServerAddress string `json:"serviceSecurityServerAddress,omitempty"`
	RequestSize                  *int64 `json:"requestSize,omitempty"`
	ResponseSize                 *int64 `json:"responseSize,omitempty"`
	RequestMimeSize              *int64 `json:"requestMimeSize,omitempty"`
	RequestAttachmentCount       *int32 `json:"requestAttachmentCount,omitempty"`
	ResponseMimeSize             *int64 `json:"responseMimeSize,omitempty"`
	ResponseAttachmentCount      *int32 `json:"responseAttachmentCount,omitempty"`
	Succeeded                    bool   `json:"succeeded"`
	FaultCode                    string `json:"faultCode,omitempty"`
	FaultString                  string `json:"faultString,omitempty"`
	XRequestID                   string `json:"xRequestId,omitempty"`
	StatusCode                   *int32 `json:"statusCode,omitempty"`
	ServiceType                  string `json:"serviceType,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func testUUID(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, b>>48|0x8000, b&0xffffffffffff)
}

// genRecords makes n realistic records (SOAP and REST, client and producer
// side, some failures with non-ASCII fault strings), deterministically from
// seed. withTs adds monitoringDataTs, as exported records carry it.
func genRecords(n int, seed uint64, withTs bool) []testRecord {
	rng := rand.New(rand.NewPCG(seed, 1))
	subsystems := []string{"population-registry", "tax-portal", "health-info", "vehicle-registry", "business-registry"}
	out := make([]testRecord, n)
	for i := range out {
		r := &out[i]
		if withTs {
			r.MonitoringDataTs = ptr(int64(1760000000 + i/10))
		}
		r.SecurityServerInternalIP = "192.0.2." + fmt.Sprint(10+rng.IntN(2))
		r.SecurityServerType = []string{"Client", "Producer"}[rng.IntN(2)]
		r.ClientXRoadInstance, r.ClientMemberClass = "EE", []string{"GOV", "COM", "NGO"}[rng.IntN(3)]
		r.ClientMemberCode = fmt.Sprintf("%08d", 10000000+rng.IntN(89999999))
		r.ClientSubsystemCode = subsystems[rng.IntN(len(subsystems))]
		r.ServiceXRoadInstance, r.ServiceMemberClass = "EE", "GOV"
		r.ServiceMemberCode = fmt.Sprintf("%08d", 70000001+13*rng.IntN(8))
		r.ServiceSubsystemCode = fmt.Sprintf("provider-%02d", rng.IntN(8))
		r.XRoadVersion = "7.8.0"
		r.ClientSecurityServerAddress = "ss-" + strings.ToLower(r.ClientMemberClass) + "-" + r.ClientMemberCode + ".example.org"
		r.ServiceSecurityServerAddress = "ss-gov-" + r.ServiceMemberCode + ".example.org"
		r.MessageID = testUUID(rng)
		r.XRequestID = testUUID(rng)
		reqIn := int64(1760000000000 + 3*i + rng.IntN(3))
		r.RequestInTs = reqIn
		r.RequestOutTs = ptr(reqIn + 3 + rng.Int64N(25))
		r.ResponseInTs = ptr(*r.RequestOutTs + 20 + rng.Int64N(400))
		r.ResponseOutTs = *r.ResponseInTs + 1 + rng.Int64N(12)
		r.RequestAttachmentCount, r.ResponseAttachmentCount = ptr(int32(0)), ptr(int32(0))
		r.ResponseSize = ptr(200 + rng.Int64N(20000))
		if rng.IntN(5) < 3 {
			r.ServiceType = "WSDL"
			r.ServiceCode = []string{"getPerson", "listVehicles", "findCompany", "checkPermit"}[rng.IntN(4)]
			r.ServiceVersion = "v1"
			r.MessageProtocolVersion = "4.0"
			r.RequestSize = ptr(900 + rng.Int64N(3000))
			r.MessageUserID = fmt.Sprintf("EE3%010d", rng.Int64N(1e10))
			if rng.IntN(30) == 0 {
				r.RequestAttachmentCount = ptr(int32(1))
				r.RequestMimeSize = ptr(*r.RequestSize + 2000 + rng.Int64N(200000))
			}
		} else {
			r.ServiceType = []string{"REST", "OPENAPI3"}[rng.IntN(2)]
			r.ServiceCode = []string{"persons", "vehicles", "documents"}[rng.IntN(3)]
			r.RestMethod = []string{"GET", "GET", "POST", "PUT"}[rng.IntN(4)]
			r.MessageProtocolVersion = "1"
			r.RequestSize = ptr(rng.Int64N(4000))
			if r.SecurityServerType == "Producer" {
				r.RestPath = "/api/v1/" + r.ServiceCode + "/*"
			}
			r.StatusCode = ptr(int32(200))
		}
		r.Succeeded = true
		if rng.IntN(20) == 0 {
			r.Succeeded = false
			r.FaultCode = "server.serverproxy.service_failed.internal_error"
			r.FaultString = "Teenus vastas veaga (päring " + r.MessageID + "): ühendus katkes <timeout> & \"retry\"\n"
			if r.StatusCode != nil {
				r.StatusCode = ptr(int32(500))
			}
		}
	}
	return out
}

func storeBody(tb testing.TB, recs []testRecord) []byte {
	tb.Helper()
	body, err := json.Marshal(struct {
		Records []testRecord `json:"records"`
	}{recs})
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

func TestDecodeStoreGenerated(t *testing.T) {
	recs := genRecords(500, 1, false)
	req, err := DecodeStoreRequest(storeBody(t, recs), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Records) != len(recs) || len(req.Rejected) != 0 {
		t.Fatalf("got %d records, %d rejected", len(req.Records), len(req.Rejected))
	}
	for i := range recs {
		one, err := json.Marshal(recs[i])
		if err != nil {
			t.Fatal(err)
		}
		want, err := DecodeRecord(one, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkRecord(t, fmt.Sprintf("record %d", i), &req.Records[i], &want)
		if got := req.Records[i].Str(FMessageID); got != recs[i].MessageID {
			t.Errorf("record %d: messageId %q, want %q", i, got, recs[i].MessageID)
		}
	}
}

func TestDecodeStoreRequestAllocs(t *testing.T) {
	body := storeBody(t, genRecords(100, 2, false))
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := DecodeStoreRequest(body, DecodeOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	// One string per record, plus the request, the growing records slice
	// and the scratch buffer.
	if allocs > 100+20 {
		t.Errorf("%.0f allocations for 100 records", allocs)
	}
}

func BenchmarkDecodeStoreRequest(b *testing.B) {
	const n = 100
	body := storeBody(b, genRecords(n, 3, false))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := DecodeStoreRequest(body, DecodeOptions{})
		if err != nil || len(req.Records) != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(body))/n, "bytes/record")
}

// TestDecodeKeyOrders: records of one request with their keys in different
// orders decode alike (the decoder predicts each key from the previous
// record's order and must fall back when the order changes).
func TestDecodeKeyOrders(t *testing.T) {
	a := `{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true,"serviceCode":"s","clientXRoadInstance":"EE"}`
	b := `{"clientXRoadInstance":"EE","succeeded":true,"securityServerInternalIp":"1","responseOutTs":2,"serviceCode":"s","requestInTs":1,"securityServerType":"Client"}`
	c := `{"requestInTs":1,"securityServerType":"Client","securityServerInternalIp":"1","responseOutTs":2,"serviceCode":"s","succeeded":true,"clientXRoadInstance":"EE","unknown":5}`
	req, err := DecodeStoreRequest([]byte(`{"records":[`+a+`,`+b+`,`+a+`,`+c+`,`+c+`,`+b+`]}`), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Records) != 6 {
		t.Fatalf("%d records", len(req.Records))
	}
	for i := range req.Records {
		if req.Records[i] != req.Records[0] {
			t.Errorf("record %d differs: %+v vs %+v", i, req.Records[i], req.Records[0])
		}
	}
	if r := req.Records[0]; r.Str(FServiceCode) != "s" || r.Int(FResponseOutTs) != 2 || !r.Bool(FSucceeded) || r.Str(FClientXRoadInstance) != "EE" {
		t.Errorf("decoded %+v", r)
	}
}

// TestStoreRequestRelease: a released request's slice serves the next
// request, and the strings taken from the first stay as they were.
func TestStoreRequestRelease(t *testing.T) {
	first, err := DecodeStoreRequest([]byte(`{"records":[{`+minimalRecord+`,"messageId":"one","serviceCode":"a"},{`+minimalRecord+`,"messageId":"two"}]}`), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept := first.Records[0].Str(FMessageID)
	first.Release()
	if first.Records != nil {
		t.Fatal("released request still has its records")
	}
	// A sync.Pool may drop what it is given (under the race detector, a
	// quarter of it): a reuse is looked for between consecutive requests.
	reused := false
	var prev *Record
	for range 20 {
		second, err := DecodeStoreRequest([]byte(`{"records":[{`+minimalRecord+`,"messageId":"three"}]}`), DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(second.Records) != 1 || second.Records[0].Str(FMessageID) != "three" || second.Records[0].Has.Has(FServiceCode) {
			t.Fatalf("second request decoded as %+v", second.Records)
		}
		reused = reused || &second.Records[0] == prev
		prev = &second.Records[0]
		second.Release()
	}
	if kept != "one" {
		t.Errorf("a string of a released record changed to %q", kept)
	}
	if !reused {
		t.Error("the released slice was never reused")
	}
}
