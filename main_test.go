package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || !regexp.MustCompile(`^opmond \S+ \(commit \S+, go[0-9.]+\S*\)\n$`).MatchString(out) {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[op-monitor]\nprot = 2080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "check-config", "--config", bad)
	if code != 1 || out != "" || !strings.Contains(errOut, "op-monitor.prot") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("misspelt key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[op-monitor]\nport = 3000\ndatabase = \"x.db\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "check-config", "--config", good)
	if code != 0 || !strings.Contains(out, "port = 3000") || !strings.Contains(out, filepath.Join(dir, "x.db")) || errOut != "" {
		t.Errorf("good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	anchorCfg := filepath.Join(dir, "anchor.toml")
	if err := os.WriteFile(anchorCfg, []byte("[global-conf]\nanchor = \"missing-anchor.xml\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "check-config", "--config", anchorCfg); code != 1 || !strings.Contains(errOut, "global-conf.anchor") {
		t.Errorf("missing anchor: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{"bogus"},
		{"serve", "--nope"},
		{"serve", "extra"},
		{"query", "--from", "1"},
		{"query", "--health", "--from", "1"},
		{"query", "--from", "1", "--to", "2", "--client", "EE/GOV"},
		{"query", "--from", "1", "--to", "2", "--server", "EE/GOV/1"},
		{"gencert"},
		{"gencert", "--dir", "x", "--days", "0"},
	}
	for _, args := range tests {
		if code, _, errOut := runCLI(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestGencert(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "gencert", "--dir", dir, "--cn", "opmon.example.org", "--san", "opmon.example.org,127.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	fi, err := os.Stat(filepath.Join(dir, "opmonitor.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "opmonitor.crt")); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "gencert", "--dir", dir); code != 1 || errOut == "" {
		t.Errorf("overwrite without --force: exit %d %q", code, errOut)
	}
	if code, _, _ = runCLI(t, "gencert", "--dir", dir, "--force"); code != 0 {
		t.Errorf("--force: exit %d", code)
	}
}
