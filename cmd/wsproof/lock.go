package main

import (
	"context"
	"errors"
	"os"
	"time"
)

// lockWait bounds how long an editor waits for another one to finish. An
// edit holds the lock for milliseconds; a lock held this long belongs to an
// editor that is stuck (stopped in a terminal, say), not to a dead one, whose
// lock the system has released.
const lockWait = 30 * time.Second

// errLockBusy is returned by lockFile when the lock stayed held for lockWait.
var errLockBusy = errors.New("locked by another editor")

// lockFile takes an exclusive advisory lock on the file at path, creating
// the file if it is missing, and returns the open file that holds the lock;
// unlockFile releases it. It waits while another process holds the lock,
// until ctx is done or lockWait has passed.
//
// The lock belongs to the open file, not to the file's existence: the system
// releases it when the process ends, however it ends, so an editor killed
// with SIGKILL never leaves a stale lock behind, and the lock file is never
// removed (removing it would let two editors lock two different files).
// Where the system has no such lock (lock_other.go), lockFile fails rather
// than let edits race.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	// The system wakes a waiting editor as soon as the lock is free, which
	// polling would not; the wait runs on its own goroutine so that it can
	// be given up.
	got := make(chan error, 1)
	go func() { got <- waitLock(f) }()
	timeout := time.NewTimer(lockWait)
	defer timeout.Stop()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout.C:
		err = errLockBusy
	}
	// Given up: release the lock if it comes after all.
	go func() {
		if <-got == nil {
			unlock(f)
		}
		f.Close()
	}()
	return nil, err
}

// unlockFile releases a lock taken by lockFile and closes its file.
func unlockFile(f *os.File) {
	unlock(f)
	f.Close()
}
