// Package client implements the client role of wsproof v1 over WebSocket, as
// specified in spec/wsproof-v1.md (sections "Transport", "Client: verifying a
// challenge", "Client: processing an accept" and "Client state machine").
//
// [Dial] opens a socket, checks the server's signed challenge against the
// pinned server keys, answers it with the client key and returns a [Conn]
// carrying the application's binary messages. The server's later
// re-challenges are answered on the live socket without the application
// noticing. [Keep] keeps a connection up, redialing with backoff after the
// failures the spec marks as retryable.
//
// Every check of a message's content is made by package protocol. This
// package adds the I/O: the WebSocket, TLS channel binding, deadlines, queues
// and reconnection, and the part of the client state machine that routes each
// message (by size, type and first octet) to the protocol step of the state.
package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Config configures a client. A Config may be reused for many Dial calls and
// must not be modified while one is in progress.
type Config struct {
	// KeyID is the client key's id in the server's registry. Required.
	KeyID string

	// Signer is the client's private key. It may be any crypto.Signer (a TPM,
	// a secure element, an ssh-agent key); ECDSA signers return ASN.1 DER as
	// the crypto.Signer contract says. It must be safe for concurrent use
	// when the Config is shared. Required.
	Signer crypto.Signer

	// Algorithm is the algorithm registered for the key. Zero means the only
	// algorithm the key type allows; RSA keys, which allow RS256 and PS256,
	// must set it.
	Algorithm keys.Algorithm

	// ServerKeys is the pinned set of server signing keys. A challenge signed
	// by any other key is refused (unknown_key, bad_signature). Required.
	ServerKeys *keys.PublicSet

	// ServerIdentity, when set, must equal the challenge's "iss". Zero
	// accepts any identity signed by a pinned key.
	ServerIdentity string

	// RequireChannelBinding refuses servers that do not demand tls-exporter
	// channel binding (channel_binding_required). Only a wss:// connection
	// that negotiates TLS 1.3 can satisfy it.
	RequireChannelBinding bool

	// TLSConfig configures TLS for wss:// URLs. Nil means the defaults: the
	// system roots and the URL's host name. Channel binding needs TLS 1.3.
	TLSConfig *tls.Config

	// Header holds extra upgrade request headers, for example Origin. It must
	// not carry credentials: Dial refuses Cookie and Authorization, and the
	// WebSocket headers that Dial sets itself.
	Header http.Header

	// HandshakeTimeout bounds the whole handshake: DNS, TCP, TLS, the
	// upgrade, the challenge, the response and the accept. Zero means 10
	// seconds.
	HandshakeTimeout time.Duration

	// MaxMessageSize is the largest application message the client accepts;
	// a larger one closes the socket with too_large. Control (text) messages
	// are bounded by the spec's fixed limits whatever this says. Zero means
	// 65536 bytes; at most 1 GiB.
	MaxMessageSize int64

	// ClockSkew is how far the client's clock may disagree with the server's
	// when judging a challenge's times. Zero means protocol.DefaultClockSkew.
	ClockSkew time.Duration

	// Rand is the source of randomness for signatures. Nil means
	// crypto/rand.Reader.
	Rand io.Reader

	// Time returns the current time for checking challenges and accepts. Nil
	// means time.Now.
	Time func() time.Time

	// NetDialContext, when set, opens the TCP connection (for a custom
	// source address, a SOCKS dialer or a test harness). Nil means a
	// net.Dialer, through the proxy that the environment names.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Defaults and fixed limits of spec section "Limits" that apply to a client.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxMessageSize   = 65536

	inQueue  = 16 // received application messages waiting for Read
	outQueue = 64 // application messages waiting to be written
)

// Timeouts of a live connection. They are variables so that tests can
// shorten them.
var (
	writeTimeout  = 10 * time.Second // every write, spec section "Limits"
	pingInterval  = 30 * time.Second // the client's own Pings
	idleTimeout   = 75 * time.Second // no frame at all for this long ends the socket
	closeTimeout  = 10 * time.Second // Close: flush, Close frame and the server's reply
	lingerTimeout = 1 * time.Second  // after a failure: wait for the server's Close frame
)

var (
	errNoSubprotocol = errors.New("client: server did not select subprotocol " + protocol.Subprotocol)
	errExtension     = errors.New("client: server accepted a WebSocket extension")
	errClosed        = fmt.Errorf("client: %w", net.ErrClosed)
)

