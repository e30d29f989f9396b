package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
)

// TestThumbprintRFC7638 checks the RFC's own known answer (section 3.1).
func TestThumbprintRFC7638(t *testing.T) {
	n, _ := b64u.Decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	got, err := Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("thumbprint %s, want %s", got, want)
	}
}

// opaqueSigner hides the key's type, as a TPM or HSM signer does: only
// crypto.Signer's two methods are visible.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

var keyCache = map[Algorithm]crypto.Signer{}

func genKey(t testing.TB, alg Algorithm) crypto.Signer {
	t.Helper()
	if k, ok := keyCache[alg]; ok {
		return k
	}
	k, err := Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[alg] = k
	return k
}

func TestSignVerifyOpaqueSigner(t *testing.T) {
	msg := []byte("eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ")
	sizes := map[Algorithm]int{ES256: 64, ES384: 96, ES512: 132, RS256: 256, PS256: 256, EdDSA: 64}
	for _, alg := range Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			k := genKey(t, alg)
			sig, err := Sign(rand.Reader, opaqueSigner{k}, alg, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != sizes[alg] {
				t.Fatalf("signature of %d bytes, want %d", len(sig), sizes[alg])
			}
			if err := Verify(k.Public(), alg, msg, sig); err != nil {
				t.Fatal(err)
			}
			for _, bad := range [][]byte{sig[:len(sig)-1], append(bytes.Clone(sig), 0), nil, flip(sig, 0), flip(sig, len(sig)-1)} {
				if err := Verify(k.Public(), alg, msg, bad); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("bad signature accepted or wrong error: %v", err)
				}
			}
			if err := Verify(k.Public(), alg, append(bytes.Clone(msg), 'x'), sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("signature over another message: %v", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x80
	return c
}

func TestPSSSaltLength(t *testing.T) {
	k := genKey(t, PS256).(*rsa.PrivateKey)
	msg := []byte("x")
	d := sha256.Sum256(msg)
	for _, salt := range []int{0, 20, 64} {
		sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(&k.PublicKey, PS256, msg, sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("PSS salt %d accepted: %v", salt, err)
		}
	}
}

func TestAlgorithmKeyMismatch(t *testing.T) {
	for _, alg := range Algorithms {
		for _, other := range Algorithms {
			k := genKey(t, other)
			compatible := alg == other || (alg == RS256 && other == PS256) || (alg == PS256 && other == RS256)
			if err := CheckKey(alg, k.Public()); (err == nil) != compatible {
				t.Errorf("CheckKey(%s, %s key) = %v", alg, other, err)
			}
			if _, err := Sign(rand.Reader, k, alg, []byte("x")); (err == nil) != compatible {
				t.Errorf("Sign(%s) with %s key = %v", alg, other, err)
			}
		}
	}
	if _, err := ParseAlgorithm("none"); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Fatal("none parsed")
	}
	if _, err := ParseAlgorithm("es256"); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Fatal("es256 parsed")
	}
}

func testEntries(t testing.TB) []*Entry {
	var out []*Entry
	for i, alg := range Algorithms {
		e := &Entry{KeyID: "k-" + string(alg), Key: genKey(t, alg).Public(), Algorithm: alg, Subject: "dev" + string(alg),
			Groups: []string{"devices"}}
		switch i {
		case 1:
			e.Revoked = true
		case 2:
			e.NotBefore, e.NotAfter = time.Unix(1000, 0), time.Unix(2000, 0)
		case 3:
			e.RequireChannelBinding = true
			e.Groups = nil
		}
		out = append(out, e)
	}
	return out
}

func TestRegistryRoundTrip(t *testing.T) {
	entries := testEntries(t)
	data, err := MarshalRegistry(entries)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseRegistry(data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != len(entries) {
		t.Fatalf("%d entries, want %d", s.Len(), len(entries))
	}
	for _, want := range entries {
		got, ok := s.Lookup(want.KeyID)
		if !ok {
			t.Fatalf("%s missing", want.KeyID)
		}
		if got.Subject != want.Subject || !slices.Equal(got.Groups, want.Groups) && len(want.Groups) > 0 || got.Algorithm != want.Algorithm ||
			got.Revoked != want.Revoked || got.RequireChannelBinding != want.RequireChannelBinding ||
			!got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) || got.Thumbprint != want.Thumbprint {
			t.Fatalf("entry %s: got %+v, want %+v", want.KeyID, got, want)
		}
	}
	again, err := MarshalRegistry(s.Entries())
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("marshal is not stable: %v", err)
	}
}

func TestEntryValidity(t *testing.T) {
	e := &Entry{NotBefore: time.Unix(1000, 0), NotAfter: time.Unix(2000, 0)}
	for _, c := range []struct {
		at   int64
		want bool
	}{{999, false}, {1000, true}, {1999, true}, {2000, false}} {
		if got := e.ValidAt(time.Unix(c.at, 0)); got != c.want {
			t.Errorf("ValidAt(%d) = %v", c.at, got)
		}
	}
}

