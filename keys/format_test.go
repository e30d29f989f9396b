package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/ssh"

	"github.com/wsproof/wsproof/internal/strictjson"
)

// canary is planted in refused inputs: no error message may contain it.
const canary = "canary-7f3a"

// rfc8037Seed is the Ed25519 private key of RFC 8037 appendix A.1, whose
// public key and RFC 7638 thumbprint are given in appendices A.2 and A.3.
var rfc8037Seed, _ = base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")

// RSA key generation is slow, so one 2048-bit key serves RS256 and PS256.
var testRSA = sync.OnceValues(func() (*rsa.PrivateKey, error) { return GenerateRSA(MinRSABits, nil) })

func testSigner(tb testing.TB, alg Algorithm) crypto.Signer {
	tb.Helper()
	var s crypto.Signer
	var err error
	if alg == RS256 || alg == PS256 {
		s, err = testRSA()
	} else {
		s, err = Generate(alg, nil)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "format", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func errOf[T any](_ T, err error) error { return err }

func jwkErr(b []byte) error {
	_, _, _, err := ParseJWK(b)
	return err
}

func equalKeys(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// checkSigner checks that s is a signer of the same type as want, for the
// same key, that signs with alg.
func checkSigner(t *testing.T, s crypto.Signer, want crypto.Signer, alg Algorithm) {
	t.Helper()
	if reflect.TypeOf(s) != reflect.TypeOf(want) {
		t.Fatalf("got a %T, want a %T", s, want)
	}
	if !equalKeys(s.Public(), want.Public()) {
		t.Fatal("public key differs")
	}
	msg := []byte("wsproof signing input")
	sig, err := Sign(rand.Reader, s, alg, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(want.Public(), alg, msg, sig); err != nil {
		t.Fatal(err)
	}
}

func spkiPEM(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func pkcs8PEM(tb testing.TB, priv any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// joseJWK marshals key with go-jose alone, bypassing MarshalJWK's checks.
func joseJWK(tb testing.TB, key any, alg string) []byte {
	tb.Helper()
	b, err := jose.JSONWebKey{Key: key, KeyID: canary, Algorithm: alg}.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// setMember returns jwk with member name set to value, or removed if value
// is nil.
func setMember(tb testing.TB, jwk []byte, name string, value any) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(jwk, &m); err != nil {
		tb.Fatal(err)
	}
	if value == nil {
		delete(m, name)
	} else {
		m[name] = value
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustJWK(tb testing.TB, key any, alg Algorithm) []byte {
	tb.Helper()
	b, err := MarshalJWK(key, canary, alg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sshLine returns an authorized_keys line for pub, bypassing
// MarshalAuthorizedKey's checks.
func sshLine(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return append(bytes.TrimSuffix(ssh.MarshalAuthorizedKey(k), []byte("\n")), " "+canary+"\n"...)
}

func TestRoundTrip(t *testing.T) {
	const kid, comment = "kid-1", "alice@example"
	options := []string{"restrict", `from="10.0.0.0/8"`}
	tests := []struct {
		name   string
		encode func(s crypto.Signer, alg Algorithm) ([]byte, error) // nil, nil: not applicable
		decode func(b []byte, alg Algorithm) (any, error)           // a public key or a signer
	}{
		{
			"SPKI PEM",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) { return MarshalPublicPEM(s.Public()) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePublicKey(b) },
		},
		{
			"PKCS#1 public PEM",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) {
				k, ok := s.Public().(*rsa.PublicKey)
				if !ok {
					return nil, nil
				}
				return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)}), nil
			},
			func(b []byte, _ Algorithm) (any, error) { return ParsePublicKey(b) },
		},
		{
			"PKCS#8 PEM",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) { return MarshalPrivatePEM(s) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePrivateKey(b) },
		},
		{
			"SEC1 or PKCS#1 private PEM",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) {
				switch k := s.(type) {
				case *ecdsa.PrivateKey:
					der, err := x509.MarshalECPrivateKey(k)
					return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), err
				case *rsa.PrivateKey:
					return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
				}
				return nil, nil
			},
			func(b []byte, _ Algorithm) (any, error) { return ParsePrivateKey(b) },
		},
		{
			"public JWK",
			func(s crypto.Signer, alg Algorithm) ([]byte, error) { return MarshalJWK(s.Public(), kid, alg) },
			parseJWKWant(kid),
		},
		{
			"private JWK",
			func(s crypto.Signer, alg Algorithm) ([]byte, error) { return MarshalJWK(s, kid, alg) },
			parseJWKWant(kid),
		},
		{
			"public JWK as public key",
			func(s crypto.Signer, alg Algorithm) ([]byte, error) { return MarshalJWK(s.Public(), "", alg) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePublicKey(b) },
		},
		{
			"private JWK without kid as private key",
			func(s crypto.Signer, alg Algorithm) ([]byte, error) { return MarshalJWK(s, "", alg) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePrivateKey(b) },
		},
		{
			"OpenSSH public key",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) { return MarshalAuthorizedKey(s.Public(), comment) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePublicKey(b) },
		},
		{
			"OpenSSH private key",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) { return MarshalOpenSSHPrivate(s, comment) },
			func(b []byte, _ Algorithm) (any, error) { return ParsePrivateKey(b) },
		},
		{
			"authorized_keys",
			func(s crypto.Signer, _ Algorithm) ([]byte, error) {
				line, err := MarshalAuthorizedKey(s.Public(), comment)
				file := "# wsproof clients\r\n\n" + strings.Join(options, ",") + " " + string(line) + "\n"
				return []byte(file), err
			},
			func(b []byte, _ Algorithm) (any, error) {
				ks, err := ParseAuthorizedKeys(b)
				if err != nil {
					return nil, err
				}
				if len(ks) != 1 || ks[0].Line != 3 || ks[0].Comment != comment || !slices.Equal(ks[0].Options, options) {
					return nil, errors.New("wrong authorized key fields")
				}
				return ks[0].Key, nil
			},
		},
	}
	for _, alg := range Algorithms {
		s := testSigner(t, alg)
		for _, tt := range tests {
			t.Run(string(alg)+"/"+tt.name, func(t *testing.T) {
				b, err := tt.encode(s, alg)
				if err != nil {
					t.Fatal(err)
				}
				if b == nil {
					t.Skip("no such encoding for this key type")
				}
				got, err := tt.decode(b, alg)
				if err != nil {
					t.Fatal(err)
				}
				if gs, ok := got.(crypto.Signer); ok {
					checkSigner(t, gs, s, alg)
				} else if !equalKeys(got, s.Public()) {
					t.Fatalf("decoded %T differs from the original key", got)
				}
			})
		}
	}
}

