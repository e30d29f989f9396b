// Package server serves wsproof v1 (spec/wsproof-v1.md) over WebSocket: a
// *Server is an http.Handler that upgrades each request, runs the socket
// through package protocol's session state machine (protocol.ServerConn),
// and hands the application every message of an authenticated socket
// together with the session it arrived under.
//
// The server makes no protocol decision of its own: which messages are
// delivered, when to re-challenge, to ping, or to close and with which code
// are the state machine's. The server owns the sockets, goroutines, timers
// and outbound queues, and adds the transport limits of spec section
// "Limits" that come before the machine: an Origin allow-list, caps on
// pending sockets and handshake rate limits applied before a challenge is
// signed, and a write deadline on each write.
//
// An idle authenticated socket costs one goroutine, its handler's, which
// reads through Conn.Read; a writer goroutine runs only while something is
// queued, and the timer of the machine runs on the runtime's timers.
//
// # Sending, and fanning out
//
// Conn.Send queues one message and returns at once; it never waits on the
// network, so an application that fans messages out to many sockets (a room,
// a broadcast) calls Send on each in a loop, and one slow reader costs the
// others nothing. What a socket has waiting to be written is bounded
// (Config.MaxQueued, 1 MiB by default): a Send past the bound, or a write
// that misses Config.WriteTimeout, closes that socket with slow_reader
// (4009), which clients retry with backoff, and Send returns ErrClosed. A
// broadcaster need not handle that error beyond forgetting the socket.
//
// # Closing
//
// A close (revocation, expiry, Conn.Close, Shutdown, a failure) takes effect
// at once: nothing more is delivered and the handler's context is done. The
// Close frame is then written, or the connection dropped, within a second
// whatever the peer does, on a goroutine of its own, so that Recheck and
// Shutdown never wait on a peer (spec section "Revocation"). A normal close
// (the handler returning, Conn.Close, Shutdown) first writes what the
// application had queued, within that bound; a close for a failure (a
// revocation, an expiry, a slow reader) sends that peer nothing more.
//
// Mount it on any mux and serve it with an http.Server that sets
// ReadHeaderTimeout (5 s is plenty) and MaxHeaderBytes (8 KiB): the
// handshake limits start only after the upgrade.
package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/internal/wsio"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Config configures a Server. Zero values select the spec's defaults. A Config
// must not be modified after it is passed to New.
type Config struct {
	// Identity, Keys, Registry, Algorithms, RequiredGroups, Authorize,
	// ChallengeLifetime, TokenLifetime and DiagnosticReasons are passed to
	// protocol.ServerConfig; see there (DiagnosticReasons is for conformance
	// tests only, never where untrusted peers connect). Identity, Keys and Registry are required. Keys are the
	// initial keys; Server.SetKeys rotates them.
	Identity          string
	Keys              *keys.ServerKeys
	Registry          keys.Registry
	Algorithms        []keys.Algorithm
	RequiredGroups    []string
	Authorize         func(*keys.Entry) error
	ChallengeLifetime time.Duration
	TokenLifetime     time.Duration
	DiagnosticReasons bool

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

	// HandshakeTimeout bounds the pre-authentication phase, from the
	// challenge to a valid response; a socket still unauthenticated then is
	// closed with handshake_timeout. Zero means 10 s.
	HandshakeTimeout time.Duration

	// MaxPending caps sockets upgraded but not yet authenticated, in total
	// and per client address. Zero means 1024 and 16. The last quarter of
	// MaxPending is kept for quiet clients (see HandshakeRate); nothing takes
	// the total past MaxPending.
	MaxPending, MaxPendingPerAddr int

	// HandshakeRate and HandshakeRatePerAddr limit new upgrades per second,
	// in total and per client address, each with a burst of twice the rate
	// (rounded up, at least 1). They apply before the server signs a
	// challenge. Zero means 100 and 10.
	//
	// Every upgrade the server admits takes a token from the HandshakeRate
	// bucket, whatever its address, so over any T seconds at most
	// ceil(2*HandshakeRate) + HandshakeRate*T upgrades (hence challenge
	// signatures) are admitted: with the defaults, 200 at once and 100 a
	// second after that. Half of that burst is a reserve for quiet clients,
	// which hold no pending socket and have not used their own budget
	// recently: busy addresses cannot drain the bucket below it, so a flood
	// from some addresses does not lock out clients that connect now and
	// then.
	HandshakeRate, HandshakeRatePerAddr float64

	// IPv6PrefixLen is how many leading bits of an IPv6 client address name
	// one client for the per-address limits: one host usually gets a whole
	// /64, so counting each address apart would give it 2^64 budgets. Zero
	// means 64; 128 counts every address apart; at most 128. IPv4 clients
	// (and IPv4-mapped IPv6 addresses) are counted by their whole address.
	IPv6PrefixLen int

	// MaxTrackedAddrs caps the clients (IPv4 addresses, IPv6 prefixes) the
	// per-address limits keep state for at once. State is kept only for
	// admitted upgrades, and dropped a few seconds after a client's last
	// one once it holds no pending socket; a new client is refused with
	// rate_limited while the table is full. Zero means 16384, far more than
	// the default limits can fill (about MaxPending plus a few seconds of
	// HandshakeRate).
	MaxTrackedAddrs int

	// RefreshBefore is how long before a token expires the server sends a
	// re-challenge (spec section "Refresh"). Zero means 60 s or half the
	// token lifetime, whichever is smaller. Otherwise it must be positive,
	// at most half the token lifetime and at most 5 minutes: New refuses
	// any other value rather than adjust it.
	RefreshBefore time.Duration

	// MaxMessageSize bounds application messages from the client, in
	// octets; clients learn it from the accept. Zero means 65536; at most
	// 1 GiB.
	MaxMessageSize int64

	// MaxQueued bounds the octets of application messages waiting to be
	// written to one socket (spec section "Slow peers"). A Send that would
	// take them past it closes the socket with slow_reader; a message is
	// never refused when nothing is waiting. Control messages are not
	// counted and go ahead of waiting messages. Zero means 1 MiB.
	MaxQueued int64

	// WriteTimeout bounds each write to a socket; one that does not
	// complete in time closes the socket with slow_reader. A write is given
	// at least WriteTimeout and at most 1/64 more, so that a busy socket
	// need not set a new deadline for every message. Zero means 10 s.
	WriteTimeout time.Duration

	// PingInterval is how often an authenticated socket is pinged. The
	// keepalive timeout is twice it: a socket from which nothing (message,
	// Ping, Pong) arrives for two intervals is closed with
	// keepalive_timeout. Zero means 30 s.
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
// socket has authenticated; ctx is cancelled as soon as the server decides
// to close the socket. When ServeSession returns, the socket is closed
// normally (1000) if it is still open.
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
	clock    clock // Config.Time and the machines' timers
	limit    *limiter

	mu      sync.Mutex
	closing bool
	conns   map[*Conn]struct{} // every upgraded socket, from the challenge on
	authed  int                // those that have authenticated

	// active counts each socket from its upgrade until its reader has
	// ended, and each closer goroutine; drained, when set, is closed when it
	// falls to zero (Shutdown waits on it).
	active  int
	drained chan struct{}

	// peak is the highest active count since the last reclaim; reclaiming
	// is set from the moment one is scheduled until it has run, at
	// reclaimed. See reclaim.
	peak       int
	reclaiming bool
	reclaimed  time.Time
}

