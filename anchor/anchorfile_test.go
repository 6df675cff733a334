package anchor

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	certA = []byte("DER of signing certificate A, rotation key one")
	certB = []byte("DER of signing certificate B, rotation key two")
	certC = []byte("DER of the cs2 signing certificate")
)

// wrapped is base64 broken over indented lines, as upstream test fixtures have it.
func wrapped(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 16 {
		b.WriteString("\n            " + s[:16])
		s = s[16:]
	}
	b.WriteString("\n\t" + s + "\r\n        ")
	return b.String()
}

func validAnchor() string {
	return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<tns:configurationAnchor xmlns:ns2="http://x-road.eu/xsd/identifiers" xmlns:tns="http://x-road.eu/xsd/xroad.xsd">
    <generatedAt>2026-01-15T08:30:00.123Z</generatedAt>
    <instanceIdentifier>EE</instanceIdentifier>
    <source>
        <downloadURL>http://cs1.example.org/internalconf</downloadURL>
        <verificationCert>` + wrapped(certA) + `</verificationCert>
        <verificationCert>` + base64.StdEncoding.EncodeToString(certB) + `</verificationCert>
    </source>
    <source>
        <downloadURL>https://cs2.example.org:8443/internalconf?version=6</downloadURL>
        <verificationCert>` + wrapped(certC) + `</verificationCert>
    </source>
</tns:configurationAnchor>
`
}

func TestParseAnchor(t *testing.T) {
	data := []byte(validAnchor())
	a, err := ParseAnchor(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 15, 8, 30, 0, 123e6, time.UTC); !a.GeneratedAt.Equal(want) {
		t.Errorf("GeneratedAt = %v, want %v", a.GeneratedAt, want)
	}
	if a.Instance != "EE" {
		t.Errorf("Instance = %q", a.Instance)
	}
	want := []AnchorSource{
		{DownloadURL: "http://cs1.example.org/internalconf", VerificationCerts: [][]byte{certA, certB}},
		{DownloadURL: "https://cs2.example.org:8443/internalconf?version=6", VerificationCerts: [][]byte{certC}},
	}
	if len(a.Sources) != len(want) {
		t.Fatalf("%d sources, want %d", len(a.Sources), len(want))
	}
	for i, w := range want {
		g := a.Sources[i]
		if g.DownloadURL != w.DownloadURL || len(g.VerificationCerts) != len(w.VerificationCerts) {
			t.Fatalf("source %d = %+v, want %+v", i, g, w)
		}
		for j := range w.VerificationCerts {
			if !bytes.Equal(g.VerificationCerts[j], w.VerificationCerts[j]) {
				t.Errorf("source %d cert %d = %q, want %q", i, j, g.VerificationCerts[j], w.VerificationCerts[j])
			}
		}
	}
	if !regexp.MustCompile(`^([0-9A-F]{2}:){27}[0-9A-F]{2}$`).MatchString(a.Fingerprint) {
		t.Errorf("Fingerprint %q is not 28 upper-case hex pairs joined by ':'", a.Fingerprint)
	}
	if a.Fingerprint != fingerprint(data) {
		t.Error("Fingerprint is not over the file's bytes")
	}
	b, err := ParseAnchor(append(data, '\n'))
	if err != nil || b.Fingerprint == a.Fingerprint {
		t.Errorf("one more byte gave the same fingerprint (%v)", err)
	}
}

func TestFingerprint(t *testing.T) {
	// SHA-224 of the empty input.
	const want = "D1:4A:02:8C:2A:3A:2B:C9:47:61:02:BB:28:82:34:C4:15:A2:B0:1F:82:8E:A6:2A:C5:B3:E4:2F"
	if got := fingerprint(nil); got != want {
		t.Errorf("fingerprint(empty) = %s, want %s", got, want)
	}
}

func TestParseAnchorMinimal(t *testing.T) {
	a, err := ParseAnchor([]byte(`<configurationAnchor xmlns="http://x-road.eu/xsd/xroad.xsd"><instanceIdentifier>DEV</instanceIdentifier>` +
		`<source><downloadURL> http://10.0.0.1/internalconf </downloadURL><verificationCert>AQID</verificationCert></source></configurationAnchor>`))
	if err != nil {
		t.Fatal(err)
	}
	if !a.GeneratedAt.IsZero() || a.Instance != "DEV" || len(a.Sources) != 1 || a.Sources[0].DownloadURL != "http://10.0.0.1/internalconf" ||
		!bytes.Equal(a.Sources[0].VerificationCerts[0], []byte{1, 2, 3}) {
		t.Errorf("ParseAnchor = %+v", a)
	}
}

