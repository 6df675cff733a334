package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opmond/opmond/internal/testbin"
	"github.com/opmond/opmond/storage"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !regexp.MustCompile(`^opmond \S+ \(commit \S+, go[0-9.]+\S*\)\n$`).MatchString(out) {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[op-monitor]\nprot = 2080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "check-config", "--config", bad)
	if code != 1 || out != "" || !strings.Contains(errOut, "op-monitor.prot") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("misspelt key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[op-monitor]\nport = 3000\ndatabase = \"x.db\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "check-config", "--config", good)
	if code != 0 || !strings.Contains(out, "port = 3000") || !strings.Contains(out, filepath.Join(dir, "x.db")) || errOut != "" {
		t.Errorf("good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	anchorCfg := filepath.Join(dir, "anchor.toml")
	if err := os.WriteFile(anchorCfg, []byte("[global-conf]\nanchor = \"missing-anchor.xml\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "check-config", "--config", anchorCfg); code != 1 || !strings.Contains(errOut, "global-conf.anchor") {
		t.Errorf("missing anchor: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{"bogus"},
		{"serve", "--nope"},
		{"serve", "extra"},
		{"query", "--from", "1"},
		{"query", "--health", "--from", "1"},
		{"query", "--from", "1", "--to", "2", "--client", "EE/GOV"},
		{"query", "--from", "1", "--to", "2", "--server", "EE/GOV/1"},
		{"gencert"},
		{"gencert", "--dir", "x", "--days", "0"},
		{"backup"},
		{"backup", "--out", "x", "extra"},
		{"import"},
		{"import", "--bogus", "x"},
	}
	for _, args := range tests {
		if code, _, errOut := runCLI(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestGencert(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "gencert", "--dir", dir, "--cn", "opmon.example.org", "--san", "opmon.example.org,127.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	fi, err := os.Stat(filepath.Join(dir, "opmonitor.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "opmonitor.crt")); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "gencert", "--dir", dir); code != 1 || errOut == "" {
		t.Errorf("overwrite without --force: exit %d %q", code, errOut)
	}
	if code, _, _ = runCLI(t, "gencert", "--dir", dir, "--force"); code != 0 {
		t.Errorf("--force: exit %d", code)
	}
}

// TestServeSignals runs the serve command as main does: SIGHUP reloads and
// keeps serving, SIGTERM stops it with exit code 0 and the data survives.
func TestServeSignals(t *testing.T) {
	dir := t.TempDir()
	cfg, port := loopbackConfig(t, dir, "database = \"db/op.db\"\n")
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run([]string{"serve", "--config", cfg}, io.Discard, &syncWriter{w: &stderr}) }()
	store := func() error { return storeOne(port, "") }
	deadline := time.Now().Add(10 * time.Second)
	for store() != nil {
		if time.Now().After(deadline) {
			t.Fatal("daemon did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := store(); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}
	stopServe(t, done, &stderr)
	db, err := storage.Open(filepath.Join(dir, "db", "op.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if st, err := db.Stats(); err != nil || st.Records != 2 {
		t.Errorf("after restart: %+v %v", st, err)
	}
}

// loopbackConfig writes DIR/opmond.toml for a daemon on a free loopback
// port without admin listener, with more [op-monitor] keys, and returns
// its path and the port.
func loopbackConfig(t *testing.T, dir, keys string) (string, int) {
	t.Helper()
	port := testbin.FreePort(t)
	cfg := filepath.Join(dir, "opmond.toml")
	content := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\n%s[admin]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n", port, keys)
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, port
}

// storeOne stores one record with the messageId id and requires OK.
func storeOne(port int, id string) error {
	body := `{"records":[{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true,"messageId":"` + id + `"}]}`
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/store_data", port), "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != `{"status":"OK"}` {
		return fmt.Errorf("answer %s", b)
	}
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
