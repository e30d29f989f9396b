package protocol

import (
	"crypto"
	"errors"
	"io"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
	"github.com/wsproof/wsproof/keys"
)

// compactJWS is a JWS in compact serialization that has passed the structural
// steps of spec section "Server: verifying a response" (steps 2 to 5): three
// canonical base64url segments, a strict JSON header holding exactly alg, kid
// and typ, the expected typ and a known algorithm. The signature is not yet
// checked.
type compactJWS struct {
	raw     string
	alg     keys.Algorithm
	kid     string
	payload []byte // decoded, not yet authenticated
}

// parseJWSHeader runs the structural steps shared by every JWS wsproof reads.
// Only the header is decoded here; go-jose parses the whole object when the
// signature is verified.
func parseJWSHeader(msg []byte, typ string) (*compactJWS, error) {
	raw := string(msg)
	i := strings.IndexByte(raw, '.')
	j := strings.LastIndexByte(raw, '.')
	if i < 0 || i == j || strings.IndexByte(raw[i+1:j], '.') >= 0 {
		return nil, fail(CodeMalformed, "not a JWS in compact serialization")
	}
	header, err := b64u.Decode(raw[:i])
	if err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	payload, err := b64u.Decode(raw[i+1 : j])
	if err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	if err := b64u.Check(raw[j+1:]); err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	h, err := parseObject(header)
	if err != nil {
		return nil, err
	}
	for name := range h.Object {
		if name != "alg" && name != "kid" && name != "typ" {
			return nil, fail(CodeHeaderNotAllowed, "header member other than alg, kid and typ")
		}
	}
	algName, err := h.str("alg")
	if err != nil {
		return nil, err
	}
	kid, err := h.str("kid")
	if err != nil {
		return nil, err
	}
	gotTyp, err := h.str("typ")
	if err != nil {
		return nil, err
	}
	if gotTyp != typ {
		return nil, failf(CodeWrongType, "typ is not %s", typ)
	}
	alg, err := keys.ParseAlgorithm(algName)
	if err != nil {
		return nil, wrap(CodeAlgNotAllowed, keys.ErrUnknownAlgorithm)
	}
	if kid == "" {
		return nil, fail(CodeMalformed, "empty kid")
	}
	return &compactJWS{raw: raw, alg: alg, kid: kid, payload: payload}, nil
}

// verify checks the signature with go-jose, which hands the signing input to
// our verifier so that the profile's exact rules apply (keys.Verify), and
// returns the payload.
func (j *compactJWS) verify(pub crypto.PublicKey) ([]byte, error) {
	obj, err := jose.ParseSignedCompact(j.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(j.alg)})
	if err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	payload, err := obj.Verify(verifier{pub: pub, alg: j.alg})
	if err != nil {
		return nil, wrap(CodeBadSignature, err)
	}
	return payload, nil
}

// verifier adapts keys.Verify to go-jose's OpaqueVerifier.
type verifier struct {
	pub crypto.PublicKey
	alg keys.Algorithm
}

func (v verifier) VerifyPayload(signingInput, sig []byte, alg jose.SignatureAlgorithm) error {
	if keys.Algorithm(alg) != v.alg {
		return keys.ErrBadSignature
	}
	return keys.Verify(v.pub, v.alg, signingInput, sig)
}

// signer adapts a crypto.Signer to go-jose's OpaqueSigner through keys.Sign,
// which produces JWS-correct signatures (raw r||s for ECDSA).
type signer struct {
	key  *keys.SigningKey
	rand io.Reader
}

func (s signer) Public() *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: s.key.Signer.Public(), KeyID: s.key.KeyID, Algorithm: string(s.key.Algorithm)}
}

func (s signer) Algs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.SignatureAlgorithm(s.key.Algorithm)}
}

func (s signer) SignPayload(signingInput []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if keys.Algorithm(alg) != s.key.Algorithm {
		return nil, errors.New("protocol: algorithm does not match the signing key")
	}
	return keys.Sign(s.rand, s.key.Signer, s.key.Algorithm, signingInput)
}

// signJWS signs payload with key as a compact JWS whose protected header is
// exactly {"alg","kid","typ"}.
func signJWS(rand io.Reader, key *keys.SigningKey, typ string, payload []byte) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: signer{key, rand}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// object reads peer JSON; every failure is malformed.
type object struct{ strictjson.Object }

func parseObject(b []byte) (object, error) {
	o, err := strictjson.ParseObject(b)
	if err != nil {
		return object{}, wrap(CodeMalformed, err)
	}
	return object{o}, nil
}

func missing(name string) error { return wrap(CodeMalformed, &strictjson.MemberError{Name: name}) }

func (o object) str(name string) (string, error) {
	s, err := o.Str(name)
	if err != nil {
		return "", wrap(CodeMalformed, err)
	}
	return s, nil
}

func (o object) date(name string) (int64, error) {
	n, err := o.Date(name)
	if err != nil {
		return 0, wrap(CodeMalformed, err)
	}
	return n, nil
}

func (o object) strs(name string, maxN, maxLen int) ([]string, error) {
	s, err := o.Strs(name, maxN, maxLen)
	if err != nil {
		return nil, wrap(CodeMalformed, err)
	}
	return s, nil
}

// b64 returns a required base64url member that decodes to min..max bytes.
func (o object) b64(name string, min, max int) (string, []byte, error) {
	s, err := o.str(name)
	if err != nil {
		return "", nil, err
	}
	b, err := b64u.Decode(s)
	if err != nil || len(b) < min || len(b) > max {
		return "", nil, missing(name)
	}
	return s, b, nil
}
