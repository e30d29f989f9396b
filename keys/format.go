package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/ssh"
)

// Key formats. Every parser here accepts only keys that some [Algorithm] can
// use, however they are encoded: an RSA key of 1024 bits or with e = 3, a
// P-224 key or an X25519 key is refused like a malformed one, with an error
// wrapping [ErrInvalidKey]. Error text names the format and the reason but
// never quotes the input; the underlying parsers' messages (x509, x/crypto/ssh,
// go-jose) can, so they are not passed on.

// ErrPassphraseRequired is returned by [ParsePrivateKey] for an OpenSSH private
// key encrypted with a passphrase; [ParsePrivateKeyWithPassphrase] reads it.
var ErrPassphraseRequired = errors.New("keys: private key is encrypted with a passphrase")

var errEncryptedPEM = invalidf("encrypted PEM private keys are not supported: " +
	"decrypt the key, or encrypt it as an OpenSSH private key")

// invalidf returns an error wrapping ErrInvalidKey. Arguments must not come
// from the input being parsed.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidKey}, args...)...)
}

// ParsePublicKey reads one public key, detecting its format: a PEM "PUBLIC
// KEY" (SPKI) or "RSA PUBLIC KEY" (PKCS #1) block; a JWK, checked as by
// [ParseJWK] except that "alg" is optional (of a private JWK, only the public
// key is returned); or one OpenSSH public key line such as "ssh-ed25519
// AAAA... comment" (ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa,
// without authorized_keys options).
// The key is an *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey usable
// by at least one Algorithm; any other key is refused with an error wrapping
// ErrInvalidKey.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	switch t := bytes.TrimLeft(data, " \t\r\n"); {
	case bytes.HasPrefix(t, []byte("-----BEGIN ")):
		block, err := decodePEM(data)
		if err != nil {
			return nil, err
		}
		var pub any
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			return nil, invalidf("PEM block is not a public key")
		}
		if err != nil {
			return nil, invalidf("malformed %s PEM block", block.Type)
		}
		return usable(pub)
	case bytes.HasPrefix(t, []byte("{")):
		key, _, _, err := decodeJWK(data)
		if err != nil {
			return nil, err
		}
		return publicOf(key), nil
	}
	line := bytes.TrimSpace(data)
	if bytes.ContainsAny(line, "\r\n") {
		return nil, invalidf("want exactly one OpenSSH public key line")
	}
	k, _, options, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, invalidf("malformed or unsupported OpenSSH public key")
	}
	if len(options) > 0 {
		return nil, invalidf("OpenSSH public key has authorized_keys options")
	}
	return sshPublic(k)
}

// ParsePrivateKey reads one private key, detecting its format: a PEM
// "PRIVATE KEY" (PKCS #8), "EC PRIVATE KEY" (SEC 1), "RSA PRIVATE KEY" (PKCS
// #1) or "OPENSSH PRIVATE KEY" block, or a JWK with private members, checked
// as by [ParseJWK] except that "alg" is optional. The signer is an
// *ecdsa.PrivateKey, an *rsa.PrivateKey or an ed25519.PrivateKey (a value, not
// a pointer), whose private and public halves have been checked to match, and
// whose public key some Algorithm can use; other keys fail with an error
// wrapping ErrInvalidKey.
//
// An OpenSSH key encrypted with a passphrase fails with ErrPassphraseRequired;
// see [ParsePrivateKeyWithPassphrase]. Encrypted PEM keys (legacy
// "Proc-Type: 4,ENCRYPTED" and PKCS #8 "ENCRYPTED PRIVATE KEY") are refused.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	switch t := bytes.TrimLeft(data, " \t\r\n"); {
	case bytes.HasPrefix(t, []byte("-----BEGIN ")):
	case bytes.HasPrefix(t, []byte("{")):
		key, _, _, err := decodeJWK(data)
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, invalidf("JWK has no private key members")
		}
		return s, nil
	default:
		return nil, invalidf("private key is neither PEM nor a JWK")
	}
	block, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	var raw any
	switch block.Type {
	case "PRIVATE KEY":
		raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		raw, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "OPENSSH PRIVATE KEY":
		raw, err = ssh.ParseRawPrivateKey(data)
		if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
			return nil, ErrPassphraseRequired
		}
	case "ENCRYPTED PRIVATE KEY":
		return nil, errEncryptedPEM
	default:
		return nil, invalidf("PEM block is not a private key")
	}
	if err != nil {
		return nil, invalidf("malformed or unsupported %s PEM block", block.Type)
	}
	return checkPrivate(raw)
}

