package tlsconf

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// material is one generation of key material: the daemon's key pair, the
// pinned client certificates and the per-handshake tls.Config built from
// them. It is immutable once built; a reload builds a new one.
type material struct {
	cert   tls.Certificate
	leaf   *x509.Certificate
	rsa    bool                // the daemon's key is RSA (decides which suite to advise)
	pinned map[string]struct{} // DER of every accepted client leaf, the daemon's own included
	count  int                 // pinned certificates read from ClientCertFiles
	cfg    *tls.Config
}

// errNotPinned is the error VerifyConnection returns for a certificate that
// is not pinned; the listener tells it from other failures with errors.As.
type errNotPinned struct {
	subject     string
	fingerprint string
}

func (e *errNotPinned) Error() string {
	return fmt.Sprintf("tlsconf: client certificate %q (SHA-256 %s) is not pinned", e.subject, e.fingerprint)
}

// verify is the pin check. crypto/tls calls VerifyConnection on full and on
// resumed handshakes alike, so a resumed session is checked too.
func (m *material) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: client didn't provide a certificate")
	}
	leaf := cs.PeerCertificates[0]
	if _, ok := m.pinned[string(leaf.Raw)]; ok {
		return nil
	}
	return &errNotPinned{subject: leaf.Subject.String(), fingerprint: fingerprint(leaf.Raw)}
}

// fingerprint formats a SHA-256 digest as `openssl x509 -fingerprint -sha256`
// prints it, so an administrator can compare the two by eye.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// loadMaterial reads and checks every file named in opts. Errors are one line
// and name the file.
func loadMaterial(opts *Options) (*material, error) {
	cert, leaf, err := loadKeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, err
	}
	m := &material{
		cert:   cert,
		leaf:   leaf,
		pinned: map[string]struct{}{string(leaf.Raw): {}},
	}
	_, m.rsa = leaf.PublicKey.(*rsa.PublicKey)
	for _, path := range opts.ClientCertFiles {
		certs, err := loadPinned(path)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			m.pinned[string(c.Raw)] = struct{}{}
		}
		m.count += len(certs)
	}
	m.cfg = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		// Any certificate is requested and required; trust comes from the
		// byte-for-byte pin in VerifyConnection, not from a CA.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: m.verify,
	}
	// Session tickets are sealed with this generation's own, automatically
	// rotated keys: after a reload no earlier session resumes, so a removed
	// pin or a replaced daemon key takes effect for every new connection.
	m.cfg.WrapSession = m.cfg.EncryptTicket
	m.cfg.UnwrapSession = m.cfg.DecryptTicket
	return m, nil
}

// loadKeyPair reads a PEM certificate (chain) and its PEM key (PKCS#1,
// PKCS#8 or SEC 1 EC) and checks that they belong together.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, nil, errors.New("tls certificate and key files must both be set")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read key: %w", err)
	}
	// Parse the certificate first so that its errors name the right file;
	// tls.X509KeyPair does not know which file it was given.
	var first []byte
	for rest := certPEM; first == nil; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			first = block.Bytes
		}
	}
	if first == nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate %s: no PEM CERTIFICATE block", certFile)
	}
	if _, err := x509.ParseCertificate(first); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate %s: %v", certFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, nil, fmt.Errorf("key %s does not match certificate %s", keyFile, certFile)
		}
		return tls.Certificate{}, nil, fmt.Errorf("key %s: %s", keyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("certificate %s: %v", certFile, err)
		}
		cert.Leaf = leaf
	}
	return cert, leaf, nil
}

// loadPinned reads one client-tls-certificate file: PEM with one or more
// CERTIFICATE blocks (all pinned), or a single DER certificate.
func loadPinned(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pinned client certificate: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("pinned client certificate %s is empty", path)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("pinned client certificate %s: neither PEM nor a DER certificate: %v", path, err)
		}
		return []*x509.Certificate{c}, nil
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pinned client certificate %s: certificate %d: %v", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("pinned client certificate %s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// validity describes why a certificate is outside its validity period at
// now, or returns "".
func validity(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return "expired at " + c.NotAfter.UTC().Format(time.RFC3339)
	case now.Before(c.NotBefore):
		return "not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
	}
	return ""
}
