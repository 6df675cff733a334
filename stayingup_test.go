package main

// The "Staying up" promises of interface.md, held against the real binary:
// built once here and run as an operator would.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/opmond/opmond/internal/testbin"
	"github.com/opmond/opmond/internal/testload"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// proc is one running opmond process.
type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	url      string // store/query base
	adminURL string
	logs     *syncWriter
	logBuf   *bytes.Buffer
	exited   chan struct{}
	err      error
}

// startOpmond runs `opmond serve` on a database in dir with extra
// [op-monitor] keys, optionally under a wrapper command (prlimit), and waits
// until /readyz answers.
func startOpmond(t *testing.T, dir, opMonitorKeys string, wrapper ...string) *proc {
	t.Helper()
	port, aport := testbin.FreePort(t), testbin.FreePort(t)
	cfg := filepath.Join(dir, "opmond.toml")
	content := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\ndatabase = %q\n%s\n[admin]\nlisten = \"127.0.0.1:%d\"\n[log]\nlevel = \"info\"\n",
		port, filepath.Join(dir, "db", "op.db"), opMonitorKeys, aport)
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, wrapper...), testbin.Path(t), "serve", "--config", cfg)
	cmd := exec.Command(args[0], args[1:]...)
	var buf bytes.Buffer
	p := &proc{t: t, cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), adminURL: fmt.Sprintf("http://127.0.0.1:%d", aport),
		logBuf: &buf, exited: make(chan struct{})}
	p.logs = &syncWriter{w: &buf}
	cmd.Stderr = p.logs
	cmd.Stdout = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("opmond log:\n%s", p.log())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := p.get("/readyz"); code == http.StatusOK {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("opmond exited at start: %v\n%s", p.err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opmond not ready:\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) log() string {
	p.logs.mu.Lock()
	defer p.logs.mu.Unlock()
	return p.logBuf.String()
}

func (p *proc) get(path string) (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(p.adminURL + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stop sends sig and waits for the exit; it returns the exit code and how
// long the process took to exit.
func (p *proc) stop(sig syscall.Signal) (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		p.t.Fatalf("opmond did not exit on %v:\n%s", sig, p.log())
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// storeBody is a store request of n records with the given message ids.
func storeBody(ids ...string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"records":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"securityServerInternalIp":"10.0.0.1","securityServerType":"Client","requestInTs":1760000000000,"responseOutTs":1760000000100,"succeeded":true,"messageId":%q}`, id)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func postStore(hc *http.Client, url string, body []byte) (string, error) {
	resp, err := hc.Post(url+"/store_data", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// loadResult collects what keep-alive senders had acknowledged.
type loadResult struct {
	mu    sync.Mutex
	acked []string
}

// sendLoad runs n keep-alive senders of 5-record batches until stop.
func sendLoad(url, tag string, n int, res *loadResult, stop <-chan struct{}) *sync.WaitGroup {
	return testload.Senders(n, 20*time.Second, stop, func(hc *http.Client, w, i int) {
		ids := make([]string, 5)
		for k := range ids {
			ids[k] = fmt.Sprintf("%s-w%d-%d-%d", tag, w, i, k)
		}
		answer, err := postStore(hc, url, storeBody(ids...))
		if err != nil {
			time.Sleep(5 * time.Millisecond) // refused while the daemon is down
			return
		}
		if answer == `{"status":"OK"}` {
			res.mu.Lock()
			res.acked = append(res.acked, ids...)
			res.mu.Unlock()
		}
	})
}

// checkDatabase verifies the file with bbolt's consistency check, then that
// every acknowledged id is stored exactly once and no id twice.
func checkDatabase(t *testing.T, path string, acked []string) int {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	bdb.Close()
	if err != nil {
		t.Fatalf("tx.Check: %v", err)
	}
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seen := map[string]int{}
	_, err = db.Query(context.Background(), storage.Query{From: 0, To: 1 << 62, Max: 1 << 30}, func(r *schema.Record) error {
		seen[r.Str(schema.FMessageID)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("record %s stored %d times", id, n)
		}
	}
	missing := 0
	for _, id := range acked {
		if seen[id] != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged records missing", missing, len(acked))
	}
	return len(seen)
}

// TestBinarySIGTERMUnderLoad: SIGTERM while 8 keep-alive senders store,
// 10 times over the same database: always exit 0 with the "stopped" line
// last, and every acknowledged record is there afterwards.
func TestBinarySIGTERMUnderLoad(t *testing.T) {
	dir := t.TempDir()
	res := &loadResult{}
	var took []time.Duration
	for round := 0; round < 10; round++ {
		p := startOpmond(t, dir, "")
		stop := make(chan struct{})
		wg := sendLoad(p.url, fmt.Sprintf("r%d", round), 8, res, stop)
		time.Sleep(150 * time.Millisecond)
		code, d := p.stop(syscall.SIGTERM)
		close(stop)
		wg.Wait()
		took = append(took, d)
		lines := strings.Split(strings.TrimSpace(p.log()), "\n")
		if code != 0 || !strings.Contains(lines[len(lines)-1], "opmond stopped") {
			t.Fatalf("round %d: exit %d, last line %q", round, code, lines[len(lines)-1])
		}
	}
	n := checkDatabase(t, filepath.Join(dir, "db", "op.db"), res.acked)
	t.Logf("%d acknowledged, %d stored; shutdown took (median) %v", len(res.acked), n, median(took))
}

// TestBinarySIGKILL: SIGKILL at random moments under load; after each a
// restart finds every acknowledged record exactly once and the file passes
// tx.Check. OPMOND_CRASH_ROUNDS sets the number of kills (default 5).
func TestBinarySIGKILL(t *testing.T) {
	rounds := 5
	if s := os.Getenv("OPMOND_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("OPMOND_CRASH_ROUNDS=%q", s)
		}
		rounds = n
	}
	dir := t.TempDir()
	res := &loadResult{}
	for round := 0; round < rounds; round++ {
		p := startOpmond(t, dir, "")
		stop := make(chan struct{})
		wg := sendLoad(p.url, fmt.Sprintf("k%d", round), 8, res, stop)
		ms, _ := rand.Int(rand.Reader, big.NewInt(400))
		time.Sleep(time.Duration(50+ms.Int64()) * time.Millisecond)
		_, _ = p.stop(syscall.SIGKILL)
		close(stop)
		wg.Wait()
		checkDatabase(t, filepath.Join(dir, "db", "op.db"), res.acked)
	}
	t.Logf("%d kills, %d acknowledged records", rounds, len(res.acked))
}

// TestBinaryEMFILE: under `prlimit --nofile=256` a burst of 400 idle
// connections exhausts the descriptors; the listener keeps retrying and
// serves again as soon as they are closed.
func TestBinaryEMFILE(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	p := startOpmond(t, t.TempDir(), "", prlimit, "--nofile=256:256")
	addr := strings.TrimPrefix(p.url, "http://")
	var burst []net.Conn
	for i := 0; i < 400; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		burst = append(burst, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log(), "too many open files") {
		if time.Now().After(deadline) {
			t.Fatal("the burst did not exhaust the descriptors")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	for _, c := range burst {
		c.Close()
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if answer, err := postStore(hc, p.url, storeBody("after-emfile")); err == nil && answer == `{"status":"OK"}` {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("no recovery after the descriptors were freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("stores again %v after the burst closed", time.Since(start))
	if !strings.Contains(p.log(), `"message":"accepting again"`) {
		t.Error("no log line says accepting resumed")
	}
	if code, body := p.get("/readyz"); code != http.StatusOK {
		t.Errorf("readyz after recovery: %d %s", code, body)
	}
	if code, _ := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestBinaryDiskFull: the database on a small tmpfs; with the disk full a
// store gets the JSON error and /readyz 503, both recover when space
// returns, and nothing acknowledged is lost.
func TestBinaryDiskFull(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	p := startOpmond(t, mnt, "")
	hc := &http.Client{Timeout: 10 * time.Second}
	var acked []string
	if answer, err := postStore(hc, p.url, storeBody("before-full")); err != nil || answer != `{"status":"OK"}` {
		t.Fatalf("store: %s %v", answer, err)
	}
	acked = append(acked, "before-full")
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	// Random ids do not compress: the batch needs new pages.
	batch := func(tag string) ([]byte, []string) {
		ids := make([]string, 3000)
		for i := range ids {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			ids[i] = tag + hex.EncodeToString(b)
		}
		return storeBody(ids...), ids
	}
	body, _ := batch("full-")
	answer, err := postStore(hc, p.url, body)
	if err != nil || !strings.HasPrefix(answer, `{"status":"Error","errorMessage":"`) || !strings.Contains(answer, "no space left on device") {
		t.Fatalf("store on a full disk: %s %v", answer, err)
	}
	code, reason := p.get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(reason, "no space left on device") {
		t.Errorf("readyz on a full disk: %d %s", code, reason)
	}
	t.Logf("full disk: store %s; readyz %d %s", answer, code, reason)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	body, ids := batch("after-")
	if answer, err := postStore(hc, p.url, body); err != nil || answer != `{"status":"OK"}` {
		t.Fatalf("store after space returned: %s %v", answer, err)
	}
	acked = append(acked, ids...)
	if code, reason = p.get("/readyz"); code != http.StatusOK {
		t.Errorf("readyz after space returned: %d %s", code, reason)
	}
	if code, _ := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
	checkDatabase(t, filepath.Join(mnt, "db", "op.db"), acked)
}

// TestBinaryBigBodies: 8 concurrent 40 MB batches; every request gets an
// answer and peak RSS stays under 400 MiB (max-inflight-request-bytes is
// 96 MiB).
func TestBinaryBigBodies(t *testing.T) {
	p := startOpmond(t, t.TempDir(), "max-request-bytes = 50331648\nmax-inflight-request-bytes = 100663296")
	var b bytes.Buffer
	b.WriteString(`{"records":[`)
	for i := 0; b.Len() < 40<<20; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"securityServerInternalIp":"10.0.0.1","securityServerType":"Client","requestInTs":1760000000000,"responseOutTs":1760000000100,"succeeded":true,"messageId":"big-%d","serviceCode":"getRandom","clientMemberCode":"member%d"}`, i, i%97)
	}
	b.WriteString(`]}`)
	body := b.Bytes()
	var wg sync.WaitGroup
	answers := make([]string, 8)
	start := time.Now()
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 2 * time.Minute}
			a, err := postStore(hc, p.url, body)
			if err != nil {
				a = "error: " + err.Error()
			}
			answers[i] = a
		}()
	}
	wg.Wait()
	ok := 0
	for i, a := range answers {
		switch {
		case a == `{"status":"OK"}`:
			ok++
		case strings.Contains(a, "server busy"):
		default:
			t.Errorf("request %d: %.200s", i, a)
		}
	}
	hwm := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("8 × %d MB: %d stored, %d busy, in %v; peak RSS %d MiB", len(body)>>20, ok, 8-ok, time.Since(start).Round(time.Millisecond), hwm>>20)
	if ok == 0 {
		t.Error("no batch was stored")
	}
	if hwm > 400<<20 {
		t.Errorf("peak RSS %d MiB, want under 400 MiB", hwm>>20)
	}
}

// peakRSS reads VmHWM of a process.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestBinaryChunkedTooLarge: a chunked body that passes max-request-bytes
// is answered with 413 and the endpoint's own body while it is still
// arriving (its end never comes), on both endpoints, counted in the metrics
// and logged with its path.
func TestBinaryChunkedTooLarge(t *testing.T) {
	p := startOpmond(t, t.TempDir(), "max-request-bytes = 1048576")
	for _, tc := range []struct{ path, ctype, want string }{
		{"/store_data", "application/json", `{"status":"Error","errorMessage":"request body exceeds 1048576 bytes"}`},
		{"/query_data", "text/xml", "<faultstring>request body exceeds 1048576 bytes</faultstring>"},
	} {
		status, body := chunkedFlood(t, strings.TrimPrefix(p.url, "http://"), tc.path, tc.ctype)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %q", tc.path, status, body)
		}
	}
	_, metrics := p.get("/metrics")
	for _, want := range []string{`opmond_store_requests_total{result="error"} 1`, `opmond_query_requests_total{operation="other",result="fault"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(p.log(), `"path":"/store_data"`) {
		t.Errorf("log does not name the path:\n%s", p.log())
	}
}

// chunkedFlood sends a chunked body that never ends: 1 MiB beyond the
// limit, then nothing more; a daemon that waited for the end of the body
// would never answer.
func chunkedFlood(t *testing.T, addr, path, ctype string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, ctype)
	go func() {
		chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 32<<10, strings.Repeat(" ", 32<<10)))
		for sent := 0; sent < 2<<20; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestBinaryListenerFailure: when the store/query listener stops working
