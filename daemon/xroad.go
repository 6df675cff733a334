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
		ReadTimeout:               2 * time.Minute,
		WriteTimeout:              2 * time.Minute,
		IdleTimeout:               2 * time.Minute,
		ErrorHandler:              d.errorHandler,
	})
	app.Server().ConnState = d.conns.track
	app.Use(d.conns.middleware)
	app.All("/store_data", d.handleStore)
	app.All("/query_data", d.handleQuery)
	app.Use(func(c *fiber.Ctx) error {
		c.Status(fiber.StatusBadRequest)
		return nil
	})
	return app
}

// errorHandler answers what fasthttp refuses before a handler runs: an
// oversized body gets 413 with the endpoint's own error body (interface.md).
func (d *Daemon) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) && fe.Code == fiber.StatusRequestEntityTooLarge {
		limit := d.cfg.OpMonitor.MaxRequestBytes
		d.log.Warn().Str("path", c.Path()).Int64("limit", limit).Msg("request body too large")
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
	d.log.Warn().Err(err).Str("path", c.Path()).Msg("request failed")
	c.Status(fiber.StatusBadRequest)
	return nil
}
