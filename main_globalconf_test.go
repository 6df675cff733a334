package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opmond/opmond/anchor/anchortest"
	"github.com/opmond/opmond/internal/testbin"
)

// TestServeDownloadMode runs opmond as an operator would in download mode:
// check-config reads the anchor, serve downloads from a configuration
// source over HTTP and becomes ready, and query takes its default client
// (the central monitoring client) from what was downloaded.
func TestServeDownloadMode(t *testing.T) {
	src := anchortest.New(t, anchortest.StandardParts("EE", "EE/GOV/70000001/MONITORING", "EE/GOV/70000001/ss1"))
	dir := t.TempDir()
	anchortest.WriteAnchor(t, filepath.Join(dir, "configuration-anchor.xml"), "EE", src)
	ports := []int{testbin.FreePort(t), testbin.FreePort(t)}
	cfg := filepath.Join(dir, "opmond.toml")
	content := fmt.Sprintf(`[op-monitor]
host = "127.0.0.1"
port = %d
database = "db/op.db"
records-available-timestamp-offset-seconds = 0
[global-conf]
anchor = "configuration-anchor.xml"
directory = "globalconf"
download-interval-seconds = 1
[admin]
listen = "127.0.0.1:%d"
`, ports[0], ports[1])
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "check-config", "--config", cfg)
	if code != 0 || !strings.Contains(out, strconv.Quote(filepath.Join(dir, "configuration-anchor.xml"))) {
		t.Fatalf("check-config: exit %d, %s%s", code, out, errOut)
	}
	// Without a downloaded configuration there is no default client.
	if code, _, errOut := runCLI(t, "query", "--config", cfg, "--from", "0", "--to", "1"); code != 2 {
		t.Errorf("query without --as before any download: exit %d, %s", code, errOut)
	}

	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run([]string{"serve", "--config", cfg}, io.Discard, &syncWriter{w: &stderr}) }()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A record of two other parties: only a privileged client sees it.
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/store_data", ports[0]), "application/json",
		strings.NewReader(`{"records":[{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true,`+
			`"clientXRoadInstance":"EE","clientMemberClass":"COM","clientMemberCode":"1","serviceXRoadInstance":"EE","serviceMemberClass":"COM","serviceMemberCode":"2","serviceCode":"s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(1100 * time.Millisecond) // answers end one second before now
	code, out, errOut = runCLI(t, "query", "--config", cfg, "--from", "0", "--to", strconv.FormatInt(time.Now().Unix()+1, 10))
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"clientMemberCode":"1"`) {
		t.Errorf("query as the downloaded monitoring client (the default): exit %d, %q, %s", code, out, errOut)
	}
	stopServe(t, done, &stderr)
}

// stopServe sends the process SIGTERM and requires serve (whose exit code
// arrives on done) to exit 0.
func stopServe(t *testing.T, done <-chan int, stderr *bytes.Buffer) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
}