// for good (here its socket is shut down from outside, through a duplicate
// taken with pidfd_getfd), serve exits 1 with one line naming it.
func TestBinaryListenerFailure(t *testing.T) {
	p := startOpmond(t, t.TempDir(), "")
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	port, _ := strconv.Atoi(portStr)
	pidfd, err := unix.PidfdOpen(p.cmd.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (needs Linux 5.6)", err)
	}
	defer unix.Close(pidfd)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range fds {
		target, _ := strconv.Atoi(e.Name())
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				t.Skipf("pidfd_getfd: %v (needs ptrace rights over the daemon)", err)
			}
			continue
		}
		sa, _ := unix.Getsockname(fd)
		acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if in4, ok := sa.(*unix.SockaddrInet4); ok && in4.Port == port && acc == 1 {
			// Shutting down a listening socket ends it for every
			// descriptor of it: accept fails with EINVAL.
			if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil {
				t.Fatal(err)
			}
			found = true
		}
		unix.Close(fd)
	}
	if !found {
		t.Fatal("the listening socket was not found")
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("opmond did not exit:\n%s", p.log())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(p.log()), "\n")
	last := lines[len(lines)-1]
	// One clear line: the exit's error event in the configured log format.
	var ev struct{ Level, Error string }
	if want := "X-Road listener on 127.0.0.1:" + portStr + " cannot serve: "; json.Unmarshal([]byte(last), &ev) != nil ||
		ev.Level != "error" || !strings.HasPrefix(ev.Error, want) {
		t.Errorf("last line %q, want an error event starting with %q", last, want)
	}
	t.Logf("last line: %s", last)
}
