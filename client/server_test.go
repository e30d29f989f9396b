package client

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/wsio"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The test server is a minimal wsproof server made of gorilla/websocket and
// package protocol, so that the client is tested against the spec's rules
// rather than against package server. It echoes binary messages and lets a
// test trigger a re-challenge or a Close frame.

const testIdentity = "wss://wsproof.test/ws"

// opaqueSigner hides the concrete key type: the client must work with any
// crypto.Signer (a TPM, an HSM, ssh-agent). delay slows every signature
// after the first, to hold a refresh open while messages flow.
type opaqueSigner struct {
	s     crypto.Signer
	delay time.Duration
	n     atomic.Int32
}

func (o *opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }

func (o *opaqueSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o.n.Add(1) > 1 {
		time.Sleep(o.delay)
	}
	return o.s.Sign(r, digest, opts)
}

// fixture is a client key registered with a server, and the server's keys.
type fixture struct {
	alg        keys.Algorithm
	client     *opaqueSigner
	serverKeys *keys.ServerKeys
	registry   *keys.Set
}

func newFixture(t testing.TB, alg keys.Algorithm) *fixture {
	t.Helper()
	ck, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	reg, err := keys.NewSet([]*keys.Entry{{
		KeyID: "client-1", Key: ck.Public(), Algorithm: alg, Subject: "device:1", Groups: []string{"devices"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		alg:    alg,
		client: &opaqueSigner{s: ck},
		serverKeys: &keys.ServerKeys{
			Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: alg, Signer: sk}},
			Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
		},
		registry: reg,
	}
}

// config returns a client Config for the fixture's key, pinning the
// fixture's server keys.
func (f *fixture) config() *Config {
	cfg := &Config{KeyID: "client-1", Signer: f.client, ServerKeys: f.serverKeys.Public(), ServerIdentity: testIdentity}
	if f.alg == keys.RS256 || f.alg == keys.PS256 {
		cfg.Algorithm = f.alg
	}
	return cfg
}

type serverOptions struct {
	tls           bool
	tls12         bool // cap TLS at 1.2, where there is no exporter value
	noSubprotocol bool
	silent        bool // upgrade, then never send a challenge
	keys          *keys.ServerKeys
	// refuse answers the n-th upgrade request (from 1) with this HTTP
	// status instead of upgrading, when it returns non-zero.
	refuse func(n int) int
	// script, when set, replaces the handshake: it talks to the client
	// itself, and the server then waits for the client to close.
	script func(sc *serverConn)
	// afterAccept runs on the n-th socket (from 1) once it is
	// authenticated, before the echo loop.
	afterAccept func(n int, sc *serverConn)
	// urlIdentity makes the server's identity the identity of its URL
	// (protocol.IdentityFromURL), instead of testIdentity.
	urlIdentity bool
	// maxMessageSize is the max_size of the server's accepts; zero means
	// the default.
	maxMessageSize int64
}

type testServer struct {
	t    testing.TB
	srv  atomic.Pointer[protocol.Server] // set once the URL, and so the identity, is known
	opts serverOptions
	hs   *httptest.Server
	url  string

	requests atomic.Int32 // upgrade requests
	sockets  atomic.Int32 // sockets opened

	accepted chan *serverConn // authenticated sockets, in order
	closes   chan int         // the close code of each socket the client closed

	mu    sync.Mutex
	conns map[*serverConn]bool
	wg    sync.WaitGroup
}

func newServer(t testing.TB, f *fixture, opts serverOptions) *testServer {
	t.Helper()
	sk := opts.keys
	if sk == nil {
		sk = f.serverKeys
	}
	ts := &testServer{
		t: t, opts: opts,
		accepted: make(chan *serverConn, 16),
		closes:   make(chan int, 16),
		conns:    map[*serverConn]bool{},
	}
	ts.hs = httptest.NewUnstartedServer(http.HandlerFunc(ts.handle))
	if opts.tls {
		ts.hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		if opts.tls12 {
			ts.hs.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
		}
		ts.hs.StartTLS()
		ts.url = "wss" + strings.TrimPrefix(ts.hs.URL, "https")
	} else {
		ts.hs.Start()
		ts.url = "ws" + strings.TrimPrefix(ts.hs.URL, "http")
	}
	t.Cleanup(ts.close)
	identity := testIdentity
	if opts.urlIdentity {
		var err error
		if identity, err = protocol.IdentityFromURL(ts.url); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := protocol.NewServer(&protocol.ServerConfig{Identity: identity, Keys: sk, Registry: f.registry,
		MaxMessageSize: opts.maxMessageSize})
	if err != nil {
		t.Fatal(err)
	}
	ts.srv.Store(srv)
	return ts
}

// tlsConfig trusts the test server's certificate.
func (ts *testServer) tlsConfig() *tls.Config {
	if ts.hs.TLS == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(ts.hs.Certificate())
	return &tls.Config{RootCAs: pool}
}

func (ts *testServer) close() {
	ts.hs.Close()
	ts.mu.Lock()
	for sc := range ts.conns {
		sc.ws.Close()
	}
	ts.mu.Unlock()
	ts.wg.Wait()
}

// waitAccepted returns the next authenticated socket.
func (ts *testServer) waitAccepted() *serverConn {
	ts.t.Helper()
	select {
	case sc := <-ts.accepted:
		return sc
	case <-time.After(10 * time.Second):
		ts.t.Fatal("no socket authenticated")
		return nil
	}
}

// waitClose returns the close code of the next socket the client closed.
func (ts *testServer) waitClose() int {
	ts.t.Helper()
	select {
	case code := <-ts.closes:
		return code
	case <-time.After(10 * time.Second):
		ts.t.Fatal("client did not close")
		return 0
	}
}

type serverConn struct {
	ts       *testServer
	ws       *websocket.Conn
	exporter []byte
	resumed  bool // the TLS connection resumed an earlier session

	wmu sync.Mutex    // one writer at a time
	wdl wsio.Deadline // under wmu

	mu           sync.Mutex
	sess         *protocol.Session
	pending      *protocol.ServerHandshake
	duringFresh  int // binary messages received while a refresh was outstanding
	received     atomic.Int64
	refreshed    chan *protocol.Session
	refreshError chan error
}

func (sc *serverConn) write(typ int, msg []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	// A deadline kept for a while, as package server keeps it: the echo
	// benchmark measures the client, not the cost of a deadline per echo.
	sc.ws.SetWriteDeadline(sc.wdl.Next(time.Now(), 5*time.Second))
	return sc.ws.WriteMessage(typ, msg)
}

// closeWith sends a Close frame with code and reason; the client answers and
// the echo loop ends.
func (sc *serverConn) closeWith(code int, reason string) {
	sc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(5*time.Second))
}

// refresh sends a re-challenge (spec section "Refresh"): a challenge for the
// session's sid, which Start makes when it draws that sid. Its lifetime, the
// server's challenge lifetime, ends before the token does.
func (sc *serverConn) refresh() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sid, err := b64u.Decode(sc.sess.SocketID)
	if err != nil {
		return err
	}
	sh, ch, err := sc.ts.srv.Load().Start(io.MultiReader(bytes.NewReader(sid), rand.Reader), time.Now(), sc.exporter)
	if err != nil {
		return err
	}
	sc.pending = sh
	return sc.write(websocket.TextMessage, ch)
}

