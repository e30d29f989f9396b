package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// notDrivable lists the client-role session vectors that TestSessionVectorsLive
// cannot drive through a real socket, with the reason. It is empty: every
// client script is driven. The test fails if it names a vector that does not
// exist.
var notDrivable = map[string]string{}

// adapted lists the steps ("vector/step index") that the test drives or
// observes differently from the script, with the reason. The test fails if
// one names a step that does not exist.
var adapted = map[string]string{
	"client-write-timeout/2": "a write_timeout is made real: the server stops reading and the application keeps " +
		"writing messages of the accept's max_size (row C24, send actions the script does not list) until a write " +
		"passes the write deadline. The close code 4009 is not observed on the wire: the write that timed out leaves " +
		"the WebSocket's write side failed (gorilla refuses every later write), so the Close frame cannot be sent " +
		"and the connection is dropped; the code, the error and Retry are checked at the client",
}

// TestSessionVectorsLive runs every client-role script of
// testdata/session-vectors.json against a real Conn over a real socket (spec
// section "Session vectors"). A scripted gorilla server sends each script's
// messages, frames and Close frames and drops the connection for "lost"; it
// reads what the client sends and checks it: a response must verify with
// package protocol's server procedure for the challenge it answers, binary
// data must be exact. The client runs on a clock that the steps set, so that
// "timer" steps advance the machine's time exactly.
//
// Each expected action is matched with what is observable:
//
//   - send: what the server receives (a response, a binary message);
//   - ping: the Ping frame the server receives;
//   - deliver: what Conn.Read returns;
//   - accepted: Dial returns the Conn (the first), or Session changes;
//   - close: the Close frame the server receives with its code, or, without a
//     close code, no Close frame of the client's own (only the RFC 6455 reply
//     to the server's, or nothing); the error that Dial, Read or Write
//     returns (protocol.CodeOf, or the *CloseError's code and Spec); and
//     Retry as Keep decides it (the Conn's retryAfter, or dial's answer),
//     which for a *CloseError is also its Retryable.
//
// After each step the machine must be in the step's state.
//
// Challenges that the client must answer are re-signed with the vector
// server's key by protocol.Server.Start, fed the vector's sid and nonce, at
// the challenge's iat, for its lifetime: the header and payload are the
// vector's, octet for octet (the test checks), only the ECDSA signature
// differs, so that ServerHandshake.ReadResponse can check the response.
// Every other message is sent exactly as the script gives it.
func TestSessionVectorsLive(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", vectorfile.SessionPath))
	if err != nil {
		t.Fatal(err)
	}
	f, err := vectorfile.ParseSession(data)
	if err != nil {
		t.Fatal(err)
	}
	env := newLiveEnv(t, f)
	steps := map[string]bool{}
	var rows []string
	for _, v := range f.Vectors {
		if v.Role != vectorfile.SessionClientRole {
			continue
		}
		steps[v.ID] = true
		for i := range v.Steps {
			steps[fmt.Sprintf("%s/%d", v.ID, i)] = true
		}
	}
	for id := range notDrivable {
		if !steps[id] || strings.Contains(id, "/") {
			t.Errorf("notDrivable names %q, which is not a client session vector", id)
		}
	}
	for id := range adapted {
		if !steps[id] || !strings.Contains(id, "/") {
			t.Errorf("adapted names %q, which is not a step of a client session vector", id)
		}
	}
	driven := 0
	for _, v := range f.Vectors {
		if v.Role != vectorfile.SessionClientRole {
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
	t.Logf("%d client scripts driven live, %d listed as not drivable; rows: %s; %d need this test's hooks "+
		"(vectorfile's Remote: the application), the others a remote peer can drive too (package conformance "+
		"reports which it runs)", driven, len(notDrivable), strings.Join(slices.Compact(rows), " "), len(f.NotRemote(vectorfile.SessionClientRole)))
}

// liveEnv is the vector file's keys.
type liveEnv struct {
	f *vectorfile.SessionFile
	*vectorkeys.Keys
}

func newLiveEnv(t *testing.T, f *vectorfile.SessionFile) *liveEnv {
	t.Helper()
	k, err := vectorkeys.Load(f.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return &liveEnv{f: f, Keys: k}
}

// payload is the octets of a step's message (vectorfile.Payload).
func payload(t *testing.T, text bool, data string, size int64) []byte {
	t.Helper()
	p, err := vectorfile.Payload(text, data, size)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// resign makes the challenge lit anew with protocol.Server.Start, so that the
// returned handshake can check the client's response: the same header and
// payload, a fresh signature.
func (env *liveEnv) resign(t *testing.T, lit []byte, exporter []byte) (*protocol.ServerHandshake, []byte) {
	t.Helper()
	parts := strings.Split(string(lit), ".")
	if len(parts) != 3 {
		t.Fatalf("challenge to answer is not a JWS: %.40q", lit)
	}
	hdr, err := b64u.Decode(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	body, err := b64u.Decode(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	var c struct {
		Iss, Sid, Nonce, CB string
		Iat, Exp            int64
		Algs                []string
	}
	if json.Unmarshal(hdr, &h) != nil || json.Unmarshal(body, &c) != nil {
		t.Fatalf("challenge to answer does not decode: %.40q", lit)
	}
	var signing []keys.SigningKey
	for _, k := range env.Server.Signing {
		if k.KeyID == h.Kid {
			signing = append(signing, k)
		}
	}
	var algs []keys.Algorithm
	for _, a := range c.Algs {
		alg, err := keys.ParseAlgorithm(a)
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, alg)
	}
	srv, err := protocol.NewServer(&protocol.ServerConfig{
		Identity: c.Iss, Keys: &keys.ServerKeys{Signing: signing, Token: env.Server.Token}, Registry: env.Registry,
		Algorithms: algs, RequiredGroups: env.f.Server.RequiredGroups, ChallengeLifetime: vectorfile.Seconds(c.Exp - c.Iat),
		TokenLifetime: vectorfile.Seconds(env.f.Server.TokenLifetime),
	})
	if err != nil {
		t.Fatal(err)
	}
	sid, err1 := b64u.Decode(c.Sid)
	nonce, err2 := b64u.Decode(c.Nonce)
	if err1 != nil || err2 != nil || len(sid) != protocol.SocketIDSize {
		t.Fatalf("challenge to answer has a sid or nonce Start cannot draw: %s", body)
	}
	if c.CB != protocol.BindingTLSExporter {
		exporter = nil
	}
	r := io.MultiReader(bytes.NewReader(slices.Concat(sid, nonce)), rand.Reader)
	hs, msg, err := srv.Start(r, time.Unix(c.Iat, 0), exporter)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(msg, '.'); string(msg[:i]) != parts[0]+"."+parts[1] {
		t.Fatalf("re-signed challenge differs from the vector's:\n%s\n%s.%s", msg[:i], parts[0], parts[1])
	}
	return hs, msg
}

// serverEvent is one thing the scripted server received from the client.
type serverEvent struct {
	kind string // "text", "binary", "ping", "close", "eof"
	data []byte
	code int
}

func (e serverEvent) String() string {
	switch e.kind {
	case "close":
		return fmt.Sprintf("close %d", e.code)
	case "text", "binary":
		return fmt.Sprintf("%s (%d octets)", e.kind, len(e.data))
	}
	return e.kind
}

// scriptConn is the server's side of one socket.
type scriptConn struct {
	ws       *websocket.Conn
	exporter []byte
	events   chan serverEvent
	wmu      sync.Mutex

	gate   sync.Mutex // the reader reads only while not paused
	cond   *sync.Cond
	paused bool
}

func (sc *scriptConn) write(typ int, msg []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return sc.ws.WriteMessage(typ, msg)
}

func (sc *scriptConn) control(typ int, msg []byte) error {
	return sc.ws.WriteControl(typ, msg, time.Now().Add(5*time.Second))
}

func (sc *scriptConn) pause(p bool) {
	sc.gate.Lock()
	sc.paused = p
	sc.gate.Unlock()
	sc.cond.Broadcast()
}

// read records everything the client sends. It answers the client's Close
// frame as RFC 6455 says, but not its Pings: a Pong is a script input.
func (sc *scriptConn) read() {
	defer close(sc.events)
	sc.ws.SetPingHandler(func(string) error {
		sc.events <- serverEvent{kind: "ping"}
		return nil
	})
	sc.ws.SetCloseHandler(func(code int, _ string) error {
		sc.events <- serverEvent{kind: "close", code: code}
		msg := []byte{}
		if code != websocket.CloseNoStatusReceived {
			msg = websocket.FormatCloseMessage(code, "")
		}
		sc.control(websocket.CloseMessage, msg)
		return nil
	})
	for {
		sc.gate.Lock()
		for sc.paused {
			sc.cond.Wait()
		}
		sc.gate.Unlock()
		typ, msg, err := sc.ws.ReadMessage()
		if err != nil {
			sc.events <- serverEvent{kind: "eof"}
			return
		}
		kind := "binary"
		if typ == websocket.TextMessage {
			kind = "text"
		}
		sc.events <- serverEvent{kind: kind, data: msg}
	}
}

// next returns the next thing the client sent.
func (sc *scriptConn) next(t *testing.T) serverEvent {
	t.Helper()
	select {
	case e, ok := <-sc.events:
		if !ok {
			return serverEvent{kind: "eof"}
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the server received nothing more from the client")
		return serverEvent{}
	}
}

// scriptServer accepts the client's one socket.
type scriptServer struct {
	hs    *httptest.Server
	url   string
	conns chan *scriptConn
	wg    sync.WaitGroup
}

func newScriptServer(t *testing.T, useTLS, tls12 bool) *scriptServer {
	t.Helper()
	ss := &scriptServer{conns: make(chan *scriptConn, 1)}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}, CheckOrigin: func(*http.Request) bool { return true }}
	ss.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		sc := &scriptConn{ws: ws, events: make(chan serverEvent, 4096)}
		sc.cond = sync.NewCond(&sc.gate)
		if r.TLS != nil && r.TLS.Version == tls.VersionTLS13 {
			sc.exporter, _ = r.TLS.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
		}
		ss.wg.Go(sc.read)
		ss.conns <- sc
	}))
	if useTLS {
		ss.hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		if tls12 {
			ss.hs.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
		}
		ss.hs.StartTLS()
		ss.url = "wss" + strings.TrimPrefix(ss.hs.URL, "https") + "/ws"
	} else {
		ss.hs.Start()
		ss.url = "ws" + strings.TrimPrefix(ss.hs.URL, "http") + "/ws"
	}
	return ss
}

func (ss *scriptServer) tlsConfig() *tls.Config {
	if ss.hs.TLS == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(ss.hs.Certificate())
	return &tls.Config{RootCAs: pool}
}

// fakeClock is the clock of a script (internal/fakeclock), as the package's
// clock: Set moves it, Advance moves it and fires the timers that are due, on
// the caller's goroutine.
type fakeClock struct{ *fakeclock.Clock }

func (c fakeClock) AfterFunc(d time.Duration, f func()) timer { return c.Clock.AfterFunc(d, f) }

// state is the machine's state.
func (c *Conn) state() protocol.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc.State()
}

