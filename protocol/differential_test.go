package protocol

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	josecipher "github.com/go-jose/go-jose/v4/cipher"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
)

// The JOSE objects of the hot path are produced and checked without go-jose
// (issue 16). go-jose stays the independent reference, and
// FuzzJOSEDifferential holds the two together on every input:
//
//   - whatever wsproof produces (a challenge, a session token under either
//     kind of token key) opens in go-jose with the same claims;
//   - on any compact JWS or JWE, wsproof's strict path and go-jose run under
//     the profile's extra rules (refJWS, refJWE) accept the same inputs, with
//     the same payload or plaintext.
//
// Mutating whole messages mostly breaks their signatures and tags, so each
// input is also signed (for a JWS) and sealed (for a JWE) as it stands, with
// the vectors' keys: the header and payload bytes the fuzzer writes then
// reach the checks behind the cryptography. Run it for longer with
//
//	go test ./protocol -run '^$' -fuzz FuzzJOSEDifferential -fuzztime 3m

// signatureAlgs are the six algorithms of the profile, for go-jose.
var signatureAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256, jose.EdDSA}

// refSegments splits a compact serialization into n segments and decodes
// each, requiring the canonical base64url of spec section "Encodings" by
// re-encoding: an encoding is canonical when it is the one the decoded bytes
// encode to.
func refSegments(msg string, n int) ([][]byte, error) {
	segs := strings.Split(msg, ".")
	if len(segs) != n {
		return nil, errors.New("ref: wrong number of segments")
	}
	out := make([][]byte, n)
	for i, s := range segs {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
			return nil, errors.New("ref: segment not canonical base64url")
		}
		out[i] = b
	}
	return out, nil
}

// refJSONRules checks the JSON rules of spec section "Encodings" apart from
// package strictjson: UTF-8 without a BOM, no unpaired surrogate (escaped or
// not) and no noncharacter, a top-level object, no two members of an object
// whose names are equal under ASCII case folding, nothing after the value.
func refJSONRules(b []byte) error {
	if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) || !utf8.Valid(b) || !json.Valid(b) {
		return errors.New("ref: not UTF-8 JSON")
	}
	if err := refEscapes(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object bool
		key    bool // the next string is a member name
		names  map[string]bool
	}
	var stack []*frame
	for depth := 0; ; depth++ {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if depth == 0 && tok != json.Delim('{') {
			return errors.New("ref: top-level value is not an object")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isName := top != nil && top.object && top.key
		if top != nil && top.object {
			top.key = !top.key
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{object: true, key: true, names: map[string]bool{}})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
			continue
		case string:
			for _, r := range v {
				if r >= 0xfdd0 && r <= 0xfdef || r&0xfffe == 0xfffe {
					return errors.New("ref: noncharacter")
				}
			}
			if isName {
				folded := strings.Map(func(r rune) rune {
					if r >= 'A' && r <= 'Z' {
						return r + 'a' - 'A'
					}
					return r
				}, v)
				if top.names[folded] {
					return errors.New("ref: duplicate member")
				}
				top.names[folded] = true
			}
		}
	}
}

// refEscapes refuses \u escapes of unpaired surrogates, which encoding/json
// decodes to U+FFFD without a word.
func refEscapes(b []byte) error {
	hex := func(i int) (rune, bool) {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range b[i+2 : i+6] {
			var d byte
			switch {
			case c >= '0' && c <= '9':
				d = c - '0'
			case c >= 'a' && c <= 'f':
				d = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				d = c - 'A' + 10
			default:
				return 0, false
			}
			r = r<<4 | rune(d)
		}
		return r, true
	}
	in := false
	for i := 0; i < len(b); i++ {
		switch {
		case !in:
			in = b[i] == '"'
		case b[i] == '"':
			in = false
		case b[i] == '\\':
			r, ok := hex(i)
			if !ok {
				i++ // a two-character escape
				continue
			}
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return errors.New("ref: unpaired low surrogate")
			case r >= 0xd800 && r <= 0xdbff:
				lo, ok := hex(i + 6)
				if !ok || lo < 0xdc00 || lo > 0xdfff {
					return errors.New("ref: unpaired high surrogate")
				}
				i += 6
			}
			i += 5
		}
	}
	return nil
}

// refMembers decodes a JOSE header under the JSON rules and requires exactly
// the named members, each a string.
func refMembers(h []byte, names ...string) (map[string]string, error) {
	if err := refJSONRules(h); err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(h, &raw); err != nil {
		return nil, err
	}
	if len(raw) != len(names) {
		return nil, errors.New("ref: header members")
	}
	out := map[string]string{}
	for _, n := range names {
		var s string
		if v, ok := raw[n]; !ok || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return nil, fmt.Errorf("ref: header member %s", n)
		}
		out[n] = s
	}
	return out, nil
}

