package keys

// Tests of the key load-time rules of spec section "Load-time rules" that
// issue 12 added (key import at the level of Project Wycheproof's
// json_web_key tests): each rule is checked on every load path that can
// carry the key it refuses.

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/ssh"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
)

// jwkMap returns a JWK as a map, to edit.
func jwkMap(tb testing.TB, jwk []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(jwk, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// with returns a copy of m with the members of kv (name, value pairs) set,
// or removed where the value is del.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == del {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

type deleted struct{}

var del = deleted{}

func keySet(tb testing.TB, members ...map[string]any) []byte {
	tb.Helper()
	return mustJSON(tb, map[string]any{"keys": members})
}

// publicPaths loads the public JWK m through every path that reads a public
// JWK: alone, as a registry entry (with a sub), in a registry and in a pinned
// set.
func publicPaths(tb testing.TB, m map[string]any) map[string]error {
	tb.Helper()
	jwk := mustJSON(tb, m)
	entry := with(m, "sub", "device")
	return map[string]error{
		"ParseJWK":       jwkErr(jwk),
		"ParsePublicKey": errOf(ParsePublicKey(jwk)),
		"ParseEntry":     errOf(ParseEntry(mustJSON(tb, entry))),
		"ParseRegistry":  errOf(ParseRegistry(keySet(tb, entry))),
		"ParsePublicSet": errOf(ParsePublicSet(keySet(tb, m))),
	}
}

var tokenKeyJWK = map[string]any{"kty": "oct", "kid": "token", "alg": "dir", "k": b64u.Encode(make([]byte, 32))}

// privatePaths loads the private JWK m through every path that reads a
// private JWK.
func privatePaths(tb testing.TB, m map[string]any) map[string]error {
	tb.Helper()
	jwk := mustJSON(tb, m)
	return map[string]error{
		"ParseJWK":        jwkErr(jwk),
		"ParsePrivateKey": errOf(ParsePrivateKey(jwk)),
		"ParseServerKeys": errOf(ParseServerKeys(keySet(tb, m, tokenKeyJWK))),
	}
}

// publicKeyPaths loads pub through every path that takes a public key, in
// any format or as a Go value, registered for alg.
func publicKeyPaths(tb testing.TB, pub crypto.PublicKey, alg Algorithm) map[string]error {
	tb.Helper()
	out := map[string]error{
		"CheckKey":     CheckKey(alg, pub),
		"NewSet":       errOf(NewSet([]*Entry{{KeyID: "k", Key: pub, Algorithm: alg, Subject: "s"}})),
		"NewPublicSet": errOf(NewPublicSet([]PublicKey{{KeyID: "k", Key: pub, Algorithm: alg}})),
		"ServerKeys.Check": (&ServerKeys{
			Signing: []SigningKey{{KeyID: "k", Algorithm: alg, Signer: publicOnly{pub}}},
			Token:   []TokenKey{{KeyID: "t", Algorithm: TokenDir, Secret: make([]byte, 32)}},
		}).Check(),
		"MarshalJWK":           errOf(MarshalJWK(pub, "k", alg)),
		"MarshalPublicPEM":     errOf(MarshalPublicPEM(pub)),
		"MarshalAuthorizedKey": errOf(MarshalAuthorizedKey(pub, "")),
	}
	if der, err := x509.MarshalPKIXPublicKey(pub); err == nil {
		out["ParsePublicKey SPKI"] = errOf(ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	if k, ok := pub.(*rsa.PublicKey); ok {
		out["ParsePublicKey PKCS#1"] = errOf(ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)})))
	}
	if k, err := ssh.NewPublicKey(pub); err == nil {
		line := ssh.MarshalAuthorizedKey(k)
		out["ParsePublicKey OpenSSH"] = errOf(ParsePublicKey(line))
		out["ParseAuthorizedKeys"] = errOf(ParseAuthorizedKeys(line))
	}
	if m, err := MarshalJWKUnchecked(pub, "k", alg); err == nil {
		for name, err := range publicPaths(tb, m) {
			out[name] = err
		}
	}
	return out
}

