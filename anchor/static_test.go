package anchor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

func TestStaticDirValid(t *testing.T) {
	tests := []struct {
		name         string
		change       func(t *testing.T, dir string)
		ignoreExpiry bool
		now          time.Time
		wantErr      string // "" means valid
		wantExpiry   string // "" means zero
	}{
		{name: "valid", now: t0, wantExpiry: privateExpiry},
		{name: "valid at the exact expiry", now: mustTime(t, privateExpiry), wantExpiry: privateExpiry},
		{name: "private expired", now: mustTime(t, privateExpiry).Add(time.Nanosecond),
			wantErr: "main private parameters expired at 2026-01-15T08:40:00Z", wantExpiry: privateExpiry},
		{name: "shared expired", now: t0,
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "private-params.xml.metadata"), metadataJSON("PRIVATE-PARAMETERS", "EE", "2027-01-01T00:00:00Z"))
				writeFile(t, filepath.Join(dir, "EE", "shared-params.xml.metadata"), metadataJSON("SHARED-PARAMETERS", "EE", "2026-01-15T10:29:59.5+02:00"))
			},
			wantErr: "main shared parameters expired at 2026-01-15T08:29:59.5Z", wantExpiry: "2026-01-15T08:29:59.5Z"},
		{name: "both expired, ignore expiry", ignoreExpiry: true, now: t0.AddDate(1, 0, 0)},
		{name: "metadata missing never expires", now: t0.AddDate(10, 0, 0),
			change: func(t *testing.T, dir string) {
				removeFile(t, filepath.Join(dir, "EE", "private-params.xml.metadata"))
				removeFile(t, filepath.Join(dir, "EE", "shared-params.xml.metadata"))
			}},
		{name: "metadata unreadable never expires", now: t0.AddDate(10, 0, 0),
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "private-params.xml.metadata"), "{not json")
				writeFile(t, filepath.Join(dir, "EE", "shared-params.xml.metadata"), `{"expirationDate":"tomorrow"}`)
			}},
		{name: "metadata without expirationDate never expires", now: t0.AddDate(10, 0, 0),
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "private-params.xml.metadata"), `{"contentIdentifier":"PRIVATE-PARAMETERS"}`)
				removeFile(t, filepath.Join(dir, "EE", "shared-params.xml.metadata"))
			}},
		{name: "instance identifier with white space", now: t0, wantExpiry: privateExpiry,
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "instance-identifier"), " EE\n")
			}},
		{name: "missing instance-identifier", now: t0, wantErr: "has no instance-identifier file",
			change: func(t *testing.T, dir string) { removeFile(t, filepath.Join(dir, "instance-identifier")) }},
		{name: "empty instance-identifier", now: t0, wantErr: "empty instance-identifier file",
			change: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "instance-identifier"), "\n") }},
		{name: "no folder for main instance", now: t0, wantErr: "no folder for main instance FI2",
			change: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "instance-identifier"), "FI2") }},
		{name: "missing private-params", now: t0, wantErr: "has no private-params.xml",
			change: func(t *testing.T, dir string) { removeFile(t, filepath.Join(dir, "EE", "private-params.xml")) }},
		{name: "missing private-params, ignore expiry", ignoreExpiry: true, now: t0, wantErr: "has no private-params.xml",
			change: func(t *testing.T, dir string) { removeFile(t, filepath.Join(dir, "EE", "private-params.xml")) }},
		{name: "missing shared-params", now: t0, wantErr: "has no shared-params.xml",
			change: func(t *testing.T, dir string) { removeFile(t, filepath.Join(dir, "EE", "shared-params.xml")) }},
		{name: "main shared-params not XML", now: t0, wantErr: "main shared parameters",
			change: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "EE", "shared-params.xml"), "<conf") }},
		{name: "main shared-params in wrong namespace", now: t0, wantErr: "want {http://x-road.eu/xsd/xroad.xsd}conf",
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "shared-params.xml"), `<conf xmlns="urn:other"><instanceIdentifier>EE</instanceIdentifier></conf>`)
			}},
		{name: "main shared-params owner is a subsystem", now: t0, wantErr: `owner "id1" is not a member`,
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "shared-params.xml"), sharedXML("EE",
					[]member{{id: "id0", class: "GOV", code: "70000001", subsystems: map[string]string{"id1": "MONITORING"}}},
					[]server{{owner: "id1", code: "SS1"}}))
			}},
		{name: "main private-params not XML", now: t0, wantErr: "main private parameters",
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "EE", "private-params.xml"), "garbage")
			}},
		{name: "broken federated shared-params do not matter", now: t0, wantExpiry: privateExpiry,
			change: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "FI", "shared-params.xml"), "garbage") }},
		{name: "directory missing", now: t0, wantErr: "does not exist",
			change: func(t *testing.T, dir string) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "directory is a file", now: t0, wantErr: "is not a directory",
			change: func(t *testing.T, dir string) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, "x")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeBase(t)
			if tt.change != nil {
				tt.change(t, dir)
			}
			s := NewStaticDir(dir, StaticOptions{IgnoreExpiry: tt.ignoreExpiry, Logger: testLogger(t), Now: func() time.Time { return t0 }})
			err := s.Valid(tt.now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Valid: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Valid: %v, want error containing %q", err, tt.wantErr)
			}
			var want time.Time
			if tt.wantExpiry != "" {
				want = mustTime(t, tt.wantExpiry)
			}
			if got := s.Expiry(); !got.Equal(want) {
				t.Errorf("Expiry = %v, want %v", got, want)
			}
			if err := s.Reload(); (err == nil) != (tt.wantErr == "" || strings.Contains(tt.wantErr, "expired")) {
				t.Errorf("Reload = %v", err)
			}
		})
	}
}

