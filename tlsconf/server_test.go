package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

func TestPinnedClientStoresAndQueries(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			cfg := clientTLS(&ss)
			cfg.MinVersion, cfg.MaxVersion = v.v, v.v
			c := newClient(t, cfg, false)
			cs := h.mustPost(c, "/store_data")
			h.mustPost(c, "/query_data")
			if cs.Version != v.v {
				t.Errorf("version %x, want %x", cs.Version, v.v)
			}
			if !bytes.Equal(cs.PeerCertificates[0].Raw, daemon.der) {
				t.Error("server did not present the daemon's certificate")
			}
			if v.v == tls.VersionTLS12 && !isAEAD12(cs.CipherSuite) {
				t.Errorf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
			}
		})
	}
	t.Run("own certificate via ClientConfig", func(t *testing.T) {
		cfg, err := ClientConfig(daemon.certPath, daemon.keyPath)
		if err != nil {
			t.Fatal(err)
		}
		h.mustPost(newClient(t, cfg, false), "/query_data")
	})
	h.expectNoFailure()
}

func isAEAD12(id uint16) bool {
	for _, s := range tls12Suites {
		if s == id {
			return true
		}
	}
	return false
}

func TestRefusedClients(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{cn: "ss1.example.org"})
	stranger := newCert(t, dir, "stranger", certSpec{})
	// Same subject as the pinned certificate, another key: a pin on the
	// subject or on a CA would let it in, a byte-for-byte pin must not.
	impostor := newCert(t, dir, "impostor", certSpec{cn: "ss1.example.org"})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})

	cases := []struct {
		name   string
		cert   *testCert
		reason string
	}{
		{"no certificate", nil, ReasonNoCertificate},
		{"unknown certificate", &stranger, ReasonUnknownCertificate},
		{"same subject, other key", &impostor, ReasonUnknownCertificate},
	}
	for _, v := range versions {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				cfg := clientTLS(tc.cert)
				cfg.MinVersion, cfg.MaxVersion = v.v, v.v
				h.mustRefuse(newClient(t, cfg, false), tc.reason)
			})
		}
	}
	warned := h.logs.entries(t, "warn", "not pinned")
	if len(warned) != 4 {
		t.Fatalf("%d warnings about unpinned certificates, want 4\n%s", len(warned), h.logs)
	}
	for _, e := range warned {
		if e["subject"] != "CN=ss1.example.org,O=Test" && e["subject"] != "CN=stranger,O=Test" {
			t.Errorf("subject %v", e["subject"])
		}
		fp := e["sha256"].(string)
		if fp != fingerprint(stranger.der) && fp != fingerprint(impostor.der) {
			t.Errorf("fingerprint %s is not of an offered certificate", fp)
		}
		if e["peer"] == nil || e["reason"] != ReasonUnknownCertificate {
			t.Errorf("fields %v", e)
		}
	}
	if n := len(h.logs.entries(t, "warn", "no certificate")); n != 2 {
		t.Errorf("%d warnings about missing certificates, want 2", n)
	}
}

func TestSeveralPinnedCertificates(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	node1 := newCert(t, dir, "node1", certSpec{})
	node2 := newCert(t, dir, "node2", certSpec{})
	node3 := newCert(t, dir, "node3", certSpec{})
	node4 := newCert(t, dir, "node4", certSpec{})
	both := filepath.Join(dir, "cluster.pem")
	writePEM(t, both, node3.der, node4.der)
	der := filepath.Join(dir, "node2.der")
	writeFile(t, der, node2.der)

	h := start(t, Options{
		CertFile: daemon.certPath, KeyFile: daemon.keyPath,
		ClientCertFiles: []string{node1.certPath, der, both},
	})
	for _, c := range []testCert{node1, node2, node3, node4} {
		t.Run(filepath.Base(c.certPath), func(t *testing.T) {
			h.mustPost(newClient(t, clientTLS(&c), false), "/store_data")
		})
	}
	h.expectNoFailure()
}

