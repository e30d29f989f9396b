//go:build cgo

package pkcs11

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wsproof/wsproof/internal/keystoretest"
	"github.com/wsproof/wsproof/keys"
)

const tokenLabel = "wsproof-test"

// The tests share one SoftHSM2 token, made once in a temporary folder:
// SoftHSM reads SOFTHSM2_CONF when the module is first loaded, so the whole
// process uses one configuration.

var (
	tokenOnce sync.Once
	tokenErr  error
	token     *keystoretest.SoftHSM
)

// softhsm returns the module path and the PIN file of the shared token.
func softhsm(t *testing.T) (module, pinFile string) {
	t.Helper()
	keystoretest.Need(t, "softhsm2-util", "softhsm2")
	tokenOnce.Do(func() {
		// Left behind on purpose: the module may read it until the
		// process exits. It holds only test keys.
		dir, err := os.MkdirTemp("", "wsproof-softhsm-")
		if err != nil {
			tokenErr = err
			return
		}
		if token, tokenErr = keystoretest.InitSoftHSM(dir, tokenLabel); tokenErr == nil {
			os.Setenv("SOFTHSM2_CONF", token.Conf)
		}
	})
	if tokenErr != nil {
		t.Fatal(tokenErr)
	}
	return token.Module, token.PINFile
}

// uri names object on the shared token.
func uri(t *testing.T, object string) string {
	module, pin := softhsm(t)
	return "pkcs11:token=" + tokenLabel + ";object=" + object + "?module-path=" + module + "&pin-source=file:" + pin
}

// TestTokenAlgorithms: a key of each algorithm the adapter supports is made
// in SoftHSM2, never extractable; it signs through keys.Sign (checked with
// keys.Verify, and refused over another message, with a bit flipped, under
// another key) and completes a handshake with the real server; found again
// by the URI Generate returns, it is the same key.
func TestTokenAlgorithms(t *testing.T) {
	for _, alg := range []keys.Algorithm{keys.ES256, keys.ES384, keys.ES512, keys.RS256, keys.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := Generate(uri(t, "alg-"+string(alg)), alg, 0)
			if err != nil {
				t.Fatal(err)
			}
			if never, err := k.NeverExtractable(); err != nil || !never {
				t.Fatalf("never extractable: %v, %v", never, err)
			}
			keystoretest.CheckSigner(t, k, alg)
			keystoretest.Handshake(t, k, alg)
			pub := k.Public()
			again := k.URI()
			if !strings.Contains(again, ";id=%") || strings.Contains(again, "pin-value") {
				t.Fatalf("URI %s", again)
			}
			k.Close()
			if _, err := keys.Sign(nil, k, alg, []byte("x")); err == nil {
				t.Fatal("a closed key signed")
			}

			k, err = Open(again)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("Open found another key")
			}
			keystoretest.CheckSigner(t, k, alg)
		})
	}
}

// TestTokenSelection: the token may be named by its serial number as well;
// a label that is taken, a missing key, a wrong PIN, another token, a
// module that is not one, and Ed25519 are refused.
func TestTokenSelection(t *testing.T) {
	module, pin := softhsm(t)
	k, err := Generate(uri(t, "taken"), keys.ES256, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(uri(t, "taken"), keys.ES256, 0); !errors.Is(err, ErrExists) {
		t.Fatalf("a taken label: %v", err)
	}
	bySerial := "pkcs11:serial=" + token.Serial + ";object=taken?module-path=" + module + "&pin-value=" + token.PIN
	k2, err := Open(bySerial)
	if err != nil {
		t.Fatalf("by serial: %v", err)
	}
	if !k2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
		t.Fatal("by serial: another key")
	}
	k2.Close()
	// PKCS #11 logs in an application, not a session: while a key of the
	// token is open, a second Open is logged in whatever its PIN. So the
	// wrong PIN is tried with every key closed.
	k.Close()

	pinFile := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(pinFile, []byte("0000\n"), 0o600)
	for name, tc := range map[string]struct{ uri, want string }{
		"missing key":   {uri(t, "nothing-here"), "no key pair"},
		"wrong PIN":     {"pkcs11:token=" + tokenLabel + ";object=taken?module-path=" + module + "&pin-source=file:" + pinFile, "CKR_PIN_INCORRECT"},
		"no PIN":        {"pkcs11:token=" + tokenLabel + ";object=taken?module-path=" + module, "gives no PIN"},
		"another token": {"pkcs11:token=elsewhere;object=taken?module-path=" + module + "&pin-source=file:" + pin, "could not find PKCS#11 token"},
		"not a module":  {"pkcs11:token=" + tokenLabel + ";object=taken?module-path=" + pin + "&pin-source=file:" + pin, "cannot open the token"},
	} {
		if _, err := Open(tc.uri); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	if _, err := Generate(uri(t, "ed"), keys.EdDSA, 0); err == nil || !strings.Contains(err.Error(), "EdDSA keys cannot be made") {
		t.Errorf("EdDSA: %v", err)
	}
	if _, err := Generate(uri(t, "small"), keys.RS256, 1024); err == nil {
		t.Error("a 1024-bit RSA key was made")
	}
}
