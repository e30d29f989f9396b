package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/wsproof/wsproof/keys"
)

// Key is a key in a TPM, as a crypto.Signer.
type Key struct {
	uri   *URI
	alg   keys.Algorithm
	pub   crypto.PublicKey
	area  *tpm2.TPMTPublic
	name  tpm2.TPM2BName
	flush bool // the handle is transient, loaded by Open

	mu     sync.Mutex // one command at a time; guards the fields below
	tpm    transport.TPMCloser
	handle tpm2.TPMHandle
}

// ErrExists is returned by Generate when the key file or the persistent
// handle is already taken.
var ErrExists = errors.New("tpm: the key file or handle is already taken")

// Open opens the TPM the URI names and makes the key ready to sign: a key
// file is loaded under the storage root key (made again from its template,
// which gives the same key in the same TPM), a persistent handle is read.
// The key must pass the checks that Generate's keys pass: a signing key
// made in this TPM, never duplicable, with its scheme fixed to one wsproof
// algorithm and no password or policy.
func Open(uri string) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	var pubArea, privArea []byte
	if u.File != "" {
		data, err := readSmall(u.File)
		if err != nil {
			return nil, err
		}
		if pubArea, privArea, err = parseKeyFile(data); err != nil {
			return nil, fmt.Errorf("%w: %s", err, u.File)
		}
		if _, _, _, err := checkPublic(pubArea); err != nil {
			return nil, err
		}
	}
	t, err := open(u.DeviceOrDefault())
	if err != nil {
		return nil, err
	}
	k := &Key{uri: u, tpm: t}
	if u.File != "" {
		err = k.load(pubArea, privArea)
	} else {
		err = k.read()
	}
	if err != nil {
		k.release()
		return nil, err
	}
	return k, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: cannot read the key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("tpm: cannot read the key file: %w", err)
	}
	return data, nil
}

// srk makes the storage root key from the TCG ECC P-256 SRK template under
// the owner hierarchy (whose password must be empty, as it is unless an
// owner set one). The same TPM always makes the same key from it.
func srk(t transport.TPM) (*tpm2.CreatePrimaryResponse, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: cannot make the storage root key (an owner password is not supported): %w", err)
	}
	return rsp, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// load loads a key file's blobs under the SRK.
func (k *Key) load(pubArea, privArea []byte) error {
	parent, err := srk(k.tpm)
	if err != nil {
		return err
	}
	defer flush(k.tpm, parent.ObjectHandle)
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.ObjectHandle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: privArea},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](pubArea),
	}.Execute(k.tpm)
	if err != nil {
		return fmt.Errorf("tpm: this TPM cannot load the key (it was made in another TPM, or the TPM was cleared): %w", err)
	}
	k.handle, k.name, k.flush = rsp.ObjectHandle, rsp.Name, true
	return k.check(pubArea)
}

// read reads a persistent key's public area.
func (k *Key) read() error {
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(k.uri.Handle)}.Execute(k.tpm)
	if err != nil {
		return fmt.Errorf("tpm: no key at handle 0x%08x: %w", k.uri.Handle, err)
	}
	k.handle, k.name = tpm2.TPMHandle(k.uri.Handle), rsp.Name
	return k.check(rsp.OutPublic.Bytes())
}

func (k *Key) check(pubArea []byte) error {
	area, alg, pub, err := checkPublic(pubArea)
	if err != nil {
		return err
	}
	k.area, k.alg, k.pub = area, alg, pub
	return nil
}

