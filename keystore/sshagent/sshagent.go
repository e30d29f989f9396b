// Package sshagent signs wsproof handshakes with a key held by an ssh-agent:
// OpenSSH's ssh-agent, gpg-agent's ssh support, or any agent speaking the
// same protocol, including one that keeps its keys in hardware (ssh-add -s
// with a PKCS #11 provider such as a smart card). The private key never
// reaches this process: the agent signs, and Key only carries the public
// half and the socket. Package client never imports this package.
//
// # Contract
//
// [Open] connects to $SSH_AUTH_SOCK and selects one key: the one whose
// OpenSSH SHA-256 fingerprint ("SHA256:...", as ssh-add -l prints it) is
// given, or, with no fingerprint, the agent's only key. A [*Key] is a
// crypto.Signer and a crypto.MessageSigner for these algorithms:
//
//   - ES256, ES384, ES512: ecdsa-sha2-nistp256/384/521 keys. The agent's
//     signature (mpint r, mpint s) is returned as ASN.1 DER, as the
//     crypto.Signer contract for ECDSA says.
//   - EdDSA: ssh-ed25519 keys; the 64-byte signature as is.
//   - RS256: ssh-rsa keys of 2048 to 4096 bits, asked for an rsa-sha2-256
//     signature (SSH_AGENT_RSA_SHA2_256), which is RSASSA-PKCS1-v1_5 with
//     SHA-256: the bytes RS256 needs.
//
// PS256 cannot work: the agent protocol has no RSA-PSS signature, so an RSA
// key in an agent is usable only as RS256, and Sign refuses PSS options with
// [ErrPSS]. FIDO security keys (sk-ecdsa-sha2-nistp256@openssh.com,
// sk-ssh-ed25519@openssh.com) cannot work either: they sign a FIDO structure
// (application hash, flags, counter, message hash), not the message, so no
// JWS verifier accepts their signatures; Open refuses them with
// [ErrSecurityKey]. DSA keys are refused as having no wsproof algorithm.
//
// An agent hashes what it signs, so the key signs messages, not digests:
// keys.Sign hands it the signing input through crypto.SignMessage. Sign
// (with a digest) works for Ed25519 only, which signs the message itself,
// and fails otherwise, as crypto.MessageSigner asks of such keys.
//
// Every signature is checked against the public key before it is returned,
// and its format must be the one asked for: an agent that answers with
// another key's signature, or with ssh-rsa (SHA-1) after being asked for
// rsa-sha2-256, as agents older than OpenSSH 7.2 do, fails with an error
// instead of a handshake the server refuses.
//
// # Concurrency
//
// A Key is safe for concurrent use: the agent client pipelines requests
// over its one socket. Close closes the socket; signing afterwards fails.
//
// # Failures
//
// Open fails when SSH_AUTH_SOCK is unset or the socket does not answer,
// when no key matches (the error lists the agent's fingerprints), when the
// agent holds several keys and no fingerprint is given, and for keys no
// wsproof algorithm fits. A signature fails when the agent refuses (a
// locked agent, a key removed meanwhile, a confirmation declined with
// ssh-add -c), or answers as described above.
package sshagent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/wsproof/wsproof/keys"
)

var (
	// ErrPSS is returned for an RSA-PSS signature (PS256), which the agent
	// protocol cannot make.
	ErrPSS = errors.New("sshagent: an ssh-agent cannot make RSA-PSS signatures (PS256); enroll the RSA key as RS256")
	// ErrSecurityKey is returned by Open for a FIDO security key (sk-*),
	// whose signatures cover a FIDO structure rather than the message.
	ErrSecurityKey = errors.New("sshagent: FIDO security keys (sk-*) sign a FIDO structure, not the message, so no wsproof server can verify them")
	// ErrDigest is returned by Sign for any key but Ed25519: an agent
	// hashes what it signs and cannot sign a digest. Use keys.Sign or
	// crypto.SignMessage.
	ErrDigest = errors.New("sshagent: an ssh-agent signs messages, not digests; sign with keys.Sign or crypto.SignMessage")
	// ErrNoKey is returned by Open when no key of the agent is selected.
	ErrNoKey = errors.New("sshagent: no such key in the agent")
)

// Key is one key of an ssh-agent, as a crypto.Signer.
type Key struct {
	agent  agent.ExtendedAgent
	closer io.Closer // the socket, or nil
	key    ssh.PublicKey
	pub    crypto.PublicKey
	fp     string
	alg    keys.Algorithm
}

// Open connects to the agent at $SSH_AUTH_SOCK and selects the key whose
// fingerprint is fingerprint ("SHA256:..."), or the agent's only key when
// fingerprint is empty.
func Open(fingerprint string) (*Key, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errors.New("sshagent: SSH_AUTH_SOCK is not set: start an ssh-agent (eval $(ssh-agent)) and add a key with ssh-add")
	}
	return OpenSocket(sock, fingerprint)
}

