package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/fakeclock"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectorkeys"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// notDrivable lists the server-role session vectors that
// TestSessionVectorsLive cannot drive through a real socket, with the reason.
// It is empty: every server script is driven. The test fails if it names a
// vector that does not exist.
var notDrivable = map[string]string{}

// adapted lists the steps ("vector/step index") that the test drives or
// observes differently from the script, with the reason. The test fails if
// one names a step that does not exist, and if it drives a step differently
// that is not listed.
var adapted = map[string]string{
	"server-send-queue-full/1": "octets stay waiting to be written only while the peer takes none, which 60-octet " +
		"messages on loopback never cause: from the script's first send on, the server's writes are held at a gate " +
		"in its socket (a peer whose receive window is closed). The send is observed as the server's write that " +
		"blocks at the gate; its octets are compared when the written step lets them through",
	"server-send-queue-full/2": "written is driven by opening the gate until the 60 octets have reached the raw " +
		"client and the server's writer has reported them, then closing it again",
	"server-send-queue-full/3": "as step 1: observed as the server's write that blocks at the gate; its octets " +
		"reach the raw client when the gate opens after the close (step 5)",
	"server-send-queue-full/4": "the writer is blocked in step 3's write, so nothing reaches the socket: the send is " +
		"observed as Send returning nil with the message in the Conn's queue. The slow_reader close of step 5 " +
		"discards it (a failure sends that peer nothing more), so the raw client never receives it",
	"server-send-queue-full/5": "the gate opens once the server has decided: the raw client receives step 3's 60 " +
		"octets, whose write was under way, then the Close frame 4009, and nothing of step 4",
	"server-write-timeout/1": "a write is made to time out for real: the raw client stops reading, both sides' " +
		"socket buffers are small, WriteTimeout is 300 ms, and the application sends one 16 MiB message (row S27, " +
		"a send the script does not list; nothing is waiting, so MaxQueued does not refuse it) whose write passes " +
		"its deadline. The close code 4009 is not observed on the wire: the write that timed out leaves gorilla's " +
		"write side failed, so the Close frame cannot be sent and the connection is dropped (as in the client's " +
		"test). The raw client sees the connection end without a Close frame; 4009 and slow_reader are checked " +
		"in the error of the handler's Read and in the machine's end",
}

// quietWindow is how long an empty expect waits for something that must
// not arrive, once the server has processed the input.
const quietWindow = 100 * time.Millisecond

// TestSessionVectorsLive runs every server-role script of
// testdata/session-vectors.json against a real Server over a real socket on
// loopback (spec section "Session vectors"): ws://, or wss:// with TLS 1.3
// for a script that starts with a channel binding, whose exporter value is
// then the real connection's. A raw gorilla client plays the peer: it sends
// the script's messages, frames and Close frames, drops the connection for
// "lost", and records everything the server sends; it answers neither Pings
// (a Pong is a script input) nor, until the test says, Close frames. The
// application is a handler that reads in a loop and reports each Read. The
// server runs on a fake clock (Config.Time, and the clock hook for the
// machines' timers) that each step sets to its time; "timer" steps fire the
// timers that are due, synchronously.
//
// The server sends its own challenge (random sid and nonce), so the start is
// checked against the vector's (same header, iss, iat, exp, algs, cb) and
// every recorded response to it is replaced with a fresh one made by
// protocol.Client with the same key; "respond" answers the last challenge
// received, as a refresh once a session exists.
//
// Each expected action is matched with what is observable:
//
//   - send challenge, accept, binary: what the raw client reads, in order. A
//     challenge must verify with the pinned keys and carry iat = the step's
//     time, the expected exp and the socket's sid; an accept the expected
//     exp, and protocol.Client must accept it;
//   - ping: a Ping frame the raw client reads;
//   - deliver: what the handler's Conn.Read returns, with the session in
//     force;
//   - accepted: the handler starts (the first), and Conn.Session changes;
//   - close: the Close frame the raw client receives, with its code and
//     reason, or, without a close code, only the RFC 6455 reply to the raw
//     client's own Close frame, or nothing; the handler's context ends at
//     once, and its Read ends with ErrClosed carrying that code; the
//     machine's end has the step's error and close code.
//
// A step that expects nothing is checked too: once the server has processed
// the input (Conn.inputs counts what the reader handed the machine; the
// other inputs are synchronous calls), nothing is queued on the Conn, and
// nothing reaches the raw client or the handler within quietWindow.
//
// After each step the machine's state is the step's (read from the Conn),
// and so is what can be seen of it: in CHALLENGED no handler runs and no
// session is counted; in OPEN the handler runs and no challenge is
// outstanding on the wire; in REFRESHING one is; in CLOSED the Conn is done
// and so is the handler's context.
//
// When the server closes with a Close frame and the next step sends
// something on the wire, the raw client answers the Close frame only after
// that step's input has reached the server (within the server's half-second
// bound for the peer's answer), so that rows S35 ("any input" in CLOSED)
// are driven with a message that really arrives after the decision.
func TestSessionVectorsLive(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", vectorfile.SessionPath))
	if err != nil {
		t.Fatal(err)
	}
	f, err := vectorfile.ParseSession(data)
	if err != nil {
		t.Fatal(err)
	}
	env := newSessionEnv(t, f)
	steps := map[string]bool{}
	for _, v := range f.Vectors {
		if v.Role != vectorfile.SessionServerRole {
			continue
		}
		steps[v.ID] = true
		for i := range v.Steps {
			steps[fmt.Sprintf("%s/%d", v.ID, i)] = true
		}
	}
	for id := range notDrivable {
		if !steps[id] || strings.Contains(id, "/") {
			t.Errorf("notDrivable names %q, which is not a server session vector", id)
		}
	}
	for id := range adapted {
		if !steps[id] || !strings.Contains(id, "/") {
			t.Errorf("adapted names %q, which is not a step of a server session vector", id)
		}
	}
	driven := 0
	var rows []string
	for _, v := range f.Vectors {
		if v.Role != vectorfile.SessionServerRole {
			continue
		}
		t.Run(v.ID, func(t *testing.T) {
			if reason, ok := notDrivable[v.ID]; ok {
				t.Skipf("not drivable through a real socket: %s", reason)
			}
			env.run(t, &v)
			if !t.Failed() {
				driven++
				rows = append(rows, v.Rows...)
			}
		})
	}
	slices.Sort(rows)
	t.Logf("%d server scripts driven live, %d listed as not drivable, %d steps adapted; rows: %s; %d need this "+
		"test's hooks (vectorfile's Remote: a registry, the application, the operator), the others a remote peer "+
		"can drive too (package conformance runs those)", driven, len(notDrivable), len(adapted),
		strings.Join(slices.Compact(rows), " "), len(f.NotRemote(vectorfile.SessionServerRole)))
}

