package conformance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The deliberately broken peers: each suite must fail them, which shows
// that a case judges what the peer does rather than passing by default.

const brokenIdentity = "wss://wsproof.test/ws"

// brokenFixture is a server's keys and a registry with an accepted key in
// the required group and a denied key outside it.
type brokenFixture struct {
	serverKeys       *keys.ServerKeys
	registry         *keys.Set
	accepted, denied Key
}

func newBrokenFixture(t *testing.T) *brokenFixture {
	t.Helper()
	gen := func(alg keys.Algorithm, kid string) Key {
		s, err := keys.Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return Key{ID: kid, Alg: alg, Signer: s}
	}
	f := &brokenFixture{accepted: gen(keys.ES256, "probe-accepted"), denied: gen(keys.ES256, "probe-denied")}
	srv := gen(keys.ES256, "server-1")
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	f.serverKeys = &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: srv.ID, Algorithm: srv.Alg, Signer: srv.Signer}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
	}
	reg, err := keys.NewSet([]*keys.Entry{
		{KeyID: f.accepted.ID, Key: f.accepted.Signer.Public(), Algorithm: f.accepted.Alg, Subject: "probe:accepted", Groups: []string{"devices"}},
		{KeyID: f.denied.ID, Key: f.denied.Signer.Public(), Algorithm: f.denied.Alg, Subject: "probe:denied", Groups: []string{"visitors"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.registry = reg
	return f
}

// brokenServer accepts any response and has no session timers: it
// re-challenges a second after the accept, refuses whatever answers with
// 4003 and reason, however late it comes, and never ends a session by
// itself.
func brokenServer(t *testing.T, f *brokenFixture, reason string) string {
	ps, err := protocol.NewServer(&protocol.ServerConfig{Identity: brokenIdentity, Keys: f.serverKeys, Registry: f.registry})
	if err != nil {
		t.Fatal(err)
	}
	sk := f.serverKeys.Signing[0]
	srvKey := &Key{ID: sk.KeyID, Alg: sk.Algorithm, Signer: sk.Signer}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}, CheckOrigin: func(*http.Request) bool { return true }}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_, challenge, err := ps.Start(rand.Reader, time.Now(), nil)
		if err != nil {
			return
		}
		ws.WriteMessage(websocket.TextMessage, challenge)
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
		exp := time.Now().Unix() + 3
		ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"token":"t","sub":"anyone","groups":[],"exp":%d,"max_size":65536}`, exp))
		// A well-formed re-challenge that expires with the token, but no
		// timer behind it.
		time.Sleep(time.Second)
		first, err := parseChallenge(challenge)
		if err != nil {
			return
		}
		now := time.Now().Unix()
		c := &challengeClaims{Iss: first.Iss, Sid: first.Sid, Nonce: randB64(32), Iat: now, Exp: exp, Algs: first.Algs, CB: first.CB}
		rc, err := srvKey.sign(rand.Reader, header(string(srvKey.Alg), srvKey.ID, protocol.TypChallenge).String(), claimsObj(c).String())
		if err != nil {
			return
		}
		ws.WriteMessage(websocket.TextMessage, []byte(rc))
		ws.SetReadDeadline(time.Now().Add(8 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4003, reason), time.Now().Add(time.Second))
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

func (f *brokenFixture) target(url string) *ServerTarget {
	denied, expiring := f.denied, f.accepted
	return &ServerTarget{URL: url, Identity: brokenIdentity, ServerKeys: f.serverKeys.Public(), Key: f.accepted,
		Fixtures:         Fixtures{Denied: &denied, Expiring: &expiring},
		HandshakeTimeout: 2 * time.Second, RefreshWait: 4 * time.Second, PingWait: 1500 * time.Millisecond}
}

// TestServerSuiteCatchesBrokenServer: the negative cases fail against the
// broken server (the final-token cases: it re-challenges every token and
// refuses the answer); the control passes; the keepalive cases, with no
// Ping to time, are skipped with their reason.
func TestServerSuiteCatchesBrokenServer(t *testing.T) {
	t.Parallel()
	f := newBrokenFixture(t)
	ids := []string{"handshake-valid", "response-alg-none", "response-unknown-key", "response-missing-group", "origin-hostile",
		"response-wrong-nonce", "silent-socket", "open-text-message", "refresh-late-response", "refresh-unanswered", "keepalive-no-pong",
		"keepalive-messages", "final-token", "final-token-message"}
	rep, err := RunServer(context.Background(), f.target(brokenServer(t, f, "authentication failed")), &Options{Select: selectedBy(ids...), Parallel: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) != len(ids) {
		t.Errorf("%d cases run, want %d", len(rep.Cases), len(ids))
	}
	for _, c := range rep.Cases {
		want := Fail
		switch c.ID {
		case "handshake-valid":
			want = Pass
		case "keepalive-no-pong", "keepalive-messages":
			want = Skip
			if !strings.Contains(c.Note, "no Ping within") {
				t.Errorf("%s is skipped without its reason: %q", c.ID, c.Note)
			}
		case "refresh-late-response":
			if !strings.Contains(c.Got, `close 4003 "authentication failed"`) {
				t.Errorf("refresh-late-response got %s, want the broken server's 4003", c.Got)
			}
		}
		if c.Result != want {
			t.Errorf("%s: %s (got %s; %s), want %s", c.ID, c.Result, c.Got, c.Note, want)
		}
	}
}

// TestServerSuiteExactCodes: a server that refuses with the close code and
// reason of the right failure passes a 4003 case only without diagnostic
// mode, and the result then says that the code was not checked; in
// diagnostic mode a reason that names another code fails the case, and so
// does a plain reason.
func TestServerSuiteExactCodes(t *testing.T) {
	t.Parallel()
	f := newBrokenFixture(t)
	for _, tc := range []struct {
		reason string
		diag   bool
		want   string
	}{
		{"authentication failed", false, Pass},
		{"authentication failed", true, Fail},
		{"authentication failed [bad_signature]", true, Fail},
		{"authentication failed [key_mismatch]", true, Pass},
	} {
		target := f.target(brokenServer(t, f, tc.reason))
		target.Diagnostic = tc.diag
		// response-refresh-other-key: the broken server refuses the
		// re-challenge's answer, whatever it is, with 4003 and the reason.
		rep, err := RunServer(context.Background(), target, &Options{Select: selectedBy("response-refresh-other-key")})
		if err != nil {
			t.Fatal(err)
		}
		c := rep.Cases[0]
		if c.Result != tc.want {
			t.Errorf("reason %q, diagnostic %v: %s (%s), want %s", tc.reason, tc.diag, c.Result, c.Got, tc.want)
		}
		if c.Result == Pass && !tc.diag && c.CodeNotChecked == "" {
			t.Errorf("reason %q: passed without saying that the exact code was not checked", tc.reason)
		}
		if tc.diag && c.CodeNotChecked != "" {
			t.Errorf("reason %q, diagnostic: says the code was not checked: %s", tc.reason, c.CodeNotChecked)
		}
	}
}

// TestClientSuiteCatchesBrokenClient points the client suite at a naive
// client that answers every text message that looks like a challenge and
// never closes: the control must pass and every negative case must fail.
// Over TLS the naive client, which never binds, fails the control too.
func TestClientSuiteCatchesBrokenClient(t *testing.T) {
	t.Parallel()
	ids := []string{"challenge-valid", "challenge-impostor-key", "challenge-alg-none", "subprotocol-wrong", "rechallenge-other-socket",
		"accept-without-max-size", "rechallenge-outlives-token", "refresh-accept-expired"}
	rep := runNaiveClient(t, nil, ids)
	for _, c := range rep.Cases {
		want := Fail
		if c.ID == "challenge-valid" {
			want = Pass
		}
		if c.Result != want {
			t.Errorf("%s: %s (got %s; %s), want %s", c.ID, c.Result, c.Got, c.Note, want)
		}
	}
	if len(rep.Cases) != len(ids) {
		t.Errorf("%d cases in the report, want %d", len(rep.Cases), len(ids))
	}
	serverTLS, caPEM, err := ThrowawayTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsIDs := []string{"challenge-valid", "challenge-unbound-on-tls", "challenge-unbound-on-tls12"}
	rep = runNaiveClient(t, &naiveTLS{server: serverTLS, client: &tls.Config{RootCAs: roots}}, tlsIDs)
	for _, c := range rep.Cases {
		if c.Result != Fail {
			t.Errorf("over TLS, %s: %s (got %s; %s), want %s", c.ID, c.Result, c.Got, c.Note, Fail)
		}
	}
	if len(rep.Cases) != len(tlsIDs) {
		t.Errorf("over TLS, %d cases in the report, want %d", len(rep.Cases), len(tlsIDs))
	}
}

// naiveTLS is the suite's TLS configuration and the naive client's.
type naiveTLS struct{ server, client *tls.Config }

// runNaiveClient runs the client suite's cases ids against the naive
// client, over TLS when tc is set.
func runNaiveClient(t *testing.T, tc *naiveTLS, ids []string) *Report {
	t.Helper()
	signer, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	naive := &Key{ID: "naive", Alg: keys.ES256, Signer: signer}
	target := &ClientTarget{CaseTimeout: 2 * time.Second}
	var clientTLS *tls.Config
	if tc != nil {
		target.TLSConfig, clientTLS = tc.server, tc.client
	}
	target.Connect = func(ctx context.Context, rawURL string, _ *keys.PublicSet, _ string) error {
		u, err := url.Parse(rawURL)
		if err != nil {
			return err
		}
		w, _, err := dialWire(ctx, u, clientTLS, dialOptions{})
		if err != nil {
			return err
		}
		defer w.Close()
		for {
			ev := w.next(time.Now().Add(10 * time.Second))
			if ev.kind != evMessage {
				return nil
			}
			if ev.op != opText || ev.data[0] == '{' {
				continue
			}
			// Answer anything with a JWS payload, verified or not.
			_, pl, _, _ := splitJWS(string(ev.data))
			raw, _ := b64u.Decode(pl)
			var c challengeClaims
			json.Unmarshal(raw, &c)
			claims := jobj{{"aud", jstr(c.Iss)}, {"sid", jstr(c.Sid)}, {"nonce", jstr(c.Nonce)}, {"cha", jstr(sha256b64(string(ev.data)))}}
			resp, _ := naive.sign(rand.Reader, header("ES256", "naive", protocol.TypResponse).String(), claims.String())
			w.sendText(resp)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunClient(context.Background(), ln, target, &Options{Select: selectedBy(ids...)})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// selectedBy is a Select function from a list of ids, for tests.
func selectedBy(ids ...string) func(string) bool {
	return func(id string) bool { return slices.Contains(ids, id) }
}
