package pkcs11

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const mod = "?module-path=/usr/lib/softhsm/libsofthsm2.so"

func TestParseURI(t *testing.T) {
	slot := uint64(42)
	for in, want := range map[string]*URI{
		"pkcs11:token=wsproof;object=sensor-7" + mod: {Token: "wsproof", Object: "sensor-7", ModulePath: "/usr/lib/softhsm/libsofthsm2.so"},
		"PKCS11:serial=5ee0d64073f52320;id=%01%02%ff;type=private" + mod + "&pin-value=1234": {
			Serial: "5ee0d64073f52320", ID: []byte{1, 2, 0xff}, Type: "private", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PinValue: "1234"},
		"pkcs11:slot-id=42;object=My%20Key%3b%2F;id=A" + mod + "&pin-source=file:/run/pin": {
			SlotID: &slot, Object: "My Key;/", ID: []byte("A"), ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PinSource: "/run/pin"},
		"pkcs11:token=a&b;object=x" + mod + "&pin-source=file:///run/pin":   {Token: "a&b", Object: "x", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PinSource: "/run/pin"},
		"pkcs11:token=t;object=x?pin-source=/run/pin&module-path=/m%20n.so": {Token: "t", Object: "x", ModulePath: "/m n.so", PinSource: "/run/pin"},
	} {
		got, err := ParseURI(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", in, got, want)
		}
		again, err := ParseURI(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: String %s parses to %+v, %v", in, got.String(), again, err)
		}
	}
}

func TestParseURIRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"":                                                             "start with pkcs11:",
		"pkcs12:token=a;object=b" + mod:                                "start with pkcs11:",
		"pkcs11:token=a;object=b":                                      "module-path",
		"pkcs11:object=b" + mod:                                        "exactly one of",
		"pkcs11:token=a;serial=1;object=b" + mod:                       "exactly one of",
		"pkcs11:token=a" + mod:                                         "name the key",
		"pkcs11:token=a;token=b;object=c" + mod:                        "appears twice",
		"pkcs11:token=a;object=b" + mod + "&" + mod[1:]:                "appears twice",
		"pkcs11:token=a;object=b;manufacturer=x" + mod:                 "not supported",
		"pkcs11:token=a;object=b;x-vendor=1" + mod:                     "unknown attribute",
		"pkcs11:token=a;object=b;type=cert" + mod:                      "names no private key",
		"pkcs11:token=a;object=b;type=secret" + mod:                    "unknown type",
		"pkcs11:token=a;object=b;slot-id=1" + mod:                      "exactly one of",
		"pkcs11:slot-id=-1;object=b" + mod:                             "decimal number",
		"pkcs11:slot-id=99999999999999999999;object=b" + mod:           "too large",
		"pkcs11:token=a;object=b/c" + mod:                              "must be %-escaped",
		"pkcs11:token=a;object=b%2" + mod:                              "truncated",
		"pkcs11:token=a;object=b%zz" + mod:                             "bad %-escape",
		"pkcs11:token=a;object=%00" + mod:                              "control character",
		"pkcs11:token=a;object=%ff" + mod:                              "UTF-8",
		"pkcs11:token=" + strings.Repeat("a", 33) + ";object=b" + mod:  "1 to 32 bytes",
		"pkcs11:token=a;object=b;id=" + mod:                            "id is empty",
		"pkcs11:token=a;object=b;noequals" + mod:                       "not name=value",
		"pkcs11:token=a;object=b?":                                     "empty query",
		"pkcs11:token=a;object=b?module-path=lib.so":                   "absolute path",
		"pkcs11:token=a;object=b" + mod + "&module-name=softhsm2":      "module-name is not supported",
		"pkcs11:token=a;object=b" + mod + "&pin-value=1&pin-source=/p": "not both",
		"pkcs11:token=a;object=b" + mod + "&pin-source=|/bin/cat":      "pin-source must be",
		"pkcs11:token=a;object=b" + mod + "&pin-source=file://host/p":  "local file",
		"pkcs11:token=a;object=b" + mod + "&pin-source=pin.txt":        "pin-source must be",
		"pkcs11:token=a;object=b" + mod + "&pin-value=a&b":             "not name=value",
		"pkcs11:token=a;object=b" + mod + "&pin-value=":                "pin-value must be",
		"pkcs11:token=a;object=b" + mod + "&other=1":                   "unknown query attribute",
		"pkcs11:token=a;object=b" + mod + "&pin-value=a;b":             "must be %-escaped",
	} {
		_, err := ParseURI(in)
		if !errors.Is(err, ErrURI) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", in, err, want)
		}
	}
}

func TestRedacted(t *testing.T) {
	u, err := ParseURI("pkcs11:token=t;object=k" + mod + "&pin-value=1234")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(u.Redacted(), "1234") || !strings.Contains(u.String(), "pin-value=1234") {
		t.Fatalf("String %s, Redacted %s", u.String(), u.Redacted())
	}
}

func TestPIN(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for content, want := range map[string]string{"1234\n": "1234", "1234": "1234", "12 34\r\n": "12 34"} {
		u := &URI{PinSource: file("pin", content)}
		if got, err := u.PIN(); err != nil || got != want {
			t.Errorf("%q: %q, %v", content, got, err)
		}
	}
	for _, content := range []string{"", "\n", "12\n34\n", strings.Repeat("9", 300)} {
		u := &URI{PinSource: file("bad", content)}
		if got, err := u.PIN(); err == nil {
			t.Errorf("%q accepted as %q", content, got)
		}
	}
	if _, err := (&URI{}).PIN(); err == nil || !strings.Contains(err.Error(), "gives no PIN") {
		t.Errorf("no PIN: %v", err)
	}
	if _, err := (&URI{PinSource: filepath.Join(dir, "none")}).PIN(); err == nil {
		t.Error("a missing PIN file was accepted")
	}
}

// FuzzParseURI: the parser never panics, and whatever it accepts prints
// (String) as a URI that parses back to the same value and prints the same.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=wsproof;object=sensor-7" + mod,
		"pkcs11:serial=1;id=%01%02;type=private" + mod + "&pin-value=1234",
		"pkcs11:slot-id=0;object=a%20b" + mod + "&pin-source=file:///run/pin",
		"pkcs11:token=a&b;object=%3B" + mod,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if u != nil {
				t.Fatal("an error with a value")
			}
			return
		}
		out := u.String()
		again, err := ParseURI(out)
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(u, again) || again.String() != out {
			t.Fatalf("%q: %+v printed as %q, parsed back as %+v", s, u, out, again)
		}
		if u.PinValue != "" && strings.Contains(u.Redacted(), "pin-value") {
			t.Fatalf("%q: Redacted keeps pin-value", s)
		}
		if u.ID != nil && !bytes.Contains([]byte(out), []byte("id=%")) {
			t.Fatalf("%q: id printed unescaped in %q", s, out)
		}
	})
}
