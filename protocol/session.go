package protocol

import (
	"bytes"
	"fmt"
	"time"
)

// State is a state of spec section "State machines". The server's socket
// starts in StateChallenged; the client's in StateAwaitChallenge.
type State uint8

// The states of both roles.
const (
	StateChallenged     State = iota + 1 // server: the first challenge is outstanding
	StateAwaitChallenge                  // client: waiting for the first challenge
	StateAwaitAccept                     // client: the first response is outstanding
	StateOpen                            // authenticated, no refresh outstanding
	StateRefreshing                      // authenticated, a re-challenge is outstanding
	StateClosed                          // ended; every further input is ignored
)

var stateNames = [...]string{
	StateChallenged: "CHALLENGED", StateAwaitChallenge: "AWAIT_CHALLENGE", StateAwaitAccept: "AWAIT_ACCEPT",
	StateOpen: "OPEN", StateRefreshing: "REFRESHING", StateClosed: "CLOSED",
}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// ActionKind says what an Action asks the transport to do.
type ActionKind uint8

// The actions of the session state machines. A transport carries out the
// actions an input returns in their order, before the next input.
const (
	// ActionSend: send Data as one WebSocket message, text when Text is set
	// (a control message), else binary (application data).
	ActionSend ActionKind = iota + 1

	// ActionPing: send a WebSocket Ping frame.
	ActionPing

	// ActionDeliver: hand Data, an application message, to the
	// application. The session that authorized it is the machine's Session
	// at the time the action is returned.
	ActionDeliver

	// ActionAccepted: an accept was sent (server) or processed (client);
	// the machine's Session is new.
	ActionAccepted

	// ActionTimer: call HandleTimeout at At, or later, replacing any timer
	// set before. Calling it earlier is harmless.
	ActionTimer

	// ActionClose: the socket has ended and the machine is CLOSED. Send a
	// Close frame with CloseCode and Reason unless CloseCode is 0 (nothing
	// can or need be sent), then close the connection. Spec section
	// "Revocation" bounds the time from this action to the Close frame
	// being sent, or the connection dropped, to 1 second whatever the peer
	// does, so the transport must never wait on the peer for it.
	ActionClose
)

var actionNames = [...]string{
	ActionSend: "send", ActionPing: "ping", ActionDeliver: "deliver", ActionAccepted: "accepted",
	ActionTimer: "timer", ActionClose: "close",
}

func (k ActionKind) String() string {
	if int(k) < len(actionNames) && actionNames[k] != "" {
		return actionNames[k]
	}
	return fmt.Sprintf("ActionKind(%d)", k)
}

// Action is one thing a session state machine asks its transport to do. Only
// the fields of its Kind are set.
type Action struct {
	Kind ActionKind

	Data []byte    // ActionSend, ActionDeliver; owned by the transport once returned
	Text bool      // ActionSend: a text (control) message
	At   time.Time // ActionTimer

	// ActionClose. Code is the spec's error code when the socket ends for a
	// failure of the table in spec section "Errors", and "" when it ends
	// normally (1000), for a shutdown (1001), or because the peer closed it
	// or the connection was lost (CloseCode 0). Err describes the failure
	// for logs; it never holds peer input and is never sent.
	Code      Code
	CloseCode int
	Reason    string
	Err       error

	// Retry, for a client's ActionClose: whether it may reconnect, with
	// backoff (spec section "Retry").
	Retry bool

	// PeerCode, for an ActionClose caused by the peer's Close frame: the
	// close code it carried (1005 when it carried none).
	PeerCode int
}

// keepalive is the schedule of spec section "Keepalive" that both roles
// keep on an authenticated socket: a Ping every interval, and the end of a
// socket from which nothing arrived for two intervals. Times are Unix
// nanoseconds.
type keepalive struct {
	interval int64
	heard    int64 // the last time anything arrived
	nextPing int64
}

