package daemon

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// releaseExecutable drops the executable's read-only pages (code and
// read-only data) from this process's page tables once start-up is over.
// Start-up runs every package's initialisation and the kernel maps up to
// 64 KiB around each page it faults in (fault-around), so a fresh daemon has
// 15 MB of its 20 MB binary resident, most of it never used again. The pages
// stay in the page cache; those the daemon does use are faulted back in
// (minor faults, no I/O). Writable mappings are left alone: there
// MADV_DONTNEED would throw away the process's own data. It returns the
// bytes of address range advised.
func releaseExecutable() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00d09000 r-xp 00000000 fd:01 1234 /path/to/opmond
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); e != 0 {
			return total, e
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}
