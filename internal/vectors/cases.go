package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

func step(sec string, n int) string { return fmt.Sprintf("%s, step %d", sec, n) }

func (g *gen) thumb(kid string) string {
	t, err := keys.Thumbprint(g.Clients[kid].Public())
	if err != nil {
		panic(err)
	}
	return t
}

func (g *gen) publicJWK(kid string) string {
	j, err := keys.MarshalJWK(g.Clients[kid].Public(), kid, g.Algs[kid])
	if err != nil {
		panic(err)
	}
	return string(j)
}

// tokenClaims returns the claims of a token for client-es256 on sid.
func tokenClaims(sid string) *protocol.TokenClaims {
	return &protocol.TokenClaims{Issuer: fixture.Identity, Subject: "device:client-es256", Audience: fixture.Identity, SocketID: sid,
		ID: b64u.Encode(fixture.Derive("jti", 16)), IssuedAt: Now, NotBefore: Now, Expiry: Now + 300,
		Cnf: protocol.Confirmation{JKT: ""}, Groups: []string{"devices", "admins"}, ClientKeyID: "client-es256"}
}

func (g *gen) tokenVectors() error {
	ex := g.f.Vectors[0] // exchange-es256
	sid := ex.Expected.SID
	cl := tokenClaims(sid)
	cl.Cnf.JKT = g.thumb("client-es256")
	inner := func(c *protocol.TokenClaims, typ string, key crypto.Signer, kid string, alg keys.Algorithm) string {
		return fixture.Sign(fixture.Hdr(string(alg), kid, typ), fixture.MustJSON(c), key, alg)
	}
	good := inner(cl, protocol.TypSession, g.Server, fixture.ServerKID, keys.ES256)
	tk := g.SK.Token[0]
	flip := func(tok string, seg int) string {
		p := strings.Split(tok, ".")
		b, _ := b64u.Decode(p[seg])
		b[0] ^= 1
		p[seg] = b64u.Encode(b)
		return strings.Join(p, ".")
	}
	type tv struct {
		id, comment, code string
		now               int64
		sid               string
		token             string
	}
	nyv := *cl
	nyv.NotBefore = Now + 120
	list := []tv{
		{"token-valid", "The token of exchange-es256, opened on its own socket.", "", 0, sid, ex.Token},
		{"token-valid-crafted", "A token built field by field as the spec describes, sealed with dir + A256GCM.", "", 0, sid,
			seal(good, tk, protocol.TypSessionE, "JWT")},
		{"token-valid-a256kw", "The token of exchange-eddsa-a256kw: sealed with the previous, A256KW, token key.", "", 0,
			g.f.Vectors[len(keys.Algorithms)+1].Expected.SID, g.f.Vectors[len(keys.Algorithms)+1].Token},
		{"token-other-socket", "A valid token presented on another socket.", "socket_mismatch", 0,
			b64u.Encode(fixture.Derive("other socket", 16)), ex.Token},
		{"token-expired", "A valid token at its expiry time.", "token_expired", ex.Expected.Expiry, sid, ex.Token},
		{"token-not-yet-valid", "A token whose nbf is 120 s ahead.", "token_invalid", 0, sid,
			seal(inner(&nyv, protocol.TypSession, g.Server, fixture.ServerKID, keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-tampered-ciphertext", "One bit of the ciphertext flipped.", "token_invalid", 0, sid, flip(ex.Token, 3)},
		{"token-tampered-tag", "One bit of the authentication tag flipped.", "token_invalid", 0, sid, flip(ex.Token, 4)},
		{"token-tampered-iv", "One bit of the IV flipped.", "token_invalid", 0, sid, flip(ex.Token, 2)},
		{"token-dir-with-encrypted-key", "A dir token whose encrypted-key segment is not empty.", "token_invalid", 0, sid,
			func() string {
				p := strings.Split(ex.Token, ".")
				p[1] = b64u.Encode([]byte("x"))
				return strings.Join(p, ".")
			}()},
		{"token-tag-shifted", "The last ciphertext byte moved to the front of the tag: same bytes, wrong segment lengths.", "token_invalid", 0, sid,
			func() string {
				p := strings.Split(ex.Token, ".")
				ct, _ := b64u.Decode(p[3])
				tag, _ := b64u.Decode(p[4])
				p[3], p[4] = b64u.Encode(ct[:len(ct)-1]), b64u.Encode(append([]byte{ct[len(ct)-1]}, tag...))
				return strings.Join(p, ".")
			}()},
		{"token-unknown-signing-key", "The inner JWS is signed by a key that is not the server's.", "token_invalid", 0, sid,
			seal(inner(cl, protocol.TypSession, g.Impostor, "impostor", keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-inner-alg-none", "The inner JWS is unsigned.", "token_invalid", 0, sid,
			seal(b64u.Encode([]byte(fixture.Hdr("none", fixture.ServerKID, protocol.TypSession)))+"."+b64u.Encode([]byte(fixture.MustJSON(cl)))+".", tk, protocol.TypSessionE, "JWT")},
		{"token-wrong-outer-typ", `The JWE typ is "JWT".`, "token_invalid", 0, sid, seal(good, tk, "JWT", "JWT")},
		{"token-missing-cty", "The JWE has no cty.", "token_invalid", 0, sid, seal(good, tk, protocol.TypSessionE, "")},
		{"token-wrong-inner-typ", "The inner JWS is typed as a challenge.", "token_invalid", 0, sid,
			seal(inner(cl, protocol.TypChallenge, g.Server, fixture.ServerKID, keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-unknown-token-key", "Sealed with a token key the server does not hold.", "token_invalid", 0, sid,
			seal(good, keys.TokenKey{KeyID: "token-unknown", Algorithm: keys.TokenDir, Secret: fixture.Derive("unknown token key", 32)},
				protocol.TypSessionE, "JWT")},
		{"token-other-issuer", "A well-formed token issued for another server identity.", "token_invalid", 0, sid,
			func() string {
				c := *cl
				c.Issuer, c.Audience = "wss://other.example/ws", "wss://other.example/ws"
				return seal(inner(&c, protocol.TypSession, g.Server, fixture.ServerKID, keys.ES256), tk, protocol.TypSessionE, "JWT")
			}()},
		{"token-oversized", "A token of more than 8192 bytes.", "too_large", 0, sid,
			func() string {
				c := *cl
				c.Subject = strings.Repeat("s", 8192)
				return seal(inner(&c, protocol.TypSession, g.Server, fixture.ServerKID, keys.ES256), tk, protocol.TypSessionE, "JWT")
			}()},
	}
	for _, t := range list {
		v := vectorfile.Vector{ID: t.id, Comment: t.comment, Role: vectorfile.RoleToken, Rule: secToken, Now: t.now,
			SID: t.sid, Token: t.token, Error: t.code}
		if t.code == "" {
			v.Expected = &vectorfile.Expected{SID: t.sid, Subject: cl.Subject, Groups: cl.Groups, ClientKID: cl.ClientKeyID,
				JKT: cl.Cnf.JKT, Expiry: cl.Expiry}
			if t.id == "token-valid-a256kw" {
				x := *g.f.Vectors[len(keys.Algorithms)+1].Expected
				v.Expected = &x
			}
		}
		g.add(v)
	}
	return nil
}

type kv struct {
	id, comment, code string
	set               string
}

// keyVectors are registry key sets that must be refused at load time, and
// some that must load.
func (g *gen) keyVectors() error {
	entry := func(kid string, edit func(map[string]any)) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(g.publicJWK(kid)), &m); err != nil {
			panic(err)
		}
		m["sub"], m["groups"] = "device:"+kid, []string{"devices"}
		if edit != nil {
			edit(m)
		}
		return m
	}
	set := func(members ...any) string { return fixture.MustJSON(map[string]any{"keys": members}) }
	weak := fixture.RSAKey(1024, "weak rsa 1024")
	weakJWK, err := keys.MarshalJWK(&weak.PublicKey, "weak", keys.RS256)
	if err == nil {
		return fmt.Errorf("vectors: MarshalJWK accepted RSA-1024: %s", weakJWK)
	}
	weakEntry := entry("client-rs256", func(m map[string]any) {
		m["kid"], m["n"] = "weak", b64u.Encode(weak.N.Bytes())
	})
	list := []kv{
		{"key-valid", "A registry with one well-formed entry.", "", set(entry("client-es256", nil))},
		{"key-rsa-1024", "An RSA key of 1024 bits.", "bad_key", set(weakEntry)},
		{"key-rsa-exponent-3", "An RSA key with e = 3.", "bad_key", set(entry("client-rs256", func(m map[string]any) { m["e"] = "Aw" }))},
		{"key-off-curve", "A P-256 point that is not on the curve.", "bad_key", set(entry("client-es256", func(m map[string]any) {
			y, _ := b64u.Decode(m["y"].(string))
			y[31] ^= 1
			m["y"] = b64u.Encode(y)
		}))},
		{"key-alg-curve-mismatch", "A P-256 key registered for ES384.", "bad_key", set(entry("client-es256", func(m map[string]any) { m["alg"] = "ES384" }))},
		{"key-alg-kty-mismatch", "An Ed25519 key registered for ES256.", "bad_key", set(entry("client-eddsa", func(m map[string]any) { m["alg"] = "ES256" }))},
		{"key-rsa-registered-hs256", "An RSA key registered for HS256.", "bad_key", set(entry("client-rs256", func(m map[string]any) { m["alg"] = "HS256" }))},
		{"key-use-enc", `A key with "use":"enc".`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["use"] = "enc" }))},
		{"key-symmetric", "A symmetric (oct) key.", "bad_key", set(map[string]any{"kty": "oct", "kid": "shared", "alg": "HS256",
			"k": b64u.Encode(fixture.Derive("oct", 32)), "sub": "device:shared", "groups": []string{"devices"}})},
		{"key-missing-alg", "A key without alg: one key, one algorithm, stated.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "alg") }))},
		{"key-missing-kid", "A key without kid.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "kid") }))},
		{"key-missing-sub", "A key without sub.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "sub") }))},
		{"key-private-member", "A registry entry that holds the private key (d).", "bad_key", set(entry("client-es256", func(m map[string]any) {
			m["d"] = b64u.Encode(g.Clients["client-es256"].(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32)))
		}))},
		{"key-duplicate-kid", "Two entries with one kid.", "bad_key", set(entry("client-es256", nil),
			entry("client-eddsa", func(m map[string]any) { m["kid"] = "client-es256" }))},
		{"key-duplicate-member", "An entry that names sub twice.", "bad_key", strings.Replace(set(entry("client-es256", nil)),
			`"sub":`, `"sub":"device:other","sub":`, 1)},
		{"key-groups-not-array", "groups is a string.", "bad_key", set(entry("client-es256", func(m map[string]any) { m["groups"] = "devices" }))},
	}
	list = append(list, g.importVectors(entry, set)...)
	for _, k := range list {
		g.add(vectorfile.Vector{ID: k.id, Comment: k.comment, Role: vectorfile.RoleKey, Rule: secRegistry, KeySet: k.set, Error: k.code})
	}
	return nil
}

// wycheproofROCAModulus is the RSA modulus of Project Wycheproof's
// json_web_key_test.json tcId 7, "rejectsKeyWithRocaVulnerability"
// (github.com/C2SP/wycheproof, Apache License 2.0; the key set is kept in
// keys/testdata/wycheproof): a modulus with the ROCA fingerprint.
const wycheproofROCAModulus = "AanFpofbj7KjD4Lf-N2hVMKR7yewSyXhhbirIMTGpfYEhZ_lnt5UoK98DnKIgArXGTu3MaW_HhFw16HGaTDUHqPrId7fe4r11CqRw09yBFuW79V8sYIwHdzCaWflUI6auImYbVfoN9_nD5n8N8SY9DwXw7mwZM9wREPXoDPgOoIWl6q_MPsp7n0zs3Z5ZaiQWOOzl1S9OhwAfSiiOwz6efnXEaxuTEtPd7BjSx7NaFka8Dx9U7YqXy2RFj1O9PjyaDGuRh7YXsX3iMUSP_wSyHQg_c_qHRtKUsNSGCT7OZg0hzm2KphtjnayKJvC64vAbROBR4Ubg6Bxg9IQVZ-QYyE"

// importVectors are the key vectors of issue 12: key import at the level of
// Project Wycheproof's json_web_key tests, one vector for each refused case
// of spec section "Load-time rules" that the older vectors did not cover.
func (g *gen) importVectors(entry func(string, func(map[string]any)) map[string]any, set func(...any) string) []kv {
	rsaPriv := g.Clients["client-rs256"].(*rsa.PrivateKey)
	rsaPriv.Precompute()
	privMember := map[string]string{
		"p": b64u.Encode(rsaPriv.Primes[0].Bytes()), "q": b64u.Encode(rsaPriv.Primes[1].Bytes()),
		"dp": b64u.Encode(rsaPriv.Precomputed.Dp.Bytes()), "dq": b64u.Encode(rsaPriv.Precomputed.Dq.Bytes()),
		"qi": b64u.Encode(rsaPriv.Precomputed.Qinv.Bytes()),
	}
	// bump sets the unused bits of the last character of a base64url string
	// whose length is 2 or 3 modulo 4: the same octets, not canonical.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	bump := func(v string) string {
		if len(v)%4 < 2 {
			panic("vectors: no unused bits in " + v)
		}
		return v[:len(v)-1] + string(alphabet[strings.IndexByte(alphabet, v[len(v)-1])+1])
	}
	edit := func(kid, member string, f func(string) string) string {
		return set(entry(kid, func(m map[string]any) { m[member] = f(m[member].(string)) }))
	}
	newline := func(v string) string { return v[:2] + "\n" + v[2:] }
	ed := func(hexKey string) string {
		return set(entry("client-eddsa", func(m map[string]any) {
			b, err := hex.DecodeString(hexKey)
			if err != nil {
				panic(err)
			}
			m["x"] = b64u.Encode(b)
		}))
	}
	n := rsaPriv.N.Bytes()
	even := new(big.Int).SetBytes(n)
	even.SetBit(even, 0, 0)

	list := []kv{
		{"key-valid-key-ops-verify", `A registry entry with "key_ops":["verify"], the one key_ops a public signing key may have.`, "",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"verify"} }))},
		{"key-valid-rsa", "An RSA entry of 2048 bits and an RSA entry under PS256 of another key: one key, one algorithm, distinct keys.", "",
			set(entry("client-rs256", nil), entry("client-ps256", nil))},
	}
	for _, m := range []string{"p", "q", "dp", "dq", "qi"} {
		list = append(list, kv{"key-rsa-" + m + "-without-d",
			fmt.Sprintf("An RSA entry with the private member %s but no d: a private key with members missing, not a public key.", m),
			"bad_key", set(entry("client-rs256", func(mm map[string]any) { mm[m] = privMember[m] }))})
	}
	list = append(list, []kv{
		{"key-rsa-roca", "An RSA modulus with the ROCA fingerprint (CVE-2017-15361): Project Wycheproof json_web_key_test.json tcId 7.", "bad_key",
			set(map[string]any{"kty": "RSA", "n": wycheproofROCAModulus, "e": "AQAB", "kid": "kid-rsa-roca-sign", "alg": "RS256", "use": "sig",
				"sub": "device:roca", "groups": []string{"devices"}})},
		{"key-rsa-even-modulus", "An even RSA modulus.", "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["n"] = b64u.Encode(even.Bytes()) }))},
		{"key-rsa-n-leading-zero", "An RSA modulus with a leading zero octet: integers take the fewest octets.", "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["n"] = b64u.Encode(append([]byte{0}, n...)) }))},
		{"key-rsa-e-leading-zero", `"e":"AAEAAQ", 65537 with a leading zero octet.`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["e"] = "AAEAAQ" }))},
		{"key-rsa-n-unused-bits", "An RSA modulus whose last base64url character has unused bits set.", "bad_key", edit("client-rs256", "n", bump)},
		{"key-rsa-e-escaped-newline", `"e":"AQ\nAB": an escaped line break inside base64url.`, "bad_key", edit("client-rs256", "e", newline)},
		{"key-ec-x-unused-bits", "An EC x coordinate whose last base64url character has unused bits set.", "bad_key", edit("client-es256", "x", bump)},
		{"key-ec-y-unused-bits", "An EC y coordinate whose last base64url character has unused bits set.", "bad_key", edit("client-es256", "y", bump)},
		{"key-ec-y-escaped-newline", "An EC y coordinate with an escaped line break inside.", "bad_key", edit("client-es256", "y", newline)},
		{"key-okp-x-unused-bits", "An Ed25519 x whose last base64url character has unused bits set.", "bad_key", edit("client-eddsa", "x", bump)},
		{"key-okp-x-padded", "An Ed25519 x with base64 padding.", "bad_key", edit("client-eddsa", "x", func(v string) string { return v + "=" })},
		{"key-same-key-two-algorithms", "The same RSA key as RS256 under one kid and PS256 under another: one key, one algorithm.", "bad_key",
			set(entry("client-rs256", nil), entry("client-rs256", func(m map[string]any) { m["kid"], m["alg"] = "client-rs256-pss", "PS256" }))},
		{"key-same-key-two-kids", "The same EC key under two kids with one algorithm: one key, one identity.", "bad_key",
			set(entry("client-es256", nil), entry("client-es256", func(m map[string]any) { m["kid"] = "client-es256-alias" }))},
		{"key-kid-case-variant", "Two keys whose kids differ only in case.", "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["kid"] = "Device-1" }),
				entry("client-eddsa", func(m map[string]any) { m["kid"] = "device-1" }))},
		{"key-use-empty", `"use":"": present, so it must be "sig".`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["use"] = "" }))},
		{"key-d-null", `"d":null: a private-key member, whatever its value.`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["d"] = nil }))},
		{"key-key-ops-sign", `"key_ops":["sign"] on a public key.`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"sign"} }))},
		{"key-key-ops-contradicts-use", `"key_ops":["encrypt"] with "use":"sig".`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"encrypt"} }))},
		{"key-key-ops-verify-twice", `"key_ops":["verify","verify"].`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"verify", "verify"} }))},
		{"key-rsa-oth", `An RSA entry with "oth" (multi-prime RSA).`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["oth"] = []map[string]string{{"r": "Aw", "d": "AQ", "t": "AQ"}} }))},
		{"key-ec-k-member", `An EC entry with "k", a member of symmetric keys.`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["k"] = b64u.Encode(fixture.Derive("oct", 32)) }))},
		{"key-rsa-crv-member", `An RSA entry with "crv", a member of EC and OKP keys.`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["crv"] = "P-256" }))},
		{"key-ed25519-identity", "The Ed25519 identity point (order 1): R = identity, S = 0 verifies every message under it.", "bad_key",
			ed("0100000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-order-2", "The Ed25519 point (0, -1), of order 2.", "bad_key",
			ed("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"key-ed25519-order-4", "An Ed25519 point of order 4 (y = 0).", "bad_key",
			ed("0000000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-order-8", "An Ed25519 point of order 8.", "bad_key",
			ed("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")},
		{"key-ed25519-not-on-curve", "An Ed25519 key that is not a point: y = 2 has no x on the curve.", "bad_key",
			ed("0200000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-non-canonical", "An Ed25519 key encoding y = p + 3, a point of large order, not canonically (y must be below p).", "bad_key",
			ed("f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"key-ed25519-negative-zero", "The Ed25519 identity with the sign bit set on x = 0: non-canonical and of small order.", "bad_key",
			ed("0100000000000000000000000000000000000000000000000000000000000080")},
	}...)
	return list
}
