package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/wsio"
	"github.com/wsproof/wsproof/protocol"
)

// Conn is an authenticated wsproof socket. Application data travels in
// binary WebSocket messages; the server's re-challenges are answered inside
// the Conn, so its Session changes over time while messages keep flowing in
// both directions.
//
// Read, Write, Session and Close are safe for concurrent use.
//
// One protocol.ClientConn, the client state machine of spec section "Client
// state machine", decides everything about the socket, from the first
// challenge to the end; the Conn reports to it what happens on the socket and
// carries out what it asks; no lock is held during network I/O. A Conn runs
// two goroutines: one reads from the socket, the other is the only writer of
// data messages (responses to re-challenges go ahead of queued application
// messages) and sends the client's Pings, every Config.PingInterval; a third
// carries out the closing handshake. All end when the socket ends, whoever
// ends it. The socket ends when:
//
//   - the application calls Close (Read and Write then report net.ErrClosed);
//   - the server sends a Close frame, which the Conn answers (Read and Write
//     then report a *CloseError with the server's code);
//   - the state machine detects a failure: a message its state does not
//     allow, a re-challenge that does not verify, nothing read for two Ping
//     intervals (keepalive_timeout), a write that does not complete within
//     10 seconds (slow_reader). The Conn sends the Close frame of the spec's
//     error table, and Read and Write then report a *protocol.ProtocolError,
//     wrapped, for which protocol.CodeOf gives the code;
//   - the connection ends without a Close frame (Read and Write then report a
//     *CloseError with code 1006, or the network error).
//
// The application must keep calling Read while the server sends it messages:
// once 16 received messages are waiting, the Conn stops reading the socket
// until Read makes room (back-pressure). While it does not read, it answers
// neither Pings nor re-challenges, and sees nothing the server sends: a
// re-challenge then waits, and the server ends the socket with token_expired
// (retryable) if the application stops reading for longer than the server's
// RefreshBefore (60 seconds by default); and since the Conn's own keepalive
// counts only what it reads, it ends the socket with keepalive_timeout
// (retryable) after two Ping intervals without reading. The response to a
// re-challenge is signed on the reading goroutine: a slow Signer delays
// received messages, never sent ones.
type Conn struct {
	ws    *websocket.Conn
	bc    *wsio.BatchConn // under ws: the writer gathers its writes
	clock clock
	wdl   wsio.Deadline // the writer's write deadline (writer only)

	sess atomic.Pointer[protocol.ClientSession]
	in   chan []byte // received application messages, for Read

	mu       sync.Mutex // serializes the machine's inputs and guards what follows
	pc       *protocol.ClientConn
	ctrl     [][]byte // control messages (responses) to write, ahead of out
	out      [][]byte // application messages to write
	ping     bool     // a Ping to write
	timer    timer    // the machine's one timer
	accept   bool     // the first accept has been processed
	end      protocol.Action
	err      error // why the socket ended: what Read and Write return
	appClose bool  // the socket ended by the application's Close: flush the queue
	quick    bool  // Dial gave up: do not wait long for the server's Close frame
	flushErr error

	slots      chan struct{} // one per application message in out: bounds it
	wake       chan struct{} // the writer has something to do
	accepted   chan struct{} // closed at the first accept
	ended      chan struct{} // closed when the machine ends the socket
	flushed    chan struct{} // closed when the writer has stopped
	readerDone chan struct{} // closed when the reader has stopped
	done       chan struct{} // closed when the connection is closed
	closing    chan struct{} // closed when the application calls Close
	closeOnce  sync.Once

	pending atomic.Int64 // messages the machine delivered that are not yet in the queue
	inputs  atomic.Int64 // inputs the machine has processed, for tests

	wg sync.WaitGroup
}

