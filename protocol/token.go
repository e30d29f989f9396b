package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	cryptorand "crypto/rand"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	josecipher "github.com/go-jose/go-jose/v4/cipher"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
	"github.com/wsproof/wsproof/keys"
)

// TokenClaims are the claims of a session token, spec section "Session
// token". The JSON names are the wire names.
type TokenClaims struct {
	Issuer             string       `json:"iss"`
	Subject            string       `json:"sub"`
	Audience           string       `json:"aud"`
	SocketID           string       `json:"sid"`
	ID                 string       `json:"jti"`
	IssuedAt           int64        `json:"iat"`
	NotBefore          int64        `json:"nbf"`
	Expiry             int64        `json:"exp"`
	Cnf                Confirmation `json:"cnf"`
	Groups             []string     `json:"groups"`
	ClientKeyID        string       `json:"ckid"`
	ChannelBindingHash string       `json:"cbh,omitempty"` // base64url SHA-256 of the tls-exporter value
}

// Confirmation is the RFC 7800 "cnf" claim: the thumbprint of the client key
// the token is bound to.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// appendJSON appends the claims byte for byte as encoding/json.Marshal
// writes them (cbh left out when empty), without its reflection.
func (c *TokenClaims) appendJSON(b []byte) []byte {
	for _, m := range []struct{ name, v string }{{`{"iss":`, c.Issuer}, {`,"sub":`, c.Subject}, {`,"aud":`, c.Audience},
		{`,"sid":`, c.SocketID}, {`,"jti":`, c.ID}} {
		b = append(b, m.name...)
		b = strictjson.AppendString(b, m.v)
	}
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, c.NotBefore, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry, 10)
	b = append(b, `,"cnf":{"jkt":`...)
	b = strictjson.AppendString(b, c.Cnf.JKT)
	b = append(b, `},"groups":`...)
	b = strictjson.AppendStrings(b, c.Groups)
	b = append(b, `,"ckid":`...)
	b = strictjson.AppendString(b, c.ClientKeyID)
	if c.ChannelBindingHash != "" {
		b = append(b, `,"cbh":`...)
		b = strictjson.AppendString(b, c.ChannelBindingHash)
	}
	return append(b, '}')
}

// The fixed members and sizes of the session token's JWE (spec section
// "Session token", Structure), shared by the sealer and the opener.
const (
	jweEnc            = "A256GCM"
	jweCty            = "JWT" // RFC 7519 section 5.2: a nested JWT
	jweIVSize         = 12
	jweTagSize        = 16
	jweWrappedKeySize = keys.TokenKeySize + 8 // A256KW (RFC 3394): the content key and an 8-octet check value
)

// appendJWEHeader appends the JWE protected header of a token sealed with
// tk: the five members of spec section "Session token", in the order go-jose
// wrote them when it sealed tokens (its members sorted by name), so that the
// vectors made then are made again byte for byte. Token key ids are printable
// ASCII (keys.CheckKeyID), which encoding/json and go-jose write alike.
func appendJWEHeader(dst []byte, tk *keys.TokenKey) []byte {
	dst = append(dst, `{"alg":`...)
	dst = strictjson.AppendString(dst, tk.Algorithm)
	dst = append(dst, `,"cty":"`+jweCty+`","enc":"`+jweEnc+`","kid":`...)
	dst = strictjson.AppendString(dst, tk.KeyID)
	return append(dst, `,"typ":"`+TypSessionE+`"}`...)
}

var errTokenKeySize = errors.New("protocol: token key is not 32 octets")

