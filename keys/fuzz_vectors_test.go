package keys

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

// vectorKeySets returns every JWK Set in testdata/vectors.json: the key-role
// vectors and the four top-level sets. It fails when there are none.
func vectorKeySets(f *testing.F) [][]byte {
	v, err := vectorfile.Load(filepath.Join("..", vectorfile.Path))
	if err != nil {
		f.Fatal(err)
	}
	out := [][]byte{v.Keys.Registry, v.Keys.ServerPublic, v.Keys.ServerPrivate, v.Keys.ClientPrivate}
	for _, vec := range v.Vectors {
		if vec.KeySet != "" {
			out = append(out, []byte(vec.KeySet))
		}
	}
	if len(out) <= 4 {
		f.Fatal("no key-set vectors to seed from")
	}
	return out
}

// FuzzParseKeySets feeds every key-set parser the same input: each either
// succeeds or fails with ErrInvalidKey, and what ParseRegistry accepts
// marshals and parses back to the same entries.
func FuzzParseKeySets(f *testing.F) {
	for _, s := range vectorKeySets(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := ParseRegistry(data)
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("ParseRegistry: %v does not wrap ErrInvalidKey", err)
		}
		if err == nil {
			again, err := MarshalRegistry(reg.Entries())
			if err != nil {
				t.Fatalf("accepted registry does not marshal: %v", err)
			}
			back, err := ParseRegistry(again)
			if err != nil || back.Len() != reg.Len() {
				t.Fatalf("registry does not round-trip: %v", err)
			}
		}
		if _, err := ParsePublicSet(data); err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("ParsePublicSet: %v does not wrap ErrInvalidKey", err)
		}
		if _, err := ParseServerKeys(data); err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("ParseServerKeys: %v does not wrap ErrInvalidKey", err)
		}
		ts, err := ParseTokenKeys(data)
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("ParseTokenKeys: %v does not wrap ErrInvalidKey", err)
		}
		if err == nil {
			again, err := MarshalTokenKeys(ts)
			if err != nil {
				t.Fatalf("accepted token keys do not marshal: %v", err)
			}
			if back, err := ParseTokenKeys(again); err != nil || len(back) != len(ts) {
				t.Fatalf("token keys do not round-trip: %v", err)
			}
		}
	})
}

// FuzzParseEntry fuzzes one registry entry, the form a database-backed
// registry stores, seeded with every key of the vectors' key sets.
func FuzzParseEntry(f *testing.F) {
	for _, s := range vectorKeySets(f) {
		members, err := jwkSetMembers(s)
		if err != nil {
			continue
		}
		for _, m := range members {
			f.Add([]byte(m))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEntry(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParseEntry: %v does not wrap ErrInvalidKey", err)
			}
			return
		}
		again, err := MarshalEntry(e)
		if err != nil {
			t.Fatalf("accepted entry does not marshal: %v", err)
		}
		back, err := ParseEntry(again)
		if err != nil || back.Thumbprint != e.Thumbprint || back.Subject != e.Subject || back.Revoked != e.Revoked {
			t.Fatalf("entry does not round-trip: %v", err)
		}
	})
}