// A mass close schedules a reclaim: when at least reclaimMin sockets have
// ended since the high-water mark and at most half of them remain, it runs
// reclaimSettle later, so that the rest of the close has ended too, and at
// most once per reclaimEvery.
const (
	reclaimMin    = 512
	reclaimSettle = time.Second
	reclaimEvery  = 10 * time.Second
)

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
		RefreshBefore: c.RefreshBefore, HandshakeTimeout: c.HandshakeTimeout, PingInterval: c.PingInterval,
		MaxMessageSize: c.MaxMessageSize, MaxQueued: c.MaxQueued, DiagnosticReasons: c.DiagnosticReasons,
	})
	if err != nil {
		return nil, err
	}
	if c.WriteTimeout < 0 {
		return nil, errors.New("server: negative WriteTimeout")
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
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
	if c.IPv6PrefixLen < 0 || c.IPv6PrefixLen > 128 {
		return nil, errors.New("server: IPv6PrefixLen must be between 0 and 128")
	}
	if c.IPv6PrefixLen == 0 {
		c.IPv6PrefixLen = 64
	}
	if c.MaxTrackedAddrs < 0 {
		return nil, errors.New("server: negative MaxTrackedAddrs")
	}
	if c.MaxTrackedAddrs == 0 {
		c.MaxTrackedAddrs = defaultMaxTrackedAddrs
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
		cfg: c, proto: proto, log: c.Logger, m: m, rand: c.Rand, clock: systemClock{c.Time},
		conns: make(map[*Conn]struct{}),
		limit: newLimiter(limiterConfig{rate: c.HandshakeRate, perAddr: c.HandshakeRatePerAddr,
			maxPending: c.MaxPending, maxPendingPer: c.MaxPendingPerAddr,
			maxAddrs: c.MaxTrackedAddrs, v6Bits: c.IPv6PrefixLen}),
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

// hijacker hands gorilla the hijacked connection wrapped in a
// wsio.BatchConn, through which the Conn's writer gathers its writes (see
// Conn.writeLoop).
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The 101 response that gorilla writes next is held, and leaves with
	// the challenge, which the Conn's writer queues right after the
	// upgrade and flushes with it: one write (and one wake-up of the
	// client) instead of two.
	bc := wsio.NewBatchConn(nc)
	bc.Hold()
	return bc, brw, nil
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code protocol.Code, status int) {
	s.m.handshake(code)
	s.log.Info("wsproof: upgrade refused", "code", string(code), "remote", s.remoteIP(r))
	http.Error(w, code.Reason(), status)
}

// originAllowed reports whether r may open a socket as far as its Origin
// goes: it has none (not a browser), or one in the allow-list, compared
// exactly (spec section "Opening handshake").
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || s.cfg.InsecureAllowAnyOrigin || slices.Contains(s.cfg.Origins, o)
}