// setup is a validated Config.
type setup struct {
	pc          *protocol.Client
	pcfg        protocol.ClientConfig
	anyIdentity bool // temporary: the identity comes from the URL dialed
	rand        io.Reader
	now         func() time.Time
	timeout     time.Duration
	maxMsg      int
	header      http.Header
	tlsConf     *tls.Config
	netDial     func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newSetup(cfg *Config) (*setup, error) {
	if cfg == nil {
		return nil, errors.New("client: nil Config")
	}
	pcfg := protocol.ClientConfig{
		KeyID:                cfg.KeyID,
		Signer:               cfg.Signer,
		Algorithm:            cfg.Algorithm,
		ServerKeys:           cfg.ServerKeys,
		ServerIdentity:       cfg.ServerIdentity,
		InsecureAllowUnbound: !cfg.RequireChannelBinding,
		ClockSkew:            cfg.ClockSkew,
	}
	if pcfg.ServerIdentity == "" {
		pcfg.ServerIdentity = "wss://placeholder.invalid/" // replaced per dial
	}
	pc, err := protocol.NewClient(&pcfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	s := &setup{pc: pc, pcfg: pcfg, anyIdentity: cfg.ServerIdentity == "", rand: cfg.Rand, now: cfg.Time, timeout: cfg.HandshakeTimeout, tlsConf: cfg.TLSConfig, netDial: cfg.NetDialContext}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case s.timeout < 0:
		return nil, errors.New("client: negative HandshakeTimeout")
	case s.timeout == 0:
		s.timeout = defaultHandshakeTimeout
	}
	switch {
	case cfg.MaxMessageSize < 0 || cfg.MaxMessageSize > 1<<30:
		return nil, errors.New("client: MaxMessageSize out of range")
	case cfg.MaxMessageSize == 0:
		s.maxMsg = defaultMaxMessageSize
	default:
		s.maxMsg = int(cfg.MaxMessageSize)
	}
	s.header = make(http.Header, len(cfg.Header))
	for k, v := range cfg.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Cookie", "Authorization":
			// Spec section "Opening handshake": credentials travel in band,
			// never in cookies, where a cross-site page could use them.
			return nil, fmt.Errorf("client: header %s not allowed: credentials travel in band", http.CanonicalHeaderKey(k))
		case "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Version",
			"Upgrade", "Connection":
			return nil, fmt.Errorf("client: header %s is set by Dial", http.CanonicalHeaderKey(k))
		}
		s.header[k] = v
	}
	return s, nil
}

// Dial opens a wsproof socket to url (ws:// or wss://) and authenticates with
// cfg's key. It returns once the server's accept has arrived, or with the
// first failure, in which case nothing is left open. The caller must Close
// the returned Conn.
//
// ctx bounds the dial and the handshake; its cancellation after Dial returns
// does not affect the Conn. cfg.HandshakeTimeout bounds the whole handshake as
// well.
//
// When the server refuses the upgrade, Dial returns an error for which
// protocol.CodeOf reports the spec's code when the HTTP status has one (429
// and 503 are rate_limited, 403 origin_not_allowed, 400
// subprotocol_required). When a check of the challenge or the accept fails,
// Dial closes the socket with that code's close code and fixed reason and
// returns an error for which protocol.CodeOf reports the code; when the
// handshake deadline passes, the code is handshake_timeout. When the server
// closes the socket (for example with 4003 after refusing the client key),
// Dial returns a *CloseError.
func Dial(ctx context.Context, url string, cfg *Config) (*Conn, error) {
	s, err := newSetup(cfg)
	if err != nil {
		return nil, err
	}
	return s.dial(ctx, url)
}

func (s *setup) dial(ctx context.Context, url string) (*Conn, error) {
	if s.anyIdentity {
		id, err := protocol.IdentityFromURL(url)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c := *s
		c.pcfg.ServerIdentity = id
		if c.pc, err = protocol.NewClient(&c.pcfg); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c.anyIdentity = false
		return c.dial(ctx, url)
	}
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	// gorilla bounds its reads of the upgrade response by the context's
	// deadline only; a cancelled context must also cut the socket short, so
	// every raw connection is registered with the watch.
	w := &watch{}
	stop := context.AfterFunc(hctx, w.fire)
	defer stop()
	netDial := s.netDial
	proxy := http.ProxyFromEnvironment
	if netDial == nil {
		netDial = (&net.Dialer{}).DialContext
	} else {
		proxy = nil // a custom dialer decides the route itself
	}
	d := websocket.Dialer{
		Proxy: proxy,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := netDial(ctx, network, addr)
			if err == nil {
				w.add(c)
			}
			return c, err
		},
		TLSClientConfig:   s.tlsConf,
		Subprotocols:      []string{protocol.Subprotocol},
		EnableCompression: false, // spec section "Opening handshake": no permessage-deflate
	}
	ws, resp, err := d.DialContext(hctx, url, s.header)
	if err != nil {
		return nil, upgradeError(ctx, hctx, resp, err)
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		ws.Close()
		return nil, errNoSubprotocol
	}
	if len(resp.Header.Values("Sec-WebSocket-Extensions")) > 0 {
		ws.Close()
		return nil, errExtension
	}

	h := &handshake{s: s, ws: ws, ctx: ctx, hctx: hctx}
	deadline, _ := hctx.Deadline()
	ws.SetReadDeadline(deadline)
	ws.SetWriteDeadline(deadline)
	sess, exporter, err := h.run()
	if err == nil && !stop() {
		// The deadline or the cancellation came just as the handshake
		// ended; the watch may already have cut the socket.
		err = h.interrupted(os.ErrDeadlineExceeded)
	}
	if err != nil {
		return nil, err
	}
	return newConn(s, ws, sess, exporter), nil
}

