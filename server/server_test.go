package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	keyMu    sync.Mutex
	keyCache = map[string]crypto.Signer{}
)

func testKey(t testing.TB, name string, alg keys.Algorithm) crypto.Signer {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	k, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[name] = k
	return k
}

// fixture is a running server with one registered key per algorithm.
type fixture struct {
	srv     *Server
	http    *httptest.Server
	url     string
	sk      *keys.ServerKeys
	entries map[string]*keys.Entry
	signers map[string]crypto.Signer
}

type echo struct{}

func (echo) ServeSession(ctx context.Context, c *Conn) {
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Send(ctx, m.Data); err != nil {
			return
		}
	}
}

const identity = "wss://wsproof.test/ws"

func newFixture(t *testing.T, tlsOn bool, edit func(*Config)) *fixture {
	t.Helper()
	return newFixtureOn(t, tlsOn, edit, nil)
}

// newFixtureOn is newFixture with the listener wrapped by wrap, when set.
func newFixtureOn(t *testing.T, tlsOn bool, edit func(*Config), wrap func(net.Listener) net.Listener) *fixture {
	t.Helper()
	f := &fixture{entries: map[string]*keys.Entry{}, signers: map[string]crypto.Signer{}}
	f.sk = &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server", Algorithm: keys.ES256, Signer: testKey(t, "server", keys.ES256)}},
		Token:   []keys.TokenKey{{KeyID: "token", Algorithm: keys.TokenDir, Secret: bytes.Repeat([]byte{5}, 32)}},
	}
	var list []*keys.Entry
	add := func(kid string, alg keys.Algorithm, groups []string, mutate func(*keys.Entry)) {
		k := testKey(t, kid, alg)
		e := &keys.Entry{KeyID: kid, Key: k.Public(), Algorithm: alg, Subject: "sub-" + kid, Groups: groups}
		if mutate != nil {
			mutate(e)
		}
		f.entries[kid], f.signers[kid] = e, k
		list = append(list, e)
	}
	for _, alg := range keys.Algorithms {
		add("c-"+string(alg), alg, []string{"devices"}, nil)
	}
	add("visitor", keys.EdDSA, []string{"visitors"}, nil)
	add("revoked", keys.EdDSA, []string{"devices"}, func(e *keys.Entry) { e.Revoked = true })
	reg, err := keys.NewSet(list)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Identity: identity, Keys: f.sk, Registry: reg, RequiredGroups: []string{"devices"},
		Handler: echo{}, Origins: []string{"https://app.wsproof.test"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(cfg)
	}
	f.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewUnstartedServer(f.srv)
	if wrap != nil {
		f.http.Listener = wrap(f.http.Listener)
	}
	if tlsOn {
		f.http.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		f.http.StartTLS()
		f.url = "wss" + strings.TrimPrefix(f.http.URL, "https")
	} else {
		f.http.Start()
		f.url = "ws" + strings.TrimPrefix(f.http.URL, "http")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
		f.http.Close()
	})
	return f
}

// rawClient is a minimal client made of gorilla and package protocol, so
// that these tests do not depend on package client and can misbehave.
type rawClient struct {
	ws       *websocket.Conn
	exporter []byte
	client   *protocol.Client
	sess     *protocol.ClientSession
}

func (f *fixture) dial(t *testing.T, header http.Header) (*rawClient, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	if f.http.TLS != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: certPool(f.http), MinVersion: tls.VersionTLS13}
	}
	ws, resp, err := d.Dial(f.url, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawClient{ws: ws}
	if tc, ok := ws.UnderlyingConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.exporter, _ = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
	}
	return c, resp, nil
}

func certPool(s *httptest.Server) *x509.CertPool {
	return s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

// handshake authenticates as kid; mutate may rewrite the response.
func (f *fixture) handshake(t *testing.T, c *rawClient, kid string, mutate func([]byte) []byte) error {
	t.Helper()
	e := f.entries[kid]
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: f.signers[kid], Algorithm: e.Algorithm,
		ServerKeys: f.sk.Public(), ServerIdentity: identity})
	if err != nil {
		t.Fatal(err)
	}
	c.client = pc
	h := pc.Handshake()
	_, challenge, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	resp, err := h.ReadChallenge(challenge, rand.Reader, time.Now(), c.exporter)
	if err != nil {
		t.Fatalf("client refused the server's challenge: %v", err)
	}
	if mutate != nil {
		resp = mutate(resp)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, resp); err != nil {
		return err
	}
	_, accept, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	c.sess, err = h.ReadAccept(accept, time.Now())
	return err
}