func TestServerKeysRoundTrip(t *testing.T) {
	k := &ServerKeys{
		Signing: []SigningKey{{KeyID: "s2", Algorithm: EdDSA, Signer: genKey(t, EdDSA)}, {KeyID: "s1", Algorithm: ES256, Signer: genKey(t, ES256)}},
		Token:   []TokenKey{{KeyID: "t2", Algorithm: TokenA256KW, Secret: bytes.Repeat([]byte{1}, 32)}, {KeyID: "t1", Algorithm: TokenDir, Secret: bytes.Repeat([]byte{2}, 32)}},
	}
	data, err := MarshalServerKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseServerKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Signing[0].KeyID != "s2" || got.Token[0].KeyID != "t2" || !bytes.Equal(got.Token[1].Secret, k.Token[1].Secret) {
		t.Fatalf("current keys or order lost: %+v", got)
	}
	pub, err := MarshalPublicSet(got.Public())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pub, []byte(`"d"`)) {
		t.Fatal("public set holds a private member")
	}
	ps, err := ParsePublicSet(pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Keys()) != 2 {
		t.Fatalf("%d public keys", len(ps.Keys()))
	}
	if _, err := ParsePublicSet(data); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a private key file parsed as a public set: %v", err)
	}
	bad := *k
	bad.Token = []TokenKey{{KeyID: "t", Algorithm: TokenDir, Secret: []byte("short")}}
	if err := bad.Check(); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short token key accepted: %v", err)
	}
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileRegistryReloadAndWatch(t *testing.T) {
	entries := testEntries(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	first, _ := MarshalRegistry(entries[:2])
	writeAtomic(t, path, first)
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(entries[0].KeyID); !ok {
		t.Fatal("entry missing after open")
	}

	// A broken file keeps the last good snapshot and says why.
	writeAtomic(t, path, []byte(`{"keys":[{"kty":"oct"}]}`))
	if changed, err := r.Reload(); err == nil || changed || !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("broken file: changed=%v err=%v", changed, err)
	}
	if _, ok := r.Lookup(entries[0].KeyID); !ok || r.Err() == nil {
		t.Fatal("last good snapshot lost, or error forgotten")
	}

	// Watch notices a revocation written to the file.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan *Set, 4)
	done := make(chan error, 1)
	go func() {
		done <- r.Watch(ctx, 20*time.Millisecond, func(_, n *Set) { changes <- n }, nil)
	}()
	revoked := *entries[0]
	revoked.Revoked = true
	second, _ := MarshalRegistry([]*Entry{&revoked, entries[1]})
	start := time.Now()
	writeAtomic(t, path, second)
	select {
	case n := <-changes:
		if e, _ := n.Lookup(revoked.KeyID); !e.Revoked {
			t.Fatal("change delivered without the revocation")
		}
		if e, _ := r.Lookup(revoked.KeyID); !e.Revoked {
			t.Fatal("Lookup does not see the new snapshot")
		}
		t.Logf("revocation seen after %v", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not notice the change")
	}
	if r.Err() != nil {
		t.Fatalf("Err after a good reload: %v", r.Err())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v", err)
	}
}

func TestRegistryRefusesDuplicatesAndPrivateKeys(t *testing.T) {
	entries := testEntries(t)
	dup := *entries[1]
	dup.KeyID = entries[0].KeyID
	if _, err := NewSet([]*Entry{entries[0], &dup}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("duplicate kid: %v", err)
	}
	priv, err := MarshalJWK(genKey(t, EdDSA), "p", EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"keys":[` + string(bytes.TrimSpace(priv[:len(bytes.TrimSpace(priv))-1])) + `,"sub":"x"}]}`)
	if _, err := ParseRegistry(doc); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("private key in registry: %v", err)
	}
}

func TestCheckKeyDegenerate(t *testing.T) {
	for _, k := range []crypto.PublicKey{&ecdsa.PublicKey{}, (*ecdsa.PublicKey)(nil), (*rsa.PublicKey)(nil), &rsa.PublicKey{}, nil, []byte("k")} {
		for _, alg := range Algorithms {
			if err := CheckKey(alg, k); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("CheckKey(%s, %T) = %v", alg, k, err)
			}
		}
	}
}

func TestRawDERConversion(t *testing.T) {
	for _, raw := range [][]byte{
		append(bytes.Repeat([]byte{0}, 31), 1, 0x80), // r = 1, s with its top bit set (needs a 0x00 pad in DER)
		bytes.Repeat([]byte{0xff}, 64),
		append([]byte{0, 0, 5}, bytes.Repeat([]byte{7}, 61)...),
	} {
		raw = raw[:64]
		back, err := derToRaw(rawToDER(raw), 32)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("round trip of %x: %x, %v", raw, back, err)
		}
	}
	bad := [][]byte{
		{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01},                                                       // r = 0
		{0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01},                                                       // r negative
		{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00},                                                 // trailing byte
		append([]byte{0x30, 0x25, 0x02, 0x21, 0x01}, append(bytes.Repeat([]byte{1}, 32), 0x02, 0x01, 0x01)...), // r of 33 bytes
	}
	for _, der := range bad {
		if _, err := derToRaw(der, 32); err == nil {
			t.Errorf("derToRaw(%x) accepted", der)
		}
	}
}

func TestTokenKeyFile(t *testing.T) {
	sk := &ServerKeys{
		Signing: []SigningKey{{KeyID: "s", Algorithm: EdDSA, Signer: testSigner(t, EdDSA)}},
		Token: []TokenKey{
			{KeyID: "t2", Algorithm: TokenA256KW, Secret: bytes.Repeat([]byte{2}, TokenKeySize)},
			{KeyID: "t1", Algorithm: TokenDir, Secret: bytes.Repeat([]byte{1}, TokenKeySize)},
		},
	}
	data, err := MarshalTokenKeys(sk.Token)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := ParseTokenKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].KeyID != "t2" || !bytes.Equal(ts[1].Secret, sk.Token[1].Secret) {
		t.Fatalf("round trip: %+v", ts)
	}
	full, err := MarshalServerKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTokenKeys(full); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a file with a signing key was accepted as a token key file: %v", err)
	}
	if _, err := ParseTokenKeys([]byte(`{"keys":[]}`)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("empty token key file: %v", err)
	}
}
