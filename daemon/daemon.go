// Package daemon wires opmond together: configuration, the X-Road store and
// query interface, health statistics, the admin listener and the schedulers.
// Nothing here touches signals or exits the process, so a whole daemon can run
// inside a test.
//
// Two pieces are hand-written for lack of a library that does them: the
// connection limiter (conntrack.go; golang.org/x/net/netutil.LimitListener
// makes new connections wait, while the contract wants the idle longest
// evicted, which needs the servers' view of idleness) and the counted body
// reader (body.go; fasthttp either buffers a whole body before the handler
// or streams it uncounted).
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/daemon/grpcserver"
	"github.com/opmond/opmond/storage"
	"github.com/opmond/opmond/tlsconf"
)

// Version information, set by main from the build.
var (
	Version = "dev"
	Commit  = "unknown"
)

// Options are what tests (and main) may inject besides the configuration.
type Options struct {
	Now       func() time.Time // the clock; nil = time.Now
	LogWriter io.Writer        // nil = stderr
	// Listener and AdminListener replace the configured addresses (tests use :0).
	Listener      net.Listener
	AdminListener net.Listener
	// GlobalConfRequestTimeout bounds each request of the global
	// configuration download; 0 = anchor.DefaultRequestTimeout.
	GlobalConfRequestTimeout time.Duration
	// IdleTimeout and AdminIdleTimeout replace the contract's 60 s and 30 s
	// (tests); zero keeps them.
	IdleTimeout      time.Duration
	AdminIdleTimeout time.Duration
	// DrainTimeout replaces the 30 s Close waits for requests in flight.
	DrainTimeout time.Duration
	// DBFault injects storage faults (tests; see storage.Options).
	DBFault func(storage.FaultOp) error
}

// Timeouts and caps of interface.md, "File descriptors".
const (
	defaultIdleTimeout      = 60 * time.Second
	defaultAdminIdleTimeout = 30 * time.Second
	defaultDrainTimeout     = 30 * time.Second
	adminMaxConnections     = 64
)

// Daemon is one running opmond.
type Daemon struct {
	cfg     *Config
	log     *Logger
	now     func() time.Time
	db      *storage.DB
	health  *Health
	gconf   anchor.Conf
	gmode   anchor.Mode
	static  *anchor.StaticDir
	tls     *tlsconf.Server
	metrics *metrics

	download *anchor.Downloader // download mode only
	grpc     *grpcserver.Server

	app         *fiber.App
	ln          net.Listener
	xlim        *connLimiter // under TLS, so handshakes count too
	idleTimeout time.Duration
	drain       time.Duration
	budget      *bodyBudget
	admin       *http.Server
	adminLn     net.Listener
	alim        *connLimiter

	// ctx lives from New to Close; background tasks and waits end with it.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closing   atomic.Bool
	failed    chan error // a listener that cannot serve any more (Run)
	failedErr atomic.Pointer[error]
	closeOnce sync.Once
	closeErr  error
}

