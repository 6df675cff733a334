package anchor

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	// Register the digests named by the algorithm URIs.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Digest algorithm URIs of Hash-algorithm-id and hash-algorithm-id= (§2.6).
var digestURIs = map[string]crypto.Hash{
	"http://www.w3.org/2001/04/xmlenc#sha512":       crypto.SHA512,
	"http://www.w3.org/2001/04/xmldsig-more#sha384": crypto.SHA384,
	"http://www.w3.org/2001/04/xmlenc#sha256":       crypto.SHA256,
	"http://www.w3.org/2001/04/xmldsig-more#sha224": crypto.SHA224,
	"http://www.w3.org/2000/09/xmldsig#sha1":        crypto.SHA1,
}

// sigKind is the mechanism of a signature algorithm.
type sigKind int

const (
	sigPKCS1 sigKind = iota
	sigPSS
	sigECDSA
)

type sigAlg struct {
	kind sigKind
	hash crypto.Hash
}

// Signature algorithm URIs of Signature-Algorithm-Id (§2.6): every one
// upstream recognises.
var signatureURIs = map[string]sigAlg{
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512":      {sigPKCS1, crypto.SHA512},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha384":      {sigPKCS1, crypto.SHA384},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256":      {sigPKCS1, crypto.SHA256},
	"http://www.w3.org/2000/09/xmldsig#rsa-sha1":             {sigPKCS1, crypto.SHA1},
	"http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1": {sigPSS, crypto.SHA512},
	"http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1": {sigPSS, crypto.SHA384},
	"http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1": {sigPSS, crypto.SHA256},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":    {sigECDSA, crypto.SHA512},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384":    {sigECDSA, crypto.SHA384},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256":    {sigECDSA, crypto.SHA256},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha224":    {sigECDSA, crypto.SHA224},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1":      {sigECDSA, crypto.SHA1},
}

// digestOf returns the hash named by uri.
func digestOf(uri string) (crypto.Hash, error) {
	h, ok := digestURIs[uri]
	if !ok {
		return 0, fmt.Errorf("unknown hash algorithm %q", uri)
	}
	return h, nil
}

func sum(h crypto.Hash, data []byte) []byte {
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// errNoVerificationCert: no certificate of the source has the hash the
// signature part names (upstream's global_conf_missing_verification_cert).
var errNoVerificationCert = errors.New("no matching verification certificate")

// verifySignature checks sig over signed with the certificate of certs
// whose digest equals certHash (§2.7). Only the certificates of the source
// being downloaded are candidates.
func verifySignature(certs [][]byte, s *signaturePart, signed []byte) error {
	alg, ok := signatureURIs[s.algorithm]
	if !ok {
		return fmt.Errorf("unknown signature algorithm %q", s.algorithm)
	}
	ch, err := digestOf(s.certHashAlgorithm)
	if err != nil {
		return fmt.Errorf("verification certificate hash: %w", err)
	}
	var der []byte
	for _, c := range certs {
		if bytes.Equal(sum(ch, c), s.certHash) {
			der = c
			break
		}
	}
	if der == nil {
		return fmt.Errorf("%w for certificate hash %s", errNoVerificationCert, b64(s.certHash))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("verification certificate: %w", err)
	}
	digest := sum(alg.hash, signed)
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		switch alg.kind {
		case sigPKCS1:
			err = rsa.VerifyPKCS1v15(pub, alg.hash, digest, s.value)
		case sigPSS:
			err = rsa.VerifyPSS(pub, alg.hash, digest, s.value, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: alg.hash})
		default:
			return fmt.Errorf("signature algorithm %q does not fit an RSA key", s.algorithm)
		}
	case *ecdsa.PublicKey:
		if alg.kind != sigECDSA {
			return fmt.Errorf("signature algorithm %q does not fit an EC key", s.algorithm)
		}
		if !verifyECDSA(pub, digest, s.value) {
			err = errors.New("ECDSA verification error")
		}
	default:
		return fmt.Errorf("verification certificate has an unsupported %T key", cert.PublicKey)
	}
	if err != nil {
		return fmt.Errorf("signature verification failed: %w", err)
	}
	return nil
}

// verifyECDSA accepts the DER form the central server publishes and, as
// §7.9 suggests, the raw r‖s form a configuration proxy may pass through.
func verifyECDSA(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if ecdsa.VerifyASN1(pub, digest, sig) {
		return true
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	return err == nil && ecdsa.VerifyASN1(pub, digest, der)
}
