package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// runPurge deletes records older than keep-records-for-days once at start and
// then on clean-interval; runs never overlap because one goroutine does them.
// A failed run is retried on the schedule, like any other.
func (d *Daemon) runPurge(ctx context.Context) {
	sched := d.cfg.CleanSchedule()
	for {
		d.purgeOnce(ctx)
		// The schedule follows the wall clock; d.now only sets the cutoff.
		next := sched.Next(time.Now())
		if next.IsZero() {
			d.log.Warn().Str("clean-interval", sched.String()).Msg("clean-interval never fires again; purge stopped")
			return
		}
		t := time.NewTimer(max(time.Until(next), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (d *Daemon) purgeOnce(ctx context.Context) {
	start := time.Now()
	cutoff := d.now().Add(-time.Duration(d.cfg.OpMonitor.KeepRecordsForDays) * 24 * time.Hour).Unix()
	recs, quarantined, err := d.db.Purge(ctx, cutoff)
	if ctx.Err() != nil {
		// Shutdown cut the run short; what it deleted still counts.
		d.metrics.purge.recordsPurged.Add(float64(recs))
		d.metrics.purge.quarantinePurged.Add(float64(quarantined))
		return
	}
	d.metrics.purge.observe(start, recs, quarantined, err)
	if err != nil {
		d.backgroundError(taskPurge, fmt.Errorf("purge records before %d (%d deleted): %w", cutoff, recs, err))
		return
	}
	d.log.Info().Int64("cutoff", cutoff).Int("records", recs).Int("quarantined", quarantined).
		Dur("took_ms", time.Since(start)).Msg("purged old records")
}

// purgeMetrics describe the retention purge.
type purgeMetrics struct {
	runs             prometheus.Counter
	recordsPurged    prometheus.Counter
	quarantinePurged prometheus.Counter
	duration         prometheus.Histogram
	lastRun          prometheus.Gauge
	lastSuccess      prometheus.Gauge
}

func newPurgeMetrics(reg prometheus.Registerer) *purgeMetrics {
	m := &purgeMetrics{
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_purge_runs_total", Help: "Retention purge runs.",
		}),
		recordsPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_records_purged_total", Help: "Records deleted by the retention purge.",
		}),
		quarantinePurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_quarantine_purged_total", Help: "Quarantined records deleted by the retention purge.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opmond_purge_duration_seconds", Help: "Time a retention purge run took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opmond_purge_last_run_timestamp_seconds", Help: "When the last retention purge run ended.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opmond_purge_last_success_timestamp_seconds", Help: "When the last successful retention purge run ended.",
		}),
	}
	reg.MustRegister(m.runs, m.recordsPurged, m.quarantinePurged, m.duration, m.lastRun, m.lastSuccess)
	return m
}

// observe records a finished run that started at start.
func (m *purgeMetrics) observe(start time.Time, recs, quarantined int, err error) {
	end := time.Now()
	m.runs.Inc()
	m.recordsPurged.Add(float64(recs))
	m.quarantinePurged.Add(float64(quarantined))
	m.duration.Observe(end.Sub(start).Seconds())
	m.lastRun.Set(float64(end.UnixNano()) / 1e9)
	if err == nil {
		m.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
}
