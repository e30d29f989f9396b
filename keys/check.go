package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
)

// The key rules of spec sections "Algorithms" and "Load-time rules", in one
// place. Every load path (JWK, JWK Set, registry, pinned set, server key
// file, PEM, OpenSSH, authorized_keys, and the sets built from Go values)
// ends in CheckKey for each key and in keyIDs.add for each key of a set.

// CheckKey reports whether pub may be used with alg under spec sections
// "Algorithms" and "Load-time rules":
//
//   - the key type and curve match the algorithm;
//   - an EC point is on its curve;
//   - an RSA modulus is odd, of 2048 to 4096 bits, and not one of the
//     Infineon RSALib moduli of ROCA (CVE-2017-15361, Nemec et al., "The
//     Return of Coppersmith's Attack", CCS 2017), and e = 65537;
//   - an Ed25519 key is the canonical encoding of a point of the curve that
//     is not of small order.
//
// A nil, half-built (an ECDSA key with nil coordinates) or foreign key is an
// error, never a panic. Errors wrap ErrInvalidKey or ErrUnknownAlgorithm.
func CheckKey(alg Algorithm, pub crypto.PublicKey) error {
	if err := fits(alg, pub); err != nil {
		return err
	}
	return checkValue(pub)
}

// checkValue applies the checks of CheckKey that do not depend on the
// algorithm, to a key that fits some algorithm.
func checkValue(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return checkEC(k)
	case *rsa.PublicKey:
		return checkROCA(k)
	case ed25519.PublicKey:
		return checkEd25519(k)
	}
	return nil
}

// checkForgeable is what Verify checks of a key beyond fits, for a key that
// may not have been loaded by any path of this package (a custom Registry
// can hand in any value): the checks of CheckKey that keep a signature from
// verifying without the private key, cheap enough to repeat for every
// signature. crypto/ecdsa itself refuses points off the curve.
func checkForgeable(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return checkROCA(k)
	case ed25519.PublicKey:
		if ed25519SmallOrder(k) {
			return invalidf("Ed25519 public key is a point of small order")
		}
	}
	return nil
}

func checkROCA(k *rsa.PublicKey) error {
	if isROCA(k.N) {
		return invalidf("RSA modulus has the ROCA fingerprint (CVE-2017-15361): its factors can be computed")
	}
	return nil
}

// fits checks, without panicking on any value, the key type, the curve and
// the cheap parameters for alg: what Sign repeats for every signature.
func fits(alg Algorithm, pub crypto.PublicKey) error {
	switch alg {
	case ES256, ES384, ES512:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k == nil || k.Curve == nil {
			return fmt.Errorf("%w: %s needs an ECDSA key, not %s", ErrInvalidKey, alg, typeName(pub))
		}
		if c, _ := alg.curve(); k.Curve != c {
			return fmt.Errorf("%w: %s needs curve %s, not %s", ErrInvalidKey, alg, c.Params().Name, curveName(k.Curve))
		}
		if k.X == nil || k.Y == nil || k.X.Sign() < 0 || k.Y.Sign() < 0 {
			return invalidf("ECDSA key without valid coordinates")
		}
		return nil
	case RS256, PS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k == nil {
			return fmt.Errorf("%w: %s needs an RSA key, not %s", ErrInvalidKey, alg, typeName(pub))
		}
		return checkRSA(k)
	case EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 key, not %s", ErrInvalidKey, typeName(pub))
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(k))
		}
		return nil
	}
	return fmt.Errorf("%w %q", ErrUnknownAlgorithm, string(alg))
}

// curveName names c without trusting it to have parameters.
func curveName(c elliptic.Curve) string {
	if c == nil {
		return "nil"
	}
	if p := c.Params(); p != nil && p.Name != "" {
		return p.Name
	}
	return "an unnamed curve"
}