// New builds a daemon: validates the configuration (which derives its parsed
// values, the purge schedule among them), opens the database, loads global
// configuration and TLS material, and binds the listeners. Start serves.
func New(cfg *Config, opts Options) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := opts.LogWriter
	if w == nil {
		w = os.Stderr
	}
	log, err := NewLogger(cfg.Log, w)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	d := &Daemon{cfg: cfg, log: log, now: now, metrics: newMetrics(), failed: make(chan error, 2),
		idleTimeout: cmp.Or(opts.IdleTimeout, defaultIdleTimeout), drain: cmp.Or(opts.DrainTimeout, defaultDrainTimeout)}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.budget = newBodyBudget(cfg.OpMonitor.MaxInflightBytes, d.ctx)
	defer func() {
		if err != nil {
			d.cancel()
			for _, ln := range []net.Listener{d.ln, d.adminLn} {
				if ln != nil {
					ln.Close()
				}
			}
			d.closeResources()
		}
	}()

	if d.db, err = storage.Open(cfg.OpMonitor.Database, storage.Options{Now: now, Fault: opts.DBFault,
		Seal: true, OnSealError: func(err error) {
			d.log.Error().Err(err).Msg("sealing blocks failed; they stay as they are and are tried again")
		}, OnCommit: d.metrics.commit}); err != nil {
		return nil, err
	}
	d.health = NewHealth(cfg.HealthPeriod(), now)
	if err := d.setupGlobalConf(opts.GlobalConfRequestTimeout); err != nil {
		return nil, err
	}
	if err := cfg.checkTLSFiles(); err != nil {
		return nil, err
	}
	if cfg.OpMonitor.Scheme == "https" {
		d.tls, err = tlsconf.New(tlsconf.Options{
			CertFile:        cfg.OpMonitor.TLSCertificate,
			KeyFile:         cfg.OpMonitor.TLSKey,
			ClientCertFiles: cfg.OpMonitor.ClientTLSCertificate,
			Logger:          log.With().Str("component", "tls").Logger(),
			OnFailure:       d.metrics.tlsFailure,
			WatchInterval:   30 * time.Second,
		})
		if err != nil {
			return nil, err
		}
	}
	d.registerGauges()

	d.ln = opts.Listener
	if d.ln == nil {
		if d.ln, err = listenAll(context.Background(), cfg.OpMonitor.Host, cfg.OpMonitor.Port); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.ListenAddr(), err)
		}
	}
	d.xlim = newConnLimiter(d.ln, "X-Road listener", cfg.OpMonitor.MaxConnections, log)
	d.ln = d.xlim
	if d.tls != nil {
		d.ln = d.tls.Listener(d.ln)
	}
	d.app = d.newApp()

	d.adminLn = opts.AdminListener
	if d.adminLn == nil && cfg.Admin.Listen != "" {
		if d.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return nil, fmt.Errorf("admin listen on %s: %w", cfg.Admin.Listen, err)
		}
	}
	if d.adminLn != nil {
		d.alim = newConnLimiter(d.adminLn, "admin listener", adminMaxConnections, log)
		d.adminLn = d.alim
		idle := cmp.Or(opts.AdminIdleTimeout, defaultAdminIdleTimeout)
		d.admin = &http.Server{Handler: d.adminHandler(), ReadTimeout: idle, IdleTimeout: idle, ConnState: d.alim.httpState}
		if host, _, _ := net.SplitHostPort(d.adminLn.Addr().String()); !isLoopback(host) {
			log.Warn().Str("listen", d.adminLn.Addr().String()).
				Msg("admin listener is not bound to loopback; it has no authentication of its own")
		}
	}
	if err := d.newGRPC(); err != nil {
		return nil, err
	}
	return d, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *Daemon) setupGlobalConf(downloadTimeout time.Duration) error {
	g := d.cfg.GlobalConf
	mode, err := anchor.DetectMode(g.Anchor, g.Directory)
	if err != nil {
		return fmt.Errorf("global configuration: %w", err)
	}
	d.gmode = mode
	ev := d.log.Info().Str("mode", mode.String()).Str("directory", g.Directory)
	switch mode {
	case anchor.ModeStandalone:
		d.gconf = anchor.Standalone()
		ev.Msg("global configuration")
		d.log.Warn().Msg("no global configuration: running standalone, nobody is owner or central monitoring client, every client sees only its own records")
	case anchor.ModeStatic:
		d.static = anchor.NewStaticDir(g.Directory, anchor.StaticOptions{
			IgnoreExpiry: g.IgnoreExpiry,
			Logger:       d.log.With().Str("component", "globalconf").Logger(),
			Now:          d.now,
		})
		d.gconf = d.static
		ev.Bool("ignoreExpiry", g.IgnoreExpiry).Msg("global configuration")
		if err := d.static.Valid(d.now()); err != nil {
			d.log.Warn().Err(err).Msg("global configuration is not valid; queries are answered with the outdated-configuration fault")
		}
	case anchor.ModeDownload:
		ev.Str("anchor", g.Anchor).Int("downloadIntervalSeconds", g.DownloadIntervalSeconds).Msg("global configuration")
		return d.setupDownload(downloadTimeout)
	}
	return nil
}

