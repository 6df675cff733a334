package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"

	"github.com/opmond/opmond/anchor"
	"github.com/opmond/opmond/daemon/grpcserver"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/tlsconf"
)

// DefaultConfigFile is read when no --config is given and it exists.
const DefaultConfigFile = "opmond.toml"

// Config is the daemon configuration (interface.md, "The configuration file").
// Key names in [op-monitor] are upstream X-Road's system parameter names.
type Config struct {
	OpMonitor  OpMonitorConfig  `toml:"op-monitor"`
	GlobalConf GlobalConfConfig `toml:"global-conf"`
	Admin      AdminConfig      `toml:"admin"`
	GRPC       GRPCConfig       `toml:"grpc"`
	Log        LogConfig        `toml:"log"`

	// File is the configuration file read ("" when running on defaults).
	File string `toml:"-"`
}

// OpMonitorConfig is the [op-monitor] section.
type OpMonitorConfig struct {
	Host                   string     `toml:"host"`
	Port                   int        `toml:"port"`
	Scheme                 string     `toml:"scheme"`
	Database               string     `toml:"database"`
	KeepRecordsForDays     int        `toml:"keep-records-for-days"`
	CleanInterval          string     `toml:"clean-interval"`
	MaxRecordsInPayload    int        `toml:"max-records-in-payload"`
	RecordsAvailableOffset int        `toml:"records-available-timestamp-offset-seconds"`
	HealthStatisticsPeriod int        `toml:"health-statistics-period-seconds"`
	TLSCertificate         string     `toml:"tls-certificate"`
	TLSKey                 string     `toml:"tls-key"`
	ClientTLSCertificate   StringList `toml:"client-tls-certificate"`
	MaxRequestBytes        int64      `toml:"max-request-bytes"`
	MaxInflightBytes       int64      `toml:"max-inflight-request-bytes"`
	MaxConnections         int        `toml:"max-connections"`
	SecurityServer         string     `toml:"security-server"`
	securityServerID       *schema.ServerID
	cleanSchedule          Schedule
}

// GlobalConfConfig is the [global-conf] section.
type GlobalConfConfig struct {
	Anchor                  string `toml:"anchor"`
	Directory               string `toml:"directory"`
	DownloadIntervalSeconds int    `toml:"download-interval-seconds"`
	IgnoreExpiry            bool   `toml:"ignore-expiry"`
}

// AdminConfig is the [admin] section.
type AdminConfig struct {
	Listen           string `toml:"listen"`
	MaxServiceSeries int    `toml:"max-service-series"`
	// Pprof serves net/http/pprof under /debug/pprof/ (off by default: it
	// exposes internals and costs CPU while a profile runs).
	Pprof bool `toml:"pprof"`
}

// GRPCConfig is the [grpc] section: OpMonitorService for the security
// server UI's traffic graph (X-Road 7.7+).
type GRPCConfig struct {
	Listen       string `toml:"listen"`
	TLS          string `toml:"tls"`
	Keystore     string `toml:"keystore"`
	PasswordFile string `toml:"password-file"`
}

// LogConfig is the [log] section.
type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// StringList accepts a TOML string or an array of strings.
type StringList []string

// UnmarshalTOML implements toml.Unmarshaler.
func (l *StringList) UnmarshalTOML(v any) error {
	switch t := v.(type) {
	case string:
		*l = StringList{t}
	case []any:
		out := make(StringList, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("expected a string or a list of strings, got an element of type %T", e)
			}
			out = append(out, s)
		}
		*l = out
	default:
		return fmt.Errorf("expected a string or a list of strings, got %T", v)
	}
	return nil
}

