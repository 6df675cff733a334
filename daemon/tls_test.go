package daemon

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/tlsconf"
)

// httpsClient presents certFile/keyFile and trusts any server certificate
// (the server side's pinning is what these tests exercise).
func httpsClient(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
	}}}
}

func gen(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	c, k, err := tlsconf.Generate(tlsconf.GenOptions{Dir: dir, CN: cn, Days: 30, SANs: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func storeOver(client *http.Client, url string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, url+"/store_data", strings.NewReader(`{"records":[]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return b.String(), err
}

// TestHTTPSPinned runs the daemon with scheme = "https": a pinned security
// server stores, an unknown certificate is refused and counted, the daemon's
// own key pair works for opmond query, and a reload swaps the pinned file.
func TestHTTPSPinned(t *testing.T) {
	dir := t.TempDir()
	daemonCert, daemonKey := gen(t, filepath.Join(dir, "ssl"), "opmon")
	ssCert, ssKey := gen(t, filepath.Join(dir, "ss1"), "ss1")
	otherCert, otherKey := gen(t, filepath.Join(dir, "ss2"), "ss2")
	pinned := filepath.Join(dir, "pinned.crt")
	copyFile(t, ssCert, pinned)

	clock := newTestClock(1000)
	cfg := testConfig(t, dir)
	cfg.OpMonitor.Scheme = "https"
	cfg.OpMonitor.TLSCertificate, cfg.OpMonitor.TLSKey = daemonCert, daemonKey
	cfg.OpMonitor.ClientTLSCertificate = StringList{pinned}
	cfg.GlobalConf.Directory = filepath.Join(dir, "globalconf")
	writeGlobalConf(t, cfg.GlobalConf.Directory, time.Now().Add(time.Hour), monitoringID)
	td := startDaemon(t, cfg, clock.Now)
	url := strings.Replace(td.url, "http://", "https://", 1)

	ss := httpsClient(t, ssCert, ssKey)
	if ans, err := storeOver(ss, url); err != nil || ans != `{"status":"OK"}` {
		t.Fatalf("pinned client: %q %v", ans, err)
	}
	if _, err := storeOver(httpsClient(t, otherCert, otherKey), url); err == nil {
		t.Error("unknown certificate accepted")
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if _, err := storeOver(noCert, url); err == nil {
		t.Error("client without certificate accepted")
	}
	if ans, err := storeOver(http.DefaultClient, td.url); err == nil && strings.Contains(ans, "OK") {
		t.Errorf("plain HTTP stored: %q", ans)
	}

	// opmond query on the daemon's host uses the daemon's own key pair.
	clock.Set(1000)
	td.url, td.hc = url, ss
	td.store(jrec("messageId", "over-tls"))
	clock.Set(queryNow)
	cfgPath := filepath.Join(dir, "query.toml")
	content := "[op-monitor]\nscheme = \"https\"\ntls-certificate = " + quote(daemonCert) + "\ntls-key = " + quote(daemonKey) +
		"\nclient-tls-certificate = " + quote(pinned) + "\n[global-conf]\ndirectory = " + quote(cfg.GlobalConf.Directory) + "\n"
	if err := os.WriteFile(cfgPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// What opmond query presents: the daemon's own pair, from the configuration.
	qcfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconf.ClientConfig(qcfg.OpMonitor.TLSCertificate, qcfg.OpMonitor.TLSKey)
	if err != nil {
		t.Fatal(err)
	}
	td.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	if a := td.queryOp(ownerID, serverID, 0, 5000, ""); a.fault != nil || !strings.Contains(ids(a.records), "over-tls") {
		t.Errorf("query over https with the daemon's own pair: %v %v", a.fault, a.records)
	}

	// Reload swaps the pinned certificate: the new one works at once.
	copyFile(t, otherCert, pinned)
	if err := td.Reload(); err != nil {
		t.Fatal(err)
	}
	if ans, err := storeOver(httpsClient(t, otherCert, otherKey), url); err != nil || ans != `{"status":"OK"}` {
		t.Errorf("newly pinned client after reload: %q %v", ans, err)
	}
	if _, err := storeOver(httpsClient(t, ssCert, ssKey), url); err == nil {
		t.Error("unpinned client accepted after reload")
	}
	// The server counts a failure after the client has seen it: wait for it.
	for _, want := range []string{`opmond_tls_handshake_failures_total{reason="unknown_certificate"} 2`, `opmond_tls_handshake_failures_total{reason="no_certificate"} 1`} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, _, metrics := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
			if bytes.Contains(metrics, []byte(want)) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("metrics lack %s", want)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestHTTPSStartupRefusals: a key that does not match or an empty pinned
// file stops New with one line naming the file.
func TestHTTPSStartupRefusals(t *testing.T) {
	dir := t.TempDir()
	certA, _ := gen(t, filepath.Join(dir, "a"), "a")
	_, keyB := gen(t, filepath.Join(dir, "b"), "b")
	empty := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][3]string{
		"key mismatch": {certA, keyB, certA},
		"empty pinned": {certA, filepath.Join(dir, "a", "opmonitor.key"), empty},
	} {
		cfg := testConfig(t, t.TempDir())
		cfg.OpMonitor.Scheme = "https"
		cfg.OpMonitor.TLSCertificate, cfg.OpMonitor.TLSKey = c[0], c[1]
		cfg.OpMonitor.ClientTLSCertificate = StringList{c[2]}
		_, err := New(cfg, Options{LogWriter: &syncBuffer{}})
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `\`, `\\`) + `"` }
