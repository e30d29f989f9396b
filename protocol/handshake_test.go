package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
)

var testNow = time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z

// testKeys caches generated keys: RSA generation is slow under -race.
var testKeys = map[keys.Algorithm]crypto.Signer{}

func testKey(t testing.TB, alg keys.Algorithm) crypto.Signer {
	t.Helper()
	if k, ok := testKeys[alg]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch alg {
	case keys.ES256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case keys.ES384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case keys.ES512:
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case keys.RS256, keys.PS256:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case keys.EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	testKeys[alg] = k
	return k
}

// world is one server and one registered client per algorithm.
type world struct {
	srv     *Server
	reg     *keys.Set
	clients map[keys.Algorithm]*Client
}

func newWorld(t testing.TB, mutate func(*ServerConfig, []*keys.Entry)) *world {
	t.Helper()
	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "s1", Algorithm: keys.ES256, Signer: testKey(t, keys.ES256)}},
		Token:   []keys.TokenKey{{KeyID: "t1", Algorithm: keys.TokenDir, Secret: bytes.Repeat([]byte{7}, 32)}},
	}
	var entries []*keys.Entry
	for _, alg := range keys.Algorithms {
		entries = append(entries, &keys.Entry{
			KeyID: "c-" + string(alg), Key: testKey(t, alg).Public(), Algorithm: alg,
			Subject: "device-" + string(alg), Groups: []string{"devices"},
		})
	}
	cfg := &ServerConfig{Identity: "wss://example.test/ws", Keys: sk, RequiredGroups: []string{"devices"}}
	if mutate != nil {
		mutate(cfg, entries)
	}
	reg, err := keys.NewSet(entries)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry = reg
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{srv: srv, reg: reg, clients: map[keys.Algorithm]*Client{}}
	for _, alg := range keys.Algorithms {
		c, err := NewClient(&ClientConfig{KeyID: "c-" + string(alg), Signer: testKey(t, alg), Algorithm: alg,
			ServerKeys: sk.Public(), ServerIdentity: cfg.Identity})
		if err != nil {
			t.Fatal(err)
		}
		w.clients[alg] = c
	}
	return w
}

func wantCode(t testing.TB, err error, want Code) {
	t.Helper()
	if got := CodeOf(err); got != want {
		t.Fatalf("got code %q (err %v), want %q", got, err, want)
	}
}

