package main

import (
	"errors"
	"flag"
	"io"

	"github.com/opmond/opmond/daemon"
	"github.com/opmond/opmond/daemon/client"
)

// backup is `opmond backup [--config FILE] --out FILE`.
func backup(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backup", stderr)
	cfgPath := configFlag(fs)
	out := fs.String("out", "", "file to write the backup to (required)")
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
	// Files are arguments, so parseFlags (which refuses them) does not fit.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	cfg, err := daemon.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	return client.Import(cfg, fs.Args(), stdin, stdout, stderr)
}
