// Package protocol implements wsproof v1, as specified in spec/wsproof-v1.md:
// its messages, its verification procedures, and the state machines of both
// roles from the upgrade to the close.
//
// The package is pure: it performs no I/O, starts no goroutines, and reads
// neither the clock nor a global random source. Every operation that needs
// the time or randomness takes them as arguments, which is what makes the
// test vectors in testdata/ reproducible. Transports (WebSocket, TLS,
// timers, queues) belong to the server and client packages, or to any other
// implementation that drives these machines.
//
// The session state machines of spec section "State machines" are
// [ServerConn] (from [Server.NewConn]) and [ClientConn] (from
// [Client.NewConn]): a transport reports what happens on a socket, with the
// time, and carries out the [Action]s they return: send these bytes, deliver
// this message, arm this timer, close with this code. Every protocol decision,
// the refresh schedule, expiry, revocation, keepalive, slow peers and the
// retry rules, is theirs; testdata/session-vectors.json drives both through
// every row of the spec's tables ([RunSessionVectors]).
//
// Underneath, the handshake steps are available on their own: [Server.Start]
// and [ServerHandshake.ReadResponse]; [Client.Handshake],
// [ClientHandshake.ReadChallenge] and [ClientHandshake.ReadAccept].
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
