// Package keys owns the closed list of wsproof signature algorithms, the key
// formats wsproof reads and writes, RFC 7638 thumbprints, and the client key
// registry, as specified in spec/wsproof-v1.md ("JOSE profile" and "Key
// registry").
//
// Every signature wsproof makes goes through [Sign], which takes a
// [crypto.Signer] so that a key may live in a TPM, a secure element or an
// ssh-agent; every signature it checks goes through [Verify], which applies
// the profile's exact rules (raw r||s of exact length, PSS salt length equal to
// the hash length, RSA moduli of 2048 to 4096 bits with e = 65537).
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Algorithm is a JWS algorithm name from the closed list of spec section
// "JOSE profile". One registered key has exactly one Algorithm.
type Algorithm string

// The six algorithms of wsproof v1. Names are case-sensitive.
const (
	ES256 Algorithm = "ES256" // ECDSA P-256 SHA-256, 64-byte r||s
	ES384 Algorithm = "ES384" // ECDSA P-384 SHA-384, 96-byte r||s
	ES512 Algorithm = "ES512" // ECDSA P-521 SHA-512, 132-byte r||s
	RS256 Algorithm = "RS256" // RSASSA-PKCS1-v1_5 SHA-256
	PS256 Algorithm = "PS256" // RSASSA-PSS SHA-256, MGF1 SHA-256, 32-byte salt
	EdDSA Algorithm = "EdDSA" // Ed25519
)

// Algorithms lists every supported algorithm, in the spec's order.
var Algorithms = []Algorithm{ES256, ES384, ES512, RS256, PS256, EdDSA}

// RSA modulus bounds and the only public exponent wsproof accepts.
const (
	MinRSABits  = 2048
	MaxRSABits  = 4096
	RSAExponent = 65537
)

var (
	// ErrUnknownAlgorithm is returned for a name outside [Algorithms],
	// including "none" and every HMAC algorithm.
	ErrUnknownAlgorithm = errors.New("keys: unknown algorithm")
	// ErrInvalidKey wraps every reason a key is refused: wrong type for its
	// algorithm, RSA size or exponent, off-curve point, symmetric key.
	ErrInvalidKey = errors.New("keys: invalid key")
	// ErrBadSignature is returned by Verify for any signature that does not
	// verify, including one of the wrong length or encoding.
	ErrBadSignature = errors.New("keys: bad signature")
)

// ParseAlgorithm returns the Algorithm named s. The match is exact: "es256"
// and "none" are errors.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownAlgorithm, s)
}

// hash returns the digest function of a, or 0 for EdDSA, which signs the
// message itself.
func (a Algorithm) hash() crypto.Hash {
	switch a {
	case ES256, RS256, PS256:
		return crypto.SHA256
	case ES384:
		return crypto.SHA384
	case ES512:
		return crypto.SHA512
	}
	return 0
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	}
	panic("keys: unreachable hash")
}

// curve returns the curve and the byte length of one of r or s for an ES
// algorithm.
func (a Algorithm) curve() (elliptic.Curve, int) {
	switch a {
	case ES256:
		return elliptic.P256(), 32
	case ES384:
		return elliptic.P384(), 48
	case ES512:
		return elliptic.P521(), 66
	}
	return nil, 0
}

// AlgorithmsFor returns the algorithms that may be used with pub, in the
// spec's order, or none if pub is not an acceptable key.
func AlgorithmsFor(pub crypto.PublicKey) []Algorithm {
	var out []Algorithm
	for _, a := range Algorithms {
		if fits(a, pub) == nil {
			out = append(out, a)
		}
	}
	if len(out) == 0 || checkValue(pub) != nil {
		return nil
	}
	return out
}

func typeName(k any) string {
	switch k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA"
	case *rsa.PublicKey:
		return "RSA"
	case ed25519.PublicKey:
		return "Ed25519"
	case []byte:
		return "symmetric"
	}
	return fmt.Sprintf("%T", k)
}

