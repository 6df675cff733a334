package opmonrpc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// protocLine is the generated header naming protoc's version: it differs
// between installations and does not change the code; the plugins that write
// the code are pinned in go.mod.
var protocLine = regexp.MustCompile(`(?m)^// \tprotoc +v\S+\n`)

// TestGeneratedUpToDate regenerates the code with `make proto` into a
// temporary folder and compares it with the committed files.
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("protoc is not installed; .ci/run installs Debian's protobuf-compiler")
		}
		t.Skip("protoc is not installed (apt-get install protobuf-compiler); cannot check the generated gRPC code")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed; cannot run `make proto`")
	}
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", "../..", "proto", "PROTO_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make proto: %v\n%s", err, b)
	}
	fresh, _ := filepath.Glob(filepath.Join(out, "*.pb.go"))
	committed, _ := filepath.Glob("*.pb.go")
	names := func(paths []string) []string {
		var n []string
		for _, p := range paths {
			n = append(n, filepath.Base(p))
		}
		slices.Sort(n)
		return n
	}
	if !slices.Equal(names(fresh), names(committed)) {
		t.Fatalf("generated files %v, committed %v: run `make proto`", names(fresh), names(committed))
	}
	for _, name := range names(fresh) {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(protocLine.ReplaceAll(got, nil), protocLine.ReplaceAll(want, nil)) {
			t.Errorf("%s differs from what the .proto files generate: run `make proto` and commit", name)
		}
	}
}