// newConn starts the state machine of a socket whose upgrade has just
// succeeded, and the Conn's reader and writer.
func newConn(s *setup, pc *protocol.Client, ws *websocket.Conn, bc *wsio.BatchConn, isTLS bool, exporter []byte, deadline time.Time) *Conn {
	c := &Conn{
		ws:         ws,
		bc:         bc,
		clock:      s.clock,
		in:         make(chan []byte, inQueue),
		slots:      make(chan struct{}, outQueue),
		wake:       make(chan struct{}, 1),
		accepted:   make(chan struct{}),
		ended:      make(chan struct{}),
		flushed:    make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
		closing:    make(chan struct{}),
	}
	ws.SetPingHandler(c.onPing)
	ws.SetPongHandler(func(string) error {
		c.mu.Lock()
		c.run(c.pc.HandlePong(c.clock.Now()), nil)
		c.mu.Unlock()
		c.inputs.Add(1)
		return nil
	})
	ws.SetCloseHandler(c.onClose)
	c.mu.Lock()
	var acts []protocol.Action
	c.pc, acts = pc.NewConn(s.rand, c.clock.Now(), deadline, isTLS, exporter)
	c.run(acts, nil)
	c.mu.Unlock()
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
// it or the connection ended without a Close frame, net.ErrClosed after
// Close, an error for which protocol.CodeOf reports the code when the client
// detected a failure, or the network error.
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
	case <-c.ended:
	}
	// The machine ended the socket. What it delivered before may still be on
	// its way from the reader to the queue.
	for {
		pending := c.pending.Load()
		select {
		case p := <-c.in:
			return p, nil
		default:
		}
		if pending == 0 {
			return nil, c.error()
		}
		select {
		case p := <-c.in:
			return p, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.readerDone:
		}
	}
}

// Write queues p as one binary message and returns; it does not wait for the
// message to reach the network. It copies p, so the caller may reuse it.
// Messages from one goroutine are sent in the order of their Write calls.
//
// A message longer than the max_size of the server's accept is refused with
// protocol.ErrMessageTooLarge, and the socket stays open (spec row C23).
// When 64 messages are already queued, Write blocks until there is room, ctx
// is done (it returns ctx.Err() and p is not sent), or the socket ends. A
// write that fails after Write returned ends the socket (one that does not
// complete within 10 seconds, or at most 1/64 more, with slow_reader, which
// is retryable); the next Read or Write reports it. Messages queued before
// Close are sent before the Close frame. After the socket has ended Write
// returns the same error as Read.
func (c *Conn) Write(ctx context.Context, p []byte) error {
	select {
	case <-c.ended:
		return c.error()
	default:
	}
	m := make([]byte, len(p))
	copy(m, p)
	select {
	case c.slots <- struct{}{}:
	case <-c.ended:
		return c.error()
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	acts, err := c.pc.Send(c.clock.Now(), m)
	c.run(acts, nil)
	if err != nil {
		<-c.slots
	}
	end := c.err
	c.mu.Unlock()
	c.inputs.Add(1)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, protocol.ErrMessageTooLarge):
		return err
	case end != nil:
		return end
	}
	return fmt.Errorf("client: %w", err)
}

// Close ends the socket with close code 1000 (normal closure), and the
// client does not reconnect (spec row C26). It sends the messages already
// queued by Write, then the Close frame, waits for the server's Close frame,
// and closes the TCP connection; all of that takes at most 10 seconds, after
// which the TCP connection is closed regardless. When Close returns, the
// Conn's goroutines have ended.
//
// Close returns an error only when a queued message or the Close frame could
// not be sent. Closing a Conn whose socket has already ended returns nil, and
// so does every call after the first.
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.closing)
		c.mu.Lock()
		c.run(c.pc.Close(c.clock.Now()), errClosed)
		c.mu.Unlock()
		c.inputs.Add(1)
	})
	<-c.done
	c.wg.Wait()
	if !first {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushErr
}

