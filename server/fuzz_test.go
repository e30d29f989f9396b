//go:build unix

package server

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/vectors"
	"github.com/wsproof/wsproof/protocol"
)

// pipeListener is an in-memory net.Listener: Dial hands one end of a
// Unix socket pair to Accept. It keeps the fuzzer off the network stack;
// unlike net.Pipe, a socket pair buffers, so a peer that writes while the
// server closes does not stall until a deadline.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	a, err := fileConn(fds[0])
	if err != nil {
		return nil, err
	}
	b, err := fileConn(fds[1])
	if err != nil {
		a.Close()
		return nil, err
	}
	select {
	case l.conns <- a:
		return b, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close() // FileConn duplicates the descriptor
	return net.FileConn(f)
}

// allowedClose reports whether a close code may be sent by a wsproof server:
// one from the spec's table, or a standard one for framing and lifecycle.
func allowedClose(code int) bool {
	switch code {
	case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseProtocolError,
		websocket.CloseUnsupportedData, websocket.CloseInvalidFramePayloadData, websocket.CloseAbnormalClosure,
		websocket.CloseNoStatusReceived:
		return true
	}
	for _, c := range protocol.Codes() {
		if c.CloseCode() == code {
			return true
		}
	}
	return false
}

// FuzzServerSession drives the server's message loop with a fuzzed peer on an
// in-memory connection. The first byte picks the phase: a fuzzed response to
// the challenge, or a fuzzed stream of frames after a real handshake. The
// server must not panic, must close only with allowed codes, and must keep
// serving: every input ends with a fresh, valid handshake. Run it with
//
//	go test ./server -run '^$' -fuzz FuzzServerSession -fuzztime 60s
func FuzzServerSession(f *testing.F) {
	lf, err := vectors.Live()
	if err != nil {
		f.Fatal(err)
	}
	// Seeds: each server-role vector's response, built against a challenge
	// of the same server (the fuzzed socket gets another one, so most seeds
	// exercise the parsers and the transcript checks).
	ps, err := protocol.NewServer(&protocol.ServerConfig{Identity: lf.Identity, Keys: lf.Keys, Registry: lf.Registry})
	if err != nil {
		f.Fatal(err)
	}
	_, seedChallenge, err := ps.Start(rand.Reader, time.Unix(vectors.Now, 0), nil)
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	for _, c := range lf.Cases {
		if !c.TLS && c.SessionKID == "" {
			f.Add(append([]byte{0}, c.Build(seedChallenge, nil)...))
			n++
		}
	}
	if n == 0 {
		f.Fatal("no seeds")
	}
	f.Add([]byte{1, 0, 5, 'h', 'e', 'l', 'l', 'o', 1, 3, '{', '}', ' ', 2, 0})
	f.Add([]byte{1, 0, 255})

	start := time.Now()
	clock := func() time.Time { return time.Unix(vectors.Now, 0).Add(time.Since(start)) }
	srv, err := New(&Config{
		Identity: lf.Identity, Keys: lf.Keys, Registry: lf.Registry, RequiredGroups: lf.RequiredGroups,
		Handler: echo{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Time: clock,
		HandshakeRate: 1e6, HandshakeRatePerAddr: 1e6, HandshakeTimeout: 2 * time.Second, MaxMessageSize: 1024,
	})
	if err != nil {
		f.Fatal(err)
	}
	l := newPipeListener()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: time.Second}
	go hs.Serve(l)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Shutdown(ctx)
		l.Close()
	})
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, NetDialContext: l.dial, HandshakeTimeout: 2 * time.Second}
	kid := "client-eddsa"
	e, _ := lf.Registry.Lookup(kid)
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: lf.Clients[kid], Algorithm: e.Algorithm,
		ServerKeys: lf.Keys.Public(), ServerIdentity: lf.Identity})
	if err != nil {
		f.Fatal(err)
	}
	handshake := func(t *testing.T, ws *websocket.Conn) {
		_, challenge, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		h := pc.Handshake()
		resp, err := h.ReadChallenge(challenge, rand.Reader, clock(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.TextMessage, resp)
		_, accept, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("server refused a valid handshake: %v", err)
		}
		if _, err := h.ReadAccept(accept, clock()); err != nil {
			t.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ws, _, err := d.Dial("ws://fuzz/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if data[0]%2 == 0 {
			if _, _, err := ws.ReadMessage(); err != nil { // the challenge
				t.Fatal(err)
			}
			ws.WriteMessage(websocket.TextMessage, data[1:])
		} else {
			handshake(t, ws)
			// Frames: [kind][length][payload...], kind%3 = binary, text, ping.
			for rest := data[1:]; len(rest) >= 2; {
				kind, size := rest[0]%3, int(rest[1])
				rest = rest[2:]
				size = min(size, len(rest))
				payload := rest[:size]
				rest = rest[size:]
				mt := []int{websocket.BinaryMessage, websocket.TextMessage, websocket.PingMessage}[kind]
				if mt == websocket.PingMessage {
					err = ws.WriteControl(mt, payload, time.Now().Add(time.Second))
				} else {
					err = ws.WriteMessage(mt, payload)
				}
				if err != nil {
					break
				}
			}
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		for {
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if !allowedClose(ce.Code) {
					t.Fatalf("server closed with %d %q", ce.Code, ce.Text)
				}
				break
			}
			if err != nil {
				break
			}
		}
		// The server keeps serving.
		again, _, err := d.Dial("ws://fuzz/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		again.SetReadDeadline(time.Now().Add(5 * time.Second))
		handshake(t, again)
	})
}
