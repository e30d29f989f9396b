package strictjson

import (
	"encoding/json"
	"slices"
	"testing"
)

// refStr and refStrs are Object.Str and Object.Strs as they were written
// on encoding/json, before the device client stopped linking it (issue
// 15): the reference the scanner-based versions must agree with.
func refStr(o Object, name string) (string, bool) {
	raw, ok := o[name]
	if !ok || len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func refStrs(o Object, name string, maxN, maxLen int) ([]string, bool) {
	raw, ok := o[name]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	out := []string{}
	if err := json.Unmarshal(raw, &out); err != nil || len(out) > maxN {
		return nil, false
	}
	for _, s := range out {
		if len(s) == 0 || len(s) > maxLen {
			return nil, false
		}
	}
	return out, true
}

// FuzzObjectStrings: for every object ParseObject accepts, Str and Strs
// read each member as encoding/json reads it.
func FuzzObjectStrings(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","b":"\u00e9\ud83d\ude00\n\"\\\/","c":["a","\u0062c"],"d":[],"e":[ "x" , "y" ,"zz"],"f":["a",null],"g":["a",1],"h":[["a"]],"i":"","j":["",""],"k":["abcdef"],"l":["a","b","c","d"],"m":1,"n":null}`,
		`{"algs":["ES256","EdDSA"],"iss":"wss://plant-3.example/ws","cb":"none"}`,
		`{"groups":[ ],"sub":"sensor\u00207"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			return
		}
		for name := range o {
			got, err := o.Str(name)
			want, ok := refStr(o, name)
			if (err == nil) != ok || got != want {
				t.Fatalf("Str(%q) of %s = %q, %v; encoding/json: %q, %v", name, data, got, err, want, ok)
			}
			for _, n := range []int{0, 1, 3} {
				gotS, err := o.Strs(name, n, 5)
				wantS, ok := refStrs(o, name, n, 5)
				if (err == nil) != ok || !slices.Equal(gotS, wantS) || (ok && gotS == nil) {
					t.Fatalf("Strs(%q, %d, 5) of %s = %q, %v; encoding/json: %q, %v", name, n, data, gotS, err, wantS, ok)
				}
			}
		}
	})
}

// FuzzArray: for every object ParseObject accepts, Array splits each
// array member as encoding/json does into a []json.RawMessage, and refuses
// every other member.
func FuzzArray(f *testing.F) {
	for _, s := range []string{
		`{"keys":[{"kty":"EC","kid":"a"}, {"kty":"OKP","x":[1,2,{"y":[]}]} ,"s",1,null,true,[]],"b":[],"c":[ ],"d":"x","e":{}}`,
		`{"keys":[ [ [ ] ] ]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			return
		}
		for name, raw := range o {
			got, err := Array(raw)
			var want []json.RawMessage
			if raw[0] != '[' {
				if err == nil {
					t.Fatalf("Array(%s) = %q, want an error", raw, got)
				}
				continue
			}
			if jerr := json.Unmarshal(raw, &want); err != nil || jerr != nil || len(got) != len(want) || got == nil {
				t.Fatalf("Array(%s) of %q = %q, %v; encoding/json: %q, %v", raw, name, got, err, want, jerr)
			}
			for i := range got {
				if string(got[i]) != string(want[i]) {
					t.Fatalf("Array(%s)[%d] = %s, encoding/json: %s", raw, i, got[i], want[i])
				}
			}
		}
	})
}
