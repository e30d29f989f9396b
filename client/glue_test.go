package client

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// TestIdentityFromURL: without Config.ServerIdentity the client expects the
// identity of the URL it dials (spec section "Server identity"), on every
// dial of Keep too; the same server under another name is refused with
// audience_mismatch, whose error names both identities.
func TestIdentityFromURL(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{urlIdentity: true, afterAccept: func(n int, sc *serverConn) {
		if n == 1 {
			sc.closeWith(1001, "")
		}
	}})
	cfg := f.config()
	cfg.ServerIdentity = ""
	sessions := 0
	err := Keep(ctxT(t), ts.url, cfg, fastBackoff, func(ctx context.Context, c *Conn) error {
		sessions++
		if sessions == 1 {
			return readUntilError(ctx, c) // 1001: Keep dials again
		}
		echoOnce(t, c, "found by its URL")
		return nil
	})
	if err != nil || sessions != 2 {
		t.Fatalf("Keep: %v after %d sessions", err, sessions)
	}

	want, _ := protocol.IdentityFromURL(ts.url)
	other := strings.Replace(ts.url, "127.0.0.1", "localhost", 1)
	otherID, _ := protocol.IdentityFromURL(other)
	_, retry, err := dialOnce(t, other, cfg)
	var ie *protocol.IdentityError
	if protocol.CodeOf(err) != protocol.CodeAudienceMismatch || !errors.As(err, &ie) || retry {
		t.Fatalf("Dial %s: %v (retry %v), want a terminal audience_mismatch with an IdentityError", other, err, retry)
	}
	if ie.Got != want || ie.Want != otherID {
		t.Errorf("IdentityError %+v, want Got %s, Want %s", ie, want, otherID)
	}
	// Keep's sockets closed too: 1001 answered, and 1000.
	codes := []int{ts.waitClose(), ts.waitClose(), ts.waitClose()}
	slices.Sort(codes)
	if !slices.Equal(codes, []int{1000, 1001, 4003}) {
		t.Errorf("close codes %v, want 1000, 1001 and 4003", codes)
	}
}

// TestPlaintext: ws:// to a host that is not loopback is refused before any
// network I/O unless Config.InsecurePlaintext is set (spec section "Opening
// handshake").
func TestPlaintext(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	var dials atomic.Int32
	cfg := f.config()
	// Every connection goes to the test server on 127.0.0.1, whatever the
	// URL's host: nothing leaves the machine.
	cfg.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, strings.TrimPrefix(ts.url, "ws://"))
	}
	for _, url := range []string{"ws://plant-3.example/ws", "ws://10.0.0.1:7700/ws", "ws://[2001:db8::1]/ws"} {
		_, retry, err := dialOnce(t, url, cfg)
		if !errors.Is(err, ErrPlaintext) || retry {
			t.Errorf("Dial %s: %v (retry %v), want ErrPlaintext, terminal", url, err, retry)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("%d connections opened for refused URLs", n)
	}
	cfg.InsecurePlaintext = true
	c, err := Dial(ctxT(t), "ws://plant-3.example/ws", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "in the clear, as configured")
	for _, url := range []string{"ws://localhost:1/ws", "ws://127.0.0.9:1/", "ws://[::1]:1/"} {
		if _, err := Dial(ctxT(t), url, f.config()); errors.Is(err, ErrPlaintext) {
			t.Errorf("Dial %s refused as plaintext: loopback is allowed", url)
		}
	}
}

// TestWriteTooLarge: a message longer than the accept's max_size is refused
// with protocol.ErrMessageTooLarge, and the socket stays open (row C23).
func TestWriteTooLarge(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{maxMessageSize: 100})
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Session().MaxMessageSize; got != 100 {
		t.Fatalf("session max_size %d, want 100", got)
	}
	if err := c.Write(ctxT(t), make([]byte, 101)); !errors.Is(err, protocol.ErrMessageTooLarge) {
		t.Fatalf("Write of 101 octets: %v, want protocol.ErrMessageTooLarge", err)
	}
	echoOnce(t, c, strings.Repeat("x", 100))
}

// TestWriteDeadline: a write that does not complete within the write
// deadline, because the server stopped reading, ends the socket with
// slow_reader, which Keep may retry (row C25).
func TestWriteDeadline(t *testing.T) {
	defer func(d time.Duration) { writeTimeout = d }(writeTimeout)
	writeTimeout = 300 * time.Millisecond
	f := newFixture(t, keys.EdDSA)
	release := make(chan struct{})
	ts := newServer(t, f, serverOptions{afterAccept: func(int, *serverConn) { <-release }})
	defer close(release)
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, c.Session().MaxMessageSize)
	for {
		if err = c.Write(ctxT(t), msg); err != nil {
			break
		}
	}
	if protocol.CodeOf(err) != protocol.CodeSlowReader || !c.retryAfter(err) {
		t.Fatalf("Write: %v, want a retryable slow_reader", err)
	}
	if _, rerr := c.Read(ctxT(t)); rerr != err {
		t.Errorf("Read: %v, want Write's %v", rerr, err)
	}
}

