package anchor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/opmond/opmond/schema"
)

// Cause is why a download round failed, as counted in metrics.
type Cause string

// The causes of a failed round. Every DownloadError has one.
const (
	CauseUnreachable  Cause = "unreachable"   // connection failed, timed out or broke
	CauseHTTPStatus   Cause = "http_status"   // an HTTP status of 400 or more
	CauseBadSignature Cause = "bad_signature" // no matching certificate, or the signature does not verify
	CauseBadHash      Cause = "bad_hash"      // a content part differs from its hash
	CauseExpired      Cause = "expired"       // the directory's Expire-date has passed
	CauseMalformed    Cause = "malformed"     // the anchor, directory or a part cannot be parsed or is inconsistent
	CauseWrite        Cause = "write"         // the verified set could not be saved
)

// Causes lists every Cause, for metrics that show zeros rather than gaps.
var Causes = []Cause{CauseUnreachable, CauseHTTPStatus, CauseBadSignature, CauseBadHash, CauseExpired, CauseMalformed, CauseWrite}

// DownloadError is a failed download from one source, with upstream's
// error code (§2.10) and the cause it is counted under.
type DownloadError struct {
	Cause  Cause
	Code   string
	Source string // the anchor URL being downloaded; "" for anchor errors
	Err    error
}

func (e *DownloadError) Error() string {
	s := e.Code + ": " + e.Err.Error()
	if e.Source != "" {
		s = e.Source + ": " + s
	}
	return s
}

func (e *DownloadError) Unwrap() error { return e.Err }

func malformed(code, format string, args ...any) *DownloadError {
	return &DownloadError{Cause: CauseMalformed, Code: code, Err: fmt.Errorf(format, args...)}
}

// CauseOf returns the cause of a round's error (CauseMalformed for an error
// that is not a DownloadError).
func CauseOf(err error) Cause {
	var de *DownloadError
	if errors.As(err, &de) {
		return de.Cause
	}
	return CauseMalformed
}

// DefaultRequestTimeout bounds each HTTP request of a download (connect,
// headers and body), so a source that hangs or trickles costs at most this
// much per request. Upstream uses a 30 s read timeout.
const DefaultRequestTimeout = 30 * time.Second

// DownloadOptions configures a Downloader.
type DownloadOptions struct {
	Anchor    string // path of configuration-anchor.xml
	Directory string // where the verified configuration is kept (§3)
	// Interval between rounds; DefaultInterval if not positive.
	Interval time.Duration
	// RequestTimeout bounds every HTTP request; DefaultRequestTimeout if
	// not positive. Ignored when HTTPClient is set.
	RequestTimeout time.Duration
	HTTPClient     *http.Client
	Logger         zerolog.Logger
	Now            func() time.Time // nil: time.Now
	// OnRound, if set, is called after every round with its error (nil on
	// success).
	OnRound func(err error)
}

// Downloader keeps global configuration current by downloading it from the
// anchor's sources (§2), verifying it and writing it to Directory in
// upstream's layout (§3). Lookups are answered by a StaticDir over that
// directory, reloaded after each good round, so what is served is always
// what is on disk, and the last good set stays in use when a round fails.
type Downloader struct {
	anchorPath string
	dir        string
	interval   time.Duration
	hc         *http.Client
	log        zerolog.Logger
	now        func() time.Time
	onRound    func(error)
	static     *StaticDir

	mu          sync.Mutex // serialises rounds; guards the fields below
	anchor      *Anchor
	anchorStamp string
	lastSource  string // URL of the source that succeeded last: tried first

	lastSuccess atomic.Int64                // unix nanoseconds of the last good round; 0: none
	lastErr     atomic.Pointer[roundResult] // the latest round's error
}

type roundResult struct{ err error }

