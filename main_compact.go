package main

import (
	"fmt"
	"io"

	"github.com/opmond/opmond/storage"
)

// compact rewrites the configured database to its live size, offline.
func compact(args []string, stdout, stderr io.Writer) error {
	c := newConfigCommand("compact", stderr, false)
	out := c.fs.String("out", "", "write the compacted copy to `FILE` instead of replacing the database")
	cfg, err := c.load(args, nil)
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
