package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// connLimiter wraps a listener (interface.md, "File descriptors"):
//
//   - a temporary accept error (EMFILE above all) is retried with a back-off
//     from 5 ms to 1 s, as net/http does, instead of ending the server;
//   - at most max connections are open; a new one beyond that closes the
//     connection idle longest (as nginx reuses keep-alive connections), or is
//     closed at once when none is idle.
//
// Idle means between requests or before the first one; the servers report
// it through their ConnState hooks (fasthttp's and net/http's have the same
// states). net/http and fasthttp bound connections only by their timeouts.
type connLimiter struct {
	net.Listener
	name string
	max  int
	log  *Logger

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	acceptErr error // the accept error being retried, nil while accepting
	evicted   int   // connections closed to admit others (tests, logs)
	refused   int
	// refusedLogged is when a refusal was last logged.
	refusedLogged time.Time
}

func newConnLimiter(ln net.Listener, name string, max int, log *Logger) *connLimiter {
	return &connLimiter{Listener: ln, name: name, max: max, log: log, conns: map[*trackedConn]struct{}{}}
}

// trackedConn is one admitted connection.
type trackedConn struct {
	net.Conn
	l         *connLimiter
	once      sync.Once
	linger    atomic.Bool
	idle      bool // guarded by l.mu
	idleSince time.Time
}

// Lingering bounds: what a client still sending a refused body gets to
// read its answer.
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 20
)

// Close removes the connection from its limiter. A connection whose
// request body was refused unread lingers first: closing a socket with
// unread data sends a reset, which makes the client's kernel drop the answer
// it has not read yet; so the write side is shut down (the client sees the
// end of the answer) and what still arrives is discarded for a moment, as
// net/http does.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if tcp, ok := c.Conn.(*net.TCPConn); ok && c.linger.Load() {
			_ = tcp.CloseWrite()
			_ = tcp.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.CopyN(io.Discard, tcp, lingerBytes)
		}
	})
	return c.Conn.Close()
}

// lingerOnClose marks the connection under c (as a server sees it) for a
// lingering close.
func lingerOnClose(c net.Conn) {
	if tc := unwrapTracked(c); tc != nil {
		tc.linger.Store(true)
	}
}

// Accept implements net.Listener.
func (l *connLimiter) Accept() (net.Conn, error) {
	var delay time.Duration
	var failedAt time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			if delay == 0 {
				delay, failedAt = 5*time.Millisecond, time.Now()
				l.log.Error().Str("listener", l.name).Err(err).Msg("accept failed; retrying with back-off")
				l.setAcceptErr(err)
			} else {
				delay = min(2*delay, time.Second)
			}
			time.Sleep(delay)
			continue
		}
		if delay != 0 {
			l.log.Warn().Str("listener", l.name).Int64("after_ms", time.Since(failedAt).Milliseconds()).Msg("accepting again")
			l.setAcceptErr(nil)
			delay = 0
		}
		if tc := l.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// temporaryAcceptError reports errors after which accept works again once
// resources are free or the client is gone: syscall.Errno.Temporary's list
// plus memory and buffer shortage, spelled out because net.Error.Temporary
// is deprecated.
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (l *connLimiter) setAcceptErr(err error) {
	l.mu.Lock()
	l.acceptErr = err
	l.mu.Unlock()
}

// down returns the accept error being retried, or nil.
func (l *connLimiter) down() error {
	if l == nil {
		return nil
	}
	if m, ok := l.Listener.(*multiListener); ok {
		if err := m.acceptErr(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acceptErr
}

// admit registers c, making room if the limiter is full; nil when c was
// closed instead.
func (l *connLimiter) admit(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, l: l, idle: true, idleSince: time.Now()}
	l.mu.Lock()
	var victim *trackedConn
	if len(l.conns) >= l.max {
		for o := range l.conns {
			if o.idle && (victim == nil || o.idleSince.Before(victim.idleSince)) {
				victim = o
			}
		}
		if victim == nil {
			l.refused++
			// One line a second at most: a flood must not flood the log.
			logIt := time.Since(l.refusedLogged) >= time.Second
			if logIt {
				l.refusedLogged = time.Now()
			}
			refused := l.refused
			l.mu.Unlock()
			if logIt {
				l.log.Warn().Str("listener", l.name).Int("max", l.max).Str("remote", c.RemoteAddr().String()).
					Int("refusedSoFar", refused).Msg("connection limit reached and no connection is idle; new connection closed")
			}
			_ = c.Close()
			return nil
		}
		delete(l.conns, victim)
		l.evicted++
	}
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		l.log.Debug().Str("listener", l.name).Str("remote", victim.RemoteAddr().String()).
			Msg("connection limit reached; closed the connection idle longest")
		_ = victim.Conn.Close() // never lingers: accepting must not wait
		victim.once.Do(func() {})
	}
	return tc
}

// setIdle records a server's view of a connection (possibly a *tls.Conn
// around a trackedConn).
func (l *connLimiter) setIdle(c net.Conn, idle bool) {
	tc := unwrapTracked(c)
	if tc == nil {
		return
	}
	l.mu.Lock()
	tc.idle = idle
	if idle {
		tc.idleSince = time.Now()
	}
	l.mu.Unlock()
}

func unwrapTracked(c net.Conn) *trackedConn {
	for c != nil {
		if tc, ok := c.(*trackedConn); ok {
			return tc
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// fasthttpState is the X-Road server's ConnState hook.
func (l *connLimiter) fasthttpState(c net.Conn, s fasthttp.ConnState) {
	switch s {
	case fasthttp.StateActive:
		l.setIdle(c, false)
	case fasthttp.StateIdle:
		l.setIdle(c, true)
	}
}

// httpState is the admin server's ConnState hook.
func (l *connLimiter) httpState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateActive:
		l.setIdle(c, false)
	case http.StateIdle:
		l.setIdle(c, true)
	}
}

// open is the number of admitted connections.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeIdle closes every idle connection. Shutdown calls it: fasthttp's
// own shutdown gives a new connection 5 s to send its first request, and
// clients keep spare connections open that never send one.
func (l *connLimiter) closeIdle() {
	l.mu.Lock()
	var idle []*trackedConn
	for c := range l.conns {
		if c.idle {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// shutdownApp stops the X-Road interface: no new connections, in-flight
// requests answered, idle connections closed as they become idle.
func (d *Daemon) shutdownApp(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- d.app.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d.xlim.closeIdle()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			// A client still sending (or not reading) after the drain
			// timeout gets a closed connection; shutdown itself succeeds.
			n := d.xlim.closeAll()
			d.log.Warn().Int64("after_ms", d.drain.Milliseconds()).Int("connections", n).Msg("requests still running at shutdown; their connections are closed")
			return nil
		case <-tick.C:
		}
	}
}

// closeAll closes every connection and returns how many there were.
func (l *connLimiter) closeAll() int {
	l.mu.Lock()
	all := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		all = append(all, c)
	}
	l.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
	return len(all)
}
