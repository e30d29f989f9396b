package protocol

// The Wycheproof JOSE files (json_web_key, json_web_signature,
// json_web_encryption), run against wsproof's key set parsers and message
// verifiers. The files are fetched at test time (internal/wycheproof); nothing
// here is skipped.
//
// # How the generic JOSE cases map onto wsproof
//
// Wycheproof's JWSs and JWEs are generic: they carry no "typ", their payloads
// are not wsproof claims, and their JWEs no "cty" (most no "kid"). Run through
// the message procedures as they stand, every one of them would be refused at
// the typ check, which would test nothing else. So each case runs through the
// real code as far as the real code goes, and the one relaxation is explicit:
//
// JWS (json_web_signature, and the JWSs of json_web_key): the steps of spec
// section "Client: verifying a challenge" that concern a JWS, 1 to 8, in
// order. Steps 1 to 3 and the typ check are the real parseJWSHeader, run with
// an expected typ; its refusal for a missing "typ" member, and only that one,
// is the relaxation: the test then takes the header's alg and kid and does
// what parseJWSHeader would have done after typ (alg in the algorithm table,
// kid not empty), then looks the key up by kid (unknown_key), requires the
// header's alg to be the key's registered alg (alg_mismatch), and verifies
// with both real verifiers, which must agree: the client's
// (*compactJWS).verify, which hands the signing input as received to
// keys.Verify, and the server's step 15 (decoys.verify, which also spends a
// decoy verification on signatures crypto/rsa would refuse at once). The
// claims steps (9 and later) do not
// apply to Wycheproof's payloads. Keys come from the case's group through the
// real loaders, each of which must decide as wsproof's load-time rules say:
// keys.ParsePublicSet (the pinned server key set: the client's view),
// keys.ParseRegistry (the registry, with a "sub" added: the server's view) and
// keys.ParseServerKeys (the server key file, from the private JWKs, with a
// token key added so that the file is complete).
//
// A JWS case is in profile when its header names one of the six algorithms,
// its header holds no member other than alg, kid and typ, and its group's key
// is one the load-time rules accept, registered (by its JWK's "alg") for the
// header's algorithm. Out of profile, for example: HS256, RS384, PS384, PS512,
// "none"; a key whose JWK names ES521, RSA1_5 or no alg; a key the rules
// refuse (1024 bits, e = 1, "use": "enc"). Out-of-profile cases must be
// refused whatever their result; invalid cases must be refused; in-profile
// valid cases must be accepted.
//
// JWE (json_web_encryption): the token opener's JWE layer. The real
// TokenVerifier.Open runs on every case and must refuse each (none carries
// wsproof's JWE header). The layer itself runs in openJWELayer: the real
// parser (parseJWE) and decryption (compactJWE.decrypt: segment lengths, key
// unwrap, AES-GCM) around a transcription of open()'s header checks, with
// the one relaxation that "typ", "cty" and "kid" may be absent; when kid is
// absent the group's key is used. The transcription must follow open(): a
// change there is a change here. A JWE case is
// in profile when its group's key loads as a wsproof token key
// (keys.ParseTokenKeys and keys.ParseServerKeys: "oct", "dir" or "A256KW",
// 32 bytes, "use" absent or "enc") and the JWE uses that key's alg with enc
// A256GCM and no header member but alg, enc, kid, typ and cty. Everything else
// (A128KW, A256GCMKW, RSA-OAEP, RSA1_5, ECDH-ES, A128GCM, A256CBC-HS512, zip)
// is out of profile and must be refused.
//
// JWK (json_web_key): each group's key set runs through the three loaders
// above; each loader must accept or refuse the set as the load-time rules
// computed here say (jwkRules), and the group's JWS then runs as above with
// the keys of every loader that accepted the set.
//
// None of the three files has an "acceptable" case in this version; an
// acceptable case would fail the test until it is given a decision in
// acceptableJOSE.

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
	"github.com/wsproof/wsproof/internal/wycheproof"
	"github.com/wsproof/wsproof/keys"
)

// acceptableJOSE decides the acceptable cases of the JOSE files, by flag.
// There is none in this version of the vectors.
var acceptableJOSE = map[string]wycheproof.Decision{}

// jwsCase is a case of json_web_signature or json_web_key: a JWS in compact
// serialization (a JSON string) or in JSON serialization (an object).
type jwsCase struct {
	wycheproof.Case
	JWS json.RawMessage `json:"jws"`
}

// joseGroup is a group of the three JOSE files. In json_web_key, Private and
// Public are JWK Sets; in the other two, single JWKs.
type joseGroup[C any] struct {
	Comment string          `json:"comment"`
	Private json.RawMessage `json:"private"`
	Public  json.RawMessage `json:"public"`
	Tests   []C             `json:"tests"`
}

