package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Code is an error code from the error table of spec/wsproof-v1.md section
// "Errors". Codes are stable strings that appear in test vectors and logs.
type Code string

// The error codes of wsproof v1.
const (
	CodeMalformed         Code = "malformed"
	CodeUnexpectedMessage Code = "unexpected_message"
	CodeTooLarge          Code = "too_large"

	// Authentication failures. On the wire they are indistinguishable (close
	// code 4003, one reason text); the distinct codes are for logs and vectors.
	CodeUnknownKey             Code = "unknown_key"
	CodeKeyMismatch            Code = "key_mismatch"
	CodeAlgMismatch            Code = "alg_mismatch"
	CodeBadSignature           Code = "bad_signature"
	CodeKeyRevoked             Code = "key_revoked"
	CodeKeyNotValid            Code = "key_not_valid"
	CodeChallengeExpired       Code = "challenge_expired"
	CodeTranscriptMismatch     Code = "transcript_mismatch"
	CodeSocketMismatch         Code = "socket_mismatch"
	CodeNonceMismatch          Code = "nonce_mismatch"
	CodeAudienceMismatch       Code = "audience_mismatch"
	CodeChannelBindingMismatch Code = "channel_binding_mismatch"
	CodeChannelBindingRequired Code = "channel_binding_required"
	CodeAccessDenied           Code = "access_denied"

	CodeAlgNotAllowed    Code = "alg_not_allowed"
	CodeHeaderNotAllowed Code = "header_not_allowed"
	CodeWrongType        Code = "wrong_type"
	CodeHandshakeTimeout Code = "handshake_timeout"
	CodeKeepaliveTimeout Code = "keepalive_timeout"
	CodeSlowReader       Code = "slow_reader"
	CodeTokenExpired     Code = "token_expired"
	CodeSessionRevoked   Code = "session_revoked"
	CodeRateLimited      Code = "rate_limited"
	CodeInternalError    Code = "internal_error"

	// Refused before the WebSocket upgrade, with an HTTP status.
	CodeOriginNotAllowed    Code = "origin_not_allowed"
	CodeSubprotocolRequired Code = "subprotocol_required"

	// Never sent: a key or key set refused when it is loaded.
	CodeBadKey Code = "bad_key"

	// Never sent: a session token a token opener rejects. No party closes
	// a socket with it; it has no close code.
	CodeTokenInvalid Code = "token_invalid"
)

// Close codes shared by several error codes.
const (
	closeAuthFailed = 4003
	reasonAuth      = "authentication failed"
)

type codeInfo struct {
	close     int    // WebSocket close code, 0 if the code is never sent in a Close frame
	http      int    // HTTP status when refused before the upgrade, else 0
	retryable bool   // a client may reconnect with backoff
	reason    string // fixed close reason text; never peer input
}

// table is the error table of spec section "Errors", transcribed. A test
// checks it against the table in the spec.
var table = map[Code]codeInfo{
	CodeMalformed:         {4000, 0, false, "malformed message"},
	CodeUnexpectedMessage: {4001, 0, false, "unexpected message"},
	CodeTooLarge:          {4002, 0, false, "message too large"},

	CodeUnknownKey:             {closeAuthFailed, 0, false, reasonAuth},
	CodeKeyMismatch:            {closeAuthFailed, 0, false, reasonAuth},
	CodeAlgMismatch:            {closeAuthFailed, 0, false, reasonAuth},
	CodeBadSignature:           {closeAuthFailed, 0, false, reasonAuth},
	CodeKeyRevoked:             {closeAuthFailed, 0, false, reasonAuth},
	CodeKeyNotValid:            {closeAuthFailed, 0, false, reasonAuth},
	CodeChallengeExpired:       {closeAuthFailed, 0, false, reasonAuth},
	CodeTranscriptMismatch:     {closeAuthFailed, 0, false, reasonAuth},
	CodeSocketMismatch:         {closeAuthFailed, 0, false, reasonAuth},
	CodeNonceMismatch:          {closeAuthFailed, 0, false, reasonAuth},
	CodeAudienceMismatch:       {closeAuthFailed, 0, false, reasonAuth},
	CodeChannelBindingMismatch: {closeAuthFailed, 0, false, reasonAuth},
	CodeChannelBindingRequired: {closeAuthFailed, 0, false, reasonAuth},
	CodeAccessDenied:           {closeAuthFailed, 0, false, reasonAuth},

	CodeAlgNotAllowed:    {4004, 0, false, "algorithm not allowed"},
	CodeHeaderNotAllowed: {4005, 0, false, "header not allowed"},
	CodeWrongType:        {4006, 0, false, "wrong message type"},
	CodeKeepaliveTimeout: {4007, 0, true, "keepalive timed out"},
	CodeHandshakeTimeout: {4008, 0, true, "handshake timed out"},
	CodeSlowReader:       {4009, 0, true, "peer too slow"},
	CodeTokenExpired:     {4010, 0, true, "session expired"},
	CodeSessionRevoked:   {4011, 0, false, "session revoked"},
	CodeRateLimited:      {4029, 429, true, "try again later"},
	CodeInternalError:    {4050, 0, true, "internal error"},

	CodeOriginNotAllowed:    {0, 403, false, "origin not allowed"},
	CodeSubprotocolRequired: {0, 400, false, "subprotocol wsproof.v1 required"},
	CodeBadKey:              {0, 0, false, "bad key"},
	CodeTokenInvalid:        {0, 0, false, "invalid token"},
}

