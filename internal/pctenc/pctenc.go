// Package pctenc percent-encodes and decodes the values of key-store URIs
// (RFC 3986 section 2.1), each with its own set of characters allowed
// unencoded.
package pctenc

import (
	"errors"
	"fmt"
	"strings"
)

// Unreserved reports whether c is an RFC 3986 unreserved character.
func Unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// Decode decodes s, each of whose bytes must be allowed by ok or be part of
// a %XX escape (hex digits of either case).
func Decode(s string, ok func(byte) bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", errors.New("truncated %-escape")
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return "", errors.New("bad %-escape")
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		case ok(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("character %q must be %%-escaped", c)
		}
	}
	return b.String(), nil
}

// Encode percent-encodes, in upper case, every byte of s that ok does not
// allow. ok must not allow '%'.
func Encode(s string, ok func(byte) bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; ok(c) && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// EncodeAll percent-encodes every byte of s.
func EncodeAll(s []byte) string {
	var b strings.Builder
	for _, c := range s {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
