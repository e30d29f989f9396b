// Package server serves wsproof v1 (spec/wsproof-v1.md) over WebSocket: a
// *Server is an http.Handler that upgrades each request, runs the handshake
// through package protocol, and hands the application every message of an
// authenticated socket together with the session it arrived under.
//
// The server adds no protocol rules of its own; it adds transport limits
// (spec section "Limits"): an Origin allow-list, a deadline and a read limit
// for the whole pre-authentication phase, caps on pending sockets, handshake
// rate limits applied before a challenge is signed, serialized writes (Send
// blocks while a write is in progress, so the outbound queue is bounded),
// write deadlines and keepalive pings.
//
// Mount it on any mux and serve it with an http.Server that sets
// ReadHeaderTimeout (5 s is plenty) and MaxHeaderBytes (8 KiB): the
// handshake limits start only after the upgrade.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Config configures a Server. Zero values select the spec's defaults. A Config
// must not be modified after it is passed to New.
type Config struct {
	// Identity, Keys, Registry, Algorithms, RequiredGroups, Authorize,
	// ChallengeLifetime and TokenLifetime are passed to protocol.ServerConfig;
	// see there. Identity, Keys and Registry are required. Keys are the
	// initial keys; Server.SetKeys rotates them.
	Identity          string
	Keys              *keys.ServerKeys
	Registry          keys.Registry
	Algorithms        []keys.Algorithm
	RequiredGroups    []string
	Authorize         func(*keys.Entry) error
	ChallengeLifetime time.Duration
	TokenLifetime     time.Duration

	// Handler runs the application for each authenticated socket. Required.
	Handler Handler

	// Origins lists the Origin header values (scheme://host[:port], as
	// browsers serialize them: lowercase) allowed to open a socket, compared
	// exactly (spec section "Opening handshake"). A request without an
	// Origin header (a non-browser client) is allowed; a request with one
	// not in the list is refused with HTTP 403. Empty allows no browser.
	Origins []string

	// TrustedProxies lists the addresses of load balancers in front of the
	// server. For a request from one of them, the client address that the
	// per-address limits and the logs use is the rightmost address in
	// X-Forwarded-For that is not itself a trusted proxy. Empty trusts no
	// one: X-Forwarded-For is ignored and every client behind a balancer
	// shares the balancer's per-address limits.
	TrustedProxies []netip.Prefix

	// InsecureAllowAnyOrigin disables the Origin check, which exposes the
	// server to cross-site WebSocket hijacking from any web page.
	InsecureAllowAnyOrigin bool

	// NoChannelBinding never demands tls-exporter binding, even when TLS 1.3
	// terminates here: the spec's browser profile, for endpoints that serve
	// browsers, which cannot read exporter values. Keys registered with
	// cb_required cannot authenticate on such an endpoint.
	NoChannelBinding bool

	// HandshakeTimeout bounds the whole pre-authentication phase, from the
	// upgrade to the accept. Zero means 10 s.
	HandshakeTimeout time.Duration

	// MaxPending caps sockets upgraded but not yet authenticated, in total
	// and per remote IP address. Zero means 1024 and 16.
	MaxPending, MaxPendingPerAddr int

	// HandshakeRate and HandshakeRatePerAddr limit new upgrades per second,
	// in total and per remote IP address, with a burst of twice the rate.
	// They apply before the server signs a challenge. Zero means 100 and 10.
	HandshakeRate, HandshakeRatePerAddr float64

	// RefreshBefore is how long before a token expires the server sends a
	// re-challenge. Zero means 60 s, capped at half the token lifetime.
	RefreshBefore time.Duration

	// MaxMessageSize bounds application messages from the client. Zero
	// means 65536 bytes.
	MaxMessageSize int64

	// WriteTimeout bounds each write. Zero means 10 s.
	WriteTimeout time.Duration

	// PingInterval is the keepalive period; a socket silent for two periods
	// is closed. Zero means 30 s.
	PingInterval time.Duration

	// Logger receives one record per rejection and per session end, with the
	// spec's code; never key material or peer input. Nil means
	// slog.Default().
	Logger *slog.Logger

	// Metrics, when set, receives the server's Prometheus collectors.
	Metrics prometheus.Registerer

	// Rand is the source of socket IDs, nonces and token IDs. Nil means
	// crypto/rand.Reader.
	Rand io.Reader

	// Time returns the current time. Nil means time.Now.
	Time func() time.Time
}

