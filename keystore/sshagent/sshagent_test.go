package sshagent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/wsproof/wsproof/internal/keystoretest"
	"github.com/wsproof/wsproof/keys"
)

func startAgent(t *testing.T) string { return keystoretest.SSHAgent(t) }

// sshAdd adds k to the agent at sock with OpenSSH's ssh-add, from a key
// file as ssh-keygen writes it, and returns the key's fingerprint.
func sshAdd(t *testing.T, sock string, k crypto.Signer) string {
	t.Helper()
	pem, err := keys.MarshalOpenSSHPrivate(k, "test key")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh-add", path)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(pub)
}

// addAndOpen makes a key for alg, adds it to the agent with ssh-add and
// opens it by its fingerprint; the key is closed when the test ends.
func addAndOpen(t *testing.T, sock string, alg keys.Algorithm) (crypto.Signer, string, *Key) {
	t.Helper()
	sw, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp := sshAdd(t, sock, sw)
	k, err := OpenSocket(sock, fp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return sw, fp, k
}

// TestAgentAlgorithms: a key of each algorithm an agent can sign, added to
// a real ssh-agent with ssh-add, signs through keys.Sign (checked with
// keys.Verify, and refused over another message, with a bit flipped, under
// another key) and completes a handshake with the real server.
func TestAgentAlgorithms(t *testing.T) {
	sock := startAgent(t)
	for _, alg := range []keys.Algorithm{keys.ES256, keys.ES384, keys.ES512, keys.EdDSA, keys.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			sw, fp, k := addAndOpen(t, sock, alg)
			if k.Algorithm() != alg || k.Fingerprint() != fp {
				t.Fatalf("algorithm %s, fingerprint %s", k.Algorithm(), k.Fingerprint())
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(sw.Public()) {
				t.Fatal("the agent's key is not the key added")
			}
			keystoretest.CheckSigner(t, k, alg)
			keystoretest.Handshake(t, k, alg)
		})
	}
}

// TestAgentPSS: an RSA key in an agent cannot make PS256 signatures, and
// says so rather than sending a PKCS #1 v1.5 signature in their place.
func TestAgentPSS(t *testing.T) {
	sock := startAgent(t)
	_, _, k := addAndOpen(t, sock, keys.PS256)
	if k.Algorithm() != keys.RS256 {
		t.Fatalf("algorithm %s, want RS256", k.Algorithm())
	}
	if _, err := keys.Sign(rand.Reader, k, keys.PS256, []byte("x")); !errors.Is(err, ErrPSS) {
		t.Fatalf("PS256 through an agent: %v, want ErrPSS", err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrDigest) {
		t.Fatalf("Sign of a digest: %v, want ErrDigest", err)
	}
}

// TestAgentSelection: a fingerprint selects one key among several; without
// one, only an agent holding a single key will do; an unknown fingerprint,
// an empty agent and a missing socket are refused.
func TestAgentSelection(t *testing.T) {
	sock := startAgent(t)
	if _, err := OpenSocket(sock, ""); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "holds no keys") {
		t.Fatalf("empty agent: %v", err)
	}
	a, _ := keys.Generate(keys.ES256, nil)
	b, _ := keys.Generate(keys.EdDSA, nil)
	fpA := sshAdd(t, sock, a)
	k, err := OpenSocket(sock, "")
	if err != nil || k.Fingerprint() != fpA {
		t.Fatalf("the only key: %v", err)
	}
	k.Close()
	fpB := sshAdd(t, sock, b)
	if _, err := OpenSocket(sock, ""); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), fpA) || !strings.Contains(err.Error(), fpB) {
		t.Fatalf("two keys, no fingerprint: %v", err)
	}
	k, err = OpenSocket(sock, fpB)
	if err != nil || k.Algorithm() != keys.EdDSA {
		t.Fatalf("by fingerprint: %v", err)
	}
	k.Close()
	if _, err := OpenSocket(sock, "SHA256:"+strings.Repeat("A", 43)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("unknown fingerprint: %v", err)
	}
	if _, err := OpenSocket(filepath.Join(t.TempDir(), "none"), ""); err == nil {
		t.Fatal("a missing socket was accepted")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := Open(""); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("no SSH_AUTH_SOCK: %v", err)
	}
}

// liar is an agent that signs with another key than the one it lists, or
// answers rsa-sha2-256 requests with ssh-rsa (SHA-1), as agents older than
// OpenSSH 7.2 do.
type liar struct {
	agent.ExtendedAgent
	other  ssh.Signer
	ignore bool // ignore the flags
}

func (l *liar) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if l.ignore {
		return l.ExtendedAgent.SignWithFlags(key, data, 0)
	}
	if as, ok := l.other.(ssh.AlgorithmSigner); ok && flags == agent.SignatureFlagRsaSha256 {
		return as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA256)
	}
	return l.other.Sign(rand.Reader, data)
}

func keyring(t *testing.T, k crypto.Signer) agent.ExtendedAgent {
	t.Helper()
	ring := agent.NewKeyring().(agent.ExtendedAgent)
	if err := ring.Add(agent.AddedKey{PrivateKey: k}); err != nil {
		t.Fatal(err)
	}
	return ring
}

