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

	rmu     sync.Mutex       // one Read at a time (gorilla allows one reader)
	limited io.LimitedReader // readMessage's limit, reused by the one reader: no allocation per message
	wsem    chan struct{}    // one writer at a time (gorilla allows one); a ctx-aware mutex
	cancel  func()           // cancels the handler's context when the socket closes
	done    chan struct{}    // closed when the socket closes

	// ctxDone is the Done channel of the handler's context, set before the
	// handler starts and never changed. That context is cancelled only
	// after the socket has closed, so Read need not watch it.
	ctxDone <-chan struct{}

	refresh atomic.Pointer[protocol.ServerHandshake] // the outstanding re-challenge

	// Timers run their functions on their own short-lived goroutines, so an
	// idle session costs no goroutine for them.
	tmu            sync.Mutex
	refreshTimer   *time.Timer
	expireTimer    *time.Timer
	pingTimer      *time.Timer
	lastRefreshExp int64 // the token expiry a re-challenge was last sent for
	lastAlive      int64 // Unix nanoseconds of the last read-deadline extension

	closeOnce sync.Mutex
	closed    bool
	closeErr  error // what ended the socket, for Read and Send
}

func newConn(s *Server, ws *websocket.Conn, remote string, exporter []byte) *Conn {
	return &Conn{
		s: s, ws: ws, remote: remote, exporter: exporter,
		wsem: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// Session returns the session in force now; it changes at each refresh.
func (c *Conn) Session() *protocol.Session { return c.sess.Load() }

// RemoteIP is the client's IP address.
func (c *Conn) RemoteIP() string { return c.remote }

// Read returns the next application message. Like every WebSocket
// library, the connection processes what the client sends only while it is
// read: Read also answers pings and completes in-band refreshes, so the
// handler must keep calling it for the session to stay alive (a handler that
// only sends still runs a loop of Read). One Read runs at a time.
//
// Read returns ErrClosed, joined with how the socket ended, once it has
// closed. If ctx ends while Read waits, the socket is closed: a WebSocket
// read cannot be resumed after it is interrupted. The context ServeSession
// received, and any that shares its cancellation (a context.WithValue of
// it), ends only once the socket has closed, so Read does not watch it and
// passing it adds no per-message cost; any other cancellable ctx is watched
// for the duration of each Read.
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
	if d := ctx.Done(); d != nil && d != c.ctxDone {
		stop := context.AfterFunc(ctx, func() { c.closeWith(websocket.CloseGoingAway, "") })
		defer stop()
	}
	m, err := c.next()
	if err != nil {
		if ctx.Err() != nil {
			return Message{}, ctx.Err()
		}
		return Message{}, c.err()
	}
	return m, nil
}

// Send writes data as one binary message. Writes are serialized: Send waits
// while another write is in progress, until ctx ends or the socket closes,
// and a write that cannot finish within Config.WriteTimeout closes the
// socket. So the outbound queue of a socket is bounded by the socket buffer
// and one message per waiting caller. Send does not keep data after it
// returns.
func (c *Conn) Send(ctx context.Context, data []byte) error {
	return c.write(ctx, websocket.BinaryMessage, data)
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
	cancel := c.cancel
	c.closeOnce.Unlock()
	// WriteControl may run concurrently with a writer. 1006
	// means the connection broke: there is no one to send a frame to.
	if code != websocket.CloseAbnormalClosure {
		c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	c.ws.Close()
	close(c.done)
	if cancel != nil {
		cancel()
	}
	c.tmu.Lock()
	for _, t := range []*time.Timer{c.refreshTimer, c.expireTimer, c.pingTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.tmu.Unlock()
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

// serve runs an authenticated socket: the application handler on this
// goroutine, reading through Conn.Read, and timers for keepalive, refresh and
// expiry. Writes happen on the goroutine that asks for them (Send, Read's
// accepts, the timers), one at a time. An idle session costs one goroutine,
// as with a plain WebSocket echo.
func (c *Conn) serve() {
	c.ws.SetWriteDeadline(time.Time{})
	c.alive(time.Now())
	c.ws.SetPongHandler(func(string) error { c.alive(time.Now()); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	c.ctxDone = ctx.Done()
	c.closeOnce.Lock()
	c.cancel = cancel
	closed := c.closed
	c.closeOnce.Unlock()
	if closed {
		cancel()
	}
	c.tmu.Lock()
	c.pingTimer = time.AfterFunc(c.s.cfg.PingInterval, c.ping)
	c.refreshTimer = time.AfterFunc(time.Hour, c.startRefresh)
	c.expireTimer = time.AfterFunc(time.Hour, c.checkExpiry)
	c.tmu.Unlock()
	c.arm()
	c.s.cfg.Handler.ServeSession(ctx, c)
	c.Close()
	cancel()
	s := c.Session()
	c.s.log.Debug("wsproof: session ended", "sid", s.SocketID, "kid", s.KeyID, "err", c.err())
}

func (c *Conn) setSession(s *protocol.Session) {
	c.sess.Store(s)
	c.exp.Store(s.Expiry.UnixNano())
}

// alive extends the read deadline: a socket silent for two ping intervals is
// dead. It moves the deadline at most once a second, which keeps the cost off
// the per-message path; next calls it with one clock read before each read.
func (c *Conn) alive(now time.Time) {
	if n := now.UnixNano(); n-atomic.LoadInt64(&c.lastAlive) >= int64(time.Second) {
		atomic.StoreInt64(&c.lastAlive, n)
		c.ws.SetReadDeadline(now.Add(2 * c.s.cfg.PingInterval))
	}
}

// next reads until the next application message, handling refresh
// responses on the way. Every application message is checked against the
// current session in O(1): a comparison with the token's expiry (spec section
// "Later-frame authorization"); revocation closes the socket directly. Any
// failure closes the socket.
func (c *Conn) next() (Message, error) {
	for {
		// Before each read rather than after: the handler may have been
		// busy elsewhere since its last Read, and a message just read has
		// shown the socket alive until this moment anyway.
		c.alive(time.Now())
		mt, data, err := c.readMessage(protocol.MaxHandshakeMessage, c.s.cfg.MaxMessageSize)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				c.closeCode(protocol.CodeTooLarge)
			} else {
				c.closeWith(websocket.CloseNormalClosure, "")
			}
			return Message{}, err
		}
		now := c.s.now() // the session's clock, which may not be the real one
		switch mt {
		case websocket.BinaryMessage:
			if now.UnixNano() >= c.exp.Load() {
				c.closeCode(protocol.CodeTokenExpired)
				return Message{}, ErrClosed
			}
			return Message{Data: data, Session: c.sess.Load()}, nil
		case websocket.TextMessage:
			h := c.refresh.Swap(nil)
			if h == nil {
				c.closeCode(protocol.CodeUnexpectedMessage)
				return Message{}, ErrClosed
			}
			sess, accept, err := h.ReadResponse(data, c.s.rand, now)
			if err != nil {
				c.fail(err, "refresh")
				return Message{}, err
			}
			c.setSession(sess)
			c.s.m.refreshes.WithLabelValues("ok").Inc()
			if err := c.write(context.Background(), websocket.TextMessage, accept); err != nil {
				return Message{}, err
			}
			c.arm()
		}
	}
}

// arm sets the refresh and expiry timers for the current token.
func (c *Conn) arm() {
	exp := time.Unix(0, c.exp.Load())
	now := c.s.now()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.refreshTimer.Reset(exp.Add(-c.s.cfg.RefreshBefore).Sub(now))
	c.expireTimer.Reset(exp.Sub(now))
}

// ping sends a keepalive and schedules the next one.
func (c *Conn) ping() {
	if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.s.cfg.WriteTimeout)) != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "")
		return
	}
	c.tmu.Lock()
	select {
	case <-c.done:
	default:
		c.pingTimer.Reset(c.s.cfg.PingInterval)
	}
	c.tmu.Unlock()
}

