//go:build !cgo

package pkcs11

import (
	"crypto"
	"errors"
	"io"

	"github.com/wsproof/wsproof/keys"
)

// ErrNoCgo is returned by Open and Generate in a program built without cgo
// (CGO_ENABLED=0): a PKCS #11 module is a C library, loaded through cgo.
var ErrNoCgo = errors.New("pkcs11: this wsproof was built without cgo (CGO_ENABLED=0), so it cannot load a PKCS #11 module; build it with cgo")

// ErrExists is returned by Generate when the token already holds a key
// with the URI's label or id.
var ErrExists = errors.New("pkcs11: the token already holds a key with this label or id")

// Key is a private key on a PKCS #11 token. Without cgo there is none.
type Key struct{}

// Open fails with ErrNoCgo after checking the URI.
func Open(uri string) (*Key, error) {
	if _, err := ParseURI(uri); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Generate fails with ErrNoCgo after checking the URI.
func Generate(uri string, alg keys.Algorithm, bits int) (*Key, error) {
	if _, err := ParseURI(uri); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

func (*Key) Public() crypto.PublicKey                                  { return nil }
func (*Key) Algorithms() []keys.Algorithm                              { return nil }
func (*Key) URI() string                                               { return "" }
func (*Key) NeverExtractable() (bool, error)                           { return false, ErrNoCgo }
func (*Key) Close() error                                              { return nil }
func (*Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, ErrNoCgo }
