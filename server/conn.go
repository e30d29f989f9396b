package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/wsio"
	"github.com/wsproof/wsproof/protocol"
)

// Message is one application message from the client, with the session that
// authorized it. Session.Token lets a backend that receives the message
// later (say, from a queue) check on its own, with protocol.TokenVerifier,
// that it came from an authenticated socket.
type Message struct {
	Data    []byte
	Session *protocol.Session
}

// ErrClosed is returned by Read and Send once the socket has closed, joined
// with how it closed: a *websocket.CloseError with the close code the server
// sent or the client's, or the error that ended the connection.
var ErrClosed = errors.New("server: socket closed")

// Bounds of a close (spec section "Revocation": the Close frame is sent or
// the connection dropped within 1 s of the decision, whatever the peer does).
const (
	// closeFlushWait bounds, from the decision, the writes that a normal
	// close flushes, and unblocks a write stuck on a peer that does not
	// read; closeWriteWait bounds the write of the Close frame.
	closeFlushWait = 300 * time.Millisecond
	closeWriteWait = 450 * time.Millisecond
	// closeDropBy bounds, from the decision, the whole close: once our
	// Close frame is sent the closer waits for the peer's, so that a
	// reading peer receives the frame rather than a reset, but only until
	// then. A peer that does not read would otherwise keep a socket that
	// the spec has closed, its Close frame unread in its buffers, until the
	// wait ran out; with the registry watch's poll before the decision, the
	// whole revocation stays within a second.
	closeDropBy = 500 * time.Millisecond
)

// Conn is one socket, from the upgrade to the close; the application sees
// it once it has authenticated. Read, Send, Session and Close are safe for
// concurrent use. The server owns the underlying WebSocket: it closes it when
// the session fails, expires, is revoked, when the handler returns, or on
// Shutdown.
//
// Every protocol decision is the protocol.ServerConn's: the Conn feeds it
// what happens on the socket (messages, Ping and Pong frames, the timer,
// registry changes, the application's sends, errors) under mu, and carries
// out the actions it returns. mu is never held during network I/O.
type Conn struct {
	s      *Server
	ws     *websocket.Conn
	bc     *wsio.BatchConn // under ws: the writer gathers its writes
	raw    net.Conn        // the transport connection under TLS, closed to drop the socket
	remote string
	start  time.Time // the upgrade, for the handshake latency

	// sess is the machine's Session, published at each accept.
	sess atomic.Pointer[protocol.Session]

	rmu sync.Mutex // one reader at a time (gorilla allows one)

	// ctxDone is the Done channel of the handler's context, set before the
	// handler starts and never changed. That context is cancelled when the
	// socket closes, so Read need not watch it.
	ctxDone <-chan struct{}

	done    chan struct{} // closed when the socket closes
	readEnd chan struct{} // closed when a read from the socket fails
	endOnce sync.Once

	// inputs counts what the reader has taken from the socket and handed
	// to the machine (or dropped, once closed): messages, Ping and Pong
	// frames, the end of the connection. Tests wait on it.
	inputs atomic.Int64

	mu       sync.Mutex
	pc       *protocol.ServerConn
	closed   bool
	closeErr error  // what ended the socket, for Read and Send
	cancel   func() // cancels the handler's context
	authed   bool
	timer    timer // the machine's one timer, on the server's clock
	writing  bool  // a writer is running (or, with ownWrite, due to run)
	// Until the accept, the goroutine that reads the socket (ServeHTTP's)
	// also writes for it: the 101 with the challenge, then the accept. A
	// writer goroutine started for each would cost a goroutine's creation
	// and a hand-off per message, a few percent of a handshake's CPU
	// (issue 16). handshaker is set until ServeHTTP leaves the handshake;
	// feeding while that goroutine hands the machine an input; ownWrite
	// when such an input queued a write and left the writer to that
	// goroutine (see kick and writeOwn).
	handshaker, feeding, ownWrite bool

	wdl     wsio.Deadline
	ctrl    []outMsg // control messages and Pings, written first
	app     [][]byte // application messages, written in order
	appHead int
	inText  bool // the input being processed is a text message
	// closeFrom and closers, when set, belong to a decision that closes this
	// socket among many (Recheck, Shutdown): the close's bounds count from
	// the decision's start, so that the last socket of a long loop is not
	// closed later than the first by the loop's own time, and the closer is
	// started after the loop, so that hundreds of closers do not compete
	// with the loop for the processor.
	closeFrom time.Time
	closers   *[]func()
	flush     bool          // closed normally: the writer still writes what is queued
	flushBy   time.Time     // the deadline of those writes
	idle      chan struct{} // closed when the writer exits, if a closer waits for it
}