func TestStaticDirLoadState(t *testing.T) {
	dir := writeBase(t)
	s := NewStaticDir(dir, StaticOptions{Logger: testLogger(t), Now: func() time.Time { return t0 }})
	if got := s.Instance(); got != "EE" {
		t.Errorf("Instance = %q, want EE", got)
	}
	if got := s.LastLoad(); !got.Equal(t0) {
		t.Errorf("LastLoad = %v, want %v", got, t0)
	}

	missing := NewStaticDir(filepath.Join(dir, "nope"), StaticOptions{Logger: testLogger(t)})
	if missing.Valid(t0) == nil || missing.Instance() != "" || !missing.LastLoad().IsZero() || !missing.Expiry().IsZero() {
		t.Errorf("never loaded: Valid %v, Instance %q, LastLoad %v, Expiry %v",
			missing.Valid(t0), missing.Instance(), missing.LastLoad(), missing.Expiry())
	}
	if _, ok := missing.OwnerOf(schema.ServerID{Instance: "EE", MemberClass: "COM", MemberCode: "10000001", ServerCode: "SS1"}); ok {
		t.Error("never loaded: OwnerOf found an owner")
	}
}

func TestStaticDirOwnerOf(t *testing.T) {
	srv := func(s string) schema.ServerID {
		id, err := schema.ParseServerID(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	memberID := func(inst, class, code string) schema.ClientID {
		return schema.ClientID{Instance: inst, MemberClass: class, MemberCode: code}
	}
	tests := []struct {
		name         string
		change       func(t *testing.T, dir string)
		ignoreExpiry bool
		now          time.Time
		server       string
		want         schema.ClientID // zero: not found
	}{
		{name: "owner of main instance server", server: "EE/COM/10000001/SS1", want: memberID("EE", "COM", "10000001")},
		{name: "second server", server: "EE/GOV/70000001/SS2", want: memberID("EE", "GOV", "70000001")},
		{name: "instance differs in case", server: "ee/COM/10000001/SS1"},
		{name: "member class differs in case", server: "EE/com/10000001/SS1"},
		{name: "server code differs in case", server: "EE/COM/10000001/ss1"},
		{name: "wrong owner class", server: "EE/GOV/10000001/SS1"},
		{name: "wrong owner code", server: "EE/COM/70000001/SS1"},
		{name: "server of another owner", server: "EE/GOV/70000001/SS1"},
		{name: "unknown server", server: "EE/COM/10000001/SS9"},
		{name: "server of another instance folder", server: "FI/COM/FI1/FISS", want: memberID("FI", "COM", "FI1")},
		{name: "other instance after its expiry", server: "FI/COM/FI1/FISS", now: mustTime(t, fiExpiry).Add(time.Second)},
		{name: "expired other instance", server: "XX/COM/X1/XSS"},
		{name: "expired other instance, ignore expiry", ignoreExpiry: true, server: "XX/COM/X1/XSS", want: memberID("XX", "COM", "X1")},
		{name: "main instance after its expiry", server: "EE/COM/10000001/SS1", now: t0.AddDate(1, 0, 0), want: memberID("EE", "COM", "10000001")},
		{name: "other instance without metadata never expires", server: "XX/COM/X1/XSS",
			change: func(t *testing.T, dir string) { removeFile(t, filepath.Join(dir, "XX", "shared-params.xml.metadata")) },
			want:   memberID("XX", "COM", "X1")},
		{name: "other instance file rejected for owner IDREF to subsystem", server: "FI/COM/FI1/FISS",
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "FI", "shared-params.xml"), sharedXML("FI",
					[]member{{id: "id0", class: "COM", code: "FI1", subsystems: map[string]string{"id1": "S"}}},
					[]server{{owner: "id0", code: "FISS"}, {owner: "id1", code: "FISS2"}}))
			}},
		{name: "other instance file rejected for unknown owner", server: "FI/COM/FI1/FISS",
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "FI", "shared-params.xml"), sharedXML("FI",
					[]member{{id: "id0", class: "COM", code: "FI1"}},
					[]server{{owner: "id0", code: "FISS"}, {owner: "id7", code: "FISS2"}}))
			}},
		{name: "key uses the file's instance identifier", server: "FI/COM/FI1/FISS",
			change: func(t *testing.T, dir string) {
				if err := os.Rename(filepath.Join(dir, "FI"), filepath.Join(dir, "Finland")); err != nil {
					t.Fatal(err)
				}
			},
			want: memberID("FI", "COM", "FI1")},
		{name: "main entry wins over an expired copy", server: "EE/COM/10000001/SS1", now: t0.AddDate(1, 0, 0),
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "XX", "shared-params.xml"), sharedXML("EE",
					[]member{{id: "id0", class: "COM", code: "10000001"}}, []server{{owner: "id0", code: "SS1"}}))
			},
			want: memberID("EE", "COM", "10000001")},
		{name: "escaped folder name", server: "A B/COM/1/SS",
			change: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "instance-identifier"), "A B")
				main := filepath.Join(dir, "A+B")
				writeFile(t, filepath.Join(main, "private-params.xml"), privateXML("A B"))
				writeFile(t, filepath.Join(main, "shared-params.xml"), sharedXML("A B",
					[]member{{id: "id0", class: "COM", code: "1"}}, []server{{owner: "id0", code: "SS"}}))
			},
			want: memberID("A B", "COM", "1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeBase(t)
			if tt.change != nil {
				tt.change(t, dir)
			}
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			s := NewStaticDir(dir, StaticOptions{IgnoreExpiry: tt.ignoreExpiry, Logger: testLogger(t), Now: func() time.Time { return now }})
			got, ok := s.OwnerOf(srv(tt.server))
			want := tt.want != (schema.ClientID{})
			if ok != want || got != tt.want {
				t.Errorf("OwnerOf(%s) = %v, %v; want %v, %v", tt.server, got, ok, tt.want, want)
			}
		})
	}
}