type jweCase struct {
	wycheproof.Case
	JWE json.RawMessage `json:"jwe"`
	Pt  *wycheproof.Hex `json:"pt"`
}

// message returns the octets of a JWS or JWE member: the string's value for
// the compact serialization, the JSON text itself for the JSON serialization.
func message(raw json.RawMessage) []byte {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s)
	}
	return raw
}

// TestWycheproofJOSE runs the JWK, JWS and JWE files as described at the top
// of this file, prints the summary table, and fails on any disagreement.
func TestWycheproofJOSE(t *testing.T) {
	files := []struct {
		name string
		run  func(*testing.T) *wycheproof.Tally
	}{{"json_web_key", runJWKFile}, {"json_web_signature", runJWSFile}, {"json_web_encryption", runJWEFile}}
	tallies := make([]*wycheproof.Tally, len(files))
	t.Run("files", func(t *testing.T) {
		for i, f := range files {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				tallies[i] = f.run(t)
			})
		}
	})
	if t.Failed() {
		return
	}
	wycheproof.Report(t, tallies)
}

// keyView is one loader's view of a group's keys: the key and registered
// algorithm for a kid.
type keyView struct {
	name   string
	lookup func(kid string) (crypto.PublicKey, keys.Algorithm, bool)
}

// verifyJWS runs msg through the JWS steps of "Client: verifying a
// challenge" with the keys of v, relaxing only the typ rule (see the top of
// this file).
func verifyJWS(msg []byte, v keyView) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if len(msg) > MaxHandshakeMessage {
		return fail(CodeTooLarge, "too large")
	}
	_, err = parseJWSHeader(msg, "wycheproof+jwt")
	if me, ok := errors.AsType[*strictjson.MemberError](err); !ok || me.Name != "typ" {
		if err == nil {
			return errors.New("test: a Wycheproof JWS with typ wycheproof+jwt")
		}
		return err // refused by the real parser before its typ check
	}
	// The relaxation: no typ. The header has passed every earlier step, so
	// it decodes; finish parseJWSHeader's steps after typ.
	raw := string(msg)
	i, j := strings.IndexByte(raw, '.'), strings.LastIndexByte(raw, '.')
	hb, _ := b64u.Decode(raw[:i])
	payload, _ := b64u.Decode(raw[i+1 : j])
	h, _ := parseObject(hb)
	if h.Has("typ") {
		return err // a typ that is not a string: not the relaxed case
	}
	algName, _ := h.str("alg")
	kid, _ := h.str("kid")
	alg, err := keys.ParseAlgorithm(algName)
	if err != nil {
		return wrap(CodeAlgNotAllowed, err)
	}
	if kid == "" {
		return fail(CodeMalformed, "empty kid")
	}
	pub, keyAlg, ok := v.lookup(kid)
	if !ok {
		return fail(CodeUnknownKey, "no key "+kid)
	}
	if keyAlg != alg {
		return fail(CodeAlgMismatch, "key registered for "+string(keyAlg))
	}
	jws := &compactJWS{raw: msg, alg: alg, kid: kid, payload: payload}
	_, err = jws.verify(pub)
	if errServer := theDecoys().verify(jws, pub); (errServer == nil) != (err == nil) || CodeOf(errServer) != CodeOf(err) {
		return fmt.Errorf("test: the client's verify says %v, the server's %v", err, errServer)
	}
	return err
}

// Fixed keys that complete a server key file: a token key for a file of
// signing keys, a signing key for a file of token keys.
var (
	extraTokenKey   = `{"kty":"oct","kid":"wycheproof-token","alg":"dir","k":"` + b64u.Encode(bytes.Repeat([]byte{7}, 32)) + `"}`
	extraSigningKey = func() string {
		k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
		jwk, err := keys.MarshalJWK(k, "wycheproof-signing", keys.EdDSA)
		if err != nil {
			panic(err)
		}
		return string(jwk)
	}()
)

// setOf returns the members of a JWK Set, or the one JWK jwk as a set.
func setOf(jwk json.RawMessage) []json.RawMessage {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(jwk, &set) == nil && set.Keys != nil {
		return set.Keys
	}
	return []json.RawMessage{jwk}
}

func joinSet(members []json.RawMessage, extra ...string) []byte {
	parts := make([]string, 0, len(members)+len(extra))
	for _, m := range members {
		parts = append(parts, string(m))
	}
	return []byte(`{"keys":[` + strings.Join(append(parts, extra...), ",") + `]}`)
}