// abandon ends a socket whose Dial gave up (its context ended): the
// application closes it (1000), without waiting long for the server.
func (c *Conn) abandon() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.mu.Lock()
		c.quick = true
		c.run(c.pc.Close(c.clock.Now()), errClosed)
		c.mu.Unlock()
		c.inputs.Add(1)
	})
}

func (c *Conn) error() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return errClosed
	}
	return c.err
}

// ending returns why the socket ended and whether the state machine lets the
// client reconnect (spec section "Retry").
func (c *Conn) ending() (error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.end.Retry
}

// retryAfter reports whether err, returned by Keep's fn, is the end of this
// socket (the error Read or Write returned, possibly wrapped) and the state
// machine lets the client reconnect after it.
func (c *Conn) retryAfter(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil && c.end.Retry && errors.Is(err, c.err)
}

// run carries out the actions of one input of the machine, in order, and
// returns the application messages to deliver, which the caller hands to
// Read's queue after releasing c.mu. It never blocks and does no network
// I/O: sends go to the writer's queues, the close to its own goroutine. c.mu
// is held. cause is what Read and Write report if the input ends the socket
// for a reason other than a failure the machine detected: the server's
// *CloseError, the network error, net.ErrClosed for the application's Close.
func (c *Conn) run(acts []protocol.Action, cause error) (deliver [][]byte) {
	for _, a := range acts {
		switch a.Kind {
		case protocol.ActionSend:
			if a.Text {
				c.ctrl = append(c.ctrl, a.Data)
			} else {
				c.out = append(c.out, a.Data)
			}
			c.kick()
		case protocol.ActionPing:
			c.ping = true
			c.kick()
		case protocol.ActionDeliver:
			c.pending.Add(1)
			deliver = append(deliver, a.Data)
		case protocol.ActionAccepted:
			c.sess.Store(c.pc.Session())
			if !c.accept {
				c.accept = true
				close(c.accepted)
			}
		case protocol.ActionTimer:
			d := a.At.Sub(c.clock.Now())
			if c.timer == nil {
				c.timer = c.clock.AfterFunc(d, c.onTimer)
			} else {
				c.timer.Reset(d)
			}
		case protocol.ActionClose:
			c.end = a
			c.err = endError(a, cause)
			c.appClose = a.Code == "" && a.CloseCode == protocol.CloseNormal
			if c.timer != nil {
				c.timer.Stop()
			}
			close(c.ended)
			c.kick()
			c.wg.Add(1)
			go c.finish(a, c.appClose, c.quick)
		}
	}
	clear(acts) // the machine reuses the slice: keep no data alive through it
	return deliver
}

// endError is what Read and Write return after the machine ended the socket
// with a: the failure the machine detected, or the cause of the input.
func endError(a protocol.Action, cause error) error {
	if a.Code != "" && a.PeerCode == 0 {
		var pe *protocol.ProtocolError
		if !errors.As(a.Err, &pe) || pe.Code != a.Code {
			pe = &protocol.ProtocolError{Code: a.Code, Err: a.Err}
		}
		return fmt.Errorf("client: %w", pe)
	}
	if cause != nil {
		return cause
	}
	if a.Err != nil {
		return fmt.Errorf("client: %w", a.Err)
	}
	return errClosed
}