// sessionEnv is the vector file's keys.
type sessionEnv struct {
	f *vectorfile.SessionFile
	*vectorkeys.Keys
}

func newSessionEnv(t *testing.T, f *vectorfile.SessionFile) *sessionEnv {
	t.Helper()
	k, err := vectorkeys.Load(f.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return &sessionEnv{f: f, Keys: k}
}

// vpayload is the octets of a step's message (vectorfile.Payload).
func vpayload(t *testing.T, text bool, data string, size int64) []byte {
	t.Helper()
	p, err := vectorfile.Payload(text, data, size)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// config is the Server configuration of a script: the file's server section
// with the script's overrides.
func (env *sessionEnv) config(t *testing.T, v *vectorfile.SessionVector, reg keys.Registry) *Config {
	t.Helper()
	sc := env.f.ServerFor(v)
	var algs []keys.Algorithm
	for _, a := range sc.Algs {
		alg, err := keys.ParseAlgorithm(a)
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, alg)
	}
	return &Config{
		Identity: sc.Identity, Keys: env.Server, Registry: reg, Algorithms: algs, RequiredGroups: sc.RequiredGroups,
		ChallengeLifetime: vectorfile.Seconds(sc.ChallengeLifetime), TokenLifetime: vectorfile.Seconds(sc.TokenLifetime),
		RefreshBefore: vectorfile.Seconds(sc.RefreshBefore), HandshakeTimeout: vectorfile.Seconds(sc.HandshakeTimeout),
		PingInterval: vectorfile.Seconds(sc.PingInterval), MaxMessageSize: sc.MaxMessageSize, MaxQueued: sc.MaxQueued,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// client is a conforming client with the key kid, for the script's server.
func (env *sessionEnv) client(t *testing.T, v *vectorfile.SessionVector, kid string, allowUnbound bool) *protocol.Client {
	t.Helper()
	s, ok := env.Clients[kid]
	if !ok {
		t.Fatalf("no private key for %q", kid)
	}
	cc := env.f.ClientFor(v)
	cl, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: s, Algorithm: env.Algs[kid],
		ServerKeys: env.Pinned, ServerIdentity: env.f.Server.Identity, InsecureAllowUnbound: allowUnbound,
		ClockSkew: vectorfile.Seconds(cc.ClockSkew), HandshakeTimeout: vectorfile.Seconds(cc.HandshakeTimeout),
		PingInterval: vectorfile.Seconds(cc.PingInterval), MaxMessageSize: cc.MaxMessageSize})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// jwsHeader is the protected header of a challenge or response.
type jwsHeader struct{ Alg, Kid, Typ string }

// challengeClaims is the payload of a challenge: protocol's definition.
type challengeClaims = protocol.ChallengeClaims

// splitJWS decodes the header and payload of a compact JWS.
func splitJWS(msg []byte, payload any) (h jwsHeader, parts []string, err error) {
	parts = strings.Split(string(msg), ".")
	if len(parts) != 3 {
		return h, nil, errors.New("not a compact JWS")
	}
	hdr, err1 := b64u.Decode(parts[0])
	body, err2 := b64u.Decode(parts[1])
	if err := errors.Join(err1, err2); err != nil {
		return h, nil, err
	}
	if err := errors.Join(json.Unmarshal(hdr, &h), json.Unmarshal(body, payload)); err != nil {
		return h, nil, err
	}
	return h, parts, nil
}

// verifyChallenge checks a challenge's signature with the pinned keys and
// returns its header and claims.
func (env *sessionEnv) verifyChallenge(msg []byte) (jwsHeader, *challengeClaims, error) {
	var c challengeClaims
	h, parts, err := splitJWS(msg, &c)
	if err != nil {
		return h, nil, err
	}
	if h.Typ != protocol.TypChallenge {
		return h, nil, fmt.Errorf("typ %q", h.Typ)
	}
	pk, ok := env.Pinned.Lookup(h.Kid)
	if !ok || string(pk.Algorithm) != h.Alg {
		return h, nil, fmt.Errorf("signed by %q (%s), not a pinned key", h.Kid, h.Alg)
	}
	sig, err := b64u.Decode(parts[2])
	if err != nil {
		return h, nil, err
	}
	if err := keys.Verify(pk.Key, pk.Algorithm, []byte(parts[0]+"."+parts[1]), sig); err != nil {
		return h, nil, err
	}
	return h, &c, nil
}

// recordedResponse reports whether msg is a response (a JWS whose typ is the
// response's), and returns its kid and sid.
func recordedResponse(msg []byte) (kid, sid string, ok bool) {
	if !bytes.HasPrefix(msg, []byte("eyJ")) {
		return "", "", false
	}
	var r struct{ Sid string }
	h, _, err := splitJWS(msg, &r)
	if err != nil || h.Typ != protocol.TypResponse {
		return "", "", false
	}
	return h.Kid, r.Sid, true
}

// liveRegistry is a registry that a script changes between steps, and makes

// fakeClock is the clock of a script (internal/fakeclock), as the package's
// clock: Set moves it, Advance moves it and fires the timers that are due, on
// the caller's goroutine.
type fakeClock struct{ *fakeclock.Clock }

func (c fakeClock) AfterFunc(d time.Duration, f func()) timer { return c.Clock.AfterFunc(d, f) }

// writeGate holds the writes of the server's sockets while it is closed, as
// a peer whose receive window is closed does. A held write honours the
// socket's write deadline.
type writeGate struct {
	mu      sync.Mutex
	held    bool
	opened  chan struct{} // closed when the gate opens
	blocked int           // writes that have waited at the gate
}

func (g *writeGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		g.held, g.opened = true, make(chan struct{})
	}
}

func (g *writeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.held = false
		close(g.opened)
	}
}

