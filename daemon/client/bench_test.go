package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// serveDaemon runs `opmond serve` with extra [op-monitor] lines and returns
// the store/query URL and the admin URL. The daemon is stopped at cleanup.
func serveDaemon(t *testing.T, dir, scheme, extra string) (string, string) {
	t.Helper()
	port, admin := testbin.FreePort(t), testbin.FreePort(t)
	cfg := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\nscheme = %q\ndatabase = \"db/op.db\"\n"+
		"records-available-timestamp-offset-seconds = 0\n%s\n[global-conf]\ndirectory = \"none\"\n"+
		"[admin]\nlisten = \"127.0.0.1:%d\"\n[log]\nlevel = \"warn\"\n", port, scheme, extra, admin)
	path := filepath.Join(dir, "opmond.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(testbin.Path(t), "serve", "--config", path)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", admin)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), adminURL
}

// storedTotal reads opmond_records_stored_total from the admin listener.
func storedTotal(t *testing.T, adminURL string) int64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "opmond_records_stored_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatal("no opmond_records_stored_total in /metrics")
	return 0
}

func decodeResult(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"records", "seconds", "records_per_second", "store_p50_ms", "store_p99_ms",
		"store_max_ms", "query_p50_ms", "query_p99_ms", "errors"} {
		if _, ok := m[k]; !ok {
			t.Errorf("--json output lacks %q: %s", k, out)
		}
	}
	return m
}

