package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// rawRequest writes one HTTP/1.1 request on c and reads the answer.
func rawRequest(t *testing.T, c net.Conn, br *bufio.Reader, method, path, ctype, body string) (int, string) {
	t.Helper()
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", method, path, ctype, len(body), body)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func dial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// closedWithin reports whether the server closes c within d (reading ends
// with EOF or a reset rather than a timeout; an answer before, such as
// 408, is skipped).
func closedWithin(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

const okStore = `{"records":[{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true}]}`

// TestIdleTimeouts: kept-alive connections are closed after the idle
// timeout on both listeners, and so is a client that sends its request
// slower than that.
func TestIdleTimeouts(t *testing.T) {
	idle := 300 * time.Millisecond
	td := startDaemonWith(t, testConfig(t, t.TempDir()), Options{IdleTimeout: idle, AdminIdleTimeout: idle})
	for _, tc := range []struct{ url, method, path, ctype, body string }{
		{td.url, "POST", "/store_data", "application/json", okStore},
		{td.adminURL, "GET", "/healthz", "text/plain", ""},
	} {
		c, br := dial(t, tc.url)
		if status, b := rawRequest(t, c, br, tc.method, tc.path, tc.ctype, tc.body); status != 200 {
			t.Fatalf("%s: %d %s", tc.path, status, b)
		}
		start := time.Now()
		if !closedWithin(c, br, 5*time.Second) {
			t.Errorf("%s: idle connection still open after 5 s", tc.path)
		} else if took := time.Since(start); took < idle/2 {
			t.Errorf("%s: idle connection closed after %v, before the timeout", tc.path, took)
		}
		// Half a request, then nothing.
		c, br = dial(t, tc.url)
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n", tc.method, tc.path)
		if !closedWithin(c, br, 5*time.Second) {
			t.Errorf("%s: slow request not cut off after 5 s", tc.path)
		}
	}
}

// TestConnectionCap: at max-connections a new connection closes the one
// idle longest; when none is idle it is closed at once. The admin listener
// keeps at most 64.
func TestConnectionCap(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.MaxConnections = 3
	td := startDaemon(t, cfg, nil)
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	var cs []conn
	for i := 0; i < 3; i++ {
		c, br := dial(t, td.url)
		if status, _ := rawRequest(t, c, br, "POST", "/store_data", "application/json", okStore); status != 200 {
			t.Fatal(status)
		}
		cs = append(cs, conn{c, br})
		time.Sleep(10 * time.Millisecond) // distinct idle times
	}
	c4, br4 := dial(t, td.url)
	if status, b := rawRequest(t, c4, br4, "POST", "/store_data", "application/json", okStore); status != 200 {
		t.Fatalf("the 4th connection: %d %s", status, b)
	}
	if !closedWithin(cs[0].c, cs[0].br, 2*time.Second) {
		t.Error("the connection idle longest was not closed")
	}
	if closedWithin(cs[1].c, cs[1].br, 50*time.Millisecond) {
		t.Error("a younger idle connection was closed")
	}
	// Make all three busy: a body that never completes.
	for _, c := range []conn{cs[1], cs[2], {c4, br4}} {
		fmt.Fprintf(c.c, "POST /store_data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	}
	time.Sleep(100 * time.Millisecond)
	c5, br5 := dial(t, td.url)
	if !closedWithin(c5, br5, 2*time.Second) {
		t.Error("a connection beyond the cap with none idle was not closed")
	}
	if td.xlim.open() != 3 {
		t.Errorf("%d connections open, want 3", td.xlim.open())
	}

	var admin []conn
	for i := 0; i < adminMaxConnections; i++ {
		c, br := dial(t, td.adminURL)
		if status, _ := rawRequest(t, c, br, "GET", "/healthz", "text/plain", ""); status != 200 {
			t.Fatal(status)
		}
		admin = append(admin, conn{c, br})
		time.Sleep(5 * time.Millisecond) // the server marks it idle after answering
	}
	c, br := dial(t, td.adminURL)
	if status, _ := rawRequest(t, c, br, "GET", "/healthz", "text/plain", ""); status != 200 {
		t.Fatalf("admin connection 65: %d", status)
	}
	if !closedWithin(admin[0].c, admin[0].br, 2*time.Second) {
		t.Errorf("admin: the connection idle longest was not closed (%d open, %d evicted)", td.alim.open(), td.alim.evicted)
	}
}

// TestBodyBudget: a request whose body does not fit in
// max-inflight-request-bytes waits, then gets the busy error (store JSON,
// query SOAP fault); once the budget is free it is served.
func TestBodyBudget(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.MaxRequestBytes = 64 << 10
	cfg.OpMonitor.MaxInflightBytes = 64 << 10
	td := startDaemon(t, cfg, nil)
	td.budget.wait = 200 * time.Millisecond
	// 16 KiB of store body hold the whole budget (storeBodyWeight) and never
	// complete; fasthttp reads the first 8 KiB before the handler runs.
	hold, holdBr := dial(t, td.url)
	fmt.Fprintf(hold, "POST /store_data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16384\r\n\r\n%s", strings.Repeat(" ", 9000))
	time.Sleep(100 * time.Millisecond)
	status, _, b := td.post("/store_data", "application/json", []byte(okStore))
	if status != 200 || !strings.HasPrefix(string(b), `{"status":"Error","errorMessage":"server busy`) {
		t.Errorf("store while busy: %d %s", status, b)
	}
	query := schema.BuildQueryRequest(schema.QuerySpec{As: clientOf(ownerID), Server: serverOf(serverID), To: 2000}, 0)
	status, _, b = td.post("/query_data", "text/xml", query)
	if status != 200 || !strings.Contains(string(b), "<faultstring>server busy") {
		t.Errorf("query while busy: %d %s", status, b)
	}
	hold.Close()
	_ = holdBr
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _, b = td.post("/store_data", "application/json", []byte(okStore))
		if string(b) == `{"status":"OK"}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store after the budget was freed: %d %s", status, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreFaults: ENOSPC and EIO on the commit's write and fsync give the
// store JSON error naming the cause and /readyz 503; both recover by
// themselves when the fault is gone, and nothing acknowledged is lost.
func TestStoreFaults(t *testing.T) {
	var fault atomic.Pointer[struct {
		op  storage.FaultOp
		err error
	}]
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	td := startDaemonWith(t, cfg, Options{DBFault: func(op storage.FaultOp) error {
		if f := fault.Load(); f != nil && f.op == op {
			return f.err
		}
		return nil
	}})
	acked := 0
	for _, tc := range []struct {
		op   storage.FaultOp
		err  error
		want string
	}{
		{storage.FaultWrite, syscall.ENOSPC, "no space left on device"},
		{storage.FaultSync, syscall.EIO, "input/output error"},
		{storage.FaultWrite, syscall.EIO, "input/output error"},
		{storage.FaultSync, syscall.ENOSPC, "no space left on device"},
	} {
		fault.Store(&struct {
			op  storage.FaultOp
			err error
		}{tc.op, tc.err})
		status, _, b := td.post("/store_data", "application/json", []byte(okStore))
		if status != 200 || !strings.HasPrefix(string(b), `{"status":"Error","errorMessage":"database error: `) || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %v: store answered %d %s", tc.op, tc.err, status, b)
		}
		status, _, b = doRequest(t, http.MethodGet, td.adminURL+"/readyz", "", nil)
		if status != http.StatusServiceUnavailable || !strings.Contains(string(b), "last commit failed") || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %v: readyz %d %s", tc.op, tc.err, status, b)
		}
		fault.Store(nil)
		td.store(jrec())
		acked++
		if status, _, b = doRequest(t, http.MethodGet, td.adminURL+"/readyz", "", nil); status != http.StatusOK {
			t.Errorf("%s %v: readyz after recovery %d %s", tc.op, tc.err, status, b)
		}
	}
	if n := len(td.all()); n != acked {
		t.Errorf("%d records stored, %d acknowledged", n, acked)
	}
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(cfg.OpMonitor.Database, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("tx.Check: %v", err)
	}
}

// TestBackgroundTaskPanic: a background task that panics is logged at
// error, counted in opmond_background_errors_total{task} and started again.
func TestBackgroundTaskPanic(t *testing.T) {
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	var runs atomic.Int32
	again := make(chan struct{})
	td.goRun("test-task", func() {
		if runs.Add(1) == 1 {
			panic("schedule is nil")
		}
		close(again)
	})
	select {
	case <-again:
	case <-time.After(10 * time.Second):
		t.Fatal("the task was not started again after its panic")
	}
	_, _, b := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	if !strings.Contains(string(b), `opmond_background_errors_total{task="test-task"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(string(b), "background"))
	}
	if logs := td.logs.String(); !strings.Contains(logs, `"level":"error","task":"test-task"`) || !strings.Contains(logs, "panic: schedule is nil") {
		t.Errorf("log:\n%s", logs)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPurgeFailureCounted: a purge that cannot commit is an error in the
// log and in opmond_background_errors_total{task="purge"}.
func TestPurgeFailureCounted(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock(1760000000)
	td := startDaemon(t, testConfig(t, dir), clock.Now)
	td.store(jrec())
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(400 * 24 * time.Hour) // past keep-records-for-days
	td = startDaemonWith(t, testConfig(t, dir), Options{Now: clock.Now, DBFault: func(storage.FaultOp) error { return syscall.EIO }})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(td.logs.String(), "background task failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no purge failure logged:\n%s", td.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, b := doRequest(t, http.MethodGet, td.adminURL+"/metrics", "", nil)
	if !strings.Contains(string(b), `opmond_background_errors_total{task="purge"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(string(b), "background"))
	}
}

// TestNewValidates: New derives the parsed configuration itself, so a
// configuration nobody validated runs its purge; a bad one is refused.
func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "op.db")
	cfg.GlobalConf.Directory = filepath.Join(dir, "none")
	cfg.Admin.Listen = ""
	logs := &syncBuffer{}
	d, err := New(cfg, Options{LogWriter: logs, Listener: mustListen(t)})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "purged old records") {
		if time.Now().After(deadline) {
			t.Fatalf("purge did not run:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	bad := Default()
	bad.OpMonitor.Database = filepath.Join(dir, "op2.db")
	bad.OpMonitor.CleanInterval = "every full moon"
	if _, err := New(bad, Options{LogWriter: io.Discard, Listener: mustListen(t)}); err == nil || !strings.Contains(err.Error(), "op-monitor.clean-interval") {
		t.Errorf("New with a bad clean-interval: %v", err)
	}
}

// TestListenerFailureEndsRun: a listener that cannot serve any more makes
// run return its error (serve then exits 1), and /readyz says so meanwhile.
func TestListenerFailureEndsRun(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	ln := mustListen(t)
	logs := &syncBuffer{}
	d, err := New(cfg, Options{LogWriter: logs, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.run(context.Background(), nil) }()
	time.Sleep(50 * time.Millisecond)
	ln.Close() // what no retry can mend
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "X-Road listener on "+ln.Addr().String()+" cannot serve") {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the listener failed")
	}
	if p := d.failedErr.Load(); p == nil || !strings.Contains((*p).Error(), "cannot serve") {
		t.Errorf("readiness does not know the failure: %v", p)
	}
	if !strings.Contains(logs.String(), "opmond stopped") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestAcceptBackoff: a temporary accept error (EMFILE) is retried, shows in
// readiness while it lasts, and accepting resumes.
func TestAcceptBackoff(t *testing.T) {
	inner := mustListen(t)
	fl := &failingListener{Listener: inner}
	fl.fail.Store(true)
	l := newConnLimiter(fl, "test listener", 10, mustLogger(t))
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			got <- c
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.down(); !errors.Is(err, syscall.EMFILE) {
		t.Errorf("down() = %v while accept fails", err)
	}
	fl.fail.Store(false)
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-got:
		sc.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not resume")
	}
	if err := l.down(); err != nil {
		t.Errorf("down() = %v after recovery", err)
	}
}

type failingListener struct {
	net.Listener
	fail atomic.Bool
}

func (f *failingListener) Accept() (net.Conn, error) {
	if f.fail.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

func mustLogger(t *testing.T) *Logger {
	t.Helper()
	l, err := NewLogger(Default().Log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestStoreChunked: the security server sends store bodies chunked; one
// of exactly max-request-bytes is stored, one byte more is 413.
func TestStoreChunked(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.OpMonitor.MaxRequestBytes = 300 << 10
	td := startDaemon(t, cfg, nil)
	var recs []string
	size := len(`{"records":[]}`) - 1 // no comma before the first
	for i := 0; ; i++ {
		r := fmt.Sprintf(`{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true,"messageId":"m%06d"}`, i)
		if size += len(r) + 1; size > int(cfg.OpMonitor.MaxRequestBytes) {
			break
		}
		recs = append(recs, r)
	}
	body := `{"records":[` + strings.Join(recs, ",") + `]}`
	body += strings.Repeat(" ", int(cfg.OpMonitor.MaxRequestBytes)-len(body)) // exactly the limit
	post := func(b string) (int, string) {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(b); i += 1000 {
				_, _ = pw.Write([]byte(b[i:min(i+1000, len(b))]))
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, td.url+"/store_data", pr)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(a)
	}
	if status, a := post(body); status != 200 || a != `{"status":"OK"}` {
		t.Fatalf("chunked body of the limit: %d %s", status, a)
	}
	if n := len(td.all()); n != len(recs) {
		t.Errorf("%d records stored, %d sent", n, len(recs))
	}
	if status, a := post(body + " "); status != http.StatusRequestEntityTooLarge || a != `{"status":"Error","errorMessage":"request body exceeds 307200 bytes"}` {
		t.Errorf("one byte over: %d %s", status, a)
	}
}