// closeCode reads until the server closes and returns its close code and
// reason.
func closeCode(t *testing.T, ws *websocket.Conn) (int, string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

func TestHandshakeEveryAlgorithm(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		f := newFixture(t, tlsOn, nil)
		for _, alg := range keys.Algorithms {
			c, _, err := f.dial(t, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.handshake(t, c, "c-"+string(alg), nil); err != nil {
				t.Fatalf("%s tls=%v: %v", alg, tlsOn, err)
			}
			if c.sess.ChannelBound != tlsOn || c.sess.Subject != "sub-c-"+string(alg) {
				t.Fatalf("%s tls=%v: session %+v", alg, tlsOn, c.sess)
			}
			msg := []byte("hello " + string(alg))
			c.ws.WriteMessage(websocket.BinaryMessage, msg)
			mt, got, err := c.ws.ReadMessage()
			if err != nil || mt != websocket.BinaryMessage || !bytes.Equal(got, msg) {
				t.Fatalf("echo: %d %q %v", mt, got, err)
			}
			c.ws.Close()
		}
	}
}

func TestRejectionsCloseWithSpecCode(t *testing.T) {
	f := newFixture(t, false, nil)
	cases := []struct {
		name   string
		kid    string
		mutate func([]byte) []byte
		code   protocol.Code
	}{
		{"unknown group", "visitor", nil, protocol.CodeAccessDenied},
		{"revoked", "revoked", nil, protocol.CodeKeyRevoked},
		{"tampered", "c-ES256", func(b []byte) []byte {
			i := bytes.LastIndexByte(b, '.')
			sig, _ := b64u.Decode(string(b[i+1:]))
			sig[0] ^= 1
			return append(b[:i+1], b64u.Encode(sig)...)
		}, protocol.CodeBadSignature},
		{"not a JWS", "c-ES256", func([]byte) []byte { return []byte("hello") }, protocol.CodeMalformed},
		{"oversized", "c-ES256", func([]byte) []byte { return bytes.Repeat([]byte("a"), 5000) }, protocol.CodeTooLarge},
	}
	for _, tc := range cases {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.handshake(t, c, tc.kid, tc.mutate)
		code, reason := closeCode(t, c.ws)
		if code != tc.code.CloseCode() || reason != tc.code.Reason() {
			t.Errorf("%s: closed with %d %q, want %d %q", tc.name, code, reason, tc.code.CloseCode(), tc.code.Reason())
		}
	}
}

func TestBinaryBeforeAuthentication(t *testing.T) {
	f := newFixture(t, false, nil)
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.ws.ReadMessage() // the challenge
	c.ws.WriteMessage(websocket.BinaryMessage, []byte("early"))
	if code, _ := closeCode(t, c.ws); code != protocol.CodeUnexpectedMessage.CloseCode() {
		t.Fatalf("close code %d", code)
	}
}

// TestLostIsNotPeerClose is a regression test: gorilla reports a connection
// that ends without a Close frame as a *websocket.CloseError with 1006, a
// code RFC 6455 forbids on the wire, and the glue took it for the client's
// Close frame (row S33, HandlePeerClose with 1006) instead of the
// connection's end (row S34, HandleLost). In the handshake and in a session,
// a client that drops its TCP connection must reach the machine as lost.
func TestLostIsNotPeerClose(t *testing.T) {
	f := newFixture(t, false, nil)
	for _, authed := range []bool{false, true} {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authed {
			if err := f.handshake(t, c, "c-ES256", nil); err != nil {
				t.Fatal(err)
			}
		} else {
			c.ws.ReadMessage() // the challenge
		}
		var sc *Conn
		deadline := time.Now().Add(5 * time.Second)
		for sc == nil {
			for _, lc := range f.srv.live() {
				sc = lc
			}
			if time.Now().After(deadline) {
				t.Fatal("the server tracks no socket")
			}
			time.Sleep(time.Millisecond)
		}
		c.ws.UnderlyingConn().Close()
		select {
		case <-sc.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the server did not see the connection end")
		}
		sc.mu.Lock()
		end, _ := sc.pc.End()
		sc.mu.Unlock()
		if end.PeerCode != 0 || end.Err == nil {
			t.Errorf("authenticated %v: the machine was told of a Close frame %d (err %v), want the connection lost",
				authed, end.PeerCode, end.Err)
		}
		select {
		case <-sc.readEnd:
		case <-time.After(5 * time.Second):
			t.Fatal("the server's reader did not end")
		}
	}
}

func TestUpgradeRefusals(t *testing.T) {
	f := newFixture(t, false, nil)
	// Missing subprotocol.
	ws, resp, err := websocket.DefaultDialer.Dial(f.url, nil)
	if err == nil {
		ws.Close()
		t.Fatal("upgrade without the subprotocol succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("missing subprotocol: %v", resp)
	}
	// The body is the code's reason text, which tells a client that a
	// wsproof server refused (spec section "Errors"; protocol.UpgradeRefused).
	if body, _ := io.ReadAll(resp.Body); string(body) != protocol.CodeSubprotocolRequired.Reason()+"\n" {
		t.Errorf("missing subprotocol: body %q", body)
	}
	// Foreign origin.
	_, resp, err = f.dial(t, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", resp, err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != protocol.CodeOriginNotAllowed.Reason()+"\n" {
		t.Errorf("foreign origin: body %q", body)
	}
	// An Origin is compared exactly, as browsers serialize it.
	if _, resp, err = f.dial(t, http.Header{"Origin": {"https://APP.wsproof.test"}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("case-variant origin: %v %v", resp, err)
	}
	// Allowed origin.
	c, _, err := f.dial(t, http.Header{"Origin": {"https://app.wsproof.test"}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeDeadlineAndPendingCap(t *testing.T) {
	f := newFixture(t, false, func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.MaxPendingPerAddr = 2
	})
	var silent []*rawClient
	for range 2 {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// A third pending socket from the same address is refused before the
	// upgrade.
	if _, resp, err := f.dial(t, nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third pending socket: %v %v", resp, err)
	}
	start := time.Now()
	for _, c := range silent {
		if code, _ := closeCode(t, c.ws); code != protocol.CodeHandshakeTimeout.CloseCode() {
			t.Fatalf("silent socket closed with %d", code)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline took %v", d)
	}
	// The slots are free again once the closed sockets have ended: a slot
	// is released when the server's reader sees the end of its socket,
	// which comes after the Close frame the client has just read (the
	// client's answer, or the closer's drop within closeDropBy), so a dial
	// at once would race with it.
	for len(f.srv.live()) != 0 {
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the closed sockets still hold their slots after %v", d)
		}
		time.Sleep(time.Millisecond)
	}
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	f := newFixture(t, false, nil)
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- f.srv.Shutdown(ctx) }()
	if code, _ := closeCode(t, c.ws); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if f.srv.Sessions() != 0 {
		t.Fatal("sessions left after Shutdown")
	}
	if _, resp, err := f.dial(t, nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, false, func(c *Config) { c.Metrics = reg })
	ok, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, ok, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	bad, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.handshake(t, bad, "visitor", nil)
	closeCode(t, bad.ws)
	want := map[string]float64{
		`wsproof_handshakes_total{code="",outcome="ok"}`:                   1,
		`wsproof_handshakes_total{code="access_denied",outcome="refused"}`: 1,
		`wsproof_sessions{}`: 1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// TestPlainRequestNamesOriginRefusal: a request that is not an upgrade is
// answered 403 with the origin_not_allowed reason when its Origin is not
// allowed, 426 otherwise, readable from any page (spec section "Opening
// handshake"): how a browser client learns why its upgrade failed.
func TestPlainRequestNamesOriginRefusal(t *testing.T) {
	f := newFixture(t, false, nil)
	httpURL := "http" + strings.TrimPrefix(f.url, "ws")
	for _, tc := range []struct {
		origin string
		status int
		body   string
	}{
		{"https://evil.example", http.StatusForbidden, protocol.CodeOriginNotAllowed.Reason() + "\n"},
		{"https://app.wsproof.test", http.StatusUpgradeRequired, "wsproof: WebSocket upgrade required\n"},
		{"", http.StatusUpgradeRequired, "wsproof: WebSocket upgrade required\n"},
	} {
		req, _ := http.NewRequest(http.MethodGet, httpURL, nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(body) != tc.body || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("Origin %q: %d %q, ACAO %q; want %d %q, *", tc.origin, resp.StatusCode, body,
				resp.Header.Get("Access-Control-Allow-Origin"), tc.status, tc.body)
		}
	}
}
