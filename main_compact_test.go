package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/internal/testbin"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/schema/schematest"
	"github.com/opmond/opmond/storage"
)

// TestCompactBinary runs the real binary: compact refuses the database of
// a running daemon; once the daemon is stopped it shrinks the file left by
// the start-up purge, and every remaining record is there in a file that
// passes bbolt's check.
func TestCompactBinary(t *testing.T) {
	bin := testbin.Path(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "data", "op.db")
	cfg, port := loopbackConfig(t, dir, fmt.Sprintf("database = %q\nkeep-records-for-days = 7\n", dbPath))
	// The admin listener, to see the start-up purge end: it runs in the
	// background, and a stop cuts it short (the next start resumes it).
	admin := testbin.FreePort(t)
	withAdmin, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withAdmin = bytes.Replace(withAdmin, []byte("[admin]\nlisten = \"\"\n"), fmt.Appendf(nil, "[admin]\nlisten = \"127.0.0.1:%d\"\n", admin), 1)
	if err := os.WriteFile(cfg, withAdmin, 0o644); err != nil {
		t.Fatal(err)
	}

	// 20,000 records from a month ago, which the start-up purge deletes,
	// and one from yesterday.
	db, err := storage.Open(dbPath, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	recs := schematest.Records(20_001, 1, now*1000)
	for i := range recs {
		recs[i].SetInt(schema.FMonitoringDataTs, now-30*86400+int64(i/100))
	}
	recs[len(recs)-1].SetInt(schema.FMonitoringDataTs, now-86400)
	if err := db.Import(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	daemon := exec.Command(bin, "serve", "--config", cfg)
	daemon.Stderr = &logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	defer func() {
		if daemon.ProcessState == nil {
			_ = daemon.Process.Kill()
			<-exited
		}
	}()
	store := func(id string) error { return storeOne(port, id) }
	for deadline := time.Now().Add(20 * time.Second); store("stored-0") != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not start: %s", logs.String())
		}
	}
	for i := 1; i < 10; i++ {
		if err := store("stored-" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)); err == nil {
			b, _ := io.ReadAll(m.Body)
			m.Body.Close()
			if bytes.Contains(b, []byte("\nopmond_records_purged_total 20000\n")) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the start-up purge did not delete the 20,000 old records: %s", logs.String())
		}
	}

	code, out, errOut := testbin.Run(t, nil, "compact", "--config", cfg)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "in use") {
		t.Errorf("compact of a database in use: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut = testbin.Run(t, nil, "compact", "--config", cfg)
	m := regexp.MustCompile(`^compacted (\d+) bytes to (\d+) bytes\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil || errOut != "" {
		t.Fatalf("compact: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	before, _ := strconv.ParseInt(m[1], 10, 64)
	after, _ := strconv.ParseInt(m[2], 10, 64)
	t.Logf("%s (ratio %.1f)", strings.TrimSpace(out), float64(before)/float64(after))
	if before != fi.Size() || after >= before {
		t.Errorf("compacted %d bytes (file had %d) to %d", before, fi.Size(), after)
	}
	if fi, err := os.Stat(dbPath); err != nil || fi.Size() != after {
		t.Errorf("file after compaction: %v %v, want %d bytes", fi, err, after)
	}

	bdb, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	})
	bdb.Close()
	db, err = storage.Open(dbPath, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []string
	_, err = db.Query(context.Background(), storage.Query{From: 0, To: 1 << 62, Max: 1 << 20}, func(r *schema.Record) error {
		ids = append(ids, r.Str(schema.FMessageID))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{recs[len(recs)-1].Str(schema.FMessageID)}
	for i := range 10 {
		want = append(want, "stored-"+strconv.Itoa(i))
	}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("records after compaction: %v, want %v", ids, want)
	}
}
