// Package wsio is the socket plumbing that packages client and server share
// under gorilla/websocket, for the cost of each message: reading a message
// into a buffer of its own size, and a connection that gathers the frames
// its writer sends in a row into one system call. It makes no protocol
// decision.
package wsio

import (
	"io"
	"net"
	"sync"
	"time"
)

// scratchSize is the buffer ReadMessage reads a message into before it
// knows its size: larger messages are rare (the default max_size is below
// it) and grow from there.
const scratchSize = 16 << 10

var scratch = sync.Pool{New: func() any { return new([scratchSize]byte) }}

// ReadMessage reads r to its end, but at most limit octets, into a buffer of
// the message's size: one allocation, where io.ReadAll starts at 512 octets
// and grows (and copies) its way up. Like io.ReadAll of an io.LimitReader,
// it returns what it read, without error, when r has more than limit
// octets; the caller refuses such a message. It never returns a nil slice
// with a nil error.
func ReadMessage(r io.Reader, limit int64) ([]byte, error) {
	s := scratch.Get().(*[scratchSize]byte)
	defer scratch.Put(s)
	buf := s[:min(limit, scratchSize)]
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return append([]byte{}, buf[:n]...), nil
		}
		if err != nil {
			return nil, err
		}
	}
	// The scratch buffer is full: a large message, or limit reached.
	out := make([]byte, n, max(2*n, 512))
	copy(out, buf)
	for int64(len(out)) < limit {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		m, err := r.Read(out[len(out):min(int64(cap(out)), limit)])
		out = out[:len(out)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// batchMax bounds what a BatchConn holds: beyond it, a write goes out.
const batchMax = 64 << 10

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchMax); return &b }}

// BatchConn is a net.Conn whose writes can be gathered: between Hold and
// Flush, what is written goes to a buffer (bounded by 64 KiB, beyond which it
// is written out), and Flush writes it in one call. Outside a hold, writes go
// straight to the connection. Writes from other goroutines during a hold (a
// Pong, a Close frame) join the buffer in the order they came, so the
// stream's order is the order of the Write calls. The first write error is
// sticky: every later write and Flush returns it.
//
// SetWriteDeadline passes a deadline on to the connection only when it
// differs from the one in force: setting a deadline costs a timer update in
// the runtime, which a writer that keeps the same deadline for a while need
// not pay on every frame.
//
// Hold and Flush belong to one goroutine, the writer; the other methods are
// safe for concurrent use. A write blocked on the network holds up other
// writes, as it would on the connection, but not SetWriteDeadline, which
// can cut it short.
type BatchConn struct {
	net.Conn

	wmu sync.Mutex // one write to Conn at a time, in order

	mu       sync.Mutex // guards what follows; never held during I/O
	hold     bool
	buf      *[]byte // from batchBufs while holding something
	err      error
	deadline time.Time // the write deadline in force on Conn
}

// NewBatchConn wraps c.
func NewBatchConn(c net.Conn) *BatchConn { return &BatchConn{Conn: c} }

// Hold starts gathering writes.
func (c *BatchConn) Hold() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

// Flush writes what was gathered since Hold, in one call, and ends the hold.
// It returns the write's error, or an earlier one.
func (c *BatchConn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.hold = false
	held, err := c.take()
	c.mu.Unlock()
	if held == nil || err != nil {
		c.put(held)
		return err
	}
	_, err = c.Conn.Write(*held)
	c.put(held)
	return c.fail(err)
}

// take takes the buffer and the sticky error. c.mu is held.
func (c *BatchConn) take() (*[]byte, error) {
	b := c.buf
	c.buf = nil
	return b, c.err
}

func (c *BatchConn) put(b *[]byte) {
	if b != nil {
		*b = (*b)[:0]
		batchBufs.Put(b)
	}
}

// fail records the first write error and returns it.
func (c *BatchConn) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	return c.err
}

// Write writes p, or adds it to the buffer during a hold.
func (c *BatchConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err == nil && c.hold && (c.buf == nil || len(*c.buf)+len(p) <= batchMax) && len(p) <= batchMax {
		if c.buf == nil {
			c.buf = batchBufs.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	held, err := c.take()
	c.mu.Unlock()
	if err != nil {
		c.put(held)
		return 0, err
	}
	if held == nil {
		n, err := c.Conn.Write(p)
		if err != nil {
			return n, c.fail(err)
		}
		return n, nil
	}
	hl := len(*held)
	bufs := net.Buffers{*held, p}
	n, err := bufs.WriteTo(c.Conn)
	c.put(held)
	if err != nil {
		return max(0, int(n)-hl), c.fail(err)
	}
	return len(p), nil
}

// SetWriteDeadline sets the write deadline unless it is in force already.
func (c *BatchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Equal(c.deadline) {
		return nil
	}
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines.
func (c *BatchConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// NetConn returns the wrapped connection.
func (c *BatchConn) NetConn() net.Conn { return c.Conn }

// Deadline is a writer's write deadline, which it keeps for a while rather
// than setting a new one for every message: setting a deadline costs a timer
// update in the runtime.
type Deadline struct{ t time.Time }

// Next returns the deadline of a write that starts at now and must complete
// within timeout: the one in force if it is at least timeout away, else a new
// one timeout plus 1/64 away. A write so gets between timeout and
// timeout*65/64, and a busy writer sets a new deadline once per timeout/64.
func (d *Deadline) Next(now time.Time, timeout time.Duration) time.Time {
	if now.Add(timeout).After(d.t) {
		d.t = now.Add(timeout + timeout/64)
	}
	return d.t
}

// handshakeStack is about the stack that a handshake's signature work needs
// below the glue's calls into package protocol: ECDSA in
// crypto/internal/fips140 is deep, with large frames.
const handshakeStack = 12 << 10

// GrowStack grows the calling goroutine's stack to hold handshakeStack more
// octets, in one step while the stack is still shallow; the server calls it
// before the upgrade and the client's reader when it starts. A goroutine
// starts with a small stack that the signature work would otherwise grow by
// doubling, copying the deep stack of the crypto code each time: 5% of the
// server's CPU per handshake and 4% of the client's (BENCHMARKS.md, issue
// 16). The runtime grows a stack at once to fit the frame that needs it,
// and copying a shallow stack is cheap.
//
//go:noinline
func GrowStack() {
	var b [handshakeStack]byte
	stackSink(b[:])
}

//go:noinline
func stackSink([]byte) {}