// Codes returns every error code, in no particular order.
func Codes() []Code {
	out := make([]Code, 0, len(table))
	for c := range table {
		out = append(out, c)
	}
	return out
}

// Known reports whether c is in the spec's error table.
func (c Code) Known() bool { _, ok := table[c]; return ok }

// CloseCode is the WebSocket close code for c, or 0 if c is never sent in a
// Close frame.
func (c Code) CloseCode() int { return table[c].close }

// HTTPStatus is the HTTP status for codes that refuse the upgrade itself, or
// for rate_limited the status of a refusal before the upgrade; otherwise 0.
func (c Code) HTTPStatus() int { return table[c].http }

// Retryable reports whether a client may reconnect (with backoff) after c.
func (c Code) Retryable() bool { return table[c].retryable }

// Reason is the fixed reason text sent with c. It never contains peer input.
func (c Code) Reason() string { return table[c].reason }

// DiagnosticReason is the reason text sent with c by a party in diagnostic
// mode (spec section "Diagnostic reasons"): Reason, a space and the code in
// brackets, as in "authentication failed [unknown_key]". It tells apart
// the failures that share a close code, which is what conformance tests
// need and what an attacker must not get: see ServerConfig's
// DiagnosticReasons.
func (c Code) DiagnosticReason() string { return table[c].reason + " [" + string(c) + "]" }

// CodeOfClose is the code a Close frame with closeCode and reason names:
// the code whose diagnostic reason is reason, when its close code is
// closeCode, and exact reports that it was named that way. Otherwise, for
// a close code that only one code has, that code with exact false (the
// close code alone says which failure it was); otherwise "" (a close code
// that several codes share, whose plain reason does not say which, or one
// outside the table).
func CodeOfClose(closeCode int, reason string) (code Code, exact bool) {
	if i := strings.LastIndexByte(reason, '['); i > 0 && strings.HasSuffix(reason, "]") {
		c := Code(reason[i+1 : len(reason)-1])
		if e, ok := table[c]; ok && e.close == closeCode && c.DiagnosticReason() == reason {
			return c, true
		}
	}
	var only Code
	for c, e := range table {
		if e.close == closeCode {
			if only != "" {
				return "", false
			}
			only = c
		}
	}
	return only, false
}

// ProtocolError is a failure with a code from the spec's error table. Err,
// when set, holds the internal detail for logs; it is never sent to the peer.
type ProtocolError struct {
	Code Code
	Err  error
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("protocol: %s: %v", e.Code, e.Err)
	}
	return "protocol: " + string(e.Code)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// CodeOf returns the spec code carried by err, or "" if err does not wrap a
// *ProtocolError. The usual way to branch on a failure:
//
//	if protocol.CodeOf(err) == protocol.CodeTokenExpired { ... }
func CodeOf(err error) Code {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func fail(c Code, detail string) error {
	return &ProtocolError{Code: c, Err: errors.New(detail)}
}

func failf(c Code, format string, args ...any) error {
	return &ProtocolError{Code: c, Err: fmt.Errorf(format, args...)}
}

func wrap(c Code, err error) error {
	return &ProtocolError{Code: c, Err: err}
}
