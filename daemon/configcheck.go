package daemon

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/opmond/opmond/anchor"
)

// Check is what check-config verifies beyond Validate: the files the
// configuration names and the global configuration as serve would read it
// at now, so that check-config refuses whatever serve would report as
// invalid. It also returns warnings about settings that work but deserve a
// second look.
func (c *Config) Check(now time.Time) (warnings []string, err error) {
	if err := c.CheckFiles(); err != nil {
		return nil, err
	}
	g := c.GlobalConf
	mode, err := anchor.DetectMode(g.Anchor, g.Directory)
	if err != nil {
		return nil, keyError("global-conf.directory", g.Directory, err.Error())
	}
	if mode == anchor.ModeStatic {
		s := anchor.NewStaticDir(g.Directory, anchor.StaticOptions{IgnoreExpiry: g.IgnoreExpiry, Logger: zerolog.Nop(), Now: func() time.Time { return now }})
		if err := s.Valid(now); err != nil {
			return nil, keyError("global-conf.directory", g.Directory, "not a valid global configuration ("+err.Error()+
				"); copy /etc/xroad/globalconf from a security server, set global-conf.ignore-expiry for an old copy, or remove the directory to run standalone")
		}
		if g.IgnoreExpiry {
			warnings = append(warnings, "global-conf.ignore-expiry = true: the expiry dates of the global configuration are ignored; keep the copy up to date by hand")
		}
	}
	if host, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && !loopbackHost(host) {
		warnings = append(warnings, keyError("admin.listen", c.Admin.Listen,
			"not a loopback address; the admin interface (metrics, JSON API, backup) has no authentication of its own").Error())
	}
	if c.OpMonitor.Scheme == "http" && !loopbackHost(c.OpMonitor.Host) {
		warnings = append(warnings, keyError("op-monitor.host", c.OpMonitor.Host,
			`not a loopback address with scheme "http": records travel unencrypted; use scheme "https" for an external daemon`).Error())
	}
	return warnings, nil
}

// loopbackHost reports whether a listen host is loopback only ("" and
// unspecified addresses listen everywhere).
func loopbackHost(host string) bool {
	return host == "localhost" || isLoopback(host)
}

// checkTLSFiles names the key of a missing TLS file and the fix, which the
// TLS package, knowing only paths, cannot.
func (c *Config) checkTLSFiles() error {
	o := c.OpMonitor
	if o.Scheme != "https" {
		return nil
	}
	for _, f := range []struct{ key, path string }{{"op-monitor.tls-certificate", o.TLSCertificate}, {"op-monitor.tls-key", o.TLSKey}} {
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			return keyError(f.key, f.path, "file not found; create a key pair with: opmond gencert --dir "+filepath.Dir(f.path))
		}
	}
	for _, p := range o.ClientTLSCertificate {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return keyError("op-monitor.client-tls-certificate", p,
				"file not found; copy each security server's /etc/xroad/ssl/internal.crt to this host and list it here")
		}
	}
	return nil
}