func TestHandshakeEveryAlgorithm(t *testing.T) {
	w := newWorld(t, nil)
	for _, exporter := range [][]byte{nil, bytes.Repeat([]byte{9}, 32)} {
		for _, alg := range keys.Algorithms {
			t.Run(string(alg), func(t *testing.T) {
				sh, challenge, err := w.srv.Start(rand.Reader, testNow, exporter)
				if err != nil {
					t.Fatal(err)
				}
				ch := w.clients[alg].Handshake()
				resp, err := ch.ReadChallenge(challenge, rand.Reader, testNow.Add(time.Second), exporter)
				if err != nil {
					t.Fatal(err)
				}
				sess, accept, err := sh.ReadResponse(resp, rand.Reader, testNow.Add(2*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				cs, err := ch.ReadAccept(accept, testNow.Add(2*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if cs.Token != sess.Token || cs.SocketID != sess.SocketID || cs.Subject != "device-"+string(alg) ||
					!cs.Expiry.Equal(sess.Expiry) || cs.ChannelBound != (exporter != nil) || sess.ChannelBound != cs.ChannelBound {
					t.Fatalf("client session %+v does not match server session %+v", cs, sess)
				}
				claims, err := w.srv.Tokens().Open(sess.Token, sess.SocketID, testNow.Add(3*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				e, _ := w.reg.Lookup("c-" + string(alg))
				if claims.Cnf.JKT != e.Thumbprint || claims.ClientKeyID != e.KeyID || claims.Subject != e.Subject ||
					(claims.ChannelBindingHash != "") != (exporter != nil) {
					t.Fatalf("token claims %+v do not match entry", claims)
				}

				// Single use on both sides.
				_, _, err = sh.ReadResponse(resp, rand.Reader, testNow.Add(2*time.Second))
				wantCode(t, err, CodeUnexpectedMessage)
				_, err = ch.ReadChallenge(challenge, rand.Reader, testNow, exporter)
				wantCode(t, err, CodeUnexpectedMessage)

				// Refresh on the same socket.
				rh, rc, err := w.srv.refresh(sess, rand.Reader, testNow.Add(250*time.Second), exporter)
				if err != nil {
					t.Fatal(err)
				}
				crh := w.clients[alg].Refresh(cs)
				rr, err := crh.ReadChallenge(rc, rand.Reader, testNow.Add(250*time.Second), exporter)
				if err != nil {
					t.Fatal(err)
				}
				sess2, accept2, err := rh.ReadResponse(rr, rand.Reader, testNow.Add(251*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if sess2.SocketID != sess.SocketID || !sess2.Expiry.After(sess.Expiry) {
					t.Fatalf("refreshed session %+v", sess2)
				}
				if _, err := crh.ReadAccept(accept2, testNow.Add(251*time.Second)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestTokenRejections tampers with every byte of a token sealed with each
// kind of token key: sealToken's output, opened by compactJWE.decrypt.
func TestTokenRejections(t *testing.T) {
	for _, alg := range []string{keys.TokenDir, keys.TokenA256KW} {
		w := newWorld(t, func(c *ServerConfig, _ []*keys.Entry) {
			c.Keys = &keys.ServerKeys{Signing: c.Keys.Signing,
				Token: []keys.TokenKey{{KeyID: "t-" + alg, Algorithm: alg, Secret: bytes.Repeat([]byte{9}, 32)}}}
		})
		sess, err := w.handshake(t, w.clients[keys.EdDSA], testNow)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.srv.Tokens().Open(sess.Token, sess.SocketID, testNow); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		_, err = w.srv.Tokens().Open(sess.Token, "other", testNow)
		wantCode(t, err, CodeSocketMismatch)
		_, err = w.srv.Tokens().Open(sess.Token, sess.SocketID, sess.Expiry)
		wantCode(t, err, CodeTokenExpired)
		// Tamper with every byte of the token: each must be refused.
		for i := range len(sess.Token) {
			b := []byte(sess.Token)
			b[i] ^= 1
			_, err := w.srv.Tokens().Open(string(b), sess.SocketID, testNow)
			wantCode(t, err, CodeTokenInvalid)
		}
	}
}

func TestTamperEveryByte(t *testing.T) {
	w := newWorld(t, nil)
	for _, alg := range []keys.Algorithm{keys.ES256, keys.EdDSA} {
		c := w.clients[alg]
		// Response: every single-bit change is refused by the server.
		_, challenge, _ := w.srv.Start(rand.Reader, testNow, nil)
		resp, err := c.Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range resp {
			sh, ch2, _ := w.srv.Start(rand.Reader, testNow, nil)
			_ = ch2
			// Re-point the handshake at the original challenge so that only
			// the tampered byte differs.
			sh.challenge, sh.hash, sh.sid, sh.nonce = w.restore(t, challenge)
			b := bytes.Clone(resp)
			b[i] ^= 1
			if _, _, err := sh.ReadResponse(b, rand.Reader, testNow); err == nil {
				t.Fatalf("%s: response with byte %d flipped was accepted", alg, i)
			}
		}
		// Challenge: every single-bit change is refused by the client.
		for i := range challenge {
			b := bytes.Clone(challenge)
			b[i] ^= 1
			if _, err := c.Handshake().ReadChallenge(b, rand.Reader, testNow, nil); err == nil {
				t.Fatalf("%s: challenge with byte %d flipped was accepted", alg, i)
			}
		}
	}
}

// restore returns the handshake state of challenge, read back from its claims.
func (w *world) restore(t testing.TB, challenge []byte) ([]byte, [32]byte, string, string) {
	t.Helper()
	h, err := w.srv.resume(challenge, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h.challenge, h.hash, h.sid, h.nonce
}

func TestRandomnessFailure(t *testing.T) {
	w := newWorld(t, nil)
	_, _, err := w.srv.Start(io.LimitReader(rand.Reader, 4), testNow, nil)
	wantCode(t, err, CodeInternalError)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want it to wrap io.ErrUnexpectedEOF", err)
	}
}

func TestReadAcceptRejects(t *testing.T) {
	w := newWorld(t, nil)
	_, challenge, _ := w.srv.Start(rand.Reader, testNow, nil)
	cases := map[string]Code{
		`{"token":"t","sub":"` + string(bytes.Repeat([]byte{'s'}, 257)) + `","groups":[],"exp":1767225900,"max_size":65536}`: CodeMalformed,
		`{"token":"t","sub":"","groups":[],"exp":1767225900,"max_size":65536}`:                                               CodeMalformed,
		`{"token":"","sub":"s","groups":[],"exp":1767225900,"max_size":65536}`:                                               CodeMalformed,
		`{"token":"t","sub":"s","groups":[""],"exp":1767225900,"max_size":65536}`:                                            CodeMalformed,
		`{"token":"t","sub":"s","groups":[],"exp":1.5,"max_size":65536}`:                                                     CodeMalformed,
		`{"token":"t","sub":"s","Sub":"x","groups":[],"exp":1767225900,"max_size":65536}`:                                    CodeMalformed,
		`{"token":"t","sub":"s","groups":[],"exp":1767225000,"max_size":65536}`:                                              CodeTokenExpired,
		`{"token":"t","sub":"s","groups":[],"exp":1767225900,"max_size":65536}`:                                              "",
		`{"token":"t","sub":"s","groups":[],"exp":1767225900}`:                                                               CodeMalformed,
		`{"token":"t","sub":"s","groups":[],"exp":1767225900,"max_size":0}`:                                                  CodeMalformed,
		`{"token":"t","sub":"s","groups":[],"exp":1767225900,"max_size":1073741825}`:                                         CodeMalformed,
		`{"token":"t","sub":"s","groups":[],"exp":1767225900,"max_size":"65536"}`:                                            CodeMalformed,
	}
	for msg, want := range cases {
		h := w.clients[keys.EdDSA].Handshake()
		if _, err := h.ReadAccept([]byte(msg), testNow); CodeOf(err) != CodeUnexpectedMessage {
			t.Fatalf("accept before the challenge: %v", err)
		}
		h = w.clients[keys.EdDSA].Handshake()
		if _, err := h.ReadChallenge(challenge, rand.Reader, testNow, nil); err != nil {
			t.Fatal(err)
		}
		_, err := h.ReadAccept([]byte(msg), testNow)
		if CodeOf(err) != want {
			t.Errorf("accept %.60q: code %q (%v), want %q", msg, CodeOf(err), err, want)
		}
	}
}

// TestNowIsFloored pins spec section "Notation": now is the clock's whole
// seconds, rounded down. An accept whose exp plus the skew is one second
// after the clock's second is live for that whole second, even 1 ms before
// the next one, and expired from the next second on.
func TestNowIsFloored(t *testing.T) {
	w := newWorld(t, nil)
	_, challenge, _ := w.srv.Start(rand.Reader, testNow, nil)
	c := w.clients[keys.EdDSA]
	exp := testNow.Unix() + 100
	edge := time.Unix(exp, 0).Add(c.skew) // the first second at which exp + skew <= now
	msg := []byte(`{"token":"t","sub":"s","groups":[],"exp":` + strconv.FormatInt(exp, 10) + `,"max_size":65536}`)
	for at, want := range map[time.Time]Code{edge.Add(-time.Millisecond): "", edge: CodeTokenExpired, edge.Add(999 * time.Millisecond): CodeTokenExpired} {
		h := c.Handshake()
		if _, err := h.ReadChallenge(challenge, rand.Reader, testNow, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ReadAccept(msg, at); CodeOf(err) != want {
			t.Errorf("accept at %v (edge %v): %v, want %q", at, edge, err, want)
		}
	}
}
