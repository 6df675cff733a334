package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/opmond/opmond/daemon"
)

// Import is `opmond import FILE...`: each file ("-" is stdin) is sent as
// it is to POST /api/v1/import, which stores its good lines and reports the
// others; those go to stderr as FILE:LINE: reason and make the exit code 1.
func Import(cfg *daemon.Config, files []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(files) == 0 {
		return UsageError{"import: name at least one file (- for standard input)"}
	}
	base, err := AdminURL(cfg)
	if err != nil {
		return err
	}
	stored, rejected := 0, 0
	for _, name := range files {
		ans, err := importFile(base, name, stdin)
		if err != nil {
			fmt.Fprintf(stdout, "stored %d, rejected %d\n", stored, rejected)
			return fmt.Errorf("import %s: %w", name, err)
		}
		stored += ans.Stored
		rejected += len(ans.Rejected)
		for _, r := range ans.Rejected {
			fmt.Fprintf(stderr, "%s:%d: %s\n", name, r.Line, r.Reason)
		}
	}
	fmt.Fprintf(stdout, "stored %d, rejected %d\n", stored, rejected)
	if rejected > 0 {
		return ExitError{fmt.Sprintf("%d lines rejected", rejected)}
	}
	return nil
}

func importFile(base, name string, stdin io.Reader) (*ImportAnswer, error) {
	in := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	return ImportFrom(context.Background(), http.DefaultClient, base, in)
}

// ImportAnswer is the answer of POST /api/v1/import.
type ImportAnswer struct {
	Stored   int `json:"stored"`
	Rejected []struct {
		Line   int    `json:"line"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// ImportFrom sends JSON Lines from r to the admin listener at base.
func ImportFrom(ctx context.Context, hc *http.Client, base string, r io.Reader) (*ImportAnswer, error) {
	resp, err := adminDo(ctx, hc, http.MethodPost, base+"/api/v1/import", r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans ImportAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return &ans, nil
}
