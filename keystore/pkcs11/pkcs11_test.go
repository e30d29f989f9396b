//go:build cgo

package pkcs11

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wsproof/wsproof/internal/keystoretest"
	"github.com/wsproof/wsproof/keys"
)

// The tests share one SoftHSM2 token, made once in a temporary folder with
// softhsm2-util: SoftHSM reads SOFTHSM2_CONF when the module is first
// loaded, so the whole process uses one configuration.

const (
	tokenLabel = "wsproof-test"
	userPIN    = "1234-test-only"
)

var (
	tokenOnce sync.Once
	tokenErr  error
	token     struct{ module, pinFile, serial string }
)

// softhsm returns the module path and the PIN file of the shared token.
func softhsm(t *testing.T) (module, pinFile string) {
	t.Helper()
	util := keystoretest.Need(t, "softhsm2-util", "softhsm2")
	tokenOnce.Do(func() { tokenErr = initToken(util) })
	if tokenErr != nil {
		t.Fatal(tokenErr)
	}
	return token.module, token.pinFile
}

func initToken(util string) error {
	for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(p); err == nil {
			token.module = p
			break
		}
	}
	if token.module == "" {
		return errors.New("softhsm2-util is installed but libsofthsm2.so is not where Debian puts it")
	}
	dir, err := os.MkdirTemp("", "wsproof-softhsm-")
	if err != nil {
		return err
	}
	// Left behind on purpose: the module may still read it at exit. It
	// holds only test keys.
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", dir), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", tokenLabel, "--pin", userPIN, "--so-pin", "5678-test-only").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	out, err = exec.Command(util, "--show-slots").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --show-slots: %v: %s", err, out)
	}
	m := regexp.MustCompile(`Serial number:\s+([0-9a-f]+)\s+Initialized:\s+yes\s+User PIN init.:\s+yes\s+Label:\s+` + tokenLabel).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("no serial number for the token in:\n%s", out)
	}
	token.serial = string(m[1])
	token.pinFile = filepath.Join(dir, "pin")
	return os.WriteFile(token.pinFile, []byte(userPIN+"\n"), 0o600)
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
	bySerial := "pkcs11:serial=" + token.serial + ";object=taken?module-path=" + module + "&pin-value=" + userPIN
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
