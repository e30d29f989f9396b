package keys

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"testing"
)

// messageOnly is a key that signs messages only, as an ssh-agent key does:
// its Sign refuses every digest, as crypto.MessageSigner asks of such keys.
type messageOnly struct {
	s     crypto.Signer
	calls int
}

func (m *messageOnly) Public() crypto.PublicKey { return m.s.Public() }

func (m *messageOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("digests are not signed here")
}

func (m *messageOnly) SignMessage(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	m.calls++
	return crypto.SignMessage(m.s, r, msg, opts)
}

// TestSignMessageSigner: Sign hands a crypto.MessageSigner the signing
// input itself, with the options of the algorithm, for every algorithm.
func TestSignMessageSigner(t *testing.T) {
	msg := []byte("eyJhbGciOiJFUzI1NiJ9.e30")
	for _, alg := range Algorithms {
		k, err := Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms := &messageOnly{s: k}
		sig, err := Sign(rand.Reader, ms, alg, msg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if ms.calls != 1 {
			t.Fatalf("%s: SignMessage called %d times", alg, ms.calls)
		}
		if err := Verify(k.Public(), alg, msg, sig); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if err := Verify(k.Public(), alg, append(msg, '.'), sig); err == nil {
			t.Fatalf("%s: the signature verifies over another message", alg)
		}
	}
}

// TestSignMessagePSSOptions: PS256 asks for a salt as long as the hash.
func TestSignMessagePSSOptions(t *testing.T) {
	k, err := Generate(PS256, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got crypto.SignerOpts
	probe := &optsProbe{Signer: k, seen: &got}
	if _, err := Sign(rand.Reader, probe, PS256, []byte("x")); err != nil {
		t.Fatal(err)
	}
	o, ok := got.(*rsa.PSSOptions)
	if !ok || o.Hash != crypto.SHA256 || o.SaltLength != rsa.PSSSaltLengthEqualsHash {
		t.Fatalf("options %#v", got)
	}
}

type optsProbe struct {
	crypto.Signer
	seen *crypto.SignerOpts
}

func (p *optsProbe) SignMessage(r io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	*p.seen = opts
	return crypto.SignMessage(p.Signer, r, msg, opts)
}
