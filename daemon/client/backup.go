package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/storage"
)

// Backup is `opmond backup --out FILE`: the running daemon's database,
// copied consistently while it serves, written beside path, checked,
// fsync'd and renamed over it, so path is never a partial copy.
func Backup(cfg *daemon.Config, path string, stdout io.Writer) error {
	base, err := AdminURL(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := BackupTo(context.Background(), http.DefaultClient, base, path)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: %d bytes in %.1f s\n", path, n, time.Since(start).Seconds())
	return err
}

// BackupTo fetches GET /api/v1/backup from the admin listener at base and
// writes it atomically to path.
func BackupTo(ctx context.Context, hc *http.Client, base, path string) (int64, error) {
	resp, err := adminDo(ctx, hc, http.MethodGet, base+"/api/v1/backup", nil)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		// The daemon cuts the connection when its copy fails.
		return n, fmt.Errorf("backup: copy cut after %d bytes: %w", n, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if err := storage.VerifyFile(tmp); err != nil {
		return n, fmt.Errorf("backup: the copy received does not open: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	done = true
	// The rename is durable once the folder is synced.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return n, fmt.Errorf("backup: sync %s: %w", dir, err)
		}
	}
	return n, nil
}
