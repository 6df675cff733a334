//go:build !linux

package storage

import bolt "go.etcd.io/bbolt"

// releaseMapped is Linux-only (see mapped_linux.go).
func releaseMapped(*bolt.DB, *bolt.Tx) {}