func (k *keepalive) start(n int64, interval time.Duration) {
	k.interval = int64(interval)
	k.heard, k.nextPing = n, n+k.interval
}

// expired reports whether nothing has arrived for the keepalive timeout.
func (k *keepalive) expired(n int64) bool { return n >= k.heard+2*k.interval }

// ping reports whether a Ping is due at n, and if so schedules the next.
func (k *keepalive) ping(n int64) bool {
	if n < k.nextPing {
		return false
	}
	k.nextPing = n + k.interval
	return true
}

// next is the earliest time at which expired or ping may change its answer.
// A message that arrives moves the timeout later, not earlier, so a timer
// armed for next is never late.
func (k *keepalive) next() int64 { return min(k.heard+2*k.interval, k.nextPing) }

// Close codes that are not in the error table (RFC 6455 section 7.4.1).
const (
	CloseNormal    = 1000 // the application ended the session
	CloseGoingAway = 1001 // a server shutting down
	CloseNoStatus  = 1005 // a Close frame without a code (never sent)
	CloseAbnormal  = 1006 // the connection ended without a Close frame (never sent)
)

// Reason text of a shutdown's Close frame (1001).
const reasonShutdown = "server shutting down"

// CloseRetryable reports whether a client may reconnect, with exponential
// backoff and jitter, after the server ended the socket with the WebSocket
// close code cc (spec section "Retry"): the codes of the error table whose
// Retry column says yes, 1001 (going away), 1006 (the connection ended
// without a Close frame), and 1011 to 1014 (server error, service restart,
// try again later, bad gateway). Every other code, including 1000, the
// authentication failures (4003) and codes outside the table, is terminal.
func CloseRetryable(cc int) bool {
	switch cc {
	case CloseGoingAway, CloseAbnormal, 1011, 1012, 1013, 1014:
		return true
	}
	code := CodeForClose(cc)
	return code != "" && code.Retryable()
}

// CodeForClose returns the error code whose close code is cc, or "" when cc
// belongs to no code or to several (4003, shared by every authentication
// failure so that the server does not reveal which check failed).
func CodeForClose(cc int) Code {
	if cc < 4000 || cc > 4999 {
		return ""
	}
	return byClose[cc]
}

var byClose = func() map[int]Code {
	m := map[int]Code{}
	for code, info := range table {
		if info.close == 0 {
			continue
		}
		if _, dup := m[info.close]; dup {
			m[info.close] = ""
		} else {
			m[info.close] = code
		}
	}
	return m
}()

// UpgradeRefused maps a refused WebSocket upgrade, its HTTP status and the
// start of its body, to its error code and whether the client may retry
// (spec section "Client state machine", row C1): 429 and 503 are
// rate_limited; 403 and 400 are origin_not_allowed and subprotocol_required
// when the body's first line is the code's reason text, as a wsproof server
// sends it, and otherwise come from something that is not a wsproof server
// (a TLS port spoken to without TLS, a proxy) and have no code; 502 and 504
// (a proxy whose server is away) have no code and are retryable; every
// other status has no code and is terminal. body may be cut short.
func UpgradeRefused(status int, body []byte) (Code, bool) {
	switch status {
	case 429, 503:
		return CodeRateLimited, true
	case 403, 400:
		code := CodeOriginNotAllowed
		if status == 400 {
			code = CodeSubprotocolRequired
		}
		line, _, _ := bytes.Cut(body, []byte("\n"))
		if string(bytes.TrimRight(line, "\r")) == code.Reason() {
			return code, false
		}
		return "", false
	case 502, 504:
		return "", true
	}
	return "", false
}

// closeFor is the ActionClose of a failure with a code of the error table.
func closeFor(err error) Action {
	code := CodeOf(err)
	if code == "" || code.CloseCode() == 0 {
		code = CodeInternalError
	}
	return Action{Kind: ActionClose, Code: code, CloseCode: code.CloseCode(), Reason: code.Reason(), Err: err,
		Retry: code.Retryable()}
}
