package protocol

import (
	"errors"
	"io"
	"time"
)

// ClientConn is the client's side of one socket, from the upgrade to the
// close: the state machine of spec section "Client state machine", whose
// first states are the handshake ([ClientHandshake]).
//
// Like [ServerConn] it performs no I/O and reads no clock: the transport
// reports what happens on the socket with the time, carries out the returned
// actions in order, and serializes its calls. The slice of actions a call
// returns is valid until the next call, and is cleared by the transport as for
// ServerConn.
type ClientConn struct {
	c        *Client
	rand     io.Reader
	tls      bool
	exporter []byte
	state    State
	hs       *ClientHandshake // AWAIT_CHALLENGE to AWAIT_ACCEPT, REFRESHING
	sess     *ClientSession
	acts     []Action
	end      Action

	// Times, in Unix nanoseconds.
	deadline int64 // the handshake deadline
	alive    keepalive
	timerAt  int64
}

// NewConn starts the client's side of a socket whose upgrade has just
// succeeded (state AWAIT_CHALLENGE). tls says whether the connection is TLS;
// exporter is its RFC 9266 tls-exporter value, which only TLS 1.3 has, or
// nil. On a TLS connection the client requires channel binding unless
// configured with InsecureAllowUnbound (spec section "When channel binding is
// required"). The handshake must end by now plus HandshakeTimeout, or by
// deadline if it is earlier and not zero (a transport's own bound that
// started before the upgrade). The actions arm that deadline.
func (c *Client) NewConn(rand io.Reader, now, deadline time.Time, tls bool, exporter []byte) (*ClientConn, []Action) {
	cc := &ClientConn{c: c, rand: rand, tls: tls || exporter != nil, exporter: exporter, state: StateAwaitChallenge,
		acts: make([]Action, 0, 4)}
	d := now.Add(c.cfg.HandshakeTimeout)
	if !deadline.IsZero() && deadline.Before(d) {
		d = deadline
	}
	cc.deadline = d.UnixNano()
	cc.arm()
	return cc, cc.acts
}

// State returns the current state.
func (cc *ClientConn) State() State { return cc.state }

// Session returns the session of the most recent accept, or nil before the
// first. A ClientSession is never modified.
func (cc *ClientConn) Session() *ClientSession { return cc.sess }

// End returns the ActionClose that ended the socket, and whether it has
// ended.
func (cc *ClientConn) End() (Action, bool) { return cc.end, cc.state == StateClosed }

// ReadLimit is the largest message of the given type that any row of the
// current state allows; a transport reads at most one octet more before it
// calls HandleMessage, which applies the exact limit.
func (cc *ClientConn) ReadLimit(text bool) int64 {
	switch {
	case cc.state == StateAwaitChallenge:
		return MaxHandshakeMessage
	case text || cc.state == StateAwaitAccept:
		return MaxAcceptMessage
	}
	return cc.c.cfg.MaxMessageSize
}

// HandleMessage processes a WebSocket data message. The rows of spec section
// "Client state machine" apply, in order, the size limit of the state and
// type, then the type, then the first octet, which tells an accept ('{')
// from a challenge.
func (cc *ClientConn) HandleMessage(now time.Time, text bool, data []byte) []Action {
	cc.begin(now)
	accept := text && len(data) > 0 && data[0] == '{'
	switch cc.state {
	case StateAwaitChallenge, StateAwaitAccept:
		limit := MaxHandshakeMessage
		if cc.state == StateAwaitAccept {
			limit = MaxAcceptMessage
		}
		switch {
		case len(data) > limit:
			cc.fail(CodeTooLarge, "message over the limit before authentication")
		case !text:
			cc.fail(CodeUnexpectedMessage, "binary message before authentication")
		case cc.state == StateAwaitChallenge && accept:
			cc.fail(CodeUnexpectedMessage, "accept before the challenge")
		case cc.state == StateAwaitChallenge:
			cc.hs = cc.c.Handshake()
			cc.hs.tls = cc.tls
			cc.readChallenge(now, data, StateAwaitAccept)
		case !accept:
			cc.fail(CodeUnexpectedMessage, "text message other than the accept")
		default:
			cc.readAccept(now, data)
		}
	case StateOpen, StateRefreshing:
		cc.alive.heard = now.UnixNano()
		limit := MaxHandshakeMessage // a re-challenge
		if cc.state == StateRefreshing {
			limit = MaxAcceptMessage
		}
		switch {
		case !text && int64(len(data)) > cc.c.cfg.MaxMessageSize:
			cc.fail(CodeTooLarge, "application message over the limit")
		case !text:
			cc.acts = append(cc.acts, Action{Kind: ActionDeliver, Data: data})
		case len(data) > limit:
			cc.fail(CodeTooLarge, "control message over the limit")
		case cc.state == StateOpen && accept:
			cc.fail(CodeUnexpectedMessage, "accept with no response outstanding")
		case cc.state == StateOpen:
			cc.hs = cc.c.Refresh(cc.sess)
			cc.hs.tls = cc.tls
			cc.readChallenge(now, data, StateRefreshing)
		case !accept:
			cc.fail(CodeUnexpectedMessage, "text message other than the accept")
		default:
			cc.readAccept(now, data)
		}
	}
	return cc.acts
}

func (cc *ClientConn) readChallenge(now time.Time, data []byte, next State) {
	resp, err := cc.hs.ReadChallenge(data, cc.rand, now, cc.exporter)
	if err != nil {
		cc.close(closeFor(err))
		return
	}
	cc.state = next
	cc.acts = append(cc.acts, Action{Kind: ActionSend, Text: true, Data: resp})
}

