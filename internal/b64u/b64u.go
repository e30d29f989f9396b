// Package b64u implements the canonical base64url of spec/wsproof-v1.md
// section "Encodings": the RFC 4648 section 5 alphabet, no padding, no
// whitespace, and zero unused trailing bits, so that every byte string has
// exactly one encoding.
package b64u

import (
	"encoding/base64"
	"errors"
	"strings"
)

// ErrNotCanonical is returned for any input that is not canonical base64url.
var ErrNotCanonical = errors.New("b64u: not canonical base64url")

var strict = base64.RawURLEncoding.Strict()

// Encode returns the canonical base64url encoding of b.
func Encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Decode decodes canonical base64url. encoding/base64 skips CR and LF even in
// strict mode, so they are refused here first.
func Decode(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, ErrNotCanonical
	}
	b, err := strict.DecodeString(s)
	if err != nil {
		return nil, ErrNotCanonical
	}
	return b, nil
}

// Check reports whether s is canonical base64url without keeping the bytes.
func Check(s string) error {
	_, err := Decode(s)
	return err
}

// DecodeLen decodes s and requires exactly n bytes.
func DecodeLen(s string, n int) ([]byte, error) {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return nil, ErrNotCanonical
	}
	return Decode(s)
}