// outMsg is a control message (text) or, when data is nil, a Ping.
type outMsg struct{ data []byte }

func newConn(s *Server, ws *websocket.Conn, remote string) *Conn {
	raw := ws.NetConn()
	bc, _ := raw.(*wsio.BatchConn)
	if bc != nil {
		raw = bc.NetConn()
	} else {
		bc = wsio.NewBatchConn(raw) // never held: writes pass through
	}
	if tc, ok := raw.(*tls.Conn); ok {
		// tls.Conn.Close sends close_notify with its own 5 s deadline
		// and can block behind a stuck write: a socket is dropped by
		// closing the connection under TLS.
		raw = tc.NetConn()
	}
	c := &Conn{s: s, ws: ws, bc: bc, raw: raw, remote: remote, start: time.Now(),
		done: make(chan struct{}), readEnd: make(chan struct{})}
	ping := ws.PingHandler() // gorilla's: answers with a Pong
	ws.SetPingHandler(func(data string) error {
		c.heard()
		return ping(data)
	})
	ws.SetPongHandler(func(string) error {
		c.heard()
		return nil
	})
	return c
}

// Session returns the session in force now; it changes at each refresh.
func (c *Conn) Session() *protocol.Session { return c.sess.Load() }

// RemoteIP is the client's IP address.
func (c *Conn) RemoteIP() string { return c.remote }

// Read returns the next application message, with the session that
// authorized it. Like every WebSocket library, the connection processes what
// the client sends only while it is read: Read also answers Pings and
// completes in-band refreshes, so the handler must keep calling it for the
// session to stay alive (a handler that only sends still runs a loop of
// Read). One Read runs at a time.
//
// Read returns ErrClosed, joined with how the socket ended, once it has
// closed; nothing is delivered after the server has decided to close. If ctx
// ends while Read waits, the socket is closed (1000): a WebSocket read cannot
// be resumed after it is interrupted. The context ServeSession received, and
// any that shares its cancellation (a context.WithValue of it), ends only
// once the socket has closed, so Read does not watch it and passing it adds
// no per-message cost; any other cancellable ctx is watched for the duration
// of each Read.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	select {
	case <-c.done:
		return Message{}, c.err()
	default:
	}
	// A context that is never done, or that is done only once the socket
	// has closed, has nothing to interrupt; watching one costs an
	// allocation and a registration with ctx on every message.
	watched := false
	if d := ctx.Done(); d != nil && d != c.ctxDone {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		watched = true
	}
	for {
		m, ok := c.readOne()
		if ok {
			return m, nil
		}
		select {
		case <-c.done:
			if watched && ctx.Err() != nil {
				return Message{}, ctx.Err()
			}
			return Message{}, c.err()
		default:
		}
	}
}

// Send queues data to be sent to the client as one binary message and
// returns at once: it never waits on the network. It copies data. The octets
// waiting to be written on a socket are bounded (Config.MaxQueued): a
// message that would take them past the bound closes the socket with
// slow_reader, which clients retry (spec section "Slow peers"), and Send
// returns ErrClosed joined with that code. ctx is not waited on.
func (c *Conn) Send(ctx context.Context, data []byte) error {
	buf := make([]byte, len(data))
	copy(buf, data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.closeErr
	}
	prev := c.pc.State()
	acts, ok := c.pc.Send(c.s.clock.Now(), buf)
	c.do(acts, prev)
	if !ok {
		if c.closed {
			return c.closeErr
		}
		return ErrClosed // not authenticated; the application never sees such a Conn
	}
	return nil
}

// Close closes the socket with 1000 Normal Closure. It does not wait for the
// close to complete.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.do(c.pc.Close(c.s.clock.Now()), c.pc.State())
	}
	return nil
}