// watch cuts the raw connections of a dial short when its context ends.
type watch struct {
	mu    sync.Mutex
	fired bool
	conns []net.Conn
}

var longAgo = time.Unix(1, 0)

func (w *watch) add(c net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conns = append(w.conns, c)
	if w.fired {
		c.SetDeadline(longAgo)
	}
}

func (w *watch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fired = true
	for _, c := range w.conns {
		c.SetDeadline(longAgo)
	}
}

// statusError is an upgrade that the server refused with an HTTP status. Its
// text names the status only: the response body is the peer's.
type statusError struct{ status int }

func (e *statusError) Error() string {
	return fmt.Sprintf("upgrade refused with HTTP status %d", e.status)
}

// upgradeError maps a failed dial to the spec's codes where it has them
// (spec section "Client state machine", state CONNECTING).
func upgradeError(ctx, hctx context.Context, resp *http.Response, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("client: dial: %w", ctx.Err())
	}
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		se := &statusError{resp.StatusCode}
		var code protocol.Code
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			code = protocol.CodeRateLimited
		case http.StatusForbidden:
			code = protocol.CodeOriginNotAllowed
		case http.StatusBadRequest:
			code = protocol.CodeSubprotocolRequired
		default:
			return fmt.Errorf("client: %w", se)
		}
		return fmt.Errorf("client: %w", &protocol.ProtocolError{Code: code, Err: se})
	}
	if hctx.Err() != nil || isTimeout(err) {
		return fmt.Errorf("client: %w", &protocol.ProtocolError{Code: protocol.CodeHandshakeTimeout, Err: err})
	}
	return fmt.Errorf("client: dial: %w", err)
}

// handshake is the exchange of challenge, response and accept on a new
// socket (states AWAIT_CHALLENGE and AWAIT_ACCEPT). It runs in Dial's
// goroutine, before the Conn's goroutines exist.
type handshake struct {
	s         *setup
	ws        *websocket.Conn
	ctx, hctx context.Context
}

func (h *handshake) run() (*protocol.ClientSession, []byte, error) {
	exporter, err := exporterOf(h.ws)
	if err != nil {
		return nil, nil, h.abort(&protocol.ProtocolError{Code: protocol.CodeInternalError, Err: err})
	}
	ch := h.s.pc.Handshake()

	typ, msg, err := readMessage(h.ws, 0)
	if err != nil {
		return nil, nil, h.readError(err)
	}
	if err := admit(awaitChallenge, typ, msg, 0); err != nil {
		return nil, nil, h.abort(err)
	}
	resp, err := ch.ReadChallenge(msg, h.s.rand, h.s.now(), exporter)
	if err != nil {
		return nil, nil, h.abort(err)
	}
	if err := h.ws.WriteMessage(websocket.TextMessage, resp); err != nil {
		return nil, nil, h.readError(err)
	}

	typ, msg, err = readMessage(h.ws, 0)
	if err != nil {
		return nil, nil, h.readError(err)
	}
	if err := admit(awaitAccept, typ, msg, 0); err != nil {
		return nil, nil, h.abort(err)
	}
	sess, err := ch.ReadAccept(msg, h.s.now())
	if err != nil {
		return nil, nil, h.abort(err)
	}
	return sess, exporter, nil
}

// exporterOf returns the RFC 9266 tls-exporter value of the socket's TLS
// connection, or nil when there is none or it is not TLS 1.3 (spec section
// "The exporter value": TLS 1.2 exporter values are never used).
func exporterOf(ws *websocket.Conn) ([]byte, error) {
	tc, ok := ws.UnderlyingConn().(*tls.Conn)
	if !ok {
		return nil, nil
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return nil, nil
	}
	return st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
}

// readError turns a failed read or write during the handshake into Dial's
// error: the server's Close frame, the end of ctx, the handshake deadline, or
// a network failure.
func (h *handshake) readError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		h.ws.Close()
		return closeErrorOf(ce.Code, ce.Text)
	}
	// gorilla hides the cause of a timeout but keeps its Timeout method.
	if h.ctx.Err() != nil || h.hctx.Err() != nil || isTimeout(err) {
		return h.interrupted(err)
	}
	h.ws.Close()
	return fmt.Errorf("client: handshake: %w", err)
}