// Default returns the configuration with upstream X-Road's defaults.
func Default() *Config {
	return &Config{
		OpMonitor: OpMonitorConfig{
			Host:                   "localhost",
			Port:                   2080,
			Scheme:                 "http",
			Database:               "data/opmonitor.db",
			KeepRecordsForDays:     7,
			CleanInterval:          "0 0 0/12 1/1 * ? *",
			MaxRecordsInPayload:    10000,
			RecordsAvailableOffset: 60,
			HealthStatisticsPeriod: 600,
			TLSCertificate:         "ssl/opmonitor.crt",
			TLSKey:                 "ssl/opmonitor.key",
			ClientTLSCertificate:   StringList{"/etc/xroad/ssl/internal.crt"},
			MaxRequestBytes:        50 << 20,
			MaxInflightBytes:       100 << 20,
			MaxConnections:         1024,
		},
		GlobalConf: GlobalConfConfig{
			Directory:               "globalconf",
			DownloadIntervalSeconds: 60,
		},
		Admin: AdminConfig{Listen: "127.0.0.1:2082", MaxServiceSeries: 1000},
		GRPC: GRPCConfig{
			TLS:          "internal",
			Keystore:     "/var/run/xroad/xroad-grpc-internal-keystore.p12",
			PasswordFile: "/var/run/xroad/xroad-grpc-internal-env.properties",
		},
		Log: LogConfig{Level: "info", Format: "json"},
	}
}

// LoadConfig reads the configuration. path "" means ./opmond.toml if it
// exists, else the built-in defaults with paths relative to the working
// directory. Every error is one line naming the key and the value.
func LoadConfig(path string) (*Config, error) {
	cfg := Default()
	base, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if path == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			path = DefaultConfigFile
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("configuration path %s: %w", path, err)
		}
		cfg.File = abs
		base = filepath.Dir(abs)
		if err := decodeConfig(data, cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	cfg.resolvePaths(base)
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return cfg, nil
}

func decodeConfig(data []byte, cfg *Config) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			// ParseError's own text is one line; its ErrorWithPosition is not.
			msg := perr.Message
			if perr.LastKey != "" {
				msg = fmt.Sprintf("key %s: %s", perr.LastKey, msg)
			}
			return fmt.Errorf("line %d: %s", perr.Position.Line, oneLine(msg))
		}
		return typeError(data, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return nil
}

var lastKeyRe = regexp.MustCompile(`last key "([^"]+)"\): (.*)$`)

// typeError rewrites the TOML decoder's type errors as "key = value: why".
func typeError(data []byte, err error) error {
	msg := oneLine(err.Error())
	m := lastKeyRe.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(strings.TrimPrefix(msg, "toml: "))
	}
	var generic map[string]any
	if _, gerr := toml.Decode(string(data), &generic); gerr == nil {
		var v any = generic
		for _, part := range strings.Split(m[1], ".") {
			if mv, ok := v.(map[string]any); ok {
				v = mv[part]
			}
		}
		if _, isMap := v.(map[string]any); !isMap && v != nil {
			return keyError(m[1], v, "wrong type: "+m[2])
		}
	}
	return fmt.Errorf("%s: %s", m[1], m[2])
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	o := &c.OpMonitor
	o.Database = abs(o.Database)
	o.TLSCertificate = abs(o.TLSCertificate)
	o.TLSKey = abs(o.TLSKey)
	for i, p := range o.ClientTLSCertificate {
		o.ClientTLSCertificate[i] = abs(p)
	}
	c.GlobalConf.Anchor = abs(c.GlobalConf.Anchor)
	c.GlobalConf.Directory = abs(c.GlobalConf.Directory)
	c.GRPC.Keystore = abs(c.GRPC.Keystore)
	c.GRPC.PasswordFile = abs(c.GRPC.PasswordFile)
}

// keyError names the key and its value in one line.
func keyError(key string, value any, why string) error {
	return fmt.Errorf("%s = %s: %s", key, tomlValue(value), why)
}

func tomlValue(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	default:
		return fmt.Sprint(t)
	}
}

