package protocol

import (
	"bytes"
	"crypto"
	"io"

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
	raw     []byte // the message as received, not copied: used only while it is read
	alg     keys.Algorithm
	kid     string
	payload []byte // decoded, not yet authenticated
}

// parseJWSHeader runs the structural steps shared by every JWS wsproof reads:
// the header is parsed as appendJWSHeader writes it, the payload decoded and
// the signature segment checked, and verify then hands the segments as
// received to keys.Verify. No other parser sees the message: go-jose is the
// reference the tests hold this one to (FuzzJOSEDifferential). msg is not
// copied and must not change while the result is used.
func parseJWSHeader(msg []byte, typ string) (*compactJWS, error) {
	raw := msg
	i := bytes.IndexByte(raw, '.')
	j := bytes.LastIndexByte(raw, '.')
	if i < 0 || i == j || bytes.IndexByte(raw[i+1:j], '.') >= 0 {
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

// signed returns what the signature covers, the signing input (the header
// and payload segments as received, with the dot between them: RFC 7515
// section 5.2, step 8), and the decoded signature. The segments are canonical
// base64url (parseJWSHeader checked them), so that the signing input is the
// one the signer saw.
func (j *compactJWS) signed() (input, sig []byte, err error) {
	i := bytes.LastIndexByte(j.raw, '.')
	sig, err = b64u.Decode(j.raw[i+1:])
	if err != nil {
		return nil, nil, wrap(CodeMalformed, err)
	}
	return j.raw[:i], sig, nil
}

// verify checks the signature with the key pub under the profile's exact
// rules (keys.Verify) and returns the payload.
func (j *compactJWS) verify(pub crypto.PublicKey) ([]byte, error) {
	input, sig, err := j.signed()
	if err != nil {
		return nil, err
	}
	if err := keys.Verify(pub, j.alg, input, sig); err != nil {
		return nil, wrap(CodeBadSignature, err)
	}
	return j.payload, nil
}

// appendJWSHeader appends the protected header of every JWS wsproof signs:
// exactly {"alg","kid","typ"}, in that order (spec section "Explicit typing
// and domain separation"); parseJWSHeader is its verifier. The strings are
// written as encoding/json writes them; go-jose, which wrote these headers
// before, differed only in writing \b and \f as \u0008 and \u000c, which no
// key id a registry accepts contains (keys.CheckKeyID).
func appendJWSHeader(dst []byte, alg keys.Algorithm, kid, typ string) []byte {
	dst = append(dst, `{"alg":`...)
	dst = strictjson.AppendString(dst, string(alg))
	dst = append(dst, `,"kid":`...)
	dst = strictjson.AppendString(dst, kid)
	dst = append(dst, `,"typ":`...)
	dst = strictjson.AppendString(dst, typ)
	return append(dst, '}')
}

// maxSigB64 is the length of an ES512 signature in base64url, the longest
// but RSA's: the room signJWS leaves for the signature.
const maxSigB64 = 176

// signJWS signs payload with key as a compact JWS whose protected header is
// appendJWSHeader's, with keys.Sign, which produces JWS-correct signatures
// (raw r||s for ECDSA). The JWS is built in one buffer.
func signJWS(rand io.Reader, key *keys.SigningKey, typ string, payload []byte) ([]byte, error) {
	var hb [64 + 2*keys.MaxKeyIDLen]byte
	h := appendJWSHeader(hb[:0], key.Algorithm, key.KeyID, typ)
	b := make([]byte, 0, b64u.EncodedLen(len(h))+b64u.EncodedLen(len(payload))+2+maxSigB64)
	b = b64u.Append(b, h)
	b = append(b, '.')
	b = b64u.Append(b, payload)
	sig, err := keys.Sign(rand, key.Signer, key.Algorithm, b)
	if err != nil {
		return nil, err
	}
	b = append(b, '.')
	return b64u.Append(b, sig), nil
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

// b64 returns a required member that is the canonical base64url of min to
// max bytes, without decoding it.
func (o object) b64(name string, min, max int) (string, error) {
	s, err := o.str(name)
	if err != nil {
		return "", err
	}
	if n := b64u.DecodedLen(len(s)); b64u.Check(s) != nil || n < min || n > max {
		return "", missing(name)
	}
	return s, nil
}

// b64Bytes is b64 for a member of exactly n bytes, decoded.
func (o object) b64Bytes(name string, n int) ([]byte, error) {
	s, err := o.str(name)
	if err != nil {
		return nil, err
	}
	b, err := b64u.DecodeLen(s, n)
	if err != nil {
		return nil, missing(name)
	}
	return b, nil
}
