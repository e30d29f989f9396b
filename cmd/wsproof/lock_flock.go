//go:build unix && !aix

package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// waitLock takes flock(2)'s exclusive lock on f, waiting while another open
// file holds it. flock locks belong to the open file description, so two
// editors in one process exclude each other too.
func waitLock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) { // a signal to the process interrupts the wait
			return err
		}
	}
}

func unlock(f *os.File) { unix.Flock(int(f.Fd()), unix.LOCK_UN) }
