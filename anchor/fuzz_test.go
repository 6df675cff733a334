package anchor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The downloader will feed these parsers bytes from the network.

func FuzzParseAnchor(f *testing.F) {
	f.Add([]byte(validAnchor()))
	f.Add([]byte(`<configurationAnchor xmlns="http://x-road.eu/xsd/xroad.xsd"><instanceIdentifier>X</instanceIdentifier><source><downloadURL>http://a/b</downloadURL><verificationCert>AA==</verificationCert></source></configurationAnchor>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAnchor(data)
		if err != nil {
			return
		}
		if a.Instance == "" || len(a.Sources) == 0 || len(a.Fingerprint) != 28*3-1 {
			t.Fatalf("accepted anchor is incomplete: %+v", a)
		}
		for _, s := range a.Sources {
			if s.DownloadURL == "" || len(s.VerificationCerts) == 0 {
				t.Fatalf("accepted source is incomplete: %+v", s)
			}
		}
	})
}

func FuzzParseShared(f *testing.F) {
	f.Add([]byte(sharedXML("EE",
		[]member{{id: "id0", class: "COM", code: "1", subsystems: map[string]string{"id1": "S"}}},
		[]server{{owner: "id0", code: "SS1"}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		inst, owners, err := parseShared(data)
		if err != nil {
			return
		}
		for id, owner := range owners {
			if id.Instance != inst || owner != id.Owner() {
				t.Fatalf("server %v has owner %v in instance %q", id, owner, inst)
			}
		}
	})
}

func FuzzParseMonitoring(f *testing.F) {
	f.Add([]byte(monitoringXML(monitoringID("SUBSYSTEM", "EE", "GOV", "1", "MON"))))
	f.Add([]byte(monitoringXML(monitoringID("MEMBER", "EE", "GOV", "1", ""))))
	f.Add([]byte(monitoringXML("")))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, ok, err := parseMonitoring(data)
		if err != nil || !ok {
			return
		}
		if id.Instance == "" || id.MemberClass == "" || id.MemberCode == "" || id.HasSubsystem != (id.Subsystem != "") {
			t.Fatalf("accepted incomplete monitoring client %+v", id)
		}
	})
}

// FuzzParseDirectory feeds the signed-directory parsers (outer multipart,
// signature part, signed multipart/mixed) what a source could serve. The
// seed corpus under testdata/fuzz/FuzzParseDirectory holds a central
// server's and a configuration proxy's layout.
func FuzzParseDirectory(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := parseEnvelope(body)
		if err != nil {
			if CauseOf(err) != CauseMalformed && CauseOf(err) != CauseBadSignature {
				t.Fatalf("envelope error with cause %s: %v", CauseOf(err), err)
			}
			return
		}
		if env.sig == nil || len(env.sig.value) == 0 || env.sig.algorithm == "" || env.sig.certHashAlgorithm == "" || env.innerBoundary == "" {
			t.Fatalf("accepted incomplete envelope %+v", env)
		}
		dir, err := parseSignedData(env.signed, env.innerBoundary)
		if err != nil {
			if CauseOf(err) != CauseMalformed {
				t.Fatalf("directory error with cause %s: %v", CauseOf(err), err)
			}
			return
		}
		if dir.expire.IsZero() || dir.version < minConfVersion || dir.version > currentConfVersion {
			t.Fatalf("accepted directory without expiry or version: %+v", dir)
		}
		for _, e := range dir.entries {
			if e.location == "" || len(e.hash) != e.hashAlg.Size() {
				t.Fatalf("accepted incomplete entry %+v", e)
			}
			if name, err := partFileName(e); err == nil && (name == "" || name[0] == '.' || filepath.Base(name) != name) {
				t.Fatalf("unsafe file name %q accepted", name)
			}
		}
	})
}

// TestDirectorySeedsParse keeps the seed corpus meaningful: every seed is
// a directory the parsers accept.
func TestDirectorySeedsParse(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzParseDirectory/*")
	if err != nil || len(files) < 3 {
		t.Fatalf("seeds: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "go test fuzz v1\n[]byte(")
		body, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
		if !ok || err != nil {
			t.Fatalf("%s: not a corpus file: %v", f, err)
		}
		env, err := parseEnvelope([]byte(body))
		if err == nil {
			_, err = parseSignedData(env.signed, env.innerBoundary)
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
