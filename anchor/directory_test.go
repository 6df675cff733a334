package anchor

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opmond/opmond/anchor/anchortest"
)

func servedDirectory(t testing.TB, st anchortest.State) string {
	t.Helper()
	src := anchortest.New(t, stdParts())
	src.Set(st)
	return fetchDirectory(t, src)
}

// fetchDirectory is the version 6 directory src serves.
func fetchDirectory(t testing.TB, src *anchortest.Source) string {
	t.Helper()
	resp, err := http.Get(src.URL + "?version=6")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestParseDirectoryErrors: each way a directory can be wrong gets
// upstream's error code (§2.3, §2.4, §2.7).
func TestParseDirectoryErrors(t *testing.T) {
	good := servedDirectory(t, anchortest.State{})
	cases := []struct {
		name, old, new, code string
	}{
		{"unknown hash algorithm", "Hash-algorithm-id: http://www.w3.org/2001/04/xmlenc#sha512", "Hash-algorithm-id: urn:md5", "global_conf_header_field_wrong_value"},
		{"content type not exact", "Content-type: application/octet-stream", "Content-type: Application/Octet-Stream", "global_conf_header_field_wrong_value"},
		{"no transfer encoding", "Content-transfer-encoding: base64\r\n", "", "global_conf_header_field_missing"},
		{"no content location", "Content-location:", "X-Location:", "global_conf_header_field_missing"},
		{"no instance", "; instance='EE'", "", "global_conf_header_field_missing_parameter"},
		{"bad version", "Version: 6", "Version: 9", "global_conf_header_field_wrong_value"},
		{"bad expiry", "Expire-date: 20", "Expire-date: x20", "global_conf_header_field_wrong_value"},
		{"no Signature-Algorithm-Id", "Signature-Algorithm-Id", "X-Signature-Algorithm-Id", "global_conf_header_field_missing"},
		{"not multipart", "Content-Type: multipart/related", "Content-Type: text/plain", "global_conf_parsing_downloaded_conf_directory_failure"},
		{"no outer Content-Type", "Content-Type: multipart/related; charset=UTF-8; boundary=", "", "global_conf_parsing_downloaded_conf_directory_failure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("directory lacks %q", tc.old)
			}
			body := strings.Replace(good, tc.old, tc.new, 1)
			env, err := parseEnvelope([]byte(body))
			if err == nil {
				_, err = parseSignedData(env.signed, env.innerBoundary)
			}
			var de *DownloadError
			if !errors.As(err, &de) || de.Code != tc.code || de.Cause != CauseMalformed {
				t.Errorf("error %v, want code %s", err, tc.code)
			}
		})
	}
	// The parameters of Verification-certificate-hash, quoted either way.
	for _, v := range []string{`AAAA; hash-algorithm-id="x"`, `AAAA; hash-algorithm-id=x`, `AAAA ;Hash-Algorithm-Id='x'`} {
		if h, p := splitHeaderParams(v); h != "AAAA" || p["hash-algorithm-id"] != "x" {
			t.Errorf("%s: %q %v", v, h, p)
		}
	}
}
