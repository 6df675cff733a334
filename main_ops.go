package main

import (
	"io"

	"github.com/opmond/opmond/daemon/client"
)

// backup is `opmond backup [--config FILE] --out FILE`.
func backup(args []string, stdout, stderr io.Writer) error {
	c := newConfigCommand("backup", stderr, false)
	out := c.fs.String("out", "", "write the snapshot to `FILE` (required; written beside, fsync'd, then renamed into place)")
	cfg, err := c.load(args, func() error {
		if *out == "" {
			return usageError{"backup: --out is required"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return client.Backup(cfg, *out, stdout)
}

// importFiles is `opmond import [--config FILE] FILE...`.
func importFiles(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newConfigCommand("import", stderr, true)
	cfg, err := c.load(args, nil)
	if err != nil {
		return err
	}
	return client.Import(cfg, c.fs.Args(), stdin, stdout, stderr)
}

// benchCmd is `opmond bench`: load against a running daemon.
func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	finish := client.BenchFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o, err := finish()
	if err != nil {
		return usageError{"bench: " + err.Error()}
	}
	return client.RunBench(o, stdout, stderr)
}