// template is the public area of a new key for alg: made in the TPM, bound
// to it and to its parent, a signing key with its scheme fixed to alg, no
// password (userWithAuth with an empty authValue) and noDA, since an empty
// password cannot be guessed.
func template(alg keys.Algorithm, bits int) (tpm2.TPMTPublic, error) {
	t := tpm2.TPMTPublic{
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true,
		},
	}
	ecc := func(curve tpm2.TPMECCCurve, hash tpm2.TPMAlgID) {
		t.Type = tpm2.TPMAlgECC
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: hash})},
			CurveID: curve,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{})
	}
	rsa := func(scheme tpm2.TPMAlgID, details *tpm2.TPMUAsymScheme) {
		t.Type = tpm2.TPMAlgRSA
		t.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: scheme, Details: *details},
			KeyBits: tpm2.TPMKeyBits(bits),
		})
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	}
	if bits != 0 && alg != keys.RS256 && alg != keys.PS256 {
		return t, errors.New("tpm: bits is for RSA keys only")
	}
	switch alg {
	case keys.ES256:
		ecc(tpm2.TPMECCNistP256, tpm2.TPMAlgSHA256)
	case keys.ES384:
		ecc(tpm2.TPMECCNistP384, tpm2.TPMAlgSHA384)
	case keys.ES512:
		ecc(tpm2.TPMECCNistP521, tpm2.TPMAlgSHA512)
	case keys.RS256, keys.PS256:
		if bits == 0 {
			bits = 2048
		}
		if bits < keys.MinRSABits || bits > keys.MaxRSABits {
			return t, fmt.Errorf("tpm: an RSA key has %d to %d bits", keys.MinRSABits, keys.MaxRSABits)
		}
		if alg == keys.RS256 {
			d := tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})
			rsa(tpm2.TPMAlgRSASSA, &d)
		} else {
			d := tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256})
			rsa(tpm2.TPMAlgRSAPSS, &d)
		}
	default:
		return t, fmt.Errorf("tpm: %s keys cannot be made in a TPM (supported: ES256, ES384, ES512, RS256, PS256, as the TPM allows)", alg)
	}
	return t, nil
}

// Generate creates a key for alg in the TPM the URI names, under the
// storage root key, and returns it ready to sign. bits is the RSA modulus
// size (0 means 2048, which every TPM offers; some offer 3072) and must be
// 0 for ECDSA. For tpm:PATH the key's blobs are written to PATH, a new file
// of mode 0600 (never overwritten: ErrExists); for tpm:0x81XXXXXX the key is
// made persistent at that handle (ErrExists when taken), which needs the
// owner hierarchy's empty password. The private key is made by the TPM and
// cannot leave it.
func Generate(uri string, alg keys.Algorithm, bits int) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(alg, bits)
	if err != nil {
		return nil, err
	}
	if u.File != "" {
		if _, err := os.Lstat(u.File); err == nil {
			return nil, fmt.Errorf("%w: %s exists", ErrExists, u.File)
		}
	}
	t, err := open(u.DeviceOrDefault())
	if err != nil {
		return nil, err
	}
	k := &Key{uri: u, tpm: t}
	if err := k.generate(tmpl); err != nil {
		k.release()
		return nil, err
	}
	return k, nil
}

func (k *Key) generate(tmpl tpm2.TPMTPublic) error {
	t, u := k.tpm, k.uri
	if u.File == "" {
		if _, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(u.Handle)}).Execute(t); err == nil {
			return fmt.Errorf("%w: handle 0x%08x holds a key", ErrExists, u.Handle)
		}
	}
	parent, err := srk(t)
	if err != nil {
		return err
	}
	defer flush(t, parent.ObjectHandle)
	ph := tpm2.AuthHandle{Handle: parent.ObjectHandle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)}
	made, err := tpm2.Create{ParentHandle: ph, InPublic: tpm2.New2B(tmpl)}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: the TPM did not make the key (it may not support this algorithm or size): %w", err)
	}
	pubArea := made.OutPublic.Bytes()
	if u.File != "" {
		f, err := os.OpenFile(u.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if os.IsExist(err) {
				return fmt.Errorf("%w: %s exists", ErrExists, u.File)
			}
			return fmt.Errorf("tpm: cannot write the key file: %w", err)
		}
		_, err = f.Write(marshalKeyFile(pubArea, made.OutPrivate.Buffer))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(u.File)
			return fmt.Errorf("tpm: cannot write the key file: %w", err)
		}
	}
	loaded, err := tpm2.Load{ParentHandle: ph, InPrivate: made.OutPrivate, InPublic: made.OutPublic}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: cannot load the new key: %w", err)
	}
	k.handle, k.name, k.flush = loaded.ObjectHandle, loaded.Name, true
	if u.File == "" {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
			PersistentHandle: tpm2.TPMHandle(u.Handle),
		}.Execute(t)
		flush(t, loaded.ObjectHandle)
		if err != nil {
			return fmt.Errorf("tpm: cannot make the key persistent at 0x%08x: %w", u.Handle, err)
		}
		k.handle, k.flush = tpm2.TPMHandle(u.Handle), false
	}
	return k.check(pubArea)
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Algorithm returns the one algorithm the key signs with, fixed in the TPM
// when the key was made.
func (k *Key) Algorithm() keys.Algorithm { return k.alg }