func (ts *testServer) handle(w http.ResponseWriter, r *http.Request) {
	ts.wg.Add(1)
	defer ts.wg.Done()
	n := int(ts.requests.Add(1))
	if ts.opts.refuse != nil {
		if status := ts.opts.refuse(n); status != 0 {
			// As a wsproof server refuses: the code's reason text on the
			// body's first line (spec section "Errors"); then something a
			// client must not echo.
			body := "refused"
			switch status {
			case 400:
				body = protocol.CodeSubprotocolRequired.Reason()
			case 403:
				body = protocol.CodeOriginNotAllowed.Reason()
			case 429, 503:
				body = protocol.CodeRateLimited.Reason()
			}
			http.Error(w, body+"\n<script>", status)
			return
		}
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	if !ts.opts.noSubprotocol {
		up.Subprotocols = []string{protocol.Subprotocol}
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	n = int(ts.sockets.Add(1))
	sc := &serverConn{ts: ts, ws: ws, refreshed: make(chan *protocol.Session, 16), refreshError: make(chan error, 16)}
	ts.mu.Lock()
	ts.conns[sc] = true
	ts.mu.Unlock()
	defer func() {
		ts.mu.Lock()
		delete(ts.conns, sc)
		ts.mu.Unlock()
	}()
	if r.TLS != nil {
		sc.resumed = r.TLS.DidResume
	}
	if r.TLS != nil && r.TLS.Version == tls.VersionTLS13 {
		sc.exporter, err = r.TLS.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
		if err != nil {
			ts.t.Error(err)
			return
		}
	}
	if ts.opts.silent {
		sc.drain()
		return
	}
	if ts.opts.script != nil {
		ts.opts.script(sc)
		sc.drain()
		return
	}

	sh, ch, err := ts.srv.Load().Start(rand.Reader, time.Now(), sc.exporter)
	if err != nil {
		ts.t.Error(err)
		return
	}
	if sc.write(websocket.TextMessage, ch) != nil {
		return
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		sc.noteClose(err)
		return
	}
	sess, accept, err := sh.ReadResponse(msg, rand.Reader, time.Now())
	if err != nil {
		code := protocol.CodeOf(err)
		sc.closeWith(code.CloseCode(), code.Reason())
		sc.drain()
		return
	}
	sc.sess = sess
	if sc.write(websocket.TextMessage, accept) != nil {
		return
	}
	ts.accepted <- sc
	if ts.opts.afterAccept != nil {
		ts.opts.afterAccept(n, sc)
	}
	sc.echo()
}

// challenge sends a challenge and reads the client's response.
func (sc *serverConn) challenge() (*protocol.ServerHandshake, []byte, error) {
	sh, ch, err := sc.ts.srv.Load().Start(rand.Reader, time.Now(), sc.exporter)
	if err != nil {
		return nil, nil, err
	}
	if err := sc.write(websocket.TextMessage, ch); err != nil {
		return nil, nil, err
	}
	_, msg, err := sc.ws.ReadMessage()
	return sh, msg, err
}

// echo sends every binary message back and answers refresh responses.
func (sc *serverConn) echo() {
	for {
		typ, msg, err := sc.ws.ReadMessage()
		if err != nil {
			sc.noteClose(err)
			return
		}
		if typ == websocket.BinaryMessage {
			sc.received.Add(1)
			sc.mu.Lock()
			if sc.pending != nil {
				sc.duringFresh++
			}
			sc.mu.Unlock()
			if sc.write(websocket.BinaryMessage, msg) != nil {
				return
			}
			continue
		}
		sc.mu.Lock()
		sh := sc.pending
		sc.pending = nil
		sc.mu.Unlock()
		if sh == nil {
			sc.closeWith(4001, "unexpected message")
			sc.drain()
			return
		}
		sess, accept, err := sh.ReadResponse(msg, rand.Reader, time.Now())
		if err != nil {
			sc.refreshError <- err
			code := protocol.CodeOf(err)
			sc.closeWith(code.CloseCode(), code.Reason())
			sc.drain()
			return
		}
		sc.mu.Lock()
		sc.sess = sess
		sc.mu.Unlock()
		if sc.write(websocket.TextMessage, accept) != nil {
			return
		}
		sc.refreshed <- sess
	}
}

// drain reads until the socket ends and records the client's close code.
func (sc *serverConn) drain() {
	for {
		if _, _, err := sc.ws.ReadMessage(); err != nil {
			sc.noteClose(err)
			return
		}
	}
}

func (sc *serverConn) noteClose(err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		select {
		case sc.ts.closes <- ce.Code:
		default:
		}
	}
}