func (g *writeGate) blockedWrites() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked
}

// liveListener wraps the server's listener: it shrinks each socket's send
// buffer when sndbuf is set, and passes its writes through gate when set.
type liveListener struct {
	net.Listener
	sndbuf int
	gate   *writeGate
}

func (l *liveListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.sndbuf > 0 {
		tc.SetWriteBuffer(l.sndbuf)
	}
	if l.gate == nil {
		return c, nil
	}
	return &gatedConn{Conn: c, g: l.gate, closed: make(chan struct{})}, nil
}

type gatedConn struct {
	net.Conn
	g        *writeGate
	deadline atomic.Int64 // the write deadline, Unix nanoseconds; 0 for none
	once     sync.Once
	closed   chan struct{}
}

func (c *gatedConn) setDeadline(t time.Time) {
	n := int64(0)
	if !t.IsZero() {
		n = t.UnixNano()
	}
	c.deadline.Store(n)
}

func (c *gatedConn) SetDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *gatedConn) SetWriteDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *gatedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *gatedConn) Write(b []byte) (int, error) {
	g := c.g
	g.mu.Lock()
	held, opened := g.held, g.opened
	if held {
		g.blocked++
	}
	g.mu.Unlock()
	if held {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-opened:
				break wait
			case <-c.closed:
				return 0, net.ErrClosed
			case <-tick.C:
				if d := c.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
					return 0, os.ErrDeadlineExceeded
				}
			}
		}
	}
	return c.Conn.Write(b)
}

// pausableConn is the raw client's connection: while paused it reads
// nothing from the socket, as a peer that stopped reading.
type pausableConn struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
}

func (c *pausableConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	for c.paused {
		c.cond.Wait()
	}
	c.mu.Unlock()
	return c.Conn.Read(b)
}

func (c *pausableConn) pause(p bool) {
	c.mu.Lock()
	c.paused = p
	c.mu.Unlock()
	c.cond.Broadcast()
}

// rawEvent is one thing the raw client received.
type rawEvent struct {
	kind string // "text", "binary", "ping", "pong", "close", "eof"; "end" once nothing more can come
	data []byte
	code int
	text string
}

func (e rawEvent) String() string {
	switch e.kind {
	case "close":
		return fmt.Sprintf("close %d %q", e.code, e.text)
	case "text", "binary":
		return fmt.Sprintf("%s (%d octets) %.40q", e.kind, len(e.data), e.data)
	}
	return e.kind
}

// readResult is what one Conn.Read of the handler returned.
type readResult struct {
	m   Message
	err error
}

// handlerStart is the handler's Conn and context.
type handlerStart struct {
	c   *Conn
	ctx context.Context
}

// readEndWant is how the handler's Read must end: ErrClosed with code, or,
// when lost, without a Close frame (no code, or gorilla's 1006).
type readEndWant struct {
	code int
	lost bool
}

// sessionRun is one script in progress.
type sessionRun struct {
	t     *testing.T
	env   *sessionEnv
	v     *vectorfile.SessionVector
	clk   fakeClock
	reg   *vectorkeys.Registry
	srv   *Server
	hs    *httptest.Server
	gate  *writeGate // the script has a written input
	flood bool       // the script has a write_timeout input
	ident string

	// The raw client.
	ws         *websocket.Conn
	rc         *pausableConn
	exporter   []byte
	events     chan rawEvent
	readerDone chan struct{}
	autoReply  atomic.Bool // answer Close frames at once
	replyCode  int         // a Close frame of the server the raw client has not answered yet

	// The server's side.
	conn        *Conn
	sid         string
	started     chan handlerStart
	reads       chan readResult
	handlerDone chan struct{}
	running     *handlerStart // once the handler has started
	srvSess     *protocol.Session
	readEnd     *readEndWant // the handler's Read must end so, not yet checked
	shutdown    chan error   // Shutdown's result, once called

	// What the client knows.
	startChallenge []byte
	challenge      []byte // the last challenge received
	outstanding    bool   // a challenge received and not answered by an accept
	pendingHS      *protocol.ClientHandshake
	sess           *protocol.ClientSession

	// The gate (server-send-queue-full).
	holding  bool
	inFlight []byte   // the message whose write is blocked at the gate
	held     [][]byte // messages sent while holding, not yet received
}

