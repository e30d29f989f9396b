package client

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
	"github.com/wsproof/wsproof/server"
)

// TestRelayDowngrade is issue 11's defect 3: a relay that terminates the
// victim's TLS (with a certificate the victim trusts) and opens its own TLS
// 1.3 connection to the server must not get an authenticated socket out of
// the victim's handshake by moving it to an endpoint without channel binding
// (spec section "Man in the middle and relay"). The real server has two
// endpoints, package server's Server on each: /ws binds to the TLS channel,
// /ws/browser (NoChannelBinding, the browser profile) does not. The victim
// dials the bound endpoint wss://RELAY/ws with default settings: no
// configured identity, no setting about channel binding.
func TestRelayDowngrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		// the path the relay forwards the victim's /ws to
		upstream string
		// the misconfiguration of the variant: both endpoints share the
		// identity of /ws, which the spec forbids
		sameIdentity bool
		// what the victim reports: a failure it detects (code), or the
		// server's Close frame (closeCode)
		code      protocol.Code
		closeCode int
	}{
		// The browser endpoint's challenge names its own identity: the
		// victim, which expects the URL it dialed, refuses it (step 10).
		{name: "to-browser-endpoint", upstream: "/ws/browser", code: protocol.CodeAudienceMismatch},
		// A server that gives both endpoints one identity: the challenge
		// has the right iss but no binding on a TLS connection, which the
		// victim refuses by default (step 12).
		{name: "to-browser-endpoint-same-identity", upstream: "/ws/browser", sameIdentity: true,
			code: protocol.CodeChannelBindingRequired},
		// The control: forwarded to the bound endpoint itself, the
		// victim's binding names the relay's TLS connection, and the
		// server refuses it (channel_binding_mismatch, sent as 4003).
		{name: "to-bound-endpoint", upstream: "/ws", closeCode: 4003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, keys.ES256)
			relayLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			// The server's name is the relay's address: the victim dials
			// it, and the relay stands where the server's name leads.
			identity := "wss://" + relayLn.Addr().String() + "/ws"
			browserIdentity := identity + "/browser"
			if tc.sameIdentity {
				browserIdentity = identity
			}
			var sessions atomic.Int32
			handler := server.HandlerFunc(func(ctx context.Context, c *server.Conn) { sessions.Add(1) })
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			bound, err := server.New(&server.Config{Identity: identity, Keys: f.serverKeys, Registry: f.registry,
				Handler: handler, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			browser, err := server.New(&server.Config{Identity: browserIdentity, Keys: f.serverKeys, Registry: f.registry,
				Handler: handler, Logger: logger, NoChannelBinding: true})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.Handle("/ws", bound)
			mux.Handle("/ws/browser", browser)
			hs := httptest.NewUnstartedServer(mux)
			hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
			hs.StartTLS()
			defer func() {
				hs.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				bound.Shutdown(ctx)
				browser.Shutdown(ctx)
			}()
			serverRoots := x509.NewCertPool()
			serverRoots.AddCert(hs.Certificate())

			relayCert, victimRoots := relayCertificate(t)
			r := &relay{t: t, ln: relayLn, cert: relayCert, upstreamAddr: hs.Listener.Addr().String(),
				upstreamRoots: serverRoots, path: tc.upstream}
			r.start()
			defer r.stop()

			// Default settings: the identity comes from the URL, and a TLS
			// connection requires channel binding.
			cfg := f.config()
			cfg.ServerIdentity = ""
			cfg.TLSConfig = &tls.Config{RootCAs: victimRoots}
			_, err = Dial(ctxT(t), identity, cfg)
			if err == nil {
				t.Fatal("the victim authenticated through the relay")
			}
			if tc.code != "" {
				if code := protocol.CodeOf(err); code != tc.code {
					t.Fatalf("Dial: %v (code %q), want %s", err, code, tc.code)
				}
			} else {
				var ce *CloseError
				if !errors.As(err, &ce) || ce.Code != tc.closeCode {
					t.Fatalf("Dial: %v, want the server's close %d", err, tc.closeCode)
				}
			}
			if tc.code == protocol.CodeAudienceMismatch {
				var ie *protocol.IdentityError
				if !errors.As(err, &ie) || ie.Got != browserIdentity || ie.Want != identity {
					t.Errorf("Dial: %v, want an IdentityError naming %s and %s", err, browserIdentity, identity)
				}
			}
			r.stop()
			if n := sessions.Load(); n != 0 || bound.Sessions() != 0 || browser.Sessions() != 0 {
				t.Fatalf("the relay obtained %d authenticated sessions", n)
			}
			if !r.forwarded.Load() {
				t.Fatal("the relay forwarded nothing: the test proves nothing")
			}
		})
	}
}

// relayCertificate makes a self-signed certificate for 127.0.0.1 that the
// victim trusts: the attacker holds a certificate the client accepts for the
// server's name (spec section "Residual risks").
func relayCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// relay terminates the victim's TLS, rewrites the path of the upgrade
// request to path, and splices the rest both ways over its own TLS 1.3
// connection to the server.
type relay struct {
	t             *testing.T
	ln            net.Listener
	cert          tls.Certificate
	upstreamAddr  string
	upstreamRoots *x509.CertPool
	path          string
	forwarded     atomic.Bool

	once  sync.Once
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func (r *relay) start() {
	r.wg.Go(func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			r.track(c)
			r.wg.Go(func() { r.serve(c) })
		}
	})
}

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = append(r.conns, c)
}

func (r *relay) stop() {
	r.once.Do(func() {
		r.ln.Close()
		// Let the connections finish on their own first: the server and
		// the victim close them.
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
			return
		case <-time.After(5 * time.Second):
		}
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		<-done
	})
}

func (r *relay) serve(raw net.Conn) {
	defer raw.Close()
	victim := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{r.cert}, MinVersion: tls.VersionTLS13})
	victim.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(victim)
	var head strings.Builder
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if first {
			// "GET /ws HTTP/1.1": the relay's only change.
			parts := strings.SplitN(line, " ", 3)
			if len(parts) != 3 {
				return
			}
			line = parts[0] + " " + r.path + " " + parts[2]
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: r.upstreamRoots, MinVersion: tls.VersionTLS13}}
	upConn, err := d.DialContext(context.Background(), "tcp", r.upstreamAddr)
	if err != nil {
		r.t.Error(err)
		return
	}
	r.track(upConn)
	defer upConn.Close()
	upConn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(upConn, head.String()); err != nil {
		return
	}
	r.forwarded.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(upConn, br)
		upConn.(*tls.Conn).CloseWrite()
	})
	io.Copy(victim, upConn)
	victim.CloseWrite()
	wg.Wait()
}
