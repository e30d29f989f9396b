package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func echoOnce(t *testing.T, c *Conn, msg string) {
	t.Helper()
	ctx := ctxT(t)
	if err := c.Write(ctx, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func TestDialEveryAlgorithm(t *testing.T) {
	for _, alg := range keys.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t, alg)
			ts := newServer(t, f, serverOptions{})
			c, err := Dial(ctxT(t), ts.url, f.config())
			if err != nil {
				t.Fatal(err)
			}
			sc := ts.waitAccepted()
			s := c.Session()
			if s.Subject != "device:1" || len(s.Groups) != 1 || s.Groups[0] != "devices" || s.ChannelBound ||
				s.SocketID != sc.sess.SocketID || s.Token != sc.sess.Token || s.ServerKeyID != "server-1" {
				t.Errorf("session %+v does not match the server's %+v", s, sc.sess)
			}
			echoOnce(t, c, "hello "+string(alg))
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if code := ts.waitClose(); code != 1000 {
				t.Errorf("close code %d, want 1000", code)
			}
		})
	}
}

// TestChannelBinding: a TLS 1.3 connection binds the session to the TLS
// channel; a TLS connection that cannot (TLS 1.2) is refused unless the
// client is configured for a deployment without binding; a connection
// without TLS has no binding to require (spec section "When channel binding
// is required").
func TestChannelBinding(t *testing.T) {
	f := newFixture(t, keys.ES256)
	t.Run("wss", func(t *testing.T) {
		ts := newServer(t, f, serverOptions{tls: true})
		cfg := f.config()
		cfg.TLSConfig = ts.tlsConfig()
		c, err := Dial(ctxT(t), ts.url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := ts.waitAccepted()
		if !c.Session().ChannelBound || !sc.sess.ChannelBound {
			t.Errorf("channel bound: client %v, server %v", c.Session().ChannelBound, sc.sess.ChannelBound)
		}
		echoOnce(t, c, "bound")
	})
	t.Run("ws-unbound", func(t *testing.T) {
		ts := newServer(t, f, serverOptions{})
		c, err := Dial(ctxT(t), ts.url, f.config())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Session().ChannelBound {
			t.Error("channel bound without TLS")
		}
	})
	t.Run("tls12-required", func(t *testing.T) {
		ts := newServer(t, f, serverOptions{tls: true, tls12: true})
		cfg := f.config()
		cfg.TLSConfig = ts.tlsConfig()
		_, retry, err := dialOnce(t, ts.url, cfg)
		if code := protocol.CodeOf(err); code != protocol.CodeChannelBindingRequired || retry {
			t.Fatalf("Dial: %v (code %q, retry %v), want channel_binding_required, terminal", err, code, retry)
		}
		if code := ts.waitClose(); code != 4003 {
			t.Errorf("close code %d, want 4003", code)
		}
	})
	t.Run("tls12-allow-unbound", func(t *testing.T) {
		ts := newServer(t, f, serverOptions{tls: true, tls12: true})
		cfg := f.config()
		cfg.TLSConfig = ts.tlsConfig()
		cfg.InsecureAllowUnbound = true
		c, err := Dial(ctxT(t), ts.url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Session().ChannelBound {
			t.Error("channel bound over TLS 1.2")
		}
		echoOnce(t, c, "unbound")
	})
}

// TestTLSResumption: a second Dial with the same tls.Config resumes the
// first one's TLS 1.3 session, and its session is bound to its own
// connection: the exporter value differs, and both sides agree on it (spec
// section "The exporter value"). Another tls.Config, trusting the same
// roots, does not resume: caches are never shared between Configs.
func TestTLSResumption(t *testing.T) {
	f := newFixture(t, keys.ES256)
	ts := newServer(t, f, serverOptions{tls: true})
	cfg := f.config()
	cfg.TLSConfig = ts.tlsConfig()
	dial := func(cfg *Config) *serverConn {
		t.Helper()
		c, err := Dial(ctxT(t), ts.url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sc := ts.waitAccepted()
		if !c.Session().ChannelBound || !sc.sess.ChannelBound {
			t.Errorf("channel bound: client %v, server %v", c.Session().ChannelBound, sc.sess.ChannelBound)
		}
		// Both ends of the (possibly resumed) connection have one exporter
		// value, of their own connection.
		mine, err := exporterOf(c.ws.UnderlyingConn().(*tls.Conn))
		if err != nil || len(mine) != protocol.ExporterSize || !bytes.Equal(mine, sc.exporter) {
			t.Errorf("client exporter %x (%v), server's %x", mine, err, sc.exporter)
		}
		echoOnce(t, c, "after the handshake")
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		return sc
	}
	first := dial(cfg)
	second := dial(cfg)
	if first.resumed || !second.resumed {
		t.Fatalf("resumed: first %v, second %v; want false, true", first.resumed, second.resumed)
	}
	if bytes.Equal(first.exporter, second.exporter) {
		t.Error("the resumed connection has the first connection's exporter value")
	}
	other := *cfg
	other.TLSConfig = ts.tlsConfig()
	if dial(&other).resumed {
		t.Error("a session was resumed under another tls.Config")
	}
	if cfg.TLSConfig.ClientSessionCache != nil {
		t.Error("Dial set the application's tls.Config's ClientSessionCache")
	}
	off := *cfg
	off.TLSConfig = ts.tlsConfig()
	off.TLSConfig.SessionTicketsDisabled = true
	dial(&off)
	if dial(&off).resumed {
		t.Error("a session was resumed with SessionTicketsDisabled")
	}
	if resumingTLS(nil).ClientSessionCache == nil {
		t.Error("no session cache for a nil TLSConfig")
	}
}

// dialOnce dials as Keep does, and returns Keep's decision on a failure.
func dialOnce(t *testing.T, url string, cfg *Config) (*Conn, bool, error) {
	t.Helper()
	s, err := newSetup(cfg)
	if err != nil {
		return nil, false, err
	}
	return s.dial(ctxT(t), url)
}

// TestRefreshWhileWriting runs several refreshes while the client writes
// numbered messages as fast as it can; every echo must come back, in order.
func TestRefreshWhileWriting(t *testing.T) {
	const refreshes = 5
	f := newFixture(t, keys.EdDSA)
	f.client.delay = 20 * time.Millisecond // hold each refresh open while messages flow
	ts := newServer(t, f, serverOptions{})
	ctx := ctxT(t)
	c, err := Dial(ctx, ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := ts.waitAccepted()

	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for range refreshes {
			time.Sleep(10 * time.Millisecond)
			if err := sc.refresh(); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-sc.refreshed:
			case err := <-sc.refreshError:
				t.Error(err)
				return
			case <-ctx.Done():
				t.Error("refresh did not complete")
				return
			}
		}
	}()

	var wrote uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		msg := make([]byte, 64)
		for {
			select {
			case <-refreshed:
				binary.BigEndian.PutUint64(msg, ^uint64(0)) // the last message
				if err := c.Write(ctx, msg); err != nil {
					t.Error(err)
				}
				return
			default:
			}
			binary.BigEndian.PutUint64(msg, wrote)
			if err := c.Write(ctx, msg); err != nil {
				t.Error(err)
				return
			}
			wrote++
		}
	})

	var got uint64
	for {
		p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		n := binary.BigEndian.Uint64(p)
		if n == ^uint64(0) {
			break
		}
		if n != got {
			t.Fatalf("message %d arrived as number %d", n, got)
		}
		got++
	}
	wg.Wait()
	if got != wrote {
		t.Fatalf("wrote %d messages, %d came back", wrote, got)
	}
	if r := sc.received.Load(); r != int64(wrote)+1 {
		t.Errorf("server received %d messages, want %d", r, wrote+1)
	}
	sc.mu.Lock()
	during, token := sc.duringFresh, sc.sess.Token
	sc.mu.Unlock()
	if during == 0 {
		t.Error("no message arrived while a refresh was outstanding")
	}
	if c.Session().Token != token {
		t.Error("client session is not the server's latest")
	}
	t.Logf("%d messages each way, %d during refreshes", got, during)
}

