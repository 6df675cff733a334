package daemon

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
)

// newApp builds the X-Road interface: two exact paths, 400 for the rest.
func (d *Daemon) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage:     true,
		BodyLimit:                 int(d.cfg.OpMonitor.MaxRequestBytes),
		CaseSensitive:             true,
		StrictRouting:             true,
		DisableDefaultContentType: true,
		// Handlers read bodies themselves, counted (body.go).
		StreamRequestBody: true,
		// A request must arrive within the idle timeout, as must the next
		// one on a kept-alive connection (interface.md).
		ReadTimeout:  d.idleTimeout,
		IdleTimeout:  d.idleTimeout,
		WriteTimeout: 2 * time.Minute,
		ErrorHandler: d.errorHandler,
	})
	app.Server().ConnState = d.xlim.fasthttpState
	app.All("/store_data", d.handleStore)
	app.All("/query_data", d.handleQuery)
	app.Use(func(c *fiber.Ctx) error {
		c.Status(fiber.StatusBadRequest)
		return nil
	})
	return app
}

// errorHandler answers what fasthttp refuses before a handler runs (an
// oversized body is the handlers' own business, body.go, but stays 413 here).
func (d *Daemon) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) && fe.Code == fiber.StatusRequestEntityTooLarge {
		return d.tooLarge(c)
	}
	d.log.Warn().Err(err).Str("path", c.Path()).Msg("request failed")
	c.Status(fiber.StatusBadRequest)
	return nil
}
