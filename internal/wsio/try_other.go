//go:build !unix

package wsio

import "net"

// tryWrite has no way to write without waiting here.
func tryWrite(net.Conn, []byte) (int, bool, error) { return 0, false, nil }