// MarshalJWKUnchecked is the JWK of pub as a map, written without any check.
func MarshalJWKUnchecked(pub crypto.PublicKey, kid string, alg Algorithm) (map[string]any, error) {
	m := map[string]any{"kid": kid, "alg": string(alg)}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64u.Encode(k.N.Bytes()), b64u.Encode(big.NewInt(int64(k.E)).Bytes())
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u.Encode(k)
	default:
		return nil, errors.New("unsupported")
	}
	return m, nil
}

// publicOnly is a signer that cannot sign, for checks that look only at the
// public key.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }
func (p publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("publicOnly cannot sign")
}

// refused fails t for each path that accepted its key or failed with an
// error that does not wrap ErrInvalidKey.
func refused(t *testing.T, errs map[string]error) {
	t.Helper()
	for _, path := range slices.Sorted(maps.Keys(errs)) {
		switch err := errs[path]; {
		case err == nil:
			t.Errorf("%s accepts it", path)
		case !errors.Is(err, ErrInvalidKey):
			t.Errorf("%s: err = %v, want ErrInvalidKey", path, err)
		}
	}
}

func accepted(t *testing.T, errs map[string]error) {
	t.Helper()
	for _, path := range slices.Sorted(maps.Keys(errs)) {
		if err := errs[path]; err != nil {
			t.Errorf("%s refuses it: %v", path, err)
		}
	}
}

// Defect 1: an RSA JWK with some private members but no d is a private key
// with members missing, not a public key.
func TestPartialRSAPrivateKey(t *testing.T) {
	priv := jwkMap(t, mustJWK(t, testSigner(t, RS256), RS256))
	pub := jwkMap(t, mustJWK(t, testSigner(t, RS256).Public(), RS256))
	for _, m := range []string{"p", "q", "dp", "dq", "qi"} {
		t.Run(m+" without d", func(t *testing.T) {
			refused(t, publicPaths(t, with(pub, m, priv[m])))
		})
		t.Run("private key without "+m, func(t *testing.T) {
			refused(t, privatePaths(t, with(priv, m, del)))
		})
	}
	t.Run("d alone", func(t *testing.T) {
		refused(t, privatePaths(t, with(pub, "d", priv["d"])))
	})
	t.Run("complete private key", func(t *testing.T) {
		accepted(t, privatePaths(t, priv))
	})
}

// wycheproofRSA reads the Wycheproof json_web_key tests kept in testdata.
func wycheproofRSA(t *testing.T) map[int]struct {
	Public struct{ Keys []map[string]any }
	JWS    string
	Result string
} {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "wycheproof", "json_web_key_rsa.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			TcID   int
			Public struct{ Keys []map[string]any }
			JWS    string
			Result string
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	out := map[int]struct {
		Public struct{ Keys []map[string]any }
		JWS    string
		Result string
	}{}
	for _, tc := range f.Tests {
		out[tc.TcID] = struct {
			Public struct{ Keys []map[string]any }
			JWS    string
			Result string
		}{tc.Public, tc.JWS, tc.Result}
	}
	return out
}

