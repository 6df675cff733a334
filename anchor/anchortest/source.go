// Package anchortest is an in-process X-Road configuration source for
// tests (global-configuration.md §6): a generated signing key and
// self-signed certificate, the signed multipart directory and its content
// parts served over real HTTP by httptest, and a matching anchor. A test
// switches what the source serves between rounds: good, tampered, expired,
// failing, hanging, or in a configuration proxy's style.
package anchortest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"html"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/schema"
)

// Fault is what a source does wrong.
type Fault string

// The faults of §6.6's matrix, and a few more.
const (
	Good             Fault = ""
	TamperSignature  Fault = "tamper-signature"   // one bit of the signature value flipped
	TamperSigned     Fault = "tamper-signed"      // one bit of the signed data flipped after signing
	UnknownSigner    Fault = "unknown-signer"     // signed by a key the anchor does not list
	WrongHash        Fault = "wrong-hash"         // shared parameters served differ from their hash
	Expired          Fault = "expired"            // Expire-date one minute ago
	MissingExpire    Fault = "missing-expire"     // no Expire-date line
	NoCertHashParam  Fault = "no-cert-hash-param" // Verification-certificate-hash without hash-algorithm-id
	InstanceMismatch Fault = "instance-mismatch"  // shared parameters name another instance than Content-identifier
	Status500        Fault = "status-500"         // the directory URL answers 500
	Hang             Fault = "hang"               // the directory URL never answers
	Trickle          Fault = "trickle"            // the directory URL answers one byte every 50 ms, never ending
)

// Key types and signature algorithms a source can sign with (§2.6).
const (
	RSASHA512   = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
	RSASHA256   = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	RSASHA384   = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
	RSAPSS512   = "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1"
	RSAPSS384   = "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1"
	RSAPSS256   = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
	ECDSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
	ECDSASHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
	ECDSASHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
)

const sha512URI = "http://www.w3.org/2001/04/xmlenc#sha512"

// Part is one content part of the directory.
type Part struct {
	ID       string // Content-identifier, e.g. SHARED-PARAMETERS
	FileName string // the last segment of its Content-location
	Data     []byte
}

// State is what the source serves; a zero field takes the default.
type State struct {
	Instance   string    // "EE"
	Parts      []Part    // StandardParts("EE", ...) as given to New
	Expire     time.Time // ten minutes after now
	Fault      Fault
	ProxyStyle bool  // lower-case names, LF header block, double quotes, millisecond expiry (§2.12)
	Versions   []int // versions answered (others 404); {6}
	RawECDSA   bool  // ECDSA signature as raw r‖s instead of DER
	// PartHash is the digest URI of the parts' hashes and the certificate
	// hash; SHA-512 if "".
	PartHash string
}

// digests repeats the table of the code under test on purpose: a test
// source that shared it would not notice a wrong entry.
var digests = map[string]crypto.Hash{
	"http://www.w3.org/2001/04/xmlenc#sha512":       crypto.SHA512,
	"http://www.w3.org/2001/04/xmldsig-more#sha384": crypto.SHA384,
	"http://www.w3.org/2001/04/xmlenc#sha256":       crypto.SHA256,
	"http://www.w3.org/2001/04/xmldsig-more#sha224": crypto.SHA224,
	"http://www.w3.org/2000/09/xmldsig#sha1":        crypto.SHA1,
}

func digest(uri string, data []byte) string {
	w := digests[uri].New()
	w.Write(data)
	return base64.StdEncoding.EncodeToString(w.Sum(nil))
}

// Source is a running configuration source.
type Source struct {
	Server *httptest.Server
	URL    string // the anchor's downloadURL: Server.URL + "/internalconf"
	Cert   []byte // DER of the signing certificate the anchor lists

	alg          string
	key          crypto.Signer
	otherKey     crypto.Signer
	otherCertDER []byte

	mu    sync.Mutex
	st    State
	files map[string][]byte // path -> bytes of the parts last published
	hits  map[string]int
	stop  chan struct{}
}

// New starts a source signing with RSA and rsa-sha512, the central
// server's default, serving parts.
func New(t testing.TB, parts []Part) *Source {
	return NewWith(t, RSASHA512, parts)
}

// NewWith starts a source signing with the algorithm alg (one of the
// constants above); the key type follows from it.
func NewWith(t testing.TB, alg string, parts []Part) *Source {
	t.Helper()
	s := &Source{alg: alg, files: map[string][]byte{}, hits: map[string]int{}, stop: make(chan struct{})}
	var err error
	if s.key, s.Cert, err = newKey(alg, 0); err != nil {
		t.Fatal(err)
	}
	if s.otherKey, s.otherCertDER, err = newKey(alg, 1); err != nil {
		t.Fatal(err)
	}
	s.st.Parts = parts
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.Server.URL + "/internalconf"
	t.Cleanup(s.Close)
	return s
}

