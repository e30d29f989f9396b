// Package b64u implements the canonical base64url of spec/wsproof-v1.md
// section "Encodings": the RFC 4648 section 5 alphabet, no padding, no
// whitespace, and zero unused trailing bits, so that every byte string has
// exactly one encoding.
package b64u

import (
	"encoding/base64"
	"errors"
)

// ErrNotCanonical is returned for any input that is not canonical base64url.
var ErrNotCanonical = errors.New("b64u: not canonical base64url")

var strict = base64.RawURLEncoding.Strict()

// Encode returns the canonical base64url encoding of b.
func Encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Append appends the canonical base64url encoding of b to dst.
func Append(dst, b []byte) []byte { return base64.RawURLEncoding.AppendEncode(dst, b) }

// EncodedLen returns the length of the encoding of n bytes.
func EncodedLen(n int) int { return base64.RawURLEncoding.EncodedLen(n) }

// DecodedLen returns the number of bytes that n characters of canonical
// base64url (see Check) decode to.
func DecodedLen(n int) int { return base64.RawURLEncoding.DecodedLen(n) }

// Text is what the decoding functions read: a string, or bytes read in
// place (a message's segment) without a copy.
type Text interface{ ~string | ~[]byte }

// Decode decodes canonical base64url. encoding/base64 skips CR and LF even in
// strict mode, so they are refused here first.
func Decode[T Text](s T) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			return nil, ErrNotCanonical
		}
	}
	b := make([]byte, DecodedLen(len(s)))
	n, err := strict.Decode(b, []byte(s))
	if err != nil || n != len(b) {
		return nil, ErrNotCanonical
	}
	return b, nil
}

// Check reports whether s is canonical base64url, without decoding it.
func Check[T Text](s T) error {
	if len(s)%4 == 1 {
		return ErrNotCanonical
	}
	for i := 0; i < len(s); i++ {
		if value(s[i]) < 0 {
			return ErrNotCanonical
		}
	}
	// The last character of a partial group carries unused bits, which
	// must be zero: 4 of them after 2 characters, 2 after 3.
	switch len(s) % 4 {
	case 2:
		if value(s[len(s)-1])&0x0f != 0 {
			return ErrNotCanonical
		}
	case 3:
		if value(s[len(s)-1])&0x03 != 0 {
			return ErrNotCanonical
		}
	}
	return nil
}

func value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// DecodeLen decodes s and requires exactly n bytes.
func DecodeLen[T Text](s T, n int) ([]byte, error) {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return nil, ErrNotCanonical
	}
	return Decode(s)
}
