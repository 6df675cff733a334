package tlsconf

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxHandshaking bounds the handshakes in progress on one listener. Past it,
// new connections wait in the kernel's backlog rather than in memory.
const maxHandshaking = 1024

// Listener wraps inner so that every connection it returns is a *tls.Conn
// whose handshake has completed and passed the pin check. Each handshake
// runs in its own goroutine under the handshake timeout, so a slow or silent
// client never delays Accept for others, and failed handshakes are logged
// and counted even though HTTP servers would perform them lazily and
// silently.
func (s *Server) Listener(inner net.Listener) net.Listener {
	l := &listener{
		inner:   inner,
		s:       s,
		ready:   make(chan net.Conn),
		errc:    make(chan error),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		slots:   make(chan struct{}, maxHandshaking),
		pending: map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

type listener struct {
	inner net.Listener
	s     *Server

	ready   chan net.Conn // handshaken connections, handed to Accept
	errc    chan error    // errors of inner.Accept, handed to Accept
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when inner is closed; Accept then returns stopErr
	stopErr error
	slots   chan struct{}
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections still handshaking, closed by Close
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.stopped:
		return nil, l.stopErr
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.inner.Addr().Network(), Addr: l.inner.Addr(), Err: net.ErrClosed}
	}
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, aborts the handshakes in progress and waits for
// their goroutines. Connections already returned by Accept stay open.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l.closeErr
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return
		}
		raw, err := l.inner.Accept()
		if err != nil {
			<-l.slots
			if errors.Is(err, net.ErrClosed) {
				l.stopErr = err
				close(l.stopped)
				return
			}
			// Hand the error over and wait until the server has taken it:
			// the server decides whether it is temporary and backs off, and
			// this loop never spins on a failing Accept.
			select {
			case l.errc <- err:
			case <-l.done:
				return
			}
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			raw.Close()
			<-l.slots
			return
		}
		l.pending[raw] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

func (l *listener) handshake(raw net.Conn) {
	defer l.wg.Done()
	pc := &peerConn{Conn: raw}
	tc := tls.Server(pc, l.s.base)
	_ = raw.SetDeadline(time.Now().Add(l.s.opts.HandshakeTimeout))
	err := tc.Handshake()
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
	<-l.slots
	if err != nil {
		select {
		case <-l.done: // aborted by Close: not the client's failure
		default:
			l.s.handshakeFailed(pc, err)
		}
		raw.Close()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.done:
		tc.Close()
	}
}

// peerConn is the raw connection under a handshake; GetConfigForClient
// leaves on it what it learnt from the ClientHello, for the failure report.
// Both run on the handshake's goroutine.
type peerConn struct {
	net.Conn
	hello    bool      // a ClientHello arrived
	m        *material // the generation chosen for the handshake
	offered  []uint16  // the client's cipher suites
	noShared bool      // none of them is one the daemon can use
}

// handshakeFailed classifies, counts and logs one failed handshake.
func (s *Server) handshakeFailed(pc *peerConn, err error) {
	peer := pc.RemoteAddr().String()
	reason := ReasonOther
	var notPinned *errNotPinned
	var remote *net.OpError
	var rhe tls.RecordHeaderError
	switch {
	case pc.noShared:
		reason = ReasonNoSharedCipher
		s.logNoSharedCipher(pc, peer)
	case errors.As(err, &notPinned):
		reason = ReasonUnknownCertificate
		s.log.Warn().Str("peer", peer).Str("reason", reason).
			Str("subject", notPinned.subject).Str("sha256", notPinned.fingerprint).
			Msg("TLS handshake refused: the client certificate is not pinned; add it to client-tls-certificate if this client should connect")
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		reason = ReasonNoCertificate
		s.log.Warn().Str("peer", peer).Str("reason", reason).
			Msg("TLS handshake refused: the client sent no certificate")
	case !pc.hello && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)):
		// A port probe or a load balancer's health check: counted, but not
		// worth a warning each time.
		s.log.Debug().Str("peer", peer).Str("reason", reason).Err(err).
			Msg("connection closed before a TLS ClientHello")
	case errors.As(err, &rhe) && looksLikeHTTP(rhe.RecordHeader[:]):
		if rhe.Conn != nil {
			// As net/http does: an answer the plain-HTTP client can show.
			_, _ = io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		s.log.Warn().Str("peer", peer).Str("reason", reason).
			Msg("TLS handshake failed: the client sent plain HTTP; set op-monitor.scheme = https on the security server, or scheme = \"http\" here")
	case errors.As(err, &remote) && remote.Op == "remote error" && certAlert(remote.Err.Error()):
		ev := s.log.Warn().Str("peer", peer).Str("reason", reason).Str("alert", remote.Err.Error())
		if v := ownValidity(pc); v != "" {
			ev.Str("validity", v).Msg("TLS handshake failed: the client rejected the daemon's certificate, which is " + v + "; renew it (opmond gencert) and give the new certificate to the security server")
		} else {
			ev.Msg("TLS handshake failed: the client rejected the daemon's certificate; the security server's op-monitor.tls-certificate must be this daemon's certificate")
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Warn().Str("peer", peer).Str("reason", reason).Dur("timeout_ms", s.opts.HandshakeTimeout).
			Msg("TLS handshake failed: timed out")
	default:
		s.log.Warn().Str("peer", peer).Str("reason", reason).Err(err).Msg("TLS handshake failed")
	}
	if s.opts.OnFailure != nil {
		s.opts.OnFailure(reason)
	}
}

// logNoSharedCipher warns once per peer IP with the fix; repeats go to debug
// because a security server retries every few seconds.
func (s *Server) logNoSharedCipher(pc *peerConn, peer string) {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		host = peer
	}
	s.warnMu.Lock()
	_, seen := s.warned[host]
	if !seen {
		if len(s.warned) >= maxWarned {
			clear(s.warned)
		}
		s.warned[host] = struct{}{}
	}
	s.warnMu.Unlock()
	fix := fixSuiteRSA
	if pc.m != nil && !pc.m.rsa {
		fix = fixSuiteECDSA
	}
	lvl := zerolog.WarnLevel
	if seen {
		lvl = zerolog.DebugLevel
	}
	s.log.WithLevel(lvl).Str("peer", peer).Str("reason", ReasonNoSharedCipher).
		Strs("offered", suiteNames(pc.offered)).
		Str("fix", "append ,"+fix+" to proxy.xroad-tls-ciphers").
		Msg("TLS handshake failed: no cipher suite in common with the client (Go implements none of the security server's default CBC suites); " +
			"append " + fix + " to proxy.xroad-tls-ciphers on the security server (append, do not replace: the list also governs traffic between security servers) and restart xroad-proxy")
}

// certAlert reports whether a TLS alert text says the peer refused our
// certificate (Go sends "bad certificate", Java "unknown certificate" or
// "expired certificate").
func certAlert(alert string) bool {
	for _, a := range []string{"bad certificate", "unknown certificate", "expired certificate", "unsupported certificate", "unknown certificate authority", "revoked certificate"} {
		if strings.HasSuffix(alert, a) {
			return true
		}
	}
	return false
}

func ownValidity(pc *peerConn) string {
	if pc.m == nil {
		return ""
	}
	return validity(pc.m.leaf, time.Now())
}

func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}