func TestStaticDirMonitoringClient(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" removes the file
		want    string // "" means none
		wantSub bool
	}{
		{name: "subsystem", content: monitoringXML(monitoringID("SUBSYSTEM", "EE", "GOV", "70000001", "MONITORING")),
			want: "EE/GOV/70000001/MONITORING", wantSub: true},
		{name: "member", content: monitoringXML(monitoringID("MEMBER", "EE", "GOV", "70000001", "")), want: "EE/GOV/70000001"},
		{name: "empty monitoringClient", content: monitoringXML("")},
		{name: "absent file"},
		{name: "subsystem without subsystemCode", content: monitoringXML(monitoringID("SUBSYSTEM", "EE", "GOV", "70000001", ""))},
		{name: "member with subsystemCode", content: monitoringXML(monitoringID("MEMBER", "EE", "GOV", "70000001", "MONITORING"))},
		{name: "server object type", content: monitoringXML(monitoringID("SERVER", "EE", "GOV", "70000001", ""))},
		{name: "unqualified objectType", content: monitoringXML(strings.Replace(
			monitoringID("MEMBER", "EE", "GOV", "70000001", ""), "idf:objectType", "objectType", 1))},
		{name: "unqualified identifier children", content: monitoringXML(strings.ReplaceAll(
			monitoringID("MEMBER", "EE", "GOV", "70000001", ""), "<idf:", "<"))},
		{name: "no monitoringClient", content: `<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd"/>`},
		{name: "wrong root", content: `<conf><monitoringClient/></conf>`},
		{name: "not XML", content: "garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeBase(t)
			path := filepath.Join(dir, "EE", "monitoring-params.xml")
			if tt.content == "" {
				removeFile(t, path)
			} else {
				writeFile(t, path, tt.content)
			}
			s := NewStaticDir(dir, StaticOptions{Logger: testLogger(t), Now: func() time.Time { return t0 }})
			if err := s.Valid(t0); err != nil {
				t.Fatalf("monitoring parameters must not affect validity: %v", err)
			}
			got, ok := s.MonitoringClient()
			if tt.want == "" {
				if ok {
					t.Fatalf("MonitoringClient = %v, want none", got)
				}
				return
			}
			if !ok || got.String() != tt.want || got.HasSubsystem != tt.wantSub {
				t.Fatalf("MonitoringClient = %v (subsystem %v), %v; want %s (subsystem %v)", got, got.HasSubsystem, ok, tt.want, tt.wantSub)
			}
		})
	}
}