func checkRSA(k *rsa.PublicKey) error {
	if k.N == nil || k.N.Sign() <= 0 {
		return fmt.Errorf("%w: RSA key without a positive modulus", ErrInvalidKey)
	}
	if bits := k.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return fmt.Errorf("%w: RSA modulus of %d bits, want %d to %d", ErrInvalidKey, bits, MinRSABits, MaxRSABits)
	}
	if k.N.Bit(0) == 0 {
		return fmt.Errorf("%w: RSA modulus is even", ErrInvalidKey)
	}
	if k.E != RSAExponent {
		return fmt.Errorf("%w: RSA exponent %d, want %d", ErrInvalidKey, k.E, RSAExponent)
	}
	return nil
}

// checkEC checks that the point of k, whose curve fits, is on the curve.
// crypto/ecdsa refuses the point at infinity, coordinates out of range and
// points off the curve.
func checkEC(k *ecdsa.PublicKey) error {
	if _, err := k.ECDH(); err != nil {
		return fmt.Errorf("%w: point is not on curve %s", ErrInvalidKey, curveName(k.Curve))
	}
	return nil
}

var edIdentity = edwards25519.NewIdentityPoint()

// checkEd25519 refuses an Ed25519 public key that is not the canonical
// encoding of a point of the curve (RFC 8032 section 5.1.3: y < p, and no
// sign bit on x = 0), or that is a point of small order: the identity and the
// points of order 2, 4 and 8, under which a signature made without any
// private key verifies. Keys with a small-order component (a point of order
// 8ℓ, 4ℓ or 2ℓ) are not refused: with the cofactorless verification
// equation they allow no forgery, honest signers never make them, and ruling
// them out costs a full scalar multiplication per key (spec section
// "Algorithms").
func checkEd25519(k ed25519.PublicKey) error {
	p, err := new(edwards25519.Point).SetBytes(k)
	if err != nil {
		return invalidf("Ed25519 public key is not a point of the curve")
	}
	if !bytes.Equal(p.Bytes(), k) {
		return invalidf("Ed25519 public key is not canonically encoded")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edIdentity) == 1 {
		return invalidf("Ed25519 public key is a point of small order")
	}
	return nil
}

// ed25519SmallOrderY are the encodings, sign bit aside, of the points of
// order 1, 2, 4 and 8, canonical or not (y = 0, 1, the two y of order 8,
// p - 1, p, p + 1): libsodium's blocklist. A signature made without any
// private key verifies under each of them for a share of all messages (for
// the identity, R = the identity and S = 0 verify every message).
var ed25519SmallOrderY = func() [][]byte {
	var out [][]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		b, _ := hex.DecodeString(h)
		out = append(out, b)
	}
	return out
}()

// ed25519SmallOrder reports whether k, of 32 octets, encodes a point of
// small order, by comparison only.
func ed25519SmallOrder(k ed25519.PublicKey) bool {
	for _, y := range ed25519SmallOrderY {
		if bytes.Equal(k[:31], y[:31]) && k[31]&0x7f == y[31] {
			return true
		}
	}
	return false
}

// keyIDs enforces, for one set of keys, the set rules of spec section
// "Load-time rules": key ids unique, even under ASCII case folding, and
// each key, identified by its RFC 7638 thumbprint, under one key id only
// (and so under one algorithm). NewSet, NewPublicSet and ServerKeys.Check
// (for its signing keys and, by secret, its token keys) all use it.
type keyIDs struct {
	kids map[string]string // folded kid -> kid
	keys map[string]string // thumbprint or secret -> kid
}

func newKeyIDs() *keyIDs { return &keyIDs{kids: map[string]string{}, keys: map[string]string{}} }

// add records kid, already checked by CheckKeyID, for the key identified by
// id (a thumbprint, or a token key's secret; "" for none).
func (s *keyIDs) add(kid, id string) error {
	folded := strings.ToLower(kid) // kids are printable ASCII
	if other, dup := s.kids[folded]; dup {
		if other == kid {
			return invalidKey(kid, "duplicate key id")
		}
		return invalidKey(kid, fmt.Sprintf("key id differs only in case from %q", other))
	}
	if other, dup := s.keys[id]; dup && id != "" {
		return invalidKey(kid, fmt.Sprintf("the same key is already in the set as %q: one key, one key id, one algorithm", other))
	}
	s.kids[folded] = kid
	if id != "" {
		s.keys[id] = kid
	}
	return nil
}
