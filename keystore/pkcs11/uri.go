package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wsproof/wsproof/internal/pctenc"
)

// URI is a parsed RFC 7512 PKCS #11 URI naming one private key on one
// token, with the module to load and where to find the token's PIN. Only
// the attributes below are implemented; ParseURI refuses every other one,
// standard or vendor-specific, rather than ignore it, for an ignored
// selector could select another key.
type URI struct {
	// The token, by exactly one of its label (token=), its serial number
	// (serial=) or its slot (slot-id=).
	Token  string
	Serial string
	SlotID *uint64

	// The key, by its label (object=, CKA_LABEL), its id (id=, CKA_ID) or
	// both. ID is nil when id= is absent.
	Object string
	ID     []byte

	// Type is "private" when type=private is given, else empty: a key
	// pair is always found by its private half.
	Type string

	// ModulePath is the absolute path of the PKCS #11 module (module-path=),
	// a shared library that is loaded into the process.
	ModulePath string

	// The user PIN, given in the URI (pin-value=) or as the absolute path
	// of a file holding it (pin-source=file:/path or pin-source=/path), or
	// neither. Never both.
	PinValue  string
	PinSource string
}

// Limits on decoded values: PKCS #11 token labels are 32 bytes and serial
// numbers 16; object labels and ids have no fixed size, so these bound them.
const (
	maxTokenLabel = 32
	maxSerial     = 16
	maxObject     = 256
	maxID         = 256
	maxPath       = 4096
	maxPIN        = 256
)

// ErrURI wraps every reason ParseURI refuses a URI.
var ErrURI = errors.New("pkcs11: bad PKCS #11 URI")

func uriErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrURI}, args...)...)
}

// IsURI reports whether s starts with the pkcs11: scheme.
func IsURI(s string) bool {
	return len(s) >= 7 && strings.EqualFold(s[:7], "pkcs11:")
}

// ParseURI parses s strictly, by the grammar of RFC 7512 section 2.3:
// path attributes separated by ";", then optionally "?" and query
// attributes separated by "&", each name=value with value percent-encoded
// where the grammar demands. An attribute may appear once. A URI must name
// the token (exactly one of token=, serial=, slot-id=), the key (object=,
// id= or both) and the module (module-path=, an absolute path);
// type= may only be "private". module-name= is refused: give module-path.
func ParseURI(s string) (*URI, error) {
	if !IsURI(s) {
		return nil, uriErr("it must start with pkcs11:")
	}
	rest := s[7:]
	path, query, hasQuery := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, uriErr("path attribute %q is not name=value", attr)
			}
			if seen[name] {
				return nil, uriErr("attribute %s appears twice", name)
			}
			seen[name] = true
			v, err := pctenc.Decode(raw, pathChar)
			if err != nil {
				return nil, uriErr("%s: %v", name, err)
			}
			if err := u.setPath(name, v); err != nil {
				return nil, err
			}
		}
	}
	if hasQuery {
		if query == "" {
			return nil, uriErr("empty query after ?")
		}
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, uriErr("query attribute %q is not name=value", attr)
			}
			if seen["?"+name] {
				return nil, uriErr("attribute %s appears twice", name)
			}
			seen["?"+name] = true
			v, err := pctenc.Decode(raw, queryChar)
			if err != nil {
				return nil, uriErr("%s: %v", name, err)
			}
			if err := u.setQuery(name, v); err != nil {
				return nil, err
			}
		}
	}
	if err := u.check(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *URI) setPath(name, v string) error {
	switch name {
	case "token":
		u.Token = v
		return text(name, v, maxTokenLabel)
	case "serial":
		u.Serial = v
		return text(name, v, maxSerial)
	case "object":
		u.Object = v
		return text(name, v, maxObject)
	case "slot-id":
		if v == "" || len(v) > 20 || strings.Trim(v, "0123456789") != "" {
			return uriErr("slot-id must be a decimal number")
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return uriErr("slot-id %s is too large", v)
		}
		u.SlotID = &n
	case "id":
		if v == "" {
			return uriErr("id is empty")
		}
		if len(v) > maxID {
			return uriErr("id is longer than %d bytes", maxID)
		}
		u.ID = []byte(v)
	case "type":
		if v != "private" {
			switch v {
			case "public", "cert", "secret-key", "data":
				return uriErr("type=%s names no private key: use type=private, or leave type out", v)
			}
			return uriErr("unknown type %q", v)
		}
		u.Type = v
	case "manufacturer", "model", "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer":
		return uriErr("attribute %s is not supported here: select the token with token=, serial= or slot-id=", name)
	default:
		return uriErr("unknown attribute %q", name)
	}
	return nil
}

