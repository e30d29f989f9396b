package protocol

import (
	"errors"
	"io"
	"slices"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// ServerConn is the server's side of one socket, from the upgrade to the
// close: the state machine of spec section "Server state machine", whose
// first state is the handshake ([ServerHandshake]) and whose later states are
// the session of spec section "Session lifecycle".
//
// It performs no I/O and reads no clock. The transport reports what happens
// on the socket, and the time it happened, through the Handle methods, Send,
// Recheck, Close and Shutdown, and carries out the returned actions in order.
// Each input first applies every timed row whose time has come (spec section
// "State machines", Time): a message that arrives after a deadline is refused
// by that deadline even if the timer has not fired yet, and one that arrives
// after the refresh time follows the re-challenge.
//
// A ServerConn is not safe for concurrent use: the transport serializes its
// calls. The slice of actions a call returns is valid until the next call;
// the machine reuses it, so a transport clears it (clear(acts)) once it has
// carried the actions out, lest an idle socket keep their data alive.
// The transport must not hold the lock that serializes calls while it writes
// to the network, so that an input such as Recheck never waits on a peer.
type ServerConn struct {
	s        *Server
	rand     io.Reader
	exporter []byte
	state    State
	hs       *ServerHandshake // the outstanding challenge (CHALLENGED, REFRESHING)
	sess     *Session
	acts     []Action
	end      Action // the ActionClose that ended the socket

	// Times, in Unix nanoseconds. endAt is the earliest time at which the
	// session ends by itself, for endCode: the token's expiry
	// (token_expired), the registry entry's expiry (session_revoked), or,
	// in REFRESHING, the re-challenge's expiry (token_expired).
	deadline  int64 // CHALLENGED: the handshake deadline
	endAt     int64
	endCode   Code
	keyExp    int64 // the registry entry's exp, 0 if none
	refreshAt int64 // OPEN: when the re-challenge is due, unless final
	final     bool  // the token cannot be extended: it ends with its key
	stale     bool  // the entry's subject or groups changed: refresh now
	alive     keepalive
	timerAt   int64 // the last ActionTimer returned and not yet fired

	queued int64 // application octets handed out by Send and not yet Written
}

// NewConn starts the server's side of a new socket (spec section "Server
// state machine", state NEW): it draws the socketID and nonce from rand,
// signs the challenge, and returns the ServerConn in CHALLENGED with the
// actions to send the challenge and arm the handshake deadline. exporter is
// the connection's RFC 9266 tls-exporter value when TLS 1.3 ends at this
// server and binding is in force, else nil. rand is kept for the socket's
// later nonces and tokens. If the challenge cannot be made (a failing signer
// or rand), the only action closes the socket with internal_error.
func (s *Server) NewConn(rand io.Reader, now time.Time, exporter []byte) (*ServerConn, []Action) {
	c := &ServerConn{s: s, rand: rand, exporter: exporter, state: StateChallenged, acts: make([]Action, 0, 4)}
	hs, msg, err := s.Start(rand, now, exporter)
	if err != nil {
		c.close(closeFor(err))
		return c, c.acts
	}
	c.hs = hs
	c.deadline = now.Add(s.cfg.HandshakeTimeout).UnixNano()
	c.send(msg)
	c.arm()
	return c, c.acts
}

// State returns the current state.
func (c *ServerConn) State() State { return c.state }

// Session returns the session in force, or nil before the first accept. It
// changes with each refresh; a Session is never modified.
func (c *ServerConn) Session() *Session { return c.sess }

// SocketID returns the socket's socketID.
func (c *ServerConn) SocketID() string {
	if c.sess != nil {
		return c.sess.SocketID
	}
	if c.hs != nil {
		return c.hs.sid
	}
	return ""
}

// End returns the ActionClose that ended the socket, and whether it has
// ended.
func (c *ServerConn) End() (Action, bool) { return c.end, c.state == StateClosed }

// ReadLimit is the largest message, of the given type, that the state
// allows; a transport reads at most one octet more before it calls
// HandleMessage, which refuses anything longer with too_large.
func (c *ServerConn) ReadLimit(text bool) int64 {
	if text || c.state == StateChallenged {
		return MaxHandshakeMessage
	}
	return c.s.cfg.MaxMessageSize
}

// HandleMessage processes a WebSocket data message: text or binary, whose
// payload is data (possibly cut at ReadLimit+1 octets). An application
// message the session authorizes becomes an ActionDeliver; a response is
// verified; anything else closes the socket with its code.
func (c *ServerConn) HandleMessage(now time.Time, text bool, data []byte) []Action {
	c.begin(now)
	switch c.state {
	case StateChallenged:
		switch {
		case len(data) > MaxHandshakeMessage:
			c.fail(CodeTooLarge, "message over the limit before authentication")
		case !text:
			c.fail(CodeUnexpectedMessage, "binary message before authentication")
		default:
			c.readResponse(now, data)
		}
	case StateOpen, StateRefreshing:
		// Spec section "Later-frame authorization": begin has applied the
		// session's end; what is left is O(1).
		c.alive.heard = now.UnixNano()
		switch {
		case !text && int64(len(data)) > c.s.cfg.MaxMessageSize:
			c.fail(CodeTooLarge, "application message over the limit")
		case !text:
			c.acts = append(c.acts, Action{Kind: ActionDeliver, Data: data})
		case len(data) > MaxHandshakeMessage:
			c.fail(CodeTooLarge, "control message over the limit")
		case c.state == StateOpen:
			c.fail(CodeUnexpectedMessage, "text message with no challenge outstanding")
		default:
			c.readResponse(now, data)
		}
	}
	return c.acts
}

// readResponse verifies the response to the outstanding challenge; success
// sends an accept and moves to OPEN.
func (c *ServerConn) readResponse(now time.Time, data []byte) {
	hs := c.hs
	c.hs = nil // the challenge is consumed whatever the outcome
	sess, e, accept, err := hs.readResponse(data, c.rand, now)
	if err != nil {
		c.close(closeFor(err))
		return
	}
	first := c.sess == nil
	c.sess = sess
	c.state = StateOpen
	c.stale = false
	c.setEntry(e)
	if first {
		c.alive.start(now.UnixNano(), c.s.cfg.PingInterval)
	}
	c.send(accept)
	c.acts = append(c.acts, Action{Kind: ActionAccepted})
	c.arm()
}

// setEntry derives the session's schedule from its token and registry entry
// (spec section "Refresh"): a token that ends with its key cannot be
// extended, so it is not refreshed, and the session then ends with the key.
func (c *ServerConn) setEntry(e *keys.Entry) {
	exp := c.sess.Expiry.UnixNano()
	c.keyExp = 0
	if !e.NotAfter.IsZero() {
		c.keyExp = e.NotAfter.UnixNano()
	}
	c.final = c.keyExp != 0 && c.keyExp <= exp
	c.refreshAt = exp - int64(c.s.cfg.RefreshBefore)
	c.endAt, c.endCode = exp, CodeTokenExpired
	if c.final {
		c.endAt, c.endCode = c.keyExp, CodeSessionRevoked
	}
	if c.state == StateRefreshing && c.hs.exp.UnixNano() < c.endAt {
		c.endAt, c.endCode = c.hs.exp.UnixNano(), CodeTokenExpired
	}
}

// HandleTimeout applies whatever is due at now: the handshake deadline, the
// session's end, the keepalive timeout, a refresh, a Ping.
func (c *ServerConn) HandleTimeout(now time.Time) []Action {
	c.acts = c.acts[:0]
	c.timerAt = 0
	c.due(now)
	return c.acts
}

// begin starts an input at now: it clears the actions and applies the timed
// rows whose time has come. The timer is armed for the earliest of them, so
// one comparison tells whether any has; on the per-message path that is all.
func (c *ServerConn) begin(now time.Time) {
	c.acts = c.acts[:0]
	if c.timerAt != 0 && now.UnixNano() >= c.timerAt {
		c.timerAt = 0
		c.due(now)
	}
}

// due applies, in this order, every timed row of the state table whose time
// has come, then arms the timer for the next one.
func (c *ServerConn) due(now time.Time) {
	n := now.UnixNano()
	switch c.state {
	case StateChallenged:
		if n >= c.deadline {
			c.fail(CodeHandshakeTimeout, "handshake deadline passed")
			return
		}
	case StateOpen, StateRefreshing:
		if n >= c.endAt {
			c.fail(c.endCode, "the session's end has come")
			return
		}
		if c.alive.expired(n) {
			c.fail(CodeKeepaliveTimeout, "nothing received for two ping intervals")
			return
		}
		if c.state == StateOpen && (c.stale || (!c.final && n >= c.refreshAt)) {
			c.refresh(now)
			if c.state == StateClosed {
				return
			}
		}
		if c.alive.ping(n) {
			c.acts = append(c.acts, Action{Kind: ActionPing})
		}
	default:
		return
	}
	c.arm()
}

// refresh sends a re-challenge (spec section "Refresh") unless the token
// ends within a second, too soon for a challenge to have a lifetime.
func (c *ServerConn) refresh(now time.Time) {
	if c.sess.Expiry.Unix() <= now.Unix() {
		return
	}
	hs, msg, err := c.s.refresh(c.sess, c.rand, now, c.exporter)
	if err != nil {
		c.close(closeFor(err))
		return
	}
	c.hs = hs
	c.state = StateRefreshing
	c.stale = false
	if e := hs.exp.UnixNano(); e < c.endAt {
		c.endAt, c.endCode = e, CodeTokenExpired
	}
	c.send(msg)
}

// arm returns an ActionTimer for the earliest timed row still ahead, unless
// the timer is already set for it.
func (c *ServerConn) arm() {
	var at int64
	switch c.state {
	case StateChallenged:
		at = c.deadline
	case StateOpen, StateRefreshing:
		at = min(c.endAt, c.alive.next())
		if c.state == StateOpen && !c.final {
			at = min(at, c.refreshAt)
		}
	default:
		return
	}
	if at != c.timerAt {
		c.timerAt = at
		c.acts = append(c.acts, Action{Kind: ActionTimer, At: time.Unix(0, at)})
	}
}

// HandlePong records that a Ping or Pong frame arrived: the peer is alive.
func (c *ServerConn) HandlePong(now time.Time) []Action {
	c.begin(now)
	if c.state == StateOpen || c.state == StateRefreshing {
		c.alive.heard = now.UnixNano()
	}
	return c.acts
}

// Recheck re-evaluates the session against the registry as it is now (spec
// section "Revocation"); call it after every registry change. A session whose
// key was removed, revoked, moved outside its validity window, no longer
// authorized, or now required to be channel-bound when it is not, is closed
// with session_revoked; while the registry is unavailable, every session is
// closed with internal_error (spec section "Availability"). A session whose
// entry changed its subject or groups is refreshed at once, so that its token
// says what the registry says. Sockets not yet authenticated are unaffected:
// their response is checked against the registry when it arrives.
func (c *ServerConn) Recheck(now time.Time) []Action {
	c.begin(now)
	if c.state != StateOpen && c.state != StateRefreshing {
		return c.acts
	}
	e, err := c.s.recheck(c.sess, now)
	if err != nil {
		code := CodeSessionRevoked
		if CodeOf(err) == CodeInternalError {
			code = CodeInternalError
		}
		c.close(Action{Kind: ActionClose, Code: code, CloseCode: code.CloseCode(), Reason: code.Reason(), Err: err})
		return c.acts
	}
	c.setEntry(e)
	if e.Subject != c.sess.Subject || !slices.Equal(e.Groups, c.sess.Groups) {
		c.stale = true
	}
	c.due(now)
	return c.acts
}

// Send asks to send data to the client as one application message. It
// returns false, and nothing to send, unless the socket is OPEN or
// REFRESHING. A message that would take the octets waiting to be written past
// MaxQueued closes the socket with slow_reader (spec section "Slow peers")
// and returns false; a message is never refused when nothing is waiting, so
// one message larger than MaxQueued can still be sent. The transport reports each application message written
// with Written.
func (c *ServerConn) Send(now time.Time, data []byte) ([]Action, bool) {
	c.begin(now)
	if c.state != StateOpen && c.state != StateRefreshing {
		return c.acts, false
	}
	if c.queued > 0 && c.queued+int64(len(data)) > c.s.cfg.MaxQueued {
		c.fail(CodeSlowReader, "outbound queue full")
		return c.acts, false
	}
	c.queued += int64(len(data))
	c.acts = append(c.acts, Action{Kind: ActionSend, Data: data})
	return c.acts, true
}

// Written reports that n octets of application messages returned by Send
// have been written to the network, or discarded.
func (c *ServerConn) Written(n int) { c.queued -= int64(n) }

// HandleWriteError reports that a write failed: timeout when it did not
// complete within the transport's write deadline, which closes the socket
// with slow_reader; any other failure means the connection is lost.
func (c *ServerConn) HandleWriteError(now time.Time, timeout bool) []Action {
	c.begin(now)
	if timeout {
		c.fail(CodeSlowReader, "write deadline passed")
	} else {
		c.close(Action{Kind: ActionClose, Err: errors.New("protocol: write failed")})
	}
	return c.acts
}

// HandlePeerClose reports the client's Close frame, carrying code (1005 for
// none). The transport answers it as RFC 6455 requires; the socket ends.
func (c *ServerConn) HandlePeerClose(now time.Time, code int) []Action {
	c.begin(now)
	c.close(Action{Kind: ActionClose, PeerCode: code})
	return c.acts
}

// HandleLost reports that the connection ended without a Close frame, or
// that reading from it failed.
func (c *ServerConn) HandleLost(now time.Time, err error) []Action {
	c.begin(now)
	c.close(Action{Kind: ActionClose, Err: err})
	return c.acts
}

// Close ends the session for the application, with close code 1000.
func (c *ServerConn) Close(now time.Time) []Action {
	c.begin(now)
	c.close(Action{Kind: ActionClose, CloseCode: CloseNormal})
	return c.acts
}

// Shutdown ends the socket for a server shutdown, with close code 1001,
// whatever its state (spec section "Closing").
func (c *ServerConn) Shutdown(now time.Time) []Action {
	c.begin(now)
	c.close(Action{Kind: ActionClose, CloseCode: CloseGoingAway, Reason: reasonShutdown})
	return c.acts
}

func (c *ServerConn) fail(code Code, detail string) {
	c.close(Action{Kind: ActionClose, Code: code, CloseCode: code.CloseCode(), Reason: code.Reason(), Err: errors.New(detail)})
}

// close ends the socket with a; the first close wins.
func (c *ServerConn) close(a Action) {
	if c.state == StateClosed {
		return
	}
	c.state = StateClosed
	c.hs = nil
	a.Retry = false // a server does not reconnect
	if a.Code != "" && c.s.cfg.DiagnosticReasons {
		a.Reason = a.Code.DiagnosticReason()
	}
	c.end = a
	c.acts = append(c.acts, a)
}

func (c *ServerConn) send(msg []byte) {
	c.acts = append(c.acts, Action{Kind: ActionSend, Text: true, Data: msg})
}