// refJWS verifies msg as a JWS of type typ with go-jose, its own signature
// verification included, under the profile's extra rules: canonical
// segments, a header under the JSON rules of exactly alg, kid and typ, the
// typ, a non-empty kid, the key's registered algorithm, and for PS256 a salt
// of 32 octets, which go-jose does not require (it verifies PSS with any salt
// length: vectors response-ps256-salt-0 and response-ps256-salt-64).
func refJWS(msg []byte, typ string, lookup func(string) (*keys.PublicKey, bool)) (kid string, payload []byte, err error) {
	segs, err := refSegments(string(msg), 3)
	if err != nil {
		return "", nil, err
	}
	h, err := refMembers(segs[0], "alg", "kid", "typ")
	if err != nil {
		return "", nil, err
	}
	if h["typ"] != typ || h["kid"] == "" {
		return "", nil, errors.New("ref: typ or kid")
	}
	pk, ok := lookup(h["kid"])
	if !ok || string(pk.Algorithm) != h["alg"] {
		return "", nil, errors.New("ref: no key of this alg")
	}
	obj, err := jose.ParseSignedCompact(string(msg), signatureAlgs)
	if err != nil {
		return "", nil, err
	}
	payload, err = obj.Verify(pk.Key)
	if err != nil {
		return "", nil, err
	}
	if pk.Algorithm == keys.PS256 {
		input := msg[:bytes.LastIndexByte(msg, '.')]
		sum := sha256.Sum256(input)
		if err := rsa.VerifyPSS(pk.Key.(*rsa.PublicKey), crypto.SHA256, sum[:], segs[2], &rsa.PSSOptions{SaltLength: 32}); err != nil {
			return "", nil, err
		}
	}
	return h["kid"], payload, nil
}

// refJWE decrypts msg as a session token's JWE with go-jose under the
// profile's extra rules: canonical segments, a header under the JSON rules
// of exactly the five members with their fixed values, the key's algorithm,
// and the segment lengths go-jose does not check (vectors
// token-dir-with-encrypted-key and token-tag-shifted).
func refJWE(msg []byte, tks []keys.TokenKey) ([]byte, error) {
	segs, err := refSegments(string(msg), 5)
	if err != nil {
		return nil, err
	}
	h, err := refMembers(segs[0], "alg", "enc", "kid", "typ", "cty")
	if err != nil {
		return nil, err
	}
	if h["enc"] != "A256GCM" || h["typ"] != "wsproof-session+jwe" || h["cty"] != "JWT" {
		return nil, errors.New("ref: fixed header values")
	}
	i := slices.IndexFunc(tks, func(k keys.TokenKey) bool { return k.KeyID == h["kid"] })
	if i < 0 || tks[i].Algorithm != h["alg"] {
		return nil, errors.New("ref: no token key of this alg")
	}
	wantKey := map[string]int{keys.TokenDir: 0, keys.TokenA256KW: 40}[h["alg"]]
	if len(segs[1]) != wantKey || len(segs[2]) != 12 || len(segs[4]) != 16 {
		return nil, errors.New("ref: segment lengths")
	}
	obj, err := jose.ParseEncryptedCompact(string(msg), []jose.KeyAlgorithm{jose.KeyAlgorithm(h["alg"])}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, err
	}
	return obj.Decrypt(tks[i].Secret)
}

// diffEnv is the vectors' world seen by both sides.
type diffEnv struct {
	*vectorEnv
	tv *TokenVerifier
}

// lookup finds kid among the server's signing keys, then the registry.
func (d *diffEnv) lookup(kid string) (*keys.PublicKey, bool) {
	if pk, ok := d.Pinned.Lookup(kid); ok {
		return pk, true
	}
	if e, ok := d.Registry.Lookup(kid); ok {
		return &keys.PublicKey{KeyID: kid, Algorithm: e.Algorithm, Key: e.Key}, true
	}
	return nil, false
}

