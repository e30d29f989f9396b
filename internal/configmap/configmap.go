// Package configmap updates a folder the way the kubelet updates a
// Kubernetes ConfigMap or Secret volume, for tests of the programs that read
// and write files mounted so.
//
// Such a volume holds, for each file, a link name -> ..data/name; ..data is a
// link to a timestamped folder holding the current version of every file.
// An update writes the new versions into a new timestamped folder, points a
// new link at it, renames that link over ..data (the one atomic step: a
// reader sees every old file or every new one), and removes the old folder.
package configmap

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DataLink is the name of the link to the folder of the current version.
const DataLink = "..data"

// Update makes files (names to contents) the current version of the volume
// in dir, creating the volume's links on first use. A non-zero mtime is
// given to every new file, so that a test can make a new version that
// differs from the old one in nothing but its contents and identity.
func Update(dir string, files map[string][]byte, mtime time.Time) error {
	old, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		path := filepath.Join(ts, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				return err
			}
		}
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join(DataLink, name), link); err != nil {
				return err
			}
		}
	}
	tmp := filepath.Join(dir, DataLink+"_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, DataLink)); err != nil {
		return err
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
