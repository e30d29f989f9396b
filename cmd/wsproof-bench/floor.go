package main

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// The raw-primitive floor is what one handshake cannot avoid, measured in
// this run on this machine, in CPU time of one locked OS thread (so that
// other processes on the machine delay it without inflating it), as
// protocol/bench_test.go does in-process:
//
//   - wsproof server: ECDSA P-256 sign (the challenge), the client
//     algorithm's verify (the response), P-256 sign (the token's inner JWS)
//     and an AES-256-GCM seal of 512 bytes (the token's JWE);
//   - Centrifuge: the one JWT signature verification (HMAC-SHA256, or
//     SHA-256 and ECDSA P-256 verify) of the real token.

// floorWSProof returns the CPU time of one server-side primitive floor for
// a client of algorithm alg.
func floorWSProof(alg keys.Algorithm, serverKey *ecdsa.PrivateKey, clientKey crypto.Signer, iters int) (time.Duration, error) {
	msg := make([]byte, 300) // a response-sized signing input
	rand.Read(msg)
	respSig := rawSign(clientKey, alg, msg)
	blk, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCM(blk)
	token, nonce := make([]byte, 512), make([]byte, 12)
	once := func() error {
		rawSign(serverKey, keys.ES256, msg)
		if !rawVerify(clientKey.Public(), alg, msg, respSig) {
			return fmt.Errorf("floor: %s verify failed", alg)
		}
		rawSign(serverKey, keys.ES256, msg)
		gcm.Seal(nil, nonce, token, nil)
		return nil
	}
	return cpuPerIter(iters, once)
}

// floorJWT returns the CPU time of verifying the signature of token (a
// compact JWS) with key: an HMAC secret or an ECDSA public key.
func floorJWT(token string, key any, iters int) (time.Duration, error) {
	i := strings.LastIndexByte(token, '.')
	input := []byte(token[:i])
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return 0, err
	}
	var once func() error
	switch k := key.(type) {
	case []byte:
		once = func() error {
			m := hmac.New(sha256.New, k)
			m.Write(input)
			if !hmac.Equal(m.Sum(nil), sig) {
				return fmt.Errorf("floor: HS256 verify failed")
			}
			return nil
		}
	case *ecdsa.PublicKey:
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		once = func() error {
			d := sha256.Sum256(input)
			if !ecdsa.Verify(k, d[:], r, s) {
				return fmt.Errorf("floor: ES256 verify failed")
			}
			return nil
		}
	default:
		return 0, fmt.Errorf("floor: key type %T", key)
	}
	return cpuPerIter(iters, once)
}

// cpuPerIter runs f iters times on one locked thread, after a short
// warm-up, and returns the thread CPU time per iteration.
func cpuPerIter(iters int, f func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range min(iters/10+1, 20) {
		if err := f(); err != nil {
			return 0, err
		}
	}
	t0 := threadCPU()
	for range iters {
		if err := f(); err != nil {
			return 0, err
		}
	}
	return (threadCPU() - t0) / time.Duration(iters), nil
}

func rawSign(k crypto.Signer, alg keys.Algorithm, msg []byte) []byte {
	var sig []byte
	switch alg {
	case keys.EdDSA:
		sig = ed25519.Sign(k.(ed25519.PrivateKey), msg)
	case keys.ES384:
		d := sha512.Sum384(msg)
		sig, _ = ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	case keys.ES512:
		d := sha512.Sum512(msg)
		sig, _ = ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	case keys.RS256:
		d := sha256.Sum256(msg)
		sig, _ = rsa.SignPKCS1v15(nil, k.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case keys.PS256:
		d := sha256.Sum256(msg)
		sig, _ = rsa.SignPSS(rand.Reader, k.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 32})
	default:
		d := sha256.Sum256(msg)
		sig, _ = ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), d[:])
	}
	return sig
}

func rawVerify(pub crypto.PublicKey, alg keys.Algorithm, msg, sig []byte) bool {
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
	}
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig)
}
