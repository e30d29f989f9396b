// Package client implements the client role of wsproof v1 over WebSocket, as
// specified in spec/wsproof-v1.md (sections "Transport", "Client: verifying a
// challenge", "Client: processing an accept", "Client state machine" and
// "Session lifecycle").
//
// [Dial] opens a socket, checks the server's signed challenge against the
// pinned server keys, answers it with the client key and returns a [Conn]
// carrying the application's binary messages. The server's later
// re-challenges are answered on the live socket without the application
// noticing. [Keep] keeps a connection up, redialing with backoff after the
// ends the spec marks as retryable.
//
// Every protocol decision is made by package protocol's state machine,
// [protocol.ClientConn]: which message a state accepts, every check of a
// message, the handshake deadline, the keepalive, whether an end may be
// retried. This package owns the socket, its goroutines, the machine's timer
// and the queues, and carries out what the machine asks.
//
// A minimal client:
//
//	conn, err := client.Dial(ctx, "wss://plant-3.example/ws", &client.Config{
//		KeyID:      "sensor-7",
//		Signer:     signer,     // any crypto.Signer
//		ServerKeys: pinnedKeys, // the server's published key set
//	})
//
// The server identity the challenges must name is, by default, the URL
// dialed (protocol.IdentityFromURL); over TLS the session must be bound to
// the TLS connection unless the Config says otherwise.
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
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/wsio"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Config configures a client. A Config may be reused for many Dial calls and
// must not be modified while one is in progress. The zero value of every
// optional field is documented with it.
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

	// ServerIdentity is the server identity every challenge's "iss" must
	// equal (spec section "Server identity"); a challenge naming another is
	// refused with audience_mismatch, and the error then holds a
	// *protocol.IdentityError with both identities. Zero means the identity
	// of the URL of each Dial (protocol.IdentityFromURL): for
	// wss://Plant-3.example:443/ws?x=1, wss://plant-3.example/ws. Set it when
	// the server's identity is not the URL dialed, for example when dialing
	// one node of a fleet whose identity is the load balancer's URL.
	ServerIdentity string

	// InsecureAllowUnbound accepts challenges without channel binding (cb
	// "none") on a TLS connection. Set it only for a server behind a proxy
	// that terminates TLS, which cannot bind sessions to the client's TLS
	// connection (spec section "TLS terminated at a proxy"). Zero (false)
	// means a TLS connection requires binding: a challenge without it is
	// refused with channel_binding_required, and over TLS 1.2, which has no
	// usable exporter value, no server can be reached. This default is what
	// stops a relay: anyone who terminates this client's TLS (the proxy
	// itself, or an attacker holding a certificate the client accepts for
	// the server's name) can, when it is set, forward the handshake to the
	// server, or to an endpoint of it without binding, and use the
	// resulting session for its lifetime. Without TLS there is no binding to
	// require, whatever this says.
	InsecureAllowUnbound bool

	// InsecurePlaintext allows ws:// URLs whose host is not a loopback
	// address (spec section "Opening handshake"), for testing. Zero (false)
	// means Dial refuses them before any network I/O, with an error that
	// wraps ErrPlaintext: without TLS the session token and every message
	// travel in the clear. ws:// to localhost, 127.0.0.0/8 or ::1 is always
	// allowed.
	InsecurePlaintext bool

	// TLSConfig configures TLS for wss:// URLs. Nil means the defaults: the
	// system roots and the URL's host name. Channel binding needs TLS 1.3.
	//
	// Reconnects resume TLS sessions: a TLSConfig without a
	// ClientSessionCache is given one of its own (32 servers, least recently
	// used first out), used by every Dial and Keep with that same *tls.Config
	// and never shared with another; a nil TLSConfig shares one cache with
	// every other nil TLSConfig. Set ClientSessionCache to choose the cache,
	// or SessionTicketsDisabled never to resume. The application's TLSConfig
	// is not modified.
	TLSConfig *tls.Config

	// Header holds extra upgrade request headers, for example Origin. It must
	// not carry credentials: Dial refuses Cookie and Authorization, and the
	// WebSocket headers that Dial sets itself. Nil means none.
	Header http.Header

	// HandshakeTimeout bounds the whole handshake: DNS, TCP, TLS, the
	// upgrade, the challenge, the response and the accept. When it passes
	// after the upgrade, the socket is closed with handshake_timeout
	// (retryable). Zero means 10 seconds.
	HandshakeTimeout time.Duration

	// PingInterval is how often the client pings an authenticated socket;
	// a socket from which nothing (no message, Ping, Pong or Close frame)
	// has been read for twice this long is closed with keepalive_timeout
	// (retryable), which notices a server that vanished without a TCP reset.
	// Zero means 30 seconds.
	PingInterval time.Duration

	// DiagnosticReasons makes every Close frame the client sends name its
	// spec code (spec section "Diagnostic reasons"), so that a conformance
	// suite playing the server can tell which check refused its challenge.
	// For tests; false, the zero value, sends the spec's plain reason text.
	DiagnosticReasons bool

	// MaxMessageSize is the largest application message the client accepts;
	// a larger one closes the socket with too_large. Control (text) messages
	// are bounded by the spec's fixed limits whatever this says. Zero means
	// 65536 bytes; at most 1 GiB.
	MaxMessageSize int64

	// ClockSkew is how far the client's clock may disagree with the server's
	// when judging a challenge's times. Zero means 60 seconds
	// (protocol.DefaultClockSkew).
	ClockSkew time.Duration

	// Rand is the source of randomness for signatures. Nil means
	// crypto/rand.Reader.
	Rand io.Reader

	// Time returns the current time, which the client's state machine uses
	// for every check and deadline of the protocol: a challenge's and an
	// accept's times, the handshake deadline, the keepalive. Nil means
	// time.Now.
	Time func() time.Time

	// NetDialContext, when set, opens the TCP connection (for a custom
	// source address, a SOCKS dialer or a test harness). Nil means a
	// net.Dialer, through the proxy that the environment names.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Bounds of the transport: the queues and the closing handshake. The
