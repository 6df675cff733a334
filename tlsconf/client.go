package tlsconf

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
)

// ClientConfig is the TLS configuration of `opmond query` against an https
// daemon: it presents the daemon's own key pair as the client certificate
// (the daemon always accepts its own certificate) and trusts the server only
// if its leaf certificate is byte-for-byte that same certificate. There is
// no CA and no host name check, as between upstream's security server and
// daemon.
func ClientConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, leaf, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	want := leaf.Raw
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		// The chain and name checks are replaced by the pin below, which
		// crypto/tls runs on full and resumed handshakes alike.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			got := cs.PeerCertificates[0]
			if !bytes.Equal(got.Raw, want) {
				return fmt.Errorf("server certificate %q (SHA-256 %s) is not %s", got.Subject.String(), fingerprint(got.Raw), certFile)
			}
			return nil
		},
	}, nil
}