// NewDownloader loads the anchor (an error if it is missing or malformed),
// writes its instance identifier into the directory (§1.4) and loads the
// set stored there, if any, which is used until it expires or a round
// replaces it. Nothing is downloaded before Run or Reload.
func NewDownloader(opts DownloadOptions) (*Downloader, error) {
	d := &Downloader{
		anchorPath: opts.Anchor,
		dir:        opts.Directory,
		interval:   opts.Interval,
		hc:         opts.HTTPClient,
		log:        opts.Logger,
		now:        opts.Now,
		onRound:    opts.OnRound,
	}
	if d.interval <= 0 {
		d.interval = DefaultInterval
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.hc == nil {
		d.hc = newHTTPClient(opts.RequestTimeout)
	}
	if _, err := d.loadAnchorLocked(); err != nil {
		return nil, err
	}
	// The reader's own info lines would repeat every round's; keep its
	// warnings and errors.
	readerLog := d.log
	if readerLog.GetLevel() < zerolog.WarnLevel {
		readerLog = readerLog.Level(zerolog.WarnLevel)
	}
	d.static = NewStaticDir(d.dir, StaticOptions{Logger: readerLog, Now: d.now, Deferred: true})
	if _, err := os.Stat(filepath.Join(d.dir, instanceDirName(d.anchor.Instance))); err == nil {
		_ = d.static.Reload() // a set stored by an earlier run
	}
	return d, nil
}

func newHTTPClient(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: min(10*time.Second, timeout)}).DialContext
	t.ResponseHeaderTimeout = timeout
	return &http.Client{Transport: t, Timeout: timeout}
}

// Anchor returns the anchor in use.
func (d *Downloader) Anchor() *Anchor {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.anchor
}

// loadAnchorLocked (re)reads the anchor when its modification time or size
// changed (§1.4) and writes its instance identifier. It reports whether the
// anchor was (re)loaded.
func (d *Downloader) loadAnchorLocked() (bool, error) {
	fi, err := os.Stat(d.anchorPath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, &DownloadError{Cause: CauseMalformed, Code: "anchor_file_not_found", Err: fmt.Errorf("anchor %s does not exist", d.anchorPath)}
	}
	if err != nil {
		return false, &DownloadError{Cause: CauseMalformed, Code: "anchor_file_not_found", Err: err}
	}
	stamp := fmt.Sprintf("%d %d", fi.ModTime().UnixNano(), fi.Size())
	if d.anchor != nil && stamp == d.anchorStamp {
		return false, nil
	}
	a, err := LoadAnchor(d.anchorPath)
	if err != nil {
		return false, &DownloadError{Cause: CauseMalformed, Code: "malformed_anchor", Err: err}
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return false, &DownloadError{Cause: CauseWrite, Code: "global_conf_part_file_save_failure", Err: err}
	}
	idFile := filepath.Join(d.dir, instanceIdentifierFile)
	if cur, err := os.ReadFile(idFile); err != nil || string(cur) != a.Instance {
		if err := writeFileAtomic(idFile, []byte(a.Instance)); err != nil {
			return false, &DownloadError{Cause: CauseWrite, Code: "global_conf_part_file_save_failure", Err: err}
		}
	}
	ev := d.log.Info()
	if d.anchor != nil {
		ev = d.log.Warn() // an operator replaced it: worth noticing
	}
	urls := make([]string, len(a.Sources))
	for i, s := range a.Sources {
		urls[i] = s.DownloadURL
	}
	ev.Str("anchor", d.anchorPath).Str("fingerprint", a.Fingerprint).Str("instance", a.Instance).
		Strs("sources", urls).Msg("configuration anchor loaded")
	d.anchor, d.anchorStamp = a, stamp
	return true, nil
}

// Run downloads at once and then every interval until ctx is done. Rounds
// never overlap; each is bounded, so a hanging source delays the next
// round by at most one interval.
func (d *Downloader) Run(ctx context.Context) {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(d.interval, d.requestTimeout()))
		_ = d.round(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Downloader) requestTimeout() time.Duration {
	if d.hc.Timeout > 0 {
		return d.hc.Timeout
	}
	return DefaultRequestTimeout
}

// Reload runs one download round now.
func (d *Downloader) Reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(d.interval, d.requestTimeout()))
	defer cancel()
	return d.round(ctx)
}

