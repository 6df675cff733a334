// Package procmaps lists this process's memory mappings with their resident
// size, from /proc/self/smaps (Linux). Hand-written: a few lines of a stable
// kernel text format, read by the daemon (releasing its start-up pages) and
// by the tests that check what is resident.
package procmaps

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Mapping is one mapping of the address space.
type Mapping struct {
	Start, End uint64 // address range [Start, End)
	Perms      string // e.g. "r-xp"
	Path       string // the mapped file, "" for anonymous memory
	RssKB      int    // resident kilobytes
}

// Writable reports whether the mapping may be written.
func (m Mapping) Writable() bool { return strings.Contains(m.Perms, "w") }

// Self returns the mappings of this process.
func Self() ([]Mapping, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		// A mapping starts with "start-end perms offset dev inode [path]";
		// the lines after it are "Key: value [kB]".
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") && len(fields) >= 5 {
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				out = append(out, Mapping{Start: start, End: end, Perms: fields[1], Path: strings.Join(fields[5:], " ")})
				continue
			}
		}
		if fields[0] == "Rss:" && len(fields) >= 2 && len(out) > 0 {
			out[len(out)-1].RssKB, _ = strconv.Atoi(fields[1])
		}
	}
	return out, sc.Err()
}

// ResidentKB sums the resident kilobytes of the mappings of path that keep
// says to count (nil: all of them).
func ResidentKB(ms []Mapping, path string, keep func(Mapping) bool) int {
	kb := 0
	for _, m := range ms {
		if m.Path == path && (keep == nil || keep(m)) {
			kb += m.RssKB
		}
	}
	return kb
}
