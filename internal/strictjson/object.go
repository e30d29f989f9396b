package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Object is a strict JSON object whose members are read by exact name.
// encoding/json matches struct fields case-insensitively, so wsproof never
// decodes peer input into structs; it reads members from an Object instead.
type Object map[string]json.RawMessage

// ParseObject checks data with CheckObject and splits it into members.
// The values alias data.
func ParseObject(data []byte) (Object, error) {
	s := scanner{data: data, members: make(map[string]json.RawMessage, 8)}
	s.space()
	if s.pos >= len(data) || data[s.pos] != '{' {
		if err := Check(data); err != nil {
			return nil, err
		}
		return nil, ErrNotObject
	}
	if err := s.value(0); err != nil {
		return nil, err
	}
	s.space()
	if s.pos != len(data) {
		return nil, s.fail("data after the top-level value")
	}
	return s.members, nil
}

// MemberError reports a member that is missing or of the wrong type or size.
type MemberError struct{ Name string }

func (e *MemberError) Error() string {
	return fmt.Sprintf("strictjson: member %q missing or invalid", e.Name)
}

func bad(name string) error { return &MemberError{Name: name} }

// Has reports whether the member is present.
func (o Object) Has(name string) bool { _, ok := o[name]; return ok }

// Str returns a required string member.
func (o Object) Str(name string) (string, error) {
	raw, ok := o[name]
	if !ok || len(raw) < 2 || raw[0] != '"' {
		return "", bad(name)
	}
	// The scanner has validated the string; without escapes its bytes
	// between the quotes are its value.
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	sc := scanner{data: raw}
	v, err := sc.str()
	if err != nil || sc.pos != len(raw) {
		return "", bad(name)
	}
	return v, nil
}

// OptStr returns an optional string member; "" when absent.
func (o Object) OptStr(name string) (string, error) {
	if !o.Has(name) {
		return "", nil
	}
	return o.Str(name)
}

// Bool returns an optional boolean member; false when absent.
func (o Object) Bool(name string) (bool, error) {
	raw, ok := o[name]
	if !ok {
		return false, nil
	}
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, bad(name)
}

// Date returns a required NumericDate: a JSON integer from 0 to 2^53-1,
// without fraction, exponent or leading zeros.
func (o Object) Date(name string) (int64, error) {
	raw, ok := o[name]
	if !ok {
		return 0, bad(name)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || raw[0] == '-' || raw[0] == '+' || n > 1<<53-1 || (len(raw) > 1 && raw[0] == '0') {
		return 0, bad(name)
	}
	return n, nil
}

// Strs returns a required array of at most maxN strings, each 1 to maxLen
// bytes. An empty array is returned as a non-nil empty slice.
func (o Object) Strs(name string, maxN, maxLen int) ([]string, error) {
	raw, ok := o[name]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, bad(name)
	}
	out := []string{}
	sc := scanner{data: raw, pos: 1}
	sc.space()
	if sc.pos < len(raw) && raw[sc.pos] == ']' {
		sc.pos++
	} else {
		for {
			sc.space()
			if sc.pos >= len(raw) || raw[sc.pos] != '"' {
				return nil, bad(name)
			}
			s, err := sc.str()
			if err != nil || len(s) == 0 || len(s) > maxLen || len(out) == maxN {
				return nil, bad(name)
			}
			out = append(out, s)
			sc.space()
			if sc.pos >= len(raw) || raw[sc.pos] != ',' && raw[sc.pos] != ']' {
				return nil, bad(name)
			}
			sc.pos++
			if raw[sc.pos-1] == ']' {
				break
			}
		}
	}
	sc.space()
	if sc.pos != len(raw) {
		return nil, bad(name)
	}
	return out, nil
}

// Array splits an array that ParseObject returned as a member's value into
// its elements, which alias raw. It reads what encoding/json.Unmarshal
// reads into a []json.RawMessage, without linking encoding/json's decoder,
// for clients on small devices (issue 15): keys.ParsePublicSet's key set
// is such an array.
func Array(raw json.RawMessage) ([]json.RawMessage, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, &Error{Reason: "not an array"}
	}
	sc := scanner{data: raw, pos: 1}
	out := []json.RawMessage{}
	sc.space()
	if sc.pos < len(raw) && raw[sc.pos] == ']' {
		sc.pos++
	} else {
		for {
			sc.space()
			start := sc.pos
			if err := sc.value(1); err != nil {
				return nil, err
			}
			out = append(out, raw[start:sc.pos:sc.pos])
			sc.space()
			if sc.pos >= len(raw) || raw[sc.pos] != ',' && raw[sc.pos] != ']' {
				return nil, sc.fail("expected ',' or ']'")
			}
			sc.pos++
			if raw[sc.pos-1] == ']' {
				break
			}
		}
	}
	sc.space()
	if sc.pos != len(raw) {
		return nil, sc.fail("data after the array")
	}
	return out, nil
}
