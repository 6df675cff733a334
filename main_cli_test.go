package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opmond/opmond/daemon"
)

// The commands of interface.md; help must list every one.
var documentedCommands = []string{"serve", "check-config", "gencert", "query", "backup", "import", "version", "compact", "bench"}

func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, name := range documentedCommands {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +\S`).MatchString(out) {
				t.Errorf("%v: %s is not listed with a summary:\n%s", args, name, out)
			}
		}
	}
}

// TestCommandHelp: `opmond NAME --help` and `opmond help NAME` print the
// same help on stdout, exit 0: the synopsis, every flag of the command
// with its explanation, and an example.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.name, "--help")
			if c.name == "help" || c.name == "version" {
				code, out, errOut = runCLI(t, "help", c.name)
			}
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"usage: opmond " + c.name, "example:\n  opmond ", c.summary} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
			if c.name != "help" && c.name != "version" {
				if _, out2, _ := runCLI(t, "help", c.name); out2 != out {
					t.Errorf("'opmond help %s' differs from --help:\n%s", c.name, out2)
				}
			}
			// Every flag the command parses is explained.
			fs := flagsOf(t, c)
			fs.VisitAll(func(f *flag.Flag) {
				if !regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.Name) + `\b.*\n {8}\S`).MatchString(out) {
					t.Errorf("flag --%s is not explained:\n%s", f.Name, out)
				}
			})
		})
	}
}

// flagsOf captures the FlagSet a command parses by asking it for help.
func flagsOf(t *testing.T, c command) *flag.FlagSet {
	t.Helper()
	err := c.run([]string{"--help"}, io.Discard, io.Discard)
	if c.name == "help" || c.name == "version" {
		return flag.NewFlagSet(c.name, flag.ContinueOnError)
	}
	var hr helpRequest
	if !errors.As(err, &hr) {
		t.Fatalf("%s --help returned %v", c.name, err)
	}
	return hr.fs
}

func TestDocumentedFlags(t *testing.T) {
	// The flags interface.md gives the commands whose code lands separately.
	want := map[string][]string{
		"backup":  {"config", "out"},
		"import":  {"config"},
		"compact": {"config", "out"},
		"bench":   {"url", "records", "duration", "conc", "batch", "query-every", "as", "admin", "cert", "key", "json"},
		"query":   {"config", "url", "from", "to", "client", "fields", "as", "server", "health"},
		"gencert": {"dir", "cn", "days", "san", "force"},
	}
	for name, flags := range want {
		fs := flagsOf(t, *lookupCommand(name))
		for _, f := range flags {
			if fs.Lookup(f) == nil {
				t.Errorf("%s lacks --%s", name, f)
			}
		}
	}
	// With no daemon running, backup names the admin address it tried.
	cfg := filepath.Join(t.TempDir(), "opmond.toml")
	if err := os.WriteFile(cfg, []byte("[admin]\nlisten = \"127.0.0.1:1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "backup", "--config", cfg, "--out", filepath.Join(t.TempDir(), "x.db")); code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("backup: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "bench", "--nope"); code != 2 || !strings.Contains(errOut, "-nope") || !strings.Contains(errOut, "opmond bench --help") {
		t.Errorf("bench --nope: exit %d, %q", code, errOut)
	}
}

// TestErrorsNameTheirKey: each error names the key or flag at fault, and
// the fix where one is known.
func TestErrorsNameTheirKey(t *testing.T) {
	dir := t.TempDir()
	gc := filepath.Join(dir, "globalconf")
	if err := os.MkdirAll(filepath.Join(gc, "EE"), 0o755); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "ssl", "opmonitor.crt")
	if code, _, errOut := runCLI(t, "gencert", "--dir", filepath.Dir(cert)); code != 0 {
		t.Fatal(errOut)
	}
	tests := []struct {
		name   string
		config string
		args   []string
		code   int
		want   []string
	}{
		{"missing TLS certificate", "[op-monitor]\nscheme = \"https\"\ntls-certificate = \"nope/opmonitor.crt\"\n", nil, 1,
			[]string{"op-monitor.tls-certificate", "nope/opmonitor.crt", "opmond gencert --dir " + filepath.Join(dir, "nope")}},
		{"missing TLS key", "[op-monitor]\nscheme = \"https\"\ntls-certificate = \"ssl/opmonitor.crt\"\ntls-key = \"ssl/missing.key\"\n", nil, 1,
			[]string{"op-monitor.tls-key", "opmond gencert"}},
		{"missing pinned certificate", "[op-monitor]\nscheme = \"https\"\nclient-tls-certificate = \"ss1.crt\"\n", nil, 1,
			[]string{"op-monitor.client-tls-certificate", "ss1.crt", "internal.crt"}},
		{"static directory without instance-identifier", "[global-conf]\ndirectory = \"globalconf\"\n", nil, 1,
			[]string{"global-conf.directory", "instance-identifier", "/etc/xroad/globalconf"}},
		{"out of range", "[op-monitor]\nport = 0\n", nil, 1, []string{"op-monitor.port = 0"}},
		{"unknown flag", "", []string{"--conf", "x"}, 2, []string{"-conf", "opmond check-config --help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check-config"}, tt.args...)
			if tt.config != "" {
				path := filepath.Join(dir, "opmond.toml")
				cfg := tt.config
				if !strings.Contains(cfg, "client-tls-certificate") {
					cfg = strings.Replace(cfg, "[op-monitor]\n", "[op-monitor]\nclient-tls-certificate = \"ssl/opmonitor.crt\"\n", 1)
				}
				if !strings.Contains(cfg, "[global-conf]") {
					cfg += "[global-conf]\ndirectory = \"none\"\n"
				}
				if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			code, out, errOut := runCLI(t, args...)
			if code != tt.code || out != "" {
				t.Errorf("exit %d, stdout %q", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q: %q", w, errOut)
				}
			}
		})
	}
	qtests := []struct {
		args []string
		want string
	}{
		{[]string{"query", "--from", "yesterday", "--to", "1"}, "-from"},
		{[]string{"query", "--from", "1", "--to", "2", "--client", "EE/GOV"}, "--client"},
		{[]string{"gencert"}, "--dir"},
		{[]string{"serv"}, `did you mean "serve"`},
	}
	for _, tt := range qtests {
		if code, _, errOut := runCLI(t, tt.args...); code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q lacks %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestCheckConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opmond.toml")
	if err := os.WriteFile(path, []byte("[admin]\nlisten = \"0.0.0.0:2082\"\n[global-conf]\ndirectory = \"none\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "check-config", "--config", path)
	if code != 0 || !strings.Contains(out, "[admin]") || !strings.Contains(errOut, `warning: admin.listen = "0.0.0.0:2082"`) {
		t.Errorf("admin on all addresses: exit %d, stderr %q", code, errOut)
	}
	gc := writeStaticGlobalConf(t, dir)
	if err := os.WriteFile(path, []byte("[global-conf]\ndirectory = \""+gc+"\"\nignore-expiry = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "check-config", "--config", path)
	if code != 0 || !strings.Contains(errOut, "warning: global-conf.ignore-expiry") {
		t.Errorf("ignore-expiry: exit %d, stderr %q", code, errOut)
	}
	if err := os.WriteFile(path, []byte("[global-conf]\ndirectory = \""+gc+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "check-config", "--config", path); code != 1 || !strings.Contains(errOut, "global-conf.directory") {
		t.Errorf("expired copy: exit %d, stderr %q", code, errOut)
	}
}

// writeStaticGlobalConf writes a small global configuration directory
// whose main parameters expired in 2000.
func writeStaticGlobalConf(t *testing.T, dir string) string {
	t.Helper()
	gc := filepath.Join(dir, "globalconf")
	if err := os.MkdirAll(filepath.Join(gc, "EE"), 0o755); err != nil {
		t.Fatal(err)
	}
	params := `<?xml version="1.0" encoding="UTF-8"?><xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd"><instanceIdentifier>EE</instanceIdentifier></xr:conf>`
	meta := func(id string) string {
		return `{"contentIdentifier":"` + id + `","instanceIdentifier":"EE","expirationDate":"2000-01-01T00:00:00Z","configurationVersion":"6"}`
	}
	files := map[string]string{
		"instance-identifier":            "EE",
		"EE/shared-params.xml":           params,
		"EE/shared-params.xml.metadata":  meta("SHARED-PARAMETERS"),
		"EE/private-params.xml":          params,
		"EE/private-params.xml.metadata": meta("PRIVATE-PARAMETERS"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(gc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return gc
}

func TestTimestampFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1764576000": 1764576000, "2025-12-01T08:00:00Z": 1764576000, "2025-12-01T10:00:00+02:00": 1764576000} {
		var ts timestamp
		if err := ts.Set(in); err != nil || int64(ts) != want {
			t.Errorf("%s: %d %v", in, ts, err)
		}
	}
	var ts timestamp
	if err := ts.Set("2025-12-01"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("date only: %v", err)
	}
}

// TestQueryClippedNotice: a window reaching into the records-available
// offset gets a notice on stderr saying where it was clipped and from when
// the rest will be available; one that ends earlier gets none.
func TestQueryClippedNotice(t *testing.T) {
	dir := t.TempDir()
	ln, aln := listenLoopback(t), listenLoopback(t)
	port := ln.Addr().(*net.TCPAddr).Port
	path := filepath.Join(dir, "opmond.toml")
	content := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\nrecords-available-timestamp-offset-seconds = 30\n[global-conf]\ndirectory = \"none\"\n", port)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{LogWriter: io.Discard, Listener: ln, AdminListener: aln})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })
	body := `{"records":[{"securityServerInternalIp":"1","securityServerType":"Client","requestInTs":1,"responseOutTs":2,"succeeded":true,` +
		`"clientXRoadInstance":"DEV","clientMemberClass":"COM","clientMemberCode":"1234","clientSubsystemCode":"Portal"}]}`
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/store_data", port), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	now := time.Now().Unix()
	q := []string{"query", "--config", path, "--as", "DEV/COM/1234/Portal"}

	code, out, errOut := runCLI(t, append(q, "--from", "2000-01-01T00:00:00Z", "--to", strconv.FormatInt(now+5, 10))...)
	if code != 0 || out != "" {
		t.Errorf("clipped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	m := regexp.MustCompile(`^opmond query: window clipped at (\d+) \(\S+\): records from then on are not returned yet ` +
		`\(the daemon's records-available-timestamp-offset-seconds is about (\d+)\); the whole window will be available from about (\S+)\n$`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("notice: %q", errOut)
	}
	clip, _ := strconv.ParseInt(m[1], 10, 64)
	offset, _ := strconv.ParseInt(m[2], 10, 64)
	ready, err := time.Parse(time.RFC3339, m[3])
	// The window ends in the future: it is complete offset + 1 s after now.
	if clip < now-31 || clip > now-29 || offset < 29 || offset > 31 || err != nil || ready.Unix() < now+30 || ready.Unix() > now+33 {
		t.Errorf("clipped at %d, offset %d, ready %s (now %d)", clip, offset, m[3], now)
	}

	// Through a configuration that is not the daemon's, the offset shown is still the daemon's.
	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte("[global-conf]\ndirectory = \"none\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, errOut = runCLI(t, "query", "--config", other, "--url", fmt.Sprintf("http://127.0.0.1:%d", port), "--as", "DEV/COM/1234/Portal", "--from", "0", "--to", strconv.FormatInt(now-10, 10))
	if !regexp.MustCompile(`offset-seconds is about (29|30|31)\)`).MatchString(errOut) {
		t.Errorf("notice through another configuration: %q", errOut)
	}

	code, _, errOut = runCLI(t, append(q, "--from", strconv.FormatInt(now-5, 10), "--to", strconv.FormatInt(now, 10))...)
	if code != 1 || !strings.Contains(errOut, "not available from") || !strings.Contains(errOut, "window clipped at") {
		t.Errorf("window inside the offset: exit %d, stderr %q", code, errOut)
	}

	code, _, errOut = runCLI(t, append(q, "--from", "0", "--to", strconv.FormatInt(now-100, 10))...)
	if code != 0 || errOut != "" {
		t.Errorf("window before the offset: exit %d, stderr %q", code, errOut)
	}
}

// TestStartupErrorInLogFormat: serve reports a start-up failure as a log
// event in the configured format, naming the key.
func TestStartupErrorInLogFormat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opmond.toml")
	port := listenLoopback(t).Addr().(*net.TCPAddr).Port // held: nothing else takes it
	content := fmt.Sprintf("[op-monitor]\nhost = \"127.0.0.1\"\nport = %d\nscheme = \"https\"\nclient-tls-certificate = \"x.crt\"\n"+
		"[admin]\nlisten = \"\"\n[global-conf]\ndirectory = \"none\"\n[log]\nformat = \"json\"\n", port)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "serve", "--config", path)
	var ev struct{ Level, Error, Message, Time string }
	if code != 1 || strings.Count(errOut, "\n") != 1 || json.Unmarshal([]byte(errOut), &ev) != nil ||
		ev.Level != "error" || ev.Time == "" || !strings.Contains(ev.Error, "op-monitor.tls-certificate") || !strings.Contains(ev.Error, "opmond gencert") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(content, `format = "json"`, `format = "console"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "serve", "--config", path)
	if code != 1 || strings.HasPrefix(errOut, "{") || strings.Contains(errOut, "\x1b[") || !strings.Contains(errOut, "op-monitor.tls-certificate") {
		t.Errorf("console: exit %d, stderr %q", code, errOut)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