type dialResult struct {
	c     *Conn
	retry bool
	err   error
}

// liveRun is one script in progress.
type liveRun struct {
	t        *testing.T
	env      *liveEnv
	v        *vectorfile.SessionVector
	clk      fakeClock
	sc       *scriptConn
	c        *Conn
	dialed   chan dialResult
	dial     *dialResult // once Dial has returned
	cancel   context.CancelFunc
	hs       *protocol.ServerHandshake // of the challenge last re-signed
	sess     *protocol.ClientSession   // the session last seen
	lastPeer int                       // the code of the server's last Close frame
	flood    bool                      // the script's write_timeout step ran
}

func (env *liveEnv) run(t *testing.T, v *vectorfile.SessionVector) {
	// A TLS connection without an exporter value is TLS 1.2.
	ss := newScriptServer(t, v.Start.TLS, v.Start.TLS && v.Start.ChannelBinding == "")
	defer func() {
		ss.hs.Close()
		ss.wg.Wait()
	}()
	cc := env.f.ClientFor(v)
	kid := v.Start.ClientKID
	cfg := &Config{
		KeyID: kid, Signer: env.Clients[kid], Algorithm: env.Algs[kid], ServerKeys: env.Pinned,
		ServerIdentity: env.f.Server.Identity, InsecureAllowUnbound: v.Start.AllowUnbound,
		ClockSkew: vectorfile.Seconds(cc.ClockSkew), HandshakeTimeout: vectorfile.Seconds(cc.HandshakeTimeout),
		PingInterval:   vectorfile.Seconds(cc.PingInterval),
		MaxMessageSize: cc.MaxMessageSize,
		TLSConfig:      ss.tlsConfig(),
	}
	s, err := newSetup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &liveRun{t: t, env: env, v: v, clk: fakeClock{fakeclock.New(time.Unix(v.Start.At, 0))}, dialed: make(chan dialResult, 1)}
	s.clock = r.clk
	conns := make(chan *Conn, 1)
	s.onConn = func(c *Conn) { conns <- c }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	defer cancel()
	go func() {
		c, retry, err := s.dial(ctx, ss.url)
		r.dialed <- dialResult{c, retry, err}
	}()
	select {
	case r.sc = <-ss.conns:
	case res := <-r.dialed:
		t.Fatalf("Dial: %v", res.err)
	}
	select {
	case r.c = <-conns:
	case <-time.After(10 * time.Second):
		t.Fatal("no Conn")
	}
	defer r.cleanup()
	for i := range v.Steps {
		r.step(i, &v.Steps[i])
		if t.Failed() {
			return
		}
	}
}

