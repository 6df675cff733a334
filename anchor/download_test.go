package anchor

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opmond/opmond/anchor/anchortest"
	"github.com/opmond/opmond/schema"
)

const (
	dlOwner      = "EE/GOV/70000001"
	dlServer     = "EE/GOV/70000001/ss1"
	dlMonitoring = "EE/GOV/70000001/MONITORING"
)

func stdParts() []anchortest.Part {
	return anchortest.StandardParts("EE", dlMonitoring, dlServer, "EE/COM/10000001/ss2")
}

// dlEnv is a downloader over a temporary directory and anchor.
type dlEnv struct {
	t      *testing.T
	root   string
	anchor string
	clock  *clock
}

func newDLEnv(t *testing.T, sources ...*anchortest.Source) *dlEnv {
	dir := t.TempDir()
	e := &dlEnv{t: t, root: filepath.Join(dir, "globalconf"), anchor: filepath.Join(dir, "configuration-anchor.xml"), clock: newClock(time.Now())}
	anchortest.WriteAnchor(t, e.anchor, "EE", sources...)
	return e
}

func (e *dlEnv) downloader() *Downloader {
	e.t.Helper()
	d, err := NewDownloader(DownloadOptions{
		Anchor: e.anchor, Directory: e.root, Interval: time.Second,
		RequestTimeout: 2 * time.Second, Logger: testLogger(e.t), Now: e.clock.Now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func serverID(s string) schema.ServerID {
	id, err := schema.ParseServerID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// snapshotDir reads every file under root, following the instance link,
// so that a test can tell whether anything changed.
func snapshotDir(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"instance-identifier", "EE"} {
		p := filepath.Join(root, name)
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		err = filepath.WalkDir(real, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			rel, _ := filepath.Rel(real, path)
			out[name+"/"+rel] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func readMeta(t *testing.T, path string) fileMetadata {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m fileMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDownloadGood(t *testing.T) {
	src := anchortest.New(t, stdParts())
	e := newDLEnv(t, src)
	d := e.downloader()
	if err := d.Valid(e.clock.Now()); err == nil || !strings.Contains(err.Error(), "no global configuration downloaded yet") {
		t.Fatalf("before the first round: %v", err)
	}
	expire := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	src.Set(anchortest.State{Expire: expire})
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := d.Valid(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if owner, ok := d.OwnerOf(serverID(dlServer)); !ok || owner.String() != dlOwner {
		t.Errorf("owner %v %v", owner, ok)
	}
	if m, ok := d.MonitoringClient(); !ok || m.String() != dlMonitoring {
		t.Errorf("monitoring client %v %v", m, ok)
	}
	if got := d.Expiry(); !got.Equal(expire) {
		t.Errorf("expiry %v, want %v", got, expire)
	}
	if d.LastLoad().IsZero() || d.Instance() != "EE" {
		t.Errorf("last load %v, instance %q", d.LastLoad(), d.Instance())
	}
	// Upstream's layout: instance-identifier without newline, the files
	// with their metadata under EE/.
	if b, _ := os.ReadFile(filepath.Join(e.root, "instance-identifier")); string(b) != "EE" {
		t.Errorf("instance-identifier %q", b)
	}
	for _, p := range stdParts() {
		b, err := os.ReadFile(filepath.Join(e.root, "EE", p.FileName))
		if err != nil || string(b) != string(p.Data) {
			t.Errorf("%s: %v, content differs: %v", p.FileName, err, string(b) != string(p.Data))
		}
		m := readMeta(t, filepath.Join(e.root, "EE", p.FileName+".metadata"))
		if m.ContentIdentifier != p.ID || m.InstanceIdentifier != "EE" || m.ConfigurationVersion != "6" ||
			m.ExpirationDate != expire.UTC().Format("2006-01-02T15:04:05Z") || !strings.HasSuffix(m.ContentLocation, "/"+p.FileName) {
			t.Errorf("%s metadata %+v", p.FileName, m)
		}
	}
	// Second round, same files: nothing downloaded again, expiry refreshed.
	expire2 := expire.Add(time.Minute)
	src.Set(anchortest.State{Expire: expire2})
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := src.Hits("/shared-params.xml"); n != 1 {
		t.Errorf("shared parameters downloaded %d times, want 1", n)
	}
	if m := readMeta(t, filepath.Join(e.root, "EE", "shared-params.xml.metadata")); m.ExpirationDate != expire2.UTC().Format("2006-01-02T15:04:05Z") {
		t.Errorf("expiry not refreshed: %+v", m)
	}
	if got := d.Expiry(); !got.Equal(expire2) {
		t.Errorf("expiry %v, want %v", got, expire2)
	}
	// Only the current and the previous generation are kept.
	for i := 0; i < 3; i++ {
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if sets, _ := os.ReadDir(filepath.Join(e.root, setsDir)); len(sets) != 2 {
		t.Errorf("%d generations kept, want 2", len(sets))
	}
	// The monitoring part removed: its file goes, and the client with it.
	src.Set(anchortest.State{Parts: anchortest.StandardParts("EE", "", dlServer)})
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "EE", "monitoring-params.xml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("monitoring-params.xml still there: %v", err)
	}
	if m, ok := d.MonitoringClient(); ok {
		t.Errorf("monitoring client %v after its part was removed", m)
	}
}

// TestDownloadFailures is §6.6's matrix: each failure is reported with its
// cause and code, leaves the stored files and the configuration in use
// untouched, and a good directory afterwards is taken up.
func TestDownloadFailures(t *testing.T) {
	changed := anchortest.StandardParts("EE", dlMonitoring, dlServer, "EE/COM/10000001/ss3")
	cases := []struct {
		fault anchortest.Fault
		parts []anchortest.Part // content served with the fault (nil: unchanged)
		cause Cause
		code  string
	}{
		{anchortest.TamperSignature, nil, CauseBadSignature, "global_conf_signature_verification_failure"},
		{anchortest.TamperSigned, changed, CauseBadSignature, "global_conf_signature_verification_failure"},
		{anchortest.UnknownSigner, changed, CauseBadSignature, "global_conf_missing_verification_cert"},
		{anchortest.NoCertHashParam, nil, CauseMalformed, "global_conf_header_field_missing_parameter"},
		{anchortest.WrongHash, changed, CauseBadHash, "global_conf_part_downloaded_file_integrity_failure"},
		{anchortest.InstanceMismatch, nil, CauseMalformed, "global_conf_part_invalid_instance_identifier"},
		{anchortest.Expired, changed, CauseExpired, "global_conf_outdated"},
		{anchortest.MissingExpire, nil, CauseMalformed, "global_conf_header_field_missing"},
		{anchortest.Status500, nil, CauseHTTPStatus, "global_conf_download_url_connection_failure"},
		{anchortest.Hang, nil, CauseUnreachable, "global_conf_get_version_failed"},
		{anchortest.Trickle, nil, CauseUnreachable, "global_conf_get_version_failed"},
	}
	src := anchortest.New(t, stdParts())
	e := newDLEnv(t, src)
	d := e.downloader()
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(string(tc.fault), func(t *testing.T) {
			before := snapshotDir(t, e.root)
			src.Set(anchortest.State{Parts: tc.parts, Fault: tc.fault})
			start := time.Now()
			err := d.Reload()
			var de *DownloadError
			if !errors.As(err, &de) || de.Cause != tc.cause || de.Code != tc.code || de.Source != src.URL {
				t.Fatalf("error %v, want cause %s code %s", err, tc.cause, tc.code)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("round took %v", took)
			}
			if after := snapshotDir(t, e.root); len(after) != len(before) {
				t.Errorf("files changed: %d -> %d", len(before), len(after))
			} else {
				for k, v := range before {
					if after[k] != v {
						t.Errorf("%s changed", k)
					}
				}
			}
			if err := d.Valid(e.clock.Now()); err != nil {
				t.Errorf("configuration in use became invalid: %v", err)
			}
			if _, ok := d.OwnerOf(serverID(dlServer)); !ok {
				t.Error("owner lost")
			}
			// Good again: taken up.
			src.Set(anchortest.State{Parts: changed})
			if err := d.Reload(); err != nil {
				t.Fatal(err)
			}
			if _, ok := d.OwnerOf(serverID("EE/COM/10000001/ss3")); !ok {
				t.Error("good directory after the failure not taken up")
			}
			src.Set(anchortest.State{Parts: stdParts()})
			if err := d.Reload(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDownloadUnreachableAndFailover(t *testing.T) {
	down := anchortest.New(t, stdParts())
	down.Close()
	failing := anchortest.New(t, stdParts())
	failing.SetFault(anchortest.Status500)
	good := anchortest.New(t, stdParts())

	e := newDLEnv(t, down)
	err := e.downloader().Reload()
	if CauseOf(err) != CauseUnreachable || !strings.Contains(err.Error(), down.URL) {
		t.Fatalf("unreachable source: %v", err)
	}

	e = newDLEnv(t, down, failing, good)
	d := e.downloader()
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := failing.Hits("/internalconf"); n != 1 {
		t.Errorf("second source tried %d times", n)
	}
	// The source that succeeded is tried first next time.
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := failing.Hits("/internalconf"); n != 1 {
		t.Errorf("failing source tried again before the good one (%d)", n)
	}
	// All sources failing: one error, the last source's cause, the
	// configuration kept.
	good.SetFault(anchortest.TamperSignature)
	err = d.Reload()
	if CauseOf(err) != CauseHTTPStatus || d.Valid(e.clock.Now()) != nil {
		t.Errorf("all failing: %v, valid %v", err, d.Valid(e.clock.Now()))
	}
}

func TestDownloadVariants(t *testing.T) {
	cases := []struct {
		name  string
		alg   string
		state anchortest.State
		meta  string // configurationVersion expected
	}{
		{"proxy style", anchortest.RSASHA512, anchortest.State{ProxyStyle: true}, "6"},
		{"version fallback to 5", anchortest.RSASHA512, anchortest.State{Versions: []int{5}}, "5"},
		{"version 2 without probing", anchortest.RSASHA512, anchortest.State{Versions: []int{2}}, "2"},
		{"rsa-sha256", anchortest.RSASHA256, anchortest.State{}, "6"},
		{"rsa-sha384", anchortest.RSASHA384, anchortest.State{}, "6"},
		{"rsa-pss-sha512", anchortest.RSAPSS512, anchortest.State{}, "6"},
		{"rsa-pss-sha384", anchortest.RSAPSS384, anchortest.State{}, "6"},
		{"rsa-pss-sha256", anchortest.RSAPSS256, anchortest.State{}, "6"},
		{"ecdsa-sha256", anchortest.ECDSASHA256, anchortest.State{}, "6"},
		{"ecdsa-sha384", anchortest.ECDSASHA384, anchortest.State{}, "6"},
		{"ecdsa-sha512", anchortest.ECDSASHA512, anchortest.State{}, "6"},
		{"ecdsa raw r||s", anchortest.ECDSASHA256, anchortest.State{RawECDSA: true}, "6"},
		{"sha-256 hashes", anchortest.RSASHA512, anchortest.State{PartHash: "http://www.w3.org/2001/04/xmlenc#sha256"}, "6"},
		{"sha-384 hashes", anchortest.RSASHA512, anchortest.State{PartHash: "http://www.w3.org/2001/04/xmldsig-more#sha384"}, "6"},
		{"sha-224 hashes", anchortest.RSASHA512, anchortest.State{PartHash: "http://www.w3.org/2001/04/xmldsig-more#sha224"}, "6"},
		{"sha-1 hashes", anchortest.RSASHA512, anchortest.State{PartHash: "http://www.w3.org/2000/09/xmldsig#sha1"}, "6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := anchortest.NewWith(t, tc.alg, stdParts())
			src.Set(tc.state)
			e := newDLEnv(t, src)
			d := e.downloader()
			if err := d.Reload(); err != nil {
				t.Fatal(err)
			}
			if m := readMeta(t, filepath.Join(e.root, "EE", "private-params.xml.metadata")); m.ConfigurationVersion != tc.meta {
				t.Errorf("configurationVersion %q, want %q", m.ConfigurationVersion, tc.meta)
			}
			if _, ok := d.OwnerOf(serverID(dlServer)); !ok {
				t.Error("owner not resolvable")
			}
		})
	}
}

// TestDownloadStoredCopy: a set stored by an earlier run is used at start
// until it expires, even when no source answers.
func TestDownloadStoredCopy(t *testing.T) {
	src := anchortest.New(t, stdParts())
	e := newDLEnv(t, src)
	expire := time.Now().Add(10 * time.Minute)
	src.Set(anchortest.State{Expire: expire})
	if err := e.downloader().Reload(); err != nil {
		t.Fatal(err)
	}
	src.Close()
	d := e.downloader()
	if err := d.Valid(e.clock.Now()); err != nil {
		t.Fatalf("stored copy not used: %v", err)
	}
	if _, ok := d.OwnerOf(serverID(dlServer)); !ok {
		t.Error("owner of the stored copy not resolvable")
	}
	if CauseOf(d.Reload()) != CauseUnreachable {
		t.Error("round against a closed source did not fail as unreachable")
	}
	if !d.LastLoad().IsZero() {
		t.Error("last success set without a download")
	}
	e.clock.Set(expire.Add(time.Minute))
	if err := d.Valid(e.clock.Now()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after expiry: %v", err)
	}
}

// TestDownloadAnchorReplaced: an anchor replaced on disk is read again
// before the next round (§1.4); a broken one fails the round, keeping the
// configuration.
func TestDownloadAnchorReplaced(t *testing.T) {
	a := anchortest.New(t, stdParts())
	b := anchortest.New(t, anchortest.StandardParts("EE", dlMonitoring, dlServer, "EE/COM/10000001/ssB"))
	e := newDLEnv(t, a)
	d := e.downloader()
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	anchortest.WriteAnchor(t, e.anchor, "EE", b)
	os.Chtimes(e.anchor, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.OwnerOf(serverID("EE/COM/10000001/ssB")); !ok || b.Hits("/internalconf") == 0 {
		t.Error("replaced anchor not used")
	}
	if err := os.WriteFile(e.anchor, []byte("<broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(e.anchor, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	var de *DownloadError
	if err := d.Reload(); !errors.As(err, &de) || de.Code != "malformed_anchor" || de.Cause != CauseMalformed {
		t.Errorf("broken anchor: %v", err)
	}
	if d.Valid(e.clock.Now()) != nil {
		t.Error("configuration lost with a broken anchor")
	}
	os.Remove(e.anchor)
	if err := d.Reload(); !errors.As(err, &de) || de.Code != "anchor_file_not_found" {
		t.Errorf("missing anchor: %v", err)
	}
}

// TestDownloadRunStops: Run downloads at once, again every interval, and
// returns when its context ends, even during a hanging request, without
// counting the interrupted round as failed.
func TestDownloadRunStops(t *testing.T) {
	src := anchortest.New(t, stdParts())
	e := newDLEnv(t, src)
	var rounds, failed atomic.Int32
	d, err := NewDownloader(DownloadOptions{
		Anchor: e.anchor, Directory: e.root, Interval: 100 * time.Millisecond,
		RequestTimeout: time.Minute, Logger: testLogger(t),
		OnRound: func(err error) {
			rounds.Add(1)
			if err != nil {
				failed.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for rounds.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 rounds")
		}
		time.Sleep(10 * time.Millisecond)
	}
	src.SetFault(anchortest.Hang)
	n := src.Hits("/internalconf")
	for src.Hits("/internalconf") == n {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // inside the hanging request
	before := rounds.Load()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if rounds.Load() != before || failed.Load() != 0 {
		t.Errorf("interrupted round counted: %d rounds (%d before), %d failed", rounds.Load(), before, failed.Load())
	}
}

// TestDownloadOverStaticCopy: switching a directory copied for static mode
// to download mode. The copy is used until the first round, which replaces
// its instance folder by a downloaded set.
func TestDownloadOverStaticCopy(t *testing.T) {
	src := anchortest.New(t, stdParts())
	e := newDLEnv(t, src)
	writeFile(t, filepath.Join(e.root, "instance-identifier"), "EE")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, p := range anchortest.StandardParts("EE", "", "EE/GOV/1/copied") {
		writeFile(t, filepath.Join(e.root, "EE", p.FileName), string(p.Data))
		writeFile(t, filepath.Join(e.root, "EE", p.FileName+".metadata"), metadataJSON(p.ID, "EE", exp))
	}
	d := e.downloader()
	if _, ok := d.OwnerOf(serverID("EE/GOV/1/copied")); !ok || d.Valid(e.clock.Now()) != nil {
		t.Fatal("static copy not used before the first download")
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(e.root, "EE")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("instance folder not replaced by a link: %v", err)
	}
	if _, ok := d.OwnerOf(serverID("EE/GOV/1/copied")); ok {
		t.Error("copied configuration still in use")
	}
	if _, ok := d.OwnerOf(serverID(dlServer)); !ok {
		t.Error("downloaded configuration not in use")
	}
	// A static-mode reader of the downloaded directory sees the same.
	s := NewStaticDir(e.root, StaticOptions{Logger: testLogger(t), Now: e.clock.Now})
	if _, ok := s.OwnerOf(serverID(dlServer)); !ok || s.Valid(e.clock.Now()) != nil {
		t.Error("downloaded directory not readable in static mode")
	}
}

// TestDownloadPinnedVersion: an anchor URL that names a version is used as
// is, without probing (§2.1); other query parameters are kept.
func TestDownloadPinnedVersion(t *testing.T) {
	src := anchortest.New(t, stdParts())
	src.Set(anchortest.State{Versions: []int{4, 5}})
	src.URL += "?x=1&version=4"
	e := newDLEnv(t, src)
	if err := e.downloader().Reload(); err != nil {
		t.Fatal(err)
	}
	if n := src.Hits("/internalconf"); n != 1 {
		t.Errorf("%d directory requests, want 1", n)
	}
	if m := readMeta(t, filepath.Join(e.root, "EE", "shared-params.xml.metadata")); m.ConfigurationVersion != "4" {
		t.Errorf("configurationVersion %q", m.ConfigurationVersion)
	}
}
