package daemon

import (
	"context"
	"fmt"
	"time"
)

// runPurge deletes records older than keep-records-for-days once at start and
// then on clean-interval; runs never overlap because one goroutine does them.
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
	d.metrics.purgeRuns.Inc()
	d.metrics.recordsPurged.Add(float64(recs))
	if err != nil {
		if ctx.Err() == nil {
			d.backgroundError(taskPurge, fmt.Errorf("purge records before %d: %w", cutoff, err))
		}
		return
	}
	d.log.Info().Int64("cutoff", cutoff).Int("records", recs).Int("quarantined", quarantined).
		Dur("took_ms", time.Since(start)).Msg("purged old records")
}
