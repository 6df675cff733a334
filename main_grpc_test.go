package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/opmond/opmond/daemon/grpcserver/grpctest"
	pb "github.com/opmond/opmond/daemon/opmonrpc"
	"github.com/opmond/opmond/internal/testbin"
)

// grpcConfig writes a configuration with the gRPC interface on loopback.
func grpcConfig(t *testing.T, dir string, ks grpctest.Store) string {
	t.Helper()
	cfg := filepath.Join(dir, "opmond.toml")
	content := fmt.Sprintf(`[op-monitor]
host = "127.0.0.1"
port = %d
database = "db/op.db"
[admin]
listen = ""
[grpc]
listen = "127.0.0.1:0"
tls = "internal"
keystore = %q
password-file = %q
[log]
level = "info"
`, testbin.FreePort(t), ks.Keystore, ks.PasswordFile)
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServeGRPCWrongPassword: serve (the real binary) with a password file
// that does not open the key store exits 1 with one line naming the key;
// check-config says the same.
func TestServeGRPCWrongPassword(t *testing.T) {
	bin := testbin.Path(t)
	dir := t.TempDir()
	ks := grpctest.Make(t, dir, "xroad-grpc-internal-keystore", "the-right-one", true)
	cfg := grpcConfig(t, dir, ks)
	if out, err := exec.Command(bin, "check-config", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("check-config with the right password: %v\n%s", err, out)
	}
	ks.WritePasswordFile(t, "a-wrong-one")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatal("serve did not stop on a wrong password")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve: %v, want exit 1; stderr:\n%s", err, stderr.String())
	}
	msg := fmt.Sprintf(`grpc.keystore = %q: wrong password (the XROAD_COMMON_GRPC_INTERNAL_KEYSTORE_PASSWORD of grpc.password-file %q)`, ks.Keystore, ks.PasswordFile)
	want := "opmond: " + msg
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	// serve reports a start-up error as one event in the configured log format.
	var last struct{ Level, Error string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "error" || last.Error != msg {
		t.Errorf("last line %q\nwant an error event with %q", lines[len(lines)-1], msg)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "{") || strings.Contains(l, "wrong-one") {
			t.Errorf("other stderr line %q", l)
		}
	}

	out, err := exec.Command(bin, "check-config", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || strings.TrimSpace(string(out)) != want {
		t.Errorf("check-config: %v\n%s", err, out)
	}
}

// TestServeGRPC runs the real binary with the gRPC interface as a security
// server's would: records stored over HTTP are counted over gRPC with
// mutual TLS, SIGHUP takes a new key store, SIGTERM stops it.
func TestServeGRPC(t *testing.T) {
	bin := testbin.Path(t)
	dir := t.TempDir()
	ks := grpctest.Make(t, dir, "xroad-grpc-internal-keystore", "first-password", true)
	cfg := grpcConfig(t, dir, ks)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case logs <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
		close(logs)
	}()
	waitLog := func(re *regexp.Regexp) []string {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-logs:
				if !ok {
					t.Fatal("serve exited")
				}
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("no log line matching %s", re)
			}
		}
	}
	var storeURL, grpcAddr string
	for storeURL == "" || grpcAddr == "" {
		m := waitLog(regexp.MustCompile(`"listen":"([^"]+)".*"message":"(opmond started|gRPC interface started)"`))
		if m[2] == "opmond started" {
			storeURL = "http://" + m[1] + "/store_data"
		} else {
			grpcAddr = m[1]
		}
	}
	body := `{"records":[
		{"securityServerInternalIp":"10.0.0.1","securityServerType":"Client","requestInTs":1760000100000,"responseOutTs":1760000100050,"succeeded":true},
		{"securityServerInternalIp":"10.0.0.1","securityServerType":"Producer","requestInTs":1760000159999,"responseOutTs":1760000160050,"succeeded":false},
		{"securityServerInternalIp":"10.0.0.1","securityServerType":"Client","requestInTs":1760000160000,"responseOutTs":1760000160050,"succeeded":true}]}`
	resp, err := http.Post(storeURL, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"status":"OK"}` {
		t.Fatalf("store: %s", b)
	}
	count := func(s grpctest.Store) ([]string, error) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(grpctest.ClientTLS(s, &s.Cert))))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := pb.NewOpMonitorServiceClient(conn).GetOperationalDataIntervals(ctx, &pb.GetOperationalDataIntervalsReq{
			RecordsFrom: 1760000100000, RecordsTo: 1760000159999, IntervalInMinutes: 1})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, iv := range r.GetOperationalDataInterval() {
			out = append(out, fmt.Sprintf("%d:%d/%d", iv.GetTimeIntervalStart().GetSeconds(), iv.GetSuccessCount(), iv.GetFailureCount()))
		}
		return out, nil
	}
	// The minute 1760000100 plus the inclusive last bucket at 1760000160.
	want := "[1760000100:1/1 1760000160:1/0]"
	if got, err := count(ks); err != nil || fmt.Sprint(got) != want {
		t.Fatalf("got %v, %v; want %s", got, err, want)
	}

	// xroad-base restarted: a new key store and password; SIGHUP takes them.
	fresh := grpctest.Make(t, t.TempDir(), "new", "second-password", false)
	for from, to := range map[string]string{fresh.Keystore: ks.Keystore, fresh.PasswordFile: ks.PasswordFile} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(regexp.MustCompile(`gRPC key store reloaded`))
	if got, err := count(fresh); err != nil || fmt.Sprint(got) != want {
		t.Errorf("after SIGHUP: got %v, %v", got, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range logs {
	}
	if err := <-exited; err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	exited <- nil // for the deferred cleanup
}
