package b64u

import (
	"testing"
)

func TestDecodeCanonical(t *testing.T) {
	for _, s := range []string{"", "AA", "AAA", "AAAA", "_-8"} {
		if _, err := Decode(s); err != nil {
			t.Errorf("Decode(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"AB", "AAB", "AA==", "A", "AA\n", "A+8", "A/8", " AA", "AAA="} {
		if _, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) accepted", s)
		}
	}
	if _, err := DecodeLen("AAA", 1); err == nil {
		t.Error("DecodeLen accepted the wrong length")
	}
}

// FuzzDecode: every string Decode accepts is the one encoding of its bytes.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "AA", "AAA", "eyJhbGciOiJFUzI1NiJ9", "AB", "AA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Decode(s)
		if err == nil && Encode(b) != s {
			t.Fatalf("Decode accepted %q, which is not the canonical %q", s, Encode(b))
		}
		if (Check(s) == nil) != (err == nil) {
			t.Fatalf("Check and Decode disagree on %q: %v vs %v", s, Check(s), err)
		}
	})
}
