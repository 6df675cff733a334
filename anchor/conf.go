// Package anchor reads X-Road global configuration: the configuration anchor
// file and the directory a configuration client keeps on disk
// (global-configuration.md §1, §3, §4), and downloads that directory itself
// from the anchor's sources, verified as upstream's configuration client
// does (§2). The daemon asks it whether the configuration is usable, who
// owns a security server and who the central monitoring client is.
//
// The signed directory is taken apart with the standard library's MIME
// readers; only the header parameters they cannot parse (base64 values with
// '/', '+' and '=') are split by hand.
package anchor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/opmond/opmond/schema"
)

// Conf is what the daemon needs from global configuration. Implementations
// are safe for concurrent use.
type Conf interface {
	// Valid returns nil when the configuration is usable at now (§3.4: the
	// main instance has private and shared parameters and neither metadata
	// expirationDate has passed, unless expiry is ignored), else an error
	// saying why.
	Valid(now time.Time) error
	// OwnerOf returns the owner member of the security server with exactly
	// this id (§4.1 owner resolution over the loaded, non-expired shared
	// parameters; the main instance's are always included).
	OwnerOf(server schema.ServerID) (schema.ClientID, bool)
	// MonitoringClient returns the central monitoring client named by the
	// main instance's monitoring parameters, if any.
	MonitoringClient() (schema.ClientID, bool)
	// Instance returns the main instance identifier ("" if unknown).
	Instance() string
	// Expiry returns the earliest expirationDate of the main private and
	// shared parameters (zero if none or if expiry is ignored).
	Expiry() time.Time
	// LastLoad returns the time of the last successful load (zero if none).
	LastLoad() time.Time
}

// Source is a Conf that keeps itself current: the daemon runs Run for its
// lifetime and calls Reload when asked to. The static directory reader and
// the downloader implement it.
type Source interface {
	Conf
	// Reload loads the configuration now. A failure is also logged and
	// reported by Valid.
	Reload() error
	// Run keeps the configuration current until ctx is done.
	Run(ctx context.Context)
}

// Mode is how the daemon obtains global configuration (interface.md).
type Mode int

const (
	// ModeStandalone: no global configuration; nobody is owner or central
	// monitoring client.
	ModeStandalone Mode = iota
	// ModeStatic: a directory copied from a security server, read as is.
	ModeStatic
	// ModeDownload: the daemon downloads and verifies the configuration
	// from the anchor's sources.
	ModeDownload
)

func (m Mode) String() string {
	switch m {
	case ModeStandalone:
		return "standalone"
	case ModeStatic:
		return "static"
	case ModeDownload:
		return "download"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// DetectMode chooses the mode at start: an anchor means download; otherwise
// an existing directory is read as is, and no directory means standalone. A
// directory path that exists but is not a directory is an error, so that a
// typo does not silently turn off access control by owner.
func DetectMode(anchorPath, dir string) (Mode, error) {
	if anchorPath != "" {
		return ModeDownload, nil
	}
	if dir == "" {
		return ModeStandalone, nil
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ModeStandalone, nil
	case err != nil:
		return ModeStandalone, fmt.Errorf("global configuration directory: %w", err)
	case !fi.IsDir():
		return ModeStandalone, fmt.Errorf("global configuration directory %s is not a directory", dir)
	}
	return ModeStatic, nil
}

// Standalone returns the configuration of a daemon without global
// configuration: always valid, with no owners and no monitoring client. The
// value also implements Source (Reload does nothing, Run waits for ctx).
func Standalone() Conf { return standalone{} }

type standalone struct{}

func (standalone) Valid(time.Time) error                           { return nil }
func (standalone) OwnerOf(schema.ServerID) (schema.ClientID, bool) { return schema.ClientID{}, false }
func (standalone) MonitoringClient() (schema.ClientID, bool)       { return schema.ClientID{}, false }
func (standalone) Instance() string                                { return "" }
func (standalone) Expiry() time.Time                               { return time.Time{} }
func (standalone) LastLoad() time.Time                             { return time.Time{} }
func (standalone) Reload() error                                   { return nil }
func (standalone) Run(ctx context.Context)                         { <-ctx.Done() }

var (
	_ Source = standalone{}
	_ Source = (*StaticDir)(nil)
	_ Source = (*Downloader)(nil)
)