func (u *URI) setQuery(name, v string) error {
	switch name {
	case "module-path":
		if !filepath.IsAbs(v) || len(v) > maxPath || strings.ContainsRune(v, 0) {
			return uriErr("module-path must be an absolute path")
		}
		u.ModulePath = v
	case "pin-value":
		if v == "" || len(v) > maxPIN || strings.ContainsRune(v, 0) {
			return uriErr("pin-value must be 1 to %d bytes", maxPIN)
		}
		u.PinValue = v
	case "pin-source":
		p := v
		if strings.HasPrefix(p, "file:") {
			p = strings.TrimPrefix(p, "file:")
			if strings.HasPrefix(p, "//") {
				// file:///path: an empty authority; any other host is refused.
				if !strings.HasPrefix(p, "///") {
					return uriErr("pin-source must be a local file")
				}
				p = p[2:]
			}
		}
		if !filepath.IsAbs(p) || len(p) > maxPath || strings.ContainsRune(p, 0) {
			return uriErr("pin-source must be file:/absolute/path (programs and relative paths are not supported)")
		}
		u.PinSource = p
	case "module-name":
		return uriErr("module-name is not supported: give the module's absolute path with module-path=")
	default:
		return uriErr("unknown query attribute %q", name)
	}
	return nil
}

func (u *URI) check() error {
	n := 0
	for _, set := range []bool{u.Token != "", u.Serial != "", u.SlotID != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return uriErr("name the token with exactly one of token=, serial= or slot-id=")
	case u.Object == "" && u.ID == nil:
		return uriErr("name the key with object= (its label), id= or both")
	case u.ModulePath == "":
		return uriErr("give the PKCS #11 module's absolute path with module-path=, such as ?module-path=/usr/lib/softhsm/libsofthsm2.so")
	case u.PinValue != "" && u.PinSource != "":
		return uriErr("give pin-value or pin-source, not both")
	}
	return nil
}

// text checks a decoded text attribute: UTF-8, no control characters,
// 1 to max bytes.
func text(name, v string, max int) error {
	if v == "" || len(v) > max || !utf8.ValidString(v) {
		return uriErr("%s must be 1 to %d bytes of UTF-8", name, max)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return uriErr("%s contains a control character", name)
		}
	}
	return nil
}

// PIN returns the user PIN the URI gives, reading pin-source's file (at
// most 256 bytes; one trailing newline is dropped). It fails when the URI
// gives none.
func (u *URI) PIN() (string, error) {
	switch {
	case u.PinValue != "":
		return u.PinValue, nil
	case u.PinSource == "":
		return "", errors.New("pkcs11: the URI gives no PIN: add pin-source=file:/path/to/pin (a file of mode 0600 holding the PIN) or pin-value=PIN")
	}
	f, err := os.Open(u.PinSource)
	if err != nil {
		return "", fmt.Errorf("pkcs11: cannot read the PIN: %w", err)
	}
	defer f.Close()
	buf := make([]byte, maxPIN+2)
	n, _ := f.Read(buf)
	pin := strings.TrimSuffix(strings.TrimSuffix(string(buf[:n]), "\n"), "\r")
	if pin == "" || len(pin) > maxPIN || strings.ContainsAny(pin, "\x00\n") {
		return "", fmt.Errorf("pkcs11: %s must hold the PIN alone, 1 to %d bytes", u.PinSource, maxPIN)
	}
	return pin, nil
}

// String returns the URI in canonical form: the path attributes in the
// order token, serial, slot-id, object, id, type, then module-path and the
// PIN's attribute, each value percent-encoded where RFC 7512 requires it
// and id always. It includes pin-value when the URI has one: see Redacted.
// ParseURI(u.String()) equals u.
func (u *URI) String() string {
	return u.format(true)
}

// Redacted is String without pin-value, for printing.
func (u *URI) Redacted() string {
	return u.format(false)
}

func (u *URI) format(pin bool) string {
	var path []string
	add := func(name, v string) { path = append(path, name+"="+pctenc.Encode(v, pathChar)) }
	if u.Token != "" {
		add("token", u.Token)
	}
	if u.Serial != "" {
		add("serial", u.Serial)
	}
	if u.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(*u.SlotID, 10))
	}
	if u.Object != "" {
		add("object", u.Object)
	}
	if u.ID != nil {
		path = append(path, "id="+pctenc.EncodeAll(u.ID))
	}
	if u.Type != "" {
		add("type", u.Type)
	}
	s := "pkcs11:" + strings.Join(path, ";")
	var query []string
	if u.ModulePath != "" {
		query = append(query, "module-path="+pctenc.Encode(u.ModulePath, queryChar))
	}
	if u.PinSource != "" {
		query = append(query, "pin-source="+pctenc.Encode("file:"+u.PinSource, queryChar))
	}
	if u.PinValue != "" && pin {
		query = append(query, "pin-value="+pctenc.Encode(u.PinValue, queryChar))
	}
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// pathChar and queryChar are the characters RFC 7512 lets a value carry
// unencoded besides RFC 3986's unreserved ones: pk11-res-avail, plus "&" in
// the path and "/", "?", "|" in the query.
func pathChar(c byte) bool {
	return pctenc.Unreserved(c) || strings.IndexByte(":[]@!$'()*+,=&", c) >= 0
}

func queryChar(c byte) bool {
	return pctenc.Unreserved(c) || strings.IndexByte(":[]@!$'()*+,=/?|", c) >= 0
}
