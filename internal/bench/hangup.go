package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// hangups watches sockets that the load side never reads for the end of
// their connection, as the kernel reports it, without reading what waits in
// their receive buffers: a FIN (EPOLLRDHUP) or a reset (EPOLLHUP, EPOLLERR),
// in one epoll instance of its own, polled by one goroutine.
//
// A socket whose receive buffer is full cannot receive the server's Close
// frame, nor its FIN, which TCP queues behind the unread data. It learns
// that the server has dropped the connection when it next sends something:
// the server's kernel answers data for a closed socket with a reset. The
// runs that use hangups therefore keep those sockets sending, and the
// resolution of the time they measure is the sending period.
type hangups struct {
	epfd int
	at   []atomic.Int64 // Unix ns of each socket's hang-up; zero before
	stop chan struct{}
	done chan struct{}
}

func newHangups(n int) (*hangups, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	h := &hangups{epfd: fd, at: make([]atomic.Int64, n), stop: make(chan struct{}), done: make(chan struct{})}
	go h.loop()
	return h, nil
}

// add watches c, the connection under socket i.
func (h *hangups) add(i int, c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		// One-shot: once reported, the socket stays disabled in this
		// instance, and closing it removes it.
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR | syscall.EPOLLONESHOT, Fd: int32(i)}
		cerr = syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	return errors.Join(err, cerr)
}

func (h *hangups) loop() {
	defer close(h.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(h.epfd, events, 20)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		now := time.Now().UnixNano()
		for _, ev := range events[:n] {
			if i := int(ev.Fd); i >= 0 && i < len(h.at) {
				h.at[i].CompareAndSwap(0, now)
			}
		}
	}
}

func (h *hangups) close() {
	close(h.stop)
	<-h.done
	syscall.Close(h.epfd)
}

// rcvbufDialer dials loopback from the source pool; with rcvbuf > 0 it sets
// the socket's receive buffer before it connects (so that the window the
// peer sees stays small), as a client that stops reading would have.
func rcvbufDialer(src *sources, rcvbuf int) *websocket.Dialer {
	d := &websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 15 * time.Second}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := checkLoopback(addr); err != nil {
			return nil, err
		}
		nd := net.Dialer{LocalAddr: src.next()}
		if rcvbuf > 0 {
			nd.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
				})
				return errors.Join(err, serr)
			}
		}
		return nd.DialContext(ctx, network, addr)
	}
	return d
}