// ParsePrivateKeyWithPassphrase is [ParsePrivateKey], except that an OpenSSH
// private key encrypted with a passphrase is decrypted with passphrase. For
// any other key, passphrase is not used. A wrong passphrase fails with an
// error wrapping x509.IncorrectPasswordError.
func ParsePrivateKeyWithPassphrase(data, passphrase []byte) (crypto.Signer, error) {
	s, err := ParsePrivateKey(data)
	if !errors.Is(err, ErrPassphraseRequired) {
		return s, err
	}
	raw, err := ssh.ParseRawPrivateKeyWithPassphrase(data, passphrase)
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, fmt.Errorf("keys: incorrect passphrase: %w", err)
	}
	if err != nil {
		return nil, invalidf("malformed or unsupported encrypted OPENSSH PRIVATE KEY PEM block")
	}
	return checkPrivate(raw)
}

// decodePEM returns the only PEM block in data, which must hold nothing else
// but surrounding whitespace, and whose headers must be empty.
func decodePEM(data []byte) (*pem.Block, error) {
	block, rest := pem.Decode(data)
	if block == nil || len(bytes.TrimSpace(rest)) > 0 || bytes.Count(data, []byte("-----BEGIN ")) != 1 {
		return nil, invalidf("want exactly one PEM block")
	}
	if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, errEncryptedPEM
	}
	if len(block.Headers) > 0 {
		return nil, invalidf("PEM headers are not supported")
	}
	return block, nil
}

// AuthorizedKey is one line of an OpenSSH authorized_keys file.
type AuthorizedKey struct {
	Key     crypto.PublicKey // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	Comment string
	Options []string // e.g. `from="10.0.0.0/8"`, as ssh.ParseAuthorizedKey returns them
	Line    int      // 1-based line number in the input
}

// LineError is the error [ParseAuthorizedKeys] returns for the first line it
// refuses. Err wraps ErrInvalidKey; the message names the line, never its
// content.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%v (authorized_keys line %d)", e.Err, e.Line) }

func (e *LineError) Unwrap() error { return e.Err }

// ParseAuthorizedKeys reads a whole OpenSSH authorized_keys file (sshd(8)
// section "AUTHORIZED_KEYS FILE FORMAT"). Blank lines and lines whose first
// non-blank character is '#' are skipped. Any other line must hold a key
// ParsePublicKey accepts, optionally preceded by options: a line that does not
// parse, or that holds an ssh-dss key, a security key (sk-*), a certificate,
// an ML-DSA key, or an RSA key outside 2048..4096 bits or with e != 65537,
// fails the whole call with a *LineError. The result is in file order and
// empty for a file without keys.
func ParseAuthorizedKeys(data []byte) ([]AuthorizedKey, error) {
	var out []AuthorizedKey
	for i, line := range bytes.Split(data, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) == 0 || line[0] == '#' {
			continue
		}
		k, comment, options, _, err := ssh.ParseAuthorizedKey(line)
		var pub crypto.PublicKey
		if err != nil {
			err = invalidf("malformed or unsupported OpenSSH public key")
		} else {
			pub, err = sshPublic(k)
		}
		if err != nil {
			return nil, &LineError{Line: i + 1, Err: err}
		}
		out = append(out, AuthorizedKey{Key: pub, Comment: comment, Options: options, Line: i + 1})
	}
	return out, nil
}

// sshPublic converts a parsed OpenSSH key, allowing only plain key types.
func sshPublic(k ssh.PublicKey) (crypto.PublicKey, error) {
	switch k.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA:
		return usable(k.(ssh.CryptoPublicKey).CryptoPublicKey())
	}
	// Type is one of x/crypto/ssh's constant names, not input text.
	return nil, invalidf("OpenSSH key type %s is not supported", k.Type())
}

