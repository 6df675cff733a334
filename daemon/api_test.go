package daemon

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

// apiGet fetches an admin API path and decodes the JSON answer into v.
func (td *testDaemon) apiGet(path string, v any) int {
	td.t.Helper()
	status, hdr, b := doRequest(td.t, "GET", td.adminURL+path, "", nil)
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		td.t.Fatalf("GET %s: content type %q", path, ct)
	}
	if v != nil {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(v); err != nil {
			td.t.Fatalf("GET %s: %v\n%s", path, err, b)
		}
	}
	return status
}

type apiRecords struct {
	Records         []json.RawMessage `json:"records"`
	NextRecordsFrom *int64            `json:"nextRecordsFrom"`
}

// refRec is a record as the reference model of §4.2 sees it.
type refRec struct {
	ts               int64
	id               string
	client, provider string
}

// refPage is opmon-protocol.md §4.1–4.2 written out plainly: the records
// and nextRecordsFrom of one answer.
func refPage(all []refRec, from, to, avail int64, max int, match func(refRec) bool) ([]string, *int64) {
	var next *int64
	if to >= avail {
		to, next = avail-1, &avail
	}
	var rows []refRec
	for _, r := range all { // all is in insertion order
		if r.ts >= from && r.ts <= to && match(r) {
			rows = append(rows, r)
		}
	}
	slices.SortStableFunc(rows, func(a, b refRec) int { return int(a.ts - b.ts) })
	if len(rows) >= max {
		last := rows[max-1].ts
		cut := 0
		for cut < len(rows) && rows[cut].ts <= last {
			cut++
		}
		if cut < len(rows) {
			n := last + 1
			next = &n
		}
		rows = rows[:cut]
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.id)
	}
	return ids, next
}

func rawIDs(t *testing.T, recs []json.RawMessage) []string {
	t.Helper()
	var ids []string
	for _, r := range recs {
		var m struct{ MessageID string }
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	return ids
}

func dropIP(t *testing.T, recs []json.RawMessage) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range recs {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "securityServerInternalIp")
		out = append(out, m)
	}
	return out
}

// TestAPIRecordsWorkedExample: the examples of opmon-protocol.md §4.2.
func TestAPIRecordsWorkedExample(t *testing.T) {
	clock := newTestClock(980)
	td := queryDaemon(t, clock, nil)
	for i := range 8 {
		td.storeAt(clock, 980, jrec("messageId", fmt.Sprint("a", i)))
	}
	for i := range 17 {
		td.storeAt(clock, 981, jrec("messageId", fmt.Sprint("b", i)))
	}
	clock.Set(2000)
	var a apiRecords
	td.apiGet("/api/v1/records?from=980&to=990&limit=10", &a)
	if len(a.Records) != 25 || a.NextRecordsFrom != nil {
		t.Errorf("max 10, [980,990]: %d records, next %s; want 25, none", len(a.Records), nextStr(a.NextRecordsFrom))
	}
	td.storeAt(clock, 985, jrec("messageId", "c"))
	clock.Set(2000)
	a = apiRecords{}
	td.apiGet("/api/v1/records?from=980&to=990&limit=10", &a)
	if len(a.Records) != 25 || nextStr(a.NextRecordsFrom) != "982" {
		t.Errorf("with t=985: %d records, next %s; want 25, 982", len(a.Records), nextStr(a.NextRecordsFrom))
	}
	a = apiRecords{}
	td.apiGet("/api/v1/records?from=960&to=990&limit=8", &a)
	if ids := rawIDs(t, a.Records); strings.Join(ids, ",") != "a0,a1,a2,a3,a4,a5,a6,a7" || nextStr(a.NextRecordsFrom) != "981" {
		t.Errorf("max 8, [960,990]: %v, next %s; want the 8 of t=980, 981", ids, nextStr(a.NextRecordsFrom))
	}
}

