package procmaps

import (
	"os"
	"testing"
)

// TestSelf: the running test binary's code is mapped, executable, not
// writable and resident.
func TestSelf(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skipf("no /proc/self/exe: %v", err) // not Linux
	}
	ms, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	code := func(m Mapping) bool { return m.Perms == "r-xp" }
	if kb := ResidentKB(ms, exe, code); kb <= 0 {
		t.Fatalf("no resident code of %s among %d mappings", exe, len(ms))
	}
	for _, m := range ms {
		if m.End <= m.Start || len(m.Perms) != 4 {
			t.Fatalf("bad mapping %+v", m)
		}
		if m.Path == exe && code(m) && m.Writable() {
			t.Fatalf("code mapping writable: %+v", m)
		}
	}
}