// state is the machine's state.
func (c *Conn) state() protocol.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc.State()
}

// machineEnd is the machine's close, once it has closed.
func (c *Conn) machineEnd() (protocol.Action, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc.End()
}

// queue reports what waits to be written and whether the writer runs.
func (c *Conn) queue() (ctrl int, app [][]byte, writing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ctrl), slices.Clone(c.app[c.appHead:]), c.writing
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// within waits until cond holds, for at most 10 s.
func within(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// wireInput reports whether an input is something the raw client sends on
// a connection that stays up.
func wireInput(typ string) bool {
	switch typ {
	case vectorfile.InText, vectorfile.InBinary, vectorfile.InRespond, vectorfile.InPong:
		return true
	}
	return false
}

func (env *sessionEnv) run(t *testing.T, v *vectorfile.SessionVector) {
	r := &sessionRun{t: t, env: env, v: v, clk: fakeClock{fakeclock.New(time.Unix(v.Start.At, 0))}, reg: vectorkeys.NewRegistry(env.Registry),
		ident: env.f.Server.Identity, events: make(chan rawEvent, 1024), readerDone: make(chan struct{}),
		started: make(chan handlerStart, 1), reads: make(chan readResult, 1024), handlerDone: make(chan struct{})}
	for _, st := range v.Steps {
		switch st.Input.Type {
		case vectorfile.InWritten:
			r.gate = &writeGate{}
		case vectorfile.InWriteTimeout:
			r.flood = true
		}
	}
	cfg := env.config(t, v, r.reg)
	cfg.Time = r.clk.Now
	if r.flood {
		cfg.WriteTimeout = 300 * time.Millisecond
	}
	cfg.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
		defer close(r.handlerDone)
		r.started <- handlerStart{c, ctx}
		for {
			m, err := c.Read(ctx)
			r.reads <- readResult{m, err}
			if err != nil {
				return
			}
		}
	})
	var err error
	if r.srv, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	r.srv.clock = r.clk // the machines' timers on the script's clock

	r.hs = httptest.NewUnstartedServer(r.srv)
	ll := &liveListener{Listener: r.hs.Listener, gate: r.gate}
	if r.flood {
		ll.sndbuf = 4096
	}
	r.hs.Listener = ll
	url := ""
	if v.Start.ChannelBinding != "" {
		r.hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		r.hs.StartTLS()
		url = "wss" + strings.TrimPrefix(r.hs.URL, "https")
	} else {
		r.hs.Start()
		url = "ws" + strings.TrimPrefix(r.hs.URL, "http")
	}
	defer r.finish()
	r.dial(url)
	r.begin()
	for i := range v.Steps {
		r.step(i)
		if t.Failed() {
			return
		}
	}
	if r.conn.state() != protocol.StateClosed {
		r.quiet("after the script")
	}
}

// dial connects the raw client and starts its reader.
func (r *sessionRun) dial(url string) {
	t := r.t
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok && r.flood {
				tc.SetReadBuffer(4096)
			}
			r.rc = &pausableConn{Conn: c}
			r.rc.cond = sync.NewCond(&r.rc.mu)
			return r.rc, nil
		}}
	if r.hs.TLS != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: certPool(r.hs), MinVersion: tls.VersionTLS13}
	}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		close(r.readerDone)
		t.Fatal(err)
	}
	r.ws = ws
	if tc, ok := ws.NetConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		if r.exporter, err = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize); err != nil {
			t.Fatal(err)
		}
	}
	go r.read()
}

// read records everything the raw client receives. It answers neither
// Pings (a Pong is a script input) nor Close frames, unless autoReply is
// set: the test answers them (reply).
func (r *sessionRun) read() {
	defer close(r.readerDone)
	defer close(r.events)
	ws := r.ws
	ws.SetPingHandler(func(string) error {
		r.events <- rawEvent{kind: "ping"}
		return nil
	})
	ws.SetPongHandler(func(string) error {
		r.events <- rawEvent{kind: "pong"}
		return nil
	})
	ws.SetCloseHandler(func(code int, text string) error {
		r.events <- rawEvent{kind: "close", code: code, text: text}
		if r.autoReply.Load() {
			replyClose(ws, code)
		}
		return nil
	})
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			// A Close frame has been recorded by the handler; gorilla
			// reports a connection that ends without one as 1006.
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code == websocket.CloseAbnormalClosure {
				r.events <- rawEvent{kind: "eof"}
			}
			return
		}
		kind := "binary"
		if typ == websocket.TextMessage {
			kind = "text"
		}
		r.events <- rawEvent{kind: kind, data: msg}
	}
}

func replyClose(ws *websocket.Conn, code int) {
	msg := []byte{}
	if code != websocket.CloseNoStatusReceived {
		msg = websocket.FormatCloseMessage(code, "")
	}
	ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second))
}

// reply answers the server's Close frame, if the raw client has not yet.
func (r *sessionRun) reply() {
	if r.replyCode != 0 {
		replyClose(r.ws, r.replyCode)
		r.replyCode = 0
	}
}