// startRefresh sends a re-challenge (spec section "Refresh").
func (c *Conn) startRefresh() {
	exp := c.exp.Load()
	c.tmu.Lock()
	// A token capped by its key's expiry cannot be extended: do not
	// re-challenge again for the same expiry.
	again := exp == c.lastRefreshExp
	c.lastRefreshExp = exp
	c.tmu.Unlock()
	if again {
		return
	}
	h, msg, err := c.s.proto.Refresh(c.Session(), c.s.rand, c.s.now(), c.exporter)
	if err != nil {
		c.fail(err, "refresh")
		return
	}
	c.refresh.Store(h)
	c.write(context.Background(), websocket.TextMessage, msg)
}

// checkExpiry closes the socket when its token has expired without a
// completed refresh.
func (c *Conn) checkExpiry() {
	if c.s.now().UnixNano() >= c.exp.Load() {
		c.s.m.refreshes.WithLabelValues(string(protocol.CodeTokenExpired)).Inc()
		c.closeCode(protocol.CodeTokenExpired)
		return
	}
	c.arm()
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
	c.limited = io.LimitedReader{R: r, N: limit + 1}
	data, err := io.ReadAll(&c.limited)
	c.limited.R = nil
	if err != nil {
		return 0, nil, err
	}
	if int64(len(data)) > limit {
		return 0, nil, errTooLarge
	}
	return mt, data, nil
}

// write sends one data message, waiting for its turn until ctx ends or the
// socket closes. A failed write closes the socket.
func (c *Conn) write(ctx context.Context, mt int, msg []byte) error {
	select {
	case <-c.done:
		return c.err()
	default:
	}
	// When no other write is in progress, the semaphore is taken at once,
	// without the select over ctx and the socket that waiting needs: ctx
	// bounds the wait for a turn, so a ctx already done does not stop an
	// uncontended write.
	select {
	case c.wsem <- struct{}{}:
	default:
		select {
		case c.wsem <- struct{}{}:
		case <-c.done:
			return c.err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-c.wsem }()
	c.ws.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if err := c.ws.WriteMessage(mt, msg); err != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "")
		return c.err()
	}
	return nil
}
