package client

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/wsproof/wsproof/keys"
)

// gatedConn is the client's TCP connection, seen from below the Conn: it
// counts writes and, once armed, stops the next write until release; after
// that write, every write fails with then when it is set.
type gatedConn struct {
	net.Conn
	writes  atomic.Int64
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	then    *error
	fail    atomic.Pointer[error]
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if c.armed.CompareAndSwap(true, false) {
		close(c.entered)
		<-c.release
		defer func() { c.fail.Store(c.then) }()
	}
	if err := c.fail.Load(); err != nil {
		return 0, *err
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// dialGated dials a socket whose TCP connection is gc, and arms gc once the
// handshake is done.
func dialGated(t *testing.T, gc *gatedConn) (*Conn, *testServer) {
	t.Helper()
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	cfg := f.config()
	cfg.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		gc.Conn = c
		return gc, err
	}
	c, err := Dial(ctxT(t), ts.url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	gc.armed.Store(true)
	return c, ts
}

func newGatedConn() *gatedConn {
	return &gatedConn{entered: make(chan struct{}), release: make(chan struct{})}
}

// TestWriteBatches: the messages the writer finds queued go out in one
// write to the connection, in the order of the Write calls, and the server
// receives each of them.
func TestWriteBatches(t *testing.T) {
	const n = 40
	gc := newGatedConn()
	c, _ := dialGated(t, gc)
	ctx := ctxT(t)
	if err := c.Write(ctx, []byte{0}); err != nil {
		t.Fatal(err)
	}
	<-gc.entered // the writer is in the write of message 0
	for i := 1; i < n; i++ {
		if err := c.Write(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	before := gc.writes.Load()
	close(gc.release)
	for i := range n {
		m, err := c.Read(ctx)
		if err != nil || len(m) != 1 || m[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, m, err)
		}
	}
	// Message 0, then one write for the 39 queued behind it (a Ping may
	// add one).
	if w := gc.writes.Load() - before; w > 3 {
		t.Errorf("%d writes for %d messages, want them gathered", w, n)
	}
}

// TestWriteBatchError: a batch that cannot be written ends the socket, and
// Read and Write report the network error.
func TestWriteBatchError(t *testing.T) {
	boom := errors.New("boom")
	gc := newGatedConn()
	gc.then = &boom
	c, _ := dialGated(t, gc)
	ctx := ctxT(t)
	if err := c.Write(ctx, []byte{0}); err != nil {
		t.Fatal(err)
	}
	<-gc.entered
	for i := 1; i < 10; i++ {
		if err := c.Write(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(gc.release)
	var err error
	for err == nil {
		_, err = c.Read(ctx)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Read: %v, want the write's error", err)
	}
	if werr := c.Write(ctx, []byte{1}); !errors.Is(werr, boom) {
		t.Fatalf("Write: %v, want the write's error", werr)
	}
}
