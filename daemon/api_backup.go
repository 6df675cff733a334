package daemon

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// handleBackup serves GET /api/v1/backup: a consistent copy of the database
// from one bbolt read transaction, which does not hold up commits, so the
// daemon keeps storing while the copy is made.
//
// The copy is first spooled at disk speed to an unlinked file beside the
// database, then sent from there: a read transaction pins every page freed
// while it is open, and bbolt rewrites its growing freelist at each commit,
// so a copy held open at the pace of a slow client made stores slower
// (median 3 → 21 ms) and the file grow (78 → 234 MB over a 27 s copy). When
// no spool file can be had, the copy is streamed directly.
func (d *Daemon) handleBackup(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="opmonitor.db"`)
	spool, err := os.CreateTemp(filepath.Dir(d.db.Path()), ".backup-*")
	if err == nil {
		// Unlinked at once: nothing is left behind, whatever happens.
		_ = os.Remove(spool.Name())
		defer spool.Close()
		n, err := d.db.Backup(r.Context(), spool)
		if err == nil {
			_, err = spool.Seek(0, io.SeekStart)
		}
		if err != nil {
			d.log.Error().Err(err).Int64("bytes", n).Msg("backup failed")
			w.Header().Set("Content-Type", "application/json")
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		snap := time.Since(start)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		if _, err := io.Copy(w, spool); err != nil {
			if r.Context().Err() == nil {
				d.log.Error().Err(err).Msg("backup: sending the copy failed")
			}
			panic(http.ErrAbortHandler)
		}
		d.backupDone(n, snap, start)
		return
	}
	d.log.Warn().Err(err).Msg("backup: no spool file beside the database; streaming the copy directly")
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
	d.backupDone(n, time.Since(start), start)
}

func (d *Daemon) backupDone(n int64, snapshot time.Duration, start time.Time) {
	d.log.Info().Int64("bytes", n).Dur("snapshot", snapshot).Dur("took", time.Since(start)).
		Float64("snapshotMBps", float64(n)/1e6/max(snapshot.Seconds(), 1e-9)).Msg("backup sent")
}