// TestBackPressure: with 16 messages waiting for Read, the Conn stops reading
// the socket; Read then gets every message, in order.
func TestBackPressure(t *testing.T) {
	const n = 40
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{afterAccept: func(_ int, sc *serverConn) {
		for i := range n {
			sc.write(websocket.BinaryMessage, []byte{byte(i)})
		}
	}})
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.in) < inQueue || c.pending.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("queue %d, pending %d", len(c.in), c.pending.Load())
		}
		time.Sleep(time.Millisecond)
	}
	inputs := c.inputs.Load()
	time.Sleep(100 * time.Millisecond)
	if got := c.inputs.Load(); got != inputs {
		t.Fatalf("the Conn read %d more messages with a full queue", got-inputs)
	}
	for i := range n {
		p, err := c.Read(ctxT(t))
		if err != nil || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("message %d: %v %v", i, p, err)
		}
	}
}

// TestKeepClientDetected: Keep reconnects after the retryable failures the
// client's state machine detects itself: the handshake deadline, the
// keepalive timeout, the write deadline; the server sees each one's close
// code.
func TestKeepClientDetected(t *testing.T) {
	defer func(d time.Duration) { writeTimeout = d }(writeTimeout)
	writeTimeout = 300 * time.Millisecond
	f := newFixture(t, keys.EdDSA)
	var calls atomic.Int32 // calls of fn in the case
	for _, tc := range []struct {
		name  string
		code  protocol.Code
		first func(sc *serverConn) // the first socket, after the accept
		fn    func(ctx context.Context, c *Conn) error
		cfg   func(*Config)
	}{
		{name: "keepalive_timeout", code: protocol.CodeKeepaliveTimeout,
			first: func(*serverConn) { time.Sleep(500 * time.Millisecond) }, // neither reads nor answers Pings
			fn:    readUntilError, cfg: func(c *Config) { c.PingInterval = 20 * time.Millisecond }},
		{name: "slow_reader", code: protocol.CodeSlowReader,
			first: func(*serverConn) { time.Sleep(2 * time.Second) },
			fn: func(ctx context.Context, c *Conn) error {
				if calls.Add(1) > 1 {
					return readUntilError(ctx, c)
				}
				msg := make([]byte, c.Session().MaxMessageSize)
				for {
					if err := c.Write(ctx, msg); err != nil {
						return err
					}
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			ts := newServer(t, f, serverOptions{afterAccept: func(n int, sc *serverConn) {
				if n == 1 {
					tc.first(sc)
				} else {
					sc.closeWith(1000, "")
				}
			}})
			cfg := f.config()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			err := Keep(ctxT(t), ts.url, cfg, fastBackoff, tc.fn)
			var ce *CloseError
			if n := ts.sockets.Load(); n != 2 || !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("Keep: %v after %d sockets, want a reconnection after %s", err, n, tc.code)
			}
		})
	}
	t.Run("handshake_timeout", func(t *testing.T) {
		var first atomic.Bool
		first.Store(true)
		ts := newServer(t, f, serverOptions{script: func(sc *serverConn) {
			if first.Swap(false) {
				return // silent: no challenge
			}
			sc.challenge()
			sc.closeWith(4011, "")
		}})
		cfg := f.config()
		cfg.HandshakeTimeout = 200 * time.Millisecond
		err := Keep(ctxT(t), ts.url, cfg, fastBackoff, readUntilError)
		var ce *CloseError
		if n := ts.sockets.Load(); n != 2 || !errors.As(err, &ce) || ce.Code != 4011 {
			t.Fatalf("Keep: %v after %d sockets, want a reconnection after handshake_timeout", err, n)
		}
		if code := ts.waitClose(); code != 4008 {
			t.Errorf("first close code %d, want 4008", code)
		}
	})
}

// TestRefusedCloseCodes: gorilla refuses Close frames whose code it does not
// know; the state machine still gets the server's code and decides (1014 bad
// gateway: retry; 2000: terminal).
func TestRefusedCloseCodes(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	for code, retry := range map[int]bool{1014: true, 2000: false} {
		ts := newServer(t, f, serverOptions{afterAccept: func(_ int, sc *serverConn) { sc.closeWith(code, "") }})
		c, err := Dial(ctxT(t), ts.url, f.config())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(ctxT(t))
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != code || ce.Retryable() != retry || c.retryAfter(err) != retry {
			t.Errorf("close %d: Read: %v, want a CloseError with retry %v", code, err, retry)
		}
		c.Close()
	}
}
