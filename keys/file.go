package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// MaxRegistryFile bounds the size of a registry file read by FileRegistry.
const MaxRegistryFile = 64 << 20

// DefaultWatchInterval is how often Watch looks at the file when its
// interval is zero: short enough that a revocation written to the file takes
// effect well within the one second spec section "Revocation" allows.
const DefaultWatchInterval = 250 * time.Millisecond

// FileRegistry is the embedded default Registry: a registry file (spec
// section "Key registry") held in memory and reloaded atomically. Lookups
// always see one complete snapshot; a file that fails to parse leaves the last
// good snapshot in place.
//
// Write the file atomically (write a temporary file, then rename it over the
// registry): a reader that meets a half-written file keeps the old snapshot
// and retries when the file changes again.
//
// A FileRegistry is safe for concurrent use.
type FileRegistry struct {
	path string
	cur  atomic.Pointer[Set]

	mu      sync.Mutex  // serializes Reload
	stamp   os.FileInfo // of the last file read, good or bad
	sum     [sha256.Size]byte
	lastErr error
}

// OpenFile loads the registry file at path. The first load must succeed.
func OpenFile(path string) (*FileRegistry, error) {
	r := &FileRegistry{path: path}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup implements Registry.
func (r *FileRegistry) Lookup(kid string) (*Entry, bool) { return r.cur.Load().Lookup(kid) }

// Current returns the snapshot in use.
func (r *FileRegistry) Current() *Set { return r.cur.Load() }

// Err returns the error of the last reload, or nil if it succeeded: a
// non-nil value means the registry is serving an older snapshot than the file.
func (r *FileRegistry) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Reload reads the file and, if its contents changed and parse, swaps in the
// new snapshot and reports changed. On error the previous snapshot stays in
// use and the error says why.
func (r *FileRegistry) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed, err = r.reload()
	r.lastErr = err
	return changed, err
}

func (r *FileRegistry) reload() (bool, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return false, fmt.Errorf("keys: registry: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("keys: registry: %w", err)
	}
	if fi.Size() > MaxRegistryFile {
		return false, fmt.Errorf("keys: registry file %s is larger than %d bytes", r.path, MaxRegistryFile)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return false, fmt.Errorf("keys: registry: %w", err)
	}
	r.stamp = fi
	sum := sha256.Sum256(buf.Bytes())
	if r.cur.Load() != nil && sum == r.sum {
		return false, nil
	}
	s, err := ParseRegistry(buf.Bytes())
	if err != nil {
		return false, fmt.Errorf("keys: registry file %s: %w", r.path, err)
	}
	r.sum = sum
	r.cur.Store(s)
	return true, nil
}

// Watch polls the file every interval (DefaultWatchInterval if zero) until
// ctx is done, reloading it when its size or modification time changes.
// After each successful change it calls onChange with the old and new
// snapshots; after each failed reload it calls onError (either may be nil).
// Callbacks run on Watch's goroutine. Watch returns ctx.Err().
func (r *FileRegistry) Watch(ctx context.Context, interval time.Duration, onChange func(old, new *Set), onError func(error)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		fi, err := os.Stat(r.path)
		r.mu.Lock()
		// A rename over the file changes its identity even when size and
		// modification time (coarse on some file systems) do not.
		same := err == nil && r.stamp != nil && os.SameFile(fi, r.stamp) &&
			fi.Size() == r.stamp.Size() && fi.ModTime().Equal(r.stamp.ModTime())
		r.mu.Unlock()
		if same {
			continue
		}
		old := r.Current()
		changed, err := r.Reload()
		switch {
		case err != nil && onError != nil:
			onError(err)
		case changed && onChange != nil:
			onChange(old, r.Current())
		}
	}
}