func TestReloadSwapsPinnedCertificate(t *testing.T) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			daemon := newCert(t, dir, "daemon", certSpec{})
			oldSS := newCert(t, dir, "old", certSpec{})
			newSS := newCert(t, dir, "new", certSpec{})
			pinned := filepath.Join(dir, "internal.crt")
			writePEM(t, pinned, oldSS.der)
			h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{pinned}})

			cfg := func(c *testCert) *tls.Config {
				cfg := clientTLS(c)
				cfg.MinVersion, cfg.MaxVersion = v.v, v.v
				return cfg
			}
			keptAlive := newClient(t, cfg(&oldSS), true)
			h.mustPost(keptAlive, "/store_data")

			writePEM(t, pinned, newSS.der)
			if err := h.srv.Reload(); err != nil {
				t.Fatal(err)
			}

			// The open connection survives the reload.
			var reused bool
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
			})
			if _, err := h.post(ctx, keptAlive, "/store_data"); err != nil {
				t.Fatalf("kept-alive connection after reload: %v", err)
			}
			if !reused {
				t.Fatal("the request did not reuse the open connection")
			}
			h.expectNoFailure()

			// New connections see the new pin.
			h.mustRefuse(newClient(t, cfg(&oldSS), false), ReasonUnknownCertificate)
			h.mustPost(newClient(t, cfg(&newSS), false), "/store_data")
		})
	}
}

func TestReloadOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	first := newCert(t, dir, "first", certSpec{})
	second := newCert(t, dir, "second", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{})
	certFile, keyFile := filepath.Join(dir, "opmonitor.crt"), filepath.Join(dir, "opmonitor.key")
	copyFile(t, first.certPath, certFile)
	copyFile(t, first.keyPath, keyFile)
	h := start(t, Options{CertFile: certFile, KeyFile: keyFile, ClientCertFiles: []string{ss.certPath}})
	c := newClient(t, clientTLS(&ss), false)
	if cs := h.mustPost(c, "/store_data"); !bytes.Equal(cs.PeerCertificates[0].Raw, first.der) {
		t.Fatal("not the first certificate")
	}
	copyFile(t, second.certPath, certFile)
	copyFile(t, second.keyPath, keyFile)
	if err := h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if cs := h.mustPost(c, "/store_data"); !bytes.Equal(cs.PeerCertificates[0].Raw, second.der) {
		t.Fatal("reload did not switch to the second certificate")
	}
	// The old daemon certificate is no longer accepted as a client.
	h.mustRefuse(newClient(t, clientTLS(&first), false), ReasonUnknownCertificate)
	h.mustPost(newClient(t, clientTLS(&second), false), "/query_data")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b)
}

func TestBrokenReloadKeepsOldMaterial(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	other := newCert(t, dir, "other", certSpec{})
	ss := newCert(t, dir, "internal", certSpec{})
	certFile, keyFile := filepath.Join(dir, "opmonitor.crt"), filepath.Join(dir, "opmonitor.key")
	copyFile(t, daemon.certPath, certFile)
	copyFile(t, daemon.keyPath, keyFile)
	pinned := filepath.Join(dir, "pinned.crt")
	copyFile(t, ss.certPath, pinned)
	h := start(t, Options{CertFile: certFile, KeyFile: keyFile, ClientCertFiles: []string{pinned}})
	c := newClient(t, clientTLS(&ss), false)

	breakages := []struct {
		name  string
		apply func()
		undo  func()
		want  string
	}{
		{
			"garbage pinned file",
			func() { writeFile(t, pinned, []byte("not a certificate")) },
			func() { copyFile(t, ss.certPath, pinned) },
			"neither PEM nor a DER certificate",
		},
		{
			"empty pinned file",
			func() { writeFile(t, pinned, nil) },
			func() { copyFile(t, ss.certPath, pinned) },
			"is empty",
		},
		{
			"certificate without its key",
			func() { copyFile(t, other.certPath, certFile) },
			func() { copyFile(t, daemon.certPath, certFile) },
			"does not match",
		},
	}
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			b.apply()
			err := h.srv.Reload()
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("Reload: %v, want an error containing %q", err, b.want)
			}
			cs := h.mustPost(c, "/store_data")
			if !bytes.Equal(cs.PeerCertificates[0].Raw, daemon.der) {
				t.Error("the old certificate is no longer served")
			}
			if len(h.logs.entries(t, "error", "keeping the previous certificates")) == 0 {
				t.Errorf("no error logged\n%s", h.logs)
			}
			b.undo()
			if err := h.srv.Reload(); err != nil {
				t.Fatal(err)
			}
		})
	}
	h.expectNoFailure()
}

