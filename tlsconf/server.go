// Package tlsconf holds the TLS side of scheme = "https": the daemon's key
// pair, the pinned client certificates of the security servers, a listener
// that completes and judges every handshake, reloading on SIGHUP or on file
// change, the client configuration of `opmond query`, and `opmond gencert`.
//
// Trust follows upstream X-Road: no CA, no host names, no validity checks; a
// client is accepted when its leaf certificate is byte-for-byte one of the
// pinned certificates or the daemon's own.
package tlsconf

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Failure reasons passed to Options.OnFailure; they are the values of the
// reason label of opmond_tls_handshake_failures_total.
const (
	ReasonNoCertificate      = "no_certificate"
	ReasonUnknownCertificate = "unknown_certificate"
	ReasonNoSharedCipher     = "no_shared_cipher"
	ReasonOther              = "other"
)

// DefaultHandshakeTimeout bounds a handshake when Options.HandshakeTimeout
// is zero. A security server on the same network finishes in milliseconds.
const DefaultHandshakeTimeout = 10 * time.Second

// Options configures a Server.
type Options struct {
	CertFile, KeyFile string   // the daemon's own certificate and key (PEM; key PKCS#1, PKCS#8 or EC)
	ClientCertFiles   []string // pinned client certificates: PEM (every certificate in a file is pinned) or DER
	Logger            zerolog.Logger
	// OnFailure is called once per failed handshake with one of the Reason
	// constants; it may be nil.
	OnFailure func(reason string)
	// WatchInterval > 0 makes Run poll the files' identity, size and mtime
	// and reload on change; 0 disables watching.
	WatchInterval time.Duration
	// HandshakeTimeout bounds each handshake on a Listener; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Server holds the current key material; safe for concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger
	base *tls.Config // what Listener hands to tls.Server

	cur atomic.Pointer[material]

	reloadMu sync.Mutex
	files    *Files // for Run

	warnMu sync.Mutex
	warned map[string]struct{} // peer IPs already told about the missing suite
}

// maxWarned bounds the memory spent on remembering warned peers; when full
// the set starts afresh, which at worst repeats a warning.
const maxWarned = 1024

// New loads and checks the certificate, the key and every pinned file.
// Errors are one line naming the file.
func New(opts Options) (*Server, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	opts.ClientCertFiles = append([]string(nil), opts.ClientCertFiles...)
	s := &Server{opts: opts, log: opts.Logger, warned: map[string]struct{}{}}
	s.files = NewFiles(append([]string{opts.CertFile, opts.KeyFile}, opts.ClientCertFiles...)...)
	m, err := loadMaterial(&s.opts)
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.base = s.Config()
	s.logLoaded(m, "TLS certificates loaded")
	if len(opts.ClientCertFiles) == 0 {
		s.log.Warn().Msg("no client-tls-certificate configured: only the daemon's own certificate can connect")
	}
	return s, nil
}

// Config returns a *tls.Config for tls.NewListener. Each handshake gets the
// configuration of the material current when its ClientHello arrives, so a
// handshake never mixes two generations. Handshake failures are logged and
// counted only on connections accepted through Listener.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       tls12Suites,
		ClientAuth:         tls.RequireAnyClientCert,
		GetConfigForClient: s.configForClient,
		// Used only by a caller that clears GetConfigForClient.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.cur.Load().verify(cs)
		},
	}
}

func (s *Server) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	m := s.cur.Load()
	if pc, ok := hello.Conn.(*peerConn); ok {
		pc.hello = true
		pc.m = m
		pc.offered = hello.CipherSuites
		pc.noShared = !shareSuite(hello, m.rsa)
	}
	return m.cfg, nil
}

// Reload re-reads every file. New handshakes use the new material; open
// connections are untouched. On error the old material stays, the error is
// logged and returned.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.files.Read()
	m, err := loadMaterial(&s.opts)
	if err != nil {
		s.log.Error().Err(err).Msg("TLS reload failed; keeping the previous certificates")
		return err
	}
	s.cur.Store(m)
	s.logLoaded(m, "TLS certificates reloaded")
	return nil
}

func (s *Server) logLoaded(m *material, msg string) {
	s.log.Info().
		Str("subject", m.leaf.Subject.String()).
		Str("sha256", fingerprint(m.leaf.Raw)).
		Time("notAfter", m.leaf.NotAfter).
		Int("pinned", m.count).
		Msg(msg)
	// Upstream never checks validity and neither does the pin check, but a
	// security server or another client might; say so before they fail.
	if v := validity(m.leaf, time.Now()); v != "" {
		s.log.Warn().Str("file", s.opts.CertFile).Str("validity", v).
			Msg("the daemon's own TLS certificate is outside its validity period; clients that check validity will refuse it")
	}
}

// Run polls the files every WatchInterval and reloads when they changed and
// then stayed unchanged for one more interval, so a file caught half-written
// is not read. It returns when ctx is done, at once if watching is disabled.
func (s *Server) Run(ctx context.Context) {
	if s.opts.WatchInterval <= 0 {
		return
	}
	s.files.Watch(ctx, s.opts.WatchInterval, func() {
		s.log.Info().Msg("TLS files changed on disk; reloading")
		_ = s.Reload() // logged by Reload
	})
}
