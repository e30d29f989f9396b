package server

import (
	"context"
	"errors"
	"net"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// gatedListener hands out connections whose writes it counts and, once
// armed, stops at the next write until release; after that write, every
// write fails with then when it is set.
type gatedListener struct {
	net.Listener
	writes  atomic.Int64
	atGate  atomic.Int64 // writes when the gate stopped one
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	then    error
	failed  atomic.Bool
}

func newGatedListener(l net.Listener) *gatedListener {
	return &gatedListener{Listener: l, entered: make(chan struct{}), release: make(chan struct{})}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gatedServerConn{Conn: c, l: l}, nil
}

type gatedServerConn struct {
	net.Conn
	l *gatedListener
}

func (c *gatedServerConn) Write(p []byte) (int, error) {
	l := c.l
	if l.armed.CompareAndSwap(true, false) {
		l.atGate.Store(l.writes.Load())
		close(l.entered)
		<-l.release
		defer func() { l.failed.Store(l.then != nil) }()
	}
	if l.failed.Load() {
		return 0, l.then
	}
	l.writes.Add(1)
	return c.Conn.Write(p)
}

// burst is a handler that, at the client's first message, arms the gate,
// sends one message, waits until its write is stopped at the gate, queues
// n-1 more and opens the gate.
func burst(l *gatedListener, n int, done chan<- error) HandlerFunc {
	return func(ctx context.Context, c *Conn) {
		if _, err := c.Read(ctx); err != nil {
			done <- err
			return
		}
		l.armed.Store(true)
		var err error
		for i := range n {
			err = errors.Join(err, c.Send(ctx, []byte{byte(i)}))
			if i == 0 {
				<-l.entered
			}
		}
		close(l.release)
		done <- err
		for {
			if _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}
}

// TestSendBatches: the messages the writer finds queued go out in one write
// to the connection, in the order of the Send calls, with and without TLS.
func TestSendBatches(t *testing.T) {
	const n = 40
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[tlsOn], func(t *testing.T) {
			gl := newGatedListener(nil)
			done := make(chan error, 1)
			f := newFixtureOn(t, tlsOn, func(c *Config) { c.Handler = burst(gl, n, done) },
				func(l net.Listener) net.Listener { gl.Listener = l; return gl })
			c := f.authed(t)
			if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte("go")); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				_, m, err := c.ws.ReadMessage()
				if err != nil || len(m) != 1 || m[0] != byte(i) {
					t.Fatalf("message %d: %v %v", i, m, err)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// The write stopped at the gate, then one for the n-1 queued
			// behind it (a Ping may add one).
			if w := gl.writes.Load() - gl.atGate.Load(); w > 3 {
				t.Errorf("%d writes for %d messages, want them gathered", w, n)
			}
		})
	}
}

// TestSendBatchError: a batch that cannot be written ends the socket.
func TestSendBatchError(t *testing.T) {
	gl := newGatedListener(nil)
	gl.then = errors.New("boom")
	done := make(chan error, 1)
	var conn atomic.Pointer[Conn]
	handler := burst(gl, 10, done)
	f := newFixtureOn(t, false, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) { conn.Store(c); handler(ctx, c) })
	}, func(l net.Listener) net.Listener { gl.Listener = l; return gl })
	c := f.authed(t)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte("go")); err != nil {
		t.Fatal(err)
	}
	<-done
	sc := conn.Load()
	select {
	case <-sc.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the socket is still open after its write failed")
	}
	if err := sc.Send(context.Background(), []byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send: %v, want ErrClosed", err)
	}
}

// authed opens an authenticated socket with a raw client.
func (f *fixture) authed(t *testing.T) *rawClient {
	t.Helper()
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ws.Close() })
	if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestChallengeWithUpgrade: the 101 response and the challenge leave in one
// write to the connection, and the accept in one more, with and without
// TLS: a handshake costs the server two writes (and the client two
// wake-ups), not three. Over TLS the count starts once the client has the
// 101, after the TLS handshake's own writes, so it is the accept's alone.
func TestChallengeWithUpgrade(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[tlsOn], func(t *testing.T) {
			gl := newGatedListener(nil)
			f := newFixtureOn(t, tlsOn, nil, func(l net.Listener) net.Listener { gl.Listener = l; return gl })
			before := gl.writes.Load()
			c, _, err := f.dial(t, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.ws.Close()
			want := int64(2)
			if tlsOn {
				before, want = gl.writes.Load(), 1
			}
			if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
				t.Fatal(err)
			}
			if w := gl.writes.Load() - before; w != want {
				t.Errorf("%d writes, want %d: the 101 and the challenge in one, then the accept", w, want)
			}
		})
	}
}

// TestHandshakeWritesInline: until the accept, the goroutine that reads the
// socket writes for it, so a handshake starts no writer goroutine. The
// count is the process's goroutines created per handshake, the client's
// and the server's, from the dial to the accept; it was 2 more with a
// writer goroutine for the challenge and another for the accept. The
// fixture's rate limits are lifted: 50 handshakes in a row are the point.
func TestHandshakeWritesInline(t *testing.T) {
	f := newFixture(t, false, func(c *Config) { c.HandshakeRate, c.HandshakeRatePerAddr = 1e6, 1e6 })
	created := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}
	const n = 50
	var total uint64
	for range n {
		before := created()
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
			t.Fatal(err)
		}
		total += created() - before
		c.ws.Close()
	}
	t.Logf("%.2f goroutines created per handshake", float64(total)/n)
	// 3.9 here: net/http's for the connection and its helpers, the
	// session's; 6.0 with writer goroutines.
	if avg := float64(total) / n; avg > 4.5 {
		t.Errorf("%.2f goroutines created per handshake, want no writer goroutine", avg)
	}
}
