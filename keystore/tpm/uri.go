package tpm

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wsproof/wsproof/internal/pctenc"
)

// DefaultDevice is the TPM a URI without device= names: the Linux kernel's
// resource manager, which flushes what a process loaded when it exits.
const DefaultDevice = "/dev/tpmrm0"

// URI names a key in a TPM: a key file this package wrote (tpm:PATH) or a
// persistent handle (tpm:0x81XXXXXX), and the TPM that holds it.
//
//	tpm:/home/pi/.wsproof/id_es256.tpm
//	tpm:keys/sensor.tpm?device=/run/swtpm/sock
//	tpm:0x81000010
//
// PATH is percent-encoded where it holds a character other than RFC 3986's
// unreserved ones or ":@!$'()*+,;=/"; a relative PATH is relative to the
// working directory. device= is the absolute path of a TPM character
// device or of the Unix socket of a TPM emulator (swtpm socket --server
// type=unixio); without it, DefaultDevice.
type URI struct {
	File   string // the key file, or empty
	Handle uint32 // the persistent handle when File is empty
	Device string // empty for DefaultDevice
}

// ErrURI wraps every reason ParseURI refuses a URI.
var ErrURI = errors.New("tpm: bad tpm: URI")

func uriErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrURI}, args...)...)
}

const maxPath = 4096

var handleRE = regexp.MustCompile(`^0[xX]81[0-9a-fA-F]{6}$`)

// IsURI reports whether s starts with the tpm: scheme.
func IsURI(s string) bool {
	return len(s) >= 4 && strings.EqualFold(s[:4], "tpm:")
}

func pathChar(c byte) bool {
	return pctenc.Unreserved(c) || strings.IndexByte(":@!$'()*+,;=/", c) >= 0
}

// ParseURI parses s strictly: a handle or a non-empty path, then at most
// one query attribute, device=. Decoded paths must be UTF-8 without control
// characters.
func ParseURI(s string) (*URI, error) {
	if !IsURI(s) {
		return nil, uriErr("it must start with tpm:")
	}
	target, query, hasQuery := strings.Cut(s[4:], "?")
	u := &URI{}
	if handleRE.MatchString(target) {
		h, _ := strconv.ParseUint(target[2:], 16, 32)
		u.Handle = uint32(h)
	} else {
		p, err := pctenc.Decode(target, pathChar)
		if err != nil {
			return nil, uriErr("key file: %v", err)
		}
		if err := checkPath(p); err != nil {
			return nil, uriErr("key file %v", err)
		}
		u.File = p
	}
	if hasQuery {
		name, raw, ok := strings.Cut(query, "=")
		if !ok || name != "device" {
			return nil, uriErr("the only query attribute is device=")
		}
		d, err := pctenc.Decode(raw, func(c byte) bool { return pathChar(c) || c == '?' })
		if err != nil {
			return nil, uriErr("device: %v", err)
		}
		if err := checkPath(d); err != nil || !filepath.IsAbs(d) {
			return nil, uriErr("device must be an absolute path")
		}
		u.Device = d
	}
	return u, nil
}

func checkPath(p string) error {
	if p == "" || len(p) > maxPath || !utf8.ValidString(p) {
		return fmt.Errorf("must be a path of 1 to %d bytes of UTF-8", maxPath)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// DeviceOrDefault is the TPM's device or socket.
func (u *URI) DeviceOrDefault() string {
	if u.Device == "" {
		return DefaultDevice
	}
	return u.Device
}

// String returns the URI in canonical form; ParseURI(u.String()) equals u.
func (u *URI) String() string {
	var s string
	if u.File == "" {
		s = fmt.Sprintf("tpm:0x%08x", u.Handle)
	} else {
		p := pctenc.Encode(u.File, pathChar)
		if handleRE.MatchString(p) {
			p = "%30" + p[1:] // a file named like a handle
		}
		s = "tpm:" + p
	}
	if u.Device != "" {
		s += "?device=" + pctenc.Encode(u.Device, pathChar)
	}
	return s
}
