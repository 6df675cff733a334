package tlsconf

import (
	"crypto/tls"
	"slices"
)

// TLS 1.2 suites the daemon accepts: ECDHE (forward secrecy) with an AEAD.
// TLS 1.3 suites are not configurable in crypto/tls and are all AEAD.
var (
	suitesRSA = []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	suitesECDSA = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	tls12Suites = slices.Concat(suitesRSA, suitesECDSA)
)

// The suite an administrator appends to proxy.xroad-tls-ciphers. The AES-256
// variant matches the strength of the stock CBC suites the security server
// already offers; its name is the same in Java and in IANA's registry.
const (
	fixSuiteRSA   = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
	fixSuiteECDSA = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
)

// Names of suites a Java security server may offer that crypto/tls does not
// implement, so tls.CipherSuiteName would print only their numbers.
var extraSuiteNames = map[uint16]string{
	0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
	0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
	0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
	0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
	0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
	0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
	0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
	0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
	0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
	0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
	0xC02E: "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
	0xC032: "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
	0xC026: "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
	0xC02A: "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
}

// signalling reports the pseudo-suites that carry no cipher: the
// renegotiation and fallback SCSVs (Java always sends the former) and GREASE.
func signalling(id uint16) bool {
	return id == 0x00FF || id == 0x5600 || (id&0x0F0F == 0x0A0A && id>>8 == id&0xFF)
}

// suiteNames names the real suites in a ClientHello, in the client's order.
func suiteNames(ids []uint16) []string {
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		if signalling(id) {
			continue
		}
		if n, ok := extraSuiteNames[id]; ok {
			names = append(names, n)
			continue
		}
		names = append(names, tls.CipherSuiteName(id))
	}
	return names
}

// shareSuite reports whether a client offering hello could agree on a suite
// with a server whose key is RSA (rsa) or ECDSA/Ed25519 (!rsa). A client
// offering neither TLS 1.2 nor 1.3 has a version problem, not a suite one,
// so it counts as sharing.
func shareSuite(hello *tls.ClientHelloInfo, rsa bool) bool {
	v13 := slices.Contains(hello.SupportedVersions, tls.VersionTLS13)
	v12 := slices.Contains(hello.SupportedVersions, tls.VersionTLS12)
	if !v12 && !v13 {
		return true
	}
	ours := suitesECDSA
	if rsa {
		ours = suitesRSA
	}
	for _, id := range hello.CipherSuites {
		if v13 && (id == tls.TLS_AES_128_GCM_SHA256 || id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_CHACHA20_POLY1305_SHA256) {
			return true
		}
		if v12 && slices.Contains(ours, id) {
			return true
		}
	}
	return false
}
