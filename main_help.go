package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/opmond/opmond/daemon"
)

// command is one subcommand: what `opmond help` lists and what
// `opmond NAME --help` explains. A new subcommand is one entry here and a
// function of its own; its flags come from the FlagSet it parses, so the
// help cannot drift from the code.
type command struct {
	name     string
	summary  string // one line for `opmond help`
	synopsis string // arguments after "opmond NAME"
	about    string // a paragraph for --help; optional
	example  string // one or more lines of shell
	run      func(args []string, stdout, stderr io.Writer) error
}

// commands is filled in init: the help command refers to the table.
var commands []command

func init() {
	commands = []command{
		{name: "serve", summary: "run the daemon in the foreground (the default command)",
			synopsis: "[--config FILE]",
			about: "SIGINT or SIGTERM stop it cleanly (exit 0); SIGHUP re-reads the TLS key pair, the pinned\n" +
				"client certificates and [log] level. Logs go to stderr in the configured format.",
			example: "opmond serve --config /etc/opmond/opmond.toml",
			run:     func(args []string, _, stderr io.Writer) error { return serve(args, stderr) }},
		{name: "check-config", summary: "validate the configuration and print the effective values as TOML",
			synopsis: "[--config FILE]",
			about: "Loads the files the configuration names (anchor, TLS material, a static global\n" +
				"configuration directory) as serve would, and refuses what serve would report as invalid.\n" +
				"Warnings go to stderr; an error is one line naming the key, exit 1.",
			example: "opmond check-config --config /etc/opmond/opmond.toml >/dev/null && echo ok",
			run:     checkConfig},
		{name: "gencert", summary: "write a key pair and self-signed certificate for https",
			synopsis: "--dir DIR [--cn NAME] [--days N] [--san HOST,...] [--force]",
			about:    "Writes DIR/opmonitor.key (mode 0600) and DIR/opmonitor.crt; existing files are kept unless --force.",
			example:  "opmond gencert --dir /etc/opmond/ssl --cn opmon.example.org --san opmon.example.org,10.0.0.5",
			run:      gencert},
		{name: "query", summary: "query operational or health data through the SOAP interface",
			synopsis: "[--config FILE] [--url URL] --from TIME --to TIME [--client ID] [--fields a,b] [--as ID] [--server ID]\n" +
				"       opmond query --health [--config FILE] [--url URL] [--client ID] [--as ID] [--server ID]",
			about: "Follows nextRecordsFrom and prints one JSON record per line. The newest\n" +
				"records-available-timestamp-offset-seconds are not available yet: when the window is\n" +
				"clipped there, a notice on stderr says from when the rest will be.",
			example: "opmond query --as DEV/COM/1234/Portal --from 2026-12-01T00:00:00Z --to \"$(date +%s)\"\n" +
				"opmond query --health --as DEV/COM/1234/Portal",
			run: query},
		{name: "backup", summary: "write a consistent snapshot of the running daemon's database",
			synopsis: "[--config FILE] --out FILE",
			about:    "Asks the daemon's admin listener for the snapshot; the daemon keeps serving.",
			example:  "opmond backup --config /etc/opmond/opmond.toml --out /var/backups/opmond-$(date +%F).db",
			run:      backup},
		{name: "import", summary: "send records from JSON Lines files to the running daemon",
			synopsis: "[--config FILE] FILE...",
			about: "One record per line, as opmond query prints them (monitoringDataTs kept); - reads stdin.\n" +
				"Prints \"stored N, rejected M\"; each rejected line goes to stderr as FILE:LINE: reason (exit 1).",
			example: "opmond import --config /etc/opmond/opmond.toml export-*.jsonl",
			run: func(args []string, stdout, stderr io.Writer) error {
				return importFiles(args, os.Stdin, stdout, stderr)
			}},
		{name: "compact", summary: "offline: rewrite the database to its live size",
			synopsis: "--config FILE [--out FILE]",
			about:    "The daemon must be stopped. Without --out the file is replaced atomically.",
			example:  "opmond compact --config /etc/opmond/opmond.toml   # after: systemctl stop opmond",
			run:      compact},
		{name: "bench", summary: "drive a running daemon with realistic load and report throughput and latency",
			synopsis: "--url URL [--records N | --duration D] [--conc N] [--batch N] [--query-every D] [--as ID]\n" +
				"       [--admin URL] [--cert F --key F] [--json]",
			example: "opmond bench --url http://127.0.0.1:2080 --records 200000 --admin http://127.0.0.1:2082",
			run:     benchCmd},
		{name: "version", summary: "print the version, commit and Go version",
			example: "opmond version",
			run:     printVersion},
		{name: "help", summary: "list the commands, or explain one",
			synopsis: "[COMMAND]",
			example:  "opmond help query",
			run:      help},
	}
}

func lookupCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

// unknownCommand names the mistake and, when a command is close, suggests it.
func unknownCommand(name string) string {
	msg := fmt.Sprintf("unknown command %q", name)
	for _, c := range commands {
		if strings.HasPrefix(c.name, name) || editDistance(c.name, name) <= 2 {
			return msg + fmt.Sprintf(" (did you mean %q?)", c.name)
		}
	}
	return msg
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// helpRequest is -h or --help on a command; run prints the command's help
// with the flags of fs to stdout.
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string { return "help requested" }

func help(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("help", stderr)
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		writeOverview(stdout)
		return nil
	case 1:
		c := lookupCommand(fs.Arg(0))
		if c == nil {
			return usageError{unknownCommand(fs.Arg(0))}
		}
		if c.name == "help" || c.name == "version" {
			writeCommandHelp(stdout, c, flag.NewFlagSet(c.name, flag.ContinueOnError))
			return nil
		}
		// The command's own flag set is the source of its help.
		return c.run([]string{"--help"}, stdout, stderr)
	}
	return usageError{"help: give at most one command"}
}

func writeOverview(w io.Writer) {
	fmt.Fprint(w, "opmond: X-Road operational monitoring daemon\n\nusage: opmond COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nWithout a command, opmond serves. 'opmond COMMAND --help' explains a command's flags.\n"+
		"Exit codes: 0 success, 1 runtime or configuration error, 2 usage error.\n")
}

func writeCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "opmond %s: %s\n\nusage: opmond %s %s\n", c.name, c.summary, c.name, c.synopsis)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprint(w, "\nflags:\n")
			first = false
		}
		arg, usage := flag.UnquoteUsage(f)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			arg = ""
		}
		fmt.Fprintf(w, "  --%s", f.Name)
		if arg != "" {
			fmt.Fprintf(w, " %s", arg)
		}
		fmt.Fprintf(w, "\n        %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	if c.example != "" {
		fmt.Fprint(w, "\nexample:\n")
		for _, line := range strings.Split(c.example, "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

func printVersion(args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("version", stderr), args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "opmond %s (commit %s, %s)\n", version, daemon.Commit, runtime.Version())
	return nil
}

// timestamp is a flag value in Unix seconds, given as Unix seconds or as
// RFC 3339.
type timestamp int64

func (t *timestamp) String() string { return strconv.FormatInt(int64(*t), 10) }

func (t *timestamp) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*t = timestamp(n)
		return nil
	}
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("want Unix seconds (1764576000) or RFC 3339 (2025-12-01T08:00:00Z)")
	}
	*t = timestamp(tm.Unix())
	return nil
}