func (c *Conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// heard reports a Ping or Pong frame: the peer is alive. It runs on the
// reader's goroutine, inside gorilla's read.
func (c *Conn) heard() {
	c.mu.Lock()
	if !c.closed {
		c.do(c.pc.HandlePong(c.s.clock.Now()), c.pc.State())
	}
	c.mu.Unlock()
	c.inputs.Add(1)
}

// begin creates the machine, which signs and sends the challenge.
func (c *Conn) begin(exporter []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc, acts := c.s.proto.NewConn(c.s.rand, c.s.clock.Now(), exporter)
	c.pc = pc
	c.handshaker, c.feeding = true, true
	c.do(acts, protocol.StateChallenged)
	c.feeding = false
}

// input runs one input of the machine that needs nothing but the time, and
// carries out its actions; it reports whether the socket is closed.
func (c *Conn) input(f func(*protocol.ServerConn, time.Time) []protocol.Action) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.do(f(c.pc, c.s.clock.Now()), c.pc.State())
	}
	return c.closed
}

// readOne reads one message from the socket and hands it to the machine. It
// returns the message when the machine delivers it. A read error ends the
// socket; a message that arrives once it has closed is dropped.
func (c *Conn) readOne() (Message, bool) {
	text, data, err := c.readMessage()
	defer c.inputs.Add(1) // after the unlock: the input's actions are taken
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if !c.closed {
			now := c.s.clock.Now()
			// gorilla reports a connection that ends without a Close
			// frame as a *CloseError too, with 1006, which RFC 6455
			// forbids on the wire: that is the connection's end (S34),
			// not the client's Close frame (S33).
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
				c.do(c.pc.HandlePeerClose(now, ce.Code), c.pc.State())
			} else {
				c.do(c.pc.HandleLost(now, err), c.pc.State())
			}
		}
		c.endOnce.Do(func() { close(c.readEnd) })
		return Message{}, false
	}
	if c.closed {
		return Message{}, false
	}
	c.inText, c.feeding = text, c.handshaker
	m, _ := c.do(c.pc.HandleMessage(c.s.clock.Now(), text, data), c.pc.State())
	c.inText, c.feeding = false, false
	return m, m.Data != nil
}

// readMessage reads one data message, at most ReadLimit+1 octets of it: the
// machine refuses a longer one with too_large. The limit is enforced here
// rather than with gorilla's SetReadLimit, which answers with its own close
// code (1009) instead of the spec's too_large.
func (c *Conn) readMessage() (bool, []byte, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return false, nil, err
	}
	text := mt == websocket.TextMessage
	c.mu.Lock()
	limit := c.pc.ReadLimit(text)
	c.mu.Unlock()
	data, err := wsio.ReadMessage(r, limit+1)
	return text, data, err
}

// drain reads and drops what the client sends until the connection ends,
// so that the peer's Close frame, the answer to ours, is read. The closer
// drops the connection within closeDropBy of the decision.
func (c *Conn) drain() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		select {
		case <-c.readEnd:
			return
		default:
		}
		c.readOne()
	}
}

// do carries out the machine's actions, in order, under mu; none of them
// blocks. prev is the state before the input, for metrics. It returns the
// message an ActionDeliver hands to the application, and whether the first
// accept was sent.
func (c *Conn) do(acts []protocol.Action, prev protocol.State) (m Message, accepted bool) {
	for _, a := range acts {
		switch a.Kind {
		case protocol.ActionSend:
			if a.Text {
				c.ctrl = append(c.ctrl, outMsg{a.Data})
			} else {
				c.app = append(c.app, a.Data)
			}
			c.kick()
		case protocol.ActionPing:
			c.ctrl = append(c.ctrl, outMsg{})
			c.kick()
		case protocol.ActionDeliver:
			m = Message{Data: a.Data, Session: c.pc.Session()}
		case protocol.ActionAccepted:
			c.sess.Store(c.pc.Session())
			if !c.authed {
				c.authed, accepted = true, true
				c.s.m.handshake("")
				c.s.m.latency.Observe(time.Since(c.start).Seconds())
				c.s.authenticated(1)
			} else {
				c.s.m.refreshes.WithLabelValues("ok").Inc()
			}
		case protocol.ActionTimer:
			d := a.At.Sub(c.s.clock.Now())
			if c.timer == nil {
				c.timer = c.s.clock.AfterFunc(d, c.onTimer)
			} else {
				c.timer.Reset(d)
			}
		case protocol.ActionClose:
			c.end(a, prev)
		}
	}
	// The machine reuses its action slice, which would otherwise keep the
	// data of these actions (an accept, say) alive while the socket idles.
	clear(acts)
	return m, accepted
}