// waitDial waits for Dial's result.
func (r *liveRun) waitDial() *dialResult {
	r.t.Helper()
	if r.dial == nil {
		select {
		case res := <-r.dialed:
			r.dial = &res
		case <-time.After(15 * time.Second):
			r.t.Fatal("Dial did not return")
		}
	}
	return r.dial
}

// open reports whether Dial has returned the Conn.
func (r *liveRun) open() bool {
	if r.dial == nil {
		select {
		case res := <-r.dialed:
			r.dial = &res
		default:
			return false
		}
	}
	return r.dial.err == nil
}

func (r *liveRun) step(i int, st *vectorfile.SessionStep) {
	t, c, sc := r.t, r.c, r.sc
	t.Helper()
	at := time.Unix(st.At, 0)
	in := &st.Input
	where := fmt.Sprintf("step %d (%s at %d)", i, in.Type, st.At)
	closedBefore := c.state() == protocol.StateClosed
	if closedBefore {
		// Nothing reaches a closed socket; let it finish closing.
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the closed socket did not finish", where)
		}
	}
	expects := func(action, message string) bool {
		for _, e := range st.Expect {
			if e.Action == action && e.Message == message {
				return true
			}
		}
		return false
	}
	before := c.inputs.Load()
	fromServer := false
	var writeErr error
	switch in.Type {
	case vectorfile.InText, vectorfile.InBinary:
		text := in.Type == vectorfile.InText
		msg := payload(t, text, in.Data, in.Size)
		if text && expects(vectorfile.DoSend, vectorfile.MsgResponse) {
			r.hs, msg = r.env.resign(t, msg, sc.exporter)
		}
		typ := websocket.BinaryMessage
		if text {
			typ = websocket.TextMessage
		}
		r.clk.Set(at)
		if err := sc.write(typ, msg); err != nil && !closedBefore {
			t.Fatalf("%s: the server cannot send: %v", where, err)
		}
		fromServer = true
	case vectorfile.InPong:
		r.clk.Set(at)
		sc.control(websocket.PongMessage, nil)
		fromServer = true
	case vectorfile.InTimer:
		r.clk.Advance(at)
	case vectorfile.InSend:
		r.clk.Set(at)
		writeErr = c.Write(context.Background(), payload(t, false, in.Data, in.Size))
		switch {
		case closedBefore:
			if writeErr == nil || errors.Is(writeErr, protocol.ErrMessageTooLarge) {
				t.Errorf("%s: Write on a closed socket: %v", where, writeErr)
			}
		case len(st.Expect) == 0:
			if !errors.Is(writeErr, protocol.ErrMessageTooLarge) {
				t.Errorf("%s: Write: %v, want protocol.ErrMessageTooLarge", where, writeErr)
			}
		case writeErr != nil:
			t.Errorf("%s: Write: %v", where, writeErr)
		}
	case vectorfile.InWriteTimeout:
		r.clk.Set(at)
		r.writeTimeout(where)
	case vectorfile.InClose:
		r.clk.Set(at)
		if r.open() {
			c.Close()
		} else {
			r.cancel() // the application gives up on Dial
		}
	case vectorfile.InPeerClose:
		r.clk.Set(at)
		msg := []byte{}
		if in.Code != websocket.CloseNoStatusReceived {
			msg = websocket.FormatCloseMessage(in.Code, "")
		}
		if err := sc.control(websocket.CloseMessage, msg); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		r.lastPeer = in.Code
		fromServer = true
	case vectorfile.InLost:
		r.clk.Set(at)
		sc.ws.UnderlyingConn().Close()
		fromServer = true
	default:
		t.Fatalf("%s: not a client input", where)
	}
	if fromServer && !closedBefore {
		// The client's reader handles the input on its own goroutine: wait
		// until it has, before the clock moves on.
		deadline := time.Now().Add(10 * time.Second)
		for c.inputs.Load() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the client did not process the input", where)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for k := range st.Expect {
		r.observe(fmt.Sprintf("%s, action %d", where, k), in, &st.Expect[k], at, i)
		if t.Failed() {
			return
		}
	}
	want := st.State
	deadline := time.Now().Add(10 * time.Second)
	for c.state().String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s, want %s", where, c.state(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeTimeout makes a write pass its deadline: the server stops reading and
