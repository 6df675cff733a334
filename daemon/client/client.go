// Package client talks to a running opmond: `opmond query` over the SOAP
// query interface, `opmond backup` and `opmond import` over the admin
// listener. The SOAP request and answer formats live in schema.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/opmond/opmond/daemon"
)

// UsageError is a mistake in a command's arguments (exit code 2).
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// ExitError ends a command with exit code 1 after it has said why itself
// (import's rejected lines).
type ExitError struct{ Msg string }

func (e ExitError) Error() string { return e.Msg }

// AdminURL is the base URL of the daemon's admin listener from its
// configuration; an unspecified listen host is reached on loopback.
func AdminURL(cfg *daemon.Config) (string, error) {
	if cfg.Admin.Listen == "" {
		return "", errors.New("admin.listen is \"\": the admin listener is disabled")
	}
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return "", fmt.Errorf("admin.listen = %q: %w", cfg.Admin.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// adminError reads an admin API error answer ({"error":...}) as an error.
func adminError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return fmt.Errorf("%s %s: HTTP %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, msg)
}

// adminDo sends one request to the admin listener.
func adminDo(ctx context.Context, hc *http.Client, method, url string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, adminError(resp)
	}
	return resp, nil
}
