package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
)

// Generate returns a new private key for alg: an *ecdsa.PrivateKey on the
// algorithm's curve, a 2048-bit *rsa.PrivateKey for RS256 and PS256 (see
// [GenerateRSA] for other sizes), or an ed25519.PrivateKey for EdDSA.
//
// rand is crypto/rand.Reader if nil. It is passed to the standard library,
// which since Go 1.26 ignores it for ECDSA and RSA keys (unless
// GODEBUG=cryptocustomrand=1) and always uses a secure source; an Ed25519 key
// is derived from 32 bytes read from rand. For reproducible keys in tests, use
// testing/cryptotest.SetGlobalRandom with a nil rand.
func Generate(alg Algorithm, rand io.Reader) (crypto.Signer, error) {
	rand = orDefault(rand)
	switch alg {
	case ES256, ES384, ES512:
		c, _ := alg.curve()
		k, err := ecdsa.GenerateKey(c, rand)
		if err != nil {
			return nil, fmt.Errorf("keys: generating %s key: %w", alg, err)
		}
		return k, nil
	case RS256, PS256:
		return GenerateRSA(MinRSABits, rand)
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand)
		if err != nil {
			return nil, fmt.Errorf("keys: generating EdDSA key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownAlgorithm, string(alg))
}

// GenerateRSA returns a new RSA private key of bits bits, which must be within
// MinRSABits..MaxRSABits, with e = 65537. rand is as for [Generate].
func GenerateRSA(bits int, rand io.Reader) (*rsa.PrivateKey, error) {
	if bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("%w: RSA modulus of %d bits, want %d to %d", ErrInvalidKey, bits, MinRSABits, MaxRSABits)
	}
	k, err := rsa.GenerateKey(orDefault(rand), bits)
	if err != nil {
		return nil, fmt.Errorf("keys: generating RSA key: %w", err)
	}
	return k, nil
}

func orDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