// protocol's own limits and deadlines are the state machine's.
const (
	inQueue  = 16 // received application messages waiting for Read
	outQueue = 64 // application messages waiting to be written
)

// Timeouts of the transport. They are variables so that tests can shorten
// them.
var (
	writeTimeout  = 10 * time.Second // every write: spec section "Limits", write deadline
	closeTimeout  = 10 * time.Second // Close: flush, Close frame and the server's reply
	lingerTimeout = 1 * time.Second  // after a failure: the Close frame, then the server's
)

// ErrPlaintext is wrapped by the error of a Dial that refuses a ws:// URL to
// a host that is not a loopback address, because Config.InsecurePlaintext is
// not set.
var ErrPlaintext = errors.New("client: plaintext ws:// to a host that is not loopback")

var (
	errNoSubprotocol = errors.New("client: server did not select subprotocol " + protocol.Subprotocol)
	errExtension     = errors.New("client: server accepted a WebSocket extension")
	errClosed        = fmt.Errorf("client: %w", net.ErrClosed)
)

// setup is a validated Config.
type setup struct {
	pcfg      protocol.ClientConfig // validated; ServerIdentity empty when it comes from each URL
	fixed     *protocol.Client      // the client when ServerIdentity is configured
	plaintext bool
	rand      io.Reader
	clock     clock
	timeout   time.Duration
	header    http.Header
	tlsConf   *tls.Config
	netDial   func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex // the client of the last identity taken from a URL
	lastID string
	lastPC *protocol.Client

	// onConn, for tests, sees each Conn as soon as it exists, before its
	// handshake.
	onConn func(*Conn)
}