func TestImpostorServer(t *testing.T) {
	f := newFixture(t, keys.ES256)
	other := newFixture(t, keys.ES256)
	renamed := *other.serverKeys
	renamed.Signing = []keys.SigningKey{other.serverKeys.Signing[0]}
	renamed.Signing[0].KeyID = "server-2"
	for _, tc := range []struct {
		name string
		keys *keys.ServerKeys
		want protocol.Code
	}{
		{"same-kid", other.serverKeys, protocol.CodeBadSignature},
		{"other-kid", &renamed, protocol.CodeUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, f, serverOptions{keys: tc.keys})
			_, retry, err := dialOnce(t, ts.url, f.config())
			if code := protocol.CodeOf(err); code != tc.want {
				t.Fatalf("Dial: %v (code %q), want %s", err, code, tc.want)
			}
			var ce *CloseError
			if errors.As(err, &ce) {
				t.Errorf("a failure the client detected is a CloseError: %v", err)
			}
			if retry {
				t.Error("authentication failure is retryable")
			}
			if code := ts.waitClose(); code != 4003 {
				t.Errorf("close code %d, want 4003", code)
			}
		})
	}
}

func TestUnregisteredKey(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	cfg := f.config()
	cfg.KeyID = "client-unknown"
	_, err := Dial(ctxT(t), ts.url, cfg)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 || ce.Spec != "" || ce.Retryable() {
		t.Fatalf("Dial: %#v, want a terminal CloseError 4003", err)
	}
	if protocol.CodeOf(err) != "" {
		t.Error("the server's close is reported as a client-side code")
	}
	if !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("error text %q", err)
	}
}