// onTimer runs the machine's timed rows.
func (c *Conn) onTimer() {
	c.input((*protocol.ServerConn).HandleTimeout)
}

// kick starts the writer if it is not running: on a goroutine of its own,
// or, for an input the handshaker is feeding, on the handshaker once the
// input is done (writeOwn). Called with mu held.
func (c *Conn) kick() {
	if !c.writing && !c.closed {
		c.writing = true
		if c.feeding {
			c.ownWrite = true
			return
		}
		go c.writeLoop()
	}
}

// writeOwn runs the writer on this goroutine, the handshaker, if its last
// input left it the writer (see kick). Called without mu.
func (c *Conn) writeOwn() {
	c.mu.Lock()
	own := c.ownWrite
	c.ownWrite = false
	c.mu.Unlock()
	if own {
		c.writeLoop()
	}
}

// writeLoop writes what is queued, control messages first, and exits when
// the queue is empty: an idle socket has no writer goroutine. What it writes
// in a row goes out in one write to the connection (c.bc's hold, at most 64
// KiB), flushed when the queue is empty: a busy socket costs one system call
// per batch rather than one per message. Each write has Config.WriteTimeout
// as its deadline (at least; see wsio.Deadline); one that misses it closes
// the socket with slow_reader. Once the socket is closed it writes only what
// a normal close flushes, by the close's deadline.
func (c *Conn) writeLoop() {
	held := false
	octets := 0 // of application messages in the batch, not yet Written
	for {
		c.mu.Lock()
		msg, kind, ok := c.pop()
		if !ok && held {
			// The queue is empty: write the batch, then look again.
			c.mu.Unlock()
			held = false
			c.wrote(octets, c.bc.Flush())
			octets = 0
			continue
		}
		if !ok {
			c.writing = false
			c.ctrl = nil // a control message is rare: keep no buffer for it
			if c.idle != nil {
				close(c.idle)
				c.idle = nil
			}
			c.mu.Unlock()
			return
		}
		deadline := c.wdl.Next(time.Now(), c.s.cfg.WriteTimeout)
		if c.closed {
			deadline = c.flushBy
		}
		c.mu.Unlock()

		if !held {
			held = true
			c.bc.Hold()
		}
		var err error
		if kind == websocket.PingMessage {
			err = c.ws.WriteControl(websocket.PingMessage, nil, deadline)
		} else {
			c.ws.SetWriteDeadline(deadline)
			err = c.ws.WriteMessage(kind, msg)
		}
		if kind == websocket.BinaryMessage {
			octets += len(msg)
		}
		if err != nil {
			held = false
			c.bc.Flush() // returns the same error, or an earlier one
			c.wrote(octets, err)
			octets = 0
		}
	}
}

// wrote reports the end of a batch: its application messages' octets leave
// the queue's bound, written or not, and a failed write ends the socket
// (slow_reader when it timed out) and drops what is queued.
func (c *Conn) wrote(octets int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pc.Written(octets)
	if err != nil {
		if !c.closed {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			c.do(c.pc.HandleWriteError(c.s.clock.Now(), timeout), c.pc.State())
		}
		c.flush = false
		c.discard()
	}
}

// pop takes the next message to write, under mu: a control message or a
// Ping first, else the oldest application message. Once the socket is
// closed, nothing unless the close flushes the queue.
func (c *Conn) pop() (msg []byte, kind int, ok bool) {
	switch {
	case c.closed && !c.flush:
		return nil, 0, false
	case len(c.ctrl) > 0:
		m := c.ctrl[0]
		c.ctrl[0] = outMsg{}
		c.ctrl = c.ctrl[1:]
		if m.data == nil {
			return nil, websocket.PingMessage, true
		}
		return m.data, websocket.TextMessage, true
	case c.appHead < len(c.app):
		msg = c.app[c.appHead]
		c.app[c.appHead] = nil
		if c.appHead++; c.appHead == len(c.app) {
			c.app, c.appHead = c.app[:0], 0
		}
		return msg, websocket.BinaryMessage, true
	}
	return nil, 0, false
}

// discard drops what is queued, under mu.
func (c *Conn) discard() {
	for _, b := range c.app[c.appHead:] {
		c.pc.Written(len(b))
	}
	c.app, c.appHead, c.ctrl = nil, 0, nil
}