func newSetup(cfg *Config) (*setup, error) {
	if cfg == nil {
		return nil, errors.New("client: nil Config")
	}
	s := &setup{plaintext: cfg.InsecurePlaintext, rand: cfg.Rand, timeout: cfg.HandshakeTimeout, tlsConf: resumingTLS(cfg.TLSConfig),
		netDial: cfg.NetDialContext}
	switch {
	case s.timeout < 0:
		return nil, errors.New("client: negative HandshakeTimeout")
	case s.timeout == 0:
		s.timeout = protocol.DefaultHandshakeTimeout
	}
	s.pcfg = protocol.ClientConfig{
		KeyID:                cfg.KeyID,
		Signer:               cfg.Signer,
		Algorithm:            cfg.Algorithm,
		ServerKeys:           cfg.ServerKeys,
		ServerIdentity:       cfg.ServerIdentity,
		InsecureAllowUnbound: cfg.InsecureAllowUnbound,
		ClockSkew:            cfg.ClockSkew,
		MaxMessageSize:       cfg.MaxMessageSize,
		HandshakeTimeout:     s.timeout,
		PingInterval:         cfg.PingInterval,
		DiagnosticReasons:    cfg.DiagnosticReasons,
	}
	check := s.pcfg
	if check.ServerIdentity == "" {
		check.ServerIdentity = "wss://identity.invalid/" // validates the rest; each Dial has its own
	}
	pc, err := protocol.NewClient(&check)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if cfg.ServerIdentity != "" {
		s.fixed = pc
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	now := cfg.Time
	if now == nil {
		now = time.Now
	}
	s.clock = systemClock{now}
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

// clientFor checks url before any network I/O and returns the protocol
// client that expects its server identity: the configured one, or the URL's.
func (s *setup) clientFor(url string) (*protocol.Client, error) {
	id, err := protocol.IdentityFromURL(url)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if !s.plaintext && !protocol.PlaintextAllowed(url) {
		return nil, fmt.Errorf("%w (%s): use wss://, or set InsecurePlaintext for testing", ErrPlaintext, id)
	}
	if s.fixed != nil {
		return s.fixed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastPC != nil && s.lastID == id {
		return s.lastPC, nil
	}
	cfg := s.pcfg
	cfg.ServerIdentity = id
	pc, err := protocol.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	s.lastID, s.lastPC = id, pc
	return pc, nil
}

// Dial opens a wsproof socket to url (ws:// or wss://) and authenticates with
// cfg's key. It returns once the server's accept has arrived, or with the
// first failure, in which case nothing is left open. The caller must Close
// the returned Conn.
//
// Before any network I/O Dial checks url: it must be ws:// or wss://, carry
// no credentials or fragment, and, unless cfg.InsecurePlaintext is set, be
// wss:// or name a loopback host (the error then wraps ErrPlaintext).
//
// ctx bounds the dial and the handshake; when it ends first, the socket is
// closed with 1000 and Dial returns ctx.Err(), wrapped. Its cancellation
// after Dial returns does not affect the Conn. cfg.HandshakeTimeout bounds the
// whole handshake as well.
//
// When the server refuses the upgrade, Dial returns an error for which
// protocol.CodeOf reports the spec's code when the HTTP status has one (429
// and 503 are rate_limited, 403 origin_not_allowed, 400
// subprotocol_required). When the client's state machine refuses the
// challenge or the accept, Dial closes the socket with that code's close code
// and fixed reason and returns a *protocol.ProtocolError, wrapped, for which
// protocol.CodeOf reports the code; an audience_mismatch also holds a
// *protocol.IdentityError naming the identity the server signed and the one
// expected. When the handshake deadline passes, the code is
// handshake_timeout. When the server closes the socket (for example with
// 4003 after refusing the client key), Dial returns a *CloseError.
func Dial(ctx context.Context, url string, cfg *Config) (*Conn, error) {
	s, err := newSetup(cfg)
	if err != nil {
		return nil, err
	}
	c, _, err := s.dial(ctx, url)
	return c, err
}

// dial is Dial; on failure it also says whether Keep may try again (spec
// section "Retry"): the machine's decision when the socket ended during the
// handshake, protocol.UpgradeRefused's for an HTTP status, yes for a network
// failure before the upgrade, no for anything else, including certificate
// errors and a configuration that cannot work.
func (s *setup) dial(ctx context.Context, url string) (*Conn, bool, error) {
	pc, err := s.clientFor(url)
	if err != nil {
		return nil, false, err
	}
	deadline := s.clock.Now().Add(s.timeout)
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
	// The Conn's writer gathers the messages it finds queued into one
	// write (see writeLoop); under TLS, below the records.
	var bc *wsio.BatchConn
	d := websocket.Dialer{
		Proxy: proxy,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := netDial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			w.add(c)
			bc = wsio.NewBatchConn(c)
			return bc, nil
		},
		TLSClientConfig:   s.tlsConf,
		Subprotocols:      []string{protocol.Subprotocol},
		EnableCompression: false, // spec section "Opening handshake": no permessage-deflate
	}
	ws, resp, err := d.DialContext(hctx, url, s.header)
	if err != nil {
		err, retry := upgradeError(ctx, hctx, resp, err)
		return nil, retry, err
	}
	if !stop() {
		// The deadline or the cancellation came just as the upgrade ended;
		// the watch has cut the socket short.
		ws.Close()
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("client: dial: %w", ctx.Err())
		}
		return nil, true, fmt.Errorf("client: %w", &protocol.ProtocolError{Code: protocol.CodeHandshakeTimeout, Err: hctx.Err()})
	}
	// Row C2: fail the connection, without a Close frame. A server that
	// does not speak wsproof.v1 will not start to on the next attempt.
	if ws.Subprotocol() != protocol.Subprotocol {
		ws.Close()
		return nil, false, errNoSubprotocol
	}
	if len(resp.Header.Values("Sec-WebSocket-Extensions")) > 0 {
		ws.Close()
		return nil, false, errExtension
	}
	tc, isTLS := ws.UnderlyingConn().(*tls.Conn)
	exporter, err := exporterOf(tc)
	if err != nil {
		// A local failure before the machine exists (spec section
		// "Errors", internal_error).
		code := protocol.CodeInternalError
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code.CloseCode(), pc.Reason(code)),
			time.Now().Add(lingerTimeout))
		ws.Close()
		return nil, code.Retryable(), fmt.Errorf("client: %w", &protocol.ProtocolError{Code: code, Err: err})
	}

	// Row C3: the machine starts in AWAIT_CHALLENGE with the handshake
	// deadline, which began before the upgrade.
	c := newConn(s, pc, ws, bc, isTLS, exporter, deadline)
	if s.onConn != nil {
		s.onConn(c)
	}
	select {
	case <-c.accepted:
	case <-c.done:
	case <-ctx.Done():
	}
	select {
	case <-c.accepted:
		return c, false, nil
	default:
	}
	if ctx.Err() != nil {
		c.abandon()
	}
	<-c.done
	c.wg.Wait()
	if ctx.Err() != nil {
		return nil, false, fmt.Errorf("client: handshake: %w", ctx.Err())
	}
	err, retry := c.ending()
	return nil, retry, err
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