// TestAPIRecordsPaging: every page of many queries equals the reference
// model, and, at the configured limit, the SOAP answer to the same query.
func TestAPIRecordsPaging(t *testing.T) {
	const soapMax = 3
	clock := newTestClock(1000)
	td := queryDaemon(t, clock, func(c *Config) { c.OpMonitor.MaxRecordsInPayload = soapMax })
	parties := []string{"EE/COM/1/A", "EE/COM/2", "EE/GOV/3/P", "EE/COM/2/B"}
	var all []refRec
	n := 0
	for ts := int64(1000); ts <= 1030; ts++ {
		for req := range (ts*7)%4 + int64(ts%5/4) {
			var batch []map[string]any
			for range (ts+req)%3 + 1 {
				r := refRec{ts: ts, id: fmt.Sprint("m", n), client: parties[n%3], provider: parties[(n/3+1)%4]}
				if r.client == r.provider {
					r.provider = parties[3]
				}
				n++
				all = append(all, r)
				m := jrec("messageId", r.id)
				withParty(m, "client", r.client)
				withParty(m, "service", r.provider)
				batch = append(batch, m)
			}
			td.storeAt(clock, ts, batch...)
		}
	}
	// avail = 1025: windows reaching past it are clipped.
	const now = 1085
	clock.Set(now)
	avail := int64(now - 60)

	type filter struct{ client, provider string }
	filters := []filter{{}, {client: "EE/COM/1/A"}, {client: "EE/COM/2"}, {provider: "EE/GOV/3/P"},
		{provider: "EE/COM/1/A"}, {client: "EE/COM/1/A", provider: "EE/GOV/3/P"}, {client: "EE/XX/9"}}
	windows := [][2]int64{{1000, 1030}, {1005, 1012}, {1010, 1010}, {0, 5000}, {1024, 1024}, {990, 999}}
	pages := 0
	for _, f := range filters {
		match := func(r refRec) bool {
			if f.client != "" && r.client != f.client && r.provider != f.client {
				return false
			}
			return f.provider == "" || r.provider == f.provider
		}
		for _, limit := range []int{0, 1, 2, 7, 1000} { // 0: the default
			for _, w := range windows {
				from, to := w[0], w[1]
				for page := 0; ; page++ {
					q := url.Values{"from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
					max := soapMax
					if limit > 0 {
						q.Set("limit", fmt.Sprint(limit))
						max = limit
					}
					if f.client != "" {
						q.Set("client", f.client)
					}
					if f.provider != "" {
						q.Set("service-provider", f.provider)
					}
					name := fmt.Sprintf("%s page %d", q.Encode(), page)
					var a apiRecords
					if st := td.apiGet("/api/v1/records?"+q.Encode(), &a); st != 200 {
						t.Fatalf("%s: status %d", name, st)
					}
					pages++
					got := rawIDs(t, a.Records)
					wantIDs, wantNext := refPage(all, from, to, avail, max, match)
					if !slices.Equal(got, wantIDs) || nextStr(a.NextRecordsFrom) != nextStr(wantNext) {
						t.Errorf("%s:\n got %v next %s\nwant %v next %s", name, got, nextStr(a.NextRecordsFrom), wantIDs, nextStr(wantNext))
					}
					if max == soapMax {
						// The same query over SOAP: the central monitoring client sees
						// everything; a client filter is what that client itself sees.
						as, drop := monitoringID, false
						if f.client != "" {
							as, drop = f.client, true
						}
						s := td.queryOp(as, "", from, to, f.provider)
						if s.fault != nil {
							t.Fatalf("%s: SOAP fault %v", name, s.fault)
						}
						jsonRecs := dropIP(t, a.Records)
						if !drop {
							jsonRecs = nil
							for _, r := range a.Records {
								var m map[string]any
								_ = json.Unmarshal(r, &m)
								jsonRecs = append(jsonRecs, m)
							}
						}
						if !reflect.DeepEqual(jsonRecs, s.records) || nextStr(a.NextRecordsFrom) != nextStr(s.next) {
							t.Errorf("%s: JSON differs from SOAP:\njson %v next %s\nsoap %v next %s", name,
								jsonRecs, nextStr(a.NextRecordsFrom), s.records, nextStr(s.next))
						}
					}
					if a.NextRecordsFrom == nil || *a.NextRecordsFrom >= avail {
						break
					}
					from = *a.NextRecordsFrom
				}
			}
		}
	}
	t.Logf("%d pages checked", pages)

	// fields= selects output fields as outputSpec does.
	var a apiRecords
	td.apiGet("/api/v1/records?from=1000&to=1001&fields=messageId,securityServerInternalIp", &a)
	if len(a.Records) == 0 || string(a.Records[0]) != `{"securityServerInternalIp":"10.0.0.1","messageId":"m0"}` {
		t.Errorf("fields: %s", a.Records)
	}
}

// TestAPIBadParameters: 400 with {"error":...} naming the parameter.
func TestAPIBadParameters(t *testing.T) {
	clock := newTestClock(10000)
	td := queryDaemon(t, clock, nil)
	cases := []struct{ path, param string }{
		{"/api/v1/records?to=5", "from"},
		{"/api/v1/records?from=5", "to"},
		{"/api/v1/records?from=x&to=5", "from"},
		{"/api/v1/records?from=1&to=5.5", "to"},
		{"/api/v1/records?from=-1&to=5", "from"},
		{"/api/v1/records?from=9940&to=9999", "from"}, // at now − offset
		{"/api/v1/records?from=9999&to=99999", "from"},
		{"/api/v1/records?from=5&to=4", "to"},
		{"/api/v1/records?from=1&to=5&limit=0", "limit"},
		{"/api/v1/records?from=1&to=5&limit=-3", "limit"},
		{"/api/v1/records?from=1&to=5&limit=many", "limit"},
		{"/api/v1/records?from=1&to=5&fields=messageId,id", "fields"},
		{"/api/v1/records?from=1&to=5&fields=MessageId", "fields"},
		{"/api/v1/records?from=1&to=5&client=EE/GOV", "client"},
		{"/api/v1/records?from=1&to=5&service-provider=EE//1", "service-provider"},
		{"/api/v1/health?client=EE", "client"},
		{"/api/v1/intervals?to=5&interval=1", "from"},
		{"/api/v1/intervals?from=5&interval=1", "to"},
		{"/api/v1/intervals?from=5&to=6", "interval"},
		{"/api/v1/intervals?from=5&to=6&interval=0", "interval"},
		{"/api/v1/intervals?from=5&to=6&interval=1.5", "interval"},
		{"/api/v1/intervals?from=5&to=4&interval=1", "to"},
		{"/api/v1/intervals?from=-5&to=4&interval=1", "from"},
		{"/api/v1/intervals?from=0&to=99999999999&interval=1", "interval"},
		{"/api/v1/intervals?from=5&to=6&interval=1&type=client", "type"},
		{"/api/v1/intervals?from=5&to=6&interval=1&member=EE/GOV", "member"},
		{"/api/v1/intervals?from=5&to=6&interval=1&service=EE/GOV/1", "service"},
		{"/api/v1/quarantine?from=x", "from"},
		{"/api/v1/quarantine?from=5&to=4", "to"},
	}
	for _, c := range cases {
		var e struct{ Error string }
		if st := td.apiGet(c.path, &e); st != 400 || !strings.HasPrefix(e.Error, c.param+": ") {
			t.Errorf("GET %s: status %d error %q; want 400 naming %s", c.path, st, e.Error, c.param)
		}
	}
	// The same parameters, good, are answered.
	for _, p := range []string{"/api/v1/records?from=1&to=5", "/api/v1/health?client=EE/GOV/1",
		"/api/v1/intervals?from=5&to=6&interval=1&type=Client&member=EE/GOV/1&service=EE/GOV/1//svc", "/api/v1/quarantine"} {
		if st := td.apiGet(p, nil); st != 200 {
			t.Errorf("GET %s: status %d", p, st)
		}
	}
}

// xmlToMap turns the health answer's response element into the JSON shape
// by element names alone: elements with children become objects,
// servicesEvents a list, text elements their text.
func xmlToMap(t *testing.T, data []byte) map[string]any {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	type frame struct {
		name string
		obj  map[string]any
		list []any
		text strings.Builder
		kids bool
	}
	var stack []*frame
	var result map[string]any
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if len(stack) > 0 {
				stack[len(stack)-1].kids = true
			}
			if tk.Name.Local == "getSecurityServerHealthDataResponse" || len(stack) > 0 {
				stack = append(stack, &frame{name: tk.Name.Local, obj: map[string]any{}})
			}
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(tk)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				continue
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			var v any = f.obj
			switch {
			case f.name == "servicesEvents":
				v = append([]any{}, f.list...)
			case !f.kids:
				v = strings.TrimSpace(f.text.String())
			}
			if len(stack) == 0 {
				result = f.obj
				continue
			}
			parent := stack[len(stack)-1]
			if parent.name == "servicesEvents" {
				parent.list = append(parent.list, v)
			} else {
				parent.obj[f.name] = v
			}
		}
	}
	return result
}

