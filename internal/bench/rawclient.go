package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// rawConn is a wsproof client made of gorilla/websocket and package
// protocol, for the runs with thousands of sockets, which spread their
// sockets over many 127.x.y.z source addresses. It was written when
// client.Config had no dialer to choose the local address with (it now has
// NetDialContext; moving these runs to package client would change what
// they measure, so it waits for a full run). The protocol steps, including
// the answers to re-challenges, are package protocol's, as in package
// client.
type rawConn struct {
	ws        *websocket.Conn
	pc        *protocol.Client
	exporter  []byte
	sess      atomic.Pointer[protocol.ClientSession]
	refreshes atomic.Int64
	closing   atomic.Bool
	wmu       sync.Mutex
	done      chan struct{}
	err       error // why the reader ended, set before done closes
}

// dialRaw opens and authenticates one socket.
func dialRaw(ctx context.Context, d *websocket.Dialer, u string, pc *protocol.Client) (*rawConn, error) {
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return nil, upgradeErr(err, resp)
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		ws.Close()
		return nil, errors.New("no wsproof subprotocol")
	}
	c := &rawConn{ws: ws, pc: pc, done: make(chan struct{})}
	if tc, ok := ws.UnderlyingConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		if c.exporter, err = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize); err != nil {
			ws.Close()
			return nil, err
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(dl)
		ws.SetWriteDeadline(dl)
	}
	h := pc.Handshake()
	if err := c.step(func(msg []byte) ([]byte, error) {
		return h.ReadChallenge(msg, rand.Reader, time.Now(), c.exporter)
	}); err != nil {
		ws.Close()
		return nil, err
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, err
	}
	sess, err := h.ReadAccept(msg, time.Now())
	if err != nil {
		ws.Close()
		return nil, err
	}
	c.sess.Store(sess)
	ws.SetReadDeadline(time.Time{})
	ws.SetWriteDeadline(time.Time{})
	return c, nil
}

// statusError is an upgrade the server refused with an HTTP status (429
// from the pre-authentication limits, for example).
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("upgrade refused: HTTP %d", e.code) }

// upgradeErr names the HTTP status of a refused upgrade; gorilla reports
// every refusal as ErrBadHandshake.
func upgradeErr(err error, resp *http.Response) error {
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return &statusError{resp.StatusCode}
	}
	return err
}

// step reads a challenge and writes the response computed by f.
func (c *rawConn) step(f func([]byte) ([]byte, error)) error {
	mt, msg, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	if mt != websocket.TextMessage {
		return errors.New("binary message before authentication")
	}
	resp, err := f(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, resp)
}

// serve reads until the socket ends: it answers Pings (gorilla's default
// handler) and re-challenges, and counts refreshes. The socket is idle
// otherwise.
func (c *rawConn) serve() { c.serveWith(nil) }

// serveWith is serve, handing every binary message to onBinary when it is
// set (the denial-of-service runs' echo sessions).
func (c *rawConn) serveWith(onBinary func([]byte)) {
	defer close(c.done)
	var h *protocol.ClientHandshake
	for {
		mt, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		if mt == websocket.BinaryMessage && onBinary != nil {
			onBinary(msg)
			continue
		}
		if mt != websocket.TextMessage {
			continue
		}
		if h == nil { // a re-challenge
			h = c.pc.Refresh(c.sess.Load())
			resp, err := h.ReadChallenge(msg, rand.Reader, time.Now(), c.exporter)
			if err != nil {
				c.err = err
				return
			}
			c.wmu.Lock()
			err = c.ws.WriteMessage(websocket.TextMessage, resp)
			c.wmu.Unlock()
			if err != nil {
				c.err = err
				return
			}
			continue
		}
		sess, err := h.ReadAccept(msg, time.Now())
		if err != nil {
			c.err = err
			return
		}
		c.sess.Store(sess)
		c.refreshes.Add(1)
		h = nil
	}
}

// failed reports why a socket that should still be open ended.
func (c *rawConn) failed() error {
	select {
	case <-c.done:
		if c.closing.Load() {
			return nil
		}
		if c.err == nil {
			return errors.New("reader ended")
		}
		return fmt.Errorf("session ended: %w", c.err)
	default:
		return nil
	}
}

// close ends the socket without the closing handshake: used at the end of
// a run, after the server child has been stopped.
func (c *rawConn) close() {
	c.closing.Store(true)
	c.ws.Close()
}
