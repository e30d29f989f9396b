package strictjson

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// marshalString is what AppendString must write: encoding/json's string.
func marshalString(t testing.TB, s string) string {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(want)
}

// TestAppendString compares AppendString with encoding/json on every byte
// alone, every rune of the Basic Multilingual Plane and the first
// supplementary plane, and strings that mix them with invalid UTF-8.
func TestAppendString(t *testing.T) {
	var in []string
	for b := range 256 {
		in = append(in, string([]byte{byte(b)}), "a"+string([]byte{byte(b)})+"z")
	}
	for r := rune(0); r < 0x20000; r++ {
		if utf8.ValidRune(r) {
			in = append(in, string(r))
		}
	}
	in = append(in, "", `wss://plant-3.example/ws?a=<b>&c="d"\e`, "\u2028\u2029x\u2028", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"ok\xff\xfe\xfdok", "\xe2\x80", "tab\tnl\ncr\rbs\bff\f\x00\x1f\x7f", "\U0010ffff")
	for _, s := range in {
		if got, want := string(AppendString([]byte("prefix"), s)), "prefix"+marshalString(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	}
}

// FuzzAppendString: AppendString writes what encoding/json writes.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "wss://plant-3.example/ws", "<>&\"\\", "\u2028\xff\x00\u00e9", "\b\f\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(AppendString(nil, s)), marshalString(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

// TestAppendStrings compares AppendStrings with encoding/json on nil, empty
// and populated slices.
func TestAppendStrings(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {""}, {"devices"}, {"a", "<b>", "\xff", "\u2028"}} {
		want, err := json.Marshal(ss)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendStrings([]byte("x"), ss); string(got) != "x"+string(want) {
			t.Fatalf("AppendStrings(%q) = %s, encoding/json writes %s", ss, got, want)
		}
	}
}