// withMember returns the JSON object obj with member name set to value, or
// obj unchanged if it is not an object.
func withMember(obj json.RawMessage, name, value string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return obj
	}
	v, _ := json.Marshal(value)
	m[name] = v
	out, _ := json.Marshal(m)
	return out
}

// loader is one way a group's keys enter wsproof.
type loader struct {
	name string
	want string // "" if the rules accept the set, else why not
	load func() (keyView, error)
}

// signingLoaders returns the three loaders of a group's signing keys:
// public and private are JWK Sets (or single JWKs); either may be nil.
func signingLoaders(public, private json.RawMessage) []loader {
	var out []loader
	pub := public
	if pub == nil {
		pub = private // a group of symmetric keys has no public JWK
	}
	members := setOf(pub)
	out = append(out, loader{"pinned key set (ParsePublicSet)", setRules(members, false), func() (keyView, error) {
		s, err := keys.ParsePublicSet(joinSet(members))
		if err != nil {
			return keyView{}, err
		}
		return keyView{"pinned key set", func(kid string) (crypto.PublicKey, keys.Algorithm, bool) {
			p, ok := s.Lookup(kid)
			if !ok {
				return nil, "", false
			}
			return p.Key, p.Algorithm, true
		}}, nil
	}})
	withSub := make([]json.RawMessage, len(members))
	for i, m := range members {
		withSub[i] = withMember(m, "sub", "wycheproof")
	}
	out = append(out, loader{"registry (ParseRegistry)", setRules(members, false), func() (keyView, error) {
		s, err := keys.ParseRegistry(joinSet(withSub))
		if err != nil {
			return keyView{}, err
		}
		return keyView{"registry", func(kid string) (crypto.PublicKey, keys.Algorithm, bool) {
			e, ok := s.Lookup(kid)
			if !ok {
				return nil, "", false
			}
			return e.Key, e.Algorithm, true
		}}, nil
	}})
	if private != nil {
		priv := setOf(private)
		out = append(out, loader{"server key file (ParseServerKeys)", setRules(priv, true), func() (keyView, error) {
			k, err := keys.ParseServerKeys(joinSet(priv, extraTokenKey))
			if err != nil {
				return keyView{}, err
			}
			s := k.Public()
			return keyView{"server key file", func(kid string) (crypto.PublicKey, keys.Algorithm, bool) {
				p, ok := s.Lookup(kid)
				if !ok {
					return nil, "", false
				}
				return p.Key, p.Algorithm, true
			}}, nil
		}})
	}
	return out
}

// loadAll runs every loader, records each decision that differs from the
// rules as a disagreement of the group, and returns the verifiers of the
// loaders that accepted.
func loadAll(tally *wycheproof.Tally, cases []wycheproof.Case, ls []loader) []keyView {
	var vs []keyView
	for _, l := range ls {
		v, err := func() (v keyView, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return l.load()
		}()
		switch {
		case err == nil && l.want != "":
			tally.Disagree(cases, "(group key set)", "import: "+l.name, "refuse ("+l.want+")", "loaded it")
		case err != nil && l.want == "":
			tally.Disagree(cases, "(group key set)", "import: "+l.name, "accept", "refused: "+err.Error())
		}
		if err == nil {
			vs = append(vs, v)
		}
	}
	return vs
}

// runJWS verifies c with each verifier and records the outcome: accepted if
// any verifier accepted it.
func runJWS(tally *wycheproof.Tally, c jwsCase, v wycheproof.Verdict, vs []keyView) {
	msg := message(c.JWS)
	accepted := false
	var errs []string
	if len(vs) == 0 {
		// No loader accepted the keys; the parser still runs, so that a
		// malformed JWS is refused by it, and any other by unknown_key.
		vs = []keyView{{"no key (refused at import)", func(string) (crypto.PublicKey, keys.Algorithm, bool) { return nil, "", false }}}
	}
	for _, vf := range vs {
		if err := verifyJWS(msg, vf); err == nil {
			accepted = true
			errs = append(errs, vf.name+": accepted")
		} else {
			errs = append(errs, vf.name+": "+err.Error())
		}
	}
	tally.Record(c.Case, "JWS verification", v, accepted, strings.Join(errs, "; "))
}

// jwsVerdict is the verdict for JWS case c whose group's keys are members
// (public JWKs, or the private ones when the group has no public).
func jwsVerdict(tally *wycheproof.Tally, c jwsCase, members []json.RawMessage) wycheproof.Verdict {
	if reason := jwsProfile(message(c.JWS), members, c.Result != wycheproof.Invalid); reason != "" {
		return wycheproof.OutOfProfile(reason)
	}
	v, ok := wycheproof.InProfile(c.Case, acceptableJOSE)
	if !ok {
		tally.Problem("tcId %d: %s", c.TcID, v.Reason)
	}
	return v
}

