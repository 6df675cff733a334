package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