// next returns the next thing the raw client received.
func (r *sessionRun) next(where string) rawEvent {
	r.t.Helper()
	select {
	case e, ok := <-r.events:
		if !ok {
			return rawEvent{kind: "end"}
		}
		return e
	case <-time.After(10 * time.Second):
		r.t.Fatalf("%s: the raw client received nothing", where)
		return rawEvent{}
	}
}

// begin checks the server's own challenge against the script's start.
func (r *sessionRun) begin() {
	t := r.t
	where := "start"
	var want challengeClaims
	wantH, _, err := splitJWS([]byte(r.v.Start.Challenge), &want)
	if err != nil {
		t.Fatalf("%s: the vector's challenge: %v", where, err)
	}
	ev := r.next(where)
	if ev.kind != "text" {
		t.Fatalf("%s: the raw client received %s, want the challenge", where, ev)
	}
	h, c, err := r.env.verifyChallenge(ev.data)
	if err != nil {
		t.Fatalf("%s: the challenge does not verify with the pinned keys: %v", where, err)
	}
	if h != wantH || c.Iss != want.Iss || c.Iat != want.Iat || c.Exp != want.Exp || !slices.Equal(c.Algs, want.Algs) ||
		c.CB != want.CB {
		t.Fatalf("%s: challenge %+v %+v, want the vector's %+v %+v (but sid and nonce)", where, h, c, wantH, want)
	}
	r.sid, r.startChallenge, r.challenge, r.outstanding = c.Sid, ev.data, ev.data, true
	if !within(func() bool { return len(r.srv.live()) == 1 }) {
		t.Fatalf("%s: the server does not track one socket", where)
	}
	r.conn = r.srv.live()[0]
	r.conn.mu.Lock()
	sid := r.conn.pc.SocketID()
	r.conn.mu.Unlock()
	if sid != r.sid {
		t.Fatalf("%s: the machine's sid %s, the challenge's %s", where, sid, r.sid)
	}
	r.checkState(where, "CHALLENGED")
}

// respond is the response of a conforming client with the key kid to
// challenge, at now, as a refresh of prev when set.
func (r *sessionRun) respond(kid string, challenge []byte, now time.Time, prev *protocol.ClientSession) []byte {
	t := r.t
	t.Helper()
	cl := r.env.client(t, r.v, kid, r.exporter == nil)
	h := cl.Handshake()
	if prev != nil {
		h = cl.Refresh(prev)
	}
	resp, err := h.ReadChallenge(challenge, rand.Reader, now, r.exporter)
	if err != nil {
		t.Fatalf("the client refuses the server's challenge: %v", err)
	}
	r.pendingHS = h
	return resp
}

func (r *sessionRun) write(where string, typ int, msg []byte, closed bool) {
	r.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := r.ws.WriteMessage(typ, msg); err != nil && !closed {
		r.t.Fatalf("%s: the raw client cannot send: %v", where, err)
	}
}