// The directory the benchmark tool writes (shared/bench/globalconf.go) must load.
func TestStaticDirBenchLayout(t *testing.T) {
	dir := filepath.Join("testdata", "bench-globalconf")
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	s := NewStaticDir(dir, StaticOptions{Logger: testLogger(t), Now: func() time.Time { return now }})
	if err := s.Valid(now); err != nil {
		t.Fatalf("Valid: %v", err)
	}
	if got := s.Instance(); got != "DEV" {
		t.Errorf("Instance = %q", got)
	}
	owner, ok := s.OwnerOf(schema.ServerID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234", ServerCode: "SS1"})
	if want := (schema.ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234"}); !ok || owner != want {
		t.Errorf("OwnerOf = %v, %v; want %v", owner, ok, want)
	}
	mc, ok := s.MonitoringClient()
	if want := (schema.ClientID{Instance: "DEV", MemberClass: "COM", MemberCode: "1234", Subsystem: "MONITORING", HasSubsystem: true}); !ok || mc != want {
		t.Errorf("MonitoringClient = %v, %v; want %v", mc, ok, want)
	}
	if got, want := s.Expiry(), time.Date(2027, 11, 21, 5, 34, 6, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Expiry = %v, want %v", got, want)
	}
	if err := s.Valid(now.AddDate(2, 0, 0)); err == nil || !strings.Contains(err.Error(), "main private parameters expired at 2027-11-21T05:34:06Z") {
		t.Errorf("Valid two years on = %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bumpMtime moves a file's modification time forward so a change is seen
// even on file systems with coarse timestamps.
func bumpMtime(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mt := fi.ModTime().Add(2 * time.Second)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestStaticDirRunPicksUpChanges(t *testing.T) {
	dir := writeBase(t)
	clk := newClock(t0)
	s := NewStaticDir(dir, StaticOptions{Interval: 10 * time.Millisecond, Logger: testLogger(t), Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// New monitoring client.
	path := filepath.Join(dir, "EE", "monitoring-params.xml")
	writeFile(t, path, monitoringXML(monitoringID("MEMBER", "EE", "COM", "10000001", "")))
	bumpMtime(t, path)
	waitFor(t, "new monitoring client", func() bool {
		id, ok := s.MonitoringClient()
		return ok && id.String() == "EE/COM/10000001" && !id.HasSubsystem
	})

	// Expiry moved: valid again after it had passed.
	later := mustTime(t, privateExpiry).Add(time.Minute)
	if err := s.Valid(later); err == nil {
		t.Fatal("Valid after expiry = nil")
	}
	for _, f := range []string{"private-params.xml.metadata", "shared-params.xml.metadata"} {
		path := filepath.Join(dir, "EE", f)
		writeFile(t, path, metadataJSON("X", "EE", "2026-01-15T09:40:00Z"))
		bumpMtime(t, path)
	}
	waitFor(t, "moved expiry", func() bool { return s.Expiry().Equal(mustTime(t, "2026-01-15T09:40:00Z")) })
	if err := s.Valid(later); err != nil {
		t.Fatalf("Valid after the expiry moved: %v", err)
	}

	// A directory that no longer loads is invalid; lookups keep the last good data.
	clk.Set(t0.Add(time.Hour))
	removeFile(t, filepath.Join(dir, "EE", "private-params.xml"))
	waitFor(t, "invalid after private-params.xml removed", func() bool { return s.Valid(t0) != nil })
	if _, ok := s.OwnerOf(schema.ServerID{Instance: "EE", MemberClass: "COM", MemberCode: "10000001", ServerCode: "SS1"}); !ok {
		t.Error("OwnerOf lost the last good data")
	}
	if got := s.LastLoad(); !got.Equal(t0) {
		t.Errorf("LastLoad after a failed load = %v, want %v", got, t0)
	}

	// Repaired: valid again, with a new load time.
	writeFile(t, filepath.Join(dir, "EE", "private-params.xml"), privateXML("EE"))
	waitFor(t, "valid after repair", func() bool { return s.Valid(t0) == nil })
	if got := s.LastLoad(); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("LastLoad after repair = %v", got)
	}

	// New instance folder with shared parameters.
	writeFile(t, filepath.Join(dir, "LV", "shared-params.xml"), sharedXML("LV",
		[]member{{id: "id0", class: "COM", code: "LV1"}}, []server{{owner: "id0", code: "LVSS"}}))
	waitFor(t, "new instance folder", func() bool {
		_, ok := s.OwnerOf(schema.ServerID{Instance: "LV", MemberClass: "COM", MemberCode: "LV1", ServerCode: "LVSS"})
		return ok
	})
}

func TestStaticDirRunStops(t *testing.T) {
	s := NewStaticDir(writeBase(t), StaticOptions{Interval: time.Millisecond, Logger: testLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// Lookups run on request goroutines while reloads replace the snapshot.
func TestStaticDirConcurrentUse(t *testing.T) {
	dir := writeBase(t)
	s := NewStaticDir(dir, StaticOptions{Logger: testLogger(t), Now: func() time.Time { return t0 }})
	id := schema.ServerID{Instance: "EE", MemberClass: "COM", MemberCode: "10000001", ServerCode: "SS1"}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, ok := s.OwnerOf(id); !ok {
					t.Error("OwnerOf lost the owner during a reload")
					return
				}
				_ = s.Valid(t0)
				s.MonitoringClient()
				s.Expiry()
				s.Instance()
			}
		})
	}
	for range 20 {
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestStandalone(t *testing.T) {
	c := Standalone()
	if err := c.Valid(time.Now()); err != nil {
		t.Errorf("Valid = %v", err)
	}
	if id, ok := c.OwnerOf(schema.ServerID{Instance: "EE", MemberClass: "COM", MemberCode: "1", ServerCode: "SS"}); ok {
		t.Errorf("OwnerOf = %v", id)
	}
	if id, ok := c.MonitoringClient(); ok {
		t.Errorf("MonitoringClient = %v", id)
	}
	if c.Instance() != "" || !c.Expiry().IsZero() || !c.LastLoad().IsZero() {
		t.Error("standalone reports an instance, expiry or load time")
	}
	src, ok := c.(Source)
	if !ok {
		t.Fatal("standalone is not a Source")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src.Run(ctx)
}

func TestDetectMode(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	tests := []struct {
		name, anchor, dir string
		want              Mode
		wantErr           bool
	}{
		{name: "anchor set", anchor: filepath.Join(dir, "configuration-anchor.xml"), dir: filepath.Join(dir, "missing"), want: ModeDownload},
		{name: "anchor set, directory exists", anchor: "anchor.xml", dir: dir, want: ModeDownload},
		{name: "no anchor, directory exists", dir: dir, want: ModeStatic},
		{name: "no anchor, no directory", dir: filepath.Join(dir, "missing"), want: ModeStandalone},
		{name: "no anchor, no directory configured", want: ModeStandalone},
		{name: "directory is a file", dir: file, wantErr: true},
		{name: "parent is a file", dir: filepath.Join(file, "sub"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectMode(tt.anchor, tt.dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DetectMode error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("DetectMode = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeStandalone: "standalone", ModeStatic: "static", ModeDownload: "download", Mode(7): "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}

func TestInstanceDirName(t *testing.T) {
	for in, want := range map[string]string{"EE": "EE", "A B": "A+B", "a/b": "a%2Fb", "x*y.z-_": "x*y.z-_", "ü": "%C3%BC", "~": "%7E"} {
		if got := instanceDirName(in); got != want {
			t.Errorf("instanceDirName(%q) = %q, want %q", in, got, want)
		}
	}
}