// URI returns the key's URI in canonical form.
func (k *Key) URI() string { return k.uri.String() }

// Sign has the TPM sign digest with the key's scheme, which opts must
// match: the curve's hash for ECDSA (the TPM's r and s are returned as
// ASN.1 DER); SHA-256 for an RS256 key (PKCS #1 v1.5); *rsa.PSSOptions
// with SHA-256 and a salt as long as the hash for a PS256 key. The
// signature is checked against the public key before it is returned: a
// TPM whose PSS salt is not the hash's length fails here. rand is not
// used: the TPM draws its own randomness.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	pss, isPSS := opts.(*rsa.PSSOptions)
	switch {
	case isPSS != (k.alg == keys.PS256):
		return nil, fmt.Errorf("tpm: this is a %s key: its scheme is fixed in the TPM", k.alg)
	case isPSS && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != opts.HashFunc().Size():
		return nil, errors.New("tpm: a TPM's PSS salt is as long as the hash")
	case opts.HashFunc() != hashOf(k.alg) || len(digest) != opts.HashFunc().Size():
		return nil, fmt.Errorf("tpm: a %s key signs a %v digest", k.alg, hashOf(k.alg))
	}
	k.mu.Lock()
	if k.tpm == nil {
		k.mu.Unlock()
		return nil, errors.New("tpm: the key is closed")
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(k.tpm)
	k.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("tpm: the TPM did not sign: %w", err)
	}
	var sig []byte
	switch k.alg {
	case keys.ES256, keys.ES384, keys.ES512:
		e, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, errors.New("tpm: the TPM did not answer with an ECDSA signature")
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(new(big.Int).SetBytes(e.SignatureR.Buffer))
			b.AddASN1BigInt(new(big.Int).SetBytes(e.SignatureS.Buffer))
		})
		if sig, err = b.Bytes(); err != nil {
			return nil, err
		}
		if !ecdsa.VerifyASN1(k.pub.(*ecdsa.PublicKey), digest, sig) {
			return nil, errors.New("tpm: the TPM's signature does not verify")
		}
	case keys.RS256, keys.PS256:
		var r *tpm2.TPMSSignatureRSA
		if k.alg == keys.RS256 {
			r, err = rsp.Signature.Signature.RSASSA()
		} else {
			r, err = rsp.Signature.Signature.RSAPSS()
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: the TPM did not answer with a %s signature", k.alg)
		}
		pub := k.pub.(*rsa.PublicKey)
		sig = r.Sig.Buffer
		if len(sig) != pub.Size() {
			return nil, errors.New("tpm: the TPM's RSA signature has the wrong length")
		}
		if k.alg == keys.RS256 {
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig)
		} else {
			err = rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: crypto.SHA256.Size(), Hash: crypto.SHA256})
		}
		if err != nil {
			return nil, fmt.Errorf("tpm: the TPM's %s signature does not verify (for PS256: with a salt as long as the hash)", k.alg)
		}
	}
	return sig, nil
}

func hashOf(alg keys.Algorithm) crypto.Hash {
	switch alg {
	case keys.ES384:
		return crypto.SHA384
	case keys.ES512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// Close flushes a key Open loaded from a file out of the TPM (a persistent
// key stays) and closes the TPM. Signing afterwards fails.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.release()
}

// release is Close with k.mu held, or before k is shared.
func (k *Key) release() error {
	if k.tpm == nil {
		return nil
	}
	if k.flush {
		flush(k.tpm, k.handle)
	}
	err := k.tpm.Close()
	k.tpm = nil
	return err
}
