package tlsconf

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written by Generate, as upstream's generate-opmonitor-certificate.
const (
	KeyFileName  = "opmonitor.key"
	CertFileName = "opmonitor.crt"
)

// DefaultDays is the validity of a generated certificate when
// GenOptions.Days is 0: upstream's 7300 days. Neither the daemon nor the
// security server checks validity (trust is the pin), so a short life buys
// no security here, while each renewal means copying the certificate to
// every security server and restarting their proxies.
const DefaultDays = 7300

// keyBits is the RSA modulus size. Upstream uses 2048, but with the default
// life of 20 years the key would outlive 2030, after which NIST SP 800-57
// no longer accepts 112-bit strength; 3072 bits give 128-bit strength. The
// cost is a slower signature per full handshake (about 3 ms instead of 1 ms
// on one core), paid rarely because security servers keep connections
// alive and resume sessions, and every JDK a security server runs on
// handles 3072-bit keys.
const keyBits = 3072

// GenOptions configures Generate.
type GenOptions struct {
	Dir   string   // where opmonitor.key and opmonitor.crt are written; created if missing
	CN    string   // subject common name; "" means the host name
	Days  int      // validity; 0 means DefaultDays
	SANs  []string // subject alternative names: each an IP address or a DNS name
	Force bool     // replace existing files
	Now   func() time.Time
}

// Generate writes a new RSA key (DIR/opmonitor.key, PEM PKCS#8, mode 0600)
// and a self-signed SHA-256 certificate for it (DIR/opmonitor.crt, PEM,
// mode 0644) usable for both server and client authentication. It refuses
// to replace either file unless Force is set. Each file is written to a
// temporary name and renamed, so a crash never leaves a truncated key.
func Generate(opts GenOptions) (certPath, keyPath string, err error) {
	if opts.Dir == "" {
		return "", "", errors.New("gencert: no directory given")
	}
	certPath = filepath.Join(opts.Dir, CertFileName)
	keyPath = filepath.Join(opts.Dir, KeyFileName)
	if !opts.Force {
		for _, p := range []string{keyPath, certPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", "", fmt.Errorf("gencert: %s already exists; use --force to replace it", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", "", fmt.Errorf("gencert: %w", err)
			}
		}
	}
	days := opts.Days
	if days == 0 {
		days = DefaultDays
	}
	if days < 0 {
		return "", "", fmt.Errorf("gencert: days must be positive, got %d", days)
	}
	cn := opts.CN
	if cn == "" {
		if cn, err = defaultCN(); err != nil {
			return "", "", err
		}
	}
	if len(cn) > 64 { // RFC 5280 ub-common-name
		return "", "", fmt.Errorf("gencert: common name %q is longer than 64 characters", cn)
	}
	var dnsNames []string
	var ips []net.IP
	for _, san := range opts.SANs {
		san = strings.TrimSpace(san)
		switch {
		case san == "":
		case net.ParseIP(san) != nil:
			ips = append(ips, net.ParseIP(san))
		case validDNSName(san):
			dnsNames = append(dnsNames, san)
		default:
			return "", "", fmt.Errorf("gencert: subject alternative name %q is neither an IP address nor a DNS name", san)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	start := now()

	key, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return "", "", fmt.Errorf("gencert: generate key: %w", err)
	}
	// A random positive 128-bit serial: 1 ≤ serial < 2^128.
	limit := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	serial, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return "", "", fmt.Errorf("gencert: serial: %w", err)
	}
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		// An hour's slack for a peer whose clock is behind.
		NotBefore:             start.Add(-time.Hour),
		NotAfter:              start.Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, // an end entity (upstream's CA:TRUE lets the key sign other certificates, which nothing here needs)
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("gencert: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("gencert: encode key: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return "", "", fmt.Errorf("gencert: %w", err)
	}
	// Both files are complete under temporary names before either is
	// renamed, so the window in which a crash leaves a new key beside an
	// old certificate is two renames long.
	keyTmp, err := writeTemp(opts.Dir, KeyFileName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	if err != nil {
		return "", "", err
	}
	defer os.Remove(keyTmp) // a no-op once renamed
	certTmp, err := writeTemp(opts.Dir, CertFileName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if err != nil {
		return "", "", err
	}
	defer os.Remove(certTmp)
	if err := os.Rename(keyTmp, keyPath); err != nil {
		return "", "", fmt.Errorf("gencert: %w", err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		return "", "", fmt.Errorf("gencert: %w", err)
	}
	syncDir(opts.Dir)
	return certPath, keyPath, nil
}

// writeTemp writes data to a new hidden file in dir, synced to disk, with
// mode perm exactly (not subject to the umask), and returns its name.
func writeTemp(dir, name string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // created 0600, so the key is never readable by others
	if err != nil {
		return "", fmt.Errorf("gencert: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("gencert: write %s: %w", tmp, err)
	}
	return tmp, nil
}

// syncDir makes the renames durable; best effort, as not every file system
// can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// defaultCN is the host name, or its first label when the full name does
// not fit a common name (upstream's script falls back the same way).
func defaultCN() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("gencert: no --cn given and the host name is unknown: %w", err)
	}
	if len(h) > 64 {
		h, _, _ = strings.Cut(h, ".")
	}
	if h == "" || len(h) > 64 {
		return "", errors.New("gencert: no --cn given and the host name does not fit a common name")
	}
	return h, nil
}

// validDNSName accepts host names, optionally with a leading "*." wildcard.
func validDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
