// Package testbin builds the real opmond binary once per test process, so
// that the tests that matter run it as an operator would, and runs it.
// It is for tests only.
package testbin

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	path string
	err  error
)

// Path builds the static opmond binary (CGO_ENABLED=0, as it ships) on its
// first call in the process and returns its path; later calls reuse it.
// A failed build fails every test that asks for the binary.
func Path(t testing.TB) string {
	t.Helper()
	once.Do(build)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func build() {
	root, e := moduleRoot()
	if e != nil {
		err = e
		return
	}
	if dir, err = os.MkdirTemp("", "opmond-bin-"); err != nil {
		return
	}
	path = filepath.Join(dir, "opmond")
	cmd := exec.Command("go", "build", "-o", path, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, e := cmd.CombinedOutput(); e != nil {
		err = fmt.Errorf("go build: %v\n%s", e, out)
	}
}

// moduleRoot walks up from the working directory (a test's package folder)
// to the folder holding go.mod.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("testbin: no go.mod above the working directory")
		}
		d = up
	}
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Main runs the tests of m, removes the binary and exits with the tests'
// code: a package's TestMain can be this one call.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Run runs the binary to its end, with stdin when not nil, and returns its
// exit code, stdout and stderr.
func Run(t testing.TB, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(Path(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// FreePort is a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
