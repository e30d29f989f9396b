package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"reflect"
	"testing"
	"testing/cryptotest"
)

func TestGenerate(t *testing.T) {
	tests := []struct {
		alg  Algorithm
		want any // a value of the key type
	}{
		{ES256, (*ecdsa.PrivateKey)(nil)},
		{ES384, (*ecdsa.PrivateKey)(nil)},
		{ES512, (*ecdsa.PrivateKey)(nil)},
		{RS256, (*rsa.PrivateKey)(nil)},
		{PS256, (*rsa.PrivateKey)(nil)},
		{EdDSA, ed25519.PrivateKey(nil)},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			s, err := Generate(tt.alg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.TypeOf(s) != reflect.TypeOf(tt.want) {
				t.Fatalf("got a %T, want a %T", s, tt.want)
			}
			if err := CheckKey(tt.alg, s.Public()); err != nil {
				t.Fatal(err)
			}
			if k, ok := s.(*rsa.PrivateKey); ok && k.N.BitLen() != MinRSABits {
				t.Fatalf("RSA key of %d bits, want %d", k.N.BitLen(), MinRSABits)
			}
			checkSigner(t, s, s, tt.alg)
		})
	}
}

func TestGenerateRefusals(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"HS256", errOf(Generate("HS256", nil)), ErrUnknownAlgorithm},
		{"none", errOf(Generate("none", nil)), ErrUnknownAlgorithm},
		{"es256", errOf(Generate("es256", nil)), ErrUnknownAlgorithm},
		{"RSA-1024", errOf(GenerateRSA(1024, nil)), ErrInvalidKey},
		{"RSA-2047", errOf(GenerateRSA(MinRSABits-1, nil)), ErrInvalidKey},
		{"RSA-4097", errOf(GenerateRSA(MaxRSABits+1, nil)), ErrInvalidKey},
		{"RSA-0", errOf(GenerateRSA(0, nil)), ErrInvalidKey},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

// TestGenerateEd25519Reader checks that an Ed25519 key is derived from the
// bytes read from rand.
func TestGenerateEd25519Reader(t *testing.T) {
	s, err := Generate(EdDSA, bytes.NewReader(rfc8037Seed))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.NewKeyFromSeed(rfc8037Seed).Equal(s) {
		t.Fatal("key is not derived from the reader's bytes")
	}
}

// TestGenerateGlobalRandom checks the documented way to make keys
// reproducible: a nil rand under testing/cryptotest.SetGlobalRandom.
func TestGenerateGlobalRandom(t *testing.T) {
	for _, alg := range []Algorithm{ES256, ES384, ES512, EdDSA} {
		cryptotest.SetGlobalRandom(t, 1)
		a, err := Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		cryptotest.SetGlobalRandom(t, 1)
		b, err := Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !equalKeys(a.Public(), b.Public()) {
			t.Errorf("%s: two keys from one seed differ", alg)
		}
	}
}
