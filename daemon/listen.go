package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// listenAll listens on every address host resolves to ("localhost" is often
// both 127.0.0.1 and ::1, and a security server may connect to either),
// merging them into one listener. An address that cannot be bound is
// skipped as long as one can; a literal IP or an empty host is one address.
func listenAll(ctx context.Context, host string, port int) (net.Listener, error) {
	p := strconv.Itoa(port)
	if host == "" || net.ParseIP(host) != nil {
		return net.Listen("tcp", net.JoinHostPort(host, p))
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var lns []net.Listener
	var errs []error
	seen := map[string]bool{}
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.String(), p)
		if seen[addr] {
			continue
		}
		seen[addr] = true
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lns = append(lns, ln)
	}
	switch len(lns) {
	case 0:
		return nil, errors.Join(errs...)
	case 1:
		return lns[0], nil
	}
	return newMultiListener(lns), nil
}

// multiListener accepts from several listeners.
type multiListener struct {
	lns    []net.Listener
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	errMu  sync.Mutex
	accErr error
	// tempErr is an accept error being retried (acceptErr), nil once an
	// accept succeeds.
	tempErr atomic.Pointer[error]
}

func newMultiListener(lns []net.Listener) *multiListener {
	m := &multiListener{lns: lns, conns: make(chan net.Conn), done: make(chan struct{})}
	// Each accept loop ends when its listener is closed (by Close).
	for _, ln := range lns {
		go m.accept(ln)
	}
	return m
}

func (m *multiListener) accept(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors is no reason to stop.
			if temporaryAcceptError(err) {
				m.tempErr.Store(&err)
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-m.done:
					return
				}
			}
			m.errMu.Lock()
			if m.accErr == nil {
				m.accErr = err
			}
			m.errMu.Unlock()
			m.Close()
			return
		}
		delay = 0
		m.tempErr.Store(nil)
		select {
		case m.conns <- c:
		case <-m.done:
			c.Close()
			return
		}
	}
}

// Accept implements net.Listener.
func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		m.errMu.Lock()
		defer m.errMu.Unlock()
		if m.accErr != nil {
			return nil, m.accErr
		}
		return nil, net.ErrClosed
	}
}

// Close closes every listener, which ends their accept loops.
func (m *multiListener) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			if e := ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) {
				err = e
			}
		}
	})
	return err
}

// acceptErr is an accept error being retried, or nil.
func (m *multiListener) acceptErr() error {
	if p := m.tempErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Addr is the first listener's address.
func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }
