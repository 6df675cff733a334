package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "opmond.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaultsAndPaths(t *testing.T) {
	p := writeConfig(t, `
[op-monitor]
database = "db/x.db"
client-tls-certificate = "certs/ss.crt"
tls-key = "/abs/key.pem"
[global-conf]
directory = "gc"
`)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	o := cfg.OpMonitor
	checks := map[string]bool{
		"database resolved":      o.Database == filepath.Join(dir, "db/x.db"),
		"client cert as list":    len(o.ClientTLSCertificate) == 1 && o.ClientTLSCertificate[0] == filepath.Join(dir, "certs/ss.crt"),
		"absolute path kept":     o.TLSKey == "/abs/key.pem",
		"tls cert default":       o.TLSCertificate == filepath.Join(dir, "ssl/opmonitor.crt"),
		"globalconf resolved":    cfg.GlobalConf.Directory == filepath.Join(dir, "gc"),
		"port default":           o.Port == 2080 && o.Host == "localhost" && o.Scheme == "http",
		"upstream defaults":      o.KeepRecordsForDays == 7 && o.MaxRecordsInPayload == 10000 && o.RecordsAvailableOffset == 60 && o.HealthStatisticsPeriod == 600,
		"clean-interval default": o.CleanInterval == "0 0 0/12 1/1 * ? *" && cfg.CleanSchedule() != nil,
		"admin default":          cfg.Admin.Listen == "127.0.0.1:2082" && cfg.Admin.MaxServiceSeries == 1000,
		"file recorded":          cfg.File == p,
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s: %+v", name, cfg)
		}
	}
	// The printed effective configuration parses back to the same values.
	var buf bytes.Buffer
	if err := cfg.WriteTOML(&buf); err != nil {
		t.Fatal(err)
	}
	back := Default()
	if _, err := toml.Decode(buf.String(), back); err != nil {
		t.Fatalf("printed configuration does not parse: %v\n%s", err, buf.String())
	}
	if back.OpMonitor.Database != o.Database || len(back.OpMonitor.ClientTLSCertificate) != 1 {
		t.Errorf("round trip: %+v", back.OpMonitor)
	}
}

func TestConfigList(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "[op-monitor]\nclient-tls-certificate = [\"a.crt\", \"/b.crt\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.OpMonitor.ClientTLSCertificate; len(l) != 2 || !filepath.IsAbs(l[0]) || l[1] != "/b.crt" {
		t.Errorf("list %v", l)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string // substrings of the one-line error
	}{
		{"misspelt key", "[op-monitor]\nprot = 2080\n", []string{"unknown key op-monitor.prot"}},
		{"unknown section", "[opmonitor]\nport = 2080\n", []string{"unknown key opmonitor"}},
		{"wrong type", "[op-monitor]\nport = \"x\"\n", []string{"op-monitor.port", `"x"`}},
		{"float for int", "[op-monitor]\nkeep-records-for-days = 1.5\n", []string{"op-monitor.keep-records-for-days", "1.5"}},
		{"port range", "[op-monitor]\nport = 70000\n", []string{"op-monitor.port = 70000"}},
		{"scheme", "[op-monitor]\nscheme = \"ftp\"\n", []string{`op-monitor.scheme = "ftp"`}},
		{"keep days", "[op-monitor]\nkeep-records-for-days = 0\n", []string{"op-monitor.keep-records-for-days = 0"}},
		{"max records", "[op-monitor]\nmax-records-in-payload = 0\n", []string{"op-monitor.max-records-in-payload = 0"}},
		{"offset negative", "[op-monitor]\nrecords-available-timestamp-offset-seconds = -1\n", []string{"records-available-timestamp-offset-seconds = -1"}},
		{"health period", "[op-monitor]\nhealth-statistics-period-seconds = 0\n", []string{"health-statistics-period-seconds = 0"}},
		{"max bytes", "[op-monitor]\nmax-request-bytes = 1023\n", []string{"max-request-bytes = 1023"}},
		{"cron bad", "[op-monitor]\nclean-interval = \"0 0 25 * * ?\"\n", []string{"op-monitor.clean-interval", "25"}},
		{"cron both days", "[op-monitor]\nclean-interval = \"0 0 0 1 * MON\"\n", []string{"op-monitor.clean-interval"}},
		{"duration negative", "[op-monitor]\nclean-interval = \"-5m\"\n", []string{"op-monitor.clean-interval"}},
		{"garbage interval", "[op-monitor]\nclean-interval = \"soon\"\n", []string{"op-monitor.clean-interval", `"soon"`}},
		{"security server", "[op-monitor]\nsecurity-server = \"EE/GOV\"\n", []string{`op-monitor.security-server = "EE/GOV"`}},
		{"client cert type", "[op-monitor]\nclient-tls-certificate = 5\n", []string{"client-tls-certificate"}},
		{"download interval", "[global-conf]\ndownload-interval-seconds = 0\n", []string{"global-conf.download-interval-seconds = 0"}},
		{"ignore expiry with anchor", "[global-conf]\nanchor = \"a.xml\"\nignore-expiry = true\n", []string{"global-conf.ignore-expiry"}},
		{"admin listen", "[admin]\nlisten = \"nope\"\n", []string{`admin.listen = "nope"`}},
		{"series", "[admin]\nmax-service-series = 0\n", []string{"admin.max-service-series = 0"}},
		{"log level", "[log]\nlevel = \"loud\"\n", []string{`log.level = "loud"`}},
		{"log format", "[log]\nformat = \"xml\"\n", []string{`log.format = "xml"`}},
		{"syntax", "[op-monitor\n", []string{"line"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.content))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestConfigSmallValuesAccepted(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, `[op-monitor]
clean-interval = "1s"
health-statistics-period-seconds = 1
records-available-timestamp-offset-seconds = 0
max-records-in-payload = 1
max-request-bytes = 1024
[global-conf]
download-interval-seconds = 1
[admin]
listen = ""
`))
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchedule(t *testing.T) {
	loc := time.Local
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		expr, from, want string
	}{
		{"0 0 0/12 1/1 * ? *", "2026-03-10 05:30:00", "2026-03-10 12:00:00"},
		{"0 0 0/12 1/1 * ? *", "2026-03-10 12:00:00", "2026-03-11 00:00:00"},
		{"0 0 0/12 1/1 * ? *", "2026-12-31 23:59:59", "2027-01-01 00:00:00"},
		{"0 */15 * * * ?", "2026-03-10 05:31:00", "2026-03-10 05:45:00"},
		{"30 5 3 ? * MON-FRI", "2026-03-07 00:00:00", "2026-03-09 03:05:30"}, // Saturday → Monday
		{"0 0 1 1 JAN ? 2027", "2026-03-10 00:00:00", "2027-01-01 01:00:00"},
		{"0 0 12 15 * ?", "2026-03-15 12:00:00", "2026-04-15 12:00:00"},
		{"0 0 0 29 2 ?", "2026-03-01 00:00:00", "2028-02-29 00:00:00"},
		{"0 0 0 ? * 1", "2026-03-10 00:00:00", "2026-03-15 00:00:00"}, // 1 = Sunday in Quartz
	}
	for _, tc := range tests {
		s, err := ParseSchedule(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if got := s.Next(at(tc.from)); !got.Equal(at(tc.want)) {
			t.Errorf("%s after %s = %s, want %s", tc.expr, tc.from, got, tc.want)
		}
	}
	d, err := ParseSchedule("90m")
	if err != nil || !d.Next(at("2026-03-10 00:00:00")).Equal(at("2026-03-10 01:30:00")) {
		t.Errorf("duration schedule: %v", err)
	}
	if s, err := ParseSchedule("0 0 0 31 2 ?"); err != nil || !s.Next(time.Now()).IsZero() {
		t.Errorf("impossible date: %v", err)
	}
	for _, bad := range []string{"", "0 0 0 * *", "0 0 0 L * ?", "0 0 0 1W * ?", "0 0 0 ? * MON#2", "0 60 * * * ?", "0 0 0 ? * ?", "x y z a b c", "1 2 3 4 5 6 7 8"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
