//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ThalesGroup/crypto11"

	"github.com/wsproof/wsproof/keys"
)

// Key is a private key on a PKCS #11 token, as a crypto.Signer.
type Key struct {
	ctx    *crypto11.Context
	signer crypto11.Signer
	uri    *URI

	mu     sync.RWMutex
	closed bool
}

// ErrExists is returned by Generate when the token already holds a key
// with the URI's label or id.
var ErrExists = errors.New("pkcs11: the token already holds a key with this label or id")

// Open loads the URI's module, logs in to its token with the URI's PIN and
// finds the one key pair it names.
func Open(uri string) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	ctx, err := configure(u)
	if err != nil {
		return nil, err
	}
	found, err := ctx.FindKeyPairs(u.ID, []byte(u.Object))
	if err != nil {
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: cannot search the token: %w", err)
	}
	switch len(found) {
	case 0:
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: no key pair on the token matches %s (an Ed25519 key is not supported)", u.Redacted())
	case 1:
	default:
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: %d key pairs on the token match %s: give both object= and id=", len(found), u.Redacted())
	}
	k := &Key{ctx: ctx, signer: found[0], uri: u}
	if len(keys.AlgorithmsFor(k.Public())) == 0 {
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: the key %s has no wsproof algorithm (RSA of 2048 to 4096 bits with e=65537, or ECDSA P-256, P-384, P-521)", u.Redacted())
	}
	return k, nil
}

// Generate creates a key pair for alg on the URI's token, labelled with
// object= and identified by id= (a random 16-byte id when the URI has
// none), and returns it. bits is the RSA modulus size (0 means 2048) and
// must be 0 for other algorithms. The private half is created sensitive,
// not extractable and for signing only (no decryption): the token never
// lets it out. EdDSA is not supported. It fails with ErrExists when the
// token already holds a key pair with that label or id.
func Generate(uri string, alg keys.Algorithm, bits int) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Object == "" {
		return nil, uriErr("give the new key's label with object=")
	}
	var curve elliptic.Curve
	switch alg {
	case keys.ES256:
		curve = elliptic.P256()
	case keys.ES384:
		curve = elliptic.P384()
	case keys.ES512:
		curve = elliptic.P521()
	case keys.RS256, keys.PS256:
		if bits == 0 {
			bits = 2048
		}
		if bits < keys.MinRSABits || bits > keys.MaxRSABits {
			return nil, fmt.Errorf("pkcs11: an RSA key has %d to %d bits", keys.MinRSABits, keys.MaxRSABits)
		}
	default:
		return nil, fmt.Errorf("pkcs11: %s keys cannot be made in a PKCS #11 token here (supported: ES256, ES384, ES512, RS256, PS256)", alg)
	}
	if curve != nil && bits != 0 {
		return nil, errors.New("pkcs11: bits is for RSA keys only")
	}
	given := u.Redacted()
	if u.ID == nil {
		u.ID = make([]byte, 16)
		rand.Read(u.ID)
	}
	ctx, err := configure(u)
	if err != nil {
		return nil, err
	}
	for _, probe := range [][2][]byte{{nil, []byte(u.Object)}, {u.ID, nil}} {
		found, err := ctx.FindKeyPairs(probe[0], probe[1])
		if err != nil {
			ctx.Close()
			return nil, fmt.Errorf("pkcs11: cannot search the token: %w", err)
		}
		if len(found) > 0 {
			ctx.Close()
			return nil, fmt.Errorf("%w (%s)", ErrExists, given)
		}
	}
	pub, priv := attributes(u)
	var s crypto11.Signer
	if curve != nil {
		s, err = ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, curve)
	} else {
		pub.Set(crypto11.CkaEncrypt, false)
		s, err = ctx.GenerateRSAKeyPairWithAttributes(pub, priv, bits)
	}
	if err != nil {
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: the token did not make the %s key: %w", alg, err)
	}
	return &Key{ctx: ctx, signer: s, uri: u}, nil
}

