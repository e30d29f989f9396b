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

// Watch's polling cost. A file's size, identity and modification time do not
// prove its contents unchanged: a writer that rewrites in place, keeps the
// size (a preallocated file, a same-length edit) and finishes within one tick
// of a coarse modification-time clock leaves all three as they were. Only
// reading the file proves it, so Watch reads and hashes a file smaller than
// hashEveryTickBelow on every tick, and parses it only when the hash differs:
// at most about 1.5 ms of reading and SHA-256 per tick, well under one percent
// of a core at the default interval, and microseconds for a typical registry
// of a few KiB. Doing so for a file up to MaxRegistryFile (about 80 ms a read)
// would cost a third of a core, so a larger file is trusted by its stat data
// between ticks, but read anyway once rereadEvery has passed since its last
// read: such a rewrite of a large file is seen within rereadEvery, for under
// two percent of a core at the largest size.
const (
	hashEveryTickBelow = 1 << 20
	rereadEvery        = 5 * time.Second
)

// FileRegistry is the embedded default Registry: a registry file (spec
// section "Key registry") held in memory and reloaded atomically. Lookups
// always see one complete snapshot; a file that fails to parse leaves the last
// good snapshot in place.
//
// Write the file atomically (write a temporary file, then rename it over the
// registry). A reader that meets a half-written file keeps the old snapshot;
// Watch then reads the file again on every tick until it parses, so a writer
// that finishes in place is seen too.
//
// The path may be a symbolic link, or a chain of them, as in a Kubernetes
// ConfigMap or Secret mount (registry.jwks -> ..data/registry.jwks, with
// ..data swapped atomically to a new folder on each update). Every poll
// opens and stats the path, following the links, and a swap changes the
// file's identity, so a swap of any link is seen like any other change
// (spec section "Reload").
//
// A FileRegistry is safe for concurrent use.
type FileRegistry struct {
	path string
	cur  atomic.Pointer[Set]

	// The polling costs; fields rather than constants so that tests can
	// exercise the large-file path with a small file. Set before Watch runs.
	hashEveryTickBelow int64
	rereadEvery        time.Duration

	mu     sync.Mutex  // serializes reads of the file and guards what follows
	stamp  os.FileInfo // of the last file read, good or bad
	readAt time.Time   // when it was read
	sum    [sha256.Size]byte

	// lastErr is the error of the last read, nil if it succeeded. failKey
	// identifies that failure (the hash of the refused contents, or the
	// error text when the file could not be read) so that the same bad bytes
	// are not parsed again. failures counts distinct failures, a failure
	// being distinct unless it repeats the previous read's, so that Watch
	// reports each of them once.
	lastErr  error
	failKey  string
	failures uint64
}

// OpenFile loads the registry file at path. The first load must succeed.
func OpenFile(path string) (*FileRegistry, error) {
	r := &FileRegistry{path: path, hashEveryTickBelow: hashEveryTickBelow, rereadEvery: rereadEvery}
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
// use and the error says why. Reload may be called while Watch runs: Watch
// still reports the change it swapped in (see Watch).
func (r *FileRegistry) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *FileRegistry) reloadLocked() (bool, error) {
	changed, key, err := r.read()
	if err != nil && (r.lastErr == nil || key != r.failKey) {
		r.failures++
	}
	r.lastErr, r.failKey = err, key
	return changed, err
}

// read reads and, unless its contents are those of the last good read or of
// the last failed one, parses the file. key identifies a failure.
func (r *FileRegistry) read() (changed bool, key string, err error) {
	fail := func(err error) (bool, string, error) { return false, "read:" + err.Error(), err }
	f, err := os.Open(r.path)
	if err != nil {
		return fail(fmt.Errorf("keys: registry: %w", err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("keys: registry: %w", err))
	}
	if fi.Size() > MaxRegistryFile {
		return fail(fmt.Errorf("keys: registry file %s is larger than %d bytes", r.path, MaxRegistryFile))
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return fail(fmt.Errorf("keys: registry: %w", err))
	}
	r.stamp, r.readAt = fi, time.Now()
	sum := sha256.Sum256(buf.Bytes())
	if r.cur.Load() != nil && sum == r.sum {
		return false, "", nil
	}
	key = "parse:" + string(sum[:])
	if r.lastErr != nil && key == r.failKey {
		// Watch re-reads a refused file on every tick until it parses;
		// identical bytes would fail identically.
		return false, key, r.lastErr
	}
	s, err := ParseRegistry(buf.Bytes())
	if err != nil {
		return false, key, fmt.Errorf("keys: registry file %s: %w", r.path, err)
	}
	r.sum = sum
	r.cur.Store(s)
	return true, "", nil
}

// poll is Watch's look at the file: it reads the file again unless the last
// read succeeded and the file is large and, by its stat data, unchanged since
// a read less than rereadEvery ago. It returns the count of distinct failures
// and the error of the last read.
func (r *FileRegistry) poll() (failures uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr == nil && r.trustStat() {
		return r.failures, nil
	}
	_, err = r.reloadLocked()
	return r.failures, err
}

// trustStat reports whether the stat data alone may stand for the contents;
// see hashEveryTickBelow for why only for large files and not for long.
func (r *FileRegistry) trustStat() bool {
	fi, err := os.Stat(r.path)
	// A rename over the file changes its identity even when size and
	// modification time (coarse on some file systems) do not.
	return err == nil && r.stamp != nil && os.SameFile(fi, r.stamp) &&
		fi.Size() == r.stamp.Size() && fi.ModTime().Equal(r.stamp.ModTime()) &&
		fi.Size() >= r.hashEveryTickBelow && time.Since(r.readAt) < r.rereadEvery
}

// Watch polls the file every interval (DefaultWatchInterval if zero) until
// ctx is done and returns ctx.Err(). Callbacks run on Watch's goroutine, one
// at a time; either may be nil. A callback that blocks delays the next poll.
//
// onChange(old, new) is called exactly once for each change of the snapshot
// that Watch has not reported yet, whoever swapped it in (Watch itself, or a
// Reload by another caller): old is the snapshot Watch last reported (the one
// in use when Watch started, at first) and new the one now in use. Changes
// made between two polls are reported together, as one call.
//
// A change to the file is reported within one interval of the file being
// complete, even when it was rewritten in place without changing its size,
// identity or modification time, except for a file of at least 1 MiB rewritten
// so: that is seen within 5 s. After a failed read Watch reads the file on
// every poll until it parses, so a file that was read half-written is taken
// up within one interval of the writer finishing it.
//
// onError(err) is called once for each distinct failure to read or parse the
// file (the same refused contents, or the same read error, are reported once
// however often they are met) while the last good snapshot stays in use.
func (r *FileRegistry) Watch(ctx context.Context, interval time.Duration, onChange func(old, new *Set), onError func(error)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	reported := r.Current()
	var reportedFailures uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		failures, err := r.poll()
		// Compare snapshots rather than trust poll's changed: another
		// caller's Reload may have swapped in a change since the last poll,
		// and the server must recheck live sessions against it.
		if cur := r.Current(); cur != reported {
			old := reported
			reported = cur
			if onChange != nil {
				onChange(old, cur)
			}
		}
		if err != nil && failures != reportedFailures {
			reportedFailures = failures
			if onError != nil {
				onError(err)
			}
		}
	}
}
