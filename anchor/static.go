package anchor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opmond/opmond/schema"
	"github.com/rs/zerolog"
)

// File names inside the directory (§3).
const (
	instanceIdentifierFile = "instance-identifier"
	privateParamsFile      = "private-params.xml"
	sharedParamsFile       = "shared-params.xml"
	monitoringParamsFile   = "monitoring-params.xml"
	metadataSuffix         = ".metadata"
)

// DefaultInterval is how often a static directory is checked for changes,
// upstream's global-conf-refresh-rate-seconds.
const DefaultInterval = 60 * time.Second

// StaticOptions configures a StaticDir.
type StaticOptions struct {
	// IgnoreExpiry keeps the configuration valid past the expiry dates in
	// its metadata files, for copies on air-gapped hosts (§3.5).
	IgnoreExpiry bool
	// Interval between checks for changes; DefaultInterval if not positive.
	Interval time.Duration
	Logger   zerolog.Logger
	// Now is the clock for load times and for the expiry of other
	// instances' shared parameters; time.Now if nil.
	Now func() time.Time
	// Deferred leaves the first load to the first Reload (the downloader
	// loads only a directory that holds a stored set).
	Deferred bool
}

// StaticDir is global configuration read from a directory as a configuration
// client writes it (§3). Lookups read an immutable snapshot through an
// atomic pointer, so request goroutines never wait for a reload.
//
// When a reload fails (the directory, its instance-identifier file or the
// main instance's private or shared parameters are missing or unreadable),
// Valid reports that error until a later load succeeds, while lookups keep
// answering from the last good load: the configuration is invalid either
// way, and callers that look up regardless get the best answer there is.
type StaticDir struct {
	dir          string
	ignoreExpiry bool
	interval     time.Duration
	log          zerolog.Logger
	now          func() time.Time

	mu    sync.Mutex // serialises loads; guards stamp
	stamp string     // state of the files the current snapshot was loaded from

	snap atomic.Pointer[snapshot]
}

// snapshot is never modified once stored.
type snapshot struct {
	data *confData // last good load; empty before the first
	err  error     // why the latest load failed; nil if it succeeded
}

type confData struct {
	instance      string
	loadedAt      time.Time
	privateExpiry time.Time // zero: never expires
	sharedExpiry  time.Time
	servers       map[schema.ServerID]serverEntry
	monitoring    schema.ClientID
	hasMonitoring bool
}

type serverEntry struct {
	owner schema.ClientID
	// expiry of the shared parameters the entry came from; zero for the
	// main instance (always included) and for files without an expiry.
	expiry time.Time
}

// NewStaticDir reads dir at once (unless Deferred). A failed load is not an error here: it is
// logged and Valid reports it.
func NewStaticDir(dir string, opts StaticOptions) *StaticDir {
	s := &StaticDir{
		dir:          dir,
		ignoreExpiry: opts.IgnoreExpiry,
		interval:     opts.Interval,
		log:          opts.Logger,
		now:          opts.Now,
	}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.snap.Store(&snapshot{data: &confData{}, err: errors.New("global configuration not loaded")})
	if !opts.Deferred {
		_ = s.Reload()
	}
	return s
}

// Reload reads the directory now. On failure the error is logged, returned
// and reported by Valid; lookups keep the last good data.
func (s *StaticDir) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(s.scan())
}

// Run checks the directory for changes every interval and reloads it when
// any modification time, size or mode changed, until ctx is done. A failed
// load is retried only after a change (or Reload), so a broken directory
// logs one error per change rather than one per interval.
func (s *StaticDir) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if st := s.scan(); st != s.stamp {
			_ = s.reloadLocked(st)
		}
		s.mu.Unlock()
	}
}

// reloadLocked loads the directory and records stamp, taken before loading
// so that a change made during the load is seen by the next check.
func (s *StaticDir) reloadLocked(stamp string) error {
	s.stamp = stamp
	d, err := s.load()
	if err != nil {
		s.snap.Store(&snapshot{data: s.snap.Load().data, err: err})
		s.log.Error().Err(err).Str("dir", s.dir).Msg("global configuration not loaded")
		return err
	}
	s.snap.Store(&snapshot{data: d})
	ev := s.log.Info().Str("dir", s.dir).Str("instance", d.instance).
		Int("security_servers", len(d.servers)).Bool("ignore_expiry", s.ignoreExpiry)
	if exp := s.Expiry(); !exp.IsZero() {
		ev = ev.Time("expiry", exp)
	}
	if d.hasMonitoring {
		ev = ev.Str("monitoring_client", d.monitoring.String())
	}
	ev.Msg("global configuration loaded")
	return nil
}

