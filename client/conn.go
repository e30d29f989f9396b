package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// Conn is an authenticated wsproof socket. Application data travels in
// binary WebSocket messages; the server's re-challenges are answered inside
// the Conn, so its Session changes over time while messages keep flowing in
// both directions.
//
// Read, Write, Session and Close are safe for concurrent use.
//
// A Conn runs two goroutines: one reads from the socket, answers
// re-challenges and queues application messages for Read; the other is the
// only writer of data messages and sends a Ping every 30 seconds. Both end
// when the socket closes, whoever closes it. The socket ends when:
//
//   - the application calls Close (Read and Write then report net.ErrClosed);
//   - the server sends a Close frame, which the Conn answers (Read and Write
//     then report a *CloseError with the server's code);
//   - the Conn detects a protocol failure, for which it sends the Close frame
//     of the spec's error table (Read and Write then report an error for
//     which protocol.CodeOf gives the code);
//   - a write does not complete within 10 seconds, no frame at all arrives
//     for 75 seconds, or the network fails (Read and Write then report that
//     error; a TCP connection that ends without a Close frame is reported as
//     a *CloseError with code 1006).
//
// The application must keep calling Read while the server sends it
// messages: once 16 received messages are waiting, the Conn stops reading
// the socket, and so stops answering Pings and re-challenges until Read
// makes room. The response to a re-challenge is signed on the reading
// goroutine: a slow Signer delays received messages, never sent ones.
type Conn struct {
	ws       *websocket.Conn
	pc       *protocol.Client
	rand     io.Reader
	now      func() time.Time
	exporter []byte
	maxMsg   int

	sess atomic.Pointer[protocol.ClientSession]

	in   chan []byte // received application messages, for Read
	out  chan []byte // application messages, for the writer
	ctrl chan []byte // responses to re-challenges, for the writer, ahead of out

	wmu       sync.RWMutex  // held shared by Write while it queues, exclusively by Close
	closing   chan struct{} // closed when Close is called: Write refuses
	flush     chan struct{} // closed once no Write can queue: the writer drains and says goodbye
	closeOnce sync.Once
	flushErr  error // set by the writer before it ends, read by Close after

	errMu sync.Mutex
	err   error         // why the socket ended (or is ending); the first reason wins
	dead  bool          // the TCP connection is closed
	done  chan struct{} // closed when dead becomes true

	wg sync.WaitGroup
}

func newConn(s *setup, ws *websocket.Conn, sess *protocol.ClientSession, exporter []byte) *Conn {
	c := &Conn{
		ws:       ws,
		pc:       s.pc,
		rand:     s.rand,
		now:      s.now,
		exporter: exporter,
		maxMsg:   s.maxMsg,
		in:       make(chan []byte, inQueue),
		out:      make(chan []byte, outQueue),
		ctrl:     make(chan []byte, 1),
		closing:  make(chan struct{}),
		flush:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.sess.Store(sess)
	ws.SetWriteDeadline(time.Time{})
	ws.SetPingHandler(func(data string) error {
		ws.SetReadDeadline(time.Now().Add(idleTimeout))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
			return err
		}
		return nil
	})
	ws.SetPongHandler(func(string) error {
		ws.SetReadDeadline(time.Now().Add(idleTimeout))
		return nil
	})
	ws.SetCloseHandler(func(code int, text string) error {
		// Record the server's reason before answering: once our Close
		// frame is out, the writer's next write fails, and that failure
		// must not pass for the reason the socket ended.
		c.setErr(closeErrorOf(code, text))
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(writeTimeout))
		return nil
	})
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c
}

// Session returns the session of the most recent accept. It changes after
// each refresh; the returned value is never modified and must not be
// modified by the caller.
func (c *Conn) Session() *protocol.ClientSession { return c.sess.Load() }

// Read returns the next application message, in the order the server sent
// it. It blocks until a message arrives, ctx is done, or the socket has
// ended; messages received before the end are still returned first.
//
// When ctx is done Read returns ctx.Err() and the Conn stays usable. After
// the socket has ended Read returns why: a *CloseError when the server closed
// it, net.ErrClosed after Close, an error for which protocol.CodeOf reports
// the code when the client detected a protocol failure, or the network error.
func (c *Conn) Read(ctx context.Context) ([]byte, error) {
	select {
	case p := <-c.in:
		return p, nil
	default:
	}
	select {
	case p := <-c.in:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		select {
		case p := <-c.in:
			return p, nil
		default:
			return nil, c.error()
		}
	}
}