func (r *sessionRun) step(i int) {
	t, st := r.t, &r.v.Steps[i]
	at := time.Unix(st.At, 0)
	in := &st.Input
	where := fmt.Sprintf("step %d (%s at %d)", i, in.Type, st.At)
	id := fmt.Sprintf("%s/%d", r.v.ID, i)
	closedBefore := r.conn.state() == protocol.StateClosed
	expects := func(action, message string) bool {
		for _, e := range st.Expect {
			if e.Action == action && e.Message == message {
				return true
			}
		}
		return false
	}
	differently := false // the step is driven or observed differently from the script
	before := r.conn.inputs.Load()
	wire := false
	switch in.Type {
	case vectorfile.InText, vectorfile.InBinary:
		text := in.Type == vectorfile.InText
		msg := vpayload(t, text, in.Data, in.Size)
		typ := websocket.BinaryMessage
		if text {
			typ = websocket.TextMessage
			if kid, sid, ok := recordedResponse(msg); ok {
				var start challengeClaims
				if _, _, err := splitJWS([]byte(r.v.Start.Challenge), &start); err != nil || sid != start.Sid {
					t.Fatalf("%s: a recorded response to another challenge than the start's", where)
				}
				msg = r.respond(kid, r.startChallenge, at, nil)
			}
		}
		r.clk.Set(at)
		r.write(where, typ, msg, closedBefore)
		wire = true
	case vectorfile.InRespond:
		msg := r.respond(in.KID, r.challenge, at, r.sess)
		r.clk.Set(at)
		r.write(where, websocket.TextMessage, msg, closedBefore)
		wire = true
	case vectorfile.InPong:
		r.clk.Set(at)
		if err := r.ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(5*time.Second)); err != nil && !closedBefore {
			t.Fatalf("%s: %v", where, err)
		}
		wire = true
	case vectorfile.InTimer:
		r.clk.Advance(at)
	case vectorfile.InRegistry:
		r.clk.Set(at)
		if err := r.reg.Apply(in); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		r.srv.Recheck()
	case vectorfile.InSend:
		r.clk.Set(at)
		if r.running == nil {
			t.Fatalf("%s: no handler to send", where)
		}
		if r.gate != nil && !r.holding && !closedBefore {
			r.gate.hold()
			r.holding = true
		}
		differently = differently || r.holding
		msg := vpayload(t, false, in.Data, in.Size)
		_, _, busy := r.conn.queue() // while holding, a running writer is blocked at the gate
		n := 0
		if r.gate != nil {
			n = r.gate.blockedWrites()
		}
		err := r.running.c.Send(context.Background(), msg)
		switch {
		case closedBefore || expects(vectorfile.DoClose, ""):
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("%s: Send: %v, want ErrClosed", where, err)
			}
		case err != nil:
			t.Fatalf("%s: Send: %v", where, err)
		case r.holding:
			// The write blocks at the gate, or waits behind the one that does.
			if !busy {
				if !within(func() bool { return r.gate.blockedWrites() > n }) {
					t.Fatalf("%s: the server's write did not reach its socket", where)
				}
				r.inFlight = msg
			} else if _, app, _ := r.conn.queue(); len(app) == 0 || !bytes.Equal(app[len(app)-1], msg) {
				t.Fatalf("%s: the message is not queued behind the blocked write", where)
			}
			r.held = append(r.held, msg)
		}
	case vectorfile.InWritten:
		r.clk.Set(at)
		differently = true
		r.written(where, int(in.Size))
	case vectorfile.InWriteTimeout:
		r.clk.Set(at)
		differently = true
		r.writeTimeout(where)
	case vectorfile.InClose:
		r.clk.Set(at)
		if r.running == nil {
			t.Fatalf("%s: no handler to close", where)
		}
		r.running.c.Close()
	case vectorfile.InShutdown:
		r.clk.Set(at)
		r.shutdown = make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			r.shutdown <- r.srv.Shutdown(ctx)
		}()
	case vectorfile.InPeerClose:
		r.clk.Set(at)
		msg := []byte{}
		if in.Code != websocket.CloseNoStatusReceived {
			msg = websocket.FormatCloseMessage(in.Code, "")
		}
		if err := r.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		wire = true
	case vectorfile.InLost:
		r.clk.Set(at)
		r.rc.Conn.Close()
		wire = true
	default:
		t.Fatalf("%s: not a server input", where)
	}
	if wire {
		// The server's reader handles the input on its own goroutine:
		// wait until it has, before anything is checked or the clock
		// moves on. Once closed, the server may have dropped the
		// connection before the input arrived.
		if !within(func() bool {
			return r.conn.inputs.Load() > before || closedBefore && isDone(r.conn.readEnd)
		}) {
			t.Fatalf("%s: the server did not process the input", where)
		}
		if closedBefore && r.conn.inputs.Load() <= before {
			t.Logf("%s: the server dropped the connection before the input arrived", where)
		}
	}
	if closedBefore {
		// The input has reached the closed socket: now the raw client
		// answers the server's Close frame, and the handler's Read ends.
		r.reply()
		r.checkReadEnd(where)
	}
	for k := range st.Expect {
		r.observe(fmt.Sprintf("%s, action %d", where, k), in, &st.Expect[k], at, i)
		if t.Failed() {
			return
		}
	}
	if len(st.Expect) == 0 {
		r.quiet(where)
	}
	if st.State == protocol.StateClosed.String() {
		if !(r.replyCode != 0 && i+1 < len(r.v.Steps) && wireInput(r.v.Steps[i+1].Input.Type)) {
			r.reply()
			r.checkReadEnd(where)
		}
	}
	r.checkState(where, st.State)
	if _, ok := adapted[id]; ok != differently {
		if differently {
			t.Errorf("%s: driven differently from the script but not listed in adapted", where)
		} else {
			t.Errorf("%s: listed in adapted but driven as the script says", where)
		}
	}
}

// written lets the octets held at the gate through until size octets of
// application messages have reached the raw client and the server's writer
// has reported them, then holds the writes again.
func (r *sessionRun) written(where string, size int) {
	t := r.t
	if !r.holding {
		t.Fatalf("%s: nothing is held", where)
	}
	r.gate.release()
	got := 0
	for got < size {
		ev := r.next(where)
		if ev.kind != "binary" || len(r.held) == 0 || !bytes.Equal(ev.data, r.held[0]) {
			t.Fatalf("%s: the raw client received %s, want the held messages", where, ev)
		}
		got += len(ev.data)
		r.held = r.held[1:]
	}
	if got != size {
		t.Fatalf("%s: %d octets written, want %d", where, got, size)
	}
	if !within(func() bool { _, _, w := r.conn.queue(); return !w }) {
		t.Fatalf("%s: the server's writer did not finish", where)
	}
	r.inFlight = nil
	r.gate.hold()
}

// writeTimeout makes a write pass its deadline: the raw client stops
// reading and the application sends more than the socket buffers hold.
func (r *sessionRun) writeTimeout(where string) {
	t := r.t
	if r.running == nil {
		t.Fatalf("%s: no handler to send", where)
	}
	r.rc.pause(true)
	if err := r.running.c.Send(context.Background(), make([]byte, 16<<20)); err != nil {
		t.Fatalf("%s: Send: %v", where, err)
	}
	if !within(func() bool { return isDone(r.conn.done) }) {
		t.Fatalf("%s: the write did not time out", where)
	}
}

// quiet checks that nothing was queued for the raw client, and that nothing
// reaches it or the handler within quietWindow.
func (r *sessionRun) quiet(where string) {
	t := r.t
	t.Helper()
	if ctrl, app, _ := r.conn.queue(); !r.holding && (ctrl != 0 || len(app) != 0) {
		t.Fatalf("%s: %d control and %d application messages queued, want none", where, ctrl, len(app))
	}
	timer := time.NewTimer(quietWindow)
	defer timer.Stop()
	events := r.events
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil // the raw client's connection has ended
				continue
			}
			t.Fatalf("%s: the raw client received %s, want nothing", where, ev)
		case res := <-r.reads:
			t.Fatalf("%s: the handler's Read returned %d octets, %v; want nothing", where, len(res.m.Data), res.err)
		case <-timer.C:
			return
		}
	}
}

