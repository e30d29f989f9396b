package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
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

const jweHeaderContentType = "JWT" // RFC 7519 section 5.2: a nested JWT

// issueToken signs c with the current signing key, then seals the JWS with
// the current token key (spec section "Session token"). It draws jti from
// rand; go-jose draws the AES-GCM IV (and, for A256KW, the content key) from
// crypto/rand.
func issueToken(k *keys.ServerKeys, c *TokenClaims, rand io.Reader) (string, error) {
	var jti [jtiSize]byte
	if _, err := io.ReadFull(rand, jti[:]); err != nil {
		return "", err
	}
	c.ID = b64u.Encode(jti[:])
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	inner, err := signJWS(rand, &k.Signing[0], TypSession, payload)
	if err != nil {
		return "", err
	}
	tk := &k.Token[0]
	enc, err := jose.NewEncrypter(jose.A256GCM,
		jose.Recipient{Algorithm: jose.KeyAlgorithm(tk.Algorithm), Key: tk.Secret, KeyID: tk.KeyID},
		(&jose.EncrypterOptions{}).WithType(TypSessionE).WithContentType(jweHeaderContentType))
	if err != nil {
		return "", err
	}
	obj, err := enc.Encrypt([]byte(inner))
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
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

// open decrypts and verifies; every error it returns is a token_invalid.
func (v *TokenVerifier) open(token string, now time.Time) (*TokenClaims, error) {
	segs := bytes.Split([]byte(token), []byte{'.'})
	if len(segs) != 5 {
		return nil, errors.New("protocol: token is not a compact JWE")
	}
	var dec [5][]byte
	for i, s := range segs {
		var err error
		if dec[i], err = b64u.Decode(string(s)); err != nil {
			return nil, err
		}
	}
	hb := dec[0]
	h, err := parseObject(hb)
	if err != nil {
		return nil, err
	}
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
	if typ != TypSessionE || cty != jweHeaderContentType || enc != string(jose.A256GCM) {
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
	// go-jose does not check segment lengths, so bytes could move between
	// segments unnoticed; A256GCM has a 12-byte IV and a 16-byte tag, dir no
	// encrypted key and A256KW a 40-byte wrapped key.
	wantKey := 0
	if alg == keys.TokenA256KW {
		wantKey = 40
	}
	if len(dec[1]) != wantKey || len(dec[2]) != 12 || len(dec[4]) != 16 {
		return nil, errors.New("protocol: token segment of the wrong length")
	}
	obj, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{jose.KeyAlgorithm(alg)}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, err
	}
	inner, err := obj.Decrypt(key.Secret)
	if err != nil {
		return nil, err
	}
	j, err := parseJWSHeader(inner, TypSession)
	if err != nil {
		return nil, err
	}
	pk, ok := v.SigningKeys.Lookup(j.kid)
	if !ok || pk.Algorithm != j.alg {
		return nil, errors.New("protocol: token signed by an unknown server key")
	}
	payload, err := j.verify(pk.Key)
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
