package tpm

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/wsproof/wsproof/keys"
)

func TestParseURI(t *testing.T) {
	for in, want := range map[string]*URI{
		"tpm:/home/pi/.wsproof/id.tpm":        {File: "/home/pi/.wsproof/id.tpm"},
		"TPM:keys/a%20b%3F.tpm":               {File: "keys/a b?.tpm"},
		"tpm:0x81000010":                      {Handle: 0x81000010},
		"tpm:0X81ABCDEF?device=/dev/tpmrm0":   {Handle: 0x81abcdef, Device: "/dev/tpmrm0"},
		"tpm:k.tpm?device=/run/swtpm/s%20ock": {File: "k.tpm", Device: "/run/swtpm/s ock"},
		"tpm:%30x81000010":                    {File: "0x81000010"},
		"tpm:0x8100001":                       {File: "0x8100001"},
		"tpm:C:/keys/id.tpm":                  {File: "C:/keys/id.tpm"},
	} {
		got, err := ParseURI(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", in, got, want)
		}
		if again, err := ParseURI(got.String()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: String %s parses to %+v, %v", in, got.String(), again, err)
		}
	}
}

func TestParseURIRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "start with tpm:",
		"tpm2:x":                           "start with tpm:",
		"tpm:":                             "1 to 4096 bytes",
		"tpm:?device=/dev/tpm0":            "1 to 4096 bytes",
		"tpm:a b":                          "must be %-escaped",
		"tpm:a%zz":                         "bad %-escape",
		"tpm:a%0a":                         "control character",
		"tpm:a%ff":                         "UTF-8",
		"tpm:k?device=dev/tpm0":            "absolute path",
		"tpm:k?device=":                    "absolute path",
		"tpm:k?dev=/dev/tpm0":              "only query attribute",
		"tpm:k?device=/a&device=/b":        "must be %-escaped",
		"tpm:k?":                           "only query attribute",
		"tpm:k#frag":                       "must be %-escaped",
		"tpm:" + strings.Repeat("a", 4097): "1 to 4096 bytes",
	} {
		_, err := ParseURI(in)
		if !errors.Is(err, ErrURI) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", in, err, want)
		}
	}
}

// FuzzParseURI: the parser never panics, and what it accepts prints back to
// itself.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"tpm:/a/b.tpm", "tpm:0x81000010?device=/dev/tpmrm0", "tpm:%30x81000010", "tpm:a%20b?device=/s%3Fock"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		out := u.String()
		again, err := ParseURI(out)
		if err != nil || !reflect.DeepEqual(again, u) || again.String() != out {
			t.Fatalf("%q: %+v printed as %q, parsed back as %+v, %v", s, u, out, again, err)
		}
	})
}

// TestKeyFile: a key file's two blobs come back as written; anything else
// is refused.
func TestKeyFile(t *testing.T) {
	good := marshalKeyFile([]byte("pub"), []byte("private"))
	pub, priv, err := parseKeyFile(good)
	if err != nil || string(pub) != "pub" || string(priv) != "private" {
		t.Fatalf("%q %q %v", pub, priv, err)
	}
	for name, data := range map[string][]byte{
		"empty":        nil,
		"other type":   []byte(strings.Replace(string(good), pemType, "PRIVATE KEY", 2)),
		"text before":  append([]byte("x\n"), good...),
		"text after":   append(append([]byte(nil), good...), "x"...),
		"empty blob":   marshalKeyFile([]byte("pub"), nil),
		"one blob":     pemOf([]byte{0, 3, 'p', 'u', 'b'}),
		"trailing":     pemOf([]byte{0, 1, 'p', 0, 1, 'q', 0}),
		"short":        pemOf([]byte{0, 9, 'p'}),
		"with headers": []byte("-----BEGIN " + pemType + "-----\nA: b\n\nAAFwAAFx\n-----END " + pemType + "-----\n"),
	} {
		if _, _, err := parseKeyFile(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func pemOf(b []byte) []byte {
	return []byte(strings.Replace(string(marshalKeyFile(nil, nil)), "AAAAAA==", b64(b), 1))
}

// TestCheckPublic: only the keys Generate makes pass: a key that may be
// duplicated, was imported, decrypts, or has no fixed scheme is refused.
func TestCheckPublic(t *testing.T) {
	for _, alg := range []keys.Algorithm{keys.ES256, keys.PS256} {
		tmpl, err := template(alg, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A template has no public key yet: only the attribute checks,
		// which come first, are reached.
		for name, edit := range map[string]func(p *tpm2.TPMTPublic){
			"duplicable": func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false },
			"imported":   func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false },
			"decrypts":   func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true },
			"restricted": func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = true },
			"policy":     func(p *tpm2.TPMTPublic) { p.AuthPolicy = tpm2.TPM2BDigest{Buffer: make([]byte, 32)} },
			"SHA-1 name": func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 },
		} {
			p := tmpl
			edit(&p)
			if _, _, _, err := checkPublic(tpm2.Marshal(p)); err == nil || !strings.Contains(err.Error(), "cannot be used") {
				t.Errorf("%s %s: %v", alg, name, err)
			}
		}
	}
	noScheme, _ := template(keys.RS256, 0)
	noScheme.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull}, KeyBits: 2048})
	if _, _, _, err := checkPublic(tpm2.Marshal(noScheme)); err == nil || !strings.Contains(err.Error(), "not fixed") {
		t.Errorf("no scheme: %v", err)
	}
}

// FuzzKeyFile: reading a key file and checking its public area never
// panics, whatever the file holds.
func FuzzKeyFile(f *testing.F) {
	tmpl, _ := template(keys.ES256, 0)
	f.Add(marshalKeyFile(tpm2.Marshal(tmpl), []byte{1, 2, 3}))
	rs, _ := template(keys.PS256, 0)
	f.Add(marshalKeyFile(tpm2.Marshal(rs), []byte{1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, _, err := parseKeyFile(data)
		if err != nil {
			return
		}
		checkPublic(pub)
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