func TestNoSubprotocol(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{noSubprotocol: true})
	_, retry, err := dialOnce(t, ts.url, f.config())
	if !errors.Is(err, errNoSubprotocol) {
		t.Fatalf("Dial: %v, want %v", err, errNoSubprotocol)
	}
	if retry {
		t.Error("a server without the subprotocol is retryable")
	}
}

func TestUpgradeRefused(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	for status, want := range map[int]protocol.Code{
		429: protocol.CodeRateLimited,
		503: protocol.CodeRateLimited,
		403: protocol.CodeOriginNotAllowed,
		400: protocol.CodeSubprotocolRequired,
		404: "",
	} {
		ts := newServer(t, f, serverOptions{refuse: func(int) int { return status }})
		_, retry, err := dialOnce(t, ts.url, f.config())
		if err == nil || protocol.CodeOf(err) != want {
			t.Errorf("HTTP %d: %v, want code %q", status, err, want)
		}
		if strings.Contains(err.Error(), "script") {
			t.Errorf("HTTP %d: error %q echoes the response body", status, err)
		}
		if retry != (status == 429 || status == 503) {
			t.Errorf("HTTP %d: retryable = %v", status, retry)
		}
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.Status != status || !ue.Wsproof {
			t.Errorf("HTTP %d: %v, want an UpgradeError from a wsproof server", status, err)
		}
	}
}

// TestUpgradeRefusedNotWsproof: ws:// to a TLS port is answered with HTTP
// 400 by Go's HTTP server, and a proxy may answer 403 with its own page.
// Neither is a wsproof refusal: no code (it used to be reported as
// subprotocol_required, which sent the user looking in the wrong place),
// and the error says the server is not a wsproof server.
func TestUpgradeRefusedNotWsproof(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Forbidden by policy", http.StatusForbidden)
	}))
	defer proxy.Close()
	for _, tc := range []struct {
		url    string
		status int
	}{
		{"ws://" + tlsSrv.Listener.Addr().String() + "/ws", 400},
		{"ws://" + proxy.Listener.Addr().String() + "/ws", 403},
	} {
		_, retry, err := dialOnce(t, tc.url, f.config())
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.Status != tc.status || ue.Wsproof {
			t.Errorf("%s: %v, want an UpgradeError %d not from a wsproof server", tc.url, err, tc.status)
		}
		if code := protocol.CodeOf(err); code != "" || retry {
			t.Errorf("%s: code %q, retry %v; want no code, terminal", tc.url, code, retry)
		}
		if !strings.Contains(err.Error(), "not by a wsproof server") {
			t.Errorf("%s: error %q does not say the server is not a wsproof server", tc.url, err)
		}
	}
}

