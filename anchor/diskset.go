package anchor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A downloaded instance folder is written as a set (§3, §7.15): every file
// goes into a new generation folder under <root>/.sets, which is fsynced,
// and then <root>/<instance> — a symbolic link — is renamed to point at it.
// rename(2) of a link is atomic, so a reader that resolves the link once
// (StaticDir does) reads one whole set, never a mix of two. The previous
// generation is kept for readers still inside it; older ones are removed.

const setsDir = ".sets"

// setFile is one file of a set with its metadata (§3.2).
type setFile struct {
	name string
	data []byte
	meta fileMetadata
}

// fileMetadata is the <file>.metadata JSON upstream's client writes.
type fileMetadata struct {
	ContentIdentifier    string `json:"contentIdentifier"`
	InstanceIdentifier   string `json:"instanceIdentifier"`
	ExpirationDate       string `json:"expirationDate"`
	ContentFileName      string `json:"contentFileName,omitempty"`
	ContentLocation      string `json:"contentLocation"`
	ConfigurationVersion string `json:"configurationVersion"`
}

// writeSet replaces the folder of instance under root by files. Nothing
// under <root>/<instance> changes unless every file was written and synced.
func writeSet(root, instance string, files []setFile) error {
	name := instanceDirName(instance)
	sets := filepath.Join(root, setsDir)
	if err := os.MkdirAll(sets, 0o755); err != nil {
		return err
	}
	gen, err := os.MkdirTemp(sets, name+"-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(gen)
		}
	}()
	if err := os.Chmod(gen, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		meta, err := json.Marshal(f.meta)
		if err != nil {
			return err
		}
		if err := writeSynced(filepath.Join(gen, f.name), f.data); err != nil {
			return err
		}
		if err := writeSynced(filepath.Join(gen, f.name+metadataSuffix), meta); err != nil {
			return err
		}
	}
	if err := syncDir(gen); err != nil {
		return err
	}
	if err := syncDir(sets); err != nil {
		return err
	}
	link := filepath.Join(root, name)
	prev, _ := os.Readlink(link)
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		// A real folder (a copy made for static mode, or upstream's client
		// wrote it): move it aside once; from now on the link is swapped.
		if err := os.Rename(link, gen+".replaced"); err != nil {
			return err
		}
	}
	tmp := filepath.Join(root, "."+name+".link-"+filepath.Base(gen))
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join(setsDir, filepath.Base(gen)), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	ok = true
	if err := syncDir(root); err != nil {
		return err
	}
	removeOldSets(sets, name, filepath.Base(gen), filepath.Base(prev))
	return nil
}

// removeOldSets deletes the generations of an instance other than the
// current and the previous one. Each is first renamed away in one step, so
// a reader still inside it notices (the folder it resolved is gone) rather
// than reading a set with files missing. Failures only leave garbage.
func removeOldSets(sets, name string, keep ...string) {
	entries, err := os.ReadDir(sets)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, name+"-") || n == keep[0] || n == keep[1] {
			continue
		}
		trash := filepath.Join(sets, ".trash-"+n)
		if os.Rename(filepath.Join(sets, n), trash) == nil {
			os.RemoveAll(trash)
		}
	}
	// Left over by an interrupted run.
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".trash-") {
			os.RemoveAll(filepath.Join(sets, e.Name()))
		}
	}
}

// writeFileAtomic replaces path by data: a temporary file in the same
// folder, fsync, rename, fsync of the folder.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