// checkReadEnd checks, once the socket has closed, that the handler's Read
// ends with ErrClosed and the close's code.
func (r *sessionRun) checkReadEnd(where string) {
	t := r.t
	t.Helper()
	if r.readEnd == nil || r.running == nil {
		return
	}
	want := r.readEnd
	r.readEnd = nil
	select {
	case res := <-r.reads:
		var ce *websocket.CloseError
		code := 0
		if errors.As(res.err, &ce) {
			code = ce.Code
		}
		if want.lost && code == websocket.CloseAbnormalClosure {
			code = 0
		}
		if res.err == nil || !errors.Is(res.err, ErrClosed) || code != want.code {
			t.Fatalf("%s: the handler's Read returned %d octets, %v; want ErrClosed with close code %d", where,
				len(res.m.Data), res.err, want.code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the handler's Read did not end", where)
	}
}

// observe checks one expected action against what the raw client and the
// handler see.
func (r *sessionRun) observe(where string, in *vectorfile.SessionInput, e *vectorfile.SessionEvent, at time.Time, step int) {
	t := r.t
	t.Helper()
	switch e.Action {
	case vectorfile.DoSend:
		if e.Message == vectorfile.MsgBinary && r.holding {
			return // observed at the gate (step)
		}
		ev := r.next(where)
		switch e.Message {
		case vectorfile.MsgChallenge:
			if ev.kind != "text" {
				t.Fatalf("%s: the raw client received %s, want a challenge", where, ev)
			}
			_, c, err := r.env.verifyChallenge(ev.data)
			if err != nil {
				t.Fatalf("%s: the challenge does not verify with the pinned keys: %v", where, err)
			}
			if c.Iat != at.Unix() || c.Exp != e.Exp || c.Sid != r.sid || c.Iss != r.ident {
				t.Fatalf("%s: challenge iat %d exp %d sid %s iss %s, want %d %d %s %s", where, c.Iat, c.Exp, c.Sid,
					c.Iss, at.Unix(), e.Exp, r.sid, r.ident)
			}
			r.challenge, r.outstanding = ev.data, true
		case vectorfile.MsgAccept:
			var a struct{ Exp int64 }
			if ev.kind != "text" || json.Unmarshal(ev.data, &a) != nil {
				t.Fatalf("%s: the raw client received %s, want an accept", where, ev)
			}
			if a.Exp != e.Exp {
				t.Fatalf("%s: accept exp %d, want %d", where, a.Exp, e.Exp)
			}
			if r.pendingHS == nil {
				t.Fatalf("%s: an accept with no response sent", where)
			}
			sess, err := r.pendingHS.ReadAccept(ev.data, at)
			if err != nil {
				t.Fatalf("%s: the client refuses the accept: %v", where, err)
			}
			r.sess, r.pendingHS, r.outstanding = sess, nil, false
		case vectorfile.MsgBinary:
			if want := vpayload(t, false, e.Data, e.Size); ev.kind != "binary" || !bytes.Equal(ev.data, want) {
				t.Fatalf("%s: the raw client received %s, want binary (%d octets)", where, ev, len(want))
			}
		default:
			t.Fatalf("%s: a server sends no %s", where, e.Message)
		}
	case vectorfile.DoPing:
		if ev := r.next(where); ev.kind != "ping" {
			t.Fatalf("%s: the raw client received %s, want a Ping", where, ev)
		}
	case vectorfile.DoDeliver:
		select {
		case res := <-r.reads:
			if want := vpayload(t, false, e.Data, e.Size); res.err != nil || !bytes.Equal(res.m.Data, want) {
				t.Fatalf("%s: the handler's Read returned %d octets, %v; want %d octets", where, len(res.m.Data),
					res.err, len(want))
			}
			if res.m.Session != r.srvSess {
				t.Fatalf("%s: delivered with a session that is not the one in force", where)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing delivered", where)
		}
	case vectorfile.DoAccepted:
		if r.running == nil {
			select {
			case hs := <-r.started:
				if hs.c != r.conn {
					t.Fatalf("%s: the handler runs on another Conn", where)
				}
				r.running = &hs
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the handler did not start", where)
			}
		}
		s := r.running.c.Session()
		if s == nil || s == r.srvSess {
			t.Fatalf("%s: Session did not change", where)
		}
		if s.SocketID != r.sid || r.sess == nil || s.Expiry.Unix() != r.sess.Expiry.Unix() || s.Token != r.sess.Token {
			t.Fatalf("%s: Session %s %v is not the accept's", where, s.SocketID, s.Expiry)
		}
		if s.ChannelBound != (r.exporter != nil) || r.sess.ChannelBound != s.ChannelBound {
			t.Fatalf("%s: Session bound %v, client's %v, over TLS 1.3 %v", where, s.ChannelBound, r.sess.ChannelBound,
				r.exporter != nil)
		}
		r.srvSess = s
	case vectorfile.DoClose:
		r.observeClose(where, in, e, step)
	default:
		t.Fatalf("%s: unknown action %q", where, e.Action)
	}
}

func (r *sessionRun) observeClose(where string, in *vectorfile.SessionInput, e *vectorfile.SessionEvent, step int) {
	t := r.t
	t.Helper()
	if r.holding {
		// The gate opens after the decision: the write under way ends,
		// and what waited behind it is discarded.
		r.gate.release()
		r.holding = false
		if r.inFlight != nil {
			if ev := r.next(where); ev.kind != "binary" || !bytes.Equal(ev.data, r.inFlight) {
				t.Fatalf("%s: the raw client received %s, want the message whose write was under way", where, ev)
			}
			r.inFlight = nil
		}
	}
	// The wire.
	want := &readEndWant{code: e.CloseCode}
	switch {
	case in.Type == vectorfile.InWriteTimeout:
		// No Close frame can follow the failed write.
		r.rc.pause(false)
		if ev := r.next(where); ev.kind != "eof" {
			t.Fatalf("%s: the raw client received %s, want the connection's end", where, ev)
		}
	case e.CloseCode != 0:
		ev := r.next(where)
		if ev.kind != "close" || ev.code != e.CloseCode {
			t.Fatalf("%s: the raw client received %s, want close %d", where, ev, e.CloseCode)
		}
		if e.Error != "" && ev.text != protocol.Code(e.Error).Reason() {
			t.Fatalf("%s: close reason %q, want %q", where, ev.text, protocol.Code(e.Error).Reason())
		}
		r.replyCode = ev.code
	case in.Type == vectorfile.InPeerClose:
		// No Close frame of the server's own: only the reply to the raw
		// client's, with its code.
		if ev := r.next(where); ev.kind != "close" || ev.code != in.Code {
			t.Fatalf("%s: the raw client received %s, want the reply to its close %d", where, ev, in.Code)
		}
		want.code = in.Code
	case in.Type == vectorfile.InLost:
		if ev := r.next(where); ev.kind != "eof" {
			t.Fatalf("%s: the raw client received %s, want the end of its own connection", where, ev)
		}
		want.lost = true
	default:
		t.Fatalf("%s: no check for this close", where)
	}

	// The machine's decision, and the row the glue fed it: a Close frame
	// (S33) carries the raw client's code, the connection's end (S34) none.
	end, ok := r.conn.machineEnd()
	if !ok || string(end.Code) != e.Error || end.CloseCode != e.CloseCode || end.Kind != protocol.ActionClose {
		t.Fatalf("%s: the machine ended with %q %d (closed %v), want %q %d", where, end.Code, end.CloseCode, ok,
			e.Error, e.CloseCode)
	}
	wantPeer := 0
	if in.Type == vectorfile.InPeerClose {
		wantPeer = in.Code
	}
	if end.PeerCode != wantPeer {
		t.Fatalf("%s: the machine was told of a Close frame %d, want %d", where, end.PeerCode, wantPeer)
	}

	// The application: its context ends at the decision, and its Read
	// with ErrClosed (checked once the raw client has answered).
	if r.running != nil {
		if !isDone(r.running.ctx.Done()) {
			t.Fatalf("%s: the handler's context is not done", where)
		}
		r.readEnd = want
	}
}

// checkState checks the machine's state, and what can be seen of it.
func (r *sessionRun) checkState(where, want string) {
	t := r.t
	t.Helper()
	if !within(func() bool { return r.conn.state().String() == want }) {
		t.Fatalf("%s: state %s, want %s", where, r.conn.state(), want)
	}
	closed := isDone(r.conn.done)
	started := r.running != nil || len(r.started) != 0
	var bad string
	switch want {
	case "CHALLENGED":
		if started || closed || r.srv.Sessions() != 0 {
			bad = fmt.Sprintf("handler started %v, closed %v, %d sessions", started, closed, r.srv.Sessions())
		}
	case "OPEN", "REFRESHING":
		if !started || closed || r.outstanding != (want == "REFRESHING") {
			bad = fmt.Sprintf("handler started %v, closed %v, a challenge outstanding %v", started, closed, r.outstanding)
		}
	case "CLOSED":
		if !closed || r.running != nil && !isDone(r.running.ctx.Done()) {
			bad = fmt.Sprintf("Conn closed %v, the handler's context not done", closed)
		}
	}
	if bad != "" {
		t.Fatalf("%s: in %s, but %s", where, want, bad)
	}
}

// finish ends the script's socket and server and checks that the server
// did nothing beyond the script.
func (r *sessionRun) finish() {
	t := r.t
	if r.rc != nil {
		r.rc.pause(false)
	}
	if r.gate != nil {
		r.gate.release()
	}
	if r.ws != nil {
		r.autoReply.Store(true)
		r.reply()
	}
	if r.shutdown == nil {
		r.shutdown = make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		r.shutdown <- r.srv.Shutdown(ctx)
		cancel()
	}
	select {
	case err := <-r.shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("Shutdown did not return")
	}
	if r.ws != nil {
		// The server has ended every connection: the raw client reads
		// what is left, then the end.
		select {
		case <-r.readerDone:
		case <-time.After(10 * time.Second):
			t.Errorf("the raw client's connection did not end")
		}
		r.ws.Close()
		<-r.readerDone
		// What the shutdown sent (1001) to a socket the script left open,
		// and the connection's end, but nothing else.
		for ev := range r.events {
			if ev.kind != "close" && ev.kind != "eof" && !t.Failed() {
				t.Errorf("the server sent %s beyond the script", ev)
			}
		}
	}
	r.hs.Close()
	if r.running != nil || len(r.started) != 0 {
		<-r.handlerDone
	}
	for {
		select {
		case res := <-r.reads:
			if res.err == nil && !t.Failed() {
				t.Errorf("%d octets delivered beyond the script", len(res.m.Data))
			}
		default:
			return
		}
	}
}