func TestServerClose(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	for _, tc := range []struct {
		code      int
		spec      protocol.Code
		retryable bool
	}{
		{4011, protocol.CodeSessionRevoked, false},
		{4010, protocol.CodeTokenExpired, true},
		{4003, "", false},
		{1001, "", true},
		{1000, "", false},
		{4999, "", false},
	} {
		ts := newServer(t, f, serverOptions{afterAccept: func(_ int, sc *serverConn) {
			sc.closeWith(tc.code, "peer text")
		}})
		c, err := Dial(ctxT(t), ts.url, f.config())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(ctxT(t))
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Spec != tc.spec || ce.Retryable() != tc.retryable ||
			ce.Reason != "peer text" {
			t.Errorf("close %d: Read returned %#v", tc.code, err)
			continue
		}
		if strings.Contains(err.Error(), "peer text") {
			t.Errorf("close %d: error %q contains the peer's reason", tc.code, err)
		}
		if err := c.Write(ctxT(t), []byte("x")); !errors.As(err, &ce) {
			t.Errorf("close %d: Write after the server closed: %v", tc.code, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("close %d: Close after the server closed: %v", tc.code, err)
		}
		if code := ts.waitClose(); code != tc.code {
			t.Errorf("client answered close %d with %d", tc.code, code)
		}
	}
}

func TestCloseErrorTable(t *testing.T) {
	byClose := map[int][]protocol.Code{}
	for _, code := range protocol.Codes() {
		if cc := code.CloseCode(); cc != 0 {
			byClose[cc] = append(byClose[cc], code)
		}
	}
	for cc, codes := range byClose {
		e := closeErrorOf(cc, "")
		if len(codes) == 1 {
			if e.Spec != codes[0] || e.Retryable() != codes[0].Retryable() {
				t.Errorf("%d: Spec %q retryable %v, want %q %v", cc, e.Spec, e.Retryable(), codes[0], codes[0].Retryable())
			}
			continue
		}
		if e.Spec != "" || e.Retryable() || !strings.Contains(e.Error(), "authentication failed") {
			t.Errorf("%d shared by %v: Spec %q, retryable %v, %q", cc, codes, e.Spec, e.Retryable(), e)
		}
	}
}

func TestProtocolFailureAfterAccept(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	for _, tc := range []struct {
		name  string
		send  func(sc *serverConn)
		code  protocol.Code
		max   int64
		close int
	}{
		{"accept-in-open", func(sc *serverConn) {
			sc.write(1, []byte(`{"token":"x","sub":"y","groups":[],"exp":99999999999}`))
		}, protocol.CodeUnexpectedMessage, 0, 4001},
		{"garbage-rechallenge", func(sc *serverConn) {
			sc.write(1, []byte("not.a.jws"))
		}, protocol.CodeMalformed, 0, 4000},
		{"rechallenge-other-socket", func(sc *serverConn) {
			_, ch, _ := sc.ts.srv.Load().Start(rand.Reader, time.Now(), nil)
			sc.write(1, ch)
		}, protocol.CodeSocketMismatch, 0, 4003},
		{"too-large-text", func(sc *serverConn) {
			sc.write(1, bytes.Repeat([]byte("a"), protocol.MaxHandshakeMessage+1))
		}, protocol.CodeTooLarge, 0, 4002},
		{"too-large-binary", func(sc *serverConn) {
			sc.write(2, make([]byte, 1000))
			sc.write(2, make([]byte, 1001))
		}, protocol.CodeTooLarge, 1000, 4002},
		{"accept-without-refresh-after-refresh", func(sc *serverConn) {
			sc.refresh()
			<-sc.refreshed
			sc.write(1, []byte(`{"token":"x","sub":"y","groups":[],"exp":99999999999}`))
		}, protocol.CodeUnexpectedMessage, 0, 4001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, f, serverOptions{afterAccept: func(_ int, sc *serverConn) {
				go tc.send(sc)
			}})
			cfg := f.config()
			cfg.MaxMessageSize = tc.max
			c, err := Dial(ctxT(t), ts.url, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for {
				_, err = c.Read(ctxT(t))
				if err != nil {
					break
				}
			}
			if code := protocol.CodeOf(err); code != tc.code {
				t.Fatalf("Read: %v (code %q), want %s", err, code, tc.code)
			}
			if code := ts.waitClose(); code != tc.close {
				t.Errorf("close code %d, want %d", code, tc.close)
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{silent: true})
	cfg := f.config()
	cfg.HandshakeTimeout = 200 * time.Millisecond
	start := time.Now()
	_, retry, err := dialOnce(t, ts.url, cfg)
	if code := protocol.CodeOf(err); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("Dial: %v (code %q), want handshake_timeout", err, code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v", d)
	}
	if !retry {
		t.Error("handshake_timeout is not retryable")
	}
	if code := ts.waitClose(); code != 4008 {
		t.Errorf("close code %d, want 4008", code)
	}
}

func TestDialCancel(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{silent: true})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, ts.url, f.config())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v", d)
	}
	ts.waitClose()
}

