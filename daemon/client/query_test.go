package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/tlsconf"
)

// startDaemon runs a daemon in this process with the central monitoring
// client DEV/COM/1234/MONITORING, and returns it with a configuration file
// for the client that names the same global configuration.
func startDaemon(t *testing.T, mutate func(*daemon.Config)) (*daemon.Daemon, string, string) {
	t.Helper()
	dir := t.TempDir()
	gc, err := filepath.Abs(filepath.Join("..", "..", "anchor", "testdata", "bench-globalconf"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "op.db")
	cfg.GlobalConf.Directory, cfg.GlobalConf.IgnoreExpiry = gc, true
	cfg.Log.Level = "warn"
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Listener: ln, AdminListener: aln, LogWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	cfgPath := filepath.Join(dir, "client.toml")
	content := fmt.Sprintf("[global-conf]\ndirectory = %q\nignore-expiry = true\n[admin]\nlisten = %q\n", gc, aln.Addr().String())
	if err := os.WriteFile(cfgPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return d, "http://" + ln.Addr().String(), cfgPath
}

// TestRunQueryPages: the query command follows nextRecordsFrom and prints
// every record once; --health prints one JSON document.
func TestRunQueryPages(t *testing.T) {
	d, url, cfgPath := startDaemon(t, func(c *daemon.Config) { c.OpMonitor.MaxRecordsInPayload = 3 })
	var recs []schema.Record
	// An hour old: within retention, so the start-up purge keeps them.
	base := time.Now().Unix() - 3600
	for ts := base; ts < base+10; ts++ {
		for i := 0; i < int(ts%3)+1; i++ {
			line := fmt.Sprintf(`{"monitoringDataTs":%d,"messageId":"%d-%d","securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true}`, ts, ts, i)
			r, err := schema.DecodeRecord([]byte(line), schema.DecodeOptions{KeepMonitoringDataTs: true})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	}
	if err := d.DB().Import(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := QueryOptions{ConfigFile: cfgPath, URL: url}
	o.From, o.To = base, base+20
	if err := RunQuery(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		seen[fmt.Sprint(r["messageId"])] = true
	}
	if len(lines) != len(recs) || len(seen) != len(recs) {
		t.Errorf("printed %d lines, %d distinct, want %d", len(lines), len(seen), len(recs))
	}
	out.Reset()
	o = QueryOptions{ConfigFile: cfgPath, URL: url}
	o.Health = true
	if err := RunQuery(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(out.Bytes(), &h); err != nil || h["statisticsPeriodSeconds"] != float64(600) {
		t.Errorf("health output %s: %v", out.String(), err)
	}
}

// TestRunQueryHTTPS: against an https daemon, the query presents the
// configuration's key pair and pins the same certificate as the server's.
func TestRunQueryHTTPS(t *testing.T) {
	certDir := t.TempDir()
	cert, key, err := tlsconf.Generate(tlsconf.GenOptions{Dir: certDir, CN: "opmond-test", Days: 1, SANs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	d, url, _ := startDaemon(t, func(c *daemon.Config) {
		c.OpMonitor.Scheme = "https"
		c.OpMonitor.TLSCertificate, c.OpMonitor.TLSKey = cert, key
		c.OpMonitor.ClientTLSCertificate = daemon.StringList{cert}
	})
	// An hour old: within retention, so the start-up purge keeps it.
	ts := time.Now().Unix() - 3600
	r, err := schema.DecodeRecord(fmt.Appendf(nil, `{"monitoringDataTs":%d,"messageId":"over-tls","securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true}`, ts),
		schema.DecodeOptions{KeepMonitoringDataTs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DB().Import(context.Background(), []schema.Record{r}); err != nil {
		t.Fatal(err)
	}
	gc, _ := filepath.Abs(filepath.Join("..", "..", "anchor", "testdata", "bench-globalconf"))
	cfgPath := filepath.Join(t.TempDir(), "query.toml")
	content := fmt.Sprintf("[op-monitor]\nscheme = \"https\"\ntls-certificate = %q\ntls-key = %q\n[global-conf]\ndirectory = %q\nignore-expiry = true\n", cert, key, gc)
	if err := os.WriteFile(cfgPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := QueryOptions{ConfigFile: cfgPath, URL: strings.Replace(url, "http://", "https://", 1)}
	o.From, o.To = ts-10, ts+10
	if err := RunQuery(context.Background(), o, &out); err != nil {
		t.Fatalf("query over https: %v", err)
	}
	if !strings.Contains(out.String(), `"messageId":"over-tls"`) {
		t.Errorf("query output %q", out.String())
	}
}

// TestAdminURL: an unspecified listen host is reached on loopback.
func TestAdminURL(t *testing.T) {
	for listen, want := range map[string]string{"127.0.0.1:2082": "http://127.0.0.1:2082", ":2082": "http://127.0.0.1:2082",
		"0.0.0.0:9": "http://127.0.0.1:9", "[::]:9": "http://127.0.0.1:9", "[::1]:9": "http://[::1]:9", "localhost:5": "http://localhost:5"} {
		cfg := daemon.Default()
		cfg.Admin.Listen = listen
		if got, err := AdminURL(cfg); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", listen, got, err, want)
		}
	}
}
