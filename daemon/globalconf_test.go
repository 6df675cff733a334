package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/anchor/anchortest"
)

// gcEnv is a daemon in download mode against in-process configuration
// sources (global-configuration.md §6), with a one-second interval and a
// short per-request timeout.
type gcEnv struct {
	*testDaemon
	t      *testing.T
	clock  *testClock
	anchor string
}

func startDownloadDaemon(t *testing.T, dir string, clock *testClock, sources ...*anchortest.Source) *gcEnv {
	t.Helper()
	cfg := testConfig(t, dir)
	cfg.GlobalConf.Anchor = filepath.Join(dir, "configuration-anchor.xml")
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	cfg.GlobalConf.DownloadIntervalSeconds = 1
	if len(sources) > 0 {
		anchortest.WriteAnchor(t, cfg.GlobalConf.Anchor, "EE", sources...)
	}
	td := startDaemonWith(t, cfg, Options{Now: clock.Now, GlobalConfRequestTimeout: 2 * time.Second})
	return &gcEnv{testDaemon: td, t: t, clock: clock, anchor: cfg.GlobalConf.Anchor}
}

// metric returns the value of the sample whose name and labels start the
// line as given, e.g. `opmond_globalconf_download_failures_total{cause="expired"}`.
func (e *gcEnv) metric(sample string) float64 {
	e.t.Helper()
	_, _, b := doRequest(e.t, http.MethodGet, e.adminURL+"/metrics", "", nil)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return f
		}
	}
	e.t.Fatalf("no metric %s", sample)
	return 0
}

const (
	gcFailures  = `opmond_globalconf_download_failures_total{cause="%s"}`
	gcSuccesses = `opmond_globalconf_downloads_total`
)

// waitMetric waits until sample exceeds from (a later round was counted).
func (e *gcEnv) waitMetric(sample string, from float64) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for e.metric(sample) <= from {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s stayed at %v", sample, from)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *gcEnv) readyz() (int, string) {
	e.t.Helper()
	status, _, b := doRequest(e.t, http.MethodGet, e.adminURL+"/readyz", "", nil)
	return status, string(b)
}

// privileged reports whether as, naming server in the header, sees every
// record (owner or monitoring client) rather than only its own.
func (e *gcEnv) privileged(as, server string) bool {
	e.t.Helper()
	a := e.queryOp(as, server, gcStoreAt-10, gcStoreAt+10, "")
	if a.fault != nil {
		e.t.Fatalf("query as %s: %v", as, a.fault)
	}
	return len(a.records) == 3
}

func (e *gcEnv) faultCode(as string) string {
	e.t.Helper()
	a := e.queryOp(as, "", gcStoreAt-10, gcStoreAt+10, "")
	if a.fault == nil {
		return ""
	}
	return a.fault.Code
}

// failureLogged finds the round's error line naming the source and cause.
func (e *gcEnv) failureLogged(source, cause string) bool {
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		if ev["level"] == "error" && strings.HasPrefix(ev["message"].(string), "global configuration download failed") &&
			ev["source"] == source && ev["cause"] == cause {
			return true
		}
	}
	return false
}

// gcStoreAt is when the test records are stored (daemon clock); queries run
// at the real time, so that expiry dates mean what they say.
var gcStoreAt = time.Now().Unix() - 600

func storeGCRecords(td *testDaemon, clock *testClock) {
	mk := partyRecord
	td.storeAt(clock, gcStoreAt,
		mk("r1", "EE/COM/10000001/CRM", "EE/GOV/70000002/API"),
		mk("r2", "EE/GOV/70000002", "EE/GOV/70000002/API"),
		mk("r3", "EE/GOV/70000001", "EE/COM/10000001"),
	)
	clock.Set(time.Now().Unix())
}