// Handler is the application. It is called on its own goroutine once a
// socket has authenticated; ctx is cancelled when the socket closes. When
// ServeSession returns, the socket is closed normally (1000) if it is still
// open.
type Handler interface {
	ServeSession(ctx context.Context, c *Conn)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn)

// ServeSession calls f.
func (f HandlerFunc) ServeSession(ctx context.Context, c *Conn) { f(ctx, c) }

// ErrServerClosed is returned by Shutdown when it is called twice.
var ErrServerClosed = errors.New("server: closed")

// Server is an http.Handler serving wsproof. It is safe for concurrent use.
type Server struct {
	cfg      Config
	proto    *protocol.Server
	upgrader websocket.Upgrader
	log      *slog.Logger
	m        *metrics
	rand     io.Reader
	now      func() time.Time
	limit    *limiter

	mu       sync.Mutex
	closing  bool
	conns    map[*Conn]struct{}
	sessions sync.WaitGroup
}

// New validates cfg and returns a Server.
func New(cfg *Config) (*Server, error) {
	c := *cfg
	if c.Handler == nil {
		return nil, errors.New("server: config needs a Handler")
	}
	proto, err := protocol.NewServer(&protocol.ServerConfig{
		Identity: c.Identity, Keys: c.Keys, Registry: c.Registry, Algorithms: c.Algorithms,
		RequiredGroups: c.RequiredGroups, Authorize: c.Authorize,
		ChallengeLifetime: c.ChallengeLifetime, TokenLifetime: c.TokenLifetime,
	})
	if err != nil {
		return nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.PingInterval, 30*time.Second)
	def(&c.RefreshBefore, 60*time.Second)
	def(&c.TokenLifetime, protocol.DefaultTokenLifetime)
	if c.RefreshBefore > c.TokenLifetime/2 {
		c.RefreshBefore = c.TokenLifetime / 2
	}
	if c.MaxPending == 0 {
		c.MaxPending = 1024
	}
	if c.MaxPendingPerAddr == 0 {
		c.MaxPendingPerAddr = 16
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = 100
	}
	if c.HandshakeRatePerAddr == 0 {
		c.HandshakeRatePerAddr = 10
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 65536
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Time == nil {
		c.Time = time.Now
	}
	m, err := newMetrics(c.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: c, proto: proto, log: c.Logger, m: m, rand: c.Rand, now: c.Time,
		conns: make(map[*Conn]struct{}),
		limit: newLimiter(c.HandshakeRate, c.HandshakeRatePerAddr, c.MaxPending, c.MaxPendingPerAddr),
		upgrader: websocket.Upgrader{
			Subprotocols:      []string{protocol.Subprotocol},
			EnableCompression: false,
			// The Origin check runs in ServeHTTP, before the upgrade, against
			// the allow-list; gorilla's default would only compare with Host.
			CheckOrigin: func(*http.Request) bool { return true },
			Error:       func(http.ResponseWriter, *http.Request, int, error) {}, // ServeHTTP answers refusals itself
		},
	}
	return s, nil
}

// Tokens returns a verifier for the tokens this server issues, with its
// current keys.
func (s *Server) Tokens() *protocol.TokenVerifier { return s.proto.Tokens() }

// SetKeys rotates the server's keys; see protocol.Server.SetKeys. Live
// sessions keep their tokens, which verify as long as their keys stay listed.
func (s *Server) SetKeys(k *keys.ServerKeys) error { return s.proto.SetKeys(k) }

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code protocol.Code, status int) {
	s.m.handshake(code)
	s.log.Info("wsproof: upgrade refused", "code", string(code), "remote", s.remoteIP(r))
	http.Error(w, code.Reason(), status)
}

