package conformance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
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

// sign signs the exact header and payload text with k under k's algorithm.
func (k *Key) sign(header, payload string) (string, error) {
	si := signingInput(header, payload)
	sig, err := k.sigOver(si)
	if err != nil {
		return "", err
	}
	return si + "." + b64u.Encode(sig), nil
}

// sigOver is k's JWS signature over si.
func (k *Key) sigOver(si string) ([]byte, error) {
	return keys.Sign(rand.Reader, k.Signer, k.Alg, []byte(si))
}

// signAs signs si as algorithm alg would, with k's key material even when
// alg is not k's algorithm: a sibling algorithm's signature for the
// algorithm confusion cases. It returns an error when k's key type cannot
// produce alg's signature scheme at all.
func (k *Key) signAs(alg keys.Algorithm, si string) ([]byte, error) {
	switch priv := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		var h crypto.Hash
		switch alg {
		case keys.ES256:
			h = crypto.SHA256
		case keys.ES384:
			h = crypto.SHA384
		case keys.ES512:
			h = crypto.SHA512
		default:
			return nil, fmt.Errorf("an EC key cannot sign %s", alg)
		}
		hh := h.New()
		hh.Write([]byte(si))
		der, err := priv.Sign(rand.Reader, hh.Sum(nil), h)
		if err != nil {
			return nil, err
		}
		return derToRawSig(der, (priv.Curve.Params().BitSize+7)/8)
	case *rsa.PrivateKey:
		d := sha256.Sum256([]byte(si))
		switch alg {
		case keys.RS256:
			return rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
		case keys.PS256:
			return rsa.SignPSS(rand.Reader, priv, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return nil, fmt.Errorf("an RSA key cannot sign %s", alg)
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, []byte(si)), nil
	}
	if alg == k.Alg {
		return k.sigOver(si)
	}
	return nil, errors.New("the key type cannot be used for crafted signatures")
}

// pssWithSalt signs si with RSASSA-PSS SHA-256 and the given salt length.
func (k *Key) pssWithSalt(si string, salt int) ([]byte, error) {
	priv, ok := k.Signer.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	d := sha256.Sum256([]byte(si))
	return rsa.SignPSS(rand.Reader, priv, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
}

// derSig is k's ECDSA signature over si in ASN.1 DER instead of r||s.
func (k *Key) derSig(si string) ([]byte, error) {
	priv, ok := k.Signer.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an EC key")
	}
	var h crypto.Hash
	switch k.Alg {
	case keys.ES256:
		h = crypto.SHA256
	case keys.ES384:
		h = crypto.SHA384
	default:
		h = crypto.SHA512
	}
	hh := h.New()
	hh.Write([]byte(si))
	return priv.Sign(rand.Reader, hh.Sum(nil), h)
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
