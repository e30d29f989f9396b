package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"slices"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
)

// The JWK decoder. Every JWK wsproof reads, in a registry, a pinned set, a
// server key file or alone, is decoded here under the member rules of spec
// section "Load-time rules", and the key it holds is then checked by
// CheckKey, as keys from every other format are. go-jose's decoder is not
// used: it calls an RSA JWK private only when "d" is present (a JWK with "p"
// but no "d" loaded as a public key), decodes base64url leniently (unused
// bits, line breaks), accepts non-minimal integers, and ignores "oth",
// "key_ops" and the members of other key types.

// jwkKeyType lists, for one kty, the members that hold key material.
type jwkKeyType struct {
	public, private []string
}

var jwkKeyTypes = map[string]jwkKeyType{
	"EC":  {public: []string{"crv", "x", "y"}, private: []string{"d"}},
	"RSA": {public: []string{"n", "e"}, private: []string{"d", "p", "q", "dp", "dq", "qi"}},
	"OKP": {public: []string{"crv", "x"}, private: []string{"d"}},
}

// jwaKeyMembers are the key parameters of every key type of RFC 7518
// section 6 and RFC 8037: a JWK carrying one that its kty does not define
// ("k" on an EC key, "crv" on an RSA key, "oth" anywhere) is refused rather
// than ignored, since another implementation may read it.
var jwaKeyMembers = []string{"crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ecCurves are the JWK curve names of the ES algorithms.
var ecCurves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

// jwk is a decoded JWK: the key, public or private, and the members that
// describe it.
type jwk struct {
	key any // *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey, or the private types
	kid string
	alg Algorithm // "" if absent
}

// parseJWKMembers decodes one JWK under the member rules. It checks the key
// material's encoding and consistency; the key itself is checked by the
// caller with CheckKey or checkPrivate.
func parseJWKMembers(data []byte) (*jwk, error) {
	o, err := strictjson.ParseObject(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	kty, err := o.Str("kty")
	if err != nil {
		return nil, invalidf(`JWK "kty" missing or not a string`)
	}
	if kty == "oct" {
		return nil, invalidf("symmetric (oct) JWKs are not signing keys")
	}
	kt, ok := jwkKeyTypes[kty]
	if !ok {
		return nil, invalidf(`JWK "kty" is not EC, RSA or OKP`)
	}
	for _, m := range jwaKeyMembers {
		if o.Has(m) && !slices.Contains(kt.public, m) && !slices.Contains(kt.private, m) {
			return nil, invalidf("JWK member %q does not belong to a %s key", m, kty)
		}
	}
	// Every key member is a string; all but crv are canonical base64url.
	octets := map[string][]byte{}
	for _, m := range slices.Concat(kt.public, kt.private) {
		if !o.Has(m) {
			continue
		}
		s, err := o.Str(m)
		if err != nil {
			return nil, invalidf("JWK member %q is not a string", m)
		}
		if m == "crv" {
			continue
		}
		if octets[m], err = b64u.Decode(s); err != nil {
			return nil, invalidf("JWK member %q is not canonical base64url", m)
		}
	}
	nPrivate := 0
	for _, m := range kt.private {
		if o.Has(m) {
			nPrivate++
		}
	}
	private := nPrivate > 0
	if private && nPrivate != len(kt.private) {
		return nil, invalidf("%s JWK has some private members but not all of %v", kty, kt.private)
	}
	for _, m := range kt.public {
		if !o.Has(m) {
			return nil, invalidf("%s JWK without %q", kty, m)
		}
	}

	j := &jwk{}
	if o.Has("kid") {
		if j.kid, err = o.Str("kid"); err != nil {
			return nil, invalidf(`JWK "kid" is not a string`)
		}
	}
	if o.Has("alg") {
		a, err := o.Str("alg")
		if err != nil || !slices.Contains(Algorithms, Algorithm(a)) {
			return nil, invalidf(`JWK "alg" is not a wsproof algorithm`)
		}
		j.alg = Algorithm(a)
	}
	if o.Has("use") {
		if use, err := o.Str("use"); err != nil || use != "sig" {
			return nil, invalidf(`JWK "use" is not "sig"`)
		}
	}
	if o.Has("key_ops") {
		ops, err := o.Strs("key_ops", 2, 16)
		switch {
		case err != nil:
			return nil, invalidf(`JWK "key_ops" is not an array of strings`)
		case !private && !slices.Equal(ops, []string{"verify"}):
			return nil, invalidf(`JWK "key_ops" of a public key is not ["verify"]`)
		case private && !slices.Equal(ops, []string{"sign"}) &&
			!slices.Equal(ops, []string{"sign", "verify"}) && !slices.Equal(ops, []string{"verify", "sign"}):
			return nil, invalidf(`JWK "key_ops" of a private key is not ["sign"] or ["sign","verify"]`)
		}
	}

	switch kty {
	case "EC":
		crv, _ := o.Str("crv")
		c, ok := ecCurves[crv]
		if !ok {
			return nil, invalidf("EC JWK curve is not P-256, P-384 or P-521")
		}
		size := (c.Params().BitSize + 7) / 8
		x, y := octets["x"], octets["y"]
		if len(x) != size || len(y) != size {
			return nil, invalidf("EC JWK coordinate of the wrong length for %s", crv)
		}
		pub := &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		j.key = pub
		if private {
			d := octets["d"]
			if len(d) != size {
				return nil, invalidf("EC JWK \"d\" of the wrong length for %s", crv)
			}
			priv, err := ecdsa.ParseRawPrivateKey(c, d)
			if err != nil || !priv.PublicKey.Equal(pub) {
				return nil, invalidf("ECDSA public key does not match private key")
			}
			j.key = priv
		}
	case "OKP":
		if crv, _ := o.Str("crv"); crv != "Ed25519" {
			return nil, invalidf("OKP JWK curve is not Ed25519")
		}
		x := octets["x"]
		if len(x) != ed25519.PublicKeySize {
			return nil, invalidf("Ed25519 JWK \"x\" of %d octets", len(x))
		}
		j.key = ed25519.PublicKey(x)
		if private {
			d := octets["d"]
			if len(d) != ed25519.SeedSize {
				return nil, invalidf("Ed25519 JWK \"d\" of %d octets", len(d))
			}
			priv := ed25519.NewKeyFromSeed(d)
			if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(x)) {
				return nil, invalidf("Ed25519 public key does not match private key")
			}
			j.key = priv
		}
	case "RSA":
		ints := map[string]*big.Int{}
		for _, m := range slices.Concat(kt.public, kt.private) {
			b, ok := octets[m]
			if !ok {
				continue
			}
			// RFC 7518 section 2, Base64urlUInt: the minimum number of
			// octets, zero being one zero octet.
			if len(b) == 0 || (b[0] == 0 && len(b) > 1) {
				return nil, invalidf("RSA JWK member %q is not a minimal unsigned integer", m)
			}
			ints[m] = new(big.Int).SetBytes(b)
		}
		e := ints["e"]
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, invalidf("RSA exponent out of range")
		}
		pub := &rsa.PublicKey{N: ints["n"], E: int(e.Int64())}
		j.key = pub
		if private {
			if err := checkRSA(pub); err != nil {
				return nil, err
			}
			priv := &rsa.PrivateKey{PublicKey: *pub, D: ints["d"], Primes: []*big.Int{ints["p"], ints["q"]}}
			priv.Precompute()
			if err := priv.Validate(); err != nil || priv.Precomputed.Dp == nil {
				return nil, invalidf("inconsistent RSA private key")
			}
			if priv.Precomputed.Dp.Cmp(ints["dp"]) != 0 || priv.Precomputed.Dq.Cmp(ints["dq"]) != 0 ||
				priv.Precomputed.Qinv.Cmp(ints["qi"]) != 0 {
				return nil, invalidf("RSA JWK CRT members do not match its primes")
			}
			j.key = priv
		}
	}
	return j, nil
}
