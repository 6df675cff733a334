package daemon

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// connTracker knows which connections are inside a handler, so shutdown can
// close all others: fasthttp's own shutdown waits for connections that are
// blocked reading their first request (clients open spare connections that
// never send one) until the read timeout.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]int // open connection → requests in a handler
}

func (t *connTracker) track(c net.Conn, s fasthttp.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns = map[net.Conn]int{}
	}
	switch s {
	case fasthttp.StateNew:
		t.conns[c] = 0
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(t.conns, c)
	}
}

// middleware marks the connection busy while a handler runs.
func (t *connTracker) middleware(c *fiber.Ctx) error {
	conn := c.Context().Conn()
	t.mu.Lock()
	if _, ok := t.conns[conn]; ok {
		t.conns[conn]++
	}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if n, ok := t.conns[conn]; ok && n > 0 {
			t.conns[conn] = n - 1
		}
		t.mu.Unlock()
	}()
	return c.Next()
}

// closeWaiting closes connections that are not inside a handler.
func (t *connTracker) closeWaiting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, busy := range t.conns {
		if busy == 0 {
			_ = c.Close()
			delete(t.conns, c)
		}
	}
}

// shutdownApp stops accepting and waits for in-flight requests, closing
// waiting connections as it goes.
func (d *Daemon) shutdownApp(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- d.app.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d.conns.closeWaiting()
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
	}
}
