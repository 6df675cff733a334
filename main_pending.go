package main

import (
	"fmt"
	"io"
)

// Commands of interface.md whose implementation is not part of this build.
// Each parses its documented flags, so that `--help` explains them and a
// misspelt flag is a usage error, then says it is not available. Replacing
// one is changing its entry's run in main_help.go.

func notAvailable(name string) error {
	return fmt.Errorf("%s: not available in this build", name)
}

func benchPending(args []string, _, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	fs.String("url", "", "the daemon's store/query base `URL` (required)")
	fs.Int("records", 0, "stop after `N` records (this or --duration is required)")
	fs.Duration("duration", 0, "stop after `D`, e.g. 30s")
	fs.Int("conc", 4, "concurrent store connections `N`")
	fs.Int("batch", 100, "records per store request `N`")
	fs.Duration("query-every", 0, "also send a getSecurityServerOperationalData query every `D`")
	fs.String("as", "", "querying client `ID` for the queries")
	fs.String("admin", "", "admin listener `URL`: report database size and peak RSS from /metrics")
	fs.String("cert", "", "client certificate `FILE` for an https daemon")
	fs.String("key", "", "client key `FILE` for an https daemon")
	fs.Bool("json", false, "print one JSON object on stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return notAvailable("bench")
}
