// Package grpctest makes the internal gRPC key store as a security server's
// install scripts make it, for tests of the gRPC interface: with keytool
// when it is installed, else the same store (EC P-256, self-signed, CN
// 127.0.0.1, SAN DNS:localhost and IP:127.0.0.1, PBES2/AES-256 with an
// HMAC-SHA256 MAC as JDK 17+ writes it) built in Go.
package grpctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Store is one key store and its password file.
type Store struct {
	Keystore, PasswordFile string
	Password               string
	Cert                   tls.Certificate // the store's key pair, as a client presents it
	Keytool                bool            // made by keytool (else in Go)
}

// Make writes dir/NAME.p12 and dir/NAME-env.properties. With keytool false,
// or when keytool is not installed, the store is built in Go.
func Make(tb testing.TB, dir, name, password string, keytool bool) Store {
	tb.Helper()
	s := Store{
		Keystore:     filepath.Join(dir, name+".p12"),
		PasswordFile: filepath.Join(dir, name+"-env.properties"),
		Password:     password,
	}
	if keytool {
		if _, err := exec.LookPath("keytool"); err != nil {
			tb.Logf("keytool is not installed; building the key store in Go")
			keytool = false
		}
	}
	if keytool {
		cmd := exec.Command("keytool", "-genkeypair", "-alias", "grpc-internal", "-storetype", "PKCS12",
			"-keyalg", "EC", "-groupname", "secp256r1", "-sigalg", "SHA256withECDSA",
			"-keystore", s.Keystore, "-dname", "CN=127.0.0.1", "-ext", "SAN:c=DNS:localhost,IP:127.0.0.1",
			"-validity", "3650", "-storepass:env", "PW", "-keypass:env", "PW")
		cmd.Env = append(os.Environ(), "PW="+password)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("keytool: %v\n%s", err, out)
		}
		s.Keytool = true
	} else {
		if err := os.WriteFile(s.Keystore, Build(tb, password), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	s.WritePasswordFile(tb, password)
	data, err := os.ReadFile(s.Keystore)
	if err != nil {
		tb.Fatal(err)
	}
	key, leaf, _, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		tb.Fatalf("decode %s: %v", s.Keystore, err)
	}
	s.Cert = tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	return s
}

// WritePasswordFile writes the password file as the install scripts do.
func (s Store) WritePasswordFile(tb testing.TB, password string) {
	tb.Helper()
	env := "XROAD_COMMON_GRPC_INTERNAL_KEYSTORE_PASSWORD=\"" + password + "\"\n" +
		"XROAD_COMMON_GRPC_INTERNAL_TRUSTSTORE_PASSWORD=\"" + password + "\"\n"
	if err := os.WriteFile(s.PasswordFile, []byte(env), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Build returns a PKCS#12 store as keytool makes it, built in Go.
func Build(tb testing.TB, password string) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:          now.Add(-time.Minute),
		NotAfter:           now.AddDate(0, 0, 3650),
		SignatureAlgorithm: x509.ECDSAWithSHA256,
		DNSNames:           []string{"localhost"},
		IPAddresses:        []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	p12, err := pkcs12.Modern.Encode(key, cert, nil, password)
	if err != nil {
		tb.Fatal(err)
	}
	return p12
}

// ClientTLS is the security server UI's side: it presents cert (nil: none)
// and trusts the server's store certificate, dialling "localhost".
func ClientTLS(server Store, cert *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(server.Cert.Leaf)
	c := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