// Close stops the server; a hanging request is released first.
func (s *Source) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.Server.Close()
}

// Keys are generated once per process (RSA generation costs a good part of
// a second under the race detector); each source gets certificates of its
// own, and the second key of a kind signs for UnknownSigner.
var (
	keysOnce sync.Once
	keysErr  error
	rsaKeys  [2]*rsa.PrivateKey
	ecKeys   [2]*ecdsa.PrivateKey
)

func newKey(alg string, i int) (crypto.Signer, []byte, error) {
	keysOnce.Do(func() {
		for j := range 2 {
			var err error
			if rsaKeys[j], err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				keysErr = err
			}
			if ecKeys[j], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				keysErr = err
			}
		}
	})
	if keysErr != nil {
		return nil, nil, keysErr
	}
	var key crypto.Signer = rsaKeys[i]
	if strings.Contains(alg, "ecdsa") {
		key = ecKeys[i]
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(mrand.Int64()),
		Subject:      pkix.Name{CommonName: "test-conf-signing"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	return key, der, err
}

// Set replaces what the source serves. Parts left nil keep the current ones.
func (s *Source) Set(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Parts == nil {
		st.Parts = s.st.Parts
	}
	s.st = st
}

// SetFault keeps the content and changes only the fault.
func (s *Source) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Fault = f
}

