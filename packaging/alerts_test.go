package packaging

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAlertRules: promtool accepts docs/alerts.yml and its unit tests
// (docs/alerts_test.yml) see the alerts fire on the series they watch.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	out, err := exec.Command(promtool, "check", "rules", "../docs/alerts.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	out, err = exec.Command(promtool, "test", "rules", "../docs/alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
