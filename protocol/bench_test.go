package protocol

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
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// The handshake benchmarks measure our code and, in the same loop, the raw
// primitives one handshake cannot avoid, so the ratio is read off one run on
// a noisy machine:
//
//	go test ./protocol -run '^$' -bench Handshake -benchtime 2000x
//
// server: sign the challenge, verify the response, sign the token, seal it
// (the floor is ECDSA P-256 sign + client-algorithm verify + P-256 sign +
// AES-256-GCM seal). client: verify the challenge, sign the response (the
// floor is P-256 verify + client-algorithm sign). The metrics are ns/op of
// each and "rate-ratio" = floor time / our time (1.0 means no overhead; the
// target for ES256 is >= 0.8).

func BenchmarkHandshake(b *testing.B) {
	w := newWorld(b, nil)
	for _, alg := range keys.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			fl := newFloor(b, alg, w)
			var server, client, floorS, floorC time.Duration
			for b.Loop() {
				t0 := time.Now()
				sh, challenge, err := w.srv.Start(rand.Reader, testNow, nil)
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				resp, err := w.clients[alg].Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
				t2 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := sh.ReadResponse(resp, rand.Reader, testNow); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				fl.server()
				t4 := time.Now()
				fl.client()
				t5 := time.Now()
				server += t1.Sub(t0) + t3.Sub(t2)
				client += t2.Sub(t1)
				floorS += t4.Sub(t3)
				floorC += t5.Sub(t4)
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op") // the loop runs four measurements; report them apart
			b.ReportMetric(float64(server.Nanoseconds())/n, "server-ns/op")
			b.ReportMetric(float64(floorS.Nanoseconds())/n, "server-floor-ns/op")
			b.ReportMetric(float64(floorS)/float64(server), "server-rate-ratio")
			b.ReportMetric(float64(client.Nanoseconds())/n, "client-ns/op")
			b.ReportMetric(float64(floorC.Nanoseconds())/n, "client-floor-ns/op")
			b.ReportMetric(float64(floorC)/float64(client), "client-rate-ratio")
		})
	}
}

// floor performs the raw primitives of one handshake on messages of the
// real sizes.
type floor struct {
	serverKey *ecdsa.PrivateKey
	clientKey crypto.Signer
	alg       keys.Algorithm
	msg       []byte // a response-sized signing input
	respSig   []byte // the client's signature over msg
	chalSig   []byte // the server's ASN.1 signature over msg
	gcm       cipher.AEAD
	token     []byte
	nonce     []byte
}

func newFloor(b *testing.B, alg keys.Algorithm, w *world) *floor {
	f := &floor{serverKey: testKey(b, keys.ES256).(*ecdsa.PrivateKey), clientKey: testKey(b, alg), alg: alg,
		msg: make([]byte, 300), token: make([]byte, 512), nonce: make([]byte, 12)}
	rand.Read(f.msg)
	f.respSig = f.sign(f.clientKey, alg, f.msg)
	d := sha256.Sum256(f.msg)
	f.chalSig, _ = ecdsa.SignASN1(rand.Reader, f.serverKey, d[:])
	blk, _ := aes.NewCipher(make([]byte, 32))
	f.gcm, _ = cipher.NewGCM(blk)
	return f
}

func (f *floor) sign(k crypto.Signer, alg keys.Algorithm, msg []byte) []byte {
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

func (f *floor) verify(pub crypto.PublicKey, alg keys.Algorithm, msg, sig []byte) bool {
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

// server: sign challenge, verify response, sign token, seal token.
func (f *floor) server() {
	f.sign(f.serverKey, keys.ES256, f.msg)
	if !f.verify(f.clientKey.Public(), f.alg, f.msg, f.respSig) {
		panic("floor: verify failed")
	}
	f.sign(f.serverKey, keys.ES256, f.msg)
	f.gcm.Seal(nil, f.nonce, f.token, nil)
}

// client: verify challenge, sign response.
func (f *floor) client() {
	if !f.verify(&f.serverKey.PublicKey, keys.ES256, f.msg, f.chalSig) {
		panic("floor: verify failed")
	}
	f.sign(f.clientKey, f.alg, f.msg)
}
