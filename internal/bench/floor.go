package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"time"

	"github.com/wsproof/wsproof/internal/benchfloor"
	"github.com/wsproof/wsproof/keys"
)

// The raw-primitive floor is what one handshake cannot avoid, measured in
// this run on this machine, in CPU time of one locked OS thread (so that
// other processes on the machine delay it without inflating it):
//
//   - wsproof server: the primitives of internal/benchfloor, which
//     protocol/bench_test.go times in-process too: ECDSA P-256 sign (the
//     challenge), the client algorithm's verify (the response), P-256 sign
//     (the token's inner JWS) and an AES-256-GCM seal of 512 bytes (the
//     token's JWE);
//   - wsproof client: the client's primitives of internal/benchfloor: the
//     P-256 verify of the challenge and the signature of the response;
//   - Centrifuge: the one JWT signature verification (HMAC-SHA256, or
//     SHA-256 and ECDSA P-256 verify) of the real token.

// floorWSProof returns the CPU time of one server-side primitive floor for
// a client of algorithm alg.
func floorWSProof(alg keys.Algorithm, serverKey *ecdsa.PrivateKey, clientKey crypto.Signer, iters int) (time.Duration, error) {
	h, err := benchfloor.New(alg, serverKey, clientKey)
	if err != nil {
		return 0, err
	}
	return cpuPerIter(iters, h.Server)
}

// floorClient returns the CPU time of one client-side primitive floor for a
// client of algorithm alg.
func floorClient(alg keys.Algorithm, serverKey *ecdsa.PrivateKey, clientKey crypto.Signer, iters int) (time.Duration, error) {
	h, err := benchfloor.New(alg, serverKey, clientKey)
	if err != nil {
		return 0, err
	}
	return cpuPerIter(iters, h.Client)
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
