package daemon

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Logger is the daemon's zerolog logger with a level that SIGHUP can change
// without rebuilding the loggers every component holds.
type Logger struct {
	zerolog.Logger
	level *atomic.Int32
}

// zerolog keeps its time format and duration unit in globals; set them once,
// before any logger of this process writes. Durations are logged in
// milliseconds, and their field names say so (took_ms).
var setTimeFormat sync.Once

// NewLogger builds a logger writing to w in the configured format.
func NewLogger(c LogConfig, w io.Writer) (*Logger, error) {
	lvl, err := parseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	setTimeFormat.Do(func() {
		zerolog.TimeFieldFormat = time.RFC3339Nano
		zerolog.DurationFieldUnit = time.Millisecond
	})
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !colorTerminal(w)}
	}
	l := &Logger{level: new(atomic.Int32)}
	l.level.Store(int32(lvl))
	l.Logger = zerolog.New(w).Level(zerolog.TraceLevel).With().Timestamp().Logger().Hook(l)
	return l, nil
}

// Run implements zerolog.Hook: events below the current level are discarded
// before they are written.
func (l *Logger) Run(e *zerolog.Event, level zerolog.Level, _ string) {
	if level < zerolog.Level(l.level.Load()) && level != zerolog.NoLevel {
		e.Discard()
	}
}

// SetLevel changes the level at run time.
func (l *Logger) SetLevel(s string) error {
	lvl, err := parseLevel(s)
	if err != nil {
		return err
	}
	l.level.Store(int32(lvl))
	return nil
}

// Enabled reports whether events at lvl are written (so hot paths can skip
// building them).
func (l *Logger) Enabled(lvl zerolog.Level) bool { return lvl >= zerolog.Level(l.level.Load()) }

// colorTerminal reports whether w is a terminal that should get colour:
// never a file, pipe or journal, and never with NO_COLOR set (no-color.org).
func colorTerminal(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
