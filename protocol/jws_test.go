package protocol

import (
	"crypto"
	"crypto/rand"
	"encoding/json"
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
)

// joseSigner is how signJWS signed with go-jose until the client stopped
// linking it (for its size on devices): a crypto.Signer behind go-jose's
// OpaqueSigner, through keys.Sign.
type joseSigner struct {
	key  *keys.SigningKey
	rand io.Reader
}

func (s joseSigner) Public() *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: s.key.Signer.Public(), KeyID: s.key.KeyID, Algorithm: string(s.key.Algorithm)}
}

func (s joseSigner) Algs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.SignatureAlgorithm(s.key.Algorithm)}
}

func (s joseSigner) SignPayload(in []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	return keys.Sign(s.rand, s.key.Signer, keys.Algorithm(alg), in)
}

func joseSign(t *testing.T, key *keys.SigningKey, typ string, payload []byte) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: joseSigner{key, rand.Reader}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type joseVerifier struct {
	pub crypto.PublicKey
	alg keys.Algorithm
}

func (v joseVerifier) VerifyPayload(in, sig []byte, alg jose.SignatureAlgorithm) error {
	return keys.Verify(v.pub, keys.Algorithm(alg), in, sig)
}

// TestSignJWSAsGoJOSE: signJWS writes the JWS go-jose wrote, byte for byte
// with EdDSA (deterministic) and up to the signature with the other
// algorithms, for every printable ASCII key id character (the key ids
// keys.CheckKeyID accepts) and for key ids no registry accepts but a
// Config may hold; and go-jose verifies what it writes, as compactJWS.verify
// verifies what go-jose writes.
func TestSignJWSAsGoJOSE(t *testing.T) {
	var kids []string
	for c := byte(0x21); c <= 0x7e; c++ {
		kids = append(kids, "k"+string(c)+"id")
	}
	kids = append(kids, strings.Repeat("x", keys.MaxKeyIDLen), "sensor 7", "é\u2028\u2029<script>&", "\x00\x1f\x7f", "bad\xffutf8", "bs\bff\f")
	payload := []byte(`{"aud":"ws://127.0.0.1/ws","sid":"s","nonce":"n","cha":"c"}`)
	for _, alg := range keys.Algorithms {
		for _, kid := range kids {
			key := &keys.SigningKey{KeyID: kid, Algorithm: alg, Signer: testKey(t, alg)}
			oursB, err := signJWS(rand.Reader, key, TypResponse, payload)
			if err != nil {
				t.Fatal(err)
			}
			ours := string(oursB)
			theirs := joseSign(t, key, TypResponse, payload)
			input, theirInput := ours[:strings.LastIndexByte(ours, '.')], theirs[:strings.LastIndexByte(theirs, '.')]
			switch {
			case strings.ContainsAny(kid, "\b\f"):
				// The one difference: go-jose wrote \b and \f as \u0008 and
				// \u000c. The header decodes to the same members.
				sameHeader(t, input, theirInput)
			case alg == keys.EdDSA && ours != theirs:
				t.Fatalf("%s kid %q: signJWS wrote\n%s\ngo-jose wrote\n%s", alg, kid, ours, theirs)
			case input != theirInput:
				t.Fatalf("%s kid %q: signing input\n%s\ngo-jose's\n%s", alg, kid, input, theirInput)
			}
			obj, err := jose.ParseSignedCompact(ours, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatalf("%s kid %q: go-jose cannot parse %s: %v", alg, kid, ours, err)
			}
			got, err := obj.Verify(joseVerifier{key.Signer.Public(), alg})
			if err != nil || string(got) != string(payload) {
				t.Fatalf("%s kid %q: go-jose verifies %q, %v", alg, kid, got, err)
			}
			j, err := parseJWSHeader([]byte(theirs), TypResponse)
			if err != nil {
				t.Fatalf("%s kid %q: %v", alg, kid, err)
			}
			if got, err := j.verify(key.Signer.Public()); err != nil || string(got) != string(payload) {
				t.Fatalf("%s kid %q: verify of go-jose's JWS: %q, %v", alg, kid, got, err)
			}
		}
	}
}

// sameHeader checks that two signing inputs carry the same payload and
// headers that decode to the same members, written differently.
func sameHeader(t *testing.T, a, b string) {
	t.Helper()
	ha, pa, _ := strings.Cut(a, ".")
	hb, pb, _ := strings.Cut(b, ".")
	var ma, mb map[string]string
	for _, x := range []struct {
		seg string
		m   *map[string]string
	}{{ha, &ma}, {hb, &mb}} {
		raw, err := b64u.Decode(x.seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, x.m); err != nil {
			t.Fatal(err)
		}
	}
	if !maps.Equal(ma, mb) || ha == hb || pa != pb {
		t.Fatalf("headers %v and %v, payloads %s and %s", ma, mb, pa, pb)
	}
}

// FuzzResponseClaimsJSON: the response's payload is what encoding/json
// wrote before the client stopped linking it.
func FuzzResponseClaimsJSON(f *testing.F) {
	f.Add("wss://plant-3.example/ws", "c2lk", "bm9uY2U", "Y2hh", "")
	f.Add("ws://127.0.0.1:7700/ws?a=<b>&c", "\u2028", "\x00\b\f\n\r\t\"\\", "\xff", "Y2I")
	f.Fuzz(func(t *testing.T, aud, sid, nonce, cha, cb string) {
		r := responseClaims{Aud: aud, Sid: sid, Nonce: nonce, Cha: cha, CB: cb}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("appendJSON = %s, encoding/json writes %s", got, want)
		}
	})
}

// FuzzServerJSON: the challenge's claims, the token's claims and the accept
// message are what encoding/json wrote before the server stopped using it,
// nil and empty lists included.
func FuzzServerJSON(f *testing.F) {
	f.Add("wss://plant-3.example/ws", "c2lk", int64(1767225600), true, false)
	f.Add("ws://127.0.0.1:7700/ws?a=<b>&c", "\u2028\x00\b\f\n\r\t\"\\\xff", int64(-1), false, true)
	f.Fuzz(func(t *testing.T, a, b string, n int64, nilList, emptyList bool) {
		list := []string{a, b}
		switch {
		case nilList:
			list = nil
		case emptyList:
			list = []string{}
		}
		cc := ChallengeClaims{Iss: a, Sid: b, Nonce: a, Iat: n, Exp: n + 30, Algs: list, CB: b}
		tc := TokenClaims{Issuer: a, Subject: b, Audience: a, SocketID: b, ID: a, IssuedAt: n, NotBefore: -n, Expiry: n + 1,
			Cnf: Confirmation{JKT: b}, Groups: list, ClientKeyID: a, ChannelBindingHash: b}
		am := acceptMessage{Token: a, Sub: b, Groups: list, Exp: n, MaxSize: -n}
		for _, c := range []struct {
			v   any
			got []byte
		}{{cc, cc.appendJSON(nil)}, {tc, tc.appendJSON([]byte{})}, {am, am.appendJSON(nil)}} {
			want, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(c.got) != string(want) {
				t.Fatalf("appendJSON = %s, encoding/json writes %s", c.got, want)
			}
		}
	})
}