// jwsProfile returns why the JWS msg, to be verified with the keys members,
// is outside wsproof's profile, or "" if it is inside: its algorithm, header
// members or key are not wsproof's, or, for a case that is not invalid
// (strict), its encoding is one that JOSE allows and wsproof's stricter rules
// (spec "Encodings", "Serialization") refuse. An invalid case with a broken
// encoding stays in profile: refusing it is what those rules are for.
func jwsProfile(msg []byte, members []json.RawMessage, strict bool) string {
	segs := strings.Split(string(msg), ".")
	if len(segs) != 3 {
		if strict {
			return "not a compact JWS of three segments"
		}
		return ""
	}
	for _, seg := range segs {
		if b64u.Check(seg) != nil {
			if strict {
				return "a segment is not canonical base64url"
			}
			return ""
		}
	}
	hb, _ := b64u.Decode(segs[0])
	if _, err := strictjson.ParseObject(hb); err != nil {
		if strict {
			return "header is not strict JSON"
		}
		return ""
	}
	var h map[string]any
	if json.Unmarshal(hb, &h) != nil {
		return ""
	}
	alg, _ := h["alg"].(string)
	kid, _ := h["kid"].(string)
	if !slices.Contains(keys.Algorithms, keys.Algorithm(alg)) {
		return fmt.Sprintf("JWS alg %q is not a wsproof algorithm", alg)
	}
	for name := range h {
		if name != "alg" && name != "kid" && name != "typ" {
			return fmt.Sprintf("JWS header member %q", name)
		}
	}
	for _, m := range members {
		if memberString(m, "kid") != kid {
			continue
		}
		if _, why := jwkRules(m, false); why != "" {
			return "key refused at import: " + why
		}
		if keyAlg := memberString(m, "alg"); keyAlg != alg {
			return fmt.Sprintf("key registered for %s, JWS alg %s (alg_mismatch)", keyAlg, alg)
		}
		return ""
	}
	return fmt.Sprintf("no key with kid %q (unknown_key)", kid)
}

func memberString(obj json.RawMessage, name string) string {
	var m map[string]json.RawMessage
	var s string
	if json.Unmarshal(obj, &m) != nil || json.Unmarshal(m[name], &s) != nil {
		return ""
	}
	return s
}

// setRules applies the load-time rules to a key set: every member passes
// jwkRules, kids are unique, and the set is not empty. private says the set
// is a server key file's signing keys, which must have private members; any
// other set must not.
func setRules(members []json.RawMessage, private bool) string {
	if len(members) == 0 {
		return "empty key set"
	}
	kids := map[string]bool{}
	for i, m := range members {
		kid, why := jwkRules(m, private)
		if why != "" {
			return fmt.Sprintf("key %d: %s", i, why)
		}
		if kids[kid] {
			return "duplicate kid " + kid
		}
		kids[kid] = true
	}
	return ""
}

// curves maps the EC algorithms to their curve and coordinate size.
var curves = map[keys.Algorithm]struct {
	crv  string
	size int
	ecdh ecdh.Curve
}{
	keys.ES256: {"P-256", 32, ecdh.P256()},
	keys.ES384: {"P-384", 48, ecdh.P384()},
	keys.ES512: {"P-521", 66, ecdh.P521()},
}