// MarshalPublicPEM returns pub as a PEM "PUBLIC KEY" block (SPKI, RFC 5280).
// pub must be usable by some Algorithm.
func MarshalPublicPEM(pub crypto.PublicKey) ([]byte, error) {
	if err := checkUsable(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: marshalling public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// MarshalPrivatePEM returns priv as an unencrypted PEM "PRIVATE KEY" block
// (PKCS #8, RFC 5208). priv must be an *ecdsa.PrivateKey, *rsa.PrivateKey or
// ed25519.PrivateKey whose public key some Algorithm can use.
func MarshalPrivatePEM(priv crypto.Signer) ([]byte, error) {
	s, err := checkPrivate(priv)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, fmt.Errorf("keys: marshalling private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalOpenSSHPrivate returns priv as an unencrypted "OPENSSH PRIVATE KEY"
// PEM block, as ssh-keygen writes it, with comment embedded. priv is as for
// [MarshalPrivatePEM]; comment must not contain control characters. The
// output differs from call to call: the format has random check bytes.
func MarshalOpenSSHPrivate(priv crypto.Signer, comment string) ([]byte, error) {
	s, err := checkPrivate(priv)
	if err != nil {
		return nil, err
	}
	if err := checkComment(comment); err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(s, comment)
	if err != nil {
		return nil, fmt.Errorf("keys: marshalling OpenSSH private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// MarshalAuthorizedKey returns pub as one OpenSSH public key line, "type
// base64 comment\n", suitable for an authorized_keys file or a .pub file. An
// empty comment is left out; comment must not contain control characters.
// pub must be usable by some Algorithm.
func MarshalAuthorizedKey(pub crypto.PublicKey, comment string) ([]byte, error) {
	if err := checkUsable(pub); err != nil {
		return nil, err
	}
	if err := checkComment(comment); err != nil {
		return nil, err
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: marshalling OpenSSH public key: %w", err)
	}
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(k), []byte("\n"))
	if comment != "" {
		line = append(append(line, ' '), comment...)
	}
	return append(line, '\n'), nil
}

// checkComment refuses control characters, which could end an authorized_keys
// line and start another.
func checkComment(c string) error {
	if strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("keys: comment contains a control character")
	}
	return nil
}

// MarshalJWK returns key as a JWK (RFC 7517) with members "kid" (left out if
// kid is empty), "alg" and "use":"sig". key is a public key or an
// *ecdsa.PrivateKey, *rsa.PrivateKey or ed25519.PrivateKey, whose private
// members are then included; CheckKey(alg, public key) must hold.
//
// The output is compact JSON with members in lexicographic order, the same
// bytes for the same arguments, so that generated files and test vectors do
// not depend on go-jose's field order.
func MarshalJWK(key any, kid string, alg Algorithm) ([]byte, error) {
	if s, ok := key.(crypto.Signer); ok {
		var err error
		if key, err = checkPrivate(s); err != nil {
			return nil, err
		}
	}
	if err := CheckKey(alg, publicOf(key)); err != nil {
		return nil, err
	}
	b, err := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg), Use: "sig"}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("keys: marshalling JWK: %w", err)
	}
	// encoding/json writes map keys sorted.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return nil, fmt.Errorf("keys: marshalling JWK: %w", err)
	}
	return json.Marshal(members)
}

// ParseJWK parses one JWK (RFC 7517) under the member rules of spec section
// "Load-time rules". The document must be strict JSON (spec section
// "Encodings"): a duplicate or case-variant member is refused before any
// decoding. "kty" is "EC", "RSA" or "OKP" (symmetric "oct" keys are
// refused); every key member is a string of canonical base64url, RSA
// integers in the fewest octets; members of another key type ("k", "oth",
// "crv" on an RSA key...) are refused; a private key has all of its private
// members ("d", and for RSA "p", "q", "dp", "dq", "qi", consistent with
// each other), and a JWK with some but not all of them is refused. "alg" is
// required and must be one of [Algorithms] that fits the key (CheckKey);
// "use", if present, must be "sig"; "key_ops", if present, must be
// ["verify"] for a public key and ["sign"] or ["sign","verify"] for a
// private one. key is the public key, or, if the JWK has private members, a
// crypto.Signer as ParsePrivateKey returns it. kid is the "kid" member,
// unchecked, or "" if absent. Errors wrap ErrInvalidKey.
func ParseJWK(data []byte) (key any, kid string, alg Algorithm, err error) {
	key, kid, alg, err = decodeJWK(data)
	if err == nil && alg == "" {
		err = invalidf(`JWK has no "alg" member`)
	}
	if err != nil {
		return nil, "", "", err
	}
	return key, kid, alg, nil
}

// decodeJWK is ParseJWK with "alg" optional: the member rules of
// parseJWKMembers, then the key rules of CheckKey (and, for a private key,
// the consistency checks of checkPrivate).
func decodeJWK(data []byte) (key any, kid string, alg Algorithm, err error) {
	j, err := parseJWKMembers(data)
	if err != nil {
		return nil, "", "", err
	}
	if s, ok := j.key.(crypto.Signer); ok {
		key, err = checkPrivate(s)
	} else {
		key, err = usable(j.key)
	}
	if err != nil {
		return nil, "", "", err
	}
	// The key passed CheckKey for some algorithm; the checks that remain
	// for alg are those of fits.
	if j.alg != "" {
		if err := fits(j.alg, publicOf(key)); err != nil {
			return nil, "", "", err
		}
	}
	return key, j.kid, j.alg, nil
}

// publicOf returns the public half of a private key, and any other key as is.
func publicOf(key any) crypto.PublicKey {
	if s, ok := key.(crypto.Signer); ok {
		return s.Public()
	}
	return key
}

// usable returns pub if some Algorithm can use it.
func usable(pub any) (crypto.PublicKey, error) {
	if err := checkUsable(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// checkUsable reports why no Algorithm can use pub, if none can.
func checkUsable(pub crypto.PublicKey) error {
	for _, a := range Algorithms {
		if fits(a, pub) == nil {
			return checkValue(pub)
		}
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fits(RS256, k)
	case ed25519.PublicKey:
		return fits(EdDSA, k)
	case *ecdsa.PublicKey:
		if k == nil {
			break
		}
		for _, a := range []Algorithm{ES256, ES384, ES512} {
			if c, _ := a.curve(); c == k.Curve {
				return fits(a, k)
			}
		}
		return invalidf("ECDSA curve %s is not supported", curveName(k.Curve))
	}
	return invalidf("%s keys are not supported", typeName(pub))
}

// checkPrivate returns k as the signer type ParsePrivateKey documents, after
// checking that its public key is usable and matches its private key: OpenSSH
// Ed25519 keys and JWK EC keys carry both halves, and their parsers do not
// compare them. ECDSA and RSA keys are rebuilt (RSA keys precomputed, as
// x/crypto/ssh needs), so that a caller's key is never modified.
func checkPrivate(k any) (crypto.Signer, error) {
	if p, ok := k.(*ed25519.PrivateKey); ok && p != nil {
		k = *p
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, invalidf("Ed25519 private key of %d bytes", len(k))
		}
		s := ed25519.NewKeyFromSeed(k.Seed())
		if !bytes.Equal(s, k) {
			return nil, invalidf("Ed25519 public key does not match private key")
		}
		return s, nil
	case *ecdsa.PrivateKey:
		if k == nil {
			break
		}
		if err := checkUsable(k.Public()); err != nil {
			return nil, err
		}
		d, err := k.Bytes()
		if err != nil {
			return nil, invalidf("malformed ECDSA private key")
		}
		s, err := ecdsa.ParseRawPrivateKey(k.Curve, d)
		if err != nil || !s.PublicKey.Equal(&k.PublicKey) {
			return nil, invalidf("ECDSA public key does not match private key")
		}
		return s, nil
	case *rsa.PrivateKey:
		if k == nil {
			break
		}
		if err := checkUsable(k.Public()); err != nil {
			return nil, err
		}
		s := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: k.Primes}
		s.Precompute()
		if err := s.Validate(); err != nil {
			return nil, invalidf("inconsistent RSA private key")
		}
		return s, nil
	}
	return nil, invalidf("%s private keys are not supported", typeName(k))
}