// TestAgentLies: a signature under another key, or in another format than
// the one asked for, is refused by the adapter itself.
func TestAgentLies(t *testing.T) {
	for _, alg := range []keys.Algorithm{keys.ES256, keys.EdDSA, keys.RS256} {
		mine, _ := keys.Generate(alg, nil)
		theirs, _ := keys.Generate(alg, nil)
		other, err := ssh.NewSignerFromSigner(theirs)
		if err != nil {
			t.Fatal(err)
		}
		k, err := New(&liar{ExtendedAgent: keyring(t, mine), other: other}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Sign(rand.Reader, k, alg, []byte("x")); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("%s: another key's signature: %v", alg, err)
		}
	}
	rsaKey, _ := keys.Generate(keys.RS256, nil)
	k, err := New(&liar{ExtendedAgent: keyring(t, rsaKey), ignore: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Sign(rand.Reader, k, keys.RS256, []byte("x")); err == nil || !strings.Contains(err.Error(), "ssh-rsa signature, not rsa-sha2-256") {
		t.Fatalf("an ssh-rsa answer: %v", err)
	}
}

// TestAgentRefusedKeys: FIDO security keys and RSA keys below 2048 bits are
// refused when selected.
func TestAgentRefusedKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sk := skECDSA(t, ec)
	a := &listOnly{keys: []*agent.Key{{Format: sk.Type(), Blob: sk.Marshal()}}}
	if _, err := New(a, ""); !errors.Is(err, ErrSecurityKey) {
		t.Fatalf("sk-ecdsa key: %v", err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(keyring(t, small), ""); err == nil || !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("1024-bit RSA key: %v", err)
	}
}

// skECDSA is the public key of a FIDO security key as OpenSSH encodes it
// (PROTOCOL.u2f): the type, the curve, the point and the application.
func skECDSA(t *testing.T, k *ecdsa.PrivateKey) ssh.PublicKey {
	t.Helper()
	point, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, s := range [][]byte{[]byte("sk-ecdsa-sha2-nistp256@openssh.com"), []byte("nistp256"), point.Bytes(), []byte("ssh:")} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	pk, err := ssh.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// listOnly is an agent that only lists keys.
type listOnly struct {
	agent.ExtendedAgent
	keys []*agent.Key
}

func (l *listOnly) List() ([]*agent.Key, error) { return l.keys, nil }

// TestECDSABlob: the SSH form of an ECDSA signature becomes DER; anything
// malformed is refused.
func TestECDSABlob(t *testing.T) {
	good := ssh.Marshal(struct{ R, S []byte }{[]byte{0x01, 0x02}, []byte{0x7f}})
	// Marshal of []byte is a string, which has the same wire form as an
	// mpint of these positive values.
	der, err := ecdsaDER(good)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x30, 0x07, 0x02, 0x02, 0x01, 0x02, 0x02, 0x01, 0x7f}; string(der) != string(want) {
		t.Fatalf("DER % x, want % x", der, want)
	}
	for name, blob := range map[string][]byte{
		"empty":    nil,
		"one":      ssh.Marshal(struct{ R []byte }{[]byte{1}}),
		"trailing": append(good, 0),
		"zero r":   ssh.Marshal(struct{ R, S []byte }{nil, []byte{1}}),
		"negative": ssh.Marshal(struct{ R, S []byte }{[]byte{0x80}, []byte{1}}),
	} {
		if _, err := ecdsaDER(blob); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzECDSABlob: the conversion never panics, and what it accepts is DER
// that package keys reads back.
func FuzzECDSABlob(f *testing.F) {
	f.Add(ssh.Marshal(struct{ R, S []byte }{[]byte{1, 2}, []byte{3}}))
	f.Add([]byte{0, 0, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, blob []byte) {
		der, err := ecdsaDER(blob)
		if err != nil {
			return
		}
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
			t.Fatalf("ecdsaDER(% x) = % x, not DER of two positive integers: %v", blob, der, err)
		}
	})
}

// TestAgentGenerate: a key made for the agent is in the agent, and only
// there: the agent signs with it, and ssh-add -L lists it.
func TestAgentGenerate(t *testing.T) {
	sock := startAgent(t)
	t.Setenv("SSH_AUTH_SOCK", sock)
	for _, alg := range []keys.Algorithm{keys.ES256, keys.EdDSA, keys.RS256} {
		k, err := Generate(alg, "wsproof test")
		if err != nil {
			t.Fatal(err)
		}
		keystoretest.CheckSigner(t, k, alg)
		out, err := exec.Command("ssh-add", "-l").CombinedOutput()
		if err != nil || !strings.Contains(string(out), k.Fingerprint()+" wsproof test") {
			t.Fatalf("ssh-add -l: %v: %s", err, out)
		}
		k.Close()
	}
	if _, err := Generate(keys.PS256, ""); !errors.Is(err, ErrPSS) {
		t.Fatalf("PS256: %v", err)
	}
}