// the application writes until the socket ends.
func (r *liveRun) writeTimeout(where string) {
	t := r.t
	defer func(d time.Duration) { writeTimeout = d }(writeTimeout)
	writeTimeout = 500 * time.Millisecond
	r.sc.pause(true)
	msg := make([]byte, r.c.Session().MaxMessageSize)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for n := 0; ; n++ {
		if err := r.c.Write(ctx, msg); err != nil {
			t.Logf("%s: %d writes, then %v", where, n, err)
			break
		}
	}
	r.flood = true
}

// observe checks one expected action against what the server, Read and Dial
// see.
func (r *liveRun) observe(where string, in *vectorfile.SessionInput, e *vectorfile.SessionEvent, at time.Time, step int) {
	t, c, sc := r.t, r.c, r.sc
	t.Helper()
	switch e.Action {
	case vectorfile.DoSend:
		ev := sc.next(t)
		switch e.Message {
		case vectorfile.MsgResponse:
			if ev.kind != "text" {
				t.Fatalf("%s: server received %s, want a response", where, ev)
			}
			if r.hs == nil {
				t.Fatalf("%s: a response to a challenge the test did not re-sign", where)
			}
			if _, _, err := r.hs.ReadResponse(ev.data, rand.Reader, at); err != nil {
				t.Fatalf("%s: the server refuses the response: %v", where, err)
			}
			r.hs = nil
		case vectorfile.MsgBinary:
			if want := payload(t, false, e.Data, e.Size); ev.kind != "binary" || !bytes.Equal(ev.data, want) {
				t.Fatalf("%s: server received %s, want binary %d octets", where, ev, len(want))
			}
		default:
			t.Fatalf("%s: a client sends no %s", where, e.Message)
		}
	case vectorfile.DoPing:
		if ev := sc.next(t); ev.kind != "ping" {
			t.Fatalf("%s: server received %s, want a Ping", where, ev)
		}
	case vectorfile.DoDeliver:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := c.Read(ctx)
		if want := payload(t, false, e.Data, e.Size); err != nil || !bytes.Equal(p, want) {
			t.Fatalf("%s: Read: %d octets, %v; want %d octets", where, len(p), err, len(want))
		}
	case vectorfile.DoAccepted:
		if !r.open() {
			res := r.waitDial()
			if res.err != nil || res.c != c {
				t.Fatalf("%s: Dial: %v, want the Conn", where, res.err)
			}
		} else {
			deadline := time.Now().Add(10 * time.Second)
			for c.Session() == r.sess {
				if time.Now().After(deadline) {
					t.Fatalf("%s: Session did not change", where)
				}
				time.Sleep(time.Millisecond)
			}
		}
		r.sess = c.Session()
	case vectorfile.DoClose:
		r.observeClose(where, in, e, step)
	default:
		t.Fatalf("%s: unknown action %q", where, e.Action)
	}
}