// Validate checks ranges and forms; it also derives parsed values (the
// security server id and the purge schedule).
func (c *Config) Validate() error {
	o := &c.OpMonitor
	if strings.TrimSpace(o.Host) == "" {
		return keyError("op-monitor.host", o.Host, "must not be empty")
	}
	if o.Port < 1 || o.Port > 65535 {
		return keyError("op-monitor.port", o.Port, "must be between 1 and 65535")
	}
	if o.Scheme != "http" && o.Scheme != "https" {
		return keyError("op-monitor.scheme", o.Scheme, `must be "http" or "https"`)
	}
	if o.Database == "" {
		return keyError("op-monitor.database", o.Database, "must not be empty")
	}
	if o.KeepRecordsForDays < 1 {
		return keyError("op-monitor.keep-records-for-days", o.KeepRecordsForDays, "must be at least 1")
	}
	sched, err := ParseSchedule(o.CleanInterval)
	if err != nil {
		return keyError("op-monitor.clean-interval", o.CleanInterval, err.Error())
	}
	o.cleanSchedule = sched
	if o.MaxRecordsInPayload < 1 {
		return keyError("op-monitor.max-records-in-payload", o.MaxRecordsInPayload, "must be at least 1")
	}
	if o.RecordsAvailableOffset < 0 {
		return keyError("op-monitor.records-available-timestamp-offset-seconds", o.RecordsAvailableOffset, "must not be negative")
	}
	if o.HealthStatisticsPeriod < 1 {
		return keyError("op-monitor.health-statistics-period-seconds", o.HealthStatisticsPeriod, "must be at least 1")
	}
	if o.MaxRequestBytes < 1024 {
		return keyError("op-monitor.max-request-bytes", o.MaxRequestBytes, "must be at least 1024")
	}
	if o.MaxRequestBytes > 1<<31-1 {
		return keyError("op-monitor.max-request-bytes", o.MaxRequestBytes, "must be below 2 GiB")
	}
	if o.MaxInflightBytes < o.MaxRequestBytes {
		return keyError("op-monitor.max-inflight-request-bytes", o.MaxInflightBytes, "must be at least op-monitor.max-request-bytes")
	}
	if o.MaxConnections < 1 {
		return keyError("op-monitor.max-connections", o.MaxConnections, "must be at least 1")
	}
	if o.Scheme == "https" {
		if o.TLSCertificate == "" {
			return keyError("op-monitor.tls-certificate", o.TLSCertificate, "is required with scheme https")
		}
		if o.TLSKey == "" {
			return keyError("op-monitor.tls-key", o.TLSKey, "is required with scheme https")
		}
		if len(o.ClientTLSCertificate) == 0 {
			return keyError("op-monitor.client-tls-certificate", "[]", "at least one certificate is required with scheme https")
		}
		for _, p := range o.ClientTLSCertificate {
			if p == "" {
				return keyError("op-monitor.client-tls-certificate", p, "must not be empty")
			}
		}
	}
	o.securityServerID = nil
	if o.SecurityServer != "" {
		id, err := schema.ParseServerID(o.SecurityServer)
		if err != nil {
			return keyError("op-monitor.security-server", o.SecurityServer, "must be INSTANCE/CLASS/CODE/SERVERCODE")
		}
		o.securityServerID = &id
	}
	g := &c.GlobalConf
	if g.DownloadIntervalSeconds < 1 {
		return keyError("global-conf.download-interval-seconds", g.DownloadIntervalSeconds, "must be at least 1")
	}
	if g.Directory == "" {
		return keyError("global-conf.directory", g.Directory, "must not be empty")
	}
	if g.IgnoreExpiry && g.Anchor != "" {
		return keyError("global-conf.ignore-expiry", g.IgnoreExpiry, "is not allowed together with global-conf.anchor")
	}
	a := &c.Admin
	if err := validateListen("admin.listen", a.Listen); err != nil {
		return err
	}
	if a.MaxServiceSeries < 1 {
		return keyError("admin.max-service-series", a.MaxServiceSeries, "must be at least 1")
	}
	if err := validateListen("grpc.listen", c.GRPC.Listen); err != nil {
		return err
	}
	if c.GRPC.TLS != "internal" && c.GRPC.TLS != "none" {
		return keyError("grpc.tls", c.GRPC.TLS, `must be "internal" or "none"`)
	}
	if c.GRPC.Listen != "" && c.GRPC.TLS == "internal" {
		if c.GRPC.Keystore == "" {
			return keyError("grpc.keystore", c.GRPC.Keystore, `is required with grpc.tls = "internal"`)
		}
		if c.GRPC.PasswordFile == "" {
			return keyError("grpc.password-file", c.GRPC.PasswordFile, `is required with grpc.tls = "internal"`)
		}
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return keyError("log.level", c.Log.Level, "must be trace, debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		return keyError("log.format", c.Log.Format, `must be "json" or "console"`)
	}
	return nil
}

// validateListen checks a HOST:PORT listen key ("" = off).
func validateListen(key, v string) error {
	if v == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(v); err != nil {
		return keyError(key, v, "must be HOST:PORT or empty")
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return keyError(key, v, "has an invalid port")
	}
	return nil
}

func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "trace":
		return zerolog.TraceLevel, nil
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("unknown level %q", s)
}