// OpenSocket is Open with the agent's socket path given.
func OpenSocket(path, fingerprint string) (*Key, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("sshagent: cannot reach the agent at %s: %w", path, err)
	}
	k, err := New(agent.NewClient(conn), fingerprint)
	if err != nil {
		conn.Close()
		return nil, err
	}
	k.closer = conn
	return k, nil
}

// New selects a key of the agent a, as Open does. Close does not close a.
func New(a agent.ExtendedAgent, fingerprint string) (*Key, error) {
	list, err := a.List()
	if err != nil {
		return nil, fmt.Errorf("sshagent: cannot list the agent's keys: %w", err)
	}
	var (
		match *Key
		fps   []string
		seen  = map[string]bool{}
	)
	for _, ak := range list {
		pk, err := ssh.ParsePublicKey(ak.Blob)
		if err != nil {
			continue // a key type x/crypto does not know; never selected
		}
		if cert, ok := pk.(*ssh.Certificate); ok {
			pk = cert.Key // the agent signs with the certified key
		}
		fp := ssh.FingerprintSHA256(pk)
		if seen[fp] {
			continue // a key and its certificate
		}
		seen[fp] = true
		fps = append(fps, fp)
		if fingerprint == "" || fp == fingerprint {
			match = &Key{agent: a, key: pk, fp: fp}
		}
	}
	switch {
	case len(fps) == 0:
		return nil, fmt.Errorf("%w: the agent holds no keys; add one with ssh-add", ErrNoKey)
	case fingerprint == "" && len(fps) > 1:
		return nil, fmt.Errorf("%w: the agent holds %d keys (%s); give the fingerprint of one", ErrNoKey, len(fps), strings.Join(fps, ", "))
	case match == nil:
		return nil, fmt.Errorf("%w: none has fingerprint %q (the agent holds %s)", ErrNoKey, fingerprint, strings.Join(fps, ", "))
	}
	if err := match.classify(); err != nil {
		return nil, err
	}
	return match, nil
}

// classify sets the key's public key and algorithm, or refuses it.
func (k *Key) classify() error {
	t := k.key.Type()
	if strings.HasPrefix(t, "sk-") {
		return fmt.Errorf("%w (%s %s)", ErrSecurityKey, t, k.fp)
	}
	cpk, ok := k.key.(ssh.CryptoPublicKey)
	if !ok {
		return fmt.Errorf("sshagent: key %s of type %s has no wsproof algorithm", k.fp, t)
	}
	pub := cpk.CryptoPublicKey()
	var alg keys.Algorithm
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256():
			alg = keys.ES256
		case elliptic.P384():
			alg = keys.ES384
		case elliptic.P521():
			alg = keys.ES512
		}
	case ed25519.PublicKey:
		alg = keys.EdDSA
	case *rsa.PublicKey:
		alg = keys.RS256
	}
	if alg == "" {
		return fmt.Errorf("sshagent: key %s of type %s has no wsproof algorithm", k.fp, t)
	}
	if err := keys.CheckKey(alg, pub); err != nil {
		return fmt.Errorf("sshagent: key %s: %w", k.fp, err)
	}
	k.pub, k.alg = pub, alg
	return nil
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Fingerprint returns the key's OpenSSH SHA-256 fingerprint.
func (k *Key) Fingerprint() string { return k.fp }

// Algorithm returns the only algorithm the key can sign through an agent:
// RS256 for an RSA key, whose PS256 the agent cannot make.
func (k *Key) Algorithm() keys.Algorithm { return k.alg }

// Close closes the socket to the agent, if Open made it.
func (k *Key) Close() error {
	if k.closer == nil {
		return nil
	}
	return k.closer.Close()
}

// Sign signs a message with an Ed25519 key (opts.HashFunc() zero). For every
// other key it returns ErrDigest, or ErrPSS for PSS options: an agent cannot
// sign a digest.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, ErrPSS
	}
	if k.alg == keys.EdDSA && opts.HashFunc() == 0 {
		return k.SignMessage(rand, digest, opts)
	}
	return nil, ErrDigest
}

