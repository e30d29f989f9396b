package client

import (
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// CloseError reports that the server ended the socket with a Close frame, or
// that the TCP connection ended without one (Code 1006, abnormal closure).
// Failures the client detects itself are not CloseErrors: they carry a
// *protocol.ProtocolError instead, and protocol.CodeOf reports their code.
type CloseError struct {
	// Code is the WebSocket close code; 1005 when the Close frame carried
	// none.
	Code int

	// Reason is the reason text the server sent. It is peer input: it is
	// not part of Error(), and callers should not display it unescaped.
	Reason string

	// Spec is the error code of spec section "Errors" when Code belongs to
	// exactly one of them (protocol.CodeForClose). It is empty for 4003,
	// which the spec shares among all authentication failures so that the
	// server does not reveal which check failed, and for codes outside the
	// table.
	Spec protocol.Code
}

func (e *CloseError) Error() string {
	switch {
	case e.Code == authFailedCode:
		return fmt.Sprintf("client: server closed the socket: authentication failed (%d)", e.Code)
	case e.Spec != "":
		return fmt.Sprintf("client: server closed the socket: %s (%d)", e.Spec, e.Code)
	case e.Code == websocket.CloseNormalClosure:
		return "client: server closed the socket normally (1000)"
	case e.Code == websocket.CloseGoingAway:
		return "client: server going away (1001)"
	case e.Code == websocket.CloseNoStatusReceived:
		return "client: server closed the socket without a code (1005)"
	case e.Code == websocket.CloseAbnormalClosure:
		return "client: connection ended without a Close frame (1006)"
	}
	return fmt.Sprintf("client: server closed the socket with code %d", e.Code)
}

// Retryable reports whether a client may reconnect after this closure, with
// backoff, as spec section "Retry" says (protocol.CloseRetryable): after the
// codes whose Retry column says yes (keepalive_timeout, handshake_timeout,
// slow_reader, token_expired, rate_limited, internal_error), 1001 (going
// away), 1006 (the connection broke), 1011 (server error), 1012 (service
// restart), 1013 (try again later) and 1014 (bad gateway). Every other code,
// including 1000, 1005 (none), 4003 and codes outside the table, is terminal:
// the client must not reconnect with the same configuration.
func (e *CloseError) Retryable() bool { return protocol.CloseRetryable(e.Code) }

// authFailedCode is the close code shared by the authentication failures.
var authFailedCode = protocol.CodeUnknownKey.CloseCode()

func closeErrorOf(code int, reason string) *CloseError {
	return &CloseError{Code: code, Reason: reason, Spec: protocol.CodeForClose(code)}
}

// UpgradeError is an upgrade that the server refused with an HTTP status.
// When the status is one of the spec's (429, 503, 403, 400), the error that
// wraps it also carries a *protocol.ProtocolError with the code, for 403
// and 400 only if the response came from a wsproof server.
type UpgradeError struct {
	// Status is the HTTP status.
	Status int

	// Wsproof is false for a 400 or 403 whose body did not begin with the
	// spec's reason text: a refusal by something that is not a wsproof
	// server, such as a TLS port spoken to without TLS, or a proxy. The
	// body itself is the peer's and is not kept.
	Wsproof bool
}

func (e *UpgradeError) Error() string {
	if !e.Wsproof {
		return fmt.Sprintf("upgrade refused with HTTP status %d, not by a wsproof server (its body is not a wsproof reason)", e.Status)
	}
	return fmt.Sprintf("upgrade refused with HTTP status %d", e.Status)
}
