package protocol

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// handshake runs one handshake of c against w's server.
func (w *world) handshake(t *testing.T, c *Client, now time.Time) (*Session, error) {
	t.Helper()
	sh, challenge, err := w.srv.Start(rand.Reader, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Handshake().ReadChallenge(challenge, rand.Reader, now, nil)
	if err != nil {
		return nil, err
	}
	sess, _, err := sh.ReadResponse(resp, rand.Reader, now)
	return sess, err
}

// TestSetKeys follows spec section "Server key rotation": publish the new
// keys beside the old, make them current, then retire the old ones.
func TestSetKeys(t *testing.T) {
	w := newWorld(t, nil)
	old := w.srv.Keys()
	oldSess, err := w.handshake(t, w.clients[keys.EdDSA], testNow)
	if err != nil {
		t.Fatal(err)
	}
	next := keys.SigningKey{KeyID: "s2", Algorithm: keys.ES384, Signer: testKey(t, keys.ES384)}
	nextTok := keys.TokenKey{KeyID: "t2", Algorithm: keys.TokenA256KW, Secret: bytes.Repeat([]byte{8}, 32)}

	// A client that pins both public keys accepts challenges signed by either.
	both := &keys.ServerKeys{Signing: []keys.SigningKey{next, old.Signing[0]}, Token: []keys.TokenKey{nextTok, old.Token[0]}}
	c, err := NewClient(&ClientConfig{KeyID: "c-EdDSA", Signer: testKey(t, keys.EdDSA), Algorithm: keys.EdDSA,
		ServerKeys: both.Public(), ServerIdentity: "wss://example.test/ws"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.srv.SetKeys(both); err != nil {
		t.Fatal(err)
	}
	newSess, err := w.handshake(t, c, testNow)
	if err != nil {
		t.Fatal(err)
	}
	// The old pinned set refuses the new signing key: rotation must publish
	// the public key to clients before making it current.
	if _, err := w.handshake(t, w.clients[keys.EdDSA], testNow); CodeOf(err) != CodeUnknownKey {
		t.Fatalf("client pinning only the old key: got %v, want unknown_key", err)
	}
	for _, s := range []*Session{oldSess, newSess} {
		if _, err := w.srv.Tokens().Open(s.Token, s.SocketID, testNow); err != nil {
			t.Fatalf("token during rotation: %v", err)
		}
	}
	// A backend that holds only the token keys and public keys opens both.
	backend := &TokenVerifier{Identity: "wss://example.test/ws", TokenKeys: both.Token, SigningKeys: both.Public()}
	if _, err := backend.Open(newSess.Token, newSess.SocketID, testNow); err != nil {
		t.Fatal(err)
	}

	// Retire the old keys: tokens sealed with them stop opening.
	if err := w.srv.SetKeys(&keys.ServerKeys{Signing: []keys.SigningKey{next}, Token: []keys.TokenKey{nextTok}}); err != nil {
		t.Fatal(err)
	}
	_, err = w.srv.Tokens().Open(oldSess.Token, oldSess.SocketID, testNow)
	wantCode(t, err, CodeTokenInvalid)
	if _, err := w.srv.Tokens().Open(newSess.Token, newSess.SocketID, testNow); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.SetKeys(&keys.ServerKeys{}); err == nil {
		t.Fatal("SetKeys accepted an empty key set")
	}
	if w.srv.Keys().Signing[0].KeyID != "s2" {
		t.Fatal("a refused SetKeys replaced the keys")
	}
}

// checkedSet is a registry whose availability the test controls.
type checkedSet struct {
	*keys.Set
	err error
}

func (c *checkedSet) Check() error { return c.err }

func TestRegistryUnavailable(t *testing.T) {
	w := newWorld(t, nil)
	reg := &checkedSet{Set: w.reg}
	srv, err := NewServer(&ServerConfig{Identity: "wss://example.test/ws", Keys: w.srv.Keys(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	sess, err := w.handshake(t, w.clients[keys.EdDSA], testNow)
	if err != nil {
		t.Fatal(err)
	}
	reg.err = errors.Join(keys.ErrUnavailable, errors.New("database unreachable for 5m0s"))
	_, err = w.handshake(t, w.clients[keys.EdDSA], testNow)
	wantCode(t, err, CodeInternalError)
	if !CodeInternalError.Retryable() {
		t.Fatal("internal_error must be retryable")
	}
	_, err = srv.recheck(sess, testNow)
	wantCode(t, err, CodeInternalError)
	reg.err = nil
	if _, err := srv.recheck(sess, testNow); err != nil {
		t.Fatal(err)
	}
}