// ServeHTTP upgrades r and serves the socket until it closes. It refuses the
// upgrade with an HTTP status from the spec's error table (400, 403, 429 or
// 503) before any signature is spent. A request that is not an upgrade gets
// 426, or 403 when its Origin is not allowed, readable from any origin.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		// A page cannot read why its upgrade failed; it can read this
		// answer to a plain request, from any origin, which says whether
		// its Origin is the reason (spec section "Opening handshake").
		// It carries no credential and reveals nothing a refused upgrade
		// does not.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if !s.originAllowed(r) {
			http.Error(w, protocol.CodeOriginNotAllowed.Reason(), http.StatusForbidden)
			return
		}
		http.Error(w, "wsproof: WebSocket upgrade required", http.StatusUpgradeRequired)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), protocol.Subprotocol) {
		s.refuse(w, r, protocol.CodeSubprotocolRequired, http.StatusBadRequest)
		return
	}
	if !s.originAllowed(r) {
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
	release, ok := s.limit.admit(ip, s.clock.Now())
	if !ok {
		s.refuse(w, r, protocol.CodeRateLimited, http.StatusTooManyRequests)
		return
	}
	wsio.GrowStack()
	ws, err := s.upgrader.Upgrade(hijacker{w}, r, nil)
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
	c := newConn(s, ws, ip)
	c.begin(exporter)
	// The socket is visible to Recheck and Shutdown from its challenge on,
	// so there is no moment at which a session is open and invisible to
	// them; in CHALLENGED a registry change does nothing (the response is
	// checked against the registry when it arrives).
	if !s.track(c) {
		c.input((*protocol.ServerConn).Shutdown)
	}
	c.writeOwn() // the 101 and the challenge
	// The pre-authentication phase runs on this goroutine: the machine's
	// handshake deadline closes a socket that does not answer in time.
	for {
		c.readOne()
		c.writeOwn() // the accept, or nothing
		c.mu.Lock()
		authed, closed := c.authed, c.closed
		if authed || closed {
			c.handshaker = false
		}
		c.mu.Unlock()
		if closed {
			release()
			c.drain()
			s.untrack(c)
			return
		}
		if authed {
			break
		}
	}
	release()
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.ctxDone, c.cancel = ctx.Done(), cancel
	if c.closed {
		cancel()
	}
	c.mu.Unlock()
	// The session's reader runs on a fresh goroutine: this one grew its
	// stack during the handshake's signature work and ends here, so an idle
	// session does not keep that stack.
	go c.serve(ctx)
}

// serve runs the application handler of an authenticated socket, which
// reads through Conn.Read, then closes the socket normally if it is still
// open and reads until the connection ends.
func (c *Conn) serve(ctx context.Context) {
	c.s.cfg.Handler.ServeSession(ctx, c)
	c.Close()
	c.drain()
	s := c.Session()
	c.s.log.Debug("wsproof: session ended", "sid", s.SocketID, "kid", s.KeyID, "err", c.err())
	c.s.untrack(c)
}

