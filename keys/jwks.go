package keys

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
)

// jwkSetMembers splits a JWK Set (RFC 7517 section 5) into its keys. Other
// top-level members are ignored, as RFC 7517 says.
func jwkSetMembers(data []byte) ([]json.RawMessage, error) {
	o, err := strictjson.ParseObject(data)
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %v", ErrInvalidKey, err)
	}
	raw, ok := o["keys"]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("%w: key set has no \"keys\" array", ErrInvalidKey)
	}
	// strictjson.Array, not json.Unmarshal: the client parses pinned key
	// sets, and encoding/json's decoder would be linked into every device
	// binary for this one call (issue 15's footprint target).
	out, err := strictjson.Array(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %v", ErrInvalidKey, err)
	}
	return out, nil
}

func marshalSet(members [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString("{\"keys\":[")
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n")
		b.Write(m)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

// ParseRegistry reads a registry file: a JWK Set whose keys carry the members
// of spec section "Key registry" (sub, groups, nbf, exp, revoked,
// cb_required). Every rule violation fails the whole set with an error
// wrapping ErrInvalidKey that names the key id or position; a registry is
// never loaded in part.
func ParseRegistry(data []byte) (*Set, error) {
	members, err := jwkSetMembers(data)
	if err != nil {
		return nil, err
	}
	entries := make([]*Entry, 0, len(members))
	for i, m := range members {
		e, err := parseEntry(m)
		if err != nil {
			return nil, fmt.Errorf("keys: registry key %d: %w", i, err)
		}
		entries = append(entries, e)
	}
	return NewSet(entries)
}

func parseEntry(m []byte) (*Entry, error) {
	key, kid, alg, err := ParseJWK(m)
	if err != nil {
		return nil, err
	}
	if _, private := key.(crypto.Signer); private {
		return nil, invalidKey(kid, "registry entries must not hold private keys")
	}
	o, err := strictjson.ParseObject(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	e := &Entry{KeyID: kid, Key: key, Algorithm: alg}
	if e.Subject, err = o.Str("sub"); err != nil {
		return nil, invalidKey(kid, "missing sub")
	}
	if o.Has("groups") {
		if e.Groups, err = o.Strs("groups", MaxGroups, MaxGroupLen); err != nil {
			return nil, invalidKey(kid, "groups must be an array of strings")
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"nbf", &e.NotBefore}, {"exp", &e.NotAfter}} {
		if o.Has(f.name) {
			n, err := o.Date(f.name)
			if err != nil {
				return nil, invalidKey(kid, f.name+" must be a NumericDate")
			}
			*f.dst = time.Unix(n, 0)
		}
	}
	if e.Revoked, err = o.Bool("revoked"); err != nil {
		return nil, invalidKey(kid, "revoked must be a boolean")
	}
	if e.RequireChannelBinding, err = o.Bool("cb_required"); err != nil {
		return nil, invalidKey(kid, "cb_required must be a boolean")
	}
	return e, nil
}

// ParseEntry reads one registry entry: a single member of a registry file's
// "keys" array, checked by the same rules as ParseRegistry. Database-backed
// registries store each entry in this form, so that both kinds of registry
// accept exactly the same entries.
func ParseEntry(data []byte) (*Entry, error) {
	e, err := parseEntry(data)
	if err != nil {
		return nil, err
	}
	if err := checkEntry(e); err != nil {
		return nil, err
	}
	return e, nil
}

// MarshalEntry writes e as the one JSON object ParseEntry reads back, the
// same bytes MarshalRegistry writes for e. The output is deterministic.
func MarshalEntry(e *Entry) ([]byte, error) {
	if err := checkEntry(e); err != nil {
		return nil, err
	}
	jwk, err := MarshalJWK(e.Key, e.KeyID, e.Algorithm)
	if err != nil {
		return nil, err
	}
	extra := struct {
		Sub        string   `json:"sub"`
		Groups     []string `json:"groups"`
		NBF        int64    `json:"nbf,omitempty"`
		Exp        int64    `json:"exp,omitempty"`
		Revoked    bool     `json:"revoked,omitempty"`
		CBRequired bool     `json:"cb_required,omitempty"`
	}{Sub: e.Subject, Groups: e.Groups, Revoked: e.Revoked, CBRequired: e.RequireChannelBinding}
	if extra.Groups == nil {
		extra.Groups = []string{}
	}
	if !e.NotBefore.IsZero() {
		extra.NBF = e.NotBefore.Unix()
	}
	if !e.NotAfter.IsZero() {
		extra.Exp = e.NotAfter.Unix()
	}
	return mergeObjects(jwk, extra), nil
}

// MarshalRegistry writes entries as a registry file that ParseRegistry reads
// back. The output is deterministic.
func MarshalRegistry(entries []*Entry) ([]byte, error) {
	members := make([][]byte, 0, len(entries))
	for _, e := range entries {
		m, err := MarshalEntry(e)
		if err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	return marshalSet(members), nil
}

// mergeObjects appends the members of v, marshalled, to the JSON object jwk.
func mergeObjects(jwk []byte, v any) []byte {
	more, _ := json.Marshal(v) // a struct of strings, ints and bools cannot fail
	jwk = bytes.TrimRight(jwk, " \n")
	out := append([]byte(nil), jwk[:len(jwk)-1]...)
	out = append(out, ',')
	return append(out, more[1:]...)
}

// ParsePublicSet reads a JWK Set of public signing keys, each with "kid" and
// "alg": the server key set a client pins.
func ParsePublicSet(data []byte) (*PublicSet, error) {
	members, err := jwkSetMembers(data)
	if err != nil {
		return nil, err
	}
	var out []PublicKey
	for i, m := range members {
		key, kid, alg, err := ParseJWK(m)
		if err != nil {
			return nil, fmt.Errorf("keys: key set key %d: %w", i, err)
		}
		if _, private := key.(crypto.Signer); private {
			return nil, invalidKey(kid, "a public key set must not hold private keys")
		}
		out = append(out, PublicKey{KeyID: kid, Algorithm: alg, Key: key})
	}
	return NewPublicSet(out)
}

// MarshalPublicSet writes s as a JWK Set.
func MarshalPublicSet(s *PublicSet) ([]byte, error) {
	var members [][]byte
	for _, k := range s.Keys() {
		jwk, err := MarshalJWK(k.Key, k.KeyID, k.Algorithm)
		if err != nil {
			return nil, err
		}
		members = append(members, jwk)
	}
	return marshalSet(members), nil
}

// oct is the JWK of a token key (RFC 7518 section 6.4).
type oct struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	K   string `json:"k"`
}

// ParseServerKeys reads the server's private key file: a JWK Set of private
// signing keys (each with kid and alg) and symmetric token keys (kty "oct",
// alg "dir" or "A256KW"). In each kind the first key is the current one.
func ParseServerKeys(data []byte) (*ServerKeys, error) {
	members, err := jwkSetMembers(data)
	if err != nil {
		return nil, err
	}
	k := &ServerKeys{}
	for i, m := range members {
		o, err := strictjson.ParseObject(m)
		if err != nil {
			return nil, fmt.Errorf("%w: server key %d: %v", ErrInvalidKey, i, err)
		}
		if kty, _ := o.Str("kty"); kty == "oct" {
			t, err := parseTokenKey(o)
			if err != nil {
				return nil, fmt.Errorf("keys: server key %d: %w", i, err)
			}
			k.Token = append(k.Token, t)
			continue
		}
		key, kid, alg, err := ParseJWK(m)
		if err != nil {
			return nil, fmt.Errorf("keys: server key %d: %w", i, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, invalidKey(kid, "server signing keys must be private keys")
		}
		k.Signing = append(k.Signing, SigningKey{KeyID: kid, Algorithm: alg, Signer: s})
	}
	if err := k.Check(); err != nil {
		return nil, err
	}
	return k, nil
}

// ParseTokenKeys reads a backend's token key file: a JWK Set of token keys
// ("oct" JWKs), current first, as MarshalTokenKeys writes it. With the
// server's public key set, a backend builds a protocol.TokenVerifier from it.
// A set that holds anything else, signing keys in particular, is refused: a
// backend that only reads tokens must not be able to mint them.
func ParseTokenKeys(data []byte) ([]TokenKey, error) {
	members, err := jwkSetMembers(data)
	if err != nil {
		return nil, err
	}
	var ts []TokenKey
	for i, m := range members {
		o, err := strictjson.ParseObject(m)
		if err != nil {
			return nil, fmt.Errorf("%w: token key %d: %v", ErrInvalidKey, i, err)
		}
		if kty, _ := o.Str("kty"); kty != "oct" {
			return nil, fmt.Errorf("%w: token key %d is not an \"oct\" key; a token key file must hold token keys only", ErrInvalidKey, i)
		}
		t, err := parseTokenKey(o)
		if err != nil {
			return nil, fmt.Errorf("keys: token key %d: %w", i, err)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%w: empty token key set", ErrInvalidKey)
	}
	if err := checkTokenKeys(ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// MarshalTokenKeys writes ts as the file ParseTokenKeys reads. The output
// holds secrets: write it with mode 0600.
func MarshalTokenKeys(ts []TokenKey) ([]byte, error) {
	if len(ts) == 0 {
		return nil, fmt.Errorf("%w: empty token key set", ErrInvalidKey)
	}
	if err := checkTokenKeys(ts); err != nil {
		return nil, err
	}
	members := make([][]byte, 0, len(ts))
	for _, t := range ts {
		jwk, _ := json.Marshal(oct{Kty: "oct", Kid: t.KeyID, Alg: t.Algorithm, K: b64u.Encode(t.Secret)})
		members = append(members, jwk)
	}
	return marshalSet(members), nil
}

func parseTokenKey(o strictjson.Object) (TokenKey, error) {
	var t TokenKey
	var err error
	if t.KeyID, err = o.Str("kid"); err != nil {
		return t, fmt.Errorf("%w: token key without kid", ErrInvalidKey)
	}
	if t.Algorithm, err = o.Str("alg"); err != nil {
		return t, invalidKey(t.KeyID, "token key without alg")
	}
	k, err := o.Str("k")
	if err != nil {
		return t, invalidKey(t.KeyID, "token key without k")
	}
	if t.Secret, err = b64u.Decode(k); err != nil {
		return t, invalidKey(t.KeyID, "k is not canonical base64url")
	}
	if use, _ := o.OptStr("use"); use != "" && use != "enc" {
		return t, invalidKey(t.KeyID, "token key use must be enc")
	}
	return t, nil
}

// MarshalServerKeys writes k as the private key file ParseServerKeys reads.
// The output holds secrets: write it with mode 0600.
func MarshalServerKeys(k *ServerKeys) ([]byte, error) {
	if err := k.Check(); err != nil {
		return nil, err
	}
	var members [][]byte
	for _, s := range k.Signing {
		jwk, err := MarshalJWK(s.Signer, s.KeyID, s.Algorithm)
		if err != nil {
			return nil, err
		}
		members = append(members, jwk)
	}
	for _, t := range k.Token {
		jwk, _ := json.Marshal(oct{Kty: "oct", Kid: t.KeyID, Alg: t.Algorithm, K: b64u.Encode(t.Secret)})
		members = append(members, jwk)
	}
	return marshalSet(members), nil
}
