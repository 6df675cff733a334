package daemon

import (
	"os"
	"syscall"

	"github.com/opmond/opmond/internal/procmaps"
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
	ms, err := procmaps.Self()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, m := range ms {
		if m.Path != exe || m.Writable() || m.End <= m.Start {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), syscall.MADV_DONTNEED); e != 0 {
			return total, e
		}
		total += int64(m.End - m.Start)
	}
	return total, nil
}
