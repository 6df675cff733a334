package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"
)

// Request bodies are read by the handlers from fasthttp's body stream, not
// buffered by the server, so that every byte held is first counted against
// max-inflight-request-bytes (interface.md, "Memory") and an oversized chunked
// body is refused as it passes max-request-bytes.

// budgetWait is how long a request waits for room in the budget.
const budgetWait = 10 * time.Second

// gcAfterBytes is the budget held from which a request collects garbage
// before it releases the budget: a few milliseconds against the seconds a
// body that large takes to decode and store.
const gcAfterBytes = 32 << 20

// chunkStep is the first allocation for a body of unknown length; it doubles.
const chunkStep = 64 << 10

// maxPooledBody is the largest body buffer kept for reuse: typical store
// batches (100 records, ~100 KB) then cost no allocation, and a pool never
// pins the buffers of rare large batches.
const maxPooledBody = 1 << 20

// bodyPool holds body buffers of handlers that keep nothing of the body
// once they return (see readBody's reuse).
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

var (
	errBodyTooLarge = errors.New("request body too large")
	errBusy         = errors.New("server busy: the request bodies being received exceed max-inflight-request-bytes; try again later")
)

// bodyBudget is the weighted semaphore of max-inflight-request-bytes.
// It is fair (first come, first served), so a large body is not starved by
// small ones.
type bodyBudget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
	// done ends every wait when the daemon shuts down.
	done context.Context
}

func newBodyBudget(bytes int64, done context.Context) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(bytes), size: bytes, wait: budgetWait, done: done}
}

// body is a request body read under the budget; release returns its bytes.
type body struct {
	b      []byte
	held   int64
	weight int64
	bb     *bodyBudget
	pooled *[]byte // b's buffer, back to bodyPool on release
}

// take counts n more bytes of body, weight times; one request never holds
// more than the whole budget, so that any body within max-request-bytes
// gets in eventually.
func (x *body) take(n int64) error {
	n = min(n*x.weight, x.bb.size-x.held)
	if n <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(x.bb.done, x.bb.wait)
	defer cancel()
	if err := x.bb.sem.Acquire(ctx, n); err != nil {
		return errBusy
	}
	x.held += n
	return nil
}

func (x *body) release() {
	x.b = nil
	if x.pooled != nil {
		bodyPool.Put(x.pooled)
		x.pooled = nil
	}
	if x.held > 0 {
		if x.held >= gcAfterBytes {
			// Collect this request's garbage before the next large one
			// allocates: otherwise the two overlap in RSS (the collector
			// lags behind a heap that grew by hundreds of MB at once).
			runtime.GC()
		}
		x.bb.sem.Release(x.held)
		x.held = 0
	}
}

// readBody reads the request body, at most max-request-bytes: errBodyTooLarge
// beyond that (before reading it when the length is declared), errBusy when
// the budget has no room within budgetWait. weight is what the request
// holds per body byte until release: a store's decoded records take about
// three times the bytes of their JSON, and they are what fills memory.
// reuse lets a body of known length up to maxPooledBody live in a pooled
// buffer: only for a handler whose answer refers to none of the body's
// bytes, since the buffer is reused once release returns.
func (d *Daemon) readBody(c *fiber.Ctx, weight int64, reuse bool) (_ *body, err error) {
	defer func() {
		if errors.Is(err, errBodyTooLarge) || errors.Is(err, errBusy) {
			// The rest of the body is not read: answer, then close, with
			// time for the client to read the answer (lingerClose).
			c.Context().SetConnectionClose()
			lingerOnClose(c.Context().Conn())
		}
	}()
	limit := d.cfg.OpMonitor.MaxRequestBytes
	x := &body{bb: d.budget, weight: weight}
	stream := c.Context().RequestBodyStream()
	n := int64(c.Request().Header.ContentLength())
	if stream == nil {
		n = 0 // no body at all (fasthttp has nothing to stream)
	}
	switch {
	case n > limit:
		return x, errBodyTooLarge
	case n == 0:
		return x, nil
	case n > 0:
		if err := x.take(n); err != nil {
			return x, err
		}
		if reuse && n <= maxPooledBody {
			x.pooled = bodyPool.Get().(*[]byte)
			if int64(cap(*x.pooled)) < n {
				*x.pooled = make([]byte, n, max(n, chunkStep))
			}
			x.b = (*x.pooled)[:n]
		} else {
			x.b = make([]byte, n)
		}
		if _, err := io.ReadFull(stream, x.b); err != nil {
			x.release()
			return x, fmt.Errorf("read request body: %w", err)
		}
		return x, nil
	}
	// Unknown length (chunked): room is taken before each allocation.
	for {
		if len(x.b) == cap(x.b) {
			if int64(len(x.b)) > limit {
				x.release()
				return x, errBodyTooLarge
			}
			grow := max(int64(cap(x.b)), chunkStep)
			grow = min(grow, limit+1-int64(cap(x.b)))
			if err := x.take(grow); err != nil {
				x.release()
				return x, err
			}
			nb := make([]byte, len(x.b), int64(cap(x.b))+grow)
			copy(nb, x.b)
			x.b = nb
		}
		m, err := stream.Read(x.b[len(x.b):cap(x.b)])
		x.b = x.b[:len(x.b)+m]
		if errors.Is(err, io.EOF) {
			if int64(len(x.b)) > limit {
				x.release()
				return x, errBodyTooLarge
			}
			return x, nil
		}
		if errors.Is(err, fasthttp.ErrBodyTooLarge) {
			x.release()
			return x, errBodyTooLarge
		}
		if err != nil {
			x.release()
			return x, fmt.Errorf("read request body: %w", err)
		}
	}
}

// tooLarge answers a body over max-request-bytes with 413 and the
// endpoint's own error body (interface.md); the connection is closed since
// the rest of the body is not read.
func (d *Daemon) tooLarge(c *fiber.Ctx) error {
	limit := d.cfg.OpMonitor.MaxRequestBytes
	d.log.Warn().Str("path", c.Path()).Str("remote", c.IP()).Int64("limit", limit).Msg("request body too large")
	c.Context().SetConnectionClose()
	lingerOnClose(c.Context().Conn())
	c.Status(fiber.StatusRequestEntityTooLarge)
	switch c.Path() {
	case "/store_data":
		d.metrics.observeStore(false, 0)
		c.Set(fiber.HeaderContentType, "application/json;charset=utf-8")
		return c.SendString(tooLargeStore(limit))
	case "/query_data":
		d.metrics.observeQuery(opOther, false, 0)
		c.Set(fiber.HeaderContentType, "text/xml;charset=utf-8")
		c.Set("SOAPAction", "")
		return c.Send(tooLargeQuery(limit))
	}
	return nil
}