func (r *liveRun) observeClose(where string, in *vectorfile.SessionInput, e *vectorfile.SessionEvent, step int) {
	t, c, sc := r.t, r.c, r.sc
	t.Helper()
	// The wire.
	_, adaptedStep := adapted[fmt.Sprintf("%s/%d", r.v.ID, step)]
	switch {
	case r.flood:
		// The server reads again: what the flood queued, then the end
		// of the connection. No Close frame can follow the failed write.
		r.sc.pause(false)
		for {
			ev := sc.next(t)
			if ev.kind == "eof" {
				break
			}
			if ev.kind != "binary" || !adaptedStep {
				t.Fatalf("%s: server received %s, want the flood's messages, then the connection's end", where, ev)
			}
		}
	case e.CloseCode != 0:
		if ev := sc.next(t); ev.kind != "close" || ev.code != e.CloseCode {
			t.Fatalf("%s: server received %s, want close %d", where, ev, e.CloseCode)
		}
	case in.Type == vectorfile.InPeerClose:
		// No Close frame of the client's own: only the reply to the
		// server's, with its code.
		if ev := sc.next(t); ev.kind != "close" || ev.code != in.Code {
			t.Fatalf("%s: server received %s, want the reply to its close %d", where, ev, in.Code)
		}
	default:
		if ev := sc.next(t); ev.kind != "eof" {
			t.Fatalf("%s: server received %s, want the connection's end without a Close frame", where, ev)
		}
	}

	// The error and Keep's decision.
	var err error
	var retry bool
	if r.open() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = c.Read(ctx)
		retry = c.retryAfter(err)
	} else {
		res := r.waitDial()
		err, retry = res.err, res.retry
		if err == nil {
			t.Fatalf("%s: Dial succeeded", where)
		}
	}
	if e.Retry == nil || *e.Retry != retry {
		t.Errorf("%s: %v: retry %v, want %v", where, err, retry, e.Retry != nil && *e.Retry)
	}
	var ce *CloseError
	switch {
	case e.CloseCode != 0 && e.Error != "": // a failure the client detected
		if code := protocol.CodeOf(err); code != protocol.Code(e.Error) || errors.As(err, &ce) {
			t.Errorf("%s: error %v (code %q), want %s", where, err, code, e.Error)
		}
	case e.CloseCode == protocol.CloseNormal: // the application closed
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %v, want the application's close", where, err)
		}
	case in.Type == vectorfile.InPeerClose:
		if !errors.As(err, &ce) || ce.Code != in.Code || string(ce.Spec) != e.Error || ce.Retryable() != retry {
			t.Errorf("%s: error %#v, want the server's close %d (%s)", where, err, in.Code, e.Error)
		}
	case in.Type == vectorfile.InLost:
		if protocol.CodeOf(err) != "" || errors.As(err, &ce) && (ce.Code != websocket.CloseAbnormalClosure || !ce.Retryable()) {
			t.Errorf("%s: error %v, want the connection's end", where, err)
		}
	default:
		t.Errorf("%s: no check for this close", where)
	}
}

// cleanup ends the script's socket and checks that the client did nothing
// beyond the script: no message left for Read, nothing more sent.
func (r *liveRun) cleanup() {
	t, c, sc := r.t, r.c, r.sc
	if !r.open() {
		r.cancel()
		r.waitDial()
	}
	if r.dial != nil && r.dial.err == nil {
		if n := len(c.in); n != 0 && !t.Failed() {
			t.Errorf("%d messages delivered beyond the script", n)
		}
		c.Close()
	}
	sc.pause(false)
	for {
		ev := sc.next(t)
		if ev.kind == "eof" {
			break
		}
		if ev.kind != "close" && !t.Failed() {
			t.Errorf("the client sent %s beyond the script", ev)
		}
	}
	sc.ws.Close()
}
