package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

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

// ErrClosed is returned by Read and Send once the socket has closed.
var ErrClosed = errors.New("server: socket closed")

// Conn is one authenticated socket. Read, Send, Session and Close are safe
// for concurrent use. The server owns the underlying WebSocket: it closes it
// when the session fails, expires, is revoked, when the handler returns, or
// on Shutdown.
type Conn struct {
	s        *Server
	ws       *websocket.Conn
	remote   string
	exporter []byte

	sess atomic.Pointer[protocol.Session]
	exp  atomic.Int64 // the current token's expiry, Unix nanoseconds: the per-message check

	in      chan Message  // reader -> application; unbuffered: a slow handler slows the reader, not memory
	out     chan []byte   // application -> writer, bounded by Config.SendQueue
	control chan []byte   // accept messages: reader -> writer
	renewed chan struct{} // a refresh completed: re-arm the writer's timers
	done    chan struct{} // closed when the socket closes
	refresh atomic.Pointer[protocol.ServerHandshake]

	closeOnce sync.Mutex
	closed    bool
	closeErr  error // what ended the socket, for Read and Send
}

func newConn(s *Server, ws *websocket.Conn, remote string, exporter []byte) *Conn {
	return &Conn{
		s: s, ws: ws, remote: remote, exporter: exporter,
		in:      make(chan Message),
		out:     make(chan []byte, s.cfg.SendQueue),
		control: make(chan []byte, 1),
		renewed: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// Session returns the session in force now; it changes at each refresh.
func (c *Conn) Session() *protocol.Session { return c.sess.Load() }

// RemoteIP is the client's IP address.
func (c *Conn) RemoteIP() string { return c.remote }

// Read returns the next application message. It returns ErrClosed, wrapped
// with the reason, once the socket has closed, or ctx.Err().
func (c *Conn) Read(ctx context.Context) (Message, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-c.done:
		return Message{}, c.err()
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Send queues data as one binary message. It blocks while the outbound queue
// is full, until ctx ends or the socket closes. Send does not keep data
// after it returns an error; it keeps it until written otherwise, so the
// caller must not modify it.
func (c *Conn) Send(ctx context.Context, data []byte) error {
	select {
	case <-c.done:
		return c.err()
	default:
	}
	select {
	case c.out <- data:
		return nil
	case <-c.done:
		return c.err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the socket with 1000 Normal Closure.
func (c *Conn) Close() error {
	c.closeWith(websocket.CloseNormalClosure, "")
	return nil
}

func (c *Conn) err() error {
	c.closeOnce.Lock()
	defer c.closeOnce.Unlock()
	return c.closeErr
}

// closeWith sends a Close frame and closes the socket. The first call wins.
func (c *Conn) closeWith(code int, reason string) {
	c.closeOnce.Lock()
	if c.closed {
		c.closeOnce.Unlock()
		return
	}
	c.closed = true
	c.closeErr = errors.Join(ErrClosed, &websocket.CloseError{Code: code, Text: reason})
	c.closeOnce.Unlock()
	// WriteControl may run concurrently with the writer goroutine. 1006
	// means the connection broke: there is no one to send a frame to.
	if code != websocket.CloseAbnormalClosure {
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	c.ws.Close()
	close(c.done)
}

// closeCode closes with a code from the spec's error table.
func (c *Conn) closeCode(code protocol.Code) { c.closeWith(code.CloseCode(), code.Reason()) }

// fail logs a protocol failure and closes the socket with its code.
func (c *Conn) fail(err error, phase string) {
	code := protocol.CodeOf(err)
	if code == "" {
		// The transport failed (the peer went away): nobody to tell.
		if phase == "handshake" {
			c.s.m.handshakes.WithLabelValues("aborted", "").Inc()
		}
		c.s.log.Debug("wsproof: "+phase+" aborted", "remote", c.remote, "err", err)
		c.closeWith(websocket.CloseAbnormalClosure, "")
		return
	}
	if phase == "handshake" {
		c.s.m.handshake(code)
	} else if phase == "refresh" {
		c.s.m.refreshes.WithLabelValues(string(code)).Inc()
	}
	// err holds our own description of the failure, never peer bytes.
	c.s.log.Info("wsproof: "+phase+" failed", "code", string(code), "remote", c.remote, "err", err)
	c.closeCode(code)
}

// handshake runs the pre-authentication phase under one deadline and one
// small read limit (spec section "Limits").
//
// It returns the accept message without sending it: the server registers the
// session first, so that no revocation can fall between the accept and the
// moment Recheck can see the socket.
func (c *Conn) handshake() (*protocol.Session, []byte, error) {
	start := time.Now()
	s := c.s
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	c.ws.SetReadDeadline(deadline)
	c.ws.SetWriteDeadline(deadline)
	h, challenge, err := s.proto.Start(s.rand, s.now(), c.exporter)
	if err != nil {
		return nil, nil, err
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, challenge); err != nil {
		return nil, nil, transportErr(err)
	}
	mt, msg, err := c.readMessage(protocol.MaxHandshakeMessage, protocol.MaxHandshakeMessage)
	if err != nil {
		return nil, nil, transportErr(err)
	}
	if mt != websocket.TextMessage {
		return nil, nil, &protocol.ProtocolError{Code: protocol.CodeUnexpectedMessage, Err: errorf("binary message before authentication")}
	}
	sess, accept, err := h.ReadResponse(msg, s.rand, s.now())
	if err != nil {
		return nil, nil, err
	}
	s.m.latency.Observe(time.Since(start).Seconds())
	return sess, accept, nil
}

// transportErr maps a WebSocket read or write error to the spec's code.
func transportErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		return &protocol.ProtocolError{Code: protocol.CodeTooLarge, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &protocol.ProtocolError{Code: protocol.CodeHandshakeTimeout, Err: err}
	}
	return err
}

// serve runs an authenticated socket: the application handler, a writer
// goroutine, and the reader on this goroutine.
func (c *Conn) serve() {
	c.ws.SetWriteDeadline(time.Time{})
	c.alive()
	c.ws.SetPongHandler(func(string) error { c.alive(); return nil })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.write() }()
	go func() {
		defer wg.Done()
		defer c.Close()
		c.s.cfg.Handler.ServeSession(ctx, c)
	}()
	c.read()
	cancel()
	wg.Wait()
	s := c.Session()
	c.s.log.Debug("wsproof: session ended", "sid", s.SocketID, "kid", s.KeyID, "err", c.err())
}

func (c *Conn) setSession(s *protocol.Session) {
	c.sess.Store(s)
	c.exp.Store(s.Expiry.UnixNano())
}

// alive extends the read deadline: a socket silent for two ping intervals is
// dead.
func (c *Conn) alive() { c.ws.SetReadDeadline(time.Now().Add(2 * c.s.cfg.PingInterval)) }

// read is the reader loop. Every application message is checked against the
// current session in O(1): a comparison with the token's expiry (spec section
// "Later-frame authorization"); revocation closes the socket directly.
func (c *Conn) read() {
	defer c.closeWith(websocket.CloseNormalClosure, "")
	for {
		mt, data, err := c.readMessage(protocol.MaxHandshakeMessage, c.s.cfg.MaxMessageSize)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				c.closeCode(protocol.CodeTooLarge)
			}
			return
		}
		c.alive()
		switch mt {
		case websocket.BinaryMessage:
			if c.s.now().UnixNano() >= c.exp.Load() {
				c.closeCode(protocol.CodeTokenExpired)
				return
			}
			select {
			case c.in <- Message{Data: data, Session: c.sess.Load()}:
			case <-c.done:
				return
			}
		case websocket.TextMessage:
			h := c.refresh.Swap(nil)
			if h == nil {
				c.closeCode(protocol.CodeUnexpectedMessage)
				return
			}
			sess, accept, err := h.ReadResponse(data, c.s.rand, c.s.now())
			if err != nil {
				c.fail(err, "refresh")
				return
			}
			c.setSession(sess)
			c.s.m.refreshes.WithLabelValues("ok").Inc()
			select {
			case c.control <- accept:
			case <-c.done:
				return
			}
		}
	}
}

// write is the only goroutine that writes data frames: application
// messages, re-challenges, accepts and pings. It also owns the refresh and
// expiry timers.
func (c *Conn) write() {
	ping := time.NewTicker(c.s.cfg.PingInterval)
	defer ping.Stop()
	refresh := time.NewTimer(0)
	expire := time.NewTimer(0)
	defer refresh.Stop()
	defer expire.Stop()
	arm := func() {
		exp := time.Unix(0, c.exp.Load())
		now := c.s.now()
		refresh.Reset(exp.Add(-c.s.cfg.RefreshBefore).Sub(now))
		expire.Reset(exp.Sub(now))
	}
	arm()
	var lastRefreshExp int64
	for {
		var err error
		select {
		case <-c.done:
			return
		case msg := <-c.out:
			err = c.send(websocket.BinaryMessage, msg)
		case msg := <-c.control:
			err = c.send(websocket.TextMessage, msg)
			arm()
		case <-ping.C:
			err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteTimeout))
		case <-refresh.C:
			// A token capped by its key's expiry cannot be extended: do
			// not re-challenge again for the same expiry.
			exp := c.exp.Load()
			if exp == lastRefreshExp {
				continue
			}
			lastRefreshExp = exp
			h, msg, rerr := c.s.proto.Refresh(c.Session(), c.s.rand, c.s.now(), c.exporter)
			if rerr != nil {
				c.fail(rerr, "refresh")
				return
			}
			c.refresh.Store(h)
			err = c.send(websocket.TextMessage, msg)
		case <-expire.C:
			if c.s.now().UnixNano() >= c.exp.Load() {
				c.s.m.refreshes.WithLabelValues(string(protocol.CodeTokenExpired)).Inc()
				c.closeCode(protocol.CodeTokenExpired)
				return
			}
			arm()
		}
		if err != nil {
			c.closeWith(websocket.CloseAbnormalClosure, "")
			return
		}
	}
}

var errTooLarge = errorf("message too large")

// readMessage reads one message, refusing text messages over textLimit and
// binary ones over binLimit. The limit is enforced here rather than with
// gorilla's SetReadLimit, which answers with its own close code (1009)
// instead of the spec's too_large. At most limit+1 bytes are read.
func (c *Conn) readMessage(textLimit, binLimit int64) (int, []byte, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	limit := binLimit
	if mt == websocket.TextMessage {
		limit = textLimit
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(data)) > limit {
		return 0, nil, errTooLarge
	}
	return mt, data, nil
}

func (c *Conn) send(mt int, msg []byte) error {
	c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.ws.WriteMessage(mt, msg)
}