// TestGlobalConfDownloadE2E runs the daemon in download mode against real
// HTTP sources: the downloaded configuration decides access; every failure
// of §6.6's matrix keeps the last good configuration, is counted by cause
// and logged with source and cause, and the next good directory is taken
// up; failover, anchor replacement and a configuration proxy's layout work.
func TestGlobalConfDownloadE2E(t *testing.T) {
	src := anchortest.New(t, anchortest.StandardParts("EE", monitoringID, serverID))
	src.SetFault(anchortest.Status500)
	clock := newTestClock(time.Now().Unix())
	e := startDownloadDaemon(t, t.TempDir(), clock, src)
	storeGCRecords(e.testDaemon, clock)

	// Before the first good configuration: not ready, outdated fault.
	e.waitMetric(`opmond_globalconf_download_failures_total{cause="http_status"}`, 0)
	if status, body := e.readyz(); status != 503 || !strings.Contains(body, "no global configuration downloaded yet") {
		t.Errorf("readyz before the first download: %d %s", status, body)
	}
	if code := e.faultCode(ownerID); code != "server.serverproxy.opmonitor.global_conf_outdated" {
		t.Errorf("query before the first download: fault %q", code)
	}

	// A good download decides access.
	src.SetFault(anchortest.Good)
	e.waitMetric(gcSuccesses, 0)
	if status, body := e.readyz(); status != 200 {
		t.Fatalf("readyz: %d %s", status, body)
	}
	if !e.privileged(ownerID, serverID) || !e.privileged(monitoringID, "") {
		t.Error("owner or monitoring client of the downloaded configuration not privileged")
	}
	if e.privileged("EE/COM/10000001", "EE/COM/10000001/ss2") || e.privileged("EE/COM/10000001/CRM", "") {
		t.Error("a client unknown to the configuration is privileged")
	}
	if e.metric("opmond_globalconf_expiry_timestamp_seconds") < float64(time.Now().Unix()) ||
		e.metric("opmond_globalconf_last_success_timestamp_seconds") < float64(time.Now().Unix()-60) {
		t.Error("expiry or last success gauge not set")
	}

	// Each failure keeps the configuration; the next good one is taken up.
	// The good directory after each failure adds a server owned by
	// EE/COM/10000001, whose owner then becomes privileged for it.
	changed := func(code string) []anchortest.Part {
		return anchortest.StandardParts("EE", monitoringID, serverID, "EE/COM/10000001/"+code)
	}
	n := 0
	for _, tc := range []struct {
		fault anchortest.Fault
		cause string
	}{
		{anchortest.TamperSignature, "bad_signature"},
		{anchortest.TamperSigned, "bad_signature"},
		{anchortest.WrongHash, "bad_hash"},
		{anchortest.UnknownSigner, "bad_signature"},
		{anchortest.Expired, "expired"},
		{anchortest.Status500, "http_status"},
		{anchortest.Hang, "unreachable"},
	} {
		n++
		code := "s" + strconv.Itoa(n)
		failures := e.metric(`opmond_globalconf_download_failures_total{cause="` + tc.cause + `"}`)
		src.Set(anchortest.State{Parts: changed(code), Fault: tc.fault})
		e.waitMetric(`opmond_globalconf_download_failures_total{cause="`+tc.cause+`"}`, failures)
		if status, body := e.readyz(); status != 200 {
			t.Errorf("%s: readyz %d %s", tc.fault, status, body)
		}
		if !e.privileged(ownerID, serverID) {
			t.Errorf("%s: last good configuration not kept", tc.fault)
		}
		if e.privileged("EE/COM/10000001", "EE/COM/10000001/"+code) {
			t.Errorf("%s: faulty directory taken up", tc.fault)
		}
		if !e.failureLogged(src.URL, tc.cause) {
			t.Errorf("%s: no error line naming source %s and cause %s", tc.fault, src.URL, tc.cause)
		}
		successes := e.metric(gcSuccesses)
		src.Set(anchortest.State{Parts: changed(code)})
		e.waitMetric(gcSuccesses, successes)
		if !e.privileged("EE/COM/10000001", "EE/COM/10000001/"+code) {
			t.Errorf("%s: good directory afterwards not taken up", tc.fault)
		}
	}

	// Unreachable: the anchor replaced on disk by one naming a closed
	// source (picked up before the next round, §1.4) ...
	down := anchortest.New(t, nil)
	down.Close()
	failures := e.metric(`opmond_globalconf_download_failures_total{cause="unreachable"}`)
	anchortest.WriteAnchor(t, e.anchor, "EE", down)
	e.waitMetric(`opmond_globalconf_download_failures_total{cause="unreachable"}`, failures)
	if !e.failureLogged(down.URL, "unreachable") || !e.privileged(ownerID, serverID) {
		t.Error("unreachable source: not logged, or configuration lost")
	}
	// ... then failover: the closed source first, a second one after it.
	second := anchortest.New(t, changed("second"))
	successes := e.metric(gcSuccesses)
	anchortest.WriteAnchor(t, e.anchor, "EE", down, second)
	e.waitMetric(gcSuccesses, successes)
	if !e.privileged("EE/COM/10000001", "EE/COM/10000001/second") {
		t.Error("failover to the second source: its configuration not in use")
	}
	// A configuration proxy's layout (§2.12).
	successes = e.metric(gcSuccesses)
	second.Set(anchortest.State{Parts: changed("proxy"), ProxyStyle: true})
	e.waitMetric(gcSuccesses, successes)
	if !e.privileged("EE/COM/10000001", "EE/COM/10000001/proxy") {
		t.Error("configuration proxy's directory not taken up")
	}

	// One error line per failed round.
	var rounds float64
	for _, c := range []string{"unreachable", "http_status", "bad_signature", "bad_hash", "expired", "malformed", "write"} {
		rounds += e.metric(`opmond_globalconf_download_failures_total{cause="` + c + `"}`)
	}
	lines := strings.Count(e.logs.String(), `"message":"global configuration download failed`)
	if float64(lines) != rounds || e.metric(`opmond_background_errors_total{task="globalconf"}`) != rounds {
		t.Errorf("%d failed rounds, %d error lines, background errors %v", int(rounds), lines,
			e.metric(`opmond_background_errors_total{task="globalconf"}`))
	}
}

