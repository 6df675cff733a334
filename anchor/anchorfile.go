package anchor

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// nsXRoad is the namespace of the root elements of anchors and parameter files.
const nsXRoad = "http://x-road.eu/xsd/xroad.xsd"

// ErrMalformedAnchor is wrapped by every anchor parse error (upstream's
// malformed_anchor).
var ErrMalformedAnchor = errors.New("malformed anchor")

// Anchor is a parsed configuration anchor (§1).
type Anchor struct {
	GeneratedAt time.Time // zero when absent
	Instance    string    // the main instance
	Sources     []AnchorSource
	Fingerprint string // SHA-224 of the file, upper-case hex pairs joined by ':' (§1.3)
}

// AnchorSource is one configuration location with the certificates that may
// have signed what it serves.
type AnchorSource struct {
	DownloadURL string
	// VerificationCerts are DER certificates. They are not parsed here:
	// upstream uses them only as public-key containers, and the downloader
	// decides what to do with one it cannot parse.
	VerificationCerts [][]byte
}

type anchorXML struct {
	XMLName            xml.Name
	GeneratedAt        *string           `xml:"generatedAt"`
	InstanceIdentifier *string           `xml:"instanceIdentifier"`
	Sources            []anchorSourceXML `xml:"source"`
}

type anchorSourceXML struct {
	DownloadURL *string `xml:"downloadURL"`
	// DownloadURI is only read to explain the rejection: the protocol
	// document's example misspells the element (§7.1).
	DownloadURI       *string  `xml:"downloadURI"`
	VerificationCerts []string `xml:"verificationCert"`
}

// LoadAnchor reads and parses the anchor file at path.
func LoadAnchor(path string) (*Anchor, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read anchor: %w", err)
	}
	a, err := ParseAnchor(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseAnchor parses an anchor file's bytes. Like upstream it accepts only
// downloadURL (not downloadURI) and requires an instance identifier and at
// least one source, each with an absolute HTTP(S) URL and one or more
// certificates.
func ParseAnchor(data []byte) (*Anchor, error) {
	var x anchorXML
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedAnchor, err)
	}
	if x.XMLName.Space != nsXRoad || x.XMLName.Local != "configurationAnchor" {
		return nil, fmt.Errorf("%w: root element is {%s}%s, want {%s}configurationAnchor",
			ErrMalformedAnchor, x.XMLName.Space, x.XMLName.Local, nsXRoad)
	}
	a := &Anchor{Fingerprint: fingerprint(data)}
	if x.GeneratedAt != nil {
		t, err := parseDateTime(strings.TrimSpace(*x.GeneratedAt))
		if err != nil {
			return nil, fmt.Errorf("%w: generatedAt: %v", ErrMalformedAnchor, err)
		}
		a.GeneratedAt = t
	}
	if x.InstanceIdentifier == nil || strings.TrimSpace(*x.InstanceIdentifier) == "" {
		return nil, fmt.Errorf("%w: no instanceIdentifier", ErrMalformedAnchor)
	}
	a.Instance = strings.TrimSpace(*x.InstanceIdentifier)
	if len(x.Sources) == 0 {
		return nil, fmt.Errorf("%w: no source", ErrMalformedAnchor)
	}
	for i, xs := range x.Sources {
		src, err := parseAnchorSource(xs)
		if err != nil {
			return nil, fmt.Errorf("%w: source %d: %v", ErrMalformedAnchor, i+1, err)
		}
		a.Sources = append(a.Sources, src)
	}
	return a, nil
}

func parseAnchorSource(xs anchorSourceXML) (AnchorSource, error) {
	var src AnchorSource
	if xs.DownloadURL == nil {
		if xs.DownloadURI != nil {
			return src, errors.New("has downloadURI; the element is downloadURL")
		}
		return src, errors.New("no downloadURL")
	}
	raw := strings.TrimSpace(*xs.DownloadURL)
	u, err := url.Parse(raw)
	if err != nil {
		return src, fmt.Errorf("downloadURL: %v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return src, fmt.Errorf("downloadURL %q is not an absolute http or https URL", raw)
	}
	src.DownloadURL = raw
	if len(xs.VerificationCerts) == 0 {
		return src, errors.New("no verificationCert")
	}
	for j, c := range xs.VerificationCerts {
		der, err := base64.StdEncoding.DecodeString(stripSpace(c))
		if err != nil {
			return src, fmt.Errorf("verificationCert %d: %v", j+1, err)
		}
		if len(der) == 0 {
			return src, fmt.Errorf("verificationCert %d is empty", j+1)
		}
		src.VerificationCerts = append(src.VerificationCerts, der)
	}
	return src, nil
}

// fingerprint is the anchor hash upstream shows administrators (§1.3):
// SHA-224 over the exact bytes, upper-case hex pairs separated by ':'.
func fingerprint(data []byte) string {
	sum := sha256.Sum224(data)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	b.Grow(len(h) * 3 / 2)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// stripSpace removes all white space: certificates in anchors may be
// wrapped over several lines.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// parseDateTime accepts RFC 3339 with an optional fraction and any offset,
// and also the forms xs:dateTime and upstream's ISO parser allow beyond it
// (no seconds; no offset, taken as UTC).
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04:05.999999999",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 date-time", s)
}