// SignMessage has the agent sign msg, with the hash opts names: SHA-256,
// SHA-384 or SHA-512 for an ECDSA key of P-256, P-384 or P-521, none for
// Ed25519, and SHA-256 for RSA (PKCS #1 v1.5; PSS options fail with ErrPSS).
// rand is not used: the agent draws its own randomness.
func (k *Key) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, ErrPSS
	}
	var (
		want  string
		flags agent.SignatureFlags
		hash  crypto.Hash
	)
	switch k.alg {
	case keys.ES256:
		want, hash = ssh.KeyAlgoECDSA256, crypto.SHA256
	case keys.ES384:
		want, hash = ssh.KeyAlgoECDSA384, crypto.SHA384
	case keys.ES512:
		want, hash = ssh.KeyAlgoECDSA521, crypto.SHA512
	case keys.EdDSA:
		want = ssh.KeyAlgoED25519
	case keys.RS256:
		want, flags, hash = ssh.KeyAlgoRSASHA256, agent.SignatureFlagRsaSha256, crypto.SHA256
	}
	if opts.HashFunc() != hash {
		return nil, fmt.Errorf("sshagent: a %s key in an agent signs with %v, not %v", k.alg, hash, opts.HashFunc())
	}
	sig, err := k.agent.SignWithFlags(k.key, msg, flags)
	if err != nil {
		return nil, fmt.Errorf("sshagent: the agent did not sign with key %s: %w", k.fp, err)
	}
	if sig.Format != want || len(sig.Rest) != 0 {
		return nil, fmt.Errorf("sshagent: the agent answered with a %s signature, not %s: it may be older than OpenSSH 7.2", sig.Format, want)
	}
	var out []byte
	switch k.alg {
	case keys.ES256, keys.ES384, keys.ES512:
		if out, err = ecdsaDER(sig.Blob); err != nil {
			return nil, err
		}
	case keys.EdDSA:
		out = sig.Blob
	case keys.RS256:
		if out, err = padRSA(sig.Blob, k.pub.(*rsa.PublicKey)); err != nil {
			return nil, err
		}
	}
	if !verify(k.pub, hash, msg, out) {
		return nil, fmt.Errorf("sshagent: the agent's signature does not verify under key %s", k.fp)
	}
	return out, nil
}

// ecdsaDER converts an SSH ECDSA signature blob (RFC 5656 section 3.1.2:
// mpint r, mpint s) to the ASN.1 DER ECDSA-Sig-Value crypto.Signer returns.
// r and s must be positive; nothing may follow them.
func ecdsaDER(blob []byte) ([]byte, error) {
	var rs struct {
		R, S *big.Int
	}
	if err := ssh.Unmarshal(blob, &rs); err != nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return nil, errors.New("sshagent: the agent returned a malformed ECDSA signature")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(rs.R)
		b.AddASN1BigInt(rs.S)
	})
	return b.Bytes()
}

// padRSA left-pads an RSA signature to the modulus length, which RS256
// requires and which some agents do not keep (the SSH encoding drops no
// zeros, but older agents did).
func padRSA(sig []byte, pub *rsa.PublicKey) ([]byte, error) {
	n := (pub.N.BitLen() + 7) / 8
	if len(sig) > n || len(sig) == 0 {
		return nil, errors.New("sshagent: the agent returned an RSA signature of the wrong length")
	}
	out := make([]byte, n)
	copy(out[n-len(sig):], sig)
	return out, nil
}

// verify checks sig (in crypto.Signer form) over msg under pub.
func verify(pub crypto.PublicKey, h crypto.Hash, msg, sig []byte) bool {
	if p, ok := pub.(ed25519.PublicKey); ok {
		return ed25519.Verify(p, msg, sig)
	}
	d := h.New()
	d.Write(msg)
	digest := d.Sum(nil)
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(p, digest, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(p, h, digest, sig) == nil
	}
	return false
}

// Generate makes a new key for alg (ES256, ES384, ES512, EdDSA or RS256,
// as keys.Generate does) and hands it to the agent at $SSH_AUTH_SOCK with
// comment, keeping no copy: the agent then holds the only one, for as long
// as it runs or until it is removed (ssh-add -d). Unlike a key made in a
// token or a TPM, the key was in this process's memory while it was made.
// It returns the agent's key, ready to sign.
func Generate(alg keys.Algorithm, comment string) (*Key, error) {
	if alg == keys.PS256 {
		return nil, ErrPSS
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errors.New("sshagent: SSH_AUTH_SOCK is not set: start an ssh-agent (eval $(ssh-agent))")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("sshagent: cannot reach the agent at %s: %w", sock, err)
	}
	k, err := generate(agent.NewClient(conn), alg, comment)
	if err != nil {
		conn.Close()
		return nil, err
	}
	k.closer = conn
	return k, nil
}

func generate(a agent.ExtendedAgent, alg keys.Algorithm, comment string) (*Key, error) {
	s, err := keys.Generate(alg, nil)
	if err != nil {
		return nil, err
	}
	if err := a.Add(agent.AddedKey{PrivateKey: s, Comment: comment}); err != nil {
		return nil, fmt.Errorf("sshagent: the agent did not take the new key: %w", err)
	}
	pub, err := ssh.NewPublicKey(s.Public())
	if err != nil {
		return nil, err
	}
	return New(a, ssh.FingerprintSHA256(pub))
}