// Sign returns the JWS signature (RFC 7515 section 5.1 step 5) over
// signingInput by s with alg. ECDSA signers return ASN.1 DER per the
// crypto.Signer contract; Sign converts it to the fixed-length r||s form JWS
// requires (RFC 7518 section 3.4). PS256 uses a salt as long as the hash.
//
// The message goes through crypto.SignMessage: a signer that implements
// crypto.MessageSigner gets signingInput itself, any other gets its digest
// through Sign. A key that hashes what it signs, such as one held by an
// ssh-agent, needs the message, and cannot sign a digest.
//
// rand is passed to s; it may be nil for signers that need no randomness (a
// stdlib ECDSA key then signs deterministically per RFC 6979, which is how the
// test vectors are made reproducible).
func Sign(rand io.Reader, s crypto.Signer, alg Algorithm, signingInput []byte) ([]byte, error) {
	if err := fits(alg, s.Public()); err != nil {
		return nil, err
	}
	switch alg {
	case EdDSA:
		return crypto.SignMessage(s, rand, signingInput, crypto.Hash(0))
	case RS256:
		return crypto.SignMessage(s, rand, signingInput, crypto.SHA256)
	case PS256:
		return crypto.SignMessage(s, rand, signingInput, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	}
	der, err := crypto.SignMessage(s, rand, signingInput, alg.hash())
	if err != nil {
		return nil, err
	}
	_, n := alg.curve()
	return derToRaw(der, n)
}

// derToRaw converts an ASN.1 ECDSA-Sig-Value to r||s, each left-padded to n
// bytes, without going through math/big.
func derToRaw(der []byte, n int) ([]byte, error) {
	var r, s cryptobyte.String
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&r, cbasn1.INTEGER) || !seq.ReadASN1(&s, cbasn1.INTEGER) || !seq.Empty() {
		return nil, errors.New("keys: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*n)
	if !putInt(out[:n], r) || !putInt(out[n:], s) {
		return nil, errors.New("keys: signer returned a malformed ECDSA signature")
	}
	return out, nil
}

// putInt writes the positive DER INTEGER v into dst, left-padded.
func putInt(dst []byte, v []byte) bool {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return false // empty or negative
	}
	if len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) > len(dst) || (len(v) == 1 && v[0] == 0) {
		return false // too long, or zero
	}
	copy(dst[len(dst)-len(v):], v)
	return true
}

// rawToDER converts r||s to the ASN.1 form crypto/ecdsa verifies.
func rawToDER(sig []byte) []byte {
	n := len(sig) / 2
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addInt(b, sig[:n])
		addInt(b, sig[n:])
	})
	der, _ := b.Bytes() // cannot fail: no length exceeds the builder's limits
	return der
}

// addInt adds the unsigned big-endian v as a DER INTEGER.
func addInt(b *cryptobyte.Builder, v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		if v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}

// Verify checks a JWS signature over signingInput under pub and alg, with the
// exact rules of spec section "JOSE profile". The key is checked first, for
// a key no load path accepts may come from a custom Registry: its type and
// parameters as by CheckKey, and the checks that stop a signature made
// without the private key (an Ed25519 key of small order, a ROCA modulus);
// the costlier checks of CheckKey are left to load time. Ed25519 signatures are verified by
// crypto/ed25519 with the cofactorless equation [S]B = R + [k]A of RFC 8032
// section 5.1.7, S < ℓ, R compared by its encoding. Any failure, including a
// key that does not fit alg, returns an error wrapping ErrBadSignature or
// ErrInvalidKey, never a panic.
func Verify(pub crypto.PublicKey, alg Algorithm, signingInput, sig []byte) error {
	if err := fits(alg, pub); err != nil {
		return err
	}
	if err := checkForgeable(pub); err != nil {
		return err
	}
	ok := false
	switch alg {
	case ES256, ES384, ES512:
		_, n := alg.curve()
		if len(sig) != 2*n {
			return fmt.Errorf("%w: %s signature of %d bytes, want %d", ErrBadSignature, alg, len(sig), 2*n)
		}
		ok = ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest(alg.hash(), signingInput), rawToDER(sig))
	case RS256:
		ok = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest(crypto.SHA256, signingInput), sig) == nil
	case PS256:
		ok = rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest(crypto.SHA256, signingInput), sig,
			&rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}) == nil
	case EdDSA:
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(pub.(ed25519.PublicKey), signingInput, sig)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub with SHA-256, in
// base64url without padding: the value of the session token's cnf.jkt claim
// and the recommended key id. pub must be usable by some Algorithm.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	if err := checkUsable(pub); err != nil {
		return "", err
	}
	return thumbprint(pub)
}

// thumbprint is Thumbprint for a key that has been checked.
func thumbprint(pub crypto.PublicKey) (string, error) {
	t, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}
