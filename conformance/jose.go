package conformance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The probes build malformed JOSE objects by hand: a JOSE library refuses to
// write most of them, which is the point. Every object is made from exact
// JSON text, so a case can name a member twice, vary its case, or add bytes
// after the object; signatures are made over the exact segments sent.

// jstr is s as a JSON string, without the HTML escaping of encoding/json.
func jstr(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// member is one member of a JSON object, its value as raw JSON text.
type member struct{ name, value string }

// jobj is a JSON object kept as an ordered list of members, so that a case
// can repeat or case-vary a member, which a map cannot express.
type jobj []member

func (o jobj) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jstr(m.name))
		b.WriteByte(':')
		b.WriteString(m.value)
	}
	b.WriteByte('}')
	return b.String()
}

// set replaces the value of name, or appends the member.
func (o jobj) set(name, value string) jobj {
	for i := range o {
		if o[i].name == name {
			o[i].value = value
			return o
		}
	}
	return append(o, member{name, value})
}

// add appends a member even if the name is present.
func (o jobj) add(name, value string) jobj { return append(o, member{name, value}) }

// del removes name.
func (o jobj) del(name string) jobj {
	out := o[:0:0]
	for _, m := range o {
		if m.name != name {
			out = append(out, m)
		}
	}
	return out
}

// header is the JWS header {"alg","kid","typ"} with extra members inserted
// before typ.
func header(alg, kid, typ string, extra ...member) jobj {
	o := jobj{{"alg", jstr(alg)}, {"kid", jstr(kid)}}
	o = append(o, extra...)
	return append(o, member{"typ", jstr(typ)})
}

// signingInput is BASE64URL(header) || "." || BASE64URL(payload).
func signingInput(header, payload string) string {
	return b64u.Encode([]byte(header)) + "." + b64u.Encode([]byte(payload))
}

// sign signs the exact header and payload text with k under k's algorithm,
// drawing randomness (where the algorithm takes any) from r.
func (k *Key) sign(r io.Reader, header, payload string) (string, error) {
	si := signingInput(header, payload)
	sig, err := k.sigOver(r, si)
	if err != nil {
		return "", err
	}
	return si + "." + b64u.Encode(sig), nil
}

// sigOver is k's JWS signature over si.
func (k *Key) sigOver(r io.Reader, si string) ([]byte, error) {
	return keys.Sign(r, k.Signer, k.Alg, []byte(si))
}

// The crafted signatures below go through the crypto.Signer interface, never
// the concrete private key type, so that they also work with a signer that
// wraps a key (the vectors' deterministic signers, a hardware key).

// signAs signs si as algorithm alg would, with k's key material even when
// alg is not k's algorithm: a sibling algorithm's signature for the
// algorithm confusion cases. It returns an error when k's key type cannot
// produce alg's signature scheme at all.
func (k *Key) signAs(r io.Reader, alg keys.Algorithm, si string) ([]byte, error) {
	switch pub := k.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		h, ok := map[keys.Algorithm]crypto.Hash{keys.ES256: crypto.SHA256, keys.ES384: crypto.SHA384, keys.ES512: crypto.SHA512}[alg]
		if !ok {
			return nil, fmt.Errorf("an EC key cannot sign %s", alg)
		}
		der, err := k.Signer.Sign(r, digest(h, si), h)
		if err != nil {
			return nil, err
		}
		return derToRawSig(der, (pub.Curve.Params().BitSize+7)/8)
	case *rsa.PublicKey:
		switch alg {
		case keys.RS256:
			return k.Signer.Sign(r, digest(crypto.SHA256, si), crypto.SHA256)
		case keys.PS256:
			return k.pssWithSalt(r, si, rsa.PSSSaltLengthEqualsHash)
		}
		return nil, fmt.Errorf("an RSA key cannot sign %s", alg)
	case ed25519.PublicKey:
		return k.Signer.Sign(r, []byte(si), crypto.Hash(0))
	}
	if alg == k.Alg {
		return k.sigOver(r, si)
	}
	return nil, errors.New("the key type cannot be used for crafted signatures")
}

// rs512 is an RSASSA-PKCS1-v1_5 SHA-512 signature over si by k, an RSA key:
// RS512, a JOSE algorithm that wsproof does not have.
func (k *Key) rs512(r io.Reader, si string) ([]byte, error) {
	if _, ok := k.Signer.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("not an RSA key")
	}
	return k.Signer.Sign(r, digest(crypto.SHA512, si), crypto.SHA512)
}

