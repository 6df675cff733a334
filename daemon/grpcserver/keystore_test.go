package grpcserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opmond/opmond/daemon/grpcserver/grpctest"
)

func TestKeystoreKeytoolAndGo(t *testing.T) {
	for _, keytool := range []bool{true, false} {
		s := grpctest.Make(t, t.TempDir(), "grpc", "Zm9vYmFy_-Ab=", keytool)
		m, err := loadKeystore(s.Keystore, s.PasswordFile)
		if err != nil {
			t.Fatalf("keytool=%v: %v", s.Keytool, err)
		}
		if m.leaf.Subject.CommonName != "127.0.0.1" || len(m.leaf.DNSNames) != 1 || m.leaf.DNSNames[0] != "localhost" {
			t.Errorf("keytool=%v: certificate %v %v", s.Keytool, m.leaf.Subject, m.leaf.DNSNames)
		}
		if m.cfg.MinVersion < 0x0303 {
			t.Errorf("minimum TLS version %x", m.cfg.MinVersion)
		}
	}
}

func TestKeystoreErrors(t *testing.T) {
	dir := t.TempDir()
	s := grpctest.Make(t, dir, "grpc", "right", false)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong := write("wrong.env", PasswordVar+"=\"wrong\"\n")
	none := write("none.env", "OTHER=1\n")
	open := write("open.env", PasswordVar+"=\"right\n")
	garbage := write("garbage.p12", "not a key store")
	unreadable := write("unreadable.env", PasswordVar+"=right\n")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		keystore, pwfile string
		want             []string
	}{
		{s.Keystore, wrong, []string{"grpc.keystore = ", "wrong password", wrong}},
		{s.Keystore, none, []string{"grpc.password-file = ", "has no " + PasswordVar}},
		{s.Keystore, open, []string{"grpc.password-file = ", "unterminated quote"}},
		{s.Keystore, filepath.Join(dir, "missing.env"), []string{"grpc.password-file = ", "does not exist"}},
		{filepath.Join(dir, "missing.p12"), s.PasswordFile, []string{"grpc.keystore = ", "does not exist"}},
		{garbage, s.PasswordFile, []string{"grpc.keystore = ", "not a PKCS#12 key store"}},
	}
	if os.Geteuid() != 0 { // root reads every file
		cases = append(cases, struct {
			keystore, pwfile string
			want             []string
		}{s.Keystore, unreadable, []string{"grpc.password-file = ", "cannot be read"}})
	}
	for _, c := range cases {
		err := CheckKeystore(c.keystore, c.pwfile)
		if err == nil {
			t.Errorf("%s, %s: accepted", c.keystore, c.pwfile)
			continue
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q lacks %q", msg, w)
			}
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, "right") {
			t.Errorf("%q: not one line, or shows the password", msg)
		}
	}
}

func TestReadPasswordForms(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		PasswordVar + "=\"a-b_c=\"\nXROAD_COMMON_GRPC_INTERNAL_TRUSTSTORE_PASSWORD=\"a-b_c=\"\n": "a-b_c=",
		"# comment\n\nexport " + PasswordVar + "='x\"y'\n":                                       `x"y`,
		PasswordVar + "=plain\r\n":         "plain",
		PasswordVar + " = \"q\\\"\\\\\"\n": `q"\`,
		PasswordVar + "=\n":                "",
	} {
		p := filepath.Join(dir, "env")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readPassword(p)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", content, got, err, want)
		}
	}
}
