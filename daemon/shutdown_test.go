package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opmond/opmond/internal/testload"
)

// TestShutdownUnderLoad closes the daemon while 8 keep-alive clients store
// as fast as they can: Close returns without error (no panic in the HTTP
// server), and every acknowledged record is in the database afterwards.
func TestShutdownUnderLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Log.Level = "warn"
	td := startDaemon(t, cfg, nil)
	var acked atomic.Int64
	stop := make(chan struct{})
	wg := testload.Senders(8, 10*time.Second, stop, func(hc *http.Client, w, i int) {
		body, _ := json.Marshal(map[string]any{"records": []any{jrec("messageId", fmt.Sprintf("w%d-%d", w, i))}})
		req, _ := http.NewRequest(http.MethodPost, td.url+"/store_data", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return // refused or closed after shutdown began
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if b.String() == `{"status":"OK"}` {
			acked.Add(1)
		}
	})
	time.Sleep(150 * time.Millisecond)
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	td2 := startDaemon(t, testConfig(t, dir), nil)
	if got := int64(len(td2.all())); got < acked.Load() {
		t.Fatalf("%d records acknowledged, %d stored", acked.Load(), got)
	}
}

// TestShutdownSpareConnection: a connection that never sends a request
// does not hold up Close (fasthttp alone would wait 5 s for it).
func TestShutdownSpareConnection(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	c, br := dial(t, td.url)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a spare connection open", took)
	}
	if !closedWithin(c, br, time.Second) {
		t.Error("the spare connection is still open")
	}
}

// TestShutdownDrainTimeout: a client that stalls mid-body past the drain
// timeout gets a closed connection, and Close still succeeds.
func TestShutdownDrainTimeout(t *testing.T) {
	td := startDaemonWith(t, testConfig(t, t.TempDir()), Options{DrainTimeout: 300 * time.Millisecond})
	c, br := dial(t, td.url)
	fmt.Fprintf(c, "POST /store_data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat(" ", 9000))
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := td.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
	if !closedWithin(c, br, time.Second) {
		t.Error("the stalled connection is still open")
	}
	if !strings.Contains(td.logs.String(), "requests still running at shutdown") {
		t.Errorf("log:\n%s", td.logs.String())
	}
}
