//go:build !linux

package daemon

// releaseExecutable is Linux-only (see resident_linux.go).
func releaseExecutable() (int64, error) { return 0, nil }
