package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"math/big"
	"math/rand/v2"
)

// Every key and random value in the vectors is derived from a label, so that
// the files are reproducible and independent of Go's key-generation
// internals, which may change between releases.

// stream returns a deterministic byte stream for label.
func stream(label string) io.Reader {
	return rand.NewChaCha8(sha256.Sum256([]byte("wsproof-v1 test vectors/" + label)))
}

func derive(label string, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(stream(label), b)
	return b
}

func edKey(label string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(derive(label, ed25519.SeedSize))
}

func ecKey(c elliptic.Curve, label string) *ecdsa.PrivateKey {
	size := (c.Params().BitSize + 7) / 8
	r := stream(label)
	for {
		b := make([]byte, size)
		io.ReadFull(r, b)
		b[0] &= byte(0xff >> (8*size - c.Params().BitSize)) // P-521: keep 521 bits
		if k, err := ecdsa.ParseRawPrivateKey(c, b); err == nil {
			return k
		}
	}
}

// rsaKey makes an RSA key with e = 65537 from two primes found by a
// deterministic search. Test keys only: the search is not uniform.
func rsaKey(bits int, label string) *rsa.PrivateKey {
	r := stream(label)
	e := big.NewInt(65537)
	prime := func() *big.Int {
		for {
			b := make([]byte, bits/16)
			io.ReadFull(r, b)
			b[0] |= 0xc0 // two top bits: p*q has exactly bits bits
			b[len(b)-1] |= 1
			p := new(big.Int).SetBytes(b)
			for !p.ProbablyPrime(20) {
				p.Add(p, big.NewInt(2))
			}
			if new(big.Int).GCD(nil, nil, e, new(big.Int).Sub(p, big.NewInt(1))).Cmp(big.NewInt(1)) == 0 {
				return p
			}
		}
	}
	p, q := prime(), prime()
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537},
		D:         new(big.Int).ModInverse(e, phi),
		Primes:    []*big.Int{p, q},
	}
	k.Precompute()
	if err := k.Validate(); err != nil {
		panic("vectors: bad RSA test key: " + err.Error())
	}
	return k
}

// detSigner makes signatures deterministic: ECDSA per RFC 6979 (a nil
// random source), PSS with a salt derived from the digest. Ed25519 and
// PKCS #1 v1.5 are deterministic already.
type detSigner struct{ crypto.Signer }

func (d detSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := d.Signer.(*ecdsa.PrivateKey); ok {
		return d.Signer.Sign(nil, digest, opts)
	}
	return d.Signer.Sign(rand.NewChaCha8(sha256.Sum256(digest)), digest, opts)
}
