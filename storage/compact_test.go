package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCompact fills a database, purges most of it and compacts it in place
// and to a new file: the copies are smaller, hold every record and index
// entry (checked by checkFile), and keep the block sequence, so that later
// stores do not reuse a key.
func TestCompact(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	fillSeconds(t, db, n, 100, 1000)
	if _, _, err := db.Purge(context.Background(), 1000+n/100*9/10); err != nil {
		t.Fatal(err)
	}
	want, _ := db.Stats()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)

	out := filepath.Join(dir, "copy.db")
	before, after, err := Compact(path, out)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != before {
		t.Errorf("--out changed the source: %d bytes, was %d", fi.Size(), before)
	}
	if _, _, err := Compact(path, out); err == nil {
		t.Error("compacting onto an existing file succeeded")
	}
	before2, after2, err := Compact(path, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compacted %d bytes to %d bytes (to a new file: %d)", before2, after2, after)
	if before2 != before || after2 >= before/2 {
		t.Errorf("in place: %d bytes to %d, to a new file: %d to %d", before2, after2, before, after)
	}
	if fi, _ := os.Stat(path); fi.Size() != after2 {
		t.Errorf("file has %d bytes, Compact said %d", fi.Size(), after2)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*compact*")); len(m) != 0 {
		t.Errorf("left behind: %v", m)
	}
	for _, p := range []string{path, out} {
		checkFile(t, p)
		db, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := db.Stats(); st != want {
			t.Errorf("%s: stats %+v, want %+v", p, st, want)
		}
		var seq uint64
		_ = db.bolt.View(func(tx *bolt.Tx) error {
			seq = tx.Bucket(bucketBlocks).Sequence()
			return nil
		})
		if seq < n/100 {
			t.Errorf("%s: block sequence %d after %d blocks", p, seq, n/100)
		}
		// The truncated file grows again for new records.
		fillSeconds(t, db, 5000, 100, 1000)
		if st, _ := db.Stats(); st.Records != want.Records+5000 {
			t.Errorf("%s: stats %+v after adding 5000 records to %+v", p, st, want)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p)
	}
}

func TestCompactRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Compact(path, ""); !errors.Is(err, ErrInUse) {
		t.Errorf("open database: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Compact(filepath.Join(dir, "missing.db"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("Compact created the missing database")
	}
	other := filepath.Join(dir, "other.db")
	bdb, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
	bdb.Close()
	if _, _, err := Compact(other, ""); err == nil {
		t.Error("compacted a database that is not opmond's")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*compact*")); len(m) != 0 {
		t.Errorf("left behind: %v", m)
	}
}

// BenchmarkCompact fills 1,000,000 records (OPMOND_PURGE_RECORDS changes
// it), purges six sevenths of them (retention lowered from 7 days to 1) and
// compacts the file, reporting the sizes and the ratio.
func BenchmarkCompact(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("OPMOND_PURGE_RECORDS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "opmon.db")
		db, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		end := fillSeconds(b, db, n, 100, 1000)
		if _, _, err := db.Purge(context.Background(), end-(end-1000)/7); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		before, after, err := Compact(path, "")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "compact-s")
		b.ReportMetric(float64(before)/1e6, "before-MB")
		b.ReportMetric(float64(after)/1e6, "after-MB")
		b.ReportMetric(float64(before)/float64(after), "ratio")
	}
}

// TestCompactKeepsOwnerAndMode: run by root on the file of a daemon that
// runs as its own user, compact leaves a file that user can open, where
// the database's path leads.
func TestCompactKeepsOwnerAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opmon.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	// Compacted through a link, the link stays a link.
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 65534, 65534 // nobody, as a daemon's own user
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Compact(link, ""); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("compacted file: mode %v owner %d:%d, want 0640 %d:%d", fi.Mode().Perm(), st.Uid, st.Gid, uid, gid)
	}
}