// round tries the sources in turn, the last successful one first (§2.10),
// until one fully succeeds. A failed round changes nothing on disk or in
// memory and is logged in one line naming the source and the cause.
func (d *Downloader) round(ctx context.Context) (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			return // stopped, not failed: nothing to log or count
		}
		d.lastErr.Store(&roundResult{err})
		if d.onRound != nil {
			d.onRound(err)
		}
	}()
	reloaded, err := d.loadAnchorLocked()
	if err != nil {
		d.log.Error().Str("anchor", d.anchorPath).Str("cause", string(CauseOf(err))).Err(err).
			Str("in_use", d.inUse()).Msg("global configuration download failed")
		return err
	}
	if reloaded && d.static != nil {
		_ = d.static.Reload() // the instance may have changed
	}
	var attempts []string
	for _, src := range d.orderedSources() {
		if err = d.download(ctx, src); err == nil {
			d.lastSource = src.DownloadURL
			d.lastSuccess.Store(d.now().UnixNano())
			return nil
		}
		attempts = append(attempts, err.Error())
		d.log.Debug().Str("source", src.DownloadURL).Str("cause", string(CauseOf(err))).Err(err).Msg("source failed")
		if ctx.Err() != nil {
			break
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	var de *DownloadError
	errors.As(err, &de)
	ev := d.log.Error().Str("source", de.Source).Str("cause", string(de.Cause)).Str("code", de.Code).Err(de.Err)
	if len(attempts) > 1 {
		ev = ev.Strs("attempts", attempts)
	}
	ev.Str("in_use", d.inUse()).Msg("global configuration download failed")
	return err
}

// inUse says what a failed round leaves in use, for its log line.
func (d *Downloader) inUse() string {
	if err := d.Valid(d.now()); err != nil {
		return "none: " + err.Error()
	}
	if exp := d.Expiry(); !exp.IsZero() {
		return "the last good configuration, valid until " + exp.UTC().Format(time.RFC3339)
	}
	return "the last good configuration"
}

// orderedSources is the anchor's sources in their order, with the one
// that succeeded last moved to the front. Anchor URLs are used as given
// (§7.2).
func (d *Downloader) orderedSources() []AnchorSource {
	out := make([]AnchorSource, 0, len(d.anchor.Sources))
	for _, s := range d.anchor.Sources {
		if s.DownloadURL == d.lastSource {
			out = append([]AnchorSource{s}, out...)
		} else {
			out = append(out, s)
		}
	}
	return out
}

// download fetches, verifies and stores the configuration of one source.
func (d *Downloader) download(ctx context.Context, src AnchorSource) (err error) {
	defer func() {
		var de *DownloadError
		if errors.As(err, &de) {
			de.Source = src.DownloadURL
		} else if err != nil {
			err = &DownloadError{Cause: CauseMalformed, Code: "global_conf_parsing_downloaded_conf_directory_failure", Source: src.DownloadURL, Err: err}
		}
	}()
	dirURL, body, err := d.getDirectory(ctx, src.DownloadURL)
	if err != nil {
		return err
	}
	env, err := parseEnvelope(body)
	if err != nil {
		return err
	}
	// Upstream's order: the signature before anything of the directory.
	if err := verifySignature(src.VerificationCerts, env.sig, env.signed); err != nil {
		code := "global_conf_signature_verification_failure"
		if errors.Is(err, errNoVerificationCert) {
			code = "global_conf_missing_verification_cert"
		}
		return &DownloadError{Cause: CauseBadSignature, Code: code, Err: err}
	}
	dir, err := parseSignedData(env.signed, env.innerBoundary)
	if err != nil {
		return err
	}
	instance := d.anchor.Instance
	if now := d.now(); now.After(dir.expire) {
		return &DownloadError{Cause: CauseExpired, Code: "global_conf_outdated",
			Err: fmt.Errorf("configuration instance %s expired on %s", instance, dir.expire.UTC().Format(time.RFC3339))}
	}
	files, fetched, err := d.fetchParts(ctx, dirURL, dir, instance)
	if err != nil {
		return err
	}
	if err := writeSet(d.dir, instance, files); err != nil {
		return &DownloadError{Cause: CauseWrite, Code: "global_conf_part_file_save_failure", Err: err}
	}
	if err := d.static.Reload(); err != nil {
		return &DownloadError{Cause: CauseWrite, Code: "global_conf_part_file_save_failure", Err: fmt.Errorf("stored configuration does not load: %w", err)}
	}
	ev := d.log.Debug()
	if fetched > 0 || src.DownloadURL != d.lastSource {
		ev = d.log.Info()
	}
	ev.Str("source", src.DownloadURL).Str("instance", instance).Int("version", dir.version).
		Time("expiry", dir.expire).Int("parts", len(files)).Int("downloaded", fetched).
		Msg("global configuration downloaded")
	return nil
}

// fetchParts returns the verified files of instance listed by dir: parts
// whose local copy already has the listed hash are not downloaded again
// (§2.8). The main private and shared parameters must be listed and carry
// the instance they are filed under.
func (d *Downloader) fetchParts(ctx context.Context, dirURL *url.URL, dir *directory, instance string) ([]setFile, int, error) {
	cur := filepath.Join(d.dir, instanceDirName(instance))
	if p, err := filepath.EvalSymlinks(cur); err == nil {
		cur = p // read one set, even if it is replaced meanwhile
	}
	var (
		files   []setFile
		fetched int
		seen    = map[string]bool{}
	)
	for _, e := range dir.entries {
		if e.contentID == "" || e.instance != instance {
			// No content identifier (§7.16) or another instance's part:
			// federation is not downloaded (upstream's default).
			d.log.Debug().Str("location", e.location).Str("instance", e.instance).Msg("directory entry skipped")
			continue
		}
		name, err := partFileName(e)
		if err != nil {
			return nil, 0, err
		}
		if seen[name] {
			return nil, 0, malformed("global_conf_header_field_wrong_value", "directory lists %s twice", name)
		}
		seen[name] = true
		data, err := readFile(filepath.Join(cur, name))
		if err != nil || !bytes.Equal(sum(e.hashAlg, data), e.hash) {
			loc, err := dirURL.Parse(e.location)
			if err != nil {
				return nil, 0, malformed("global_conf_header_field_wrong_value", "Content-location %q: %v", e.location, err)
			}
			if data, err = d.get(ctx, loc.String(), "global_conf_part_download_failure"); err != nil {
				return nil, 0, err
			}
			if got := sum(e.hashAlg, data); !bytes.Equal(got, e.hash) {
				return nil, 0, &DownloadError{Cause: CauseBadHash, Code: "global_conf_part_downloaded_file_integrity_failure",
					Err: fmt.Errorf("%s: content hash %s, directory says %s", loc, b64(got), b64(e.hash))}
			}
			fetched++
		}
		if err := checkPart(e, data); err != nil {
			return nil, 0, err
		}
		files = append(files, setFile{name: name, data: data, meta: fileMetadata{
			ContentIdentifier: e.contentID, InstanceIdentifier: e.instance, ExpirationDate: dir.expireRaw,
			ContentFileName: e.fileName, ContentLocation: e.location, ConfigurationVersion: strconv.Itoa(dir.version),
		}})
	}
	for _, need := range []string{privateParamsFile, sharedParamsFile} {
		if !seen[need] {
			return nil, 0, malformed("global_conf_missing_signed_data", "directory lists no %s for instance %s", need, instance)
		}
	}
	return files, fetched, nil
}

// partFileName is the local name of a part (§3.1). A name from the
// network must be a plain file name.
func partFileName(e entry) (string, error) {
	var name string
	switch {
	case e.contentID == contentPrivate:
		return privateParamsFile, nil
	case e.contentID == contentShared:
		return sharedParamsFile, nil
	case e.fileName != "":
		name = e.fileName
	default:
		u, err := url.Parse(e.location)
		if err != nil {
			return "", malformed("global_conf_header_field_wrong_value", "Content-location %q: %v", e.location, err)
		}
		name = path.Base(u.Path)
	}
	if name == "" || name == "." || name == ".." || name == "/" || strings.ContainsAny(name, `/\`) ||
		strings.HasPrefix(name, ".") || strings.HasSuffix(name, metadataSuffix) || name == instanceIdentifierFile {
		return "", malformed("global_conf_header_field_wrong_value", "directory entry %s has an unusable file name %q", e.location, name)
	}
	return name, nil
}

// checkPart parses the parameters the reader needs with the reader's own
// parsers, so that nothing is stored that would then not load, and checks
// their instance against the Content-identifier (§2.8).
func checkPart(e entry, data []byte) error {
	var (
		inst string
		err  error
	)
	switch e.contentID {
	case contentPrivate:
		inst, err = parsePrivate(data)
	case contentShared:
		inst, _, err = parseShared(data)
	default:
		return nil
	}
	if err != nil {
		return malformed("global_conf_parsing_downloaded_conf_directory_failure", "%s: %v", e.contentID, err)
	}
	if inst != e.instance {
		return malformed("global_conf_part_invalid_instance_identifier", "%s names instance %q, its Content-identifier %q", e.contentID, inst, e.instance)
	}
	return nil
}

// getDirectory downloads the signed directory, negotiating the version as
// upstream does (§2.1): from the current version down, the first that is
// not answered 404; the minimum without probing. A URL that names a
// version is used as is. The probe's answer is the directory itself.
func (d *Downloader) getDirectory(ctx context.Context, raw string) (*url.URL, []byte, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, malformed("malformed_anchor", "downloadURL %q: %v", raw, err)
	}
	if u.Query().Has("version") {
		body, err := d.get(ctx, u.String(), "global_conf_download_url_connection_failure")
		return u, body, err
	}
	for v := currentConfVersion; ; v-- {
		vu := *u
		if vu.RawQuery != "" {
			vu.RawQuery += "&"
		}
		vu.RawQuery += "version=" + strconv.Itoa(v)
		status, body, err := d.fetch(ctx, vu.String())
		if err != nil {
			code := "global_conf_get_version_failed"
			if v == minConfVersion {
				code = "global_conf_download_url_connection_failure"
			}
			return nil, nil, &DownloadError{Cause: CauseUnreachable, Code: code, Err: err}
		}
		if status == http.StatusNotFound && v > minConfVersion {
			continue
		}
		if status >= 400 {
			return nil, nil, &DownloadError{Cause: CauseHTTPStatus, Code: "global_conf_download_url_connection_failure",
				Err: fmt.Errorf("GET %s: HTTP status %d", vu.String(), status)}
		}
		return &vu, body, nil
	}
}

// get fetches url and requires a status below 400.
func (d *Downloader) get(ctx context.Context, u, code string) ([]byte, error) {
	status, body, err := d.fetch(ctx, u)
	if err != nil {
		return nil, &DownloadError{Cause: CauseUnreachable, Code: code, Err: err}
	}
	if status >= 400 {
		return nil, &DownloadError{Cause: CauseHTTPStatus, Code: code, Err: fmt.Errorf("GET %s: HTTP status %d", u, status)}
	}
	return body, nil
}

// fetch GETs url and reads at most maxFileSize bytes of the body.
func (d *Downloader) fetch(ctx context.Context, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFileSize+1))
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxFileSize {
		return 0, nil, fmt.Errorf("GET %s: body larger than %d bytes", u, maxFileSize)
	}
	return resp.StatusCode, body, nil
}

// Valid implements Conf. Before any configuration was downloaded or found
// on disk it says so, with the latest round's error.
func (d *Downloader) Valid(now time.Time) error {
	err := d.static.Valid(now)
	if err == nil || !d.static.LastLoad().IsZero() {
		return err
	}
	if r := d.lastErr.Load(); r != nil && r.err != nil {
		return fmt.Errorf("no global configuration downloaded yet: %w", r.err)
	}
	return errors.New("no global configuration downloaded yet")
}

// OwnerOf implements Conf.
func (d *Downloader) OwnerOf(server schema.ServerID) (schema.ClientID, bool) {
	return d.static.OwnerOf(server)
}

// MonitoringClient implements Conf.
func (d *Downloader) MonitoringClient() (schema.ClientID, bool) { return d.static.MonitoringClient() }

// Instance implements Conf.
func (d *Downloader) Instance() string { return d.static.Instance() }

// Expiry implements Conf.
func (d *Downloader) Expiry() time.Time { return d.static.Expiry() }

// LastLoad implements Conf: the time of the last successful download (zero
// before the first, even when a stored set is in use).
func (d *Downloader) LastLoad() time.Time {
	ns := d.lastSuccess.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