// TestGlobalConfStoredCopyExpires: a stored set is used at start while no
// source answers, until it expires; then queries get the outdated fault
// and /readyz 503.
func TestGlobalConfStoredCopyExpires(t *testing.T) {
	dir := t.TempDir()
	src := anchortest.New(t, anchortest.StandardParts("EE", monitoringID, serverID))
	expire := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	src.Set(anchortest.State{Expire: expire})
	clock := newTestClock(time.Now().Unix())
	e := startDownloadDaemon(t, dir, clock, src)
	e.waitMetric(gcSuccesses, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	src.SetFault(anchortest.Status500)
	e = startDownloadDaemon(t, dir, clock) // same anchor and directory
	if status, body := e.readyz(); status != 200 {
		t.Fatalf("stored copy not used at start: %d %s", status, body)
	}
	storeGCRecords(e.testDaemon, clock)
	if !e.privileged(ownerID, serverID) {
		t.Error("owner of the stored copy not privileged")
	}
	e.waitMetric(`opmond_globalconf_download_failures_total{cause="http_status"}`, 0)
	if e.metric(gcSuccesses) != 0 || e.metric("opmond_globalconf_expiry_timestamp_seconds") != float64(expire.Unix()) {
		t.Error("metrics of the stored copy")
	}
	clock.Set(expire.Add(time.Minute).Unix())
	if code := e.faultCode(ownerID); code != "server.serverproxy.opmonitor.global_conf_outdated" {
		t.Errorf("after expiry: fault %q", code)
	}
	if status, body := e.readyz(); status != 503 || !strings.Contains(body, "expired") {
		t.Errorf("readyz after expiry: %d %s", status, body)
	}
	// The failed rounds' lines now say nothing usable is left.
	e.waitMetric(`opmond_globalconf_download_failures_total{cause="http_status"}`,
		e.metric(`opmond_globalconf_download_failures_total{cause="http_status"}`))
	if !strings.Contains(e.logs.String(), `"in_use":"none: main private parameters expired at`) {
		t.Errorf("failed round after expiry does not say the configuration expired:\n%s", e.logs.String())
	}
}

// TestGlobalConfDownloadStartErrors: a missing or malformed anchor, or a
// directory that cannot be written, stops the daemon at start with one
// line naming the key.
func TestGlobalConfDownloadStartErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := anchortest.New(t, nil)
	good := filepath.Join(dir, "anchor.xml")
	anchortest.WriteAnchor(t, good, "EE", src)
	bad := filepath.Join(dir, "bad.xml")
	if err := os.WriteFile(bad, []byte("<configurationAnchor/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ anchor, directory, key, want string }{
		{filepath.Join(dir, "missing.xml"), filepath.Join(dir, "gc"), "global-conf.anchor", "anchor_file_not_found"},
		{bad, filepath.Join(dir, "gc"), "global-conf.anchor", "malformed anchor"},
		{good, filepath.Join(notDir, "gc"), "global-conf.directory", "not a directory"},
	} {
		cfg := testConfig(t, t.TempDir())
		cfg.GlobalConf.Anchor, cfg.GlobalConf.Directory = tc.anchor, tc.directory
		ln, aln := mustListen(t), mustListen(t)
		_, err := New(cfg, Options{LogWriter: io.Discard, Listener: ln, AdminListener: aln})
		ln.Close()
		aln.Close()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+" = ") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
}
