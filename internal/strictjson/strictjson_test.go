package strictjson

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
)

func TestCheck(t *testing.T) {
	good := []string{`{}`, `{"a":1,"b":[true,false,null],"c":{"a":"x"}}`, ` {"a":"\u00e9\ud83d\ude00"} `, `[]`, `"s"`, `-0.5e+3`,
		`{"a":1,"A2":2}`}
	bad := []string{``, `{`, `{"a":1,"a":2}`, `{"nonce":1,"Nonce":2}`, `{"a":1,"\u0061":2}`, `{"a":1} x`, `{"a":01}`,
		`{"a":"\ud800"}`, `{"a":"\uffff"}`, `{"a":"\ufdd0"}`, "{\"a\":\"\xef\xbf\xbf\"}", `{"a":"\udbff\udfff"}`, "{\"a\":\"\xff\"}", `{"a":"` + "\x01" + `"}`, `{"a":1,}`, `[1,]`, `{'a':1}`, `{"a":NaN}`,
		strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2)}
	for _, s := range good {
		if err := Check([]byte(s)); err != nil {
			t.Errorf("Check(%q) = %v", s, err)
		}
	}
	for _, s := range bad {
		if err := Check([]byte(s)); err == nil {
			t.Errorf("Check(%q) accepted", s)
		}
	}
	if err := CheckObject([]byte(`[]`)); err != ErrNotObject {
		t.Errorf("CheckObject([]) = %v", err)
	}
}

// FuzzCheck: whatever Check accepts, encoding/json must accept too, and a
// document Check accepts must not have a repeated member name in any object.
func FuzzCheck(f *testing.F) {
	v, err := vectorfile.Load(filepath.Join("..", "..", vectorfile.Path))
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	for _, vec := range v.Vectors {
		for _, msg := range []string{vec.Challenge, vec.Response, vec.Accept} {
			f.Add([]byte(msg))
			for _, seg := range strings.Split(msg, ".") {
				if b, err := b64u.Decode(seg); err == nil {
					f.Add(b)
					n++
				}
			}
		}
	}
	if n == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if Check(data) == nil && !json.Valid(data) {
			t.Fatalf("Check accepted what encoding/json rejects: %q", data)
		}
	})
}

func TestParseObject(t *testing.T) {
	o, err := ParseObject([]byte(` {"a":"x\u0041","b":{"a":1,"b":2},"n":12,"t":true,"l":["p","q"]} `))
	if err != nil {
		t.Fatal(err)
	}
	if len(o) != 5 {
		t.Fatalf("%d members", len(o))
	}
	if s, err := o.Str("a"); err != nil || s != "xA" {
		t.Fatalf("Str = %q, %v", s, err)
	}
	if n, err := o.Date("n"); err != nil || n != 12 {
		t.Fatalf("Date = %d, %v", n, err)
	}
	for _, bad := range []string{`{"n":-0}`, `{"n":-1}`, `{"n":1.0}`, `{"n":1e3}`, `{"n":9007199254740992}`} {
		o, err := ParseObject([]byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Date("n"); err == nil {
			t.Errorf("Date accepted %s", bad)
		}
	}
	if b, err := o.Bool("t"); err != nil || !b {
		t.Fatalf("Bool = %v, %v", b, err)
	}
	if l, err := o.Strs("l", 2, 1); err != nil || len(l) != 2 {
		t.Fatalf("Strs = %v, %v", l, err)
	}
	if _, err := o.Str("b"); err == nil {
		t.Fatal("object read as string")
	}
	if _, err := o.Str("A"); err == nil {
		t.Fatal("member matched case-insensitively")
	}
	for _, bad := range []string{`[]`, `{"a":1,"a":2}`, `{"a":1} {}`, `"x"`} {
		if _, err := ParseObject([]byte(bad)); err == nil {
			t.Errorf("ParseObject(%q) accepted", bad)
		}
	}
}
