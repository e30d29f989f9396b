// Package benchfloor performs the raw cryptographic primitives that one
// wsproof handshake cannot avoid, on inputs of the handshake's sizes, with
// no encoding, parsing or protocol logic around them. Benchmarks time it
// beside the real handshake in the same run, so that the cost of our code
// is read as a ratio to this floor (issue 5; BENCHMARKS.md, "Raw-primitive
// floor").
//
// It is the one implementation behind both protocol's BenchmarkHandshake
// (wall time, interleaved with the handshake it is compared with) and
// internal/bench, the harness of cmd/wsproof-bench (thread CPU time, beside
// the server process's cost).
// Timing is the caller's.
package benchfloor

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/wsproof/wsproof/keys"
)

// msgSize is the length of the signing input used for every signature: about
// the size of a response's JWS signing input.
const msgSize = 300

// tokenSize is the length of the plaintext sealed for the session token.
const tokenSize = 512

// Handshake is the floor of one handshake with a client of one algorithm.
// Its methods are not safe for concurrent use.
type Handshake struct {
	alg       keys.Algorithm
	serverKey *ecdsa.PrivateKey // the server's ES256 signing key
	clientKey crypto.Signer     // a key of alg
	msg       []byte            // a response-sized signing input
	respSig   []byte            // the client's signature over msg
	chalSig   []byte            // the server's signature over msg
	gcm       cipher.AEAD       // AES-256-GCM, for the token's JWE
	token     []byte            // a token-sized plaintext
	nonce     []byte
}

// New prepares the floor for a client key of algorithm alg against a server
// signing with the ES256 key serverKey. The signatures that the other side
// would have made are computed here, outside the timed work.
func New(alg keys.Algorithm, serverKey *ecdsa.PrivateKey, clientKey crypto.Signer) (*Handshake, error) {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	h := &Handshake{alg: alg, serverKey: serverKey, clientKey: clientKey,
		msg: make([]byte, msgSize), gcm: gcm, token: make([]byte, tokenSize), nonce: make([]byte, gcm.NonceSize())}
	rand.Read(h.msg)
	if h.respSig, err = sign(clientKey, alg, h.msg); err != nil {
		return nil, err
	}
	if h.chalSig, err = sign(serverKey, keys.ES256, h.msg); err != nil {
		return nil, err
	}
	return h, nil
}

// Server performs the server's primitives of one handshake: an ECDSA P-256
// signature (the challenge), a verification of the client algorithm's
// signature (the response), a second P-256 signature (the token's inner
// JWS) and an AES-256-GCM seal of 512 bytes (the token's JWE).
func (h *Handshake) Server() error {
	if _, err := sign(h.serverKey, keys.ES256, h.msg); err != nil {
		return err
	}
	if !verify(h.clientKey.Public(), h.alg, h.msg, h.respSig) {
		return fmt.Errorf("benchfloor: %s verify failed", h.alg)
	}
	if _, err := sign(h.serverKey, keys.ES256, h.msg); err != nil {
		return err
	}
	h.gcm.Seal(nil, h.nonce, h.token, nil)
	return nil
}

// Client performs the client's primitives of one handshake: a verification
// of the server's P-256 signature (the challenge) and a signature of the
// client algorithm (the response).
func (h *Handshake) Client() error {
	if !verify(&h.serverKey.PublicKey, keys.ES256, h.msg, h.chalSig) {
		return fmt.Errorf("benchfloor: %s verify failed", keys.ES256)
	}
	_, err := sign(h.clientKey, h.alg, h.msg)
	return err
}

// ServerParts names the primitives of Server for a client of alg, for
// reports.
func ServerParts(alg keys.Algorithm) string {
	return fmt.Sprintf("P-256 sign + %s verify + P-256 sign + AES-256-GCM seal (%d B)", alg, tokenSize)
}

// ClientParts names the primitives of Client for a client of alg, for
// reports.
func ClientParts(alg keys.Algorithm) string {
	return fmt.Sprintf("P-256 verify + %s sign", alg)
}

// sign signs msg as alg does, hashing it first where alg does; ECDSA
// signatures stay in ASN.1, whose encoding costs next to nothing.
func sign(k crypto.Signer, alg keys.Algorithm, msg []byte) ([]byte, error) {
	switch alg {
	case keys.EdDSA:
		return ed25519.Sign(k.(ed25519.PrivateKey), msg), nil
	case keys.ES384:
		d := sha512.Sum384(msg)
		return ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	case keys.ES512:
		d := sha512.Sum512(msg)
		return ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	case keys.RS256:
		d := sha256.Sum256(msg)
		return rsa.SignPKCS1v15(nil, k.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case keys.PS256:
		d := sha256.Sum256(msg)
		return rsa.SignPSS(rand.Reader, k.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 32})
	case keys.ES256:
		d := sha256.Sum256(msg)
		return ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	}
	return nil, fmt.Errorf("benchfloor: algorithm %q", alg)
}

// verify checks a signature made by sign.
func verify(pub crypto.PublicKey, alg keys.Algorithm, msg, sig []byte) bool {
	switch alg {
	case keys.EdDSA:
		return ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	case keys.ES384:
		d := sha512.Sum384(msg)
		return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
	case keys.ES512:
		d := sha512.Sum512(msg)
		return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
	case keys.RS256:
		d := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	case keys.PS256:
		d := sha256.Sum256(msg)
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: 32}) == nil
	case keys.ES256:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
	}
	return false
}
