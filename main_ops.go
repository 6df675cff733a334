package main

import (
	"io"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/daemon/client"
)

// backup is `opmond backup [--config FILE] --out FILE`.
func backup(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backup", stderr)
	cfgPath := configFlag(fs)
	out := fs.String("out", "", "write the snapshot to `FILE` (required; written beside, fsync'd, then renamed into place)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"backup: --out is required"}
	}
	cfg, err := daemon.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	return client.Backup(cfg, *out, stdout)
}

// importFiles is `opmond import [--config FILE] FILE...`.
func importFiles(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("import", stderr)
	cfgPath := configFlag(fs)
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	cfg, err := daemon.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	return client.Import(cfg, fs.Args(), stdin, stdout, stderr)
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