// kick wakes the writer. c.mu is held.
func (c *Conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// onTimer is the machine's timer: whatever is due at its time (the handshake
// deadline, the keepalive timeout, a Ping).
func (c *Conn) onTimer() {
	c.mu.Lock()
	if c.pc.State() != protocol.StateClosed {
		c.run(c.pc.HandleTimeout(c.clock.Now()), nil)
	}
	c.mu.Unlock()
	c.inputs.Add(1)
}

// onPing answers the server's Ping (RFC 6455), after telling the machine
// that the server is alive (row C22).
func (c *Conn) onPing(data string) error {
	c.mu.Lock()
	open := c.pc.State() != protocol.StateClosed
	c.run(c.pc.HandlePong(c.clock.Now()), nil)
	c.mu.Unlock()
	c.inputs.Add(1)
	if !open {
		return nil
	}
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
	switch {
	case err == nil, errors.Is(err, websocket.ErrCloseSent):
		return nil
	case isTimeout(err):
		c.writeFailed(err) // row C25: the server is not reading
		return nil
	}
	return err
}

// onClose reports the server's Close frame to the machine (row C27) and, when
// that ended the socket, answers it as RFC 6455 requires.
func (c *Conn) onClose(code int, text string) error {
	c.mu.Lock()
	open := c.pc.State() != protocol.StateClosed
	c.run(c.pc.HandlePeerClose(c.clock.Now(), code), closeErrorOf(code, text))
	reply := open && c.end.CloseCode == 0
	c.mu.Unlock()
	c.inputs.Add(1)
	if reply {
		msg := []byte{}
		if code != websocket.CloseNoStatusReceived {
			msg = websocket.FormatCloseMessage(code, "")
		}
		c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(lingerTimeout))
	}
	return nil
}

// readLoop reads every message and frame of the socket into the machine.
// It reads at most one octet more than the largest message the machine's
// state allows for the message's type: the machine applies the exact limit
// before anything else (spec section "Messages and framing"). gorilla's own
// read limit is not used because it closes with 1009, and the spec requires
// 4002.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	defer close(c.readerDone)
	wsio.GrowStack() // the challenge's verify and the response's signature are next
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			c.readFailed(err)
			return
		}
		text := typ == websocket.TextMessage
		c.mu.Lock()
		limit := c.pc.ReadLimit(text)
		c.mu.Unlock()
		msg, err := wsio.ReadMessage(r, limit+1)
		if err != nil {
			c.readFailed(err)
			return
		}
		c.mu.Lock()
		deliver := c.run(c.pc.HandleMessage(c.clock.Now(), text, msg), nil)
		c.mu.Unlock()
		c.inputs.Add(1)
		for _, m := range deliver {
			c.deliver(m)
		}
	}
}

// deliver queues a received message for Read. With the queue full it waits
// for room, and meanwhile reads nothing: back-pressure on the server. Once
// the application has called Close, it drops the message instead.
func (c *Conn) deliver(m []byte) {
	defer c.pending.Add(-1)
	select {
	case c.in <- m:
		return
	default:
	}
	select {
	case c.in <- m:
	case <-c.closing:
	}
}

// readFailed reports the end of the reading side: the connection ended
// without a Close frame (row C28). A Close frame has been reported by
// onClose already.
func (c *Conn) readFailed(err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		return
	}
	c.mu.Lock()
	if code, ok := refusedCloseCode(err); ok {
		c.run(c.pc.HandlePeerClose(c.clock.Now(), code), closeErrorOf(code, ""))
	} else {
		var cause error = closeErrorOf(websocket.CloseAbnormalClosure, "")
		if ce == nil {
			cause = fmt.Errorf("client: read: %w", err)
		}
		c.run(c.pc.HandleLost(c.clock.Now(), err), cause)
	}
	c.mu.Unlock()
	c.inputs.Add(1)
}

// refusedCloseCode recognizes the error of a Close frame whose code gorilla
// refuses to pass on: codes it does not know, 1014 (bad gateway) among them,
// for which spec section "Retry" has rules all the same.
func refusedCloseCode(err error) (int, bool) {
	s, ok := strings.CutPrefix(err.Error(), "websocket: bad close code ")
	if !ok {
		return 0, false
	}
	code, err := strconv.Atoi(s)
	return code, err == nil
}