// attributes are the templates of a new key pair: on the token, labelled,
// identified; the private half private, sensitive, never extractable, for
// signing only.
func attributes(u *URI) (pub, priv crypto11.AttributeSet) {
	pub, priv = crypto11.NewAttributeSet(), crypto11.NewAttributeSet()
	for _, s := range []crypto11.AttributeSet{pub, priv} {
		s.Set(crypto11.CkaId, u.ID)
		s.Set(crypto11.CkaLabel, []byte(u.Object))
	}
	priv.Set(crypto11.CkaPrivate, true)
	priv.Set(crypto11.CkaSensitive, true)
	priv.Set(crypto11.CkaExtractable, false)
	priv.Set(crypto11.CkaSign, true)
	priv.Set(crypto11.CkaDecrypt, false)
	return pub, priv
}

// configure loads the module and logs in to the URI's token.
func configure(u *URI) (*crypto11.Context, error) {
	pin, err := u.PIN()
	if err != nil {
		return nil, err
	}
	cfg := &crypto11.Config{Path: u.ModulePath, TokenLabel: u.Token, TokenSerial: u.Serial, Pin: pin}
	if u.SlotID != nil {
		n := int(*u.SlotID)
		if n < 0 || uint64(n) != *u.SlotID {
			return nil, uriErr("slot-id %d is too large", *u.SlotID)
		}
		cfg.SlotNumber = &n
	}
	ctx, err := crypto11.Configure(cfg)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: cannot open the token of %s: %w", u.Redacted(), err)
	}
	return ctx, nil
}

// Public returns the public half, read from the token.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// Algorithms returns the wsproof algorithms the key can sign with: one for
// an ECDSA key, RS256 and PS256 for an RSA key (the server's registry
// decides which one the key is enrolled with).
func (k *Key) Algorithms() []keys.Algorithm { return keys.AlgorithmsFor(k.Public()) }

// URI returns the key's URI in canonical form, with its id, without
// pin-value.
func (k *Key) URI() string { return k.uri.Redacted() }

// Sign has the token sign digest: CKM_ECDSA for ECDSA keys (the r||s the
// token returns becomes ASN.1 DER), CKM_RSA_PKCS over the DigestInfo for
// RSA PKCS #1 v1.5, and CKM_RSA_PKCS_PSS with MGF1 of the same hash for
// *rsa.PSSOptions, whose salt length must be PSSSaltLengthEqualsHash or
// explicit. rand is not used: the token draws its own randomness.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, errors.New("pkcs11: the key is closed")
	}
	if o, ok := opts.(*rsa.PSSOptions); ok && o.SaltLength == rsa.PSSSaltLengthAuto {
		return nil, errors.New("pkcs11: give the PSS salt length (PSSSaltLengthEqualsHash)")
	}
	if _, ok := k.Public().(*ecdsa.PublicKey); ok && opts.HashFunc().Size() != len(digest) {
		return nil, fmt.Errorf("pkcs11: a %d-byte digest for %v", len(digest), opts.HashFunc())
	}
	sig, err := k.signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: the token did not sign: %w", err)
	}
	return sig, nil
}

// NeverExtractable reports whether the token vouches that the private key
// has never been extractable and has always been sensitive
// (CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE): that its value has
// never left the token in the clear.
func (k *Key) NeverExtractable() (bool, error) {
	attrs, err := k.ctx.GetAttributes(k.signer, []crypto11.AttributeType{crypto11.CkaNeverExtractable, crypto11.CkaAlwaysSensitive, crypto11.CkaExtractable})
	if err != nil {
		return false, fmt.Errorf("pkcs11: cannot read the key's attributes: %w", err)
	}
	yes := func(t crypto11.AttributeType) bool {
		a, ok := attrs[t]
		return ok && len(a.Value) == 1 && a.Value[0] == 1
	}
	return yes(crypto11.CkaNeverExtractable) && yes(crypto11.CkaAlwaysSensitive) && !yes(crypto11.CkaExtractable), nil
}

// Close waits for signatures in progress, then logs out and unloads the
// module when no other Key uses it. Signing afterwards fails.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	return k.ctx.Close()
}