// ourJWS is the strict path: parseJWSHeader, the key of the kid with the
// header's algorithm, compactJWS.verify; and for the server's signing keys
// also the server's step 15 (decoys.verify), which must agree with it.
func (d *diffEnv) ourJWS(msg []byte, typ string) (string, []byte, error) {
	j, err := parseJWSHeader(msg, typ)
	if err != nil {
		return "", nil, err
	}
	pk, ok := d.lookup(j.kid)
	if !ok || pk.Algorithm != j.alg {
		return "", nil, errors.New("no key of this alg")
	}
	payload, err := j.verify(pk.Key)
	if errServer := theDecoys().verify(j, pk.Key); (errServer == nil) != (err == nil) {
		return "", nil, fmt.Errorf("client verify %v, server verify %v", err, errServer)
	}
	return j.kid, payload, err
}

// compareJWS fails t unless both sides decide msg alike.
func (d *diffEnv) compareJWS(t *testing.T, msg []byte) {
	t.Helper()
	for _, typ := range []string{TypChallenge, TypResponse, TypSession} {
		kid, payload, err := d.ourJWS(msg, typ)
		rkid, rpayload, rerr := refJWS(msg, typ, d.lookup)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("JWS %q as %s: wsproof says %v, go-jose with the profile's rules %v", msg, typ, err, rerr)
		}
		if err == nil && (kid != rkid || !bytes.Equal(payload, rpayload)) {
			t.Fatalf("JWS %q as %s: wsproof reads kid %q payload %q, go-jose kid %q payload %q", msg, typ, kid, payload, rkid, rpayload)
		}
	}
}

// compareJWE fails t unless both sides decrypt msg alike, then compares the
// plaintext as a JWS.
func (d *diffEnv) compareJWE(t *testing.T, msg []byte) {
	t.Helper()
	pt, err := d.tv.decrypt(string(msg))
	rpt, rerr := refJWE(msg, d.tv.TokenKeys)
	if (err == nil) != (rerr == nil) {
		t.Fatalf("JWE %q: wsproof says %v, go-jose with the profile's rules %v", msg, err, rerr)
	}
	if err == nil {
		if !bytes.Equal(pt, rpt) {
			t.Fatalf("JWE %q: wsproof decrypts %q, go-jose %q", msg, pt, rpt)
		}
		d.compareJWS(t, pt)
	}
}

