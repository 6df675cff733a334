package tlsconf

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ssl")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	certPath, keyPath, err := Generate(GenOptions{
		Dir: dir, CN: "opmon.example.org", Days: 30,
		SANs: []string{"opmon.example.org", " 10.0.0.5", "::1", "localhost", ""},
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "opmonitor.crt") || keyPath != filepath.Join(dir, "opmonitor.key") {
		t.Fatalf("paths %s %s", certPath, keyPath)
	}
	for path, mode := range map[string]os.FileMode{keyPath: 0o600, certPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the two files", len(entries))
	}

	keyPEM, _ := os.ReadFile(keyPath)
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("key is not PEM PKCS#8")
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	c := pair.Leaf
	if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != keyBits {
		t.Errorf("key is not RSA %d", keyBits)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature %v", c.SignatureAlgorithm)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if c.Subject.String() != "CN=opmon.example.org" {
		t.Errorf("subject %s", c.Subject)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ext key usage %v", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("key usage %v", c.KeyUsage)
	}
	if c.IsCA {
		t.Error("certificate is a CA")
	}
	if !slices.Equal(c.DNSNames, []string{"opmon.example.org", "localhost"}) {
		t.Errorf("DNS names %v", c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP addresses %v", c.IPAddresses)
	}
	if !c.NotAfter.Equal(now.Add(30*24*time.Hour)) || c.NotBefore.After(now) {
		t.Errorf("validity %v – %v", c.NotBefore, c.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", c.SerialNumber)
	}
}

func TestGenerateRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, keyPath, err := Generate(GenOptions{Dir: dir, CN: "a"})
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, CertFileName)
	key1, _ := os.ReadFile(keyPath)
	cert1, _ := os.ReadFile(certPath)

	if _, _, err := Generate(GenOptions{Dir: dir, CN: "b"}); err == nil || !strings.Contains(err.Error(), keyPath) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second Generate: %v", err)
	}
	// Either file alone blocks it too.
	if err := os.Rename(keyPath, keyPath+".saved"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Generate(GenOptions{Dir: dir, CN: "b"}); err == nil || !strings.Contains(err.Error(), certPath) {
		t.Fatalf("Generate over a lone certificate: %v", err)
	}
	if err := os.Rename(keyPath+".saved", keyPath); err != nil {
		t.Fatal(err)
	}
	if k, _ := os.ReadFile(keyPath); !bytes.Equal(k, key1) {
		t.Fatal("refused Generate changed the key")
	}
	if c, _ := os.ReadFile(certPath); !bytes.Equal(c, cert1) {
		t.Fatal("refused Generate changed the certificate")
	}

	if _, _, err := Generate(GenOptions{Dir: dir, CN: "b", Force: true}); err != nil {
		t.Fatal(err)
	}
	if k, _ := os.ReadFile(keyPath); bytes.Equal(k, key1) {
		t.Fatal("--force kept the old key")
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced key mode %v", fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.Subject.CommonName != "b" {
		t.Errorf("CN %q", pair.Leaf.Subject.CommonName)
	}
}

func TestGenerateDefaults(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	certPath, keyPath, err := Generate(GenOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if want, _, _ := strings.Cut(host, "."); pair.Leaf.Subject.CommonName != host && pair.Leaf.Subject.CommonName != want {
		t.Errorf("CN %q, want the host name %q", pair.Leaf.Subject.CommonName, host)
	}
	days := time.Until(pair.Leaf.NotAfter).Hours() / 24
	if days < DefaultDays-1 || days > DefaultDays {
		t.Errorf("valid for %.1f days, want %d", days, DefaultDays)
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]GenOptions{
		"bad SAN":      {CN: "x", SANs: []string{"not a name"}},
		"negative day": {CN: "x", Days: -1},
		"long CN":      {CN: strings.Repeat("x", 65)},
	} {
		opts.Dir = t.TempDir()
		if _, _, err := Generate(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if entries, _ := os.ReadDir(opts.Dir); len(entries) != 0 {
			t.Errorf("%s: left %d files", name, len(entries))
		}
	}
}

// What gencert writes works end to end: as the daemon's key pair, as a
// pinned client certificate, and for `opmond query` through ClientConfig.
func TestGeneratedCertificatesWork(t *testing.T) {
	t.Parallel()
	daemonDir, clientDir := t.TempDir(), t.TempDir()
	daemonCert, daemonKey, err := Generate(GenOptions{Dir: daemonDir, CN: "daemon", SANs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := Generate(GenOptions{Dir: clientDir, CN: "ss"})
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, Options{CertFile: daemonCert, KeyFile: daemonKey, ClientCertFiles: []string{clientCert}})

	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	// A security server pins the daemon's certificate the same way.
	ssCfg, err := ClientConfig(daemonCert, daemonKey)
	if err != nil {
		t.Fatal(err)
	}
	ssCfg.Certificates = []tls.Certificate{pair}
	for _, v := range versions {
		ssCfg.MinVersion, ssCfg.MaxVersion = v.v, v.v
		h.mustPost(newClient(t, ssCfg.Clone(), false), "/store_data")
	}

	queryCfg, err := ClientConfig(daemonCert, daemonKey)
	if err != nil {
		t.Fatal(err)
	}
	h.mustPost(newClient(t, queryCfg, false), "/query_data")
	h.expectNoFailure()
}
