package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/internal/testbin"
	"github.com/opmond/opmond/schema"
)

// The operator's commands against a running daemon, with the real binary.

// opmondProc is `opmond serve` running in a child process.
type opmondProc struct {
	config, url, admin string
}

// startOpmond runs `opmond serve` on loopback with its database in dir (or
// at db when given), the central monitoring client DEV/COM/1234/MONITORING
// from testdata, until the test ends.
func startServe(t *testing.T, dir, db string) *opmondProc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if db == "" {
		db = filepath.Join(dir, "data", "opmonitor.db")
	}
	gc, err := filepath.Abs(filepath.Join("anchor", "testdata", "bench-globalconf"))
	if err != nil {
		t.Fatal(err)
	}
	port, admin := testbin.FreePort(t), testbin.FreePort(t)
	p := &opmondProc{config: filepath.Join(dir, "opmond.toml"),
		url: fmt.Sprintf("http://127.0.0.1:%d", port), admin: fmt.Sprintf("http://127.0.0.1:%d", admin)}
	content := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\ndatabase = %q\nkeep-records-for-days = 3650\n"+
		"[global-conf]\ndirectory = %q\nignore-expiry = true\n[admin]\nlisten = \"127.0.0.1:%d\"\n[log]\nlevel = \"warn\"\n",
		port, db, gc, admin)
	if err := os.WriteFile(p.config, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testbin.Path(t), "serve", "--config", p.config)
	var logs bytes.Buffer
	cmd.Stderr = &syncWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("opmond serve: %v\n%s", err, logs.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("opmond serve did not stop")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("opmond serve exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opmond serve not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// testLines returns n records as JSON Lines in the order `opmond query`
// prints them, with every kind of field and some awkward strings.
func testLines(t *testing.T, n int, base int64) []byte {
	t.Helper()
	var b []byte
	for i := range n {
		m := map[string]any{
			"monitoringDataTs": base + int64(i/3), "securityServerInternalIp": fmt.Sprintf("10.0.0.%d", i%250),
			"securityServerType": []string{"Client", "Producer"}[i%2], "requestInTs": (base+int64(i))*1000 + 1,
			"requestOutTs": (base+int64(i))*1000 + 2, "responseInTs": (base+int64(i))*1000 + 30, "responseOutTs": (base+int64(i))*1000 + 31,
			"clientXRoadInstance": "DEV", "clientMemberClass": "COM", "clientMemberCode": "1234", "clientSubsystemCode": "Portal",
			"serviceXRoadInstance": "DEV", "serviceMemberClass": "GOV", "serviceMemberCode": fmt.Sprint(5000 + i%7),
			"serviceCode": "getRandom", "messageId": fmt.Sprintf("id-%d-\"ü\"\t<&>", i), "messageProtocolVersion": "4.0",
			"requestSize": 100 + i, "responseSize": 2000 + i, "succeeded": i%5 != 0, "serviceType": "WSDL", "xRoadVersion": "7.8.0",
			"requestAttachmentCount": i % 2, "statusCode": 200,
		}
		if i%4 == 0 {
			m["serviceSubsystemCode"] = "Random"
			m["serviceVersion"] = "v1"
		}
		if i%5 == 0 {
			m["faultCode"], m["faultString"] = "Server.Fault", "bad thing — ünïcode"
		}
		raw, _ := json.Marshal(m)
		r, err := schema.DecodeRecord(raw, schema.DecodeOptions{KeepMonitoringDataTs: true})
		if err != nil {
			t.Fatal(err)
		}
		b = schema.AppendRecordJSON(b, &r, schema.AllFields)
		b = append(b, '\n')
	}
	return b
}

// TestImportQueryRoundTrip: what `opmond query` prints, `opmond import`
// stores in another daemon so that the same query prints it again, byte
// for byte; bad lines are reported with their numbers and the good ones
// stored.
func TestImportQueryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := startServe(t, filepath.Join(dir, "a"), "")
	base := time.Now().Unix() - 86400
	lines := testLines(t, 2500, base)
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, lines, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := testbin.Run(t, nil, "import", "--config", a.config, in); code != 0 || out != "stored 2500, rejected 0\n" || errOut != "" {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	to := fmt.Sprint(time.Now().Unix())
	code, q1, errOut := testbin.Run(t, nil, "query", "--config", a.config, "--from", "0", "--to", to)
	if code != 0 || q1 != string(lines) {
		t.Fatalf("query of a: exit %d, stderr %q, %d bytes, want the %d imported", code, errOut, len(q1), len(lines))
	}

	b := startServe(t, filepath.Join(dir, "b"), "")
	q1file := filepath.Join(dir, "q1.jsonl")
	if err := os.WriteFile(q1file, []byte(q1), 0o644); err != nil {
		t.Fatal(err)
	}
	// Half from a file, half from standard input.
	nl := bytes.Split([]byte(q1), []byte("\n"))
	first := append(bytes.Join(nl[:1000], []byte("\n")), '\n')
	rest := bytes.Join(nl[1000:], []byte("\n"))
	if err := os.WriteFile(q1file, first, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := testbin.Run(t, rest, "import", "--config", b.config, q1file, "-"); code != 0 || out != "stored 2500, rejected 0\n" {
		t.Fatalf("import into b: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, q2, errOut := testbin.Run(t, nil, "query", "--config", b.config, "--from", "0", "--to", to); code != 0 || q2 != q1 {
		t.Fatalf("query of b: exit %d, stderr %q; output differs from a's (%d and %d bytes)", code, errOut, len(q2), len(q1))
	}

	// Bad lines: reported on stderr as FILE:LINE: reason, exit 1, the good
	// lines stored all the same.
	good := strings.Split(string(testLines(t, 2, base-1000)), "\n")
	bad := filepath.Join(dir, "bad.jsonl")
	content := good[0] + "\n\n{\"monitoringDataTs\":5}\nnot json\n" + good[1] + "\n" + regexp.MustCompile(`"monitoringDataTs":\d+,`).ReplaceAllString(good[1], "") + "\n"
	if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := testbin.Run(t, nil, "import", "--config", b.config, bad)
	errLines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 1 || out != "stored 2, rejected 3\n" || len(errLines) != 3 ||
		!strings.HasPrefix(errLines[0], bad+":3: ") || !strings.HasPrefix(errLines[1], bad+":4: ") || !strings.HasPrefix(errLines[2], bad+":6: ") ||
		!strings.Contains(errLines[2], "monitoringDataTs") {
		t.Errorf("bad lines: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	code, q3, _ := testbin.Run(t, nil, "query", "--config", b.config, "--from", fmt.Sprint(base-1000), "--to", fmt.Sprint(base-1))
	if code != 0 || q3 != good[0]+"\n"+good[1]+"\n" {
		t.Errorf("good lines of the bad file: exit %d\n%s", code, q3)
	}
	if code, _, errOut := testbin.Run(t, nil, "import", "--config", b.config); code != 2 || errOut == "" {
		t.Errorf("import without files: exit %d %q", code, errOut)
	}
	if code, _, errOut := testbin.Run(t, nil, "import", "--config", b.config, filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errOut, "missing") {
		t.Errorf("import of a missing file: exit %d %q", code, errOut)
	}
}

// TestBackupCommand: opmond backup writes a copy that a daemon serves as
// the original, and leaves nothing else behind.
func TestBackupCommand(t *testing.T) {
	dir := t.TempDir()
	a := startServe(t, filepath.Join(dir, "a"), "")
	base := time.Now().Unix() - 3600
	lines := testLines(t, 3000, base)
	if code, out, errOut := testbin.Run(t, lines, "import", "--config", a.config, "-"); code != 0 {
		t.Fatalf("import: exit %d %q %q", code, out, errOut)
	}
	outDir := filepath.Join(dir, "backups")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(outDir, "op.db")
	if err := os.WriteFile(backup, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := testbin.Run(t, nil, "backup", "--config", a.config, "--out", backup)
	if code != 0 || !strings.HasPrefix(out, "wrote "+backup+": ") {
		t.Fatalf("backup: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	bdb, err := bolt.Open(backup, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check of the backup: %v", err)
		}
		return nil
	})
	bdb.Close()
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Errorf("backup folder holds %d entries, want only the backup", len(ents))
	}
	c := startServe(t, filepath.Join(dir, "c"), backup)
	to := fmt.Sprint(time.Now().Unix())
	if code, q, errOut := testbin.Run(t, nil, "query", "--config", c.config, "--from", "0", "--to", to); code != 0 || q != string(lines) {
		t.Errorf("query of the backup: exit %d, stderr %q, %d bytes, want %d", code, errOut, len(q), len(lines))
	}
	if code, _, errOut := testbin.Run(t, nil, "backup", "--config", a.config); code != 2 || errOut == "" {
		t.Errorf("backup without --out: exit %d %q", code, errOut)
	}
	noAdmin := filepath.Join(dir, "noadmin.toml")
	if err := os.WriteFile(noAdmin, []byte("[admin]\nlisten = \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := testbin.Run(t, nil, "backup", "--config", noAdmin, "--out", filepath.Join(dir, "x.db")); code != 1 || !strings.Contains(errOut, "admin.listen") {
		t.Errorf("backup without admin listener: exit %d %q", code, errOut)
	}
}
