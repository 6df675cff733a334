package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInUse is returned by Compact when another process has the database open.
var ErrInUse = errors.New("database is in use")

// compactTxSize bounds the data copied per transaction of Compact, and with
// it the memory the copy needs.
const compactTxSize = 4 << 20

// Compact rewrites the database file at src into a new file that holds only
// its live data (a purge frees pages for reuse but never shrinks the file)
// and returns the sizes before and after. The new file is written beside
// its destination, checked with bbolt's consistency check, fsync'd and
// renamed into place, with its folder fsync'd: to dst, which must not exist,
// or over src when dst is "". src stays locked throughout, so no daemon can
// write to it meanwhile; a database open elsewhere is refused with ErrInUse.
func Compact(src, dst string) (before, after int64, err error) {
	fi, err := os.Stat(src)
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	before = fi.Size()
	// In place means over the file itself, not over a link to it.
	final, err := filepath.EvalSymlinks(src)
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	if dst != "" {
		if _, err := os.Lstat(dst); err == nil {
			return 0, 0, fmt.Errorf("compact: %s exists; name a new file", dst)
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, 0, fmt.Errorf("compact: %w", err)
		}
		final = dst
	}

	// Not read-only: bbolt's exclusive lock keeps a daemon from opening
	// the file while it is copied and replaced.
	sdb, err := bolt.Open(src, 0o600, &bolt.Options{Timeout: 200 * time.Millisecond, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return 0, 0, fmt.Errorf("compact %s: %w (stop opmond first)", src, ErrInUse)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", src, err)
	}
	defer sdb.Close()
	if err := sdb.View(checkFormat); err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", src, err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".compact-*")
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	tmpPath := tmp.Name()
	defer func() {
		if err != nil {
			os.Remove(tmpPath)
		}
	}()
	err = sameOwnerAndMode(tmp, fi)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	after, err = compactInto(tmpPath, sdb)
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", src, err)
	}
	if err := os.Rename(tmpPath, final); err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	return before, after, nil
}

// compactInto copies sdb into the empty file at path, checks and syncs it
// and returns its size.
func compactInto(path string, sdb *bolt.DB) (int64, error) {
	// Commits need not be durable one by one: one sync at the end does.
	ddb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType, PageSize: pageSize})
	if err != nil {
		return 0, err
	}
	var used int64
	err = bolt.Compact(ddb, sdb, compactTxSize)
	if err == nil {
		err = ddb.View(func(tx *bolt.Tx) error {
			used = tx.Size()
			var errs []error
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		})
	}
	if cerr := ddb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	// bbolt grows a file ahead of its pages (by doubling, then by 16 MiB);
	// the copy needs only its pages, and bbolt grows it again before
	// writing beyond them.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return 0, err
	} else if fi.Size() > used {
		if err := f.Truncate(used); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), f.Close()
}

// sameOwnerAndMode gives f the owner and permissions of the database fi:
// compact is run as root by operators while the daemon runs as its own
// user, which must still be able to open the file.
func sameOwnerAndMode(f *os.File, fi os.FileInfo) error {
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give the compacted file the database's owner: %w", err)
	}
	return nil
}

// checkFormat accepts only an opmond database this version reads.
func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errors.New("not an opmond database (no meta bucket)")
	}
	if f := string(meta.Get(metaFormat)); f != formatString() {
		return fmt.Errorf("database format %q is not supported (this opmond reads %q)", f, formatString())
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
