// Package protocol implements the messages and handshake of wsproof v1, as
// specified in spec/wsproof-v1.md.
//
// The package is pure: it performs no I/O, starts no goroutines, and reads
// neither the clock nor a global random source. Every operation that needs
// the time or randomness takes them as arguments, which is what makes the
// test vectors in testdata/ reproducible. Transport (WebSocket, TLS, deadlines)
// belongs to the server and client packages.
//
// A server builds one [Server] from a [ServerConfig] and calls [Server.Start]
// for each new socket, then [ServerHandshake.ReadResponse] with the client's
// answer. A client builds one [Client] and calls [Client.Handshake], then
// [ClientHandshake.ReadChallenge] and [ClientHandshake.ReadAccept]. A refresh
// is the same exchange on a live socket ([Server.Refresh], [Client.Refresh]).
// Handshake values are single-use: each step runs at most once.
//
// Every failure is a *[ProtocolError] whose Code is a row of the spec's error
// table; [CodeOf] extracts it from any error.
package protocol

import "time"

// Subprotocol is the WebSocket subprotocol of wsproof v1.
const Subprotocol = "wsproof.v1"

// The "typ" header values of spec section "Explicit typing and domain separation". Each object
// kind has its own, compared byte for byte, so that one kind can never pass
// for another (RFC 8725 section 3.11).
const (
	TypChallenge = "wsproof-challenge+jwt"
	TypResponse  = "wsproof-response+jwt"
	TypSession   = "wsproof-session+jwt" // inner JWS of the session token
	TypSessionE  = "wsproof-session+jwe" // outer JWE of the session token
)

// Channel-binding types carried in the challenge's "cb" claim.
const (
	BindingTLSExporter = "tls-exporter"
	BindingNone        = "none"
)

// Size limits of spec section "Limits", in bytes.
const (
	MaxHandshakeMessage = 4096  // challenge, response
	MaxAcceptMessage    = 16384 // accept
	MaxToken            = 8192  // session token
	MaxIdentity         = 256   // server identity (iss, aud)
)

// Defaults and bounds of spec section "Limits".
const (
	DefaultChallengeLifetime = 30 * time.Second
	MaxChallengeLifetime     = 300 * time.Second
	DefaultTokenLifetime     = 300 * time.Second
	DefaultClockSkew         = 60 * time.Second
	DefaultRefreshBefore     = 60 * time.Second // capped at half the token lifetime
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultPingInterval      = 30 * time.Second // the keepalive timeout is twice this
	DefaultMaxMessageSize    = 65536            // application messages, octets
	DefaultMaxQueued         = 1 << 20          // application octets waiting to be written, per socket
	MaxMessageSizeLimit      = 1 << 30          // the largest MaxMessageSize a party may configure
)

// Fixed sizes of random values, in bytes.
const (
	SocketIDSize   = 16 // generated; receivers accept 16 to 32
	maxSocketIDLen = 32
	NonceSize      = 32
	jtiSize        = 16
	ExporterSize   = 32 // RFC 9266 tls-exporter length
)

// ExporterLabel is the TLS exporter label of RFC 9266 section 2; the context
// is empty and the length ExporterSize.
const ExporterLabel = "EXPORTER-Channel-Binding"
