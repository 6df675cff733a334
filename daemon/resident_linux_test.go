package daemon

import (
	"os"
	"testing"

	"github.com/opmond/opmond/internal/procmaps"
)

// executableRSS sums the resident kB of this process's read-only mappings
// of its executable; with touch, it first reads them whole (through
// /proc/self/mem, which faults the pages in), so that they are resident.
func executableRSS(t *testing.T, touch bool) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	readOnly := func(m procmaps.Mapping) bool { return !m.Writable() }
	if touch {
		ms, err := procmaps.Self()
		if err != nil {
			t.Fatal(err)
		}
		mem, err := os.Open("/proc/self/mem")
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		buf := make([]byte, 1<<20)
		for _, m := range ms {
			for a := m.Start; m.Path == exe && readOnly(m) && a < m.End; a += uint64(len(buf)) {
				if _, err := mem.ReadAt(buf[:min(uint64(len(buf)), m.End-a)], int64(a)); err != nil {
					t.Fatalf("read %x: %v", a, err)
				}
			}
		}
	}
	ms, err := procmaps.Self()
	if err != nil {
		t.Fatal(err)
	}
	return procmaps.ResidentKB(ms, exe, readOnly)
}

// TestReleaseExecutable: after start-up the executable's read-only pages
// leave the resident set, and the process goes on running its code.
func TestReleaseExecutable(t *testing.T) {
	executableRSS(t, true)
	before := executableRSS(t, false)
	n, err := releaseExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := executableRSS(t, false)
	t.Logf("advised %d bytes; executable resident %d kB → %d kB", n, before, after)
	if int64(before) < n>>10*9/10 || after > before/2 {
		t.Fatalf("advised %d kB; resident %d kB → %d kB", n>>10, before, after)
	}
	// The code runs on: a daemon (which releases again when it starts)
	// stores and reads back.
	td := startDaemon(t, testConfig(t, t.TempDir()), nil)
	td.store(jrec("messageId", "m1"), jrec("messageId", "m2"))
	if got := td.all(); len(got) != 2 {
		t.Fatalf("%d records read back, want 2", len(got))
	}
}
