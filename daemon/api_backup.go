package daemon

import (
	"net/http"
	"time"
)

// handleBackup serves GET /api/v1/backup: a consistent copy of the database
// from one bbolt read transaction, which does not hold up commits, so the
// daemon keeps storing while the copy streams.
func (d *Daemon) handleBackup(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="opmonitor.db"`)
	n, err := d.db.Backup(r.Context(), w)
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Error().Err(err).Int64("bytes", n).Msg("backup failed")
		}
		if n == 0 {
			w.Header().Set("Content-Type", "application/json")
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		// The copy is cut: end the connection so that the client cannot
		// take it for a whole one.
		panic(http.ErrAbortHandler)
	}
	took := time.Since(start)
	d.log.Info().Int64("bytes", n).Dur("took", took).
		Float64("MBps", float64(n)/1e6/max(took.Seconds(), 1e-9)).Msg("backup sent")
}
