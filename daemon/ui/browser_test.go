package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/opmond/opmond/internal/testbin"
)

// chromium finds a Chromium or Chrome binary: $OPMOND_CHROMIUM, else the
// usual names on PATH.
func chromium() string {
	if p := os.Getenv("OPMOND_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// opmond is the real binary serving a fresh database on loopback.
type opmond struct {
	storeURL, adminURL string
	logs               *bytes.Buffer
}

func TestMain(m *testing.M) { testbin.Main(m) }

// startOpmond runs the real binary's `opmond serve` with a configuration
// of its own; the process is stopped with SIGTERM when the test ends.
func startOpmond(t *testing.T) *opmond {
	t.Helper()
	dir := t.TempDir()
	bin := testbin.Path(t)
	port, admin := testbin.FreePort(t), testbin.FreePort(t)
	cfg := fmt.Sprintf(`[op-monitor]
host = "127.0.0.1"
port = %d
database = "data/opmonitor.db"
records-available-timestamp-offset-seconds = 0

[global-conf]
directory = "no-globalconf"

[admin]
listen = "127.0.0.1:%d"

[log]
level = "warn"
`, port, admin)
	cfgPath := filepath.Join(dir, "opmond.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &opmond{
		storeURL: fmt.Sprintf("http://127.0.0.1:%d", port),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", admin),
		logs:     &bytes.Buffer{},
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = o.logs, o.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("opmond exit: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("opmond did not stop within 30 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("opmond log:\n%s", o.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(o.adminURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return o
			}
		}
		select {
		case err := <-done:
			t.Fatalf("opmond exited: %v\n%s", err, o.logs)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("opmond not up after 20 s\n%s", o.logs)
		}
	}
}

// store sends one store request through /store_data, as a security server does.
func (o *opmond) store(t *testing.T, recs []map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"records": recs})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(o.storeURL+"/store_data", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct{ Status, ErrorMessage string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.Status != "OK" {
		t.Fatalf("store: %v %+v", err, ans)
	}
}

type service struct {
	member, subsystem, code, version string
}

func (s service) String() string {
	id := "DEV/GOV/" + s.member + "/" + s.subsystem + "/" + s.code
	if s.version != "" {
		id += "/" + s.version
	}
	return id
}

const testFault = "server.serverproxy.service_failed.http_error"

// record is a Producer (or Client) record of s whose request arrived at reqIn.
func record(s service, typ string, reqIn time.Time, ok bool, n int) map[string]any {
	ms := reqIn.UnixMilli()
	r := map[string]any{
		"securityServerInternalIp": "10.0.0.1", "securityServerType": typ,
		"requestInTs": ms, "requestOutTs": ms + 4, "responseInTs": ms + 40 + int64(n%70), "responseOutTs": ms + 45 + int64(n%70),
		"clientXRoadInstance": "DEV", "clientMemberClass": "COM", "clientMemberCode": "1234", "clientSubsystemCode": "Portal",
		"serviceXRoadInstance": "DEV", "serviceMemberClass": "GOV", "serviceMemberCode": s.member,
		"serviceSubsystemCode": s.subsystem, "serviceCode": s.code,
		"messageId": fmt.Sprintf("msg-%d", n), "messageProtocolVersion": "4.0", "serviceType": "WSDL",
		"requestSize": 900 + n%500, "responseSize": 2000 + n%3000, "succeeded": ok, "xRoadVersion": "7.8.0",
	}
	if s.version != "" {
		r["serviceVersion"] = s.version
	}
	if !ok {
		r["faultCode"] = testFault
		r["faultString"] = "Server returned HTTP error 500 for request " + r["messageId"].(string)
	}
	return r
}

// pageWatch collects what the page does: every request it sends, every
// JavaScript exception and console or browser-log error, every navigation.
type pageWatch struct {
	mu          sync.Mutex
	requests    []string
	errors      []string
	navigations int
}

func (w *pageWatch) listen(ev any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		w.requests = append(w.requests, e.Request.URL)
	case *cdpruntime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		w.errors = append(w.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *cdpruntime.EventConsoleAPICalled:
		if e.Type == cdpruntime.ConsoleAPICalledTypeError || e.Type == cdpruntime.ConsoleAPICalledTypeWarning || e.Type == cdpruntime.ConsoleAPICalledTypeAssert {
			var b strings.Builder
			for _, a := range e.Args {
				b.WriteString(string(a.Value) + a.Description + " ")
			}
			w.errors = append(w.errors, "console."+string(e.Type)+": "+b.String())
		}
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
			w.errors = append(w.errors, "log "+string(e.Entry.Source)+": "+e.Entry.Text+" "+e.Entry.URL)
		}
	case *page.EventFrameNavigated:
		if e.Frame.ParentID == "" {
			w.navigations++
		}
	}
}

func (w *pageWatch) snapshot() (requests, errors []string, navigations int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.requests...), append([]string(nil), w.errors...), w.navigations
}

// eval runs a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor evaluates a boolean expression until it holds.
func waitFor(t *testing.T, ctx context.Context, what, js string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !eval[bool](t, ctx, js) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %s; page text:\n%s", what, limit, eval[string](t, ctx, "document.body.innerText"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDashboardInBrowser drives the real dashboard of a real daemon with a
// headless Chromium: data stored through /store_data must show up, the chart
// must be drawn, new data must appear without a reload, and the page must
// neither reach beyond the admin listener nor log an error.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		t.Skip("no Chromium binary (chromium, chromium-browser, google-chrome on PATH or $OPMOND_CHROMIUM): " +
			"the dashboard's browser test needs one; on Debian: apt-get install -y chromium")
	}
	o := startOpmond(t)

	services := []service{
		{"5678", "WeatherService", "getWeather", "v2"},
		{"5678", "WeatherService", "getTide", "v1"},
		{"7000", "Registry", "findPerson", "v3"},
		{"7000", "Registry", "listVehicles", ""},
		{"8100", "Tax", "submitDeclaration", "v1"},
	}
	now := time.Now()
	var recs []map[string]any
	n, perService := 0, map[service]int{}
	for i := range 240 { // the last hour, so the chart has a shape
		at := now.Add(-time.Duration(i) * 15 * time.Second)
		for j, s := range services {
			if (i+j)%(j+1) != 0 {
				continue
			}
			ok := (i*7+j)%23 != 0
			typ := "Producer"
			if (i+j)%3 == 0 {
				typ = "Client"
			}
			recs = append(recs, record(s, typ, at, ok, n))
			perService[s]++
			n++
		}
	}
	o.store(t, recs)
	// Two records a security server sent that cannot be stored: quarantined.
	bad := record(services[0], "Gateway", now, true, n)
	missing := record(services[1], "Producer", now, true, n+1)
	delete(missing, "securityServerInternalIp")
	o.store(t, []map[string]any{bad, missing, record(services[2], "Producer", now, false, n+2)})
	perService[services[2]]++

	watch := &pageWatch{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(watch.listen))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 1000), chromedp.Navigate(o.adminURL+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	waitFor(t, ctx, "first refresh", `!!document.body.dataset.refreshed`, 30*time.Second)

	text := eval[string](t, ctx, "document.body.innerText")
	for _, s := range services {
		if !strings.Contains(text, s.String()) {
			t.Errorf("service %s not on the page", s)
		}
	}
	// Records of the current second are available from the next one on
	// (now - offset - 1), so a page opened within a second of the stores
	// shows them at its next refresh (10 s).
	waitFor(t, ctx, "fault code in recent failures", `document.querySelector("#failures-table").innerText.includes("`+testFault+`")`, 25*time.Second)
	// Failures are marked by a symbol, not by colour alone.
	if marks := eval[[]string](t, ctx, `[...document.querySelectorAll("#failures-table tbody td.fault, #health-table tbody td.bad-mark.num")].map(td => td.textContent)`); len(marks) == 0 {
		t.Error("no failure cells found")
	} else {
		for _, m := range marks {
			if !strings.HasPrefix(m, "✗ ") {
				t.Errorf("failure cell %q without the ✗ mark", m)
			}
		}
	}
	if got := eval[string](t, ctx, `document.getElementById("quarantine-count").textContent`); got != "(2)" {
		t.Errorf("quarantine count %q, want (2)", got)
	}
	for _, reason := range []string{"securityServerType", "securityServerInternalIp"} {
		if !strings.Contains(eval[string](t, ctx, `document.getElementById("quarantine-table").innerText`), reason) {
			t.Errorf("quarantine reason naming %s not shown", reason)
		}
	}
	// The chart: uPlot's canvas holds pixels of the successful series' colour.
	if total := eval[string](t, ctx, `document.getElementById("chart").dataset.total`); total == "" || total == "0" {
		t.Errorf("chart total %q, want the stored requests", total)
	}
	// uPlot paints on the next animation frame, hence the wait.
	waitFor(t, ctx, "a drawn chart", `(() => {
		const c = document.querySelector("#chart canvas");
		if (!c) return false;
		const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		let n = 0;
		for (let i = 0; i < d.length; i += 4)
			if (d[i+3] > 200 && Math.abs(d[i]-26) < 40 && Math.abs(d[i+1]-127) < 40 && Math.abs(d[i+2]-55) < 40) n++;
		return n >= 100; // pixels of the successful series' colour: a line, not just axes
	})()`, 5*time.Second)

	// Keyboard: a column header is a button; Enter on it sorts.
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS(`#health-table th[data-key="service"] button`)), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "sorting by service after Enter on its header",
		`document.querySelector('#health-table th[data-key="service"]').getAttribute("aria-sort") === "ascending"`, 5*time.Second)
	if !strings.Contains(eval[string](t, ctx, "location.search"), "sort=service") {
		t.Error("the sort order is not kept in the URL")
	}

	// A service stored after the page opened appears without a reload.
	// The chart counts it too: its last buckets are refreshed on their own.
	late := service{"9999", "LateArrival", "getLate", "v1"}
	before := eval[string](t, ctx, `document.getElementById("chart").dataset.total`)
	o.store(t, []map[string]any{record(late, "Producer", time.Now(), true, n+3)})
	waitFor(t, ctx, "service stored after the page opened", `document.body.innerText.includes("`+late.String()+`")`, 25*time.Second)
	waitFor(t, ctx, "chart counting the new record", `document.getElementById("chart").dataset.total === "`+fmt.Sprint(atoi(t, before)+1)+`"`, 15*time.Second)

	// Narrow window: nothing wider than the viewport.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(420, 900)); err != nil {
		t.Fatal(err)
	}
	// The chart follows the width on the next frame.
	waitFor(t, ctx, "narrow window: nothing wider than 420 px", `document.documentElement.scrollWidth <= 420`, 5*time.Second)

	if dir := os.Getenv("OPMOND_UI_SCREENSHOTS"); dir != "" {
		screenshots(t, ctx, dir)
	}

	reqs, _, navigations := watch.snapshot()
	if navigations != 1 {
		t.Errorf("%d navigations, want 1 (no reload)", navigations)
	}
	// The first chart request spans the hour; refreshes ask for the last
	// buckets only.
	var spans []int64
	for _, u := range reqs {
		if p, err := url.Parse(u); err == nil && p.Path == "/api/v1/intervals" {
			from, _ := strconv.ParseInt(p.Query().Get("from"), 10, 64)
			to, _ := strconv.ParseInt(p.Query().Get("to"), 10, 64)
			spans = append(spans, to-from)
		}
	}
	if len(spans) < 2 || spans[0] != 3600 || spans[len(spans)-1] >= 3600 {
		t.Errorf("chart request spans %v s: want the hour first, then less", spans)
	}

	// A malformed identifier is refused on the page, saying what is expected.
	if msg := eval[string](t, ctx, `(() => {
		const f = document.getElementById("filters");
		f.elements.member.value = "EE/GOV";
		f.requestSubmit();
		return document.getElementById("filter-error").textContent;
	})()`); !strings.Contains(msg, "INSTANCE/CLASS/CODE") {
		t.Errorf("malformed member: filter error %q", msg)
	}

	// A bookmarked view: the filters come from the URL and reach the API.
	chosen := services[2]
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 1000),
		chromedp.Navigate(o.adminURL+"/?range=3600&service="+chosen.String())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "refresh of the bookmarked view", `!!document.body.dataset.refreshed`, 30*time.Second)
	if v := eval[string](t, ctx, `document.querySelector("#filters [name=service]").value`); v != chosen.String() {
		t.Errorf("service filter field %q, want %s", v, chosen)
	}
	if rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#health-table tbody td.id")].map(td => td.textContent)`); len(rows) != 1 || rows[0] != chosen.String() {
		t.Errorf("service table with the service filter: %q", rows)
	}
	if total := eval[string](t, ctx, `document.getElementById("chart").dataset.total`); total != fmt.Sprint(perService[chosen]) {
		t.Errorf("chart total with the service filter %s, want %d", total, perService[chosen])
	}

	requests, errs, _ := watch.snapshot()
	if len(requests) < 5 {
		t.Errorf("only %d requests seen: %v", len(requests), requests)
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, o.adminURL+"/") {
			t.Errorf("request outside the admin listener: %s", u)
		}
	}
	for _, e := range errs {
		t.Errorf("browser reported: %s", e)
	}
}

// screenshots writes dashboard-wide.png and dashboard-narrow.png into dir.
func screenshots(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	for _, s := range []struct {
		name string
		w, h int64
	}{{"dashboard-wide.png", 1400, 1000}, {"dashboard-narrow.png", 420, 1400}} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(s.w, s.h)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // the chart follows the width
		// The wide view whole; the narrow one as a phone shows it first.
		shot := chromedp.FullScreenshot(100)
		if s.w < 600 {
			shot = chromedp.CaptureScreenshot()
		}
		png, err := chromedp.Run(ctx, shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s.name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
