// Package strictjson checks that a document is in the strict JSON subset of
// spec/wsproof-v1.md section "Encodings": one I-JSON (RFC 7493) value in
// valid UTF-8, with no two members of one object whose names are equal or
// equal under ASCII case folding, and nothing after the value but whitespace.
//
// encoding/json accepts duplicate members (last one wins) and matches names
// case-insensitively, so two parsers can read one message differently; Check
// runs before any decoding so that such a message is refused outright.
package strictjson

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// MaxDepth bounds nesting so that a hostile document cannot exhaust the stack.
const MaxDepth = 32

// Error describes why a document is not strict JSON. Offset is the byte offset
// of the problem. The message never includes document bytes.
type Error struct {
	Offset int
	Reason string
}

func (e *Error) Error() string {
	return "strictjson: " + e.Reason + " at offset " + strconv.Itoa(e.Offset)
}

// ErrNotObject is returned by CheckObject for a valid document whose top-level
// value is not an object.
var ErrNotObject = errors.New("strictjson: top-level value is not an object")

// Check returns nil if data is one strict JSON value, or an *Error.
func Check(data []byte) error {
	s := scanner{data: data}
	s.space()
	if err := s.value(0); err != nil {
		return err
	}
	s.space()
	if s.pos != len(s.data) {
		return s.fail("data after the top-level value")
	}
	return nil
}

// CheckObject is Check plus the requirement that the value be an object.
func CheckObject(data []byte) error {
	if err := Check(data); err != nil {
		return err
	}
	for _, c := range data {
		if !isSpace(c) {
			if c != '{' {
				return ErrNotObject
			}
			break
		}
	}
	return nil
}

type scanner struct {
	data    []byte
	pos     int
	members map[string]json.RawMessage // when set, receives the top-level object's members
}

func (s *scanner) fail(reason string) error { return &Error{Offset: s.pos, Reason: reason} }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) space() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.pos++
	}
}

func (s *scanner) value(depth int) error {
	if depth > MaxDepth {
		return s.fail("nesting too deep")
	}
	if s.pos >= len(s.data) {
		return s.fail("unexpected end of data")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
				s.pos += len(lit)
				return nil
			}
		}
		return s.fail("invalid value")
	}
}

func (s *scanner) object(depth int) error {
	s.pos++ // '{'
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	// Objects in wsproof messages have a handful of members; a linear scan
	// over folded names beats a map and allocates only the names.
	var names []string
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.fail("expected member name")
		}
		at := s.pos
		name, err := s.str()
		if err != nil {
			return err
		}
		folded := foldASCII(name)
		for _, n := range names {
			if n == folded {
				return &Error{Offset: at, Reason: "duplicate or case-variant member name"}
			}
		}
		names = append(names, folded)
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.fail("expected ':'")
		}
		s.pos++
		s.space()
		start := s.pos
		if err := s.value(depth + 1); err != nil {
			return err
		}
		if depth == 0 && s.members != nil {
			s.members[name] = s.data[start:s.pos:s.pos]
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of data")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}'")
		}
	}
}

func (s *scanner) array(depth int) error {
	s.pos++ // '['
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		s.space()
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of data")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or ']'")
		}
	}
}

// str scans a string and returns its decoded value (escapes resolved), so
// that "a" and "\u0061" are recognised as the same member name.
func (s *scanner) str() (string, error) {
	s.pos++ // opening quote
	start := s.pos
	var buf []byte // nil until the first escape
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			out := s.data[start:s.pos]
			s.pos++
			if buf != nil {
				return string(append(buf, out...)), nil
			}
			return string(out), nil
		case c == '\\':
			buf = append(buf, s.data[start:s.pos]...)
			r, err := s.escape()
			if err != nil {
				return "", err
			}
			if noncharacter(r) {
				return "", s.fail("noncharacter in string")
			}
			buf = utf8.AppendRune(buf, r)
			start = s.pos
		case c < 0x20:
			return "", s.fail("control character in string")
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, n := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && n <= 1 {
				return "", s.fail("invalid UTF-8")
			}
			if noncharacter(r) {
				return "", s.fail("noncharacter in string")
			}
			s.pos += n
		}
	}
	return "", s.fail("unterminated string")
}

func (s *scanner) escape() (rune, error) {
	s.pos++ // backslash
	if s.pos >= len(s.data) {
		return 0, s.fail("unterminated escape")
	}
	c := s.data[s.pos]
	s.pos++
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, err := s.hex4()
		if err != nil {
			return 0, err
		}
		if r >= 0xD800 && r < 0xDC00 { // high surrogate: a low one must follow
			if len(s.data)-s.pos < 6 || s.data[s.pos] != '\\' || s.data[s.pos+1] != 'u' {
				return 0, s.fail("unpaired surrogate")
			}
			s.pos += 2
			lo, err := s.hex4()
			if err != nil {
				return 0, err
			}
			if lo < 0xDC00 || lo > 0xDFFF {
				return 0, s.fail("unpaired surrogate")
			}
			return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), nil
		}
		if r >= 0xDC00 && r <= 0xDFFF {
			return 0, s.fail("unpaired surrogate")
		}
		return r, nil
	}
	return 0, s.fail("invalid escape")
}

func (s *scanner) hex4() (rune, error) {
	if len(s.data)-s.pos < 4 {
		return 0, s.fail("short unicode escape")
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, s.fail("invalid unicode escape")
		}
	}
	s.pos += 4
	return r, nil
}

// noncharacter reports whether r is a Unicode noncharacter, which I-JSON
// (RFC 7493 section 2.1) forbids: U+FDD0..U+FDEF and the last two code points
// of every plane.
func noncharacter(r rune) bool {
	return (r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE
}

// number scans an RFC 8259 number.
func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos >= len(s.data) {
		return s.fail("invalid number")
	}
	if s.data[s.pos] == '0' {
		s.pos++
	} else if !s.digits() {
		return s.fail("invalid number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if !s.digits() {
			return s.fail("invalid number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if !s.digits() {
			return s.fail("invalid number")
		}
	}
	return nil
}

func (s *scanner) digits() bool {
	start := s.pos
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos > start
}

// foldASCII lower-cases ASCII letters only, as the spec's case-variant rule
// says; it returns name itself when there is nothing to fold.
func foldASCII(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}
