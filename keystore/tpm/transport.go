package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// open opens the TPM at path: a character device (a kernel TPM, through its
// resource manager /dev/tpmrm0 preferably) or the Unix socket of an
// emulator such as swtpm (socket --server type=unixio), which speaks the
// same command stream.
func open(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: no TPM at %s: %w", path, err)
	}
	switch {
	case fi.Mode()&os.ModeSocket != 0:
		conn, err := net.Dial("unix", path)
		if err != nil {
			return nil, fmt.Errorf("tpm: cannot reach the TPM at %s: %w", path, err)
		}
		return &socketTPM{conn: conn}, nil
	case fi.Mode()&os.ModeCharDevice != 0:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("tpm: cannot open the TPM at %s: %w", path, err)
		}
		return transport.FromReadWriteCloser(f), nil
	}
	return nil, fmt.Errorf("tpm: %s is neither a TPM device nor a socket", path)
}

// socketTPM sends commands over a stream socket and reads each response
// whole, by the size in its header: a stream may deliver a response in
// pieces, where a device delivers it in one read.
type socketTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

// socketTimeout bounds one command: an emulator answers in milliseconds,
// and even a slow RSA key generation in seconds.
const socketTimeout = 2 * time.Minute

// maxResponse is larger than any TPM response (TPM2 caps them at a few KiB).
const maxResponse = 64 << 10

func (s *socketTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.SetDeadline(time.Now().Add(socketTimeout))
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: sending a command: %w", err)
	}
	hdr := make([]byte, 10) // tag, size, response code
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("tpm: reading a response: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 10 || n > maxResponse {
		return nil, errors.New("tpm: a response of impossible size")
	}
	rsp := make([]byte, n)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("tpm: reading a response: %w", err)
	}
	return rsp, nil
}

func (s *socketTPM) Close() error { return s.conn.Close() }
