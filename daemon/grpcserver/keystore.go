package grpcserver

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// PasswordVar is the line of the password file that holds the key store's
// password (the security server's install scripts write it).
const PasswordVar = "XROAD_COMMON_GRPC_INTERNAL_KEYSTORE_PASSWORD"

// material is one generation of the internal transport's key material: the
// store's key pair, which is also the only client certificate trusted.
type material struct {
	cert tls.Certificate
	leaf *x509.Certificate
	cfg  *tls.Config
}

// keyError names the configuration key and its value in one line, as the
// daemon's configuration errors do.
func keyError(key, value, why string) error {
	return fmt.Errorf("%s = %s: %s", key, strconv.Quote(value), why)
}

// CheckKeystore loads the key store as the server would (check-config).
func CheckKeystore(keystore, passwordFile string) error {
	_, err := loadKeystore(keystore, passwordFile)
	return err
}

// loadKeystore reads the password file and the PKCS#12 key store and checks
// that they belong together. Errors are one line naming the key.
func loadKeystore(keystore, passwordFile string) (*material, error) {
	pw, err := readPassword(passwordFile)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(keystore)
	if err != nil {
		return nil, keyError("grpc.keystore", keystore, readError(err))
	}
	key, leaf, _, err := pkcs12.DecodeChain(data, pw)
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, keyError("grpc.keystore", keystore, "wrong password (the "+PasswordVar+" of grpc.password-file "+strconv.Quote(passwordFile)+")")
	case err != nil:
		return nil, keyError("grpc.keystore", keystore, "not a PKCS#12 key store with one key pair: "+oneLine(err.Error()))
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	// A store whose key does not fit its certificate would fail every
	// handshake; say so now.
	signer, ok := key.(crypto.Signer)
	pub, _ := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || pub == nil || !pub.Equal(signer.Public()) {
		return nil, keyError("grpc.keystore", keystore, "the key does not match the certificate")
	}
	m := &material{cert: cert, leaf: leaf}
	m.cfg = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		// Trust is the store's own certificate, byte for byte: the security
		// server's processes all present it (no CA, no names).
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: m.verify,
	}
	return m, nil
}

func (m *material) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("client presented no certificate")
	}
	if !bytes.Equal(cs.PeerCertificates[0].Raw, m.leaf.Raw) {
		return fmt.Errorf("client certificate %q is not the internal key store's", cs.PeerCertificates[0].Subject.String())
	}
	return nil
}

// readPassword finds PasswordVar in an env-style file: KEY=VALUE lines,
// VALUE optionally in single or double quotes, blank lines, # comments and
// an "export " prefix allowed.
func readPassword(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", keyError("grpc.password-file", path, readError(err))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || strings.TrimSpace(k) != PasswordVar {
			continue
		}
		pw, err := unquote(strings.TrimSpace(v))
		if err != nil {
			return "", keyError("grpc.password-file", path, PasswordVar+": "+err.Error())
		}
		return pw, nil
	}
	if err := sc.Err(); err != nil {
		return "", keyError("grpc.password-file", path, oneLine(err.Error()))
	}
	return "", keyError("grpc.password-file", path, "has no "+PasswordVar+"=... line")
}

// unquote removes shell-style quotes: '...' literally, "..." with the
// backslash escapes a shell honours inside double quotes.
func unquote(v string) (string, error) {
	if v == "" || (v[0] != '"' && v[0] != '\'') {
		return v, nil
	}
	q := v[0]
	if len(v) < 2 || v[len(v)-1] != q {
		return "", errors.New("unterminated quote")
	}
	v = v[1 : len(v)-1]
	if q == '\'' {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

func readError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(err, fs.ErrNotExist) {
			return "does not exist"
		}
		return "cannot be read: " + pe.Err.Error()
	}
	return oneLine(err.Error())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