// sealRaw seals plaintext under the header bytes h with tk as RFC 7516 says,
// written here apart from sealToken, which writes only its own header.
func sealRaw(t *testing.T, h, plaintext []byte, tk *keys.TokenKey) []byte {
	enc := base64.RawURLEncoding.EncodeToString
	cek, ek := tk.Secret, []byte{}
	if tk.Algorithm == keys.TokenA256KW {
		cek = bytes.Repeat([]byte{0x5a}, 32)
		blk, err := aes.NewCipher(tk.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if ek, err = josecipher.KeyWrap(blk, cek); err != nil {
			t.Fatal(err)
		}
	}
	blk, err := aes.NewCipher(cek)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	iv := bytes.Repeat([]byte{0xa5}, 12)
	protected := enc(h)
	sealed := gcm.Seal(nil, iv, plaintext, []byte(protected))
	n := len(sealed) - 16
	return []byte(strings.Join([]string{protected, enc(ek), enc(iv), enc(sealed[:n]), enc(sealed[n:])}, "."))
}

// signRaw signs header and payload bytes as they are with the server's
// signing key i (of two) as a compact JWS.
func (d *diffEnv) signRaw(t *testing.T, h, payload []byte, i int) []byte {
	k := d.Server.Signing[i%len(d.Server.Signing)]
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := keys.Sign(vectorRand(), k.Signer, k.Algorithm, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(input + "." + base64.RawURLEncoding.EncodeToString(sig))
}

// checkProduced fails t unless go-jose opens what wsproof produces from the
// fuzzer's strings with the claims encoding/json writes for them.
func (d *diffEnv) checkProduced(t *testing.T, a, b string) {
	t.Helper()
	cc := ChallengeClaims{Iss: a, Sid: b, Nonce: "bm9uY2U", Iat: 1767225600, Exp: 1767225630, Algs: []string{a, b}, CB: BindingNone}
	want, err := json.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Server.Signing {
		msg, err := signJWS(vectorRand(), &d.Server.Signing[i], TypChallenge, cc.appendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, got, err := refJWS(msg, TypChallenge, d.lookup); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("go-jose opens our challenge %s with %q, %v; encoding/json writes %s", msg, got, err, want)
		}
	}
	tc := &TokenClaims{Issuer: a, Subject: b, Audience: a, SocketID: b, IssuedAt: 1767225600, NotBefore: 1767225600,
		Expiry: 1767225900, Cnf: Confirmation{JKT: b}, Groups: []string{b, a}, ClientKeyID: a, ChannelBindingHash: b}
	for i := range d.Server.Token {
		k := &keys.ServerKeys{Signing: d.Server.Signing[i%len(d.Server.Signing):], Token: d.Server.Token[i:]}
		token, err := issueToken(k, tc, vectorRand())
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(tc)
		if err != nil {
			t.Fatal(err)
		}
		inner, err := refJWE([]byte(token), d.Server.Token)
		if err != nil {
			t.Fatalf("go-jose cannot open our token %s (%s): %v", token, d.Server.Token[i].Algorithm, err)
		}
		if _, got, err := refJWS(inner, TypSession, d.lookup); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("go-jose opens our token's JWS %s with %q, %v; encoding/json writes %s", inner, got, err, want)
		}
	}
}

func FuzzJOSEDifferential(f *testing.F) {
	env := loadVectors(f)
	d := &diffEnv{vectorEnv: env, tv: env.srv.Tokens()}
	n := 0
	for _, v := range env.f.Vectors {
		for _, m := range []string{v.Challenge, v.Response, v.Token} {
			if m == "" {
				continue
			}
			n++
			// The header and payload of each JWS, and of each token's
			// JWE header, seed the signed and sealed modes.
			segs := append(strings.Split(m, "."), "")
			h, _ := base64.RawURLEncoding.DecodeString(segs[0])
			p, _ := base64.RawURLEncoding.DecodeString(segs[1])
			f.Add([]byte(m), h, p)
		}
	}
	if n == 0 {
		f.Fatal("no seeds in the vectors")
	}
	for _, k := range env.Server.Signing {
		for _, typ := range []string{TypChallenge, TypResponse, TypSession} {
			f.Add([]byte(nil), appendJWSHeader(nil, k.Algorithm, k.KeyID, typ), []byte(`{"iss":"x"}`))
		}
	}
	for _, tk := range env.Server.Token {
		f.Add([]byte(nil), appendJWEHeader(nil, &tk), []byte(`not a JWS`))
	}
	f.Fuzz(func(t *testing.T, msg, h, payload []byte) {
		// The messages as they are.
		d.compareJWS(t, msg)
		d.compareJWE(t, msg)
		// h and payload signed with each server key, and sealed with
		// each token key, the plaintext a JWS that h's kid may name.
		for i := range env.Server.Signing {
			jws := d.signRaw(t, h, payload, i)
			d.compareJWS(t, jws)
			for _, tk := range env.Server.Token {
				d.compareJWE(t, sealRaw(t, h, payload, &tk))
				d.compareJWE(t, sealRaw(t, h, jws, &tk))
			}
		}
		// What wsproof produces from the fuzzer's strings.
		d.checkProduced(t, string(h), string(payload))
	})
}

// TestDifferentialRefRules: the reference's own rules refuse what they must,
// so that a differential that agrees is not agreeing by refusing everything.
func TestDifferentialRefRules(t *testing.T) {
	for _, c := range []struct {
		json string
		ok   bool
	}{
		{`{"alg":"ES256","kid":"k","typ":"t"}`, true},
		{` {"a":"\ud83d\ude00","b":[1,{"a":2}]} `, true},
		{`{"alg":"ES256","ALG":"x"}`, false},
		{`{"a":{"b":1,"b":2}}`, false},
		{`{"a":"\ud800"}`, false},
		{`{"a":"\udc00x"}`, false},
		{`{"a":"\\ud800"}`, true},
		{"{\"a\":\"\xef\xbf\xbf\"}", false},
		{"\xef\xbb\xbf{}", false},
		{`[]`, false},
		{`{} {}`, false},
	} {
		if err := refJSONRules([]byte(c.json)); (err == nil) != c.ok {
			t.Errorf("refJSONRules(%s) = %v", c.json, err)
		}
	}
	env := loadVectors(t)
	d := &diffEnv{vectorEnv: env, tv: env.srv.Tokens()}
	accepted := 0
	for _, v := range env.f.Vectors {
		if v.Role != vectorfile.RoleExchange {
			continue
		}
		if _, _, err := refJWS([]byte(v.Challenge), TypChallenge, d.lookup); err != nil {
			t.Errorf("%s: ref refuses the challenge: %v", v.ID, err)
		}
		if _, _, err := refJWS([]byte(v.Response), TypResponse, d.lookup); err != nil {
			t.Errorf("%s: ref refuses the response: %v", v.ID, err)
		}
		if _, err := refJWE([]byte(v.Token), d.tv.TokenKeys); err != nil {
			t.Errorf("%s: ref refuses the token: %v", v.ID, err)
		}
		accepted++
	}
	if accepted == 0 {
		t.Fatal("no exchange vectors")
	}
}
