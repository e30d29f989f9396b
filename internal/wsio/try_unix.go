//go:build unix

package wsio

import (
	"errors"
	"net"
	"syscall"
)

// tryWrite writes as much of b as the socket under conn takes at once,
// without waiting. ok is false when conn offers no way to do that.
func tryWrite(conn net.Conn, b []byte) (n int, ok bool, err error) {
	sc, is := conn.(syscall.Conn)
	if !is {
		return 0, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	werr := rc.Write(func(fd uintptr) bool {
		n, err = syscall.Write(int(fd), b)
		return true // never wait for the socket to be writable
	})
	if n < 0 {
		n = 0
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		err = nil
	}
	if werr != nil {
		// The deadline passed or the connection is closed: let the
		// writer's ordinary write meet the same error.
		return 0, true, nil
	}
	return n, true, err
}
