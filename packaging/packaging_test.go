// Package packaging holds the systemd unit, the packaged configuration, the
// install script and the .deb description; its tests check them as an
// operator's machine would see them.
package packaging

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opmond/opmond/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

func TestUnitHardening(t *testing.T) {
	unit, err := os.ReadFile("opmond.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=opmond", "ProtectSystem=strict", "ReadWritePaths=/var/lib/opmond", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/bin/opmond serve --config /etc/opmond/opmond.toml",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if n := bytes.Count(unit, []byte("ReadWritePaths=")); n != 1 {
		t.Errorf("%d ReadWritePaths lines, want only the data folder's", n)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with ExecStart
// pointing at a freshly built binary (verify checks that the command is
// executable; nothing else is changed), and systemd's offline security
// score.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
	}
	unit, err := os.ReadFile("opmond.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := testbin.Path(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "opmond.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/opmond "), []byte("ExecStart="+bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for opmond.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Errorf("systemd-analyze security (exposure must be at most 2.0): %v\n%s", err, out)
	} else {
		t.Logf("exposure %s", m[1])
	}
}

type entry struct {
	path  string
	mode  os.FileMode
	owner string // user:group
	dir   bool
}

// layout is what install.sh and the .deb lay out.
var layout = []entry{
	{"/usr/bin/opmond", 0o755, "root:root", false},
	{"/usr/lib/systemd/system/opmond.service", 0o644, "root:root", false},
	{"/etc/opmond", 0o750, "root:opmond", true},
	{"/etc/opmond/ssl", 0o750, "root:opmond", true},
	{"/etc/opmond/opmond.toml", 0o640, "root:opmond", false},
	{"/var/lib/opmond", 0o750, "opmond:opmond", true},
	{"/usr/share/doc/opmond/opmond.example.toml", 0o644, "root:root", false},
}