func (d *Daemon) registerGauges() {
	d.metrics.services.MustRegister(newServiceCollector(d.health, d.cfg.Admin.MaxServiceSeries))
	d.metrics.reg.MustRegister(newStateCollector(d.db, d.notReady))
	d.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "opmond_database_size_bytes", Help: "Size of the database file.",
	}, func() float64 {
		n, err := d.db.Size()
		if err != nil {
			return 0
		}
		return float64(n)
	}))
	d.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "opmond_seal_lag_seconds",
		Help: "How far sealing (the answer form of past seconds) is behind; queries over seconds not sealed yet cost more.",
	}, func() float64 { return d.db.SealLag(d.now()).Seconds() }))
	d.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "opmond_query_paced_seconds_total",
		Help: "Time queries slept to let store requests through (they run at half speed while stores keep coming).",
	}, func() float64 { return d.db.PacedTime().Seconds() }))
	if d.gmode != anchor.ModeStandalone {
		d.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opmond_globalconf_last_success_timestamp_seconds", Help: "When global configuration was last loaded successfully.",
		}, func() float64 { return unixOrZero(d.gconf.LastLoad()) }))
		d.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opmond_globalconf_expiry_timestamp_seconds", Help: "When the loaded global configuration expires.",
		}, func() float64 { return unixOrZero(d.gconf.Expiry()) }))
	}
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}

// Addr is the X-Road interface's listen address.
func (d *Daemon) Addr() net.Addr { return d.ln.Addr() }

// AdminAddr is the admin listener's address (nil when disabled).
func (d *Daemon) AdminAddr() net.Addr {
	if d.adminLn == nil {
		return nil
	}
	return d.adminLn.Addr()
}

// DB exposes the database (tests, backup).
func (d *Daemon) DB() *storage.DB { return d.db }

