package benchfloor

import (
	"crypto/ecdsa"
	"crypto/rand"
	"testing"

	"github.com/wsproof/wsproof/keys"
)

// TestFloor performs both sides' primitives for every algorithm, which
// checks that each signature verifies under the key and hash it was made
// with.
func TestFloor(t *testing.T) {
	sk, err := keys.Generate(keys.ES256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range keys.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			ck, err := keys.Generate(alg, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			h, err := New(alg, sk.(*ecdsa.PrivateKey), ck)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Server(); err != nil {
				t.Error(err)
			}
			if err := h.Client(); err != nil {
				t.Error(err)
			}
			h.respSig[0] ^= 1
			if h.Server() == nil {
				t.Error("Server accepted a tampered response signature")
			}
		})
	}
}

func TestUnknownAlgorithm(t *testing.T) {
	sk, err := keys.Generate(keys.ES256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New("HS256", sk.(*ecdsa.PrivateKey), sk); err == nil {
		t.Error("New accepted HS256")
	}
}
