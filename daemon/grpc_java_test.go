package daemon

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opmond/opmond/daemon/grpcserver/grpctest"
)

// TestGRPCJavaPeer: the JDK's TLS stack, configured as X-Road's Java side
// uses the internal key store (key store and trust store in one, host-name
// check against localhost, ALPN h2), completes the handshake with opmond and
// gets its HTTP/2 settings; with another store's certificate it is refused.
func TestGRPCJavaPeer(t *testing.T) {
	for _, tool := range []string{"java", "javac", "keytool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the JDK TLS interoperability check needs a JDK", tool)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command("javac", "-d", dir, "testdata/java/H2Handshake.java").CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	ks := grpctest.Make(t, dir, "grpc", "java-peer-pw", true)
	// Another key pair in a store that also trusts opmond's certificate, so
	// that a refusal can only come from opmond.
	other := grpctest.Make(t, dir, "other", "other-pw", false)
	serverCert := filepath.Join(dir, "server.der")
	if err := os.WriteFile(serverCert, ks.Cert.Leaf.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("keytool", "-importcert", "-noprompt", "-alias", "opmond", "-file", serverCert,
		"-keystore", other.Keystore, "-storetype", "PKCS12", "-storepass", other.Password).CombinedOutput(); err != nil {
		t.Fatalf("keytool -importcert: %v\n%s", err, out)
	}
	td := startGRPCDaemon(t, &ks)
	port := strconv.Itoa(td.GRPCAddr().(*net.TCPAddr).Port)
	run := func(s grpctest.Store) (string, error) {
		out, err := exec.Command("java", "-cp", dir, "H2Handshake", port, s.Keystore, s.Password).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run(ks)
	if err != nil || !strings.HasPrefix(out, "ok TLSv1.") || !strings.HasSuffix(out, " h2") {
		t.Fatalf("the store's own certificate: %v\n%s", err, out)
	}
	t.Log(out)
	// The JDK sees opmond's alert or, when the connection is already gone,
	// a broken pipe; opmond's log says which check refused it.
	if out, err := run(other); err == nil {
		t.Errorf("another certificate accepted: %s", out)
	}
	if !strings.Contains(td.logs.String(), "is not the internal key store's") {
		t.Error("opmond did not log refusing the other certificate")
	}
}
