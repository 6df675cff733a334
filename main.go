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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

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

// defaultMemoryLimit is the Go runtime's soft memory limit for serve.
const defaultMemoryLimit = 32 << 20

// usageError is a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	daemon.Version, daemon.Commit = version, buildCommit()
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		cmd, args = "version", args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stderr)
	case "check-config":
		err = checkConfig(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "opmond %s (commit %s, %s)\n", version, daemon.Commit, runtime.Version())
	case "gencert":
		err = gencert(args, stdout, stderr)
	case "query":
		err = query(args, stdout, stderr)
	case "bench":
		return client.Bench(args, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "opmond: %s\n", ue.msg)
		if cmd != "query" {
			fmt.Fprintln(stderr, "run 'opmond help' for usage")
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

func usage(w io.Writer) {
	fmt.Fprint(w, `opmond: X-Road operational monitoring daemon

usage:
  opmond [serve] [--config FILE]      run the daemon (SIGINT/SIGTERM stop, SIGHUP reloads)
  opmond check-config [--config FILE] validate and print the effective configuration
  opmond gencert --dir DIR [--cn NAME] [--days N] [--san HOST,...] [--force]
  opmond query [--config FILE] [--url URL] --from S --to S [--client ID] [--fields a,b] [--as ID] [--server ID]
  opmond query --health [--config FILE] [--url URL] [--client ID] [--as ID] [--server ID]
  opmond version
`)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("opmond "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags turns flag errors into usage errors and refuses stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration file (default ./opmond.toml if present)")
}

// loadConfigFlags parses a command that takes only --config and loads it.
func loadConfigFlags(name string, args []string, stderr io.Writer) (*daemon.Config, error) {
	fs := newFlags(name, stderr)
	path := configFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return daemon.LoadConfig(*path)
}

func serve(args []string, stderr io.Writer) error {
	cfg, err := loadConfigFlags("serve", args, stderr)
	if err != nil {
		return err
	}
	// Small hosts are the point: collect garbage before the heap doubles.
	// GOMEMLIMIT in the environment overrides this soft limit.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
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
	return daemon.Run(ctx, cfg, reload)
}

func checkConfig(args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfigFlags("check-config", args, stderr)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return err
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
	dir := fs.String("dir", "", "output folder (required)")
	cn := fs.String("cn", "", "certificate common name (default: this host's name)")
	days := fs.Int("days", 7300, "validity in days")
	san := fs.String("san", "", "subject alternative names, comma-separated host names or IP addresses")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{"gencert: --dir is required"}
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
	url := fs.String("url", "", "daemon base URL (default from the configuration)")
	from := fs.Int64("from", -1, "recordsFrom, Unix seconds")
	to := fs.Int64("to", -1, "recordsTo, Unix seconds")
	client := fs.String("client", "", "service provider filter (INSTANCE/CLASS/CODE[/SUBSYSTEM])")
	fields := fs.String("fields", "", "output fields, comma-separated")
	as := fs.String("as", "", "querying client (default: the central monitoring client)")
	server := fs.String("server", "", "securityServer header INSTANCE/CLASS/CODE/SERVERCODE")
	health := fs.Bool("health", false, "query health data instead of operational data")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := daemon.QueryOptions{ConfigFile: *cfgPath, URL: *url, Health: *health}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !*health {
		if !set["from"] || !set["to"] {
			return usageError{"query: --from and --to are required"}
		}
		opts.From, opts.To = *from, *to
	} else if set["from"] || set["to"] || set["fields"] {
		return usageError{"query: --from, --to and --fields do not go with --health"}
	}
	var err error
	if *client != "" {
		id, err := schema.ParseClientID(*client)
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
	err = daemon.RunQuery(context.Background(), opts, stdout)
	var ue daemon.UsageError
	if errors.As(err, &ue) {
		return usageError{"query: " + ue.Error()}
	}
	return err
}
