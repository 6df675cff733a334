package grpcserver

import (
	"fmt"
	"sync/atomic"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/grpclog"
)

// grpc-go logs through a process-wide logger that may only be set before it
// is used, so it is set once here and forwards to the logger of the latest
// Server: one JSON event per line like the rest of the daemon, instead of
// grpc's own text lines on stderr. grpc's info level is trace here.
var grpcLog atomic.Pointer[zerolog.Logger]

func init() {
	nop := zerolog.Nop()
	grpcLog.Store(&nop)
	grpclog.SetLoggerV2(zlog{})
}

func setGRPCLogger(l zerolog.Logger) {
	l = l.With().Str("component", "grpc-go").Logger()
	grpcLog.Store(&l)
}

type zlog struct{}

func (zlog) emit(level zerolog.Level, msg string) {
	l := grpcLog.Load()
	l.WithLevel(level).Msg(msg)
}

func (z zlog) Info(args ...any)   { z.emit(zerolog.TraceLevel, fmt.Sprint(args...)) }
func (z zlog) Infoln(args ...any) { z.emit(zerolog.TraceLevel, fmt.Sprint(args...)) }
func (z zlog) Infof(format string, args ...any) {
	z.emit(zerolog.TraceLevel, fmt.Sprintf(format, args...))
}
func (z zlog) Warning(args ...any)   { z.emit(zerolog.DebugLevel, fmt.Sprint(args...)) }
func (z zlog) Warningln(args ...any) { z.emit(zerolog.DebugLevel, fmt.Sprint(args...)) }
func (z zlog) Warningf(format string, args ...any) {
	z.emit(zerolog.DebugLevel, fmt.Sprintf(format, args...))
}
func (z zlog) Error(args ...any)   { z.emit(zerolog.ErrorLevel, fmt.Sprint(args...)) }
func (z zlog) Errorln(args ...any) { z.emit(zerolog.ErrorLevel, fmt.Sprint(args...)) }
func (z zlog) Errorf(format string, args ...any) {
	z.emit(zerolog.ErrorLevel, fmt.Sprintf(format, args...))
}

// grpc-go calls Fatal only on broken invariants; it must not return.
func (z zlog) Fatal(args ...any)                 { z.fatal(fmt.Sprint(args...)) }
func (z zlog) Fatalln(args ...any)               { z.fatal(fmt.Sprint(args...)) }
func (z zlog) Fatalf(format string, args ...any) { z.fatal(fmt.Sprintf(format, args...)) }
func (z zlog) fatal(msg string)                  { z.emit(zerolog.FatalLevel, msg); panic(msg) }

// V reports whether verbose logs at level l are wanted: never.
func (zlog) V(l int) bool { return l <= 0 }