// TestBenchHTTP stores a fixed number of records with queries against a
// real daemon and checks the figures against what the daemon counted.
func TestBenchHTTP(t *testing.T) {
	url, admin := serveDaemon(t, t.TempDir(), "http", "")
	code, out, errOut := testbin.Run(t, nil, "bench", "--url", url, "--records", "3050", "--conc", "3", "--batch", "100",
		"--query-every", "100ms", "--admin", admin, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	m := decodeResult(t, out)
	if m["records"] != 3050.0 || m["errors"] != 0.0 || m["store_requests"] != 31.0 {
		t.Errorf("records %v, errors %v, store requests %v; want 3050, 0, 31", m["records"], m["errors"], m["store_requests"])
	}
	if got := storedTotal(t, admin); got != 3050 {
		t.Errorf("daemon stored %d records, want 3050", got)
	}
	if m["peak_rss_bytes"].(float64) < 1<<20 || m["database_bytes"].(float64) < 1<<10 {
		t.Errorf("peak RSS %v, database %v: not read from --admin", m["peak_rss_bytes"], m["database_bytes"])
	}
	if m["store_p50_ms"].(float64) <= 0 || m["store_p99_ms"].(float64) < m["store_p50_ms"].(float64) ||
		m["store_max_ms"].(float64) < m["store_p99_ms"].(float64) {
		t.Errorf("store latencies out of order: %v %v %v", m["store_p50_ms"], m["store_p99_ms"], m["store_max_ms"])
	}

	// A duration bound, with text output.
	start := time.Now()
	code, out, errOut = testbin.Run(t, nil, "bench", "--url", url, "--duration", "1500ms", "--conc", "2")
	if code != 0 || !strings.Contains(out, "records/s") || !strings.Contains(out, "errors             0") {
		t.Fatalf("--duration: exit %d\n%s\n%s", code, out, errOut)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("--duration 1500ms ran %s", el)
	}
}

// TestBenchQueries follows nextRecordsFrom with queries while storing, and
// reads the records back from the answers.
func TestBenchQueries(t *testing.T) {
	url, _ := serveDaemon(t, t.TempDir(), "http", "")
	code, out, errOut := testbin.Run(t, nil, "bench", "--url", url, "--duration", "1500ms", "--conc", "1",
		"--query-every", "100ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	m := decodeResult(t, out)
	if m["errors"] != 0.0 || m["queries"].(float64) < 1 || m["query_records"].(float64) < 1 {
		t.Errorf("errors %v, queries %v, query records %v; want 0, some, some", m["errors"], m["queries"], m["query_records"])
	}
	if m["query_p50_ms"].(float64) <= 0 || m["query_max_ms"].(float64) < m["query_p50_ms"].(float64) {
		t.Errorf("query latencies out of order: %v %v", m["query_p50_ms"], m["query_max_ms"])
	}
}

// TestBenchHTTPS presents a client certificate to an https daemon.
func TestBenchHTTPS(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := testbin.Run(t, nil, "gencert", "--dir", filepath.Join(dir, "ssl"), "--san", "127.0.0.1"); code != 0 {
		t.Fatalf("gencert: %s %s", out, errOut)
	}
	crt, key := filepath.Join(dir, "ssl", "opmonitor.crt"), filepath.Join(dir, "ssl", "opmonitor.key")
	url, admin := serveDaemon(t, dir, "https", fmt.Sprintf("tls-certificate = %q\ntls-key = %q\nclient-tls-certificate = %q", crt, key, crt))
	code, out, errOut := testbin.Run(t, nil, "bench", "--url", url, "--records", "500", "--cert", crt, "--key", key, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if m := decodeResult(t, out); m["records"] != 500.0 {
		t.Errorf("records %v", m["records"])
	}
	if got := storedTotal(t, admin); got != 500 {
		t.Errorf("daemon stored %d records, want 500", got)
	}
	// Without a client certificate the handshake fails: a usage error here.
	if code, _, errOut := testbin.Run(t, nil, "bench", "--url", url, "--records", "10"); code != 2 || !strings.Contains(errOut, "--cert") {
		t.Errorf("https without --cert: exit %d, %q", code, errOut)
	}
}

// TestBenchFailures: failed requests make exit 1; bad flags exit 2.
func TestBenchFailures(t *testing.T) {
	url := fmt.Sprintf("http://127.0.0.1:%d", testbin.FreePort(t))
	code, out, errOut := testbin.Run(t, nil, "bench", "--url", url, "--records", "200", "--json")
	if code != 1 || !strings.Contains(errOut, "store:") {
		t.Fatalf("nothing listening: exit %d, stderr %q", code, errOut)
	}
	if m := decodeResult(t, out); m["errors"] != 2.0 || m["records"] != 0.0 {
		t.Errorf("errors %v records %v; want 2 and 0", m["errors"], m["records"])
	}
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--url", url},
		{"bench", "--url", url, "--records", "10", "--duration", "1s"},
		{"bench", "--url", url, "--records", "10", "--conc", "0"},
		{"bench", "--url", url, "--records", "10", "--batch", "0"},
		{"bench", "--url", url, "--records", "10", "--as", "EE/GOV"},
		{"bench", "--url", url, "--records", "10", "--cert", "x.crt"},
		{"bench", "--url", "ftp://x", "--records", "10"},
	} {
		if code, _, errOut := testbin.Run(t, nil, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestBenchMinutes: per-minute figures, and a last sample just past the
// run folded into the last minute.
func TestBenchMinutes(t *testing.T) {
	st := &benchStats{start: time.Unix(1000, 0)}
	for i := range 100 {
		st.store(st.start.Add(time.Duration(i)*time.Second), time.Duration(i+1)*time.Millisecond, 10)
	}
	st.sample(st.start.Add(30*time.Second), 5<<20, 0)
	st.sample(st.start.Add(120*time.Second+time.Millisecond), 7<<20, 1<<20)
	r := st.result(120 * time.Second)
	if len(r.Minutes) != 2 || r.Records != 1000 || r.StoreRequests != 100 {
		t.Fatalf("%+v", r)
	}
	if m := r.Minutes[0]; m.RecordsPerSecond != 10 || m.StoreP99 != 60 || m.RSSBytes != 5<<20 {
		t.Errorf("minute 1: %+v", m)
	}
	if m := r.Minutes[1]; m.RSSBytes != 7<<20 || m.StoreP99 != 100 {
		t.Errorf("minute 2: %+v", m)
	}
	if r.StoreP50 != 50 || r.StoreP99 != 99 || r.StoreMax != 100 || r.PeakRSSBytes != 7<<20 || r.DatabaseBytes != 1<<20 {
		t.Errorf("totals: %+v", r)
	}
}