// writeLoop is the only goroutine that writes data messages and Pings.
// Control messages go before queued application messages, so that a full
// queue cannot delay a refresh. After the machine has ended the socket it
// stops, except after the application's Close, when it first writes what was
// queued.
//
// The messages it finds queued behind the one it takes go out in one write
// to the connection (c.bc's hold), flushed when the queue is empty: a busy
// socket costs one system call per batch rather than one per message, and
// an idle one waits for nothing. The batch is bounded (64 messages, 64 KiB
// held), and its write has the same deadline as a single message's: at
// least writeTimeout (see wsio.Deadline).
func (c *Conn) writeLoop() {
	defer c.wg.Done()
	defer close(c.flushed)
	held := false
	for {
		c.mu.Lock()
		kind, m := c.next()
		more := len(c.ctrl) > 0 || len(c.out) > 0
		c.mu.Unlock()
		var err error
		switch kind {
		case writeStop, writeIdle:
			if held {
				held = false
				if err := c.bc.Flush(); err != nil {
					c.writeFailed(err)
					return
				}
			}
			if kind == writeStop {
				return
			}
			select {
			case <-c.wake:
			case <-c.done:
				return
			}
			continue
		}
		if more && !held {
			held = true
			c.bc.Hold()
		}
		if kind == writePing {
			err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
		} else {
			c.ws.SetWriteDeadline(c.wdl.Next(time.Now(), writeTimeout))
			err = c.ws.WriteMessage(kind, m)
		}
		if err != nil {
			if held {
				c.bc.Flush() // returns the same error, or an earlier one
			}
			c.writeFailed(err)
			return
		}
	}
}

const (
	writeIdle = -1
	writeStop = -2
	writePing = -3
	// else websocket.TextMessage or websocket.BinaryMessage
)

// next takes the writer's next job. c.mu is held.
func (c *Conn) next() (int, []byte) {
	ended := c.end.Kind == protocol.ActionClose
	switch {
	case ended && !c.appClose:
		return writeStop, nil
	case len(c.ctrl) > 0:
		m := c.ctrl[0]
		c.ctrl[0], c.ctrl = nil, c.ctrl[1:]
		return websocket.TextMessage, m
	case c.ping && !ended:
		c.ping = false
		return writePing, nil
	case len(c.out) > 0:
		m := c.out[0]
		c.out[0], c.out = nil, c.out[1:]
		<-c.slots
		return websocket.BinaryMessage, m
	case ended:
		return writeStop, nil
	}
	return writeIdle, nil
}

// writeFailed reports a failed write to the machine (row C25 when it timed
// out), or, while the application's Close flushes, records it for Close.
func (c *Conn) writeFailed(err error) {
	err = fmt.Errorf("client: write: %w", err)
	c.mu.Lock()
	if c.pc.State() == protocol.StateClosed {
		if c.appClose && c.flushErr == nil {
			c.flushErr = err
		}
	} else {
		c.run(c.pc.HandleWriteError(c.clock.Now(), isTimeout(err)), err)
	}
	c.mu.Unlock()
	c.inputs.Add(1)
}

// finish carries out the machine's ActionClose: after the application's
// Close it lets the writer send what was queued; it sends the Close frame
// unless the machine says none is due, waits briefly for the server's (the
// reader sees it and stops), and closes the connection. Every wait is
// bounded, whatever the server does.
func (c *Conn) finish(a protocol.Action, app, quick bool) {
	defer c.wg.Done()
	limit := time.Now().Add(lingerTimeout)
	if app && !quick {
		limit = time.Now().Add(closeTimeout)
		waitUntil(c.flushed, limit)
	}
	if a.CloseCode != 0 {
		err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(a.CloseCode, a.Reason), limit)
		if err != nil && app && !errors.Is(err, websocket.ErrCloseSent) {
			c.mu.Lock()
			if c.flushErr == nil {
				c.flushErr = fmt.Errorf("client: close: %w", err)
			}
			c.mu.Unlock()
		}
	}
	waitUntil(c.readerDone, limit)
	c.ws.Close()
	close(c.done)
}

// waitUntil waits for ch to close, or for t.
func waitUntil(ch <-chan struct{}, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-ch:
		default:
		}
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ch:
	case <-tm.C:
	}
}