// end carries out an ActionClose, under mu: from here nothing more is
// delivered or sent but the Close frame, the handler's context is done, and
// a closer goroutine ends the connection within the bounds of spec section
// "Revocation". It does not block.
func (c *Conn) end(a protocol.Action, prev protocol.State) {
	c.closed = true
	switch {
	case a.CloseCode != 0:
		c.closeErr = errors.Join(ErrClosed, &websocket.CloseError{Code: a.CloseCode, Text: a.Reason})
	case a.PeerCode != 0:
		c.closeErr = errors.Join(ErrClosed, &websocket.CloseError{Code: a.PeerCode})
	default:
		c.closeErr = errors.Join(ErrClosed, a.Err)
	}
	close(c.done)
	if c.cancel != nil {
		c.cancel()
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	// A normal close (1000, or 1001 for a shutdown) first writes what the
	// socket had queued, the application's last messages, within the
	// close's bound; a close for a failure (a revocation, an expiry, a slow
	// reader) sends nothing more to that peer.
	now := c.closeFrom
	if now.IsZero() {
		now = time.Now()
	}
	c.flushBy = now.Add(closeFlushWait)
	c.flush = a.Code == "" && a.CloseCode != 0
	var idle chan struct{}
	if !c.flush {
		c.discard()
	} else if c.writing {
		c.idle = make(chan struct{})
		idle = c.idle
	}

	m := c.s.m
	switch {
	case !c.authed && a.Code != "":
		m.handshake(a.Code)
	case !c.authed:
		m.handshakes.WithLabelValues("aborted", "").Inc()
	case a.Code == protocol.CodeTokenExpired || (prev == protocol.StateRefreshing && c.inText && a.Code != ""):
		m.refreshes.WithLabelValues(string(a.Code)).Inc()
	}
	c.s.hold()
	authed := c.authed
	if c.closers != nil {
		*c.closers = append(*c.closers, func() { go c.closer(a, authed, now, idle) })
		return
	}
	go c.closer(a, authed, now, idle)
}

// closer sends the Close frame, unless the action has none, and drops the
// connection, on its own goroutine: nothing it does blocks anyone else. The
// write deadline, set first, also ends a write stuck on a peer that does
// not read. When the close flushes the queue, it waits for the writer until
// that deadline. Once the frame is sent, it waits for the peer's Close
// frame until closeDropBy after the decision, so that a reading peer
// receives the frame rather than a reset. Under TLS the connection itself is closed, without
// close_notify, which could wait on the peer.
func (c *Conn) closer(a protocol.Action, authed bool, start time.Time, idle chan struct{}) {
	defer c.s.release()
	c.log(a, authed)
	flushBy, frameBy := start.Add(closeFlushWait), start.Add(closeWriteWait)
	c.bc.SetWriteDeadline(flushBy)
	if idle != nil {
		t := time.NewTimer(time.Until(flushBy))
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
	}
	if a.CloseCode != 0 &&
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(a.CloseCode, a.Reason), frameBy) == nil {
		t := time.NewTimer(time.Until(start.Add(closeDropBy)))
		select {
		case <-c.readEnd:
		case <-t.C:
		}
		t.Stop()
	}
	c.raw.Close()
}

// log records how the socket ended. It holds the spec's code and our own
// description of the failure, never peer input.
func (c *Conn) log(a protocol.Action, authed bool) {
	l := c.s.log
	phase := "session"
	if !authed {
		phase = "handshake"
	}
	switch {
	case a.Code == "" && a.CloseCode == 0:
		l.Debug("wsproof: "+phase+" ended by the client", "remote", c.remote, "peer_code", a.PeerCode, "err", a.Err)
	case a.Code == "":
		l.Debug("wsproof: "+phase+" closed", "remote", c.remote, "close_code", a.CloseCode)
	case a.Code == protocol.CodeInternalError && authed:
		l.Warn("wsproof: session closed, internal error", "remote", c.remote, "err", a.Err)
	case a.Code == protocol.CodeSessionRevoked:
		s := c.Session()
		l.Info("wsproof: session revoked", "sid", s.SocketID, "kid", s.KeyID, "reason", string(protocol.CodeOf(a.Err)), "err", a.Err)
	default:
		l.Info("wsproof: "+phase+" failed", "code", string(a.Code), "remote", c.remote, "err", a.Err)
	}
}