// Hits returns how often a path was requested (e.g. "/internalconf" or a
// part's path ending in "/shared-params.xml"; a suffix matches).
func (s *Source) Hits(suffix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.hits {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

func (s *Source) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	st := s.st
	s.mu.Unlock()
	if r.Method != http.MethodGet {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/internalconf" {
		switch st.Fault {
		case Hang:
			select {
			case <-r.Context().Done():
			case <-s.stop:
			}
			return
		case Trickle:
			w.WriteHeader(http.StatusOK)
			for {
				if _, err := w.Write([]byte("-")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-s.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case Status500:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		versions := st.Versions
		if len(versions) == 0 {
			versions = []int{6}
		}
		v, err := strconv.Atoi(r.URL.Query().Get("version"))
		if err != nil || !slices.Contains(versions, v) {
			http.NotFound(w, r)
			return
		}
		body, err := s.build(st, v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
		return
	}
	s.mu.Lock()
	data, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(data)
}

// build renders the signed directory of version v (§6.3) and publishes
// its parts' locations.
func (s *Source) build(st State, v int) ([]byte, error) {
	inst := st.Instance
	if inst == "" {
		inst = "EE"
	}
	expire := st.Expire
	if expire.IsZero() {
		expire = time.Now().Add(10 * time.Minute)
	}
	if st.Fault == Expired {
		expire = time.Now().Add(-time.Minute)
	}
	crlf := "\r\n"
	name := func(s string) string { return s }
	quote := "'"
	outerHeaderEnd := crlf + crlf
	expireStr := expire.UTC().Format("2006-01-02T15:04:05Z")
	inner, outer := boundary(20, true), boundary(20, true)
	ts := time.Now().UTC().Format("20060102150405") + fmt.Sprintf("%09d", time.Now().Nanosecond())
	locPrefix := fmt.Sprintf("/V%d/%s/", v, ts)
	if st.ProxyStyle {
		name = strings.ToLower
		quote = `"`
		outerHeaderEnd = "\n\n"
		expireStr = expire.UTC().Format("2006-01-02T15:04:05.000Z")
		inner, outer = boundary(30, false), boundary(30, false)
		locPrefix = fmt.Sprintf("/PROXY/%d/%s/V%d/%s/", time.Now().UnixMilli(), inst, v, ts)
	}
	hashURI := st.PartHash
	if hashURI == "" {
		hashURI = sha512URI
	}
	files := map[string][]byte{}
	var sb bytes.Buffer
	sb.WriteString("--" + inner + crlf)
	if st.Fault != MissingExpire {
		sb.WriteString(name("Expire-date") + ": " + expireStr + crlf)
	}
	sb.WriteString(name("Version") + ": " + strconv.Itoa(v) + crlf + crlf)
	for _, p := range st.Parts {
		data := p.Data
		if st.Fault == InstanceMismatch && p.ID == "SHARED-PARAMETERS" {
			data = bytes.Replace(data, []byte("<instanceIdentifier>"+inst+"<"), []byte("<instanceIdentifier>XX<"), 1)
		}
		served := data
		if st.Fault == WrongHash && p.ID == "SHARED-PARAMETERS" {
			served = append(slices.Clip(data), "<!-- changed -->"...)
		}
		loc := locPrefix + p.FileName
		files[loc] = served
		sb.WriteString("--" + inner + crlf)
		sb.WriteString(name("Content-type") + ": application/octet-stream" + crlf)
		sb.WriteString(name("Content-transfer-encoding") + ": base64" + crlf)
		sb.WriteString(name("Content-identifier") + ": " + p.ID + "; instance=" + quote + inst + quote + crlf)
		sb.WriteString(name("Content-location") + ": " + loc + crlf)
		sb.WriteString(name("Hash-algorithm-id") + ": " + hashURI + crlf + crlf)
		sb.WriteString(digest(hashURI, data) + crlf)
	}
	sb.WriteString("--" + inner + "--" + crlf)
	signed := sb.Bytes()

	key, cert := s.key, s.Cert
	if st.Fault == UnknownSigner {
		key, cert = s.otherKey, s.otherCertDER
	}
	sig, err := sign(key, s.alg, signed, st.RawECDSA)
	if err != nil {
		return nil, err
	}
	if st.Fault == TamperSignature {
		sig[len(sig)/2] ^= 1
	}
	if st.Fault == TamperSigned {
		signed = slices.Clone(signed)
		signed[len(signed)/2] ^= 1
	}
	param := `; hash-algorithm-id="` + hashURI + `"`
	if st.ProxyStyle {
		param = "; hash-algorithm-id=" + hashURI
	}
	if st.Fault == NoCertHashParam {
		param = ""
	}
	var b bytes.Buffer
	mixed := "multipart/related; charset=UTF-8; boundary=" + outer
	if st.ProxyStyle {
		mixed = `multipart/related; type="multipart/mixed"; charset=UTF-8; boundary=` + outer
	}
	b.WriteString(name("Content-Type") + ": " + mixed + outerHeaderEnd)
	b.WriteString("--" + outer + crlf)
	b.WriteString(name("Content-Type") + ": multipart/mixed; charset=UTF-8; boundary=" + inner + crlf + crlf)
	b.Write(signed)
	b.WriteString(crlf + "--" + outer + crlf)
	b.WriteString(name("Content-Type") + ": application/octet-stream" + crlf)
	b.WriteString(name("Content-Transfer-Encoding") + ": base64" + crlf)
	b.WriteString(name("Signature-Algorithm-Id") + ": " + s.alg + crlf)
	b.WriteString(name("Verification-certificate-hash") + ": " + digest(hashURI, cert) + param + crlf + crlf)
	b.WriteString(base64.StdEncoding.EncodeToString(sig) + crlf)
	b.WriteString("--" + outer + "--" + crlf)

	s.mu.Lock()
	for k, v := range files {
		s.files[k] = v
	}
	s.mu.Unlock()
	return b.Bytes(), nil
}

func boundary(n int, digits bool) string {
	chars := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if digits {
		chars += "0123456789"
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[mrand.IntN(len(chars))]
	}
	return string(b)
}

func sign(key crypto.Signer, alg string, data []byte, raw bool) ([]byte, error) {
	h := crypto.SHA512
	switch {
	case strings.HasSuffix(alg, "sha256"), strings.Contains(alg, "sha256-"):
		h = crypto.SHA256
	case strings.HasSuffix(alg, "sha384"), strings.Contains(alg, "sha384-"):
		h = crypto.SHA384
	}
	w := h.New()
	w.Write(data)
	digest := w.Sum(nil)
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if strings.Contains(alg, "MGF1") {
			return rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, k, h, digest)
	case *ecdsa.PrivateKey:
		if raw {
			r, s, err := ecdsa.Sign(rand.Reader, k, digest)
			if err != nil {
				return nil, err
			}
			out := make([]byte, 64)
			r.FillBytes(out[:32])
			s.FillBytes(out[32:])
			return out, nil
		}
		return ecdsa.SignASN1(rand.Reader, k, digest)
	}
	return nil, fmt.Errorf("unsupported key %T", key)
}

// Anchor renders an anchor (§6.5) listing each source with its
// certificate, in order.
func Anchor(instance string, sources ...*Source) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n")
	b.WriteString(`<xr:configurationAnchor xmlns:xr="http://x-road.eu/xsd/xroad.xsd">` + "\n")
	fmt.Fprintf(&b, "  <generatedAt>%s</generatedAt>\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "  <instanceIdentifier>%s</instanceIdentifier>\n", instance)
	for _, s := range sources {
		fmt.Fprintf(&b, "  <source>\n    <downloadURL>%s</downloadURL>\n    <verificationCert>%s</verificationCert>\n  </source>\n",
			html.EscapeString(s.URL), base64.StdEncoding.EncodeToString(s.Cert))
	}
	b.WriteString("</xr:configurationAnchor>\n")
	return []byte(b.String())
}

// WriteAnchor writes Anchor(instance, sources...) to path.
func WriteAnchor(t testing.TB, path, instance string, sources ...*Source) {
	t.Helper()
	if err := os.WriteFile(path, Anchor(instance, sources...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// StandardParts returns private, shared and (unless monitoring is "")
// monitoring parameters of instance (§4): every security server in servers
// (slash form INSTANCE/CLASS/CODE/SERVERCODE) is owned by the member its id
// names, and monitoring (slash form) is the central monitoring client.
func StandardParts(instance, monitoring string, servers ...string) []Part {
	parts := []Part{
		{ID: "PRIVATE-PARAMETERS", FileName: "private-params.xml", Data: []byte(PrivateXML(instance))},
		{ID: "SHARED-PARAMETERS", FileName: "shared-params.xml", Data: []byte(SharedXML(instance, servers...))},
	}
	if monitoring != "" {
		parts = append(parts, Part{ID: "MONITORING", FileName: "monitoring-params.xml", Data: []byte(MonitoringXML(monitoring))})
	}
	return parts
}

// PrivateXML is minimal private parameters (§4.3).
func PrivateXML(instance string) string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
  <instanceIdentifier>` + instance + `</instanceIdentifier>
  <managementService>
    <authCertRegServiceAddress>https://cs1.example.org:4001/managementservice/</authCertRegServiceAddress>
    <managementRequestServiceProviderId idf:objectType="SUBSYSTEM">
      <idf:xRoadInstance>` + instance + `</idf:xRoadInstance><idf:memberClass>GOV</idf:memberClass>
      <idf:memberCode>70000001</idf:memberCode><idf:subsystemCode>MANAGEMENT</idf:subsystemCode>
    </managementRequestServiceProviderId>
  </managementService>
  <timeStampingIntervalSeconds>60</timeStampingIntervalSeconds>
</xr:conf>
`
}

// SharedXML is shared parameters (§4.1) listing the owners of servers as
// members and the servers themselves.
func SharedXML(instance string, servers ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
  <instanceIdentifier>` + instance + `</instanceIdentifier>
  <source><address>cs1.example.org</address><internalVerificationCert>AAAA</internalVerificationCert></source>
`)
	ids := map[string]string{}
	var srv strings.Builder
	for _, s := range servers {
		id, err := schema.ParseServerID(s)
		if err != nil {
			panic(err)
		}
		key := id.MemberClass + "/" + id.MemberCode
		mid, ok := ids[key]
		if !ok {
			mid = "id" + strconv.Itoa(len(ids))
			ids[key] = mid
			fmt.Fprintf(&b, "  <member id=%q>\n    <memberClass><code>%s</code><description>d</description></memberClass>\n    <memberCode>%s</memberCode>\n    <name>n</name>\n  </member>\n",
				mid, id.MemberClass, id.MemberCode)
		}
		fmt.Fprintf(&srv, "  <securityServer>\n    <owner>%s</owner>\n    <serverCode>%s</serverCode>\n    <address>%s.example.org</address>\n  </securityServer>\n",
			mid, id.ServerCode, id.ServerCode)
	}
	b.WriteString(srv.String())
	b.WriteString("  <globalSettings><ocspFreshnessSeconds>3600</ocspFreshnessSeconds></globalSettings>\n</xr:conf>\n")
	return b.String()
}

// MonitoringXML is monitoring parameters naming id (slash form) as the
// central monitoring client (§4.2).
func MonitoringXML(id string) string {
	c, err := schema.ParseClientID(id)
	if err != nil {
		panic(err)
	}
	sub := ""
	if c.HasSubsystem {
		sub = "<idf:subsystemCode>" + c.Subsystem + "</idf:subsystemCode>"
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<xr:conf xmlns:xr="http://x-road.eu/xsd/xroad.xsd" xmlns:idf="http://x-road.eu/xsd/identifiers">
  <monitoringClient>
    <monitoringClientId idf:objectType="%s">
      <idf:xRoadInstance>%s</idf:xRoadInstance><idf:memberClass>%s</idf:memberClass><idf:memberCode>%s</idf:memberCode>%s
    </monitoringClientId>
  </monitoringClient>
</xr:conf>
`, c.ObjectType(), c.Instance, c.MemberClass, c.MemberCode, sub)
}

// PartPath is the path a part was last published under (for tests that
// count hits or request it).
func (s *Source) PartPath(file string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.files {
		if path.Base(p) == file {
			return p
		}
	}
	return ""
}
