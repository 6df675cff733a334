// Command opmond is an X-Road operational monitoring daemon: one static binary
// with an embedded database. See README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/daemon/client"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/tlsconf"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// Exit codes (interface.md).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// The Go runtime's soft memory limit and garbage collection target for
// serve. At 60% the heap grows to 1.6 times what is live instead of twice:
// in opmonbench the peak RSS went from 48–49 to 43–44 MiB at the same store
// rate.
const (
	defaultMemoryLimit = 32 << 20
	defaultGCPercent   = 60
)

// usageError is a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	daemon.Version, daemon.Commit = version, buildCommit()
	name := "serve"
	switch {
	case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
		name, args = args[0], args[1:]
	case len(args) > 0 && isHelpFlag(args[0]):
		name, args = "help", args[1:]
	case len(args) > 0 && (args[0] == "--version" || args[0] == "-version"):
		name, args = "version", args[1:]
	}
	var err error
	c := lookupCommand(name)
	if c == nil {
		err = usageError{unknownCommand(name)}
	} else {
		err = c.run(args, stdout, stderr)
	}
	var ue usageError
	var hr helpRequest
	var rep reportedError
	var cue client.UsageError
	if errors.As(err, &cue) {
		err = usageError{cue.Msg}
	}
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &hr):
		// The command that parsed: `opmond help NAME` runs NAME --help.
		if hc := lookupCommand(strings.TrimPrefix(hr.fs.Name(), "opmond ")); hc != nil {
			c = hc
		}
		writeCommandHelp(stdout, c, hr.fs)
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &rep), errors.As(err, new(client.ExitError)):
		return exitError
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "opmond: %s\n", ue.msg)
		switch {
		case c == nil:
			fmt.Fprintln(stderr, "run 'opmond help' for the list of commands")
		case name != "query":
			fmt.Fprintf(stderr, "run 'opmond %s --help' for usage\n", name)
		}
		return exitUsage
	default:
		fmt.Fprintf(stderr, "opmond: %s\n", oneLine(err.Error()))
		return exitError
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
	}
	return "unknown"
}

// reportedError is an error already written to the log; run only sets the
// exit code.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }

func newFlags(name string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("opmond "+name, flag.ContinueOnError)
	// parseFlags reports errors and run prints help; the flag package's own
	// output would say the same thing twice.
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags turns flag errors into usage errors and refuses stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", strings.TrimPrefix(fs.Name(), "opmond "), fs.Arg(0))}
	}
	return nil
}

// parseFlagsArgs is parseFlags for commands that take arguments after the flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{fs}
		}
		return usageError{strings.TrimPrefix(fs.Name(), "opmond ") + ": " + err.Error()}
	}
	return nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration `FILE` (default ./opmond.toml if present, else built-in defaults)")
}

// loadConfigFlags parses a command that takes only --config and loads it.
func loadConfigFlags(name string, args []string, stderr io.Writer) (*daemon.Config, error) {
	return newConfigCommand(name, stderr, false).load(args, nil)
}

// configCommand is a command that loads the configuration: its flag set has
// --config, and the command adds its own flags before load.
type configCommand struct {
	fs   *flag.FlagSet
	path *string
	args bool // arguments may follow the flags (fs.Args())
}

func newConfigCommand(name string, stderr io.Writer, args bool) configCommand {
	fs := newFlags(name, stderr)
	return configCommand{fs: fs, path: configFlag(fs), args: args}
}

// load parses args, runs check (when not nil) on the parsed flags, so that a
// usage error comes before a configuration error, and loads the configuration.
func (c configCommand) load(args []string, check func() error) (*daemon.Config, error) {
	parse := parseFlags
	if c.args {
		parse = parseFlagsArgs
	}
	if err := parse(c.fs, args); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return daemon.LoadConfig(*c.path)
}

func serve(args []string, stderr io.Writer) error {
	cfg, err := loadConfigFlags("serve", args, stderr)
	if err != nil {
		return err
	}
	// Small hosts are the point: collect garbage before the heap doubles.
	// GOMEMLIMIT and GOGC in the environment override these.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A buffer of one merges repeated SIGHUPs into one reload.
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	if err := daemon.Run(ctx, cfg, reload); err != nil {
		// In the configured log format, so that a service manager's
		// journal holds the failure like any other event.
		if log, lerr := daemon.NewLogger(cfg.Log, stderr); lerr == nil {
			log.Error().Err(err).Msg("opmond exits with an error")
			return reportedError{err}
		}
		return err
	}
	return nil
}