func TestReadWriteContext(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read: %v", err)
	}
	if err := c.Write(ctx, []byte("late")); !errors.Is(err, context.DeadlineExceeded) {
		// The queue has room, so Write may also succeed; it must not fail
		// otherwise.
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if p, err := c.Read(ctxT(t)); err != nil || string(p) != "late" {
			t.Fatalf("Read: %q %v", p, err)
		}
	}
	echoOnce(t, c, "still open") // a cancelled Read does not harm the Conn
}

func TestCloseFlushes(t *testing.T) {
	const n = 200
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	sc := ts.waitAccepted()
	for i := range n {
		if err := c.Write(ctxT(t), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if code := ts.waitClose(); code != 1000 {
		t.Errorf("close code %d, want 1000", code)
	}
	if got := sc.received.Load(); got != n {
		t.Errorf("server received %d of %d messages", got, n)
	}
	if err := c.Write(ctxT(t), []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	for {
		_, err := c.Read(ctxT(t))
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			break
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestIdle checks that the client's own Pings keep a quiet socket open past
// its keepalive timeout (TestIdleServer checks the opposite).
func TestIdle(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	cfg := f.config()
	// Four keepalive timeouts (two intervals each) of silence. The interval
	// leaves room for a loaded machine: at 20 ms, a Pong delayed 40 ms by
	// the scheduler under -race with other tests running closed the socket.
	cfg.PingInterval = 250 * time.Millisecond
	c, err := Dial(ctxT(t), ts.url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(2 * time.Second) // gorilla's server answers Pings while it reads
	echoOnce(t, c, "after a quiet while")
}

func TestConfigErrors(t *testing.T) {
	f := newFixture(t, keys.RS256)
	for name, mutate := range map[string]func(*Config){
		"no-key-id":       func(c *Config) { c.KeyID = "" },
		"no-signer":       func(c *Config) { c.Signer = nil },
		"no-server-keys":  func(c *Config) { c.ServerKeys = nil },
		"rsa-without-alg": func(c *Config) { c.Algorithm = "" },
		"wrong-alg":       func(c *Config) { c.Algorithm = keys.ES256 },
		"unknown-alg":     func(c *Config) { c.Algorithm = "HS256" },
		"cookie":          func(c *Config) { c.Header = http.Header{"Cookie": {"session=1"}} },
		"authorization":   func(c *Config) { c.Header = http.Header{"authorization": {"Bearer x"}} },
		"subprotocol":     func(c *Config) { c.Header = http.Header{"Sec-WebSocket-Protocol": {"other"}} },
		"negative-size":   func(c *Config) { c.MaxMessageSize = -1 },
		"negative-time":   func(c *Config) { c.HandshakeTimeout = -1 },
		"negative-skew":   func(c *Config) { c.ClockSkew = -time.Second },
		"negative-ping":   func(c *Config) { c.PingInterval = -time.Second },
		"huge-size":       func(c *Config) { c.MaxMessageSize = 1<<30 + 1 },
	} {
		cfg := f.config()
		mutate(cfg)
		if _, retry, err := dialOnce(t, "ws://127.0.0.1:1/", cfg); err == nil || retry {
			t.Errorf("%s: Dial: %v", name, err)
		}
	}
	if _, err := Dial(ctxT(t), "ws://127.0.0.1:1/", nil); err == nil {
		t.Error("nil Config accepted")
	}
}

// TestHandshakeStateMachine drives the client through the AWAIT_CHALLENGE
// and AWAIT_ACCEPT rows of spec section "Client state machine" with a
// scripted server.
func TestHandshakeStateMachine(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	const text, bin = 1, 2
	accept := func(sc *serverConn, exp int64) {
		sc.challenge()
		sc.write(text, []byte(`{"token":"t","sub":"s","groups":[],"exp":`+strconv.FormatInt(exp, 10)+`,"max_size":65536}`))
	}
	for _, tc := range []struct {
		name   string
		script func(sc *serverConn)
		code   protocol.Code
	}{
		{"binary-before-challenge", func(sc *serverConn) { sc.write(bin, []byte("x")) }, protocol.CodeUnexpectedMessage},
		{"accept-before-challenge", func(sc *serverConn) { sc.write(text, []byte(`{}`)) }, protocol.CodeUnexpectedMessage},
		{"large-challenge", func(sc *serverConn) {
			sc.write(text, bytes.Repeat([]byte("e"), protocol.MaxHandshakeMessage+1))
		}, protocol.CodeTooLarge},
		{"large-binary-before-challenge", func(sc *serverConn) {
			sc.write(bin, make([]byte, 1<<20))
		}, protocol.CodeTooLarge},
		{"malformed-challenge", func(sc *serverConn) { sc.write(text, []byte("a.b.c")) }, protocol.CodeMalformed},
		{"binary-before-accept", func(sc *serverConn) {
			sc.challenge()
			sc.write(bin, []byte("x"))
		}, protocol.CodeUnexpectedMessage},
		{"challenge-instead-of-accept", func(sc *serverConn) {
			sc.challenge()
			_, ch, _ := sc.ts.srv.Load().Start(rand.Reader, time.Now(), nil)
			sc.write(text, ch)
		}, protocol.CodeUnexpectedMessage},
		{"large-accept", func(sc *serverConn) {
			sc.challenge()
			sc.write(text, append([]byte(`{"`), bytes.Repeat([]byte("a"), protocol.MaxAcceptMessage)...))
		}, protocol.CodeTooLarge},
		{"malformed-accept", func(sc *serverConn) {
			sc.challenge()
			sc.write(text, []byte(`{"token":"t"}`))
		}, protocol.CodeMalformed},
		{"expired-accept", func(sc *serverConn) { accept(sc, time.Now().Add(-time.Hour).Unix()) }, protocol.CodeTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, f, serverOptions{script: tc.script})
			_, err := Dial(ctxT(t), ts.url, f.config())
			code := protocol.CodeOf(err)
			if code != tc.code {
				t.Fatalf("Dial: %v (code %q), want %s", err, code, tc.code)
			}
			if got := ts.waitClose(); got != code.CloseCode() {
				t.Errorf("close code %d, want %d", got, code.CloseCode())
			}
		})
	}
}

// TestExtensionRefused: a server that accepts permessage-deflate, which the
// client never offers, fails the connection (spec section "Opening
// handshake").
func TestExtensionRefused(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		h := w.Header()
		h.Set("Upgrade", "websocket")
		h.Set("Connection", "Upgrade")
		h.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
		h.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
		h.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
		w.WriteHeader(http.StatusSwitchingProtocols)
	}))
	defer hs.Close()
	f := newFixture(t, keys.EdDSA)
	_, err := Dial(ctxT(t), "ws"+strings.TrimPrefix(hs.URL, "http"), f.config())
	if !errors.Is(err, errExtension) {
		t.Fatalf("Dial: %v, want %v", err, errExtension)
	}
}

// TestCustomDialer: Config.NetDialContext opens the TCP connection, here from
// a chosen loopback source address.
func TestCustomDialer(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	var used atomic.Bool
	cfg := f.config()
	cfg.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		used.Store(true)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		return d.DialContext(ctx, network, addr)
	}
	c, err := Dial(ctxT(t), ts.url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !used.Load() {
		t.Fatal("the custom dialer was not used")
	}
	if got := c.ws.UnderlyingConn().LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Fatalf("source address %s, want 127.0.0.2", got)
	}
	echoOnce(t, c, "hello")
}
