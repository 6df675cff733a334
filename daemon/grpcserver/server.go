// Package grpcserver serves X-Road's OpMonitorService
// (GetOperationalDataIntervals) to the security server UI of X-Road 7.7+,
// over X-Road's internal gRPC transport: mutual TLS from the PKCS#12 key
// store the security server's install scripts create, whose own certificate
// is the only one trusted, or plaintext with tls = "none".
//
// The password file is parsed here rather than with an env-file library:
// it is one KEY="VALUE" line, and the parser must never log what it read.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/opmond/opmond/daemon/opmonrpc"
	"github.com/opmond/opmond/storage"
	"github.com/opmond/opmond/tlsconf"
)

// Limits. The security server UI opens one channel and sends one small
// request per graph refresh; everything beyond that is refused or bounded.
const (
	maxConnections   = 64
	maxStreams       = 16
	maxRecvBytes     = 64 << 10
	maxSendBytes     = 16 << 20 // maxBuckets intervals fit with room to spare
	handshakeTimeout = 10 * time.Second
	callTimeout      = 60 * time.Second
	idleTimeout      = 5 * time.Minute
)

// DB is what the service reads: storage.DB.
type DB interface {
	Intervals(ctx context.Context, q storage.IntervalQuery) ([]storage.Interval, error)
}

// Options configures a Server.
type Options struct {
	Listener net.Listener // bound by the caller; closed by Stop
	// Internal selects X-Road's internal TLS (Keystore and PasswordFile);
	// false serves plaintext.
	Internal               bool
	Keystore, PasswordFile string
	DB                     DB
	Logger                 zerolog.Logger
	Registerer             prometheus.Registerer // per-RPC metrics; nil = none
	// WatchInterval > 0 makes Run poll the key store and password file and
	// reload when they changed and then stayed unchanged for one interval.
	WatchInterval time.Duration
}

// Server is the gRPC listener with its key material; safe for concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger
	srv  *grpc.Server
	ln   net.Listener
	m    *rpcMetrics

	cur      atomic.Pointer[material] // nil with plaintext
	reloadMu sync.Mutex
	files    *tlsconf.Files
}

// New loads the key material (with Internal) and builds the server. Errors
// are one line naming the configuration key.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, log: opts.Logger, ln: netutil.LimitListener(opts.Listener, maxConnections)}
	setGRPCLogger(opts.Logger)
	var err error
	if s.m, err = newRPCMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvBytes),
		grpc.MaxSendMsgSize(maxSendBytes),
		grpc.MaxConcurrentStreams(maxStreams),
		grpc.ConnectionTimeout(handshakeTimeout),
		// Clients may ping every 10 s, even between calls, without being
		// told off; idle connections are closed after idleTimeout.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout, Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.observe),
	}
	if opts.Internal {
		s.files = tlsconf.NewFiles(opts.Keystore, opts.PasswordFile)
		m, err := loadKeystore(opts.Keystore, opts.PasswordFile)
		if err != nil {
			return nil, err
		}
		s.cur.Store(m)
		s.logLoaded(m, "gRPC key store loaded")
		sopts = append(sopts, grpc.Creds(&countingCreds{
			TransportCredentials: credentials.NewTLS(&tls.Config{
				MinVersion: tls.VersionTLS12,
				ClientAuth: tls.RequireAnyClientCert,
				// Each handshake takes the generation current at its ClientHello.
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.cur.Load().cfg, nil },
			}),
			s: s,
		}))
	}
	s.srv = grpc.NewServer(sopts...)
	opmonrpc.RegisterOpMonitorServiceServer(s.srv, &service{db: opts.DB, log: opts.Logger})
	return s, nil
}

// Addr is the listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Stop; it returns nil after Stop.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop lets calls in progress finish until ctx is done, then closes every
// connection. It also closes the listener if Serve never ran.
func (s *Server) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.srv.Stop()
		<-done
	}
	_ = s.ln.Close()
}

// Reload re-reads the key store and password file (a no-op in plaintext).
// New handshakes use the new material; open connections are kept. On error
// the old material stays and the error is logged and returned.
func (s *Server) Reload() error {
	if !s.opts.Internal {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.files.Read()
	m, err := loadKeystore(s.opts.Keystore, s.opts.PasswordFile)
	if err != nil {
		s.log.Error().Err(err).Msg("gRPC key store reload failed; keeping the previous one")
		return err
	}
	s.cur.Store(m)
	s.logLoaded(m, "gRPC key store reloaded")
	return nil
}

func (s *Server) logLoaded(m *material, msg string) {
	s.log.Info().Str("keystore", s.opts.Keystore).Str("subject", m.leaf.Subject.String()).
		Time("notAfter", m.leaf.NotAfter).Msg(msg)
}

// Run watches the files until ctx is done (at once without WatchInterval or
// TLS). A security server's xroad-base replaces both when it restarts.
func (s *Server) Run(ctx context.Context) {
	if s.opts.WatchInterval <= 0 || !s.opts.Internal {
		return
	}
	s.files.Watch(ctx, s.opts.WatchInterval, func() {
		s.log.Info().Msg("gRPC key store or password file changed on disk; reloading")
		_ = s.Reload() // logged by Reload
	})
}

// countingCreds logs and counts failed handshakes (a client without the
// store's certificate, a plaintext client on a TLS port).
type countingCreds struct {
	credentials.TransportCredentials
	s *Server
}

func (c *countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	remote := conn.RemoteAddr().String()
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.s.m.handshakeFailures.Inc()
		c.s.log.Warn().Str("remote", remote).Str("error", oneLine(err.Error())).Msg("gRPC TLS handshake failed")
	}
	return out, info, err
}

// Clone keeps the wrapper (grpc clones credentials per server).
func (c *countingCreds) Clone() credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s}
}

// rpcMetrics are the per-RPC series in the daemon's registry.
type rpcMetrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	handshakeFailures prometheus.Counter
}

func newRPCMetrics(reg prometheus.Registerer) (*rpcMetrics, error) {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opmond_grpc_requests_total", Help: "gRPC calls answered, by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opmond_grpc_request_duration_seconds", Help: "Time to answer a gRPC call, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opmond_grpc_tls_handshake_failures_total", Help: "Failed TLS handshakes on the gRPC listener.",
		}),
	}
	m.requests.WithLabelValues(methodIntervals, "OK")
	m.duration.WithLabelValues(methodIntervals)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.handshakeFailures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

const methodIntervals = "GetOperationalDataIntervals"

func (s *Server) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	method := path.Base(info.FullMethod)
	code := status.Code(err)
	s.m.requests.WithLabelValues(method, code.String()).Inc()
	s.m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	ev := s.log.Debug()
	if err != nil {
		ev = s.log.Warn().Str("error", oneLine(status.Convert(err).Message()))
	}
	ev.Str("method", method).Str("code", code.String()).Dur("took_ms", time.Since(start)).Msg("gRPC call")
	return resp, err
}