// jwkRules applies the load-time rules of spec section "Key registry" to a
// signing key's JWK, independently of package keys, and returns its kid and
// why the rules refuse it ("" if they accept it):
//
//   - kty EC, RSA or OKP; alg one of the six, matching kty and crv;
//   - kid of 1 to 128 printable ASCII characters;
//   - use absent or "sig";
//   - key_ops absent, or an array of strings that holds "verify", or for a
//     server key file's signing key "sign" (decided: RFC 7517 section 4.3
//     names the operations a key is for, and a key whose key_ops does not
//     name the one wsproof uses it for must not be used for it; the spec
//     says nothing yet);
//   - every base64url member canonical; RSA n and e without leading zero
//     octets, n odd of 2048 to 4096 bits, e = 65537; EC x and y of the
//     curve's size and a point on it; OKP x of 32 octets (Wycheproof's JOSE
//     files have no OKP key);
//   - private members (d, p, q, dp, dq, qi, oth) present if and only if
//     private.
func jwkRules(jwk json.RawMessage, private bool) (kid, why string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(jwk, &m); err != nil {
		return "", "not a JSON object"
	}
	str := func(name string) (string, bool) {
		var s string
		err := json.Unmarshal(m[name], &s)
		return s, err == nil
	}
	b64 := func(name string) ([]byte, bool) {
		s, ok := str(name)
		if !ok {
			return nil, false
		}
		b, err := b64u.Decode(s)
		return b, err == nil
	}
	kid, _ = str("kid")
	if len(kid) == 0 || len(kid) > keys.MaxKeyIDLen || strings.ContainsFunc(kid, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return kid, "kid missing or not 1 to 128 printable ASCII characters"
	}
	kty, _ := str("kty")
	alg, ok := str("alg")
	if !ok {
		return kid, "no alg"
	}
	if !slices.Contains(keys.Algorithms, keys.Algorithm(alg)) {
		return kid, fmt.Sprintf("alg %s is not a wsproof algorithm", alg)
	}
	if use, ok := str("use"); m["use"] != nil && (!ok || use != "sig") {
		return kid, "use is not sig"
	}
	if raw := m["key_ops"]; raw != nil {
		op := "verify"
		if private {
			op = "sign"
		}
		var ops []string
		if json.Unmarshal(raw, &ops) != nil || !slices.Contains(ops, op) {
			return kid, "key_ops " + string(raw) + " does not allow " + op
		}
	}
	hasPrivate := false
	for _, p := range []string{"d", "p", "q", "dp", "dq", "qi", "oth"} {
		if m[p] != nil {
			hasPrivate = true
		}
	}
	if hasPrivate != private {
		if private {
			return kid, "a signing key without private members"
		}
		return kid, "private members in a public key set"
	}
	switch keys.Algorithm(alg) {
	case keys.ES256, keys.ES384, keys.ES512:
		c := curves[keys.Algorithm(alg)]
		if crv, _ := str("crv"); kty != "EC" || crv != c.crv {
			return kid, fmt.Sprintf("alg %s with kty %s crv %s", alg, kty, crv)
		}
		x, okx := b64("x")
		y, oky := b64("y")
		if !okx || !oky || len(x) != c.size || len(y) != c.size {
			return kid, "EC coordinates missing, non-canonical or of the wrong size"
		}
		if _, err := c.ecdh.NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
			return kid, "not a point of " + c.crv
		}
	case keys.RS256, keys.PS256:
		if kty != "RSA" {
			return kid, fmt.Sprintf("alg %s with kty %s", alg, kty)
		}
		n, okn := b64("n")
		e, oke := b64("e")
		if !okn || !oke || len(n) == 0 || len(e) == 0 || n[0] == 0 || e[0] == 0 {
			return kid, "RSA n or e missing, non-canonical or not minimal"
		}
		N, E := new(big.Int).SetBytes(n), new(big.Int).SetBytes(e)
		switch bits := N.BitLen(); {
		case bits < keys.MinRSABits || bits > keys.MaxRSABits:
			return kid, fmt.Sprintf("RSA modulus of %d bits", bits)
		case N.Bit(0) == 0:
			return kid, "even RSA modulus"
		case E.Cmp(big.NewInt(keys.RSAExponent)) != 0:
			return kid, "RSA exponent " + E.String()
		case rocaFingerprint(N):
			return kid, "RSA modulus with the ROCA fingerprint"
		}
	case keys.EdDSA:
		crv, _ := str("crv")
		if x, ok := b64("x"); kty != "OKP" || crv != "Ed25519" || !ok || len(x) != ed25519.PublicKeySize {
			return kid, "not an Ed25519 OKP key"
		}
	}
	for name := range m {
		if name == "kid" || name == "kty" || name == "alg" || name == "use" || name == "key_ops" || name == "crv" {
			continue
		}
		if s, ok := str(name); ok && slices.Contains([]string{"x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi"}, name) {
			if b64u.Check(s) != nil {
				return kid, "non-canonical base64url in " + name
			}
		}
	}
	return kid, ""
}

func runJWKFile(t *testing.T) *wycheproof.Tally {
	const name = "json_web_key_test.json"
	var f wycheproof.File[joseGroup[jwsCase]]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	for _, g := range f.TestGroups {
		cs := make([]wycheproof.Case, len(g.Tests))
		for i, c := range g.Tests {
			cs[i] = c.Case
		}
		vs := loadAll(tally, cs, signingLoaders(g.Public, g.Private))
		pub := g.Public
		if pub == nil {
			pub = g.Private
		}
		for _, c := range g.Tests {
			v := jwsVerdict(tally, c, setOf(pub))
			// A set the rules refuse holds no usable key: its cases are out
			// of profile (refused at import), whatever their JWS.
			if why := setRules(setOf(pub), false); why != "" && !v.OutOfProfile {
				v = wycheproof.OutOfProfile("key set refused at import: " + why)
			}
			runJWS(tally, c, v, vs)
		}
	}
	checkCount(tally, f.NumberOfTests)
	return tally
}

