package daemon

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/opmond/opmond/daemon/grpcserver"
)

// grpcWatchInterval is how often the [grpc] key store and password file are
// checked for a change on disk (a variable for tests).
var grpcWatchInterval = 5 * time.Second

// newGRPC binds [grpc] listen and loads its key material ("" = off).
func (d *Daemon) newGRPC() error {
	g := d.cfg.GRPC
	if g.Listen == "" {
		return nil
	}
	host, p, _ := net.SplitHostPort(g.Listen) // checked by Validate
	port, _ := strconv.Atoi(p)
	ln, err := listenAll(context.Background(), host, port)
	if err != nil {
		return fmt.Errorf("grpc.listen = %q: %w", g.Listen, err)
	}
	d.grpc, err = grpcserver.New(grpcserver.Options{
		Listener:      ln,
		Internal:      g.TLS == "internal",
		Keystore:      g.Keystore,
		PasswordFile:  g.PasswordFile,
		DB:            d.db,
		Logger:        d.log.With().Str("component", "grpc").Logger(),
		Registerer:    d.metrics.reg,
		WatchInterval: grpcWatchInterval,
	})
	if err != nil {
		ln.Close()
		return err
	}
	return nil
}

// GRPCAddr is the gRPC listener's address (nil when disabled).
func (d *Daemon) GRPCAddr() net.Addr {
	if d.grpc == nil {
		return nil
	}
	return d.grpc.Addr()
}

func (d *Daemon) startGRPC(ctx context.Context) {
	if d.grpc == nil {
		return
	}
	d.goServe("gRPC listener", d.grpc.Addr(), d.grpc.Serve)
	d.goRun("grpc key store watch", func() { d.grpc.Run(ctx) })
	d.log.Info().Str("listen", d.grpc.Addr().String()).Str("tls", d.cfg.GRPC.TLS).Msg("gRPC interface started")
}

func (d *Daemon) stopGRPC(ctx context.Context) {
	if d.grpc != nil {
		d.grpc.Stop(ctx)
	}
}

func (d *Daemon) reloadGRPC() error {
	if d.grpc == nil {
		return nil
	}
	return d.grpc.Reload()
}