func rsaOfJWK(t *testing.T, m map[string]any) *rsa.PublicKey {
	t.Helper()
	n, err := b64u.Decode(m["n"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: RSAExponent}
}

func verifyJWS(pub crypto.PublicKey, jws string) error {
	i := strings.LastIndexByte(jws, '.')
	sig, err := b64u.Decode(jws[i+1:])
	if err != nil {
		return err
	}
	return Verify(pub, RS256, []byte(jws[:i]), sig)
}

// Defect 2: ROCA moduli (Nemec et al., CCS 2017), with Project Wycheproof's
// json_web_key_test.json tcId 7, and its valid RSA key of tcId 5.
func TestROCA(t *testing.T) {
	w := wycheproofRSA(t)
	roca, valid := w[7], w[5]
	if roca.Result != "invalid" || valid.Result != "valid" {
		t.Fatal("unexpected Wycheproof fixture")
	}
	rocaKey := rsaOfJWK(t, roca.Public.Keys[0])
	validKey := rsaOfJWK(t, valid.Public.Keys[0])
	t.Run("fingerprint", func(t *testing.T) {
		if !isROCA(rocaKey.N) {
			t.Error("tcId 7's modulus is not fingerprinted")
		}
		if isROCA(validKey.N) {
			t.Error("tcId 5's modulus is fingerprinted")
		}
		for i := 0; i < 3; i++ {
			k, err := GenerateRSA(MinRSABits, nil)
			if err != nil {
				t.Fatal(err)
			}
			if isROCA(k.N) {
				t.Error("a freshly generated modulus is fingerprinted")
			}
		}
	})
	t.Run("tcId 7 refused on every path", func(t *testing.T) {
		refused(t, publicKeyPaths(t, rocaKey, RS256))
		refused(t, publicPaths(t, roca.Public.Keys[0]))
		if err := verifyJWS(rocaKey, roca.JWS); err == nil {
			t.Error("Verify accepts tcId 7's JWS under its ROCA key")
		}
	})
	t.Run("tcId 5 accepted", func(t *testing.T) {
		accepted(t, publicPaths(t, valid.Public.Keys[0]))
		if err := verifyJWS(validKey, valid.JWS); err != nil {
			t.Errorf("tcId 5's JWS does not verify: %v", err)
		}
	})
}

// TestROCASubgroups checks the subgroups generated by 65537 against the first
// fingerprints of the reference implementation (roca-detect), bit r of the
// fingerprint for prime p being set iff r is in the subgroup modulo p.
func TestROCASubgroups(t *testing.T) {
	for i, want := range []uint64{6, 30, 126, 1026, 5658, 107286, 199410, 8388606} {
		var got uint64
		for r := range rocaPrimes[i] {
			if rocaResidues[i][r] {
				got |= 1 << r
			}
		}
		if got != want {
			t.Errorf("prime %d: fingerprint %d, want %d", rocaPrimes[i], got, want)
		}
	}
}

// bumpLast sets unused bits of a base64url string of a length that is 2 or
// 3 modulo 4: the same octets, a non-canonical encoding.
func bumpLast(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i+1])
}

// Defect 3: non-canonical base64url in every key member.
func TestNonCanonicalKeyMembers(t *testing.T) {
	ec := testSigner(t, ES256)
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)
	rsaKey := testSigner(t, RS256)
	pubs := map[string]map[string]any{
		"EC": jwkMap(t, mustJWK(t, ec.Public(), ES256)), "OKP": jwkMap(t, mustJWK(t, ed.Public(), EdDSA)),
		"RSA": jwkMap(t, mustJWK(t, rsaKey.Public(), RS256)),
	}
	privs := map[string]map[string]any{
		"EC": jwkMap(t, mustJWK(t, ec, ES256)), "OKP": jwkMap(t, mustJWK(t, ed, EdDSA)),
		"RSA": jwkMap(t, mustJWK(t, rsaKey, RS256)),
	}
	for kty, pub := range pubs {
		for _, name := range slices.Sorted(maps.Keys(privs[kty])) {
			v, ok := privs[kty][name].(string)
			if !ok || name == "kty" || name == "kid" || name == "alg" || name == "use" || name == "crv" {
				continue
			}
			_, public := pub[name]
			variants := map[string]string{"escaped newline": v[:2] + "\n" + v[2:], "escaped CR": v[:2] + "\r" + v[2:], "padding": v + "="}
			if len(v)%4 >= 2 {
				variants["unused bits"] = bumpLast(v)
			}
			for what, bad := range variants {
				t.Run(fmt.Sprintf("%s %s %s", kty, name, what), func(t *testing.T) {
					if public {
						refused(t, publicPaths(t, with(pub, name, bad)))
					}
					refused(t, privatePaths(t, with(privs[kty], name, bad)))
				})
			}
		}
	}
}

