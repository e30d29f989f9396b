package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// CloseError reports that the server ended the socket with a Close frame, or
// that the TCP connection ended without one (Code 1006, abnormal closure).
// Failures the client detects itself are not CloseErrors: they carry a
// *protocol.ProtocolError instead, and protocol.CodeOf reports their code.
type CloseError struct {
	// Code is the WebSocket close code.
	Code int

	// Reason is the reason text the server sent. It is peer input: it is
	// not part of Error(), and callers should not display it unescaped.
	Reason string

	// Spec is the error code of spec section "Errors" when Code belongs to
	// exactly one of them. It is empty for 4003, which the spec shares among
	// all authentication failures so that the server does not reveal which
	// check failed, and for codes outside the table.
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
	case e.Code == websocket.CloseAbnormalClosure:
		return "client: connection ended without a Close frame (1006)"
	}
	return fmt.Sprintf("client: server closed the socket with code %d", e.Code)
}

// Retryable reports whether a client may reconnect after this closure, with
// backoff: when Spec is a code the spec marks retryable (handshake_timeout,
// token_expired, rate_limited, internal_error), or Code is 1001 (going away,
// a server shutting down), 1006 (the connection broke), 1011 (server error),
// 1012 (service restart), 1013 (try again later) or 1014 (bad gateway).
// Every other code, including 1000 and all of 4000-4999 not named above, is
// terminal: the client must not reconnect with the same configuration.
func (e *CloseError) Retryable() bool {
	switch e.Code {
	case websocket.CloseGoingAway, websocket.CloseAbnormalClosure, websocket.CloseInternalServerErr,
		websocket.CloseServiceRestart, websocket.CloseTryAgainLater, 1014:
		return true
	}
	return e.Spec != "" && e.Spec.Retryable()
}

// authFailedCode is the close code shared by the authentication failures.
var authFailedCode = protocol.CodeUnknownKey.CloseCode()

// specByClose maps each close code of the spec's error table to its error
// code, or to "" when several codes share it.
var specByClose = sync.OnceValue(func() map[int]protocol.Code {
	m := map[int]protocol.Code{}
	for _, code := range protocol.Codes() {
		cc := code.CloseCode()
		if cc == 0 {
			continue
		}
		if _, dup := m[cc]; dup {
			m[cc] = ""
		} else {
			m[cc] = code
		}
	}
	return m
})

func closeErrorOf(code int, reason string) *CloseError {
	return &CloseError{Code: code, Reason: reason, Spec: specByClose()[code]}
}

// retryable reports whether Keep may redial after err (spec section
// "Errors", column "Retry"): a retryable closure, a retryable code the
// client detected or got as an HTTP status, or a network failure. Anything
// else, including every error Keep cannot classify, is terminal.
func retryable(err error) bool {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Retryable()
	}
	if code := protocol.CodeOf(err); code != "" {
		return code.Retryable()
	}
	var se *statusError
	if errors.As(err, &se) {
		// 429 and 503 are rate_limited above; a proxy in front of a server
		// that is restarting answers 502 or 504.
		return se.status == http.StatusBadGateway || se.status == http.StatusGatewayTimeout
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
