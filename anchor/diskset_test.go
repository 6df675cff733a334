package anchor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opmond/opmond/anchor/anchortest"
)

// genFiles is a set whose every file carries generation n: a security
// server sN, monitoring client subsystem MN, and expiry base+n seconds.
func genFiles(n int, base time.Time) []setFile {
	exp := base.Add(time.Duration(n) * time.Second).UTC().Format(time.RFC3339)
	meta := func(id string) fileMetadata {
		return fileMetadata{ContentIdentifier: id, InstanceIdentifier: "EE", ExpirationDate: exp, ContentLocation: "/V6/x/" + id, ConfigurationVersion: "6"}
	}
	g := strconv.Itoa(n)
	return []setFile{
		{name: privateParamsFile, data: []byte(anchortest.PrivateXML("EE") + "<!-- gen " + g + " -->"), meta: meta(contentPrivate)},
		{name: sharedParamsFile, data: []byte(anchortest.SharedXML("EE", "EE/GOV/1/s"+g) + "<!-- gen " + g + " -->"), meta: meta(contentShared)},
		{name: monitoringParamsFile, data: []byte(anchortest.MonitoringXML("EE/GOV/1/M"+g) + "<!-- gen " + g + " -->"), meta: meta(contentMonitoring)},
	}
}

var genRe = regexp.MustCompile(`<!-- gen (\d+) -->`)

// TestWriteSetNoMix replaces the set in a loop while readers read it: one
// through the StaticDir the daemon uses, one file by file as another
// program would after resolving the folder once. Neither may ever see
// files of two generations together.
func TestWriteSetNoMix(t *testing.T) {
	root := t.TempDir()
	if err := writeFileAtomic(filepath.Join(root, instanceIdentifierFile), []byte("EE")); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := writeSet(root, "EE", genFiles(0, base)); err != nil {
		t.Fatal(err)
	}
	// Until enough sets were written (fsync is slow on a busy disk).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var written int
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for n := 1; n <= 25 && ctx.Err() == nil; n++ {
			if err := writeSet(root, "EE", genFiles(n, base)); err != nil {
				t.Error(err)
				return
			}
			written = n
		}
	}()
	type result struct{ ok, failed int }
	results := make([]result, 2)
	wg.Add(2)
	go func() { // the daemon's reader
		defer wg.Done()
		s := NewStaticDir(root, StaticOptions{Logger: testLogger(t).Level(100)})
		for ctx.Err() == nil {
			if err := s.Reload(); err != nil {
				results[0].failed++
				continue
			}
			m, ok := s.MonitoringClient()
			if !ok {
				t.Error("mixed set: no monitoring client")
				return
			}
			n, err := strconv.Atoi(m.Subsystem[1:])
			if err != nil {
				t.Errorf("monitoring client %v", m)
				return
			}
			_, ownerOK := s.OwnerOf(serverID(fmt.Sprintf("EE/GOV/1/s%d", n)))
			if exp := s.Expiry(); !ownerOK || !exp.Equal(base.Add(time.Duration(n)*time.Second)) {
				t.Errorf("mixed set: monitoring client of generation %d, its server found %v, expiry %v", n, ownerOK, exp)
				return
			}
			results[0].ok++
		}
	}()
	go func() { // a reader of the files
		defer wg.Done()
		for ctx.Err() == nil {
			dir, err := filepath.EvalSymlinks(filepath.Join(root, "EE"))
			if errors.Is(err, fs.ErrNotExist) {
				// The set the link named was removed (two generations
				// later) while the link was being resolved: a failed read,
				// never a mix.
				results[1].failed++
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			gens := map[string]bool{}
			failed := false
			for _, f := range []string{privateParamsFile, sharedParamsFile, monitoringParamsFile} {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					failed = true // removed two generations later; never a mix
					break
				}
				gens[genRe.FindStringSubmatch(string(b))[1]] = true
			}
			if failed {
				results[1].failed++
				continue
			}
			if len(gens) != 1 {
				t.Errorf("mixed set: generations %v", gens)
				return
			}
			results[1].ok++
		}
	}()
	wg.Wait()
	t.Logf("%d sets written; StaticDir loads %+v; file reads %+v", written, results[0], results[1])
	if written < 25 || results[0].ok < 10 || results[1].ok < 10 {
		t.Errorf("too little happened to tell: %d sets, reads %+v", written, results)
	}
}