func TestParseAnchorErrors(t *testing.T) {
	valid := validAnchor()
	tests := []struct {
		name, data, want string
	}{
		{"wrong root namespace", strings.ReplaceAll(valid, "http://x-road.eu/xsd/xroad.xsd", "http://x-road.eu/xsd/other.xsd"), "root element"},
		{"root without namespace", strings.ReplaceAll(strings.ReplaceAll(valid, "tns:", ""), ` xmlns:tns="http://x-road.eu/xsd/xroad.xsd"`, ""), "root element"},
		{"wrong root name", strings.ReplaceAll(valid, "tns:configurationAnchor", "tns:conf"), "root element"},
		{"downloadURI", strings.ReplaceAll(valid, "downloadURL>", "downloadURI>"), "has downloadURI; the element is downloadURL"},
		{"no downloadURL", strings.Replace(valid, "<downloadURL>http://cs1.example.org/internalconf</downloadURL>", "", 1), "source 1: no downloadURL"},
		{"missing instanceIdentifier", strings.Replace(valid, "<instanceIdentifier>EE</instanceIdentifier>", "", 1), "no instanceIdentifier"},
		{"blank instanceIdentifier", strings.Replace(valid, "<instanceIdentifier>EE</instanceIdentifier>", "<instanceIdentifier> </instanceIdentifier>", 1), "no instanceIdentifier"},
		{"bad base64", strings.Replace(valid, base64.StdEncoding.EncodeToString(certB), "not*base64", 1), "source 1: verificationCert 2"},
		{"empty certificate", strings.Replace(valid, base64.StdEncoding.EncodeToString(certB), " ", 1), "verificationCert 2 is empty"},
		{"no certificate", strings.Replace(valid, "<verificationCert>"+wrapped(certC)+"</verificationCert>", "", 1), "source 2: no verificationCert"},
		{"no source", `<a:configurationAnchor xmlns:a="http://x-road.eu/xsd/xroad.xsd"><instanceIdentifier>EE</instanceIdentifier></a:configurationAnchor>`, "no source"},
		{"relative URL", strings.Replace(valid, "http://cs1.example.org/internalconf", "/internalconf", 1), "not an absolute http or https URL"},
		{"ftp URL", strings.Replace(valid, "http://cs1.example.org/internalconf", "ftp://cs1.example.org/internalconf", 1), "not an absolute http or https URL"},
		{"bad generatedAt", strings.Replace(valid, "2026-01-15T08:30:00.123Z", "yesterday", 1), "generatedAt"},
		{"unclosed generatedAt", strings.Replace(valid, "</generatedAt>", "", 1), "malformed anchor"},
		{"not XML", "configuration anchor", "malformed anchor"},
		{"empty", "", "malformed anchor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAnchor([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseAnchor = %+v, want error", a)
			}
			if !errors.Is(err, ErrMalformedAnchor) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrMalformedAnchor containing %q", err, tt.want)
			}
		})
	}
}

func TestParseAnchorGeneratedAtForms(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-01-15T08:30:00Z":         time.Date(2026, 1, 15, 8, 30, 0, 0, time.UTC),
		"2026-01-15T10:30:00.5+02:00":  time.Date(2026, 1, 15, 8, 30, 0, 5e8, time.UTC),
		"2026-01-15T08:30Z":            time.Date(2026, 1, 15, 8, 30, 0, 0, time.UTC),
		"2026-01-15T08:30:00.770":      time.Date(2026, 1, 15, 8, 30, 0, 770e6, time.UTC),
		"\n  2026-01-15T08:30:00Z\n  ": time.Date(2026, 1, 15, 8, 30, 0, 0, time.UTC),
	} {
		a, err := ParseAnchor([]byte(strings.Replace(validAnchor(), "2026-01-15T08:30:00.123Z", in, 1)))
		if err != nil {
			t.Errorf("generatedAt %q: %v", in, err)
			continue
		}
		if !a.GeneratedAt.Equal(want) {
			t.Errorf("generatedAt %q = %v, want %v", in, a.GeneratedAt, want)
		}
	}
}

func TestLoadAnchor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "configuration-anchor.xml")
	writeFile(t, path, validAnchor())
	a, err := LoadAnchor(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Instance != "EE" || a.Fingerprint != fingerprint([]byte(validAnchor())) {
		t.Errorf("LoadAnchor = %+v", a)
	}
	if _, err := LoadAnchor(filepath.Join(dir, "missing.xml")); err == nil {
		t.Error("LoadAnchor of a missing file succeeded")
	}
	bad := filepath.Join(dir, "bad.xml")
	writeFile(t, bad, strings.ReplaceAll(validAnchor(), "downloadURL>", "downloadURI>"))
	if _, err := LoadAnchor(bad); !errors.Is(err, ErrMalformedAnchor) || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadAnchor of a malformed file: %v", err)
	}
}
