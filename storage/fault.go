package storage

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// FaultOp names the step of a commit where Options.Fault may fail it.
type FaultOp string

// The steps of a commit. bbolt answers a failed page write and a failed
// fdatasync alike (the transaction rolls back and Commit returns the error,
// nothing of it counts as written), so the seam fails the commit at that
// point the same way with the injected error (ENOSPC, EIO, ...).
const (
	FaultWrite FaultOp = "write"
	FaultSync  FaultOp = "fsync"
)

// update runs fn in a read-write transaction and commits it; a failed
// commit is remembered for CommitErr until one succeeds.
func (db *DB) update(fn func(*bolt.Tx) error) error {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		return db.committed(err)
	}
	start := time.Now() // after Begin: not the wait for another writer
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if db.fault != nil {
		for _, op := range []FaultOp{FaultWrite, FaultSync} {
			if err := db.fault(op); err != nil {
				_ = tx.Rollback()
				return db.committed(&faultError{op: op, err: err})
			}
		}
	}
	err = tx.Commit()
	if err == nil && db.onCommit != nil {
		st := tx.Stats()
		db.onCommit(Commit{Duration: time.Since(start), Bytes: st.GetPageAlloc()})
	}
	return db.committed(err)
}

func (db *DB) committed(err error) error {
	db.mu.Lock()
	db.commitErr = err
	db.mu.Unlock()
	return err
}

// CommitErr is the error of the last commit, nil once one succeeded (or
// before any was tried).
func (db *DB) CommitErr() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.commitErr
}

// faultError reads like the error of the real system call.
type faultError struct {
	op  FaultOp
	err error
}

func (e *faultError) Error() string { return string(e.op) + " " + "database file: " + e.err.Error() }
func (e *faultError) Unwrap() error { return e.err }
