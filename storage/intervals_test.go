package storage

import (
	"context"
	"reflect"
	"testing"

	"github.com/opmond/opmond/schema"
)

func TestIntervals(t *testing.T) {
	clk := &testClock{t: 10}
	db := openTestDB(t, clk)
	const m = 60000
	base := int64(1_700_000_000_000 / (30 * m) * (30 * m)) // aligned to every step used
	rec := func(id, typ, client, provider, code, version string, reqIn int64, ok bool) schema.Record {
		r := mkRec(t, id, client, provider, reqIn, ok)
		r.SetStr(schema.FSecurityServerType, typ)
		if code != "" {
			r.SetStr(schema.FServiceCode, code)
		}
		if version != "" {
			r.SetStr(schema.FServiceVersion, version)
		}
		return r
	}
	store(t, db,
		rec("1", "Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "v1", base+1000, true),
		rec("2", "Producer", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "v2", base+2*m, false),
		rec("3", "Client", "EE/GOV/1", "EE/GOV/2", "getX", "", base+2*m+59999, true),
		rec("4", "Producer", "EE/GOV/3/z", "EE/GOV/1/app", "getY", "", base+5*m, true),
	)
	clk.Set(11) // a later block with an earlier requestInTs
	store(t, db,
		rec("5", "Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "", base-1, true),
		rec("6", "Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "", base+10*m, false),
	)
	id := func(s string) *schema.ClientID { x := mustID(t, s); return &x }
	svc := func(s string) *schema.ServiceID {
		x, err := schema.ParseServiceID(s)
		if err != nil {
			t.Fatal(err)
		}
		return &x
	}
	type iv = Interval
	cases := []struct {
		name string
		q    IntervalQuery
		want []Interval
	}{
		{"all, minutes", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: m}, []iv{
			{base, 1, 0}, {base + m, 0, 0}, {base + 2*m, 1, 1}, {base + 3*m, 0, 0}, {base + 4*m, 0, 0}, {base + 5*m, 1, 0}}},
		{"unaligned bounds", IntervalQuery{FromMs: base + 30000, ToMs: base + 2*m + 1, StepMs: m}, []iv{
			{base, 1, 0}, {base + m, 0, 0}, {base + 2*m, 1, 1}}},
		{"wide step", IntervalQuery{FromMs: base - 1, ToMs: base + 10*m, StepMs: 10 * m}, []iv{
			{base - 10*m, 1, 0}, {base, 3, 1}, {base + 10*m, 0, 1}}},
		{"client type", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Type: "Client"}, []iv{
			{base, 2, 0}, {base + 3*m, 0, 0}}},
		{"producer type", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Type: "Producer"}, []iv{
			{base, 0, 1}, {base + 3*m, 1, 0}}},
		{"member subsystem", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Member: id("EE/GOV/1/app")}, []iv{
			{base, 1, 1}, {base + 3*m, 1, 0}}},
		{"member", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Member: id("EE/GOV/1")}, []iv{
			{base, 1, 0}, {base + 3*m, 0, 0}}},
		{"service", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Service: svc("EE/GOV/2/svc/getX")}, []iv{
			{base, 1, 1}, {base + 3*m, 0, 0}}},
		{"service version", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Service: svc("EE/GOV/2/svc/getX/v2")}, []iv{
			{base, 0, 1}, {base + 3*m, 0, 0}}},
		{"member-level provider", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Service: svc("EE/GOV/2//getX")}, []iv{
			{base, 1, 0}, {base + 3*m, 0, 0}}},
		{"other service code", IntervalQuery{FromMs: base, ToMs: base + 5*m, StepMs: 3 * m, Service: svc("EE/GOV/2/svc/getY")}, []iv{
			{base, 0, 0}, {base + 3*m, 0, 0}}},
		{"before epoch", IntervalQuery{FromMs: -3 * m, ToMs: -1, StepMs: 2 * m}, []iv{
			{-4 * m, 0, 0}, {-2 * m, 0, 0}}},
		{"one bucket", IntervalQuery{FromMs: base + 10*m, ToMs: base + 10*m, StepMs: 1}, []iv{{base + 10*m, 0, 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Intervals(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
	for _, q := range []IntervalQuery{
		{FromMs: 0, ToMs: 1, StepMs: 0},
		{FromMs: 2, ToMs: 1, StepMs: 1},
		{FromMs: 0, ToMs: 1 << 40, StepMs: 1},
		{FromMs: 0, ToMs: 1, StepMs: 1, Type: "client"},
	} {
		if _, err := db.Intervals(context.Background(), q); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
}

func TestIntervalsNegativeRequestIn(t *testing.T) {
	db := openTestDB(t, &testClock{t: 1})
	store(t, db, mkRec(t, "a", "", "", -90000, true), mkRec(t, "b", "", "", 30000, false))
	got, err := db.Intervals(context.Background(), IntervalQuery{FromMs: -120000, ToMs: 59999, StepMs: 60000})
	if err != nil {
		t.Fatal(err)
	}
	want := []Interval{{-120000, 1, 0}, {-60000, 0, 0}, {0, 0, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
}