func parseJWKWant(wantKid string) func([]byte, Algorithm) (any, error) {
	return func(b []byte, alg Algorithm) (any, error) {
		key, kid, gotAlg, err := ParseJWK(b)
		if err == nil && (kid != wantKid || gotAlg != alg) {
			err = errors.New("wrong kid or alg")
		}
		return key, err
	}
}

// TestEncryptedOpenSSH uses one key type: bcrypt_pbkdf is slow under the race
// detector, and decryption is the same for all of them. TestFixtures reads an
// encrypted ECDSA key made by ssh-keygen.
func TestEncryptedOpenSSH(t *testing.T) {
	passphrase := []byte("correct horse")
	s := testSigner(t, EdDSA)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(s, "test", passphrase)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(block)
	if _, err := ParsePrivateKey(b); !errors.Is(err, ErrPassphraseRequired) {
		t.Fatalf("ParsePrivateKey: err = %v, want ErrPassphraseRequired", err)
	}
	_, err = ParsePrivateKeyWithPassphrase(b, []byte(canary))
	if !errors.Is(err, x509.IncorrectPasswordError) || strings.Contains(err.Error(), canary) {
		t.Fatalf("wrong passphrase: err = %v, want x509.IncorrectPasswordError", err)
	}
	got, err := ParsePrivateKeyWithPassphrase(b, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	checkSigner(t, got, s, EdDSA)
}

// TestFixtures reads keys made by ssh-keygen and openssl (see
// testdata/format/README.md).
func TestFixtures(t *testing.T) {
	tests := []struct {
		priv, pub  string
		alg        Algorithm
		passphrase string
	}{
		{"test-ed25519", "test-ed25519.pub", EdDSA, ""},
		{"test-ecdsa-p256", "test-ecdsa-p256.pub", ES256, ""},
		{"test-ecdsa-p384-encrypted", "test-ecdsa-p384-encrypted.pub", ES384, "test passphrase"},
		{"test-ecdsa-p521", "test-ecdsa-p521.pub", ES512, ""},
		{"test-rsa-3072", "test-rsa-3072.pub", RS256, ""},
		{"test-p256-sec1.pem", "test-p256-spki.pem", ES256, ""},
		{"test-rsa-4096-pkcs1.pem", "test-rsa-4096-pkcs1-pub.pem", PS256, ""},
		{"test-ed25519-pkcs8.pem", "test-ed25519-spki.pem", EdDSA, ""},
	}
	for _, tt := range tests {
		t.Run(tt.priv, func(t *testing.T) {
			s, err := ParsePrivateKeyWithPassphrase(fixture(t, tt.priv), []byte(tt.passphrase))
			if err != nil {
				t.Fatal(err)
			}
			pubFile := fixture(t, tt.pub)
			pub, err := ParsePublicKey(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			if !equalKeys(pub, s.Public()) {
				t.Fatal("public key file does not match private key file")
			}
			checkSigner(t, s, s, tt.alg)
			if !strings.HasSuffix(tt.pub, ".pub") {
				return
			}
			ks, err := ParseAuthorizedKeys(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			if len(ks) != 1 || !equalKeys(ks[0].Key, pub) || !strings.HasPrefix(ks[0].Comment, "test-key ") {
				t.Fatalf("ParseAuthorizedKeys = %+v", ks)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	rsaKey := testSigner(t, RS256).(*rsa.PrivateKey)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e3 := &rsa.PublicKey{N: rsaKey.N, E: 3}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := testSigner(t, ES256).(*ecdsa.PrivateKey)
	other := testSigner(t, ES256).(*ecdsa.PrivateKey)
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)

	edJWK := mustJWK(t, ed.Public(), EdDSA)
	p256JWK := mustJWK(t, p256.Public(), ES256)
	var otherJWK struct{ D string }
	if err := json.Unmarshal(mustJWK(t, other, ES256), &otherJWK); err != nil {
		t.Fatal(err)
	}
	y := p256.Y.FillBytes(make([]byte, 32))
	y[31] ^= 1
	octJWK := []byte(`{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256","kid":"` + canary + `"}`)

	okLine := sshLine(t, ed.Public())
	dsa := fixture(t, "test-dsa.pub")
	cert := fixture(t, "test-ed25519-cert.pub")
	sk := []byte(ssh.KeyAlgoSKED25519 + " " + base64.StdEncoding.EncodeToString(ssh.Marshal(struct {
		Name, Key, App string
	}{ssh.KeyAlgoSKED25519, string(ed.Public().(ed25519.PublicKey)), "ssh:"})) + " " + canary)

	tampered := slices.Clone(ed)
	tampered[63] ^= 1
	tamperedBlock, err := ssh.MarshalPrivateKey(tampered, canary)
	if err != nil {
		t.Fatal(err)
	}
	spki := spkiPEM(t, ed.Public())
	pemOf := func(typ string) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte(canary)}) }
	withHeader := func(b []byte) []byte {
		block, _ := pem.Decode(b)
		block.Headers = map[string]string{"Comment": canary}
		return pem.EncodeToMemory(block)
	}

	tests := []struct {
		name string
		err  error
		want error // errors.Is target; nil for any error
		line int   // if not 0, the *LineError's line
	}{
		{"RSA-1024 SPKI", errOf(ParsePublicKey(spkiPEM(t, &rsa1024.PublicKey))), ErrInvalidKey, 0},
		{"RSA-1024 PKCS#8", errOf(ParsePrivateKey(pkcs8PEM(t, rsa1024))), ErrInvalidKey, 0},
		{"RSA-1024 JWK", jwkErr(joseJWK(t, &rsa1024.PublicKey, "RS256")), ErrInvalidKey, 0},
		{"RSA-1024 private JWK", jwkErr(joseJWK(t, rsa1024, "RS256")), ErrInvalidKey, 0},
		{"RSA-1024 OpenSSH line", errOf(ParsePublicKey(fixture(t, "test-rsa-1024.pub"))), ErrInvalidKey, 0},
		{"RSA-1024 authorized_keys", errOf(ParseAuthorizedKeys(cat(okLine, fixture(t, "test-rsa-1024.pub")))), ErrInvalidKey, 2},
		{"RSA e=3 SPKI", errOf(ParsePublicKey(spkiPEM(t, e3))), ErrInvalidKey, 0},
		{"RSA e=3 JWK", jwkErr(joseJWK(t, e3, "RS256")), ErrInvalidKey, 0},
		{"RSA e=3 JWK as public key", errOf(ParsePublicKey(joseJWK(t, e3, ""))), ErrInvalidKey, 0},
		{"RSA e=3 authorized_keys", errOf(ParseAuthorizedKeys(cat([]byte("# e=3\n"), sshLine(t, e3)))), ErrInvalidKey, 2},
		{"P-224 SPKI", errOf(ParsePublicKey(spkiPEM(t, &p224.PublicKey))), ErrInvalidKey, 0},
		{"P-224 PKCS#8", errOf(ParsePrivateKey(pkcs8PEM(t, p224))), ErrInvalidKey, 0},
		{"X25519 SPKI", errOf(ParsePublicKey(fixture(t, "test-x25519-spki.pem"))), ErrInvalidKey, 0},
		{"oct JWK", jwkErr(octJWK), ErrInvalidKey, 0},
		{"oct JWK with alg ES256", jwkErr(setMember(t, octJWK, "alg", "ES256")), ErrInvalidKey, 0},
		{"oct JWK as public key", errOf(ParsePublicKey(octJWK)), ErrInvalidKey, 0},
		{"oct JWK as private key", errOf(ParsePrivateKey(octJWK)), ErrInvalidKey, 0},
		{"JWK array", jwkErr([]byte(`[` + string(edJWK) + `]`)), ErrInvalidKey, 0},
		{"JWK use enc", jwkErr(setMember(t, edJWK, "use", "enc")), ErrInvalidKey, 0},
		{"JWK use enc as public key", errOf(ParsePublicKey(setMember(t, edJWK, "use", "enc"))), ErrInvalidKey, 0},
		{"JWK alg ES384 on P-256", jwkErr(setMember(t, p256JWK, "alg", "ES384")), ErrInvalidKey, 0},
		{"JWK alg ES384 on P-256 as public key", errOf(ParsePublicKey(setMember(t, p256JWK, "alg", "ES384"))), ErrInvalidKey, 0},
		{"JWK alg RS256 on Ed25519", jwkErr(setMember(t, edJWK, "alg", "RS256")), ErrInvalidKey, 0},
		{"JWK alg none", jwkErr(setMember(t, edJWK, "alg", "none")), ErrInvalidKey, 0},
		{"JWK alg HS256", jwkErr(setMember(t, edJWK, "alg", "HS256")), ErrInvalidKey, 0},
		{"JWK alg unknown", jwkErr(setMember(t, edJWK, "alg", canary)), ErrInvalidKey, 0},
		{"JWK alg wrong case", jwkErr(setMember(t, edJWK, "alg", "eddsa")), ErrInvalidKey, 0},
		{"JWK without alg", jwkErr(setMember(t, edJWK, "alg", nil)), ErrInvalidKey, 0},
		{"JWK off curve", jwkErr(setMember(t, p256JWK, "y", base64.RawURLEncoding.EncodeToString(y))), ErrInvalidKey, 0},
		{"JWK EC d of another key", jwkErr(setMember(t, mustJWK(t, p256, ES256), "d", otherJWK.D)), ErrInvalidKey, 0},
		{"JWK kty unknown", jwkErr(setMember(t, edJWK, "kty", canary)), ErrInvalidKey, 0},
		{"JWK crv X25519", jwkErr(setMember(t, edJWK, "crv", "X25519")), ErrInvalidKey, 0},
		{"JWK kid number", jwkErr(setMember(t, edJWK, "kid", 7)), ErrInvalidKey, 0},
		{"public JWK as private key", errOf(ParsePrivateKey(edJWK)), ErrInvalidKey, 0},
		{"ssh-dss line", errOf(ParsePublicKey(dsa)), ErrInvalidKey, 0},
		{"ssh-dss authorized_keys", errOf(ParseAuthorizedKeys(cat([]byte("# ok\n"), okLine, dsa))), ErrInvalidKey, 3},
		{"certificate line", errOf(ParsePublicKey(cert)), ErrInvalidKey, 0},
		{"certificate authorized_keys", errOf(ParseAuthorizedKeys(cat(cert, okLine))), ErrInvalidKey, 1},
		{"security key authorized_keys", errOf(ParseAuthorizedKeys(cat(okLine, okLine, sk))), ErrInvalidKey, 3},
		{"malformed authorized_keys line", errOf(ParseAuthorizedKeys(cat(okLine, []byte("# c\n\nssh-ed25519 AAAA"+canary+"\n"), okLine))), ErrInvalidKey, 4},
		{"options without key", errOf(ParseAuthorizedKeys(cat(okLine, []byte(`from="`+canary+`"`)))), ErrInvalidKey, 2},
		{"options on a public key line", errOf(ParsePublicKey(cat([]byte("restrict "), okLine))), ErrInvalidKey, 0},
		{"two public key lines", errOf(ParsePublicKey(cat(okLine, okLine))), ErrInvalidKey, 0},
		{"ssh-keygen encrypted key without passphrase", errOf(ParsePrivateKey(fixture(t, "test-ecdsa-p384-encrypted"))), ErrPassphraseRequired, 0},
		{"OpenSSH Ed25519 key with a foreign public half", errOf(ParsePrivateKey(pem.EncodeToMemory(tamperedBlock))), ErrInvalidKey, 0},
		{"legacy encrypted PEM", errOf(ParsePrivateKey(fixture(t, "test-rsa-2048-legacy-encrypted.pem"))), errEncryptedPEM, 0},
		{"legacy encrypted PEM with passphrase", errOf(ParsePrivateKeyWithPassphrase(fixture(t, "test-rsa-2048-legacy-encrypted.pem"), []byte("test"))), errEncryptedPEM, 0},
		{"encrypted PKCS#8", errOf(ParsePrivateKeyWithPassphrase(fixture(t, "test-p256-pkcs8-encrypted.pem"), []byte("test"))), errEncryptedPEM, 0},
		{"two PEM blocks", errOf(ParsePublicKey(cat(spki, spki))), ErrInvalidKey, 0},
		{"PEM with trailing text", errOf(ParsePublicKey(cat(spki, []byte(canary)))), ErrInvalidKey, 0},
		{"PEM with headers", errOf(ParsePublicKey(withHeader(spki))), ErrInvalidKey, 0},
		{"PEM after a malformed block", errOf(ParsePublicKey(cat([]byte("-----BEGIN PUBLIC KEY-----\n"+canary+"\n"), spki))), ErrInvalidKey, 0},
		{"PEM of unknown type", errOf(ParsePublicKey(pemOf(canary))), ErrInvalidKey, 0},
		{"malformed SPKI", errOf(ParsePublicKey(pemOf("PUBLIC KEY"))), ErrInvalidKey, 0},
		{"malformed PKCS#8", errOf(ParsePrivateKey(pemOf("PRIVATE KEY"))), ErrInvalidKey, 0},
		{"malformed OpenSSH private key", errOf(ParsePrivateKey(pemOf("OPENSSH PRIVATE KEY"))), ErrInvalidKey, 0},
		{"certificate PEM", errOf(ParsePublicKey(pemOf("CERTIFICATE"))), ErrInvalidKey, 0},
		{"public PEM as private key", errOf(ParsePrivateKey(spki)), ErrInvalidKey, 0},
		{"private PEM as public key", errOf(ParsePublicKey(pkcs8PEM(t, ed))), ErrInvalidKey, 0},
		{"OpenSSH line as private key", errOf(ParsePrivateKey(okLine)), ErrInvalidKey, 0},
		{"garbage public key", errOf(ParsePublicKey([]byte(canary))), ErrInvalidKey, 0},
		{"empty public key", errOf(ParsePublicKey(nil)), ErrInvalidKey, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(tt.err, tt.want) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
			if msg := tt.err.Error(); !strings.HasPrefix(msg, "keys: ") || strings.Contains(msg, canary) {
				t.Errorf("error %q is not prefixed or quotes its input", msg)
			}
			if tt.line != 0 {
				if le, ok := errors.AsType[*LineError](tt.err); !ok || le.Line != tt.line {
					t.Errorf("err = %v, want a *LineError for line %d", tt.err, tt.line)
				}
			}
		})
	}
}

// TestParseJWKStrictJSON checks that duplicate and case-variant members are
// refused by the strict JSON check, before go-jose (which would ignore "KTY")
// sees the document.
func TestParseJWKStrictJSON(t *testing.T) {
	jwk := mustJWK(t, ed25519.NewKeyFromSeed(rfc8037Seed).Public(), EdDSA)
	for _, member := range []string{`"kty":"OKP",`, `"KTY":"OKP",`, `"k\u0069d":"` + canary + `",`} {
		b := cat([]byte("{"+member), jwk[1:])
		for _, parse := range []func([]byte) error{jwkErr, func(b []byte) error { return errOf(ParsePublicKey(b)) }} {
			err := parse(b)
			if _, ok := errors.AsType[*strictjson.Error](err); !ok || !errors.Is(err, ErrInvalidKey) {
				t.Errorf("%s: err = %v, want a *strictjson.Error wrapped in ErrInvalidKey", b, err)
			}
		}
	}
}

// wrappedSigner hides the key type, as a hardware-backed signer would.
type wrappedSigner struct{ crypto.Signer }

func TestMarshalRefusals(t *testing.T) {
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)
	rsaKey := testSigner(t, RS256).(*rsa.PrivateKey)
	e3 := &rsa.PublicKey{N: rsaKey.N, E: 3}
	badRSA := &rsa.PrivateKey{PublicKey: rsaKey.PublicKey, D: new(big.Int).Add(rsaKey.D, big.NewInt(2)), Primes: rsaKey.Primes}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error // nil for any error
	}{
		{"JWK alg of another key type", errOf(MarshalJWK(ed, "k", ES256)), ErrInvalidKey},
		{"JWK unknown alg", errOf(MarshalJWK(ed.Public(), "k", "HS256")), ErrUnknownAlgorithm},
		{"JWK RSA e=3", errOf(MarshalJWK(e3, "k", RS256)), ErrInvalidKey},
		{"JWK symmetric key", errOf(MarshalJWK([]byte("secret"), "k", EdDSA)), ErrInvalidKey},
		{"JWK opaque signer", errOf(MarshalJWK(wrappedSigner{ed}, "k", EdDSA)), ErrInvalidKey},
		{"SPKI RSA e=3", errOf(MarshalPublicPEM(e3)), ErrInvalidKey},
		{"SPKI P-224", errOf(MarshalPublicPEM(&p224.PublicKey)), ErrInvalidKey},
		{"PKCS#8 P-224", errOf(MarshalPrivatePEM(p224)), ErrInvalidKey},
		{"PKCS#8 opaque signer", errOf(MarshalPrivatePEM(wrappedSigner{ed})), ErrInvalidKey},
		{"PKCS#8 short Ed25519 key", errOf(MarshalPrivatePEM(ed[:32])), ErrInvalidKey},
		{"PKCS#8 inconsistent RSA key", errOf(MarshalPrivatePEM(badRSA)), ErrInvalidKey},
		{"PKCS#8 RSA key without primes", errOf(MarshalPrivatePEM(&rsa.PrivateKey{PublicKey: rsaKey.PublicKey, D: rsaKey.D})), ErrInvalidKey},
		{"OpenSSH private P-224", errOf(MarshalOpenSSHPrivate(p224, "")), ErrInvalidKey},
		{"OpenSSH private comment with newline", errOf(MarshalOpenSSHPrivate(ed, "a\nb")), nil},
		{"authorized key RSA e=3", errOf(MarshalAuthorizedKey(e3, "")), ErrInvalidKey},
		{"authorized key comment with newline", errOf(MarshalAuthorizedKey(ed.Public(), "a\nssh-ed25519 AAAA")), nil},
		{"authorized key comment with CR", errOf(MarshalAuthorizedKey(ed.Public(), "a\r")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || (tt.want != nil && !errors.Is(tt.err, tt.want)) {
				t.Fatalf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
}

// TestMarshalJWKRFC8037 checks MarshalJWK's exact output against the key of
// RFC 8037 appendix A.
func TestMarshalJWKRFC8037(t *testing.T) {
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)
	const x = `"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"`
	tests := []struct {
		key  any
		want string
	}{
		{ed.Public(), `{"alg":"EdDSA","crv":"Ed25519","kid":"k1","kty":"OKP","use":"sig",` + x + `}`},
		{ed, `{"alg":"EdDSA","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"k1","kty":"OKP","use":"sig",` + x + `}`},
	}
	for _, tt := range tests {
		got, err := MarshalJWK(tt.key, "k1", EdDSA)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("MarshalJWK(%T) =\n%s\nwant\n%s", tt.key, got, tt.want)
		}
	}
}

// TestMarshalJWKDeterministic checks that every key marshals to the same
// bytes twice, with members in lexicographic order and "use":"sig".
func TestMarshalJWKDeterministic(t *testing.T) {
	for _, alg := range Algorithms {
		s := testSigner(t, alg)
		for _, key := range []any{s, s.Public()} {
			a, err := MarshalJWK(key, "k1", alg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := MarshalJWK(key, "k1", alg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s %T: two calls differ:\n%s\n%s", alg, key, a, b)
			}
			names, use := memberNames(t, a)
			if !slices.IsSorted(names) || use != "sig" {
				t.Errorf("%s %T: members %q, use %q", alg, key, names, use)
			}
		}
	}
}

func memberNames(t *testing.T, b []byte) (names []string, use string) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	for d.More() {
		name, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		names = append(names, name.(string))
		if name == "use" {
			use, _ = v.(string)
		}
	}
	return names, use
}

// fuzzSeeds returns valid and refused encodings of every key type, as public
// key files and as authorized_keys files.
func fuzzSeeds(f *testing.F) (public, authorized [][]byte) {
	ed := ed25519.NewKeyFromSeed(rfc8037Seed)
	for _, alg := range Algorithms {
		s := testSigner(f, alg)
		jwk := mustJWK(f, s.Public(), alg)
		line := sshLine(f, s.Public())
		public = append(public, spkiPEM(f, s.Public()), jwk, mustJWK(f, s, alg), line,
			setMember(f, jwk, "alg", "HS256"), cat(jwk[:1], []byte(`"kid":"a",`), jwk[1:]))
		authorized = append(authorized, line, cat([]byte("# c\r\n\nrestrict,command=\"x y\" "), line, line))
	}
	for _, name := range []string{"test-ed25519.pub", "test-ecdsa-p521.pub", "test-rsa-3072.pub",
		"test-dsa.pub", "test-ed25519-cert.pub", "test-rsa-1024.pub"} {
		b := fixture(f, name)
		public = append(public, b)
		authorized = append(authorized, b)
	}
	for _, name := range []string{"test-p256-spki.pem", "test-rsa-4096-pkcs1-pub.pem", "test-x25519-spki.pem"} {
		public = append(public, fixture(f, name))
	}
	public = append(public, []byte(`{"kty":"oct","k":"AAAA","alg":"HS256"}`), []byte(""), pkcs8PEM(f, ed))
	authorized = append(authorized, []byte(""), []byte("# only a comment\n"), []byte("ssh-ed25519 AAAA\n"),
		[]byte(`from="a`+"\n"))
	if len(public) == 0 || len(authorized) == 0 {
		f.Fatal("no fuzz seeds")
	}
	return public, authorized
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func FuzzParsePublicKey(f *testing.F) {
	seeds, _ := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v does not wrap ErrInvalidKey", err)
			}
			return
		}
		if len(AlgorithmsFor(pub)) == 0 {
			t.Fatalf("accepted a %T no algorithm can use", pub)
		}
		b, err := MarshalPublicPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePublicKey(b)
		if err != nil || !equalKeys(back, pub) {
			t.Fatalf("SPKI round trip: %v", err)
		}
	})
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		ks, err := ParseAuthorizedKeys(data)
		if err != nil {
			le, ok := errors.AsType[*LineError](err)
			if !ok || le.Line < 1 || le.Line > lines || !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v, want a *LineError wrapping ErrInvalidKey", err)
			}
			return
		}
		prev := 0
		for _, k := range ks {
			if k.Line <= prev || k.Line > lines {
				t.Fatalf("line %d after line %d, of %d lines", k.Line, prev, lines)
			}
			prev = k.Line
			b, err := MarshalAuthorizedKey(k.Key, "")
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePublicKey(b)
			if err != nil || !equalKeys(back, k.Key) {
				t.Fatalf("line %d: round trip: %v", k.Line, err)
			}
		}
	})
}

// TestMarshalRSAWithoutPrecompute checks that a caller's RSA key that was
// never precomputed marshals in every format and is left as it was.
func TestMarshalRSAWithoutPrecompute(t *testing.T) {
	k := testSigner(t, RS256).(*rsa.PrivateKey)
	bare := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: k.Primes}
	for _, marshal := range []func() ([]byte, error){
		func() ([]byte, error) { return MarshalPrivatePEM(bare) },
		func() ([]byte, error) { return MarshalOpenSSHPrivate(bare, "") },
		func() ([]byte, error) { return MarshalJWK(bare, "", RS256) },
	} {
		b, err := marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParsePrivateKey(b)
		if err != nil {
			t.Fatal(err)
		}
		checkSigner(t, got, k, RS256)
	}
	if bare.Precomputed.Dp != nil {
		t.Error("the caller's key was modified")
	}
}