// scan describes the modification state of everything a load reads: the
// directory, its entries and the files of its sub-folders. A few stat calls,
// cheap enough to run every interval.
func (s *StaticDir) scan() string {
	var b strings.Builder
	add := func(path string) os.FileInfo {
		fi, err := os.Stat(path)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", path, err)
			return nil
		}
		fmt.Fprintf(&b, "%s %d %d %v\n", path, fi.ModTime().UnixNano(), fi.Size(), fi.Mode())
		return fi
	}
	if fi := add(s.dir); fi == nil || !fi.IsDir() {
		return b.String()
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		fmt.Fprintf(&b, "%v\n", err)
	}
	for _, e := range entries {
		if hidden(e.Name()) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		if fi := add(p); fi != nil && fi.IsDir() {
			files, err := os.ReadDir(p)
			if err != nil {
				fmt.Fprintf(&b, "%v\n", err)
			}
			for _, f := range files {
				add(filepath.Join(p, f.Name()))
			}
		}
	}
	return b.String()
}

// load reads the whole directory into a new confData.
func (s *StaticDir) load() (*confData, error) {
	fi, err := os.Stat(s.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("global configuration directory %s does not exist", s.dir)
	case err != nil:
		return nil, fmt.Errorf("global configuration directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("global configuration directory %s is not a directory", s.dir)
	}
	raw, err := readFile(filepath.Join(s.dir, instanceIdentifierFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("global configuration directory %s has no %s file", s.dir, instanceIdentifierFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read instance identifier: %w", err)
	}
	d := &confData{
		instance: strings.TrimSpace(string(raw)),
		servers:  make(map[schema.ServerID]serverEntry),
	}
	if d.instance == "" {
		return nil, fmt.Errorf("global configuration directory %s has an empty %s file", s.dir, instanceIdentifierFile)
	}
	mainName := instanceDirName(d.instance)
	mainDir := filepath.Join(s.dir, mainName)
	// A downloaded folder is a link to one generation of files, replaced
	// as a whole (diskset.go): resolve it once, so the files read belong
	// to one set even if the link moves meanwhile.
	linked := false
	if p, err := filepath.EvalSymlinks(mainDir); err == nil && p != mainDir {
		mainDir, linked = p, true
	}
	if err := s.loadMain(d, mainDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(mainDir); linked && err != nil {
		// Removed while being read: what was read may lack files.
		return nil, fmt.Errorf("global configuration set %s was replaced while being read", mainDir)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read global configuration directory: %w", err)
	}
	for _, e := range entries {
		if e.Name() == mainName || hidden(e.Name()) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			s.loadOther(d, p, e.Name())
		}
	}
	d.loadedAt = s.now()
	return d, nil
}

// hidden names are not instance folders: the downloader's generations
// (.sets) and temporary files start with a dot, which no escaped instance
// identifier of a real instance does.
func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// loadMain reads the main instance's folder. Its private and shared
// parameters must be there and parse; monitoring parameters are optional.
func (s *StaticDir) loadMain(d *confData, dir string) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("global configuration directory %s has no folder for main instance %s", s.dir, d.instance)
	}
	path := filepath.Join(dir, privateParamsFile)
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("main instance %s has no %s in %s", d.instance, privateParamsFile, dir)
	}
	if err != nil {
		return fmt.Errorf("read main private parameters: %w", err)
	}
	inst, err := parsePrivate(data)
	if err != nil {
		return fmt.Errorf("main private parameters %s: %w", path, err)
	}
	s.checkInstance(path, d.instance, inst)
	d.privateExpiry = s.metadataExpiry(path)

	path = filepath.Join(dir, sharedParamsFile)
	data, err = readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("main instance %s has no %s in %s", d.instance, sharedParamsFile, dir)
	}
	if err != nil {
		return fmt.Errorf("read main shared parameters: %w", err)
	}
	inst, owners, err := parseShared(data)
	if err != nil {
		return fmt.Errorf("main shared parameters %s: %w", path, err)
	}
	s.checkInstance(path, d.instance, inst)
	d.sharedExpiry = s.metadataExpiry(path)
	d.addServers(owners, time.Time{})

	d.monitoring, d.hasMonitoring = s.loadMonitoring(filepath.Join(dir, monitoringParamsFile))
	return nil
}