// stringLeaves turns JSON numbers into their text, as XML has them.
func stringLeaves(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = stringLeaves(e)
		}
	case []any:
		for i, e := range x {
			x[i] = stringLeaves(e)
		}
	case json.Number:
		return x.String()
	}
	return v
}

// TestAPIHealth: /api/v1/health is field by field the SOAP answer.
func TestAPIHealth(t *testing.T) {
	clock := newTestClock(1760004000)
	td := queryDaemon(t, clock, nil)
	var recs []map[string]any
	for i := range 7 {
		in := int64(1760004000000 + i*1000)
		r := jrec("securityServerType", "Producer", "requestInTs", in, "responseOutTs", in+int64(10+i*i),
			"succeeded", i%3 != 0, "requestSize", 100+i, "serviceCode", []string{"a", "b"}[i%2], "serviceType", "WSDL")
		if i%2 == 1 {
			r["serviceVersion"] = "v1"
			r["responseSize"] = 400 * i
		}
		withParty(r, "service", []string{"EE/COM/10000001/CRM", "EE/GOV/70000001"}[i%2])
		recs = append(recs, r)
	}
	td.store(recs...)
	clock.Advance(3 * time.Second)
	for _, filter := range []string{"", "EE/COM/10000001/CRM", "EE/GOV/70000001", "EE/GOV/9"} {
		path := "/api/v1/health"
		o := schema.QuerySpec{As: clientOf(ownerID), Health: true}
		if filter != "" {
			path += "?client=" + filter
			o.Client = clientOf(filter)
		}
		var got map[string]any
		if st := td.apiGet(path, &got); st != 200 {
			t.Fatalf("%s: status %d", path, st)
		}
		_, _, b := td.post("/query_data", "text/xml; charset=UTF-8", schema.BuildQueryRequest(o, 0))
		want := xmlToMap(t, b)
		if g := stringLeaves(got); !reflect.DeepEqual(g, any(want)) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(want)
			t.Errorf("%s:\n json %s\n soap %s", path, gj, wj)
		}
		if filter == "" && len(got["servicesEvents"].([]any)) != 2 {
			t.Errorf("services: %v", got["servicesEvents"])
		}
	}
}
