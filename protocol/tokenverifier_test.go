package protocol

import (
	"bytes"
	"testing"

	"github.com/wsproof/wsproof/keys"
)

// TestTokenVerifierIncomplete: a verifier that lacks what Open needs is
// refused when it is built, and one assembled by hand without it refuses
// every token with token_invalid instead of panicking (issue 17, defect 4).
func TestTokenVerifierIncomplete(t *testing.T) {
	w := newWorld(t, nil)
	sess, err := w.handshake(t, w.clients[keys.EdDSA], testNow)
	if err != nil {
		t.Fatal(err)
	}
	const id = "wss://example.test/ws"
	k := w.srv.Keys()
	empty := &keys.PublicSet{}
	for _, c := range []struct {
		name string
		v    TokenVerifier
	}{
		{"nil signing keys", TokenVerifier{Identity: id, TokenKeys: k.Token}},
		{"empty signing keys", TokenVerifier{Identity: id, TokenKeys: k.Token, SigningKeys: empty}},
		{"no token keys", TokenVerifier{Identity: id, SigningKeys: k.Public()}},
		{"no identity", TokenVerifier{TokenKeys: k.Token, SigningKeys: k.Public()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if v, err := NewTokenVerifier(c.v.Identity, c.v.TokenKeys, c.v.SigningKeys); err == nil || v != nil {
				t.Errorf("NewTokenVerifier = %v, %v; want an error", v, err)
			}
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Open panicked: %v", p)
				}
			}()
			_, err := c.v.Open(sess.Token, sess.SocketID, testNow)
			wantCode(t, err, CodeTokenInvalid)
		})
	}
	v, err := NewTokenVerifier(id, k.Token, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Open(sess.Token, sess.SocketID, testNow); err != nil {
		t.Fatalf("a complete verifier: %v", err)
	}
}

// TestTokenKeyOfAnotherSize: a verifier built by hand with a token key that
// is not 32 octets refuses a token sealed with AES-128-GCM under that key,
// whose header says A256GCM; crypto/aes would take the short key. go-jose,
// which opened tokens before, refused it too.
func TestTokenKeyOfAnotherSize(t *testing.T) {
	w := newWorld(t, nil)
	sess, err := w.handshake(t, w.clients[keys.EdDSA], testNow)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := w.srv.Tokens().decrypt(sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{16, 24} {
		tk := keys.TokenKey{KeyID: "short", Algorithm: keys.TokenDir, Secret: bytes.Repeat([]byte{1}, n)}
		token := sealRaw(t, appendJWEHeader(nil, &tk), inner, &tk)
		v := &TokenVerifier{Identity: w.srv.Tokens().Identity, TokenKeys: []keys.TokenKey{tk}, SigningKeys: w.srv.Tokens().SigningKeys}
		_, err := v.Open(string(token), sess.SocketID, testNow)
		wantCode(t, err, CodeTokenInvalid)
		if _, err := sealToken(&tk, inner); err == nil {
			t.Errorf("sealToken took a %d-octet token key", n)
		}
	}
}