// Defect 4: one key is one identity, under one kid and one algorithm, and
// kids differ in more than case.
func TestOneKeyOneIdentity(t *testing.T) {
	rsaKey := testSigner(t, RS256)
	ec := testSigner(t, ES256)
	ec2 := genKey(t, ES256)
	token := TokenKey{KeyID: "t", Algorithm: TokenDir, Secret: make([]byte, 32)}
	type key struct {
		kid string
		alg Algorithm
		s   crypto.Signer
	}
	cases := map[string][]key{
		"one RSA key as RS256 and PS256": {{"a", RS256, rsaKey}, {"b", PS256, rsaKey}},
		"one EC key under two kids":      {{"a", ES256, ec}, {"b", ES256, ec}},
		"kids that differ in case":       {{"Key-A", ES256, ec}, {"key-a", ES256, ec2}},
	}
	for name, ks := range cases {
		t.Run(name, func(t *testing.T) {
			var entries []*Entry
			var pubs []PublicKey
			var signing []SigningKey
			var reg, pinned, private []map[string]any
			for _, k := range ks {
				entries = append(entries, &Entry{KeyID: k.kid, Key: k.s.Public(), Algorithm: k.alg, Subject: "s"})
				pubs = append(pubs, PublicKey{KeyID: k.kid, Key: k.s.Public(), Algorithm: k.alg})
				signing = append(signing, SigningKey{KeyID: k.kid, Algorithm: k.alg, Signer: k.s})
				pub := jwkMap(t, must(MarshalJWK(k.s.Public(), k.kid, k.alg)))
				pinned = append(pinned, pub)
				reg = append(reg, with(pub, "sub", "s"))
				private = append(private, jwkMap(t, must(MarshalJWK(k.s, k.kid, k.alg))))
			}
			private = append(private, tokenKeyJWK)
			refused(t, map[string]error{
				"NewSet":           errOf(NewSet(entries)),
				"NewPublicSet":     errOf(NewPublicSet(pubs)),
				"ServerKeys.Check": (&ServerKeys{Signing: signing, Token: []TokenKey{token}}).Check(),
				"ParseRegistry":    errOf(ParseRegistry(keySet(t, reg...))),
				"ParsePublicSet":   errOf(ParsePublicSet(keySet(t, pinned...))),
				"ParseServerKeys":  errOf(ParseServerKeys(keySet(t, private...))),
			})
		})
	}
	t.Run("token kids that differ in case", func(t *testing.T) {
		t2 := TokenKey{KeyID: "T", Algorithm: TokenDir, Secret: make([]byte, 32)}
		tk := func(k TokenKey) map[string]any {
			return map[string]any{"kty": "oct", "kid": k.KeyID, "alg": k.Algorithm, "k": b64u.Encode(k.Secret)}
		}
		refused(t, map[string]error{
			"ServerKeys.Check": (&ServerKeys{Signing: []SigningKey{{"a", ES256, ec}}, Token: []TokenKey{token, t2}}).Check(),
			"ParseTokenKeys":   errOf(ParseTokenKeys(keySet(t, tk(token), tk(t2)))),
		})
	})
	t.Run("distinct keys and kids", func(t *testing.T) {
		accepted(t, map[string]error{
			"NewSet": errOf(NewSet([]*Entry{{KeyID: "a", Key: ec.Public(), Algorithm: ES256, Subject: "s"},
				{KeyID: "b", Key: ec2.Public(), Algorithm: ES256, Subject: "s"}})),
		})
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Defect 5: the other member rules.
func TestKeyMemberRules(t *testing.T) {
	rsaKey := testSigner(t, RS256).(*rsa.PrivateKey)
	ec := testSigner(t, ES256)
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)
	rsaPub := jwkMap(t, mustJWK(t, &rsaKey.PublicKey, RS256))
	ecPub := jwkMap(t, mustJWK(t, ec.Public(), ES256))
	edPub := jwkMap(t, mustJWK(t, ed.Public(), EdDSA))
	ecPriv := jwkMap(t, mustJWK(t, ec, ES256))
	rsaPriv := jwkMap(t, mustJWK(t, rsaKey, RS256))
	n := rsaPub["n"].(string)
	nBytes := must(b64u.Decode(n))
	even := new(big.Int).SetBytes(nBytes)
	even.SetBit(even, 0, 0)

	refusedPublic := map[string]map[string]any{
		"e with a leading zero":            with(rsaPub, "e", "AAEAAQ"),
		"n with a leading zero":            with(rsaPub, "n", b64u.Encode(append([]byte{0}, nBytes...))),
		"even modulus":                     with(rsaPub, "n", b64u.Encode(even.Bytes())),
		`"use":""`:                         with(ecPub, "use", ""),
		`"use":null`:                       with(ecPub, "use", nil),
		`"d":null`:                         with(ecPub, "d", nil),
		`"n":null on RSA`:                  with(rsaPub, "n", nil),
		`"x" a number`:                     with(edPub, "x", 7),
		`key_ops ["sign"] on a public key`: with(ecPub, "key_ops", []string{"sign"}),
		`key_ops ["verify","sign"]`:        with(ecPub, "key_ops", []string{"verify", "sign"}),
		`key_ops ["verify","verify"]`:      with(ecPub, "key_ops", []string{"verify", "verify"}),
		`key_ops ["encrypt"]`:              with(ecPub, "key_ops", []string{"encrypt"}),
		`key_ops []`:                       with(ecPub, "key_ops", []string{}),
		`key_ops "verify"`:                 with(ecPub, "key_ops", "verify"),
		`key_ops null`:                     with(ecPub, "key_ops", nil),
		`key_ops [7]`:                      with(ecPub, "key_ops", []int{7}),
		"oth":                              with(rsaPub, "oth", []map[string]string{{"r": "AQ", "d": "AQ", "t": "AQ"}}),
		"k on EC":                          with(ecPub, "k", "AQ"),
		"k on RSA":                         with(rsaPub, "k", "AQ"),
		"k on OKP":                         with(edPub, "k", "AQ"),
		"crv on RSA":                       with(rsaPub, "crv", "P-256"),
		"n on EC":                          with(ecPub, "n", n),
		"y on OKP":                         with(edPub, "y", ecPub["y"]),
	}
	for name, m := range refusedPublic {
		t.Run(name, func(t *testing.T) { refused(t, publicPaths(t, m)) })
	}
	refusedPrivate := map[string]map[string]any{
		`key_ops ["verify"] on a private key`: with(ecPriv, "key_ops", []string{"verify"}),
		`key_ops ["sign","sign"]`:             with(ecPriv, "key_ops", []string{"sign", "sign"}),
		"RSA d with a leading zero":           with(rsaPriv, "d", b64u.Encode(append([]byte{0}, must(b64u.Decode(rsaPriv["d"].(string)))...))),
		"RSA dp of another key":               with(rsaPriv, "dp", rsaPriv["dq"]),
		"RSA qi wrong":                        with(rsaPriv, "qi", "AQ"),
		"EC d one octet short":                with(ecPriv, "d", b64u.Encode(must(b64u.Decode(ecPriv["d"].(string)))[1:])),
		"oth on a private RSA key":            with(rsaPriv, "oth", []map[string]string{{"r": "AQ", "d": "AQ", "t": "AQ"}}),
	}
	for name, m := range refusedPrivate {
		t.Run(name, func(t *testing.T) { refused(t, privatePaths(t, m)) })
	}
	t.Run("even modulus as a Go value", func(t *testing.T) {
		refused(t, publicKeyPaths(t, &rsa.PublicKey{N: even, E: RSAExponent}, RS256))
	})
	for name, m := range map[string]map[string]any{
		`key_ops ["verify"]`:          with(ecPub, "key_ops", []string{"verify"}),
		`key_ops ["verify"] with use`: with(ecPub, "key_ops", []string{"verify"}, "use", "sig"),
		"no use":                      with(rsaPub, "use", del),
		"unknown member":              with(edPub, "x-note", "ignored"),
	} {
		t.Run("accepted: "+name, func(t *testing.T) { accepted(t, publicPaths(t, m)) })
	}
	for name, m := range map[string]map[string]any{
		`key_ops ["sign"]`:          with(ecPriv, "key_ops", []string{"sign"}),
		`key_ops ["sign","verify"]`: with(ecPriv, "key_ops", []string{"sign", "verify"}),
	} {
		t.Run("accepted private: "+name, func(t *testing.T) { accepted(t, privatePaths(t, m)) })
	}
}

// Ed25519 points of small order and other refused encodings (RFC 8032
// section 5.1.3; the small-order list is libsodium's and Wycheproof's).
var ed25519Refused = map[string]string{
	"identity (order 1)":                         "0100000000000000000000000000000000000000000000000000000000000000",
	"(0, -1) (order 2)":                          "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"y = 0 (order 4)":                            "0000000000000000000000000000000000000000000000000000000000000000",
	"y = 0, x negative (order 4)":                "0000000000000000000000000000000000000000000000000000000000000080",
	"order 8":                                    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"order 8, the other":                         "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"identity, x = 0 with the sign bit set":      "0100000000000000000000000000000000000000000000000000000000000080",
	"y = p, non-canonical 0":                     "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"y = p + 1, non-canonical identity":          "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"y = 2, not a point":                         "0200000000000000000000000000000000000000000000000000000000000000",
	"y = 2^255 - 1 (non-canonical), not a point": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// mixedOrderKey returns a valid public key plus a point of order 8: a key
// with a small-order component.
func mixedOrderKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	a, err := new(edwards25519.Point).SetBytes(ed25519.NewKeyFromSeed(rfc8037Seed).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	t8b, _ := hex.DecodeString(ed25519Refused["order 8"])
	t8, err := new(edwards25519.Point).SetBytes(t8b)
	if err != nil {
		t.Fatal(err)
	}
	return new(edwards25519.Point).Add(a, t8).Bytes()
}

// Defect 6: Ed25519 keys of small order, or not on the curve, or
// non-canonically encoded, are refused on every path, and the signature that
// verifies for any message under the identity key is refused by Verify.
func TestEd25519PointRules(t *testing.T) {
	for name, h := range ed25519Refused {
		t.Run(name, func(t *testing.T) {
			pub, _ := hex.DecodeString(h)
			refused(t, publicKeyPaths(t, ed25519.PublicKey(pub), EdDSA))
		})
	}
	t.Run("small-order component", func(t *testing.T) {
		// Not refused (spec section "Algorithms"): the cofactorless
		// equation allows no forgery under such a key.
		accepted(t, publicKeyPaths(t, mixedOrderKey(t), EdDSA))
	})
	t.Run("Verify's blocklist agrees with CheckKey", func(t *testing.T) {
		for name, h := range ed25519Refused {
			pub, _ := hex.DecodeString(h)
			point, err := new(edwards25519.Point).SetBytes(pub)
			small := err == nil && new(edwards25519.Point).MultByCofactor(point).Equal(edwards25519.NewIdentityPoint()) == 1
			if ed25519SmallOrder(pub) != small {
				t.Errorf("%s: blocklist says %v, the curve says %v", name, ed25519SmallOrder(pub), small)
			}
		}
		if ed25519SmallOrder(mixedOrderKey(t)) {
			t.Error("blocklist refuses a key of order 8ℓ")
		}
	})
	t.Run("forgery under the identity key", func(t *testing.T) {
		identity, _ := hex.DecodeString(ed25519Refused["identity (order 1)"])
		sig := make([]byte, 64)
		sig[0] = 1 // R = identity, S = 0
		for _, msg := range []string{"a challenge", "another challenge"} {
			if !ed25519.Verify(identity, []byte(msg), sig) {
				t.Fatal("crypto/ed25519 no longer accepts the forgery: update this test")
			}
			if err := Verify(ed25519.PublicKey(identity), EdDSA, []byte(msg), sig); err == nil {
				t.Error("Verify accepts a signature made without a private key")
			}
		}
	})
	t.Run("valid key", func(t *testing.T) {
		accepted(t, publicKeyPaths(t, ed25519.NewKeyFromSeed(rfc8037Seed).Public(), EdDSA))
	})
}

type nilParamsCurve struct{ elliptic.Curve }

func (nilParamsCurve) Params() *elliptic.CurveParams { return nil }

// Defect 7: no exported function that takes a public key panics on one
// that is nil, half-built or of a foreign type.
func TestMalformedGoKeys(t *testing.T) {
	p256 := elliptic.P256()
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub := ed25519.NewKeyFromSeed(rfc8037Seed).Public().(ed25519.PublicKey)
	bad := map[string]crypto.PublicKey{
		"nil":                        nil,
		"nil *ecdsa.PublicKey":       (*ecdsa.PublicKey)(nil),
		"ecdsa without curve":        &ecdsa.PublicKey{},
		"ecdsa nil coordinates":      &ecdsa.PublicKey{Curve: p256},
		"ecdsa nil Y":                &ecdsa.PublicKey{Curve: p256, X: big.NewInt(1)},
		"ecdsa nil X":                &ecdsa.PublicKey{Curve: p256, Y: big.NewInt(1)},
		"ecdsa negative X":           &ecdsa.PublicKey{Curve: p256, X: big.NewInt(-1), Y: big.NewInt(1)},
		"ecdsa curve without params": &ecdsa.PublicKey{Curve: nilParamsCurve{p256}, X: big.NewInt(1), Y: big.NewInt(1)},
		"nil *rsa.PublicKey":         (*rsa.PublicKey)(nil),
		"rsa zero value":             &rsa.PublicKey{},
		"rsa negative modulus":       &rsa.PublicKey{N: new(big.Int).Neg(testSigner(t, RS256).(*rsa.PrivateKey).N), E: RSAExponent},
		"nil ed25519.PublicKey":      ed25519.PublicKey(nil),
		"short ed25519.PublicKey":    edPub[:31],
		"*ed25519.PublicKey":         &edPub,
		"[]byte":                     []byte(edPub),
		"string":                     "key",
		"int":                        42,
		"*ecdh.PublicKey":            x25519.PublicKey(),
		"ed25519.PrivateKey":         ed25519.NewKeyFromSeed(rfc8037Seed),
	}
	for name, pub := range bad {
		t.Run(name, func(t *testing.T) {
			errs := map[string]error{}
			try := func(f string, call func() error) {
				defer func() {
					if r := recover(); r != nil {
						errs[f] = fmt.Errorf("panic: %v", r)
					}
				}()
				errs[f] = call()
			}
			for _, alg := range Algorithms {
				try("CheckKey "+string(alg), func() error { return CheckKey(alg, pub) })
				try("Verify "+string(alg), func() error {
					err := Verify(pub, alg, []byte("x"), make([]byte, 64))
					if errors.Is(err, ErrBadSignature) {
						return nil // not refused as a key
					}
					return err
				})
				try("Sign "+string(alg), func() error { return errOf(Sign(rand.Reader, publicOnly{pub}, alg, []byte("x"))) })
				try("NewSet "+string(alg), func() error {
					return errOf(NewSet([]*Entry{{KeyID: "k", Key: pub, Algorithm: alg, Subject: "s"}}))
				})
				try("NewPublicSet "+string(alg), func() error {
					return errOf(NewPublicSet([]PublicKey{{KeyID: "k", Key: pub, Algorithm: alg}}))
				})
				try("MarshalEntry "+string(alg), func() error {
					return errOf(MarshalEntry(&Entry{KeyID: "k", Key: pub, Algorithm: alg, Subject: "s"}))
				})
				try("MarshalRegistry "+string(alg), func() error {
					return errOf(MarshalRegistry([]*Entry{{KeyID: "k", Key: pub, Algorithm: alg, Subject: "s"}}))
				})
				if _, private := pub.(crypto.Signer); !private { // MarshalJWK takes private keys too
					try("MarshalJWK "+string(alg), func() error { return errOf(MarshalJWK(pub, "k", alg)) })
				}
				try("ServerKeys.Check "+string(alg), func() error {
					return (&ServerKeys{Signing: []SigningKey{{KeyID: "k", Algorithm: alg, Signer: publicOnly{pub}}},
						Token: []TokenKey{{KeyID: "t", Algorithm: TokenDir, Secret: make([]byte, 32)}}}).Check()
				})
			}
			try("Thumbprint", func() error { return errOf(Thumbprint(pub)) })
			try("AlgorithmsFor", func() error {
				if a := AlgorithmsFor(pub); len(a) > 0 {
					return nil
				}
				return ErrInvalidKey
			})
			try("MarshalPublicPEM", func() error { return errOf(MarshalPublicPEM(pub)) })
			try("MarshalAuthorizedKey", func() error { return errOf(MarshalAuthorizedKey(pub, "")) })
			try("MarshalPrivatePEM", func() error { return errOf(MarshalPrivatePEM(publicOnly{pub})) })
			try("MarshalOpenSSHPrivate", func() error { return errOf(MarshalOpenSSHPrivate(publicOnly{pub}, "")) })
			refused(t, errs)
		})
	}
	t.Run("nil entry", func(t *testing.T) {
		errs := map[string]error{}
		func() {
			defer func() {
				if r := recover(); r != nil {
					errs["NewSet"] = fmt.Errorf("panic: %v", r)
				}
			}()
			errs["NewSet"] = errOf(NewSet([]*Entry{nil}))
		}()
		func() {
			defer func() {
				if r := recover(); r != nil {
					errs["MarshalRegistry"] = fmt.Errorf("panic: %v", r)
				}
			}()
			errs["MarshalRegistry"] = errOf(MarshalRegistry([]*Entry{nil}))
		}()
		refused(t, errs)
	})
}

// TestKeyVectorsRegistryAndPinned runs every key vector through both of
// Go's set loaders: ParseRegistry must give the vector's outcome, and
// ParsePublicSet the same except for the vectors whose only fault is a
// registry member, which a pinned set ignores (spec section "Format"). The
// JavaScript client's vector test requires loadServerKeys to agree with
// ParsePublicSet on every vector.
func TestKeyVectorsRegistryAndPinned(t *testing.T) {
	registryOnly := []string{"key-groups-not-array", "key-missing-sub"}
	f, err := vectorfile.Load(filepath.Join("..", vectorfile.Path))
	if err != nil {
		t.Fatal(err)
	}
	outcome := func(err error) string {
		switch {
		case err == nil:
			return vectorfile.Valid
		case errors.Is(err, ErrInvalidKey):
			return "bad_key"
		}
		return err.Error()
	}
	n := 0
	for _, v := range f.Vectors {
		if v.Role != vectorfile.RoleKey {
			continue
		}
		n++
		want := v.Error
		if want == "" {
			want = vectorfile.Valid
		}
		if got := outcome(errOf(ParseRegistry([]byte(v.KeySet)))); got != want {
			t.Errorf("%s: ParseRegistry: %s, want %s", v.ID, got, want)
		}
		if slices.Contains(registryOnly, v.ID) {
			want = vectorfile.Valid
		}
		if got := outcome(errOf(ParsePublicSet([]byte(v.KeySet)))); got != want {
			t.Errorf("%s: ParsePublicSet: %s, want %s", v.ID, got, want)
		}
	}
	if n < 50 {
		t.Errorf("only %d key vectors", n)
	}
}