// Start serves the listeners and starts the background tasks. They stop on
// Close; a listener that stops before is reported on Failed.
func (d *Daemon) Start() {
	ctx := d.ctx
	d.goServe("X-Road listener", d.ln.Addr(), func() error { return d.app.Listener(d.ln) })
	if d.admin != nil {
		d.goServe("admin listener", d.adminLn.Addr(), func() error {
			if err := d.admin.Serve(d.adminLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if d.static != nil {
		d.goRun("globalconf reload", func() { d.static.Run(ctx) })
	}
	if d.download != nil {
		d.goRun("globalconf download", func() { d.download.Run(ctx) })
	}
	if d.tls != nil {
		d.goRun("tls watch", func() { d.tls.Run(ctx) })
	}
	d.goRun("purge", func() { d.runPurge(ctx) })
	d.startGRPC(ctx)
	if n, err := releaseExecutable(); err != nil {
		d.log.Debug().Err(err).Msg("start-up pages not released")
	} else {
		d.log.Debug().Int64("bytes", n).Msg("start-up pages released")
	}
	d.log.Info().Str("listen", d.ln.Addr().String()).Str("scheme", d.cfg.OpMonitor.Scheme).
		Str("database", d.cfg.OpMonitor.Database).Str("version", Version).Msg("opmond started")
}

// goRun runs a background task until Close. A panic is a failure like any
// other (backgroundError) and the task starts again after a pause that grows
// to a minute; f waits for its schedule itself, and returns when Close
// cancels the daemon's context.
func (d *Daemon) goRun(task string, f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for pause := time.Second; d.runTask(task, f); pause = min(2*pause, time.Minute) {
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}()
}

// runTask runs f once and reports whether it panicked.
func (d *Daemon) runTask(task string, f func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error().Str("task", task).Str("stack", string(debug.Stack())).Msg("background task panicked")
			d.backgroundError(task, fmt.Errorf("panic: %v", r))
			panicked = true
		}
	}()
	f()
	return false
}

// backgroundError logs and counts a failed run of a background task; the
// task retries on its schedule.
func (d *Daemon) backgroundError(task string, err error) {
	d.metrics.backgroundErrors.WithLabelValues(task).Inc()
	d.log.Error().Str("task", task).Err(err).Msg("background task failed; retrying on its schedule")
}

// goServe runs a listener's serve loop. Serving ends only with Close: an
// earlier end (the accept loop retries what is temporary) is reported on
// Failed, so that Run stops and the service manager restarts the process.
func (d *Daemon) goServe(name string, addr net.Addr, serve func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := serve()
		if d.closing.Load() {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		err = fmt.Errorf("%s on %s cannot serve: %w", name, addr, err)
		d.failedErr.CompareAndSwap(nil, &err)
		d.log.Error().Err(err).Msg("listener failed")
		d.failed <- err
	}()
}

// Failed delivers the error of a listener that stopped serving.
func (d *Daemon) Failed() <-chan error { return d.failed }

// Reload re-reads what SIGHUP covers: TLS material, the [grpc] key store and
// [log] level.
func (d *Daemon) Reload() error {
	var errs []error
	if d.cfg.File != "" {
		if cfg, err := LoadConfig(d.cfg.File); err != nil {
			errs = append(errs, fmt.Errorf("reload configuration: %w", err))
		} else if err := d.log.SetLevel(cfg.Log.Level); err != nil {
			errs = append(errs, err)
		} else {
			d.log.Info().Str("level", cfg.Log.Level).Msg("log level set")
		}
	}
	if d.tls != nil {
		if err := d.tls.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.reloadGRPC(); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		d.log.Error().Err(err).Msg("reload failed; old settings kept")
	} else {
		d.log.Info().Msg("reloaded")
	}
	return err
}

// Close stops accepting, drains in-flight requests (bounded), stops the
// schedulers and closes the database. It is idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		// Requests waiting for body budget give up now.
		d.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), d.drain)
		defer cancel()
		var errs []error
		if d.app != nil {
			if err := d.shutdownApp(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shut down X-Road interface: %w", err))
			}
			// If Close comes before Serve registered the listener, fasthttp's
			// shutdown does not know it; closing it here ends Serve either way.
			_ = d.ln.Close()
		}
		if d.admin != nil {
			if err := d.admin.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
				d.log.Warn().Int64("after_ms", d.drain.Milliseconds()).Msg("admin requests still running at shutdown; their connections are closed")
				_ = d.admin.Close()
			} else if err != nil {
				errs = append(errs, fmt.Errorf("shut down admin listener: %w", err))
			}
		}
		d.stopGRPC(ctx)
		d.wg.Wait()
		if err := d.closeResources(); err != nil {
			errs = append(errs, err)
		}
		d.closeErr = errors.Join(errs...)
		d.log.Info().Msg("opmond stopped")
	})
	return d.closeErr
}

// closeResources closes the database (listeners are closed by shutdown, or
// by New when it fails).
func (d *Daemon) closeResources() error {
	if d.db != nil {
		return d.db.Close()
	}
	return nil
}

// Run builds and starts a daemon, reloads on each value from reload, and
// shuts down when ctx is cancelled.
func Run(ctx context.Context, cfg *Config, reload <-chan struct{}) error {
	d, err := New(cfg, Options{})
	if err != nil {
		return err
	}
	return d.run(ctx, reload)
}

// run serves until ctx is cancelled or a listener fails.
func (d *Daemon) run(ctx context.Context, reload <-chan struct{}) error {
	d.Start()
	for {
		select {
		case <-ctx.Done():
			return d.Close()
		case err := <-d.Failed():
			if cerr := d.Close(); cerr != nil {
				d.log.Error().Err(cerr).Msg("close")
			}
			return err
		case <-reload:
			_ = d.Reload()
		}
	}
}
