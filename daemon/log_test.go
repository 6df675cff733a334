package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestLoggerLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(LogConfig{Level: "info", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug().Msg("hidden")
	l.Info().Int("n", 1).Msg("shown")
	if err := l.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	l.Debug().Msg("now shown")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	for _, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev["time"] == nil || ev["level"] == nil {
			t.Errorf("event %q: %v", line, err)
		}
	}
	if l.Enabled(-2) || !l.Enabled(1) {
		t.Error("Enabled")
	}
	if err := l.SetLevel("loud"); err == nil {
		t.Error("bad level accepted")
	}
}

// TestReloadLogLevel: Reload (what SIGHUP calls) re-reads [log] level from
// the configuration file; a broken file keeps the old level.
func TestReloadLogLevel(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opmond.toml")
	write := func(level string) {
		content := "[op-monitor]\ndatabase = \"db/op.db\"\n[global-conf]\ndirectory = \"none\"\n[admin]\nlisten = \"\"\n[log]\nlevel = \"" + level + "\"\n"
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("info")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	td := startDaemon(t, cfg, nil)
	td.store(jrec())
	if strings.Contains(td.logs.String(), `"message":"stored"`) {
		t.Fatal("debug event at info level")
	}
	write("debug")
	if err := td.Reload(); err != nil {
		t.Fatal(err)
	}
	td.store(jrec())
	if !strings.Contains(td.logs.String(), `"message":"stored"`) {
		t.Error("no debug event after reload to debug")
	}
	write("loud")
	if err := td.Reload(); err == nil {
		t.Error("broken configuration reloaded without error")
	}
	if !td.log.Enabled(zerolog.DebugLevel) {
		t.Error("level changed by a broken configuration")
	}
}

// TestConsoleLogWithoutColour: the console format writes no colour codes
// to a writer that is not a terminal (a file, a pipe, the journal).
func TestConsoleLogWithoutColour(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{f, &bytes.Buffer{}} {
		l, err := NewLogger(LogConfig{Level: "info", Format: "console"}, w)
		if err != nil {
			t.Fatal(err)
		}
		l.Warn().Dur("took_ms", 1500*time.Millisecond).Msg("plain")
	}
	b, _ := os.ReadFile(f.Name())
	if !strings.Contains(string(b), "plain") || strings.Contains(string(b), "\x1b[") {
		t.Errorf("console log to a file: %q", b)
	}
	if !strings.Contains(string(b), "took_ms=1500") {
		t.Errorf("duration not in milliseconds: %q", b)
	}
}

// TestDurationFieldsNameTheirUnit: every duration logged carries its unit
// in the field name, as took_ms.
func TestDurationFieldsNameTheirUnit(t *testing.T) {
	re := regexp.MustCompile(`\.Dur\("([^"]*)"`)
	var files []string
	for _, pat := range []string{"*.go", "../*/*.go"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d source files", len(files))
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			if !strings.HasSuffix(string(m[1]), "_ms") {
				t.Errorf("%s: duration field %q does not end in _ms", f, m[1])
			}
		}
	}
}
