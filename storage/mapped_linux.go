package storage

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped tells the kernel that this process no longer needs the
// pages of the database mapping it has read (MADV_DONTNEED on a shared,
// read-only file mapping: the data stays in the page cache and is faulted
// back in on the next read). Without it every page a query or commit ever
// touched counts in the daemon's resident memory, which then grows with the
// database (a filtered query over 230,000 records: 25 MB). It must run
// inside a read transaction: that holds off bbolt's remapping, so the
// address range is bbolt's mapping while the call runs.
func releaseMapped(db *bolt.DB, tx *bolt.Tx) {
	if !tx.Writable() {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
	}
}