func runInstall(t *testing.T, destdir, svcUser string) (string, string) {
	t.Helper()
	cmd := exec.Command("sh", "install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+destdir, "BINARY="+testbin.Path(t), "OPMOND_USER="+svcUser)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("install.sh: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// checkLayout compares the tree under destdir with layout, file by file:
// kind, mode and (when owners is true) owner and group by name.
func checkLayout(t *testing.T, destdir, svcUser string, owners bool) {
	t.Helper()
	for _, e := range layout {
		fi, err := os.Lstat(filepath.Join(destdir, e.path))
		if err != nil {
			t.Errorf("%s: %v", e.path, err)
			continue
		}
		if fi.IsDir() != e.dir || (!e.dir && !fi.Mode().IsRegular()) {
			t.Errorf("%s: mode %v, want a %s", e.path, fi.Mode(), map[bool]string{true: "folder", false: "regular file"}[e.dir])
		}
		if fi.Mode().Perm() != e.mode {
			t.Errorf("%s: mode %o, want %o", e.path, fi.Mode().Perm(), e.mode)
		}
		if !owners {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		u, uerr := user.LookupId(strconv.Itoa(int(st.Uid)))
		g, gerr := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
		want := strings.ReplaceAll(e.owner, "opmond", svcUser)
		if uerr != nil || gerr != nil || u.Username+":"+g.Name != want {
			t.Errorf("%s: owner %d:%d, want %s", e.path, st.Uid, st.Gid, want)
		}
	}
}

// TestInstallLayout installs into a temporary DESTDIR and checks every
// path, mode and owner; a second install keeps a changed configuration.
func TestInstallLayout(t *testing.T) {
	t.Run("as the service user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("owners can only be set by root; run the tests as root (.ci/run does)")
		}
		if _, err := user.Lookup("opmond"); err != nil {
			t.Skip("user opmond does not exist: useradd --system --user-group --home-dir /var/lib/opmond --shell /usr/sbin/nologin opmond (.ci/run creates it)")
		}
		dest := t.TempDir()
		out, errOut := runInstall(t, dest, "opmond")
		if errOut != "" || !strings.Contains(out, "systemctl enable --now opmond") {
			t.Errorf("stdout %q, stderr %q", out, errOut)
		}
		checkLayout(t, dest, "opmond", true)
		conf := filepath.Join(dest, "etc/opmond/opmond.toml")
		if err := os.WriteFile(conf, []byte("# mine\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if out, _ := runInstall(t, dest, "opmond"); !strings.Contains(out, "kept     "+conf) {
			t.Errorf("reinstall: %q", out)
		}
		if b, _ := os.ReadFile(conf); string(b) != "# mine\n" {
			t.Errorf("reinstall replaced the configuration: %q", b)
		}
	})
	t.Run("without the service user", func(t *testing.T) {
		dest := t.TempDir()
		_, errOut := runInstall(t, dest, "opmond-absent-user")
		why := "user opmond-absent-user does not exist"
		if os.Geteuid() != 0 {
			why = "not running as root"
		}
		if !strings.Contains(errOut, "owners not set: "+why) ||
			!strings.Contains(errOut, "chown opmond-absent-user:opmond-absent-user "+filepath.Join(dest, "var/lib/opmond")) {
			t.Errorf("stderr %q", errOut)
		}
		checkLayout(t, dest, "opmond-absent-user", false)
	})
}

// TestPackagedConfig: the configuration installed as /etc/opmond/opmond.toml
// passes check-config and puts everything writable in the data folder.
func TestPackagedConfig(t *testing.T) {
	out, err := exec.Command(testbin.Path(t), "check-config", "--config", "opmond.toml").Output()
	if err != nil {
		t.Fatalf("check-config: %v", err)
	}
	for _, want := range []string{`database = "/var/lib/opmond/opmonitor.db"`, `directory = "/var/lib/opmond/globalconf"`, `listen = "127.0.0.1:2082"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective configuration lacks %s:\n%s", want, out)
		}
	}
}

// TestDeb builds the .deb with nfpm and checks its contents, modes,
// conffiles and maintainer scripts.
func TestDeb(t *testing.T) {
	nfpm, err := exec.LookPath("nfpm")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		nfpm = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nfpm")
		if _, err := os.Stat(nfpm); err != nil {
			t.Skip("nfpm is not installed: go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0 (.ci/run does)")
		}
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (Debian package dpkg)")
	}
	// nfpm reads the paths of nfpm.yaml relative to its working folder.
	stage := t.TempDir()
	for src, dst := range map[string]string{
		testbin.Path(t): "opmond", "opmond.service": "packaging/opmond.service", "opmond.toml": "packaging/opmond.toml",
		"postinst": "packaging/postinst", "prerm": "packaging/prerm", "postrm": "packaging/postrm",
		"nfpm.yaml": "packaging/nfpm.yaml", "../docs/opmond.example.toml": "docs/opmond.example.toml",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(src)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(stage, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stage, dst), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(nfpm, "package", "--config", "packaging/nfpm.yaml", "--packager", "deb", "--target", "opmond.deb")
	cmd.Dir = stage
	cmd.Env = append(os.Environ(), "VERSION=1.2.3", "ARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nfpm: %v\n%s", err, out)
	}
	deb := filepath.Join(stage, "opmond.deb")
	fields, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Output()
	if err != nil || string(fields) != "Package: opmond\nVersion: 1.2.3\nArchitecture: amd64\n" {
		t.Errorf("control fields %q %v", fields, err)
	}
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // path → permission string
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 6 {
			got["/"+strings.TrimSuffix(strings.TrimPrefix(f[5], "./"), "/")] = f[0]
		}
	}
	for _, e := range layout {
		want := fmt.Sprintf("%v", e.mode|map[bool]os.FileMode{true: os.ModeDir}[e.dir])
		if p, ok := got[e.path]; !ok || p != want {
			t.Errorf("%s: %q in the package, want %q", e.path, p, want)
		}
	}
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/opmond/opmond.toml" {
		t.Errorf("conffiles %q", b)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(ctl, s)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v %s", s, err, out)
		}
	}
}
