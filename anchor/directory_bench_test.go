package anchor

import (
	"testing"

	"github.com/opmond/opmond/anchor/anchortest"
)

// BenchmarkVerifyDirectory: parsing a central server's signed directory
// and verifying its RSA SHA-512 signature, what each round costs before
// any part is fetched.
func BenchmarkVerifyDirectory(b *testing.B) {
	src := anchortest.New(b, stdParts())
	body := []byte(fetchDirectory(b, src))
	certs := [][]byte{src.Cert}
	b.ReportAllocs()
	for b.Loop() {
		env, err := parseEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := verifySignature(certs, env.sig, env.signed); err != nil {
			b.Fatal(err)
		}
		if _, err := parseSignedData(env.signed, env.innerBoundary); err != nil {
			b.Fatal(err)
		}
	}
}