// interrupted ends a handshake cut short by ctx or by the deadline.
func (h *handshake) interrupted(err error) error {
	if h.ctx.Err() != nil {
		sendClose(h.ws, websocket.CloseGoingAway, "")
		h.ws.Close()
		return fmt.Errorf("client: handshake: %w", h.ctx.Err())
	}
	// The read state is unusable after a deadline, so there is no reply to
	// wait for.
	code := protocol.CodeHandshakeTimeout
	sendClose(h.ws, code.CloseCode(), code.Reason())
	h.ws.Close()
	return fmt.Errorf("client: %w", &protocol.ProtocolError{Code: code, Err: err})
}

// abort closes the socket for a protocol failure, with the close code and
// fixed reason of the failure's code (spec section "Closing").
func (h *handshake) abort(err error) error {
	sendFailure(h.ws, err)
	linger(h.ws)
	h.ws.Close()
	return fmt.Errorf("client: %w", err)
}

// sendFailure sends the Close frame for a protocol failure.
func sendFailure(ws *websocket.Conn, err error) {
	code := protocol.CodeOf(err)
	cc := code.CloseCode()
	if cc == 0 {
		code = protocol.CodeInternalError
		cc = code.CloseCode()
	}
	sendClose(ws, cc, code.Reason())
}

func sendClose(ws *websocket.Conn, code int, reason string) {
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeTimeout))
}

// linger waits a short while for the server's answering Close frame, so that
// closing the TCP connection while data is still arriving does not reset it
// before the server has read our Close frame.
func linger(ws *websocket.Conn) {
	ws.SetReadDeadline(time.Now().Add(lingerTimeout))
	for {
		if _, _, err := ws.NextReader(); err != nil {
			return
		}
	}
}

// readMessage reads the next data message, but never more than one byte past
// the largest size any state allows for its type: MaxAcceptMessage for text
// and before authentication, maxBinary for binary messages after it. The
// caller applies the exact limit. gorilla's own read limit is not used
// because it closes with 1009, and the spec requires 4002.
func readMessage(ws *websocket.Conn, maxBinary int) (int, []byte, error) {
	typ, r, err := ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	limit := protocol.MaxAcceptMessage
	if typ == websocket.BinaryMessage && maxBinary > limit {
		limit = maxBinary
	}
	msg, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	return typ, msg, err
}

// The client states of spec section "Client state machine" in which messages
// arrive.
type state int

const (
	awaitChallenge state = iota
	awaitAccept
	open
	refreshing
)

// admit applies the size and type columns of the client state machine to a
// message before package protocol reads it: the size limit first, then the
// message type, then the first octet, which tells an accept ('{') from a
// challenge. maxBinary is the application message limit in the states that
// allow application messages.
func admit(s state, typ int, msg []byte, maxBinary int) error {
	accept := len(msg) > 0 && msg[0] == '{'
	text := typ == websocket.TextMessage
	switch s {
	case awaitChallenge:
		switch {
		case len(msg) > protocol.MaxHandshakeMessage:
			return refuse(protocol.CodeTooLarge, "message too large before the challenge")
		case !text:
			return refuse(protocol.CodeUnexpectedMessage, "binary message before the challenge")
		case accept:
			return refuse(protocol.CodeUnexpectedMessage, "accept before the challenge")
		}
	case awaitAccept:
		switch {
		case len(msg) > protocol.MaxAcceptMessage:
			return refuse(protocol.CodeTooLarge, "message too large before the accept")
		case !text:
			return refuse(protocol.CodeUnexpectedMessage, "binary message before the accept")
		case !accept:
			return refuse(protocol.CodeUnexpectedMessage, "text message other than the accept")
		}
	case open, refreshing:
		limit := protocol.MaxHandshakeMessage // a re-challenge
		if s == refreshing {
			limit = protocol.MaxAcceptMessage // the accept
		}
		switch {
		case !text && len(msg) > maxBinary:
			return refuse(protocol.CodeTooLarge, "application message too large")
		case !text:
		case len(msg) > limit:
			return refuse(protocol.CodeTooLarge, "control message too large")
		case s == open && accept:
			return refuse(protocol.CodeUnexpectedMessage, "accept without an outstanding response")
		case s == refreshing && !accept:
			return refuse(protocol.CodeUnexpectedMessage, "text message other than the accept")
		}
	}
	return nil
}

func refuse(code protocol.Code, detail string) error {
	return &protocol.ProtocolError{Code: code, Err: errors.New(detail)}
}
