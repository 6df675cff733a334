package anchor

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// The signed directory (§2.2–2.4) is a MIME entity whose multipart/related
// body has two parts: the signed multipart/mixed directory and its
// signature. It is parsed with mime/multipart's NextRawPart, so the signed
// bytes are exactly the first part's body and nothing is decoded on the way.

// Configuration versions this daemon can read (§2.1): every element it
// needs is the same in all of them.
const (
	currentConfVersion = 6
	minConfVersion     = 2
)

// Content identifiers with fixed local file names (§2.4, §3.1).
const (
	contentPrivate    = "PRIVATE-PARAMETERS"
	contentShared     = "SHARED-PARAMETERS"
	contentMonitoring = "MONITORING"
)

const octetStream = "application/octet-stream"

// envelope is the outer multipart of a signed directory.
type envelope struct {
	signed        []byte // the first part's body: what the signature covers
	innerBoundary string
	sig           *signaturePart
}

// signaturePart is the second outer part (§2.3).
type signaturePart struct {
	algorithm         string // Signature-Algorithm-Id
	certHash          []byte
	certHashAlgorithm string
	value             []byte
}

// directory is the parsed signed data (§2.4).
type directory struct {
	expire    time.Time
	expireRaw string // as given, copied into metadata
	version   int
	entries   []entry
}

// entry is one content part listed by the directory.
type entry struct {
	contentID string // "" when the part has no Content-identifier
	instance  string
	location  string
	fileName  string // Content-file-name, if given
	hashURI   string
	hashAlg   crypto.Hash
	hash      []byte
}

// parseEnvelope splits a downloaded body into signed data and signature.
// The header block may end lines with CRLF or LF, and header names are
// case-insensitive (§2.12: central servers and configuration proxies
// differ).
func parseEnvelope(body []byte) (*envelope, error) {
	br := bufio.NewReader(bytes.NewReader(body))
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "read MIME header: %v", err)
	}
	outer, err := multipartBoundary(hdr.Get("Content-Type"), "")
	if err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "directory: %v", err)
	}
	mr := multipart.NewReader(br, outer)
	p, err := mr.NextRawPart()
	if err != nil {
		return nil, malformed("global_conf_missing_signed_data", "no signed data part: %v", err)
	}
	inner, err := multipartBoundary(p.Header.Get("Content-Type"), "multipart/mixed")
	if err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "signed data part: %v", err)
	}
	env := &envelope{innerBoundary: inner}
	if env.signed, err = io.ReadAll(p); err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "signed data part: %v", err)
	}
	p, err = mr.NextRawPart()
	if err != nil {
		// Upstream never parses a directory without a signature part, so
		// it reports the expiry date as missing.
		return nil, malformed("global_conf_missing_signed_data_expiration_date", "no signature part: %v", err)
	}
	if env.sig, err = parseSignaturePart(p); err != nil {
		return nil, err
	}
	return env, nil
}

// multipartBoundary returns the boundary of a multipart content type; want,
// if set, is the exact media type required.
func multipartBoundary(ct, want string) (string, error) {
	if ct == "" {
		return "", errors.New("no Content-Type")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	if (want != "" && mt != want) || (want == "" && !strings.HasPrefix(mt, "multipart/")) {
		return "", fmt.Errorf("Content-Type is %q, not multipart", mt)
	}
	b := params["boundary"]
	if b == "" {
		return "", fmt.Errorf("Content-Type %q has no boundary", ct)
	}
	return b, nil
}

func parseSignaturePart(p *multipart.Part) (*signaturePart, error) {
	if err := requireHeader(p.Header, "Content-Type", octetStream); err != nil {
		return nil, err
	}
	if err := requireHeader(p.Header, "Content-Transfer-Encoding", "base64"); err != nil {
		return nil, err
	}
	s := &signaturePart{algorithm: p.Header.Get("Signature-Algorithm-Id")}
	if s.algorithm == "" {
		return nil, malformed("global_conf_header_field_missing", "signature part has no Signature-Algorithm-Id")
	}
	v := p.Header.Get("Verification-Certificate-Hash")
	if v == "" {
		return nil, malformed("global_conf_header_field_missing", "signature part has no Verification-certificate-hash")
	}
	// Not mime.ParseMediaType: the base64 value contains '/', '+' and '='.
	value, params := splitHeaderParams(v)
	s.certHashAlgorithm = params["hash-algorithm-id"]
	if s.certHashAlgorithm == "" {
		return nil, malformed("global_conf_header_field_missing_parameter", "Verification-certificate-hash has no hash-algorithm-id parameter")
	}
	var err error
	if s.certHash, err = decodeB64(value); err != nil {
		return nil, malformed("global_conf_header_field_wrong_value", "Verification-certificate-hash: %v", err)
	}
	body, err := io.ReadAll(p)
	if err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "signature part: %v", err)
	}
	// Upstream decodes the signature leniently: line breaks are allowed.
	if s.value, err = decodeB64(string(body)); err != nil || len(s.value) == 0 {
		return nil, &DownloadError{Cause: CauseBadSignature, Code: "global_conf_signature_decode_failure",
			Err: fmt.Errorf("signature value is not base64: %v", err)}
	}
	return s, nil
}

