//go:build !windows && (!unix || aix)

package main

import (
	"errors"
	"os"
	"runtime"
)

// waitLock fails: this system has no lock that its kernel releases when the
// editor dies, and without one two editors could each lose the other's
// change. The registry file can still be edited by hand there, or with the
// command on another system.
func waitLock(*os.File) error {
	return errors.New("file locking is not available on " + runtime.GOOS + ", so the registry cannot be edited safely")
}

func unlock(*os.File) {}