// Session resumption must not carry a client past a reload: tickets are
// sealed per generation of material.
func TestSessionResumptionPerGeneration(t *testing.T) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			daemon := newCert(t, dir, "daemon", certSpec{})
			ss := newCert(t, dir, "internal", certSpec{})
			other := newCert(t, dir, "other", certSpec{})
			pinned := filepath.Join(dir, "pinned.crt")
			copyFile(t, ss.certPath, pinned)
			h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{pinned}})

			cfg := clientTLS(&ss)
			cfg.MinVersion, cfg.MaxVersion = v.v, v.v
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			c := newClient(t, cfg, false)
			resumed := func() bool { return h.mustPost(c, "/store_data").DidResume }

			if resumed() {
				t.Fatal("first connection resumed")
			}
			if !resumed() {
				t.Fatal("second connection did not resume: tickets are not working")
			}
			if err := h.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			if resumed() {
				t.Fatal("a session from before the reload resumed")
			}
			if !resumed() {
				t.Fatal("no resumption within the new generation")
			}
			writePEM(t, pinned, other.der)
			if err := h.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			h.mustRefuse(c, ReasonUnknownCertificate)
		})
	}
}

func TestWatchReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	oldSS := newCert(t, dir, "old", certSpec{})
	newSS := newCert(t, dir, "new", certSpec{})
	pinned := filepath.Join(dir, "internal.crt")
	copyFile(t, oldSS.certPath, pinned)
	h := start(t, Options{
		CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{pinned},
		WatchInterval: 20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.srv.Run(ctx); close(done) }()
	defer func() {
		cancel()
		<-done
	}()

	h.mustPost(newClient(t, clientTLS(&oldSS), false), "/store_data")
	copyFile(t, newSS.certPath, pinned)
	waitFor(t, func() bool {
		return len(h.logs.entries(t, "info", "TLS certificates reloaded")) > 0
	})
	h.mustPost(newClient(t, clientTLS(&newSS), false), "/store_data")
	h.mustRefuse(newClient(t, clientTLS(&oldSS), false), ReasonUnknownCertificate)

	// A broken file is reported once, not at every poll, and the material
	// stays.
	writeFile(t, pinned, []byte("garbage"))
	waitFor(t, func() bool { return len(h.logs.entries(t, "error", "TLS reload failed")) > 0 })
	time.Sleep(200 * time.Millisecond)
	if n := len(h.logs.entries(t, "error", "TLS reload failed")); n != 1 {
		t.Errorf("%d reload errors for one broken file, want 1", n)
	}
	h.mustPost(newClient(t, clientTLS(&newSS), false), "/store_data")

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunReturnsAtOnceWithoutWatching(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	s, err := New(Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath})
	if err != nil {
		t.Fatal(err)
	}
	s.Run(context.Background()) // would block forever if it watched
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	other := newCert(t, dir, "other", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{})
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := file("empty.crt", "")
	blank := file("blank.crt", " \n\n")
	garbage := file("garbage.crt", "\x30\x82garbage")
	keyOnly := file("keyonly.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	missing := filepath.Join(dir, "missing.crt")

	cases := []struct {
		name       string
		opts       Options
		wantPieces []string
	}{
		{"key of another certificate", Options{CertFile: daemon.certPath, KeyFile: other.keyPath},
			[]string{"does not match", other.keyPath, daemon.certPath}},
		{"certificate and key swapped", Options{CertFile: daemon.keyPath, KeyFile: daemon.certPath},
			[]string{daemon.keyPath, "no PEM CERTIFICATE block"}},
		{"missing certificate", Options{CertFile: missing, KeyFile: daemon.keyPath},
			[]string{missing}},
		{"garbage key", Options{CertFile: daemon.certPath, KeyFile: garbage},
			[]string{"key " + garbage}},
		{"empty pinned file", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath, empty}},
			[]string{empty, "is empty"}},
		{"blank pinned file", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{blank}},
			[]string{blank, "is empty"}},
		{"missing pinned file", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{missing}},
			[]string{missing, "read pinned client certificate"}},
		{"pinned directory", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{dir}},
			[]string{dir, "read pinned client certificate"}},
		{"garbage pinned file", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{garbage}},
			[]string{garbage, "neither PEM nor a DER certificate"}},
		{"PEM without a certificate", Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{keyOnly}},
			[]string{keyOnly, "no PEM CERTIFICATE block"}},
		{"no files at all", Options{}, []string{"must both be set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if err == nil {
				t.Fatalf("New succeeded: %v", s)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, p := range tc.wantPieces {
				if !strings.Contains(msg, p) {
					t.Errorf("error %q does not contain %q", msg, p)
				}
			}
		})
	}
}

func TestFingerprintMatchesOpenSSLFormat(t *testing.T) {
	fp := fingerprint([]byte("abc"))
	want := "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
	if fp != want {
		t.Fatalf("%s, want %s", fp, want)
	}
}
