package keys

import (
	"crypto"
	"fmt"
)

// Token key-management algorithms, spec section "Session token". The token key
// is symmetric and held by the server: anyone can encrypt to a public key, so
// a public-key JWE would prove nothing about who minted the token.
const (
	TokenDir    = "dir"    // the key is the A256GCM content key (default)
	TokenA256KW = "A256KW" // the key wraps a fresh content key per token
)

// TokenKeySize is the size in bytes of every token key.
const TokenKeySize = 32

// SigningKey is one of the server's signing keys: it signs challenges and the
// inner JWS of session tokens.
type SigningKey struct {
	KeyID     string
	Algorithm Algorithm
	Signer    crypto.Signer
}

// TokenKey is one of the server's symmetric session-token keys.
type TokenKey struct {
	KeyID     string
	Algorithm string // TokenDir or TokenA256KW
	Secret    []byte // TokenKeySize bytes
}

// ServerKeys is the server's own key material. The first key of each list is
// the current one, used to sign and seal; the others are kept so that objects
// made before a rotation still verify and decrypt.
type ServerKeys struct {
	Signing []SigningKey
	Token   []TokenKey
}

// Check validates k: at least one key of each kind, key ids unique within
// each kind (also under ASCII case folding), algorithms that fit their keys
// (CheckKey), each signing key under one key id and one algorithm, and
// token keys of the right size, each secret under one key id.
func (k *ServerKeys) Check() error {
	if k == nil || len(k.Signing) == 0 || len(k.Token) == 0 {
		return fmt.Errorf("%w: server keys need at least one signing key and one token key", ErrInvalidKey)
	}
	ids := newKeyIDs()
	for _, s := range k.Signing {
		if err := CheckKeyID(s.KeyID); err != nil {
			return err
		}
		if s.Signer == nil {
			return invalidKey(s.KeyID, "signing key without a signer")
		}
		pub := s.Signer.Public()
		if err := CheckKey(s.Algorithm, pub); err != nil {
			return fmt.Errorf("keys: key %q: %w", s.KeyID, err)
		}
		tp, err := thumbprint(pub)
		if err != nil {
			return err
		}
		if err := ids.add(s.KeyID, tp); err != nil {
			return err
		}
	}
	return checkTokenKeys(k.Token)
}

func checkTokenKeys(ts []TokenKey) error {
	ids := newKeyIDs()
	for _, t := range ts {
		if err := CheckKeyID(t.KeyID); err != nil {
			return err
		}
		if err := ids.add(t.KeyID, "secret:"+string(t.Secret)); err != nil {
			return err
		}
		if t.Algorithm != TokenDir && t.Algorithm != TokenA256KW {
			return invalidKey(t.KeyID, "token key algorithm must be dir or A256KW")
		}
		if len(t.Secret) != TokenKeySize {
			return invalidKey(t.KeyID, fmt.Sprintf("token key of %d bytes, want %d", len(t.Secret), TokenKeySize))
		}
	}
	return nil
}

// Public returns the set of public signing keys that clients pin and that
// backends use to verify tokens.
func (k *ServerKeys) Public() *PublicSet {
	s := &PublicSet{m: make(map[string]*PublicKey, len(k.Signing))}
	for _, sk := range k.Signing {
		p := &PublicKey{KeyID: sk.KeyID, Algorithm: sk.Algorithm, Key: sk.Signer.Public()}
		s.m[p.KeyID] = p
		s.order = append(s.order, p.KeyID)
	}
	return s
}

// TokenKeyByID returns the token key with key id kid.
func (k *ServerKeys) TokenKeyByID(kid string) (*TokenKey, bool) {
	for i := range k.Token {
		if k.Token[i].KeyID == kid {
			return &k.Token[i], true
		}
	}
	return nil, false
}

// PublicKey is a public signing key with its key id and algorithm.
type PublicKey struct {
	KeyID     string
	Algorithm Algorithm
	Key       crypto.PublicKey
}

// PublicSet is an immutable set of public signing keys: the server key set a
// client pins.
type PublicSet struct {
	m     map[string]*PublicKey
	order []string
}

// NewPublicSet returns a set of keys, refusing keys that CheckKey refuses
// for their algorithm, key ids equal or equal under ASCII case folding, and
// one key under two key ids (spec section "Load-time rules").
func NewPublicSet(keys []PublicKey) (*PublicSet, error) {
	s := &PublicSet{m: make(map[string]*PublicKey, len(keys))}
	ids := newKeyIDs()
	for i := range keys {
		p := keys[i]
		if err := CheckKeyID(p.KeyID); err != nil {
			return nil, err
		}
		if err := CheckKey(p.Algorithm, p.Key); err != nil {
			return nil, fmt.Errorf("keys: key %q: %w", p.KeyID, err)
		}
		tp, err := thumbprint(p.Key)
		if err != nil {
			return nil, err
		}
		if err := ids.add(p.KeyID, tp); err != nil {
			return nil, err
		}
		s.m[p.KeyID] = &p
		s.order = append(s.order, p.KeyID)
	}
	if len(s.order) == 0 {
		return nil, fmt.Errorf("%w: empty key set", ErrInvalidKey)
	}
	return s, nil
}

// Lookup returns the key with key id kid.
func (s *PublicSet) Lookup(kid string) (*PublicKey, bool) {
	p, ok := s.m[kid]
	return p, ok
}

// Keys returns the keys in order.
func (s *PublicSet) Keys() []*PublicKey {
	out := make([]*PublicKey, len(s.order))
	for i, kid := range s.order {
		out[i] = s.m[kid]
	}
	return out
}