func runJWSFile(t *testing.T) *wycheproof.Tally {
	const name = "json_web_signature_test.json"
	var f wycheproof.File[joseGroup[jwsCase]]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	for _, g := range f.TestGroups {
		cs := make([]wycheproof.Case, len(g.Tests))
		for i, c := range g.Tests {
			cs[i] = c.Case
		}
		vs := loadAll(tally, cs, signingLoaders(g.Public, g.Private))
		pub := g.Public
		if pub == nil {
			pub = g.Private
		}
		for _, c := range g.Tests {
			runJWS(tally, c, jwsVerdict(tally, c, setOf(pub)), vs)
		}
	}
	checkCount(tally, f.NumberOfTests)
	return tally
}

func checkCount(tally *wycheproof.Tally, n int) {
	if tally.Cases != n {
		tally.Problem("ran %d cases, the file says numberOfTests %d", tally.Cases, n)
	}
}

// tokenKeyRules applies the load-time rules of a token key (spec section
// "Load-time rules", server key file) to a JWK, and returns why they refuse
// it, or "".
func tokenKeyRules(jwk json.RawMessage) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(jwk, &m) != nil {
		return "not a JSON object"
	}
	str := func(name string) string {
		var s string
		json.Unmarshal(m[name], &s)
		return s
	}
	if str("kty") != "oct" {
		return "kty " + str("kty") + " is not a token key"
	}
	if alg := str("alg"); alg != keys.TokenDir && alg != keys.TokenA256KW {
		return "token key alg " + alg
	}
	if k, err := b64u.Decode(str("k")); err != nil || len(k) != keys.TokenKeySize {
		return "k is not the canonical base64url of 32 octets"
	}
	if m["use"] != nil && str("use") != "enc" {
		return "use is not enc"
	}
	if kid := str("kid"); kid == "" || len(kid) > keys.MaxKeyIDLen {
		return "kid missing"
	}
	return ""
}

// openJWELayer is TokenVerifier.open's JWE layer: the real parseJWE and
// compactJWE.decrypt around a transcription of open()'s header checks, which
// must make the same checks in the same order. The one relaxation: "typ",
// "cty" and "kid" may be absent (Wycheproof's JWEs have no typ and cty, most
// no kid); without a kid the only key of tks is used.
func openJWELayer(token string, tks []keys.TokenKey) (plaintext []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if len(token) > MaxToken {
		return nil, errors.New("too large")
	}
	j, err := parseJWE(token)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for name := range j.header.Object {
		if !slices.Contains([]string{"alg", "enc", "kid", "typ", "cty"}, name) {
			return nil, errTokenHeader
		}
		if got[name], err = j.header.str(name); err != nil {
			return nil, err
		}
	}
	if _, ok := got["alg"]; !ok {
		return nil, missing("alg")
	}
	if _, ok := got["enc"]; !ok {
		return nil, missing("enc")
	}
	if typ, ok := got["typ"]; ok && typ != TypSessionE {
		return nil, errTokenHeader
	}
	if cty, ok := got["cty"]; ok && cty != jweCty {
		return nil, errTokenHeader
	}
	if got["enc"] != jweEnc {
		return nil, errTokenHeader
	}
	var key *keys.TokenKey
	if kid, ok := got["kid"]; ok {
		for i := range tks {
			if tks[i].KeyID == kid {
				key = &tks[i]
			}
		}
	} else if len(tks) == 1 {
		key = &tks[0]
	}
	if key == nil || key.Algorithm != got["alg"] {
		return nil, errors.New("unknown token key")
	}
	return j.decrypt(key)
}

// jweProfile returns why JWE msg, opened with the token key jwk, is outside
// wsproof's profile, or "".
func jweProfile(msg []byte, jwk json.RawMessage) string {
	if why := tokenKeyRules(jwk); why != "" {
		return "key refused at import: " + why
	}
	segs := strings.Split(string(msg), ".")
	if len(segs) != 5 {
		return ""
	}
	hb, err := base64.RawURLEncoding.DecodeString(segs[0])
	if err != nil {
		return ""
	}
	var h map[string]any
	if json.Unmarshal(hb, &h) != nil {
		return ""
	}
	for name := range h {
		if !slices.Contains([]string{"alg", "enc", "kid", "typ", "cty"}, name) {
			return fmt.Sprintf("JWE header member %q", name)
		}
	}
	if enc, _ := h["enc"].(string); enc != string(jose.A256GCM) {
		return fmt.Sprintf("enc %s is not A256GCM", enc)
	}
	if alg, _ := h["alg"].(string); alg != memberString(jwk, "alg") {
		return fmt.Sprintf("JWE alg %s, token key alg %s", alg, memberString(jwk, "alg"))
	}
	return ""
}