// pssWithSalt signs si with RSASSA-PSS SHA-256 and the given salt length.
func (k *Key) pssWithSalt(r io.Reader, si string, salt int) ([]byte, error) {
	if _, ok := k.Signer.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("not an RSA key")
	}
	return k.Signer.Sign(r, digest(crypto.SHA256, si), &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256})
}

// derSig is k's ECDSA signature over si in ASN.1 DER instead of r||s.
func (k *Key) derSig(r io.Reader, si string) ([]byte, error) {
	if _, ok := k.Signer.Public().(*ecdsa.PublicKey); !ok {
		return nil, errors.New("not an EC key")
	}
	h := map[keys.Algorithm]crypto.Hash{keys.ES256: crypto.SHA256, keys.ES384: crypto.SHA384}[k.Alg]
	if h == 0 {
		h = crypto.SHA512
	}
	return k.Signer.Sign(r, digest(h, si), h)
}

// digest is the hash h of si.
func digest(h crypto.Hash, si string) []byte {
	hh := h.New()
	hh.Write([]byte(si))
	return hh.Sum(nil)
}

func derToRawSig(der []byte, n int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, err
	}
	out := make([]byte, 2*n)
	sig.R.FillBytes(out[:n])
	sig.S.FillBytes(out[n:])
	return out, nil
}

// hs256 is HMAC-SHA256 over si keyed with the PEM of pub: the RFC 8725
// section 2.1 key confusion.
func hs256(pub crypto.PublicKey, si string) ([]byte, error) {
	pem, err := keys.MarshalPublicPEM(pub)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, pem)
	m.Write([]byte(si))
	return m.Sum(nil), nil
}

// sibling returns an algorithm other than alg whose signature k's key type
// can still produce, preferring one in offered: the "one key, one
// algorithm" confusion a verifier must refuse.
func sibling(alg keys.Algorithm, offered []string) keys.Algorithm {
	var cands []keys.Algorithm
	switch alg {
	case keys.ES256:
		cands = []keys.Algorithm{keys.ES384, keys.ES512}
	case keys.ES384:
		cands = []keys.Algorithm{keys.ES256, keys.ES512}
	case keys.ES512:
		cands = []keys.Algorithm{keys.ES256, keys.ES384}
	case keys.RS256:
		cands = []keys.Algorithm{keys.PS256}
	case keys.PS256:
		cands = []keys.Algorithm{keys.RS256}
	default:
		cands = []keys.Algorithm{keys.ES256, keys.ES384, keys.ES512, keys.RS256, keys.PS256}
	}
	for _, c := range cands {
		for _, o := range offered {
			if string(c) == o {
				return c
			}
		}
	}
	return cands[0]
}

// nonCanonicalLast returns s with its last base64url character replaced by
// one that decodes to the same bytes but sets an unused trailing bit, or ""
// when s has no unused bits (its length is a multiple of 4).
func nonCanonicalLast(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(s)%4 == 0 || s == "" {
		return ""
	}
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i|1])
}

// splitJWS returns the three segments of a compact JWS.
func splitJWS(s string) (h, p, sig string, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// challengeClaims are the claims of a challenge: protocol's definition.
type challengeClaims = protocol.ChallengeClaims

// claimsObj is the claims as an editable object, in the spec's member order.
func claimsObj(c *challengeClaims) jobj {
	algs, _ := json.Marshal(c.Algs)
	return jobj{{"iss", jstr(c.Iss)}, {"sid", jstr(c.Sid)}, {"nonce", jstr(c.Nonce)},
		{"iat", fmt.Sprint(c.Iat)}, {"exp", fmt.Sprint(c.Exp)}, {"algs", string(algs)}, {"cb", jstr(c.CB)}}
}

// parseChallenge reads the claims of a compact JWS challenge without
// verifying it; the header's typ must be the challenge's.
func parseChallenge(msg []byte) (*challengeClaims, error) {
	h, p, _, ok := splitJWS(string(msg))
	if !ok {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := b64u.Decode(h)
	if err != nil {
		return nil, err
	}
	var hdr struct{ Typ string }
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Typ != protocol.TypChallenge {
		return nil, fmt.Errorf("typ is not %s", protocol.TypChallenge)
	}
	pb, err := b64u.Decode(p)
	if err != nil {
		return nil, err
	}
	var c challengeClaims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// sha256b64 is BASE64URL(SHA-256(s)), the cha of a challenge.
func sha256b64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return b64u.Encode(sum[:])
}