// Write queues p as one binary message and returns; it does not wait for the
// message to reach the network. It copies p, so the caller may reuse it.
// Messages from one goroutine are sent in the order of their Write calls.
//
// When 64 messages are already queued, Write blocks until there is room, ctx
// is done (it returns ctx.Err() and p is not sent), or the socket ends. A
// write that fails after Write returned ends the socket; the next Read or
// Write reports it. Messages queued before Close are sent before the Close
// frame. After the socket has ended Write returns the same error as Read.
func (c *Conn) Write(ctx context.Context, p []byte) error {
	c.wmu.RLock()
	defer c.wmu.RUnlock()
	select {
	case <-c.closing:
		return errClosed
	case <-c.done:
		return c.error()
	default:
	}
	m := make([]byte, len(p))
	copy(m, p)
	select {
	case c.out <- m:
		return nil
	case <-c.closing:
		return errClosed
	case <-c.done:
		return c.error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the socket with close code 1000 (normal closure). It sends the
// messages already queued by Write, then the Close frame, waits for the
// server's Close frame, and closes the TCP connection; all of that takes at
// most 10 seconds, after which the TCP connection is closed regardless. When
// Close returns, the Conn's goroutines have ended.
//
// Close returns an error only when a queued message or the Close frame could
// not be sent. Closing a Conn whose socket has already ended returns nil, and
// so does every call after the first.
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.setErr(errClosed)
		close(c.closing) // Writes blocked on a full queue give up...
		c.wmu.Lock()     // ...and once they have, none can queue again.
		c.wmu.Unlock()
		close(c.flush)
	})
	if first {
		t := time.NewTimer(closeTimeout)
		select {
		case <-c.done:
		case <-t.C:
			c.shutdown()
		}
		t.Stop()
	}
	c.wg.Wait()
	if first {
		return c.flushErr
	}
	return nil
}

// setErr records why the socket ends, unless a reason is already recorded.
func (c *Conn) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// shutdown closes the TCP connection, which ends both goroutines.
func (c *Conn) shutdown() {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.dead {
		return
	}
	if c.err == nil {
		c.err = errClosed
	}
	c.dead = true
	c.ws.Close()
	close(c.done)
}

func (c *Conn) fail(err error) {
	c.setErr(err)
	c.shutdown()
}

func (c *Conn) error() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// abort ends the socket for a protocol failure detected by the client: it
// sends the Close frame of the failure's code (spec section "Closing"), waits
// briefly for the server's, and closes.
func (c *Conn) abort(err error) {
	c.setErr(fmt.Errorf("client: %w", err))
	sendFailure(c.ws, err)
	linger(c.ws)
	c.shutdown()
}

// readLoop runs the OPEN and REFRESHING rows of spec section "Client state
// machine".
func (c *Conn) readLoop() {
	defer c.wg.Done()
	st := open
	var h *protocol.ClientHandshake
	for {
		c.ws.SetReadDeadline(time.Now().Add(idleTimeout))
		typ, msg, err := readMessage(c.ws, c.maxMsg)
		if err != nil {
			c.fail(readError(err))
			return
		}
		if err := admit(st, typ, msg, c.maxMsg); err != nil {
			c.abort(err)
			return
		}
		switch {
		case typ == websocket.BinaryMessage:
			if !c.deliver(msg) {
				return
			}
		case st == open: // a re-challenge
			h = c.pc.Refresh(c.sess.Load())
			resp, err := h.ReadChallenge(msg, c.rand, c.now(), c.exporter)
			if err != nil {
				c.abort(err)
				return
			}
			select {
			case c.ctrl <- resp:
			case <-c.done:
				return
			}
			st = refreshing
		default: // the accept of a refresh
			sess, err := h.ReadAccept(msg, c.now())
			if err != nil {
				c.abort(err)
				return
			}
			c.sess.Store(sess)
			st, h = open, nil
		}
	}
}

// deliver queues a received message for Read. While Close is in progress a
// message that finds the queue full is dropped, so that an application that
// has stopped reading cannot hold up the closing handshake.
func (c *Conn) deliver(msg []byte) bool {
	select {
	case c.in <- msg:
		return true
	default:
	}
	select {
	case c.in <- msg:
		return true
	case <-c.closing:
		return true
	case <-c.done:
		return false
	}
}

// readError turns a failed read into the reason the socket ended.
func readError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return closeErrorOf(ce.Code, ce.Text)
	}
	return fmt.Errorf("client: read: %w", err)
}

// writeLoop is the only goroutine that writes data messages. Responses to
// re-challenges go before queued application messages, so that a full queue
// cannot delay a refresh.
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case m := <-c.ctrl:
			if c.write(websocket.TextMessage, m) != nil {
				return
			}
			continue
		default:
		}
		var err error
		select {
		case m := <-c.ctrl:
			err = c.write(websocket.TextMessage, m)
		case m := <-c.out:
			err = c.write(websocket.BinaryMessage, m)
		case <-ping.C:
			if err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				c.fail(fmt.Errorf("client: write: %w", err))
			}
		case <-c.flush:
			c.flushErr = c.goodbye()
			return
		case <-c.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// goodbye sends what Write queued, then the Close frame of a normal closure.
// The read loop sees the server's answer and closes the TCP connection.
func (c *Conn) goodbye() error {
	select {
	case <-c.done:
		return nil // the socket ended before Close: nothing to say
	default:
	}
	for {
		var err error
		select {
		case m := <-c.ctrl:
			err = c.write(websocket.TextMessage, m)
		case m := <-c.out:
			err = c.write(websocket.BinaryMessage, m)
		default:
			err := c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeTimeout))
			if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
				c.shutdown()
				return fmt.Errorf("client: close: %w", err)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// write sends one data message within the write deadline. A failure ends the
// socket.
func (c *Conn) write(typ int, m []byte) error {
	c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(typ, m); err != nil {
		err = fmt.Errorf("client: write: %w", err)
		c.fail(err)
		return err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