// requireHeader checks a header upstream compares byte for byte (§7.5).
func requireHeader(h textproto.MIMEHeader, name, want string) error {
	v, ok := h[textproto.CanonicalMIMEHeaderKey(name)]
	if !ok || len(v) == 0 {
		return malformed("global_conf_header_field_missing", "part has no %s header", name)
	}
	if v[0] != want {
		return malformed("global_conf_header_field_wrong_value", "%s is %q, want %q", name, v[0], want)
	}
	return nil
}

// splitHeaderParams splits `value; name=v; name="v"` at ';'. Parameter
// names are lower-cased; single or double quotes around values are removed,
// since producers differ (§2.3, §2.4).
func splitHeaderParams(s string) (string, map[string]string) {
	parts := strings.Split(s, ";")
	params := make(map[string]string, len(parts)-1)
	for _, p := range parts[1:] {
		name, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		params[strings.ToLower(strings.TrimSpace(name))] = val
	}
	return strings.TrimSpace(parts[0]), params
}

func decodeB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(stripSpace(s))
}

// parseSignedData parses the signed multipart/mixed directory: a
// header-only first entry (Expire-date, Version), then one entry per
// content part. Whatever part comes first is the header entry (§7.6).
func parseSignedData(signed []byte, boundary string) (*directory, error) {
	mr := multipart.NewReader(bytes.NewReader(signed), boundary)
	p, err := mr.NextRawPart()
	if err != nil {
		return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "directory has no parts: %v", err)
	}
	d := &directory{expireRaw: p.Header.Get("Expire-Date"), version: minConfVersion}
	if d.expireRaw == "" {
		return nil, malformed("global_conf_header_field_missing", "directory has no Expire-date")
	}
	if d.expire, err = parseDateTime(d.expireRaw); err != nil {
		return nil, malformed("global_conf_header_field_wrong_value", "Expire-date: %v", err)
	}
	if v := p.Header.Get("Version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < minConfVersion || n > currentConfVersion {
			return nil, malformed("global_conf_header_field_wrong_value", "directory Version %q is not one of %d to %d", v, minConfVersion, currentConfVersion)
		}
		d.version = n
	}
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return nil, malformed("global_conf_parsing_downloaded_conf_directory_failure", "directory: %v", err)
		}
		e, err := parseEntry(p)
		if err != nil {
			return nil, err
		}
		d.entries = append(d.entries, e)
	}
}

func parseEntry(p *multipart.Part) (entry, error) {
	var e entry
	if err := requireHeader(p.Header, "Content-Type", octetStream); err != nil {
		return e, err
	}
	if err := requireHeader(p.Header, "Content-Transfer-Encoding", "base64"); err != nil {
		return e, err
	}
	e.location = strings.TrimSpace(p.Header.Get("Content-Location"))
	if e.location == "" {
		return e, malformed("global_conf_header_field_missing", "directory entry has no Content-location")
	}
	e.hashURI = strings.TrimSpace(p.Header.Get("Hash-Algorithm-Id"))
	if e.hashURI == "" {
		return e, malformed("global_conf_header_field_missing", "directory entry %s has no Hash-algorithm-id", e.location)
	}
	var err error
	if e.hashAlg, err = digestOf(e.hashURI); err != nil {
		return e, malformed("global_conf_header_field_wrong_value", "directory entry %s: %v", e.location, err)
	}
	e.fileName = strings.TrimSpace(p.Header.Get("Content-File-Name"))
	if id := p.Header.Get("Content-Identifier"); id != "" {
		var params map[string]string
		e.contentID, params = splitHeaderParams(id)
		e.instance = params["instance"]
		if e.instance == "" && (e.contentID == contentPrivate || e.contentID == contentShared) {
			return e, malformed("global_conf_header_field_missing_parameter", "Content-identifier %q has no instance parameter", id)
		}
	}
	body, err := io.ReadAll(p)
	if err != nil {
		return e, malformed("global_conf_parsing_downloaded_conf_directory_failure", "directory entry %s: %v", e.location, err)
	}
	if e.hash, err = decodeB64(string(body)); err != nil || len(e.hash) != e.hashAlg.Size() {
		return e, malformed("global_conf_header_field_wrong_value", "directory entry %s: hash is not a base64 %s digest", e.location, e.hashAlg)
	}
	return e, nil
}