// newGCM returns AES-256-GCM under key. It refuses a key of another length,
// which crypto/aes would take for AES-128 or AES-192 under the name A256GCM.
func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != keys.TokenKeySize {
		return nil, errTokenKeySize
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// issueToken signs c with the current signing key, then seals the JWS with
// the current token key (spec section "Session token"). It draws jti from
// rand.
//
// The IV, and for A256KW the content key, come from crypto/rand, the one
// read of the global source in this package, never from rand: a
// deterministic reader, such as the test vectors run the server with, would
// repeat an IV under the long-lived token key, and one repeat under an
// AES-GCM key gives away its authentication key (NIST SP 800-38D, section
// 8). go-jose, which sealed tokens before, read crypto/rand as well, and in
// the same order, so that the vector generator, which fixes crypto/rand with
// testing/cryptotest.SetGlobalRandom, makes the same bytes.
func issueToken(k *keys.ServerKeys, c *TokenClaims, rand io.Reader) (string, error) {
	var jti [jtiSize]byte
	if _, err := io.ReadFull(rand, jti[:]); err != nil {
		return "", err
	}
	c.ID = b64u.Encode(jti[:])
	var buf [1024]byte
	inner, err := signJWS(rand, &k.Signing[0], TypSession, c.appendJSON(buf[:0]))
	if err != nil {
		return "", err
	}
	return sealToken(&k.Token[0], inner)
}

// sealToken encrypts the compact JWS inner as the token's JWE with tk (spec
// section "Session token", Structure) and returns its compact serialization.
func sealToken(tk *keys.TokenKey, inner []byte) (string, error) {
	if len(tk.Secret) != keys.TokenKeySize {
		return "", errTokenKeySize
	}
	var rnd [keys.TokenKeySize + jweIVSize]byte
	cek, iv := tk.Secret, rnd[keys.TokenKeySize:]
	var ek []byte
	if tk.Algorithm == keys.TokenA256KW {
		cek = rnd[:keys.TokenKeySize]
		if _, err := io.ReadFull(cryptorand.Reader, cek); err != nil {
			return "", err
		}
		var err error
		if ek, err = wrapCEK(tk.Secret, cek); err != nil {
			return "", err
		}
	}
	if _, err := io.ReadFull(cryptorand.Reader, iv); err != nil {
		return "", err
	}
	gcm, err := newGCM(cek)
	if err != nil {
		return "", err
	}
	var hb [128 + 2*keys.MaxKeyIDLen]byte
	h := appendJWEHeader(hb[:0], tk)
	out := make([]byte, 0, b64u.EncodedLen(len(h))+b64u.EncodedLen(len(ek))+b64u.EncodedLen(jweIVSize)+
		b64u.EncodedLen(len(inner))+b64u.EncodedLen(jweTagSize)+4)
	out = b64u.Append(out, h)
	aad := out // RFC 7516 section 5.1, step 14: the encoded protected header
	out = append(out, '.')
	out = b64u.Append(out, ek)
	out = append(out, '.')
	out = b64u.Append(out, iv)
	out = append(out, '.')
	sealed := gcm.Seal(nil, iv, inner, aad)
	ct, tag := sealed[:len(inner)], sealed[len(inner):]
	out = b64u.Append(out, ct)
	out = append(out, '.')
	out = b64u.Append(out, tag)
	return string(out), nil
}

// TokenVerifier opens session tokens. A server has one ([Server.Tokens]); a
// backend that receives frames with their tokens builds its own with
// [NewTokenVerifier] from the token keys and the server's public signing
// keys, and so can check on its own that a frame came from an authenticated
// socket. It is safe for concurrent use once built; its fields must not be
// modified then.
type TokenVerifier struct {
	// Identity is the server identity the token's "iss" and "aud" must
	// equal. Required.
	Identity string
	// TokenKeys decrypt tokens, looked up by the JWE "kid". Required.
	TokenKeys []keys.TokenKey
	// SigningKeys verify the inner JWS, looked up by its "kid". Required.
	SigningKeys *keys.PublicSet
	// ClockSkew tolerates a token whose "nbf" is this far in the future,
	// for backends whose clock differs from the server's. Zero means none.
	// Expiry is never extended.
	ClockSkew time.Duration
}

// NewTokenVerifier returns a verifier for the tokens of the server whose
// identity is identity, sealed with one of tokenKeys and signed with one of
// signingKeys. It fails if any of the three is missing or empty: such a
// verifier could open no token, and a backend configured so is better told
// at startup than by refusing every frame.
func NewTokenVerifier(identity string, tokenKeys []keys.TokenKey, signingKeys *keys.PublicSet) (*TokenVerifier, error) {
	v := &TokenVerifier{Identity: identity, TokenKeys: tokenKeys, SigningKeys: signingKeys}
	if err := v.check(); err != nil {
		return nil, err
	}
	return v, nil
}

// check reports a verifier that lacks what Open needs.
func (v *TokenVerifier) check() error {
	switch {
	case v.Identity == "":
		return errors.New("protocol: TokenVerifier has no Identity")
	case len(v.TokenKeys) == 0:
		return errors.New("protocol: TokenVerifier has no TokenKeys")
	case v.SigningKeys == nil || len(v.SigningKeys.Keys()) == 0:
		return errors.New("protocol: TokenVerifier has no SigningKeys")
	}
	return nil
}

// Open runs spec section "Opening a token": it decrypts token,
// verifies its inner signature and claims, and checks that it is bound to
// socket sid and unexpired at now. Failures are *ProtocolError with code
// too_large, token_invalid, token_expired or socket_mismatch; a verifier
// built without [NewTokenVerifier] that lacks a field it requires refuses
// every token with token_invalid.
func (v *TokenVerifier) Open(token string, sid string, now time.Time) (*TokenClaims, error) {
	if len(token) > MaxToken {
		return nil, fail(CodeTooLarge, "token too large")
	}
	if err := v.check(); err != nil {
		return nil, wrap(CodeTokenInvalid, err)
	}
	c, err := v.open(token, now)
	if err != nil {
		return nil, wrap(CodeTokenInvalid, err) // one code for every defect
	}
	if now.Unix() >= c.Expiry {
		return nil, fail(CodeTokenExpired, "token expired")
	}
	if c.SocketID != sid {
		return nil, fail(CodeSocketMismatch, "token bound to another socket")
	}
	return c, nil
}

var errTokenHeader = errors.New("protocol: token header is not wsproof's")

// compactJWE is a JWE in compact serialization split into its five
// segments, each canonical base64url and decoded, with its protected header
// parsed as a JSON object that satisfies the JSON rules (the first item of
// step 2 of spec section "Opening a token"). Nothing else is checked yet.
type compactJWE struct {
	header object
	aad    []byte    // the first segment as it came: the AEAD's additional data
	seg    [5][]byte // decoded: header, encrypted key, IV, ciphertext, tag
}

func parseJWE(token string) (*compactJWE, error) {
	j := &compactJWE{}
	rest := token
	for i := range j.seg {
		s, r, found := strings.Cut(rest, ".")
		if found == (i == len(j.seg)-1) {
			return nil, errors.New("protocol: token is not a compact JWE")
		}
		var err error
		if j.seg[i], err = b64u.Decode(s); err != nil {
			return nil, err
		}
		rest = r
	}
	j.aad = []byte(token[:strings.IndexByte(token, '.')])
	var err error
	if j.header, err = parseObject(j.seg[0]); err != nil {
		return nil, err
	}
	return j, nil
}

// decrypt runs the last item of step 2 that concerns the JWE with the token
// key key, whose algorithm the header named: the lengths of the Encrypted
// Key, the IV and the tag, then the decryption. It returns the plaintext.
// The lengths are checked here because a generic JOSE library may not (go-jose
// takes a tag longer than 16 octets, and ignores an Encrypted Key with dir),
// and bytes could otherwise move between segments unnoticed.
func (j *compactJWE) decrypt(key *keys.TokenKey) ([]byte, error) {
	wantKey := 0
	if key.Algorithm == keys.TokenA256KW {
		wantKey = jweWrappedKeySize
	}
	ek, iv, ct, tag := j.seg[1], j.seg[2], j.seg[3], j.seg[4]
	if len(ek) != wantKey || len(iv) != jweIVSize || len(tag) != jweTagSize {
		return nil, errors.New("protocol: token segment of the wrong length")
	}
	cek := key.Secret
	if len(cek) != keys.TokenKeySize {
		return nil, errTokenKeySize
	}
	if key.Algorithm == keys.TokenA256KW {
		var err error
		if cek, err = unwrapCEK(key.Secret, ek); err != nil {
			return nil, err
		}
	}
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	// ct and tag are adjacent in no buffer: join them for Open, in place.
	return gcm.Open(ct[:0], iv, append(ct, tag...), j.aad)
}

// decrypt runs the JWE items of step 2 of spec section "Opening a token"
// and returns the plaintext, the inner JWS not yet checked.
func (v *TokenVerifier) decrypt(token string) ([]byte, error) {
	j, err := parseJWE(token)
	if err != nil {
		return nil, err
	}
	h := j.header
	if len(h.Object) != 5 {
		return nil, errTokenHeader
	}
	var alg, enc, kid, typ, cty string
	for _, m := range []struct {
		name string
		dst  *string
	}{{"alg", &alg}, {"enc", &enc}, {"kid", &kid}, {"typ", &typ}, {"cty", &cty}} {
		if *m.dst, err = h.str(m.name); err != nil {
			return nil, err
		}
	}
	if typ != TypSessionE || cty != jweCty || enc != jweEnc {
		return nil, errTokenHeader
	}
	var key *keys.TokenKey
	for i := range v.TokenKeys {
		if v.TokenKeys[i].KeyID == kid {
			key = &v.TokenKeys[i]
		}
	}
	if key == nil || key.Algorithm != alg {
		return nil, errors.New("protocol: unknown token key")
	}
	return j.decrypt(key)
}

// open decrypts and verifies; every error it returns is a token_invalid.
func (v *TokenVerifier) open(token string, now time.Time) (*TokenClaims, error) {
	inner, err := v.decrypt(token)
	if err != nil {
		return nil, err
	}
	js, err := parseJWSHeader(inner, TypSession)
	if err != nil {
		return nil, err
	}
	pk, ok := v.SigningKeys.Lookup(js.kid)
	if !ok || pk.Algorithm != js.alg {
		return nil, errors.New("protocol: token signed by an unknown server key")
	}
	payload, err := js.verify(pk.Key)
	if err != nil {
		return nil, err
	}
	c, err := parseTokenClaims(payload)
	if err != nil {
		return nil, err
	}
	if c.Issuer != v.Identity || c.Audience != v.Identity {
		return nil, errors.New("protocol: token issued for another server")
	}
	if c.NotBefore > now.Add(v.ClockSkew).Unix() {
		return nil, errors.New("protocol: token not yet valid")
	}
	return c, nil
}

func parseTokenClaims(payload []byte) (*TokenClaims, error) {
	o, err := parseObject(payload)
	if err != nil {
		return nil, err
	}
	c := &TokenClaims{}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"iss", &c.Issuer}, {"sub", &c.Subject}, {"aud", &c.Audience}, {"sid", &c.SocketID}, {"jti", &c.ID}, {"ckid", &c.ClientKeyID}} {
		if *m.dst, err = o.str(m.name); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct {
		name string
		dst  *int64
	}{{"iat", &c.IssuedAt}, {"nbf", &c.NotBefore}, {"exp", &c.Expiry}} {
		if *m.dst, err = o.date(m.name); err != nil {
			return nil, err
		}
	}
	if c.Groups, err = o.strs("groups", keys.MaxGroups, keys.MaxGroupLen); err != nil {
		return nil, err
	}
	if c.ChannelBindingHash, err = o.OptStr("cbh"); err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	co, err := parseObject(o.Object["cnf"])
	if err != nil {
		return nil, err
	}
	if c.Cnf.JKT, err = co.str("jkt"); err != nil {
		return nil, err
	}
	return c, nil
}

// wrapCEK wraps the content key cek of an A256KW token (RFC 7518, section
// 4.4: AES Key Wrap, RFC 3394) under the token key kek.
func wrapCEK(kek, cek []byte) ([]byte, error) {
	if len(kek) != keys.TokenKeySize || len(cek) != keys.TokenKeySize {
		return nil, errTokenKeySize
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return josecipher.KeyWrap(blk, cek)
}

// unwrapCEK unwraps the Encrypted Key ek of an A256KW token under the token
// key kek: exactly a 32-octet content key, wrapped in 40 octets. The RFC 3394
// integrity check is go-jose's; TestWycheproofAESKeyWrap holds it to the
// Wycheproof vectors.
func unwrapCEK(kek, ek []byte) ([]byte, error) {
	if len(kek) != keys.TokenKeySize {
		return nil, errTokenKeySize
	}
	if len(ek) != jweWrappedKeySize {
		return nil, errors.New("protocol: token segment of the wrong length")
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return josecipher.KeyUnwrap(blk, ek)
}