func runJWEFile(t *testing.T) *wycheproof.Tally {
	const name = "json_web_encryption_test.json"
	var f wycheproof.File[joseGroup[jweCase]]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	signing, err := keys.ParsePublicSet([]byte(`{"keys":[` + memberWithout(extraSigningKey, "d") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range f.TestGroups {
		cs := make([]wycheproof.Case, len(g.Tests))
		for i, c := range g.Tests {
			cs[i] = c.Case
		}
		want := tokenKeyRules(g.Private)
		var tks []keys.TokenKey
		for _, l := range []struct {
			name string
			load func() ([]keys.TokenKey, error)
		}{
			{"token key file (ParseTokenKeys)", func() ([]keys.TokenKey, error) {
				return keys.ParseTokenKeys(joinSet([]json.RawMessage{g.Private}))
			}},
			{"server key file (ParseServerKeys)", func() ([]keys.TokenKey, error) {
				k, err := keys.ParseServerKeys(joinSet([]json.RawMessage{g.Private}, extraSigningKey))
				if err != nil {
					return nil, err
				}
				return k.Token, nil
			}},
		} {
			got, err := l.load()
			switch {
			case err == nil && want != "":
				tally.Disagree(cs, "(group key)", "import: "+l.name, "refuse ("+want+")", "loaded it")
			case err != nil && want == "":
				tally.Disagree(cs, "(group key)", "import: "+l.name, "accept", "refused: "+err.Error())
			}
			if err == nil && tks == nil {
				tks = got
			}
		}
		for _, c := range g.Tests {
			msg := message(c.JWE)
			var v wycheproof.Verdict
			if why := jweProfile(msg, g.Private); why != "" {
				v = wycheproof.OutOfProfile(why)
			} else {
				var ok bool
				if v, ok = wycheproof.InProfile(c.Case, acceptableJOSE); !ok {
					tally.Problem("tcId %d: %s", c.TcID, v.Reason)
				}
			}
			if tks == nil {
				tally.Record(c.Case, "import", v, false, "refused at import: no loader accepted the key")
				continue
			}
			// The real opener refuses every Wycheproof JWE: none has
			// wsproof's header.
			tv := &TokenVerifier{Identity: "wss://wycheproof.example/ws", TokenKeys: tks, SigningKeys: signing}
			if _, err := tv.Open(string(msg), "sid", testNow); err == nil {
				tally.Disagree([]wycheproof.Case{c.Case}, c.Comment, "TokenVerifier.Open", "refuse (no wsproof JWE header)", "accepted")
			}
			pt, err := openJWELayer(string(msg), tks)
			got := "decrypted"
			if err != nil {
				got = "refused: " + err.Error()
			} else if c.Pt != nil && !bytes.Equal(pt, *c.Pt) {
				got = fmt.Sprintf("decrypted to %x, not %x", pt, []byte(*c.Pt))
				err = errors.New(got)
			}
			tally.Record(c.Case, "JWE layer", v, err == nil, got)
		}
	}
	checkCount(tally, f.NumberOfTests)
	return tally
}

// memberWithout returns the JSON object obj without member name.
func memberWithout(obj, name string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		panic(err)
	}
	delete(m, name)
	out, _ := json.Marshal(m)
	return string(out)
}

// TestOpenJWELayerMatchesOpen ties the transcription to the real code: on
// wsproof's own tokens, with both token key algorithms, openJWELayer must
// open what TokenVerifier.Open opens and refuse what it refuses when any one
// segment is changed.
func TestOpenJWELayerMatchesOpen(t *testing.T) {
	for _, alg := range []string{keys.TokenDir, keys.TokenA256KW} {
		tk := keys.TokenKey{KeyID: "tok", Algorithm: alg, Secret: bytes.Repeat([]byte{3}, keys.TokenKeySize)}
		sk := &keys.ServerKeys{
			Signing: []keys.SigningKey{{KeyID: "sig", Algorithm: keys.ES256, Signer: testKey(t, keys.ES256)}},
			Token:   []keys.TokenKey{tk},
		}
		const id, sid = "wss://wycheproof.example/ws", "AAAAAAAAAAAAAAAAAAAAAA"
		c := &TokenClaims{Issuer: id, Audience: id, Subject: "s", SocketID: sid, IssuedAt: testNow.Unix(),
			NotBefore: testNow.Unix(), Expiry: testNow.Unix() + 300, Cnf: Confirmation{JKT: b64u.Encode(make([]byte, 32))},
			Groups: []string{}, ClientKeyID: "c"}
		token, err := issueToken(sk, c, bytes.NewReader(make([]byte, 1024)))
		if err != nil {
			t.Fatal(err)
		}
		tv := &TokenVerifier{Identity: id, TokenKeys: sk.Token, SigningKeys: sk.Public()}
		if _, err := tv.Open(token, sid, testNow); err != nil {
			t.Fatalf("%s: Open: %v", alg, err)
		}
		if _, err := openJWELayer(token, sk.Token); err != nil {
			t.Fatalf("%s: openJWELayer: %v", alg, err)
		}
		segs := strings.Split(token, ".")
		for i := range segs {
			for _, change := range []func([]byte) []byte{
				func(b []byte) []byte { return append(b, 0) },
				func(b []byte) []byte {
					if len(b) > 0 {
						b[len(b)-1] ^= 1
					}
					return b
				},
			} {
				b, _ := b64u.Decode(segs[i])
				mod := slices.Clone(segs)
				mod[i] = b64u.Encode(change(slices.Clone(b)))
				bad := strings.Join(mod, ".")
				_, errOpen := tv.Open(bad, sid, testNow)
				_, errLayer := openJWELayer(bad, sk.Token)
				if (errOpen == nil) != (errLayer == nil) {
					t.Errorf("%s: segment %d changed: Open %v, openJWELayer %v", alg, i, errOpen, errLayer)
				}
			}
		}
	}
}

// rocaFingerprint is the test of Nemec et al., "The Return of Coppersmith's
// Attack" (CCS 2017), written here apart from package keys so that the
// oracle stays independent: the moduli that the vulnerable library made are
// the ones whose residue modulo each prime from 3 to 167 is a power of 65537
// modulo that prime.
func rocaFingerprint(n *big.Int) bool {
	for r := int64(3); r <= 167; r += 2 {
		if !big.NewInt(r).ProbablyPrime(0) {
			continue
		}
		want := new(big.Int).Mod(n, big.NewInt(r)).Int64()
		found := false
		for g, i := int64(1), 0; i < int(r) && !found; g, i = g*(65537%r)%r, i+1 {
			found = g == want
		}
		if !found {
			return false
		}
	}
	return true
}

// TestWycheproofAESKeyWrap holds the AES Key Wrap of A256KW tokens (go-jose's
// RFC 3394 code, behind wrapCEK and unwrapCEK) to aes_wrap_test.json, the one
// primitive of the token that neither crypto/cipher nor the differential fuzz
// target checks independently. Every case runs through unwrapCEK, whose
// profile is a 256-bit key wrapping a 32-octet content key: other cases must
// be refused. Cases of that profile must also unwrap (valid) or be refused
// (invalid) as Wycheproof says, and valid ones wrap to the same bytes.
func TestWycheproofAESKeyWrap(t *testing.T) {
	const name = "aes_wrap_test.json"
	type wrapCase struct {
		wycheproof.Case
		Key wycheproof.Hex `json:"key"`
		Msg wycheproof.Hex `json:"msg"`
		CT  wycheproof.Hex `json:"ct"`
	}
	var f wycheproof.File[struct {
		KeySize int        `json:"keySize"`
		Tests   []wrapCase `json:"tests"`
	}]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	for _, g := range f.TestGroups {
		for _, c := range g.Tests {
			var v wycheproof.Verdict
			switch {
			case g.KeySize != 8*keys.TokenKeySize:
				v = wycheproof.OutOfProfile("a key that is not 256 bits")
			case len(c.CT) != jweWrappedKeySize:
				v = wycheproof.OutOfProfile("a wrapped key that is not 40 octets")
			default:
				var ok bool
				if v, ok = wycheproof.InProfile(c.Case, nil); !ok {
					tally.Problem("tcId %d: %s", c.TcID, v.Reason)
					continue
				}
			}
			cek, err := unwrapCEK(c.Key, c.CT)
			got := "accepted"
			switch {
			case err != nil:
				got = err.Error()
			case !bytes.Equal(cek, c.Msg):
				err, got = errors.New("wrong key"), "unwrapped to other bytes"
			}
			tally.Record(c.Case, "unwrap", v, err == nil, got)
			if v.Accept {
				if ek, err := wrapCEK(c.Key, c.Msg); err != nil || !bytes.Equal(ek, c.CT) {
					tally.Disagree([]wycheproof.Case{c.Case}, "wrap", "wrap", "the case's ct", fmt.Sprintf("%x, %v", ek, err))
				}
			}
		}
	}
	checkCount(tally, f.NumberOfTests)
	wycheproof.Report(t, []*wycheproof.Tally{tally})
}