// upgradeError maps a failed upgrade to the spec's codes where it has them
// (row C1) and says whether it may be retried.
func upgradeError(ctx, hctx context.Context, resp *http.Response, err error) (error, bool) {
	if ctx.Err() != nil {
		return fmt.Errorf("client: dial: %w", ctx.Err()), false
	}
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		// The first line of the body tells a wsproof server's refusal from
		// another's; gorilla has kept at most 1 KiB of it.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		code, retry := protocol.UpgradeRefused(resp.StatusCode, body)
		se := &UpgradeError{Status: resp.StatusCode, Wsproof: code != "" || resp.StatusCode != 400 && resp.StatusCode != 403}
		if code == "" {
			return fmt.Errorf("client: %w", se), retry
		}
		return fmt.Errorf("client: %w", &protocol.ProtocolError{Code: code, Err: se}), retry
	}
	if hctx.Err() != nil || isTimeout(err) {
		// The client's own bound on the handshake passed before the
		// upgrade completed.
		return fmt.Errorf("client: %w", &protocol.ProtocolError{Code: protocol.CodeHandshakeTimeout, Err: err}), true
	}
	return fmt.Errorf("client: dial: %w", err), networkFailure(err)
}

// networkFailure reports whether err, from before the upgrade completed, is a
// failure of the network, which spec section "Retry" lets the client retry,
// rather than a refusal that would only repeat: a TLS certificate the client
// does not accept, a handshake the server answered wrongly.
func networkFailure(err error) bool {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// exporterOf returns the RFC 9266 tls-exporter value of a TLS connection, or
// nil when there is none or it is not TLS 1.3 (spec section "The exporter
// value": TLS 1.2 exporter values are never used).
func exporterOf(tc *tls.Conn) ([]byte, error) {
	if tc == nil {
		return nil, nil
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return nil, nil
	}
	return st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
