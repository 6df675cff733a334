package storage

import (
	"context"
	"testing"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
)

// BenchmarkIntervalsRepeated asks for a 24-hour window holding all of the
// 1,000,000-record database (its requestInTs span 50 minutes) in 1- and
// 60-minute steps, unfiltered and for a client of middle popularity: a
// first call (memo empty), a repeated call (memo full) and a repeated call
// after an import of 100 records into the busiest minute, as a store into
// the current minute would (the import is not timed, and is purged again).
func BenchmarkIntervalsRepeated(b *testing.B) {
	db := openQueryDB(b)
	mid := schematest.NewDataset().Clients[15]
	const hour = 3600_000
	window := IntervalQuery{FromMs: benchBaseMs - 23*hour, ToMs: benchBaseMs + hour - 1}
	busy := benchBaseMs + int64(benchQueryRecords)*3/2 // the middle minute
	extra := schematest.Records(100, 7, busy)
	for i := range extra {
		extra[i].SetInt(schema.FMonitoringDataTs, 1) // before every block of the database
	}
	ctx := context.Background()
	for _, step := range []struct {
		name string
		ms   int64
	}{{"1min", 60_000}, {"60min", 60 * 60_000}} {
		for _, filter := range []struct {
			name   string
			member *schema.ClientID
		}{{"all", nil}, {"member", &mid}} {
			q := window
			q.StepMs, q.Member = step.ms, filter.member
			for _, mode := range []string{"first", "repeated", "afterstore"} {
				b.Run(step.name+"/"+filter.name+"/"+mode, func(b *testing.B) {
					if _, err := db.Intervals(ctx, q); err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						switch mode {
						case "first":
							b.StopTimer()
							resetIntervalMemo(db)
							b.StartTimer()
						case "afterstore":
							b.StopTimer()
							if err := db.Import(ctx, extra); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
						if _, err := db.Intervals(ctx, q); err != nil {
							b.Fatal(err)
						}
						if mode == "afterstore" {
							b.StopTimer()
							if _, _, err := db.Purge(ctx, 2); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
					}
					b.StopTimer()
					b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op")
				})
			}
		}
	}
}