// ServeHTTP upgrades r and serves the socket until it closes. It refuses the
// upgrade with an HTTP status from the spec's error table (400, 403, 429 or
// 503) before any signature is spent.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "wsproof: WebSocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), protocol.Subprotocol) {
		s.refuse(w, r, protocol.CodeSubprotocolRequired, http.StatusBadRequest)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !s.cfg.InsecureAllowAnyOrigin && !slices.Contains(s.cfg.Origins, o) {
		s.refuse(w, r, protocol.CodeOriginNotAllowed, http.StatusForbidden)
		return
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "wsproof: server shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := s.remoteIP(r)
	release, ok := s.limit.admit(ip, s.now())
	if !ok {
		s.refuse(w, r, protocol.CodeRateLimited, http.StatusTooManyRequests)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		release()
		s.log.Info("wsproof: upgrade failed", "remote", ip, "err", err)
		return
	}
	var exporter []byte
	if r.TLS != nil && r.TLS.Version == tls.VersionTLS13 && !s.cfg.NoChannelBinding {
		exporter, err = r.TLS.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
		if err != nil {
			release()
			ws.Close()
			return
		}
	}
	c := newConn(s, ws, ip, exporter)
	sess, accept, err := c.handshake()
	release()
	if err != nil {
		c.fail(err, "handshake")
		return
	}
	c.setSession(sess)
	if !s.track(c) {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
		return
	}
	// The registry may have changed after the handshake consulted it and
	// before track made the socket visible to Recheck.
	if err := s.proto.Recheck(sess, s.now()); err != nil {
		c.fail(err, "handshake")
		s.untrack(c)
		return
	}
	s.m.handshake("")
	if err := c.ws.WriteMessage(websocket.TextMessage, accept); err != nil {
		c.closeWith(websocket.CloseAbnormalClosure, "")
		s.untrack(c)
		return
	}
	// The session's reader runs on a fresh goroutine: this one grew its
	// stack during the handshake's signature work and ends here, so an idle
	// session does not keep that stack.
	go func() {
		defer s.untrack(c)
		c.serve()
	}()
}

func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.sessions.Add(1)
	s.m.sessions.Inc()
	return true
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.sessions.Dec()
	s.sessions.Done()
}

func (s *Server) live() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Recheck re-evaluates every live session against the registry as it is
// now and closes, with session_revoked, each one whose key was removed,
// revoked, left its validity window or is no longer authorized (spec section
// "Revocation"); while the registry is unavailable (a keys.Checker failing)
// it closes every session with internal_error, which clients retry (spec
// section "Availability"). Call it whenever the registry changes, for example
// from keys.FileRegistry.Watch. It returns the number of sockets closed.
func (s *Server) Recheck() int {
	now := s.now()
	n := 0
	for _, c := range s.live() {
		sess := c.Session()
		if err := s.proto.Recheck(sess, now); err != nil {
			code := protocol.CodeSessionRevoked
			if protocol.CodeOf(err) == protocol.CodeInternalError {
				code = protocol.CodeInternalError
				s.log.Warn("wsproof: session closed, registry unavailable", "sid", sess.SocketID, "kid", sess.KeyID)
			} else {
				s.log.Info("wsproof: session revoked", "sid", sess.SocketID, "kid", sess.KeyID, "reason", string(protocol.CodeOf(err)))
				s.m.revocations.Inc()
			}
			c.closeCode(code)
			n++
		}
	}
	return n
}

func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting sockets, closes every live session with 1001
// Going Away, and waits until their handlers have returned or ctx ends.
// The http.Server serving s must be shut down separately.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing = true
	s.mu.Unlock()
	for _, c := range s.live() {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remoteIP is the client's IP address without the port: the peer's, or,
// when the peer is a trusted proxy, the rightmost untrusted address of
// X-Forwarded-For (the leftmost entries are whatever the client wrote).
func (s *Server) remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.cfg.TrustedProxies) == 0 {
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				return host // a malformed hop: fall back to the proxy itself
			}
			if !s.trusted(a) {
				return a.Unmap().String()
			}
			host = a.Unmap().String()
		}
	}
	return host
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func errorf(format string, args ...any) error { return fmt.Errorf("server: "+format, args...) }