// track adds a new socket to the server's set, unless the server is
// shutting down.
func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active++
	s.peak = max(s.peak, s.active)
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// untrack removes a socket whose reader has ended.
func (s *Server) untrack(c *Conn) {
	c.mu.Lock()
	authed := c.authed
	c.mu.Unlock()
	if authed {
		s.authenticated(-1)
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.release()
}

// hold and release count what Shutdown waits for: sockets and closers.
func (s *Server) hold() {
	s.mu.Lock()
	s.active++
	s.peak = max(s.peak, s.active)
	s.mu.Unlock()
}

func (s *Server) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active--; s.active == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	if !s.reclaiming && s.peak-s.active >= reclaimMin && s.active <= s.peak/2 {
		s.reclaiming = true
		time.AfterFunc(max(time.Until(s.reclaimed.Add(reclaimEvery)), reclaimSettle), s.reclaim)
	}
}

// reclaim runs after many sockets have ended (see reclaimMin). The memory
// of an ended socket (gorilla's buffers and the connection's, the machine,
// the queue: about 20 KiB an authenticated socket) is garbage at once, but
// the collector frees it only when the heap next doubles from what was
// live at the last collection, which was the flood at its height; a server
// left idle after a flood of 2,000 sockets allocates nothing and kept about
// 40 MiB of dead sockets in use, and 70 MB of RSS, for minutes, until the
// runtime's two-minute forced collection. reclaim collects once, which also
// lowers the heap goal, so that the runtime's scavenger returns the freed
// pages to the operating system in the background; and it rebuilds the
// socket set, a map, which keeps the buckets of its largest size.
func (s *Server) reclaim() {
	s.mu.Lock()
	conns := make(map[*Conn]struct{}, len(s.conns))
	for c := range s.conns {
		conns[c] = struct{}{}
	}
	s.conns = conns
	s.peak = s.active
	s.mu.Unlock()
	debug.FreeOSMemory()
	s.mu.Lock()
	s.reclaiming, s.reclaimed = false, time.Now()
	s.mu.Unlock()
}

// authenticated counts sockets that have authenticated and not yet ended.
func (s *Server) authenticated(d int) {
	s.mu.Lock()
	s.authed += d
	s.mu.Unlock()
	s.m.sessions.Add(float64(d))
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
// now (spec section "Revocation"): each one whose key was removed, revoked,
// left its validity window, is no longer authorized, or now requires channel
// binding it lacks is closed with session_revoked; while the registry is
// unavailable (a keys.Checker failing) every session is closed with
// internal_error, which clients retry (spec section "Availability"); a
// session whose entry changed its subject or groups is refreshed at once.
// Sockets still in the handshake are unaffected. Call it whenever the
// registry changes, for example from keys.FileRegistry.Watch.
//
// Recheck never waits on a peer: it decides for every socket, stops their
// delivery at once, and leaves the Close frames to be written concurrently,
// each within a second. It returns the number of sockets closed.
func (s *Server) Recheck() int {
	now, start := s.clock.Now(), time.Now()
	var closers []func()
	defer func() { startAll(closers) }()
	n := 0
	for _, c := range s.live() {
		c.mu.Lock()
		if !c.closed {
			c.closeFrom, c.closers = start, &closers
			c.do(c.pc.Recheck(now), c.pc.State())
			c.closeFrom, c.closers = time.Time{}, nil
			if c.closed {
				n++
				if end, _ := c.pc.End(); end.Code == protocol.CodeSessionRevoked {
					s.m.revocations.Inc()
				}
			}
		}
		c.mu.Unlock()
	}
	return n
}

func startAll(fs []func()) {
	for _, f := range fs {
		f()
	}
}

// Sessions returns the number of live authenticated sockets.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authed
}

// Shutdown stops accepting sockets, closes every socket, authenticated or
// still in the handshake, with 1001 Going Away, concurrently, and waits until
// their handlers have returned and their connections have ended, or until
// ctx ends. The http.Server serving s must be shut down separately.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing = true
	s.mu.Unlock()
	start := time.Now()
	var closers []func()
	for _, c := range s.live() {
		c.mu.Lock()
		if !c.closed {
			c.closeFrom, c.closers = start, &closers
			c.do(c.pc.Shutdown(s.clock.Now()), c.pc.State())
			c.closeFrom, c.closers = time.Time{}, nil
		}
		c.mu.Unlock()
	}
	startAll(closers)
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	s.drained = done
	s.mu.Unlock()
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
