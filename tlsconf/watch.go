package tlsconf

import (
	"context"
	"os"
	"sync"
	"time"
)

// Files is a set of files that key material is read from, watched for a
// change on disk. Safe for concurrent use.
type Files struct {
	paths []string
	mu    sync.Mutex
	read  []stamp // the files as they were when last read
}

// NewFiles stamps the files as read now.
func NewFiles(paths ...string) *Files {
	f := &Files{paths: append([]string(nil), paths...)}
	f.Read()
	return f
}

// Read stamps the files as read now. Call it just before reading them: a
// file that changes while being read then differs from its stamp at the
// next poll and is read again.
func (f *Files) Read() {
	st := f.stat()
	f.mu.Lock()
	f.read = st
	f.mu.Unlock()
}

// Watch polls the files every interval and calls reload when they differ
// from when last read and then stayed unchanged for one more interval, so a
// file caught half-written is not read. It returns when ctx is done.
func (f *Files) Watch(ctx context.Context, interval time.Duration, reload func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending []stamp
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := f.stat()
		f.mu.Lock()
		same := sameStamps(now, f.read)
		f.mu.Unlock()
		switch {
		case same:
			pending = nil
		case pending == nil || !sameStamps(now, pending):
			pending = now
		default:
			pending = nil
			reload()
		}
	}
}

// stamp identifies one version of a file; fi is nil when it cannot be read.
type stamp struct {
	fi os.FileInfo
}

func (f *Files) stat() []stamp {
	st := make([]stamp, len(f.paths))
	for i, p := range f.paths {
		// Stat follows symbolic links, so a swapped link (as in a mounted
		// Kubernetes secret) shows as a different file.
		if fi, err := os.Stat(p); err == nil {
			st[i].fi = fi
		}
	}
	return st
}

func sameStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i].fi, b[i].fi
		if x == nil || y == nil {
			if x != y {
				return false
			}
			continue
		}
		if !os.SameFile(x, y) || x.Size() != y.Size() || !x.ModTime().Equal(y.ModTime()) {
			return false
		}
	}
	return true
}
