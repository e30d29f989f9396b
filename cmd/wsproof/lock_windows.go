//go:build windows

package main

import (
	"os"

	"golang.org/x/sys/windows"
)

// waitLock takes LockFileEx's exclusive lock on the first byte of f,
// waiting while another handle holds it. Windows releases it when the
// handle is closed, which it is when the process ends.
func waitLock(f *os.File) error {
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, new(windows.Overlapped))
}

func unlock(f *os.File) {
	windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, new(windows.Overlapped))
}