func checkConfig(args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfigFlags("check-config", args, stderr)
	if err != nil {
		return err
	}
	warnings, err := cfg.Check(time.Now())
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "opmond: warning: %s\n", w)
	}
	var buf bytes.Buffer
	if err := cfg.WriteTOML(&buf); err != nil {
		return err
	}
	_, err = stdout.Write(buf.Bytes())
	return err
}

func gencert(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gencert", stderr)
	dir := fs.String("dir", "", "output `DIR` for opmonitor.key and opmonitor.crt (required; created if missing)")
	cn := fs.String("cn", "", "certificate common `NAME` (default: this host's name)")
	days := fs.Int("days", 7300, "validity in `DAYS`")
	san := fs.String("san", "", "subject alternative names: comma-separated host names or IP addresses (`HOST,...`)")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{"gencert: --dir is required (for example --dir /etc/opmond/ssl)"}
	}
	if *days < 1 {
		return usageError{"gencert: --days must be at least 1"}
	}
	var sans []string
	for _, s := range strings.Split(*san, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sans = append(sans, s)
		}
	}
	certPath, keyPath, err := tlsconf.Generate(tlsconf.GenOptions{Dir: *dir, CN: *cn, Days: *days, SANs: sans, Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nwrote %s\n", keyPath, certPath)
	return nil
}

func query(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("query", stderr)
	cfgPath := configFlag(fs)
	url := fs.String("url", "", "daemon base `URL`, e.g. http://127.0.0.1:2080 (default: from the configuration's scheme, host and port)")
	var from, to timestamp
	fs.Var(&from, "from", "recordsFrom: `TIME` as Unix seconds or RFC 3339 (2026-12-01T08:00:00Z); required without --health")
	fs.Var(&to, "to", "recordsTo: `TIME` as Unix seconds or RFC 3339; required without --health")
	provider := fs.String("client", "", "service provider filter `ID` (INSTANCE/CLASS/CODE[/SUBSYSTEM]); with --health the filterCriteria client")
	fields := fs.String("fields", "", "output `FIELDS`, comma-separated (default: all)")
	as := fs.String("as", "", "querying client `ID` in the SOAP header (default: the central monitoring client of the global configuration)")
	server := fs.String("server", "", "securityServer header `ID` INSTANCE/CLASS/CODE/SERVERCODE (default: [op-monitor] security-server)")
	health := fs.Bool("health", false, "query health data (getSecurityServerHealthData) instead of operational data")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := client.QueryOptions{ConfigFile: *cfgPath, URL: *url, Notice: stderr}
	opts.Health = *health
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !*health {
		if !set["from"] || !set["to"] {
			return usageError{"query: --from and --to are required, e.g. --from 0 --to \"$(date +%s)\""}
		}
		opts.From, opts.To = int64(from), int64(to)
	} else if set["from"] || set["to"] || set["fields"] {
		return usageError{"query: --from, --to and --fields do not go with --health"}
	}
	var err error
	if *provider != "" {
		id, err := schema.ParseClientID(*provider)
		if err != nil {
			return usageError{"query: --client: " + err.Error()}
		}
		opts.Client = &id
	}
	if *as != "" {
		id, err := schema.ParseClientID(*as)
		if err != nil {
			return usageError{"query: --as: " + err.Error()}
		}
		opts.As = &id
	}
	if *server != "" {
		id, err := schema.ParseServerID(*server)
		if err != nil {
			return usageError{"query: --server: " + err.Error()}
		}
		opts.Server = &id
	}
	if *fields != "" {
		for _, f := range strings.Split(*fields, ",") {
			if f = strings.TrimSpace(f); f != "" {
				opts.Fields = append(opts.Fields, f)
			}
		}
	}
	err = client.RunQuery(context.Background(), opts, stdout)
	var ue client.UsageError
	if errors.As(err, &ue) {
		return usageError{"query: " + ue.Error()}
	}
	return err
}