func (cc *ClientConn) readAccept(now time.Time, data []byte) {
	sess, err := cc.hs.ReadAccept(data, now)
	cc.hs = nil
	if err != nil {
		cc.close(closeFor(err))
		return
	}
	if cc.sess == nil {
		cc.alive.start(now.UnixNano(), cc.c.cfg.PingInterval)
	}
	cc.sess = sess
	cc.state = StateOpen
	cc.acts = append(cc.acts, Action{Kind: ActionAccepted})
	cc.arm()
}

// HandleTimeout applies whatever is due at now: the handshake deadline, the
// keepalive timeout, a Ping.
func (cc *ClientConn) HandleTimeout(now time.Time) []Action {
	cc.acts = cc.acts[:0]
	cc.timerAt = 0
	cc.due(now)
	return cc.acts
}

// begin starts an input at now: it clears the actions and applies the timed
// rows whose time has come.
func (cc *ClientConn) begin(now time.Time) {
	cc.acts = cc.acts[:0]
	if cc.timerAt != 0 && now.UnixNano() >= cc.timerAt {
		cc.timerAt = 0
		cc.due(now)
	}
}

// due applies, in table order, the timed rows whose time has come, then arms
// the timer for the next one.
func (cc *ClientConn) due(now time.Time) {
	n := now.UnixNano()
	switch cc.state {
	case StateAwaitChallenge, StateAwaitAccept:
		if n >= cc.deadline {
			cc.fail(CodeHandshakeTimeout, "handshake deadline passed")
			return
		}
	case StateOpen, StateRefreshing:
		if cc.alive.expired(n) {
			cc.fail(CodeKeepaliveTimeout, "nothing received for two ping intervals")
			return
		}
		if cc.alive.ping(n) {
			cc.acts = append(cc.acts, Action{Kind: ActionPing})
		}
	default:
		return
	}
	cc.arm()
}

func (cc *ClientConn) arm() {
	var at int64
	switch cc.state {
	case StateAwaitChallenge, StateAwaitAccept:
		at = cc.deadline
	case StateOpen, StateRefreshing:
		at = cc.alive.next()
	default:
		return
	}
	if at != cc.timerAt {
		cc.timerAt = at
		cc.acts = append(cc.acts, Action{Kind: ActionTimer, At: time.Unix(0, at)})
	}
}

// HandlePong records that a Ping or Pong frame arrived.
func (cc *ClientConn) HandlePong(now time.Time) []Action {
	cc.begin(now)
	if cc.state == StateOpen || cc.state == StateRefreshing {
		cc.alive.heard = now.UnixNano()
	}
	return cc.acts
}

// ErrMessageTooLarge is returned by ClientConn.Send for a message larger than
// the server accepts; the socket stays open.
var ErrMessageTooLarge = errors.New("protocol: message larger than the server accepts")

// ErrNotOpen is returned by ClientConn.Send before the accept and after the
// socket has ended.
var ErrNotOpen = errors.New("protocol: socket not open")

// Send asks to send data to the server as one application message. It fails
// with ErrNotOpen unless the socket is OPEN or REFRESHING, and with
// ErrMessageTooLarge, leaving the socket open, when data is longer than the
// max_size of the server's accept.
func (cc *ClientConn) Send(now time.Time, data []byte) ([]Action, error) {
	cc.begin(now)
	if cc.state != StateOpen && cc.state != StateRefreshing {
		return cc.acts, ErrNotOpen
	}
	if int64(len(data)) > cc.sess.MaxMessageSize {
		return cc.acts, ErrMessageTooLarge
	}
	cc.acts = append(cc.acts, Action{Kind: ActionSend, Data: data})
	return cc.acts, nil
}

// HandleWriteError reports a failed write: timeout when it did not complete
// within the transport's write deadline (the server is not reading: a
// retryable slow_reader), else a lost connection.
func (cc *ClientConn) HandleWriteError(now time.Time, timeout bool) []Action {
	cc.begin(now)
	if timeout {
		cc.fail(CodeSlowReader, "write deadline passed")
	} else {
		cc.close(Action{Kind: ActionClose, Err: errors.New("protocol: write failed"), Retry: true})
	}
	return cc.acts
}

// HandlePeerClose reports the server's Close frame, with its close code
// (1005 for none). The socket ends; the action's Retry says whether the client
// may reconnect (spec section "Retry") and its Code is the error code of the
// close code when only one has it.
func (cc *ClientConn) HandlePeerClose(now time.Time, code int) []Action {
	cc.begin(now)
	cc.close(Action{Kind: ActionClose, Code: CodeForClose(code), PeerCode: code, Retry: CloseRetryable(code)})
	return cc.acts
}

// HandleLost reports that the connection ended without a Close frame (1006),
// which is retryable.
func (cc *ClientConn) HandleLost(now time.Time, err error) []Action {
	cc.begin(now)
	cc.close(Action{Kind: ActionClose, Err: err, PeerCode: CloseAbnormal, Retry: true})
	return cc.acts
}

// Close ends the socket for the application, with close code 1000; a client
// that closes does not reconnect.
func (cc *ClientConn) Close(now time.Time) []Action {
	cc.begin(now)
	cc.close(Action{Kind: ActionClose, CloseCode: CloseNormal})
	return cc.acts
}

func (cc *ClientConn) fail(code Code, detail string) {
	cc.close(Action{Kind: ActionClose, Code: code, CloseCode: code.CloseCode(), Reason: code.Reason(),
		Err: errors.New(detail), Retry: code.Retryable()})
}

func (cc *ClientConn) close(a Action) {
	if cc.state == StateClosed {
		return
	}
	cc.state = StateClosed
	cc.hs = nil
	if a.Code != "" && a.CloseCode != 0 {
		a.Reason = cc.c.Reason(a.Code)
	}
	cc.end = a
	cc.acts = append(cc.acts, a)
}