// SecurityServerID returns the parsed [op-monitor] security-server, or nil.
func (c *Config) SecurityServerID() *schema.ServerID { return c.OpMonitor.securityServerID }

// CleanSchedule returns the parsed clean-interval.
func (c *Config) CleanSchedule() Schedule { return c.OpMonitor.cleanSchedule }

// Offset is records-available-timestamp-offset-seconds.
func (c *Config) Offset() time.Duration {
	return time.Duration(c.OpMonitor.RecordsAvailableOffset) * time.Second
}

// HealthPeriod is health-statistics-period-seconds.
func (c *Config) HealthPeriod() time.Duration {
	return time.Duration(c.OpMonitor.HealthStatisticsPeriod) * time.Second
}

// ListenAddr is host:port of the X-Road interface.
func (c *Config) ListenAddr() string {
	return net.JoinHostPort(c.OpMonitor.Host, strconv.Itoa(c.OpMonitor.Port))
}

// BaseURL is the X-Road interface's URL as a local client reaches it.
func (c *Config) BaseURL() string {
	return c.OpMonitor.Scheme + "://" + c.ListenAddr()
}

// WriteTOML prints the effective configuration (check-config).
func (c *Config) WriteTOML(w *bytes.Buffer) error {
	return toml.NewEncoder(w).Encode(c)
}

// CheckFiles loads the files the configuration names that check-config
// verifies: the anchor (if set), with https the TLS material, and the [grpc]
// key store and password file when the gRPC interface uses TLS.
func (c *Config) CheckFiles() error {
	if c.GlobalConf.Anchor != "" {
		if _, err := anchor.LoadAnchor(c.GlobalConf.Anchor); err != nil {
			return keyError("global-conf.anchor", c.GlobalConf.Anchor, err.Error())
		}
	}
	if err := c.checkTLSFiles(); err != nil {
		return err
	}
	if c.OpMonitor.Scheme == "https" {
		if _, err := tlsconf.New(tlsconf.Options{
			CertFile: c.OpMonitor.TLSCertificate, KeyFile: c.OpMonitor.TLSKey,
			ClientCertFiles: c.OpMonitor.ClientTLSCertificate, Logger: zerolog.Nop(),
		}); err != nil {
			return err
		}
	}
	if c.GRPC.Listen != "" && c.GRPC.TLS == "internal" {
		if err := grpcserver.CheckKeystore(c.GRPC.Keystore, c.GRPC.PasswordFile); err != nil {
			return err
		}
	}
	return nil
}