// loadOther reads the shared parameters of another (federated) instance's
// folder. A file that cannot be read or parsed is skipped: it does not make
// the configuration invalid. Other instances' private parameters are not
// used, so they are not read.
func (s *StaticDir) loadOther(d *confData, dir, name string) {
	path := filepath.Join(dir, sharedParamsFile)
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var (
		inst   string
		owners map[schema.ServerID]schema.ClientID
	)
	if err == nil {
		inst, owners, err = parseShared(data)
	}
	if err != nil {
		s.log.Error().Err(err).Str("file", path).Msg("shared parameters skipped")
		return
	}
	if want, err := url.QueryUnescape(name); err == nil {
		s.checkInstance(path, want, inst)
	}
	d.addServers(owners, s.metadataExpiry(path))
}

// loadMonitoring reads the central monitoring client. Upstream checks no
// expiry here, and a file that is absent or invalid means there is none.
func (s *StaticDir) loadMonitoring(path string) (schema.ClientID, bool) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return schema.ClientID{}, false
	}
	var (
		id schema.ClientID
		ok bool
	)
	if err == nil {
		id, ok, err = parseMonitoring(data)
	}
	if err != nil {
		s.log.Warn().Err(err).Str("file", path).Msg("monitoring parameters ignored: no central monitoring client")
		return schema.ClientID{}, false
	}
	return id, ok
}

// metadataExpiry returns the expirationDate of path's metadata. Missing or
// unreadable metadata means the file never expires, as upstream treats it.
func (s *StaticDir) metadataExpiry(path string) time.Time {
	data, err := readFile(path + metadataSuffix)
	var exp time.Time
	var version string
	if err == nil {
		exp, version, err = parseMetadata(data)
	}
	if err != nil {
		ev := s.log.Warn()
		if s.ignoreExpiry {
			ev = s.log.Debug() // expiry does not matter in this mode
		}
		ev.Err(err).Str("file", path).Msg("no usable metadata: treated as never expiring")
		return time.Time{}
	}
	s.log.Debug().Str("file", path).Time("expiry", exp).Str("configuration_version", version).Msg("metadata read")
	return exp
}

// checkInstance logs a file whose instance identifier differs from the one
// its folder stands for; the file's own identifier is used.
func (s *StaticDir) checkInstance(path, want, got string) {
	if want != got {
		s.log.Warn().Str("file", path).Str("expected", want).Str("instance", got).
			Msg("instance identifier of file differs from its folder")
	}
}

// addServers merges security servers read from a file that expires at exp.
// An entry that never expires wins over one that does, and a later expiry
// over an earlier one, so a lookup sees a server while any file lists it.
func (d *confData) addServers(owners map[schema.ServerID]schema.ClientID, exp time.Time) {
	for id, owner := range owners {
		if cur, ok := d.servers[id]; ok && (cur.expiry.IsZero() || (!exp.IsZero() && !exp.After(cur.expiry))) {
			continue
		}
		d.servers[id] = serverEntry{owner: owner, expiry: exp}
	}
}

// Valid implements Conf.
func (s *StaticDir) Valid(now time.Time) error {
	snap := s.snap.Load()
	if snap.err != nil {
		return snap.err
	}
	if s.ignoreExpiry {
		return nil
	}
	if exp := snap.data.privateExpiry; !exp.IsZero() && now.After(exp) {
		return fmt.Errorf("main private parameters expired at %s", exp.UTC().Format(time.RFC3339Nano))
	}
	if exp := snap.data.sharedExpiry; !exp.IsZero() && now.After(exp) {
		return fmt.Errorf("main shared parameters expired at %s", exp.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// OwnerOf implements Conf. Shared parameters of other instances count only
// until their expiry; the main instance's always count.
func (s *StaticDir) OwnerOf(server schema.ServerID) (schema.ClientID, bool) {
	e, ok := s.snap.Load().data.servers[server]
	if !ok {
		return schema.ClientID{}, false
	}
	if !s.ignoreExpiry && !e.expiry.IsZero() && s.now().After(e.expiry) {
		return schema.ClientID{}, false
	}
	return e.owner, true
}

// MonitoringClient implements Conf.
func (s *StaticDir) MonitoringClient() (schema.ClientID, bool) {
	d := s.snap.Load().data
	return d.monitoring, d.hasMonitoring
}

// Instance implements Conf.
func (s *StaticDir) Instance() string { return s.snap.Load().data.instance }

// Expiry implements Conf.
func (s *StaticDir) Expiry() time.Time {
	if s.ignoreExpiry {
		return time.Time{}
	}
	d := s.snap.Load().data
	exp := d.privateExpiry
	if exp.IsZero() || (!d.sharedExpiry.IsZero() && d.sharedExpiry.Before(exp)) {
		exp = d.sharedExpiry
	}
	return exp
}

// LastLoad implements Conf.
func (s *StaticDir) LastLoad() time.Time { return s.snap.Load().data.loadedAt }
