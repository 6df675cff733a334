package tlsconf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// testCert is a self-signed key pair written to disk.
type testCert struct {
	certPath, keyPath string
	der               []byte
	pair              tls.Certificate
}

type certSpec struct {
	cn                  string
	rsa                 bool
	notBefore, notAfter time.Time
	dnsNames            []string
}

// sharedRSAKey is generated once: RSA key generation is slow under the race
// detector, and tests that need two distinct keys use ECDSA for the other.
var sharedRSAKey = sync.OnceValues(func() (crypto.Signer, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

var serialSeq struct {
	sync.Mutex
	n int64
}

// newCert writes DIR/NAME.crt and DIR/NAME.key.
func newCert(t *testing.T, dir, name string, spec certSpec) testCert {
	t.Helper()
	var key crypto.Signer
	var err error
	if spec.rsa {
		key, err = sharedRSAKey()
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if spec.cn == "" {
		spec.cn = name
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(24 * time.Hour)
	}
	serialSeq.Lock()
	serialSeq.n++
	serial := serialSeq.n
	serialSeq.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: spec.cn, Organization: []string{"Test"}},
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     spec.dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := testCert{
		certPath: filepath.Join(dir, name+".crt"),
		keyPath:  filepath.Join(dir, name+".key"),
		der:      der,
	}
	writePEM(t, c.certPath, der)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(c.keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.pair, err = tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// writePEM writes the certificates to path as PEM, replacing the file by
// rename as an administrator's tools would.
func writePEM(t *testing.T, path string, ders ...[]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	writeFile(t, path, b.Bytes())
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuf collects zerolog's JSON lines from many goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// entries returns the log lines at level whose message contains substr.
func (l *logBuf) entries(t *testing.T, level, substr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["level"] == level && strings.Contains(e["message"].(string), substr) {
			out = append(out, e)
		}
	}
	return out
}

// harness is a Server behind a net/http server on 127.0.0.1.
type harness struct {
	t       *testing.T
	srv     *Server
	url     string
	addr    string
	reasons chan string
	logs    *logBuf
	ln      net.Listener
}

func start(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, reasons: make(chan string, 100), logs: &logBuf{}}
	opts.Logger = zerolog.New(h.logs)
	opts.OnFailure = func(r string) {
		select {
		case h.reasons <- r:
		default:
		}
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = srv.Listener(inner)
	h.addr = inner.Addr().String()
	h.url = "https://" + h.addr
	mux := http.NewServeMux()
	mux.HandleFunc("POST /store_data", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	})
	mux.HandleFunc("POST /query_data", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `<answer/>`)
	})
	hs := &http.Server{Handler: mux, ErrorLog: nil}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(h.ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

// clientTLS presents c (if any) and accepts any server certificate.
func clientTLS(c *testCert) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true}
	if c != nil {
		cfg.Certificates = []tls.Certificate{c.pair}
	}
	return cfg
}

// newClient returns an HTTP client; keepAlive false opens a new connection
// per request.
func newClient(t *testing.T, cfg *tls.Config, keepAlive bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: !keepAlive}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// post sends a request to path and returns the TLS state of its connection.
func (h *harness) post(ctx context.Context, c *http.Client, path string) (*tls.ConnectionState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+path, strings.NewReader(`{"records":[]}`))
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		return nil, errors.New("unexpected answer " + resp.Status + " " + string(body))
	}
	return resp.TLS, nil
}

func (h *harness) mustPost(c *http.Client, path string) *tls.ConnectionState {
	h.t.Helper()
	cs, err := h.post(context.Background(), c, path)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	return cs
}

func (h *harness) mustRefuse(c *http.Client, reason string) {
	h.t.Helper()
	if _, err := h.post(context.Background(), c, "/store_data"); err == nil {
		h.t.Fatal("request succeeded; want the handshake refused")
	}
	h.expectReason(reason)
}

func (h *harness) expectReason(want string) {
	h.t.Helper()
	select {
	case got := <-h.reasons:
		if got != want {
			h.t.Fatalf("OnFailure(%q), want %q\nlog:\n%s", got, want, h.logs)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no handshake failure reported, want %q", want)
	}
}

func (h *harness) expectNoFailure() {
	h.t.Helper()
	select {
	case got := <-h.reasons:
		h.t.Fatalf("unexpected handshake failure %q\nlog:\n%s", got, h.logs)
	default:
	}
}
