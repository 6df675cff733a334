package main

import (
	"fmt"
	"io"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/storage"
)

// compact rewrites the configured database to its live size, offline.
func compact(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("compact", stderr)
	cfgPath := configFlag(fs)
	out := fs.String("out", "", "write the compacted copy to `FILE` instead of replacing the database")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := daemon.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	before, after, err := storage.Compact(cfg.OpMonitor.Database, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %d bytes to %d bytes\n", before, after)
	return nil
}
