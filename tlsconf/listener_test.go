package tlsconf

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The three suites a stock security server offers on this link
// (proxy.xroad-tls-ciphers), none implemented by crypto/tls, plus the
// renegotiation SCSV that Java always sends.
var stockSuites = []uint16{0xC028, 0x006B, 0xC024, 0x00FF}

// stockClientHello is a TLS 1.2 ClientHello as a stock security server's
// proxy sends it to the daemon. crypto/tls cannot offer suites it does not
// implement, so the record is built by hand.
func stockClientHello(t *testing.T) []byte {
	t.Helper()
	u16 := func(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
	ext := func(b []byte, typ int, body []byte) []byte {
		b = u16(b, typ)
		b = u16(b, len(body))
		return append(b, body...)
	}
	body := []byte{3, 3} // client_version TLS 1.2
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	body = append(body, random...)
	body = append(body, 0) // no session id
	body = u16(body, 2*len(stockSuites))
	for _, s := range stockSuites {
		body = u16(body, int(s))
	}
	body = append(body, 1, 0) // compression: null
	var exts []byte
	exts = ext(exts, 10, []byte{0, 4, 0, 23, 0, 24})     // supported_groups: secp256r1, secp384r1
	exts = ext(exts, 11, []byte{1, 0})                   // ec_point_formats: uncompressed
	exts = ext(exts, 13, []byte{0, 6, 4, 1, 5, 1, 8, 4}) // signature_algorithms
	exts = ext(exts, 23, nil)                            // extended_master_secret
	exts = ext(exts, 0xff01, []byte{0})                  // renegotiation_info
	body = u16(body, len(exts))
	body = append(body, exts...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{22, 3, 1, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func TestStockSecurityServerSuitesRefusedWithAdvice(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})

	for range 2 {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(stockClientHello(t)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		alert := make([]byte, 7)
		if _, err := io.ReadFull(conn, alert); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// A fatal handshake_failure alert, which Java reports as
		// "Received fatal alert: handshake_failure".
		if alert[0] != 21 || alert[5] != 2 || alert[6] != 40 {
			t.Fatalf("answer % x, want a fatal handshake_failure alert", alert)
		}
		h.expectReason(ReasonNoSharedCipher)
	}

	warned := h.logs.entries(t, "warn", "proxy.xroad-tls-ciphers")
	if len(warned) != 1 {
		t.Fatalf("%d warnings for two attempts from one address, want 1\n%s", len(warned), h.logs)
	}
	e := warned[0]
	msg := e["message"].(string)
	for _, want := range []string{"append TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 to proxy.xroad-tls-ciphers on the security server", "do not replace"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	offered := strings.Join(toStrings(e["offered"]), ",")
	if want := "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,TLS_DHE_RSA_WITH_AES_256_CBC_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"; offered != want {
		t.Errorf("offered %q, want %q", offered, want)
	}
	if e["reason"] != ReasonNoSharedCipher || !strings.HasPrefix(e["peer"].(string), "127.0.0.1:") {
		t.Errorf("fields %v", e)
	}
	if n := len(h.logs.entries(t, "debug", "proxy.xroad-tls-ciphers")); n != 1 {
		t.Errorf("%d debug repeats, want 1", n)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// The same failure from a real client offering CBC suites crypto/tls does
// implement.
func TestCBCOnlyClientRefused(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{rsa: true})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})
	cfg := clientTLS(&ss)
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}
	c := newClient(t, cfg, false)
	h.mustRefuse(c, ReasonNoSharedCipher)
	h.mustRefuse(c, ReasonNoSharedCipher)
	warned := h.logs.entries(t, "warn", "append TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 to proxy.xroad-tls-ciphers")
	if len(warned) != 1 {
		t.Fatalf("%d warnings, want 1\n%s", len(warned), h.logs)
	}
	offered := toStrings(warned[0]["offered"])
	slices.Sort(offered) // crypto/tls orders a client's suites itself
	if strings.Join(offered, ",") != "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" {
		t.Errorf("offered %v", offered)
	}
}

// With an ECDSA daemon key the advice names the ECDSA suite.
func TestNoSharedCipherAdviceFollowsKeyType(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})
	cfg := clientTLS(&ss)
	cfg.MaxVersion = tls.VersionTLS12
	// An AEAD suite, but for RSA keys: still nothing in common.
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	h.mustRefuse(newClient(t, cfg, false), ReasonNoSharedCipher)
	if len(h.logs.entries(t, "warn", "append TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")) != 1 {
		t.Fatalf("no ECDSA advice\n%s", h.logs)
	}
}

func TestExpiredOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour),
		dnsNames: []string{"localhost"},
	})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath}})
	if len(h.logs.entries(t, "warn", "outside its validity period")) != 1 {
		t.Fatalf("no warning about the expired certificate\n%s", h.logs)
	}

	// Upstream's pinning ignores validity, and so do the daemon and clients
	// that pin.
	h.mustPost(newClient(t, clientTLS(&ss), false), "/store_data")

	// A client that does check validity refuses; the daemon says why.
	roots := x509.NewCertPool()
	roots.AddCert(daemon.pair.Leaf)
	strict := &tls.Config{Certificates: []tls.Certificate{ss.pair}, RootCAs: roots, ServerName: "localhost"}
	h.mustRefuse(newClient(t, strict, false), ReasonOther)
	e := h.logs.entries(t, "warn", "rejected the daemon's certificate, which is expired")
	if len(e) != 1 {
		t.Fatalf("no expiry diagnosis\n%s", h.logs)
	}
}

func TestClientRejectsOtherServerCertificate(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	elsewhere := newCert(t, dir, "elsewhere", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{elsewhere.certPath}})
	// `opmond query` with another daemon's files: its pin refuses this one.
	cfg, err := ClientConfig(elsewhere.certPath, elsewhere.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.post(t.Context(), newClient(t, cfg, false), "/query_data")
	if err == nil || !strings.Contains(err.Error(), "is not "+elsewhere.certPath) {
		t.Fatalf("client error %v, want a pin mismatch", err)
	}
	h.expectReason(ReasonOther)
	if len(h.logs.entries(t, "warn", "op-monitor.tls-certificate must be this daemon's certificate")) != 1 {
		t.Fatalf("no hint\n%s", h.logs)
	}
}

func TestPlainHTTPToTLSPort(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath})
	resp, err := http.Post("http://"+h.addr+"/store_data", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	h.expectReason(ReasonOther)
	if len(h.logs.entries(t, "warn", "op-monitor.scheme = https")) != 1 {
		t.Fatalf("no hint\n%s", h.logs)
	}
}

func TestSilentClientDoesNotBlockOthers(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	ss := newCert(t, dir, "internal", certSpec{})
	h := start(t, Options{
		CertFile: daemon.certPath, KeyFile: daemon.keyPath, ClientCertFiles: []string{ss.certPath},
		HandshakeTimeout: 3 * time.Second,
	})
	silent, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	begin := time.Now()
	h.mustPost(newClient(t, clientTLS(&ss), false), "/store_data")
	// Behind the silent client the handshake would wait its whole 3 s timeout.
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("a handshake waited %v behind a silent client", d)
	}
	h.expectReason(ReasonOther)
	if len(h.logs.entries(t, "warn", "timed out")) != 1 {
		t.Fatalf("no timeout logged\n%s", h.logs)
	}
	// The daemon closed the silent connection.
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("silent connection: %v, want EOF", err)
	}
}

func TestProbeIsCountedQuietly(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	h := start(t, Options{CertFile: daemon.certPath, KeyFile: daemon.keyPath})
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	h.expectReason(ReasonOther)
	if n := len(h.logs.entries(t, "warn", "handshake")); n != 0 {
		t.Errorf("a connect-and-close probe logged %d warnings\n%s", n, h.logs)
	}
}

func TestListenerClose(t *testing.T) {
	dir := t.TempDir()
	daemon := newCert(t, dir, "daemon", certSpec{})
	failures := make(chan string, 10)
	s, err := New(Options{
		CertFile: daemon.certPath, KeyFile: daemon.keyPath, HandshakeTimeout: time.Minute,
		OnFailure: func(r string) { failures <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := s.Listener(inner)
	silent, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the silent connection reach its handshake
	closed := make(chan error, 1)
	go func() { closed <- ln.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a pending handshake")
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept after Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("pending connection after Close: %v, want EOF", err)
	}
	if len(failures) != 0 {
		t.Errorf("the aborted handshake was counted as a failure: %s", <-failures)
	}
}
