package tpm

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsproof/wsproof/internal/keystoretest"
	"github.com/wsproof/wsproof/keys"
)

func startTPM(t *testing.T) string { return keystoretest.SWTPM(t) }

func equal(a, b crypto.PublicKey) bool {
	return a.(interface{ Equal(crypto.PublicKey) bool }).Equal(b)
}

// TestTPMAlgorithms: a key of each algorithm is made in the TPM, its blobs
// saved to a file; it signs through keys.Sign (checked with keys.Verify, and
// refused over another message, with a bit flipped, under another key) and
// completes a handshake with the real server; opened again from the file,
// it is the same key. PS256 passes keys.Verify, which demands a salt as
// long as the hash: the TPM's salt is that long.
func TestTPMAlgorithms(t *testing.T) {
	sock := startTPM(t)
	dir := t.TempDir()
	for _, alg := range []keys.Algorithm{keys.ES256, keys.ES384, keys.ES512, keys.RS256, keys.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			uri := (&URI{File: filepath.Join(dir, string(alg)+".tpm"), Device: sock}).String()
			k, err := Generate(uri, alg, 0)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != alg || k.URI() != uri {
				t.Fatalf("algorithm %s, URI %s", k.Algorithm(), k.URI())
			}
			keystoretest.CheckSigner(t, k, alg)
			keystoretest.Handshake(t, k, alg)
			pub := k.Public()
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := keys.Sign(nil, k, alg, []byte("x")); err == nil {
				t.Fatal("a closed key signed")
			}
			k, err = Open(uri)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if !equal(k.Public(), pub) {
				t.Fatal("Open found another key")
			}
			keystoretest.CheckSigner(t, k, alg)
		})
	}
}

// TestTPMScheme: a key's scheme is fixed in the TPM: an RS256 key refuses
// PSS options, a PS256 key PKCS #1 v1.5, an ES256 key another hash.
func TestTPMScheme(t *testing.T) {
	sock := startTPM(t)
	dir := t.TempDir()
	d := sha256.Sum256([]byte("x"))
	for alg, opts := range map[keys.Algorithm]crypto.SignerOpts{
		keys.RS256: &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash},
		keys.PS256: crypto.SHA256,
		keys.ES256: crypto.SHA384,
	} {
		k, err := Generate((&URI{File: filepath.Join(dir, string(alg)), Device: sock}).String(), alg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Sign(rand.Reader, d[:], opts); err == nil {
			t.Errorf("%s signed with %#v", alg, opts)
		}
		k.Close()
	}
}

// TestTPMPersistent: a key made persistent at a handle is found there
// again, and the handle is not taken twice.
func TestTPMPersistent(t *testing.T) {
	sock := startTPM(t)
	uri := "tpm:0x81000010?device=" + sock
	k, err := Generate(uri, keys.ES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	k.Close()
	k, err = Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(k.Public(), pub) {
		t.Fatal("another key at the handle")
	}
	keystoretest.CheckSigner(t, k, keys.ES256)
	k.Close()
	if _, err := Generate(uri, keys.ES256, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("a taken handle: %v", err)
	}
	if _, err := Open("tpm:0x81000011?device=" + sock); err == nil || !strings.Contains(err.Error(), "no key at handle") {
		t.Fatalf("an empty handle: %v", err)
	}
}

// TestTPMRefuses: a key file is bound to the TPM that made it; a tampered
// file, a taken file name and a missing TPM are refused.
func TestTPMRefuses(t *testing.T) {
	sock, other := startTPM(t), startTPM(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "k.tpm")
	k, err := Generate((&URI{File: file, Device: sock}).String(), keys.ES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	if _, err := Generate((&URI{File: file, Device: sock}).String(), keys.ES256, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("a taken file: %v", err)
	}
	if _, err := Open((&URI{File: file, Device: other}).String()); err == nil || !strings.Contains(err.Error(), "cannot load the key") {
		t.Fatalf("another TPM: %v", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := parseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	priv = append([]byte(nil), priv...)
	priv[len(priv)-1] ^= 1
	tampered := filepath.Join(dir, "tampered.tpm")
	os.WriteFile(tampered, marshalKeyFile(pub, priv), 0o600)
	if _, err := Open((&URI{File: tampered, Device: sock}).String()); err == nil || !strings.Contains(err.Error(), "cannot load the key") {
		t.Fatalf("a tampered private blob: %v", err)
	}
	if _, err := Open((&URI{File: file, Device: filepath.Join(dir, "none")}).String()); err == nil || !strings.Contains(err.Error(), "no TPM") {
		t.Fatalf("no TPM: %v", err)
	}
	if _, err := Generate((&URI{File: filepath.Join(dir, "ed"), Device: sock}).String(), keys.EdDSA, 0); err == nil {
		t.Fatal("an EdDSA key was made")
	}
}
