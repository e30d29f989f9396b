package keys_test

// The Wycheproof signature files, run against keys.Verify and against every
// parser through which a public key enters wsproof. The files are fetched at
// test time (internal/wycheproof); nothing here is skipped.
//
// What "in profile" means for a signature file:
//
//   - ecdsa_secp{256r1,384r1,521r1}_sha{256,384,512}_p1363: exactly ES256,
//     ES384 and ES512 (raw r||s), every case in profile.
//   - rsa_signature_{2048,3072,4096,8192}_*: RS256 is RSASSA-PKCS1-v1_5 with
//     SHA-256 only. A group whose hash is another is out of profile: RS256
//     must refuse its signatures, valid ones included (each valid one is
//     first checked to verify under its own hash with crypto/rsa, so the
//     refusal is not vacuous). The exception is a signature that is a valid
//     RS256 signature all the same (the "WrongHash" case that hashed with
//     SHA-256): it is accepted, after crypto/rsa with RS256's exact parameters
//     has confirmed it (see group.verify). The 8192-bit files check that keys
//     over 4096 bits are refused by every form.
//   - rsa_pss_*: PS256 is RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a
//     32-byte salt, nothing else. Every other parameter set (hash, MGF hash,
//     SHAKE, salt length, including 0 and 20) is out of profile: our PS256
//     verifier must refuse its signatures, valid ones included (again checked
//     first with crypto/rsa where the standard library can: MGF1 with the
//     message hash), except one that is a valid PS256 signature all the same
//     (the salt-0 group's "s_len changed to 32" case). The *_params files carry the same keys as SPKI with the
//     id-RSASSA-PSS algorithm and parameters, which wsproof's PEM parser does
//     not read (decided: a wsproof RSA key is an rsaEncryption SPKI, a PKCS #1
//     key, a JWK or an OpenSSH key, and one key may serve RS256 or PS256 by its
//     registered alg); their signatures run with the key from the other forms.
//   - ed25519: EdDSA, every case in profile.
//
// Every group's key is loaded through each form the group provides or that
// can be built from its raw components: the JWK (keys.ParseJWK,
// keys.ParsePublicKey, keys.ParsePublicSet, keys.ParseRegistry), the PEM SPKI
// and the PKCS #1 "RSA PUBLIC KEY" (keys.ParsePublicKey), an OpenSSH line
// built from the raw key (keys.ParsePublicKey, keys.ParseAuthorizedKeys), and
// the raw key itself (keys.NewPublicSet, keys.NewSet). Each must accept or
// refuse as wsproof's load-time rules (spec "Key registry", "Load-time rules")
// dictate, computed here independently of package keys:
//
//   - RSA: a modulus of 2048 to 4096 bits, odd, and e = 65537;
//   - ECDSA: a point on the curve of the algorithm;
//   - Ed25519: the canonical encoding (y < p, and not x = 0 with the sign bit
//     set) of a point on the curve that is not of small order (order 1, 2, 4
//     or 8);
//   - a JWK whose "alg" is not the algorithm the key is loaded for (RS384,
//     PS512, ...) is refused by the JWK parsers;
//   - an SPKI with the id-RSASSA-PSS algorithm is refused by the PEM parser.
//
// A case whose key no form loads counts as out of profile (the key is
// refused at import, a decided outcome); a case whose key some form loads
// although the rules refuse it, and which then verifies, is a disagreement,
// as is every form that decides otherwise than the rules.

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha3"
	_ "crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/wsproof/wsproof/internal/wycheproof"
	"github.com/wsproof/wsproof/keys"
)

// acceptableDecisions decides every "acceptable" case of the signature files,
// by flag. A flag that is missing here fails the test, so that a new
// acceptable case in a later vector version is decided, not passed by
// default.
//
//	| flag        | file                 | decision | reason                                                   |
//	|-------------|----------------------|----------|----------------------------------------------------------|
//	| MissingNull | rsa_signature_*      | refuse   | the DigestInfo's AlgorithmIdentifier omits the NULL      |
//	|             |                      |          | parameters. RFC 8017 (section 9.2, note 1) defines the   |
//	|             |                      |          | encoding with NULL, and accepting both would give every  |
//	|             |                      |          | message two valid RS256 signatures under one key;        |
//	|             |                      |          | crypto/rsa compares against the one encoding             |
//	|             |                      |          | (spec: RS256 is "RSASSA-PKCS1-v1_5 (RFC 8017)").         |
//
// The ECDSA P1363, Ed25519 and RSA-PSS files of this version have no
// acceptable case.
var acceptableDecisions = map[string]wycheproof.Decision{
	"MissingNull": {Accept: false, Reason: "DigestInfo without NULL parameters is not RFC 8017's encoding; accepting it would make RS256 malleable"},
}

// sigCase is a case of the signature verification schemas.
type sigCase struct {
	wycheproof.Case
	Msg wycheproof.Hex `json:"msg"`
	Sig wycheproof.Hex `json:"sig"`
}

type ecdsaGroup struct {
	PublicKey struct {
		Curve        string         `json:"curve"`
		Uncompressed wycheproof.Hex `json:"uncompressed"`
		Wx           wycheproof.Hex `json:"wx"`
		Wy           wycheproof.Hex `json:"wy"`
	} `json:"publicKey"`
	PublicKeyDer wycheproof.Hex  `json:"publicKeyDer"`
	PublicKeyPem string          `json:"publicKeyPem"`
	PublicKeyJwk json.RawMessage `json:"publicKeyJwk"`
	Sha          string          `json:"sha"`
	Tests        []sigCase       `json:"tests"`
}

type rsaGroup struct {
	Type      string `json:"type"`
	KeySize   int    `json:"keySize"`
	Sha       string `json:"sha"`
	Mgf       string `json:"mgf"`
	MgfSha    string `json:"mgfSha"`
	SLen      int    `json:"sLen"`
	PublicKey struct {
		Modulus        wycheproof.Hex `json:"modulus"`
		PublicExponent wycheproof.Hex `json:"publicExponent"`
	} `json:"publicKey"`
	PublicKeyAsn wycheproof.Hex  `json:"publicKeyAsn"`
	PublicKeyDer wycheproof.Hex  `json:"publicKeyDer"`
	PublicKeyPem string          `json:"publicKeyPem"`
	KeyJwk       json.RawMessage `json:"keyJwk"`
	PublicKeyJwk json.RawMessage `json:"publicKeyJwk"`
	Tests        []sigCase       `json:"tests"`
}

type eddsaGroup struct {
	PublicKey struct {
		Pk wycheproof.Hex `json:"pk"`
	} `json:"publicKey"`
	PublicKeyDer wycheproof.Hex  `json:"publicKeyDer"`
	PublicKeyPem string          `json:"publicKeyPem"`
	PublicKeyJwk json.RawMessage `json:"publicKeyJwk"`
	Tests        []sigCase       `json:"tests"`
}

// TestWycheproofSignatures runs the ECDSA P1363, RSASSA-PKCS1-v1_5, RSASSA-PSS
// and Ed25519 files through keys.Verify and the key parsers, prints the
// summary table, and fails on any disagreement.
func TestWycheproofSignatures(t *testing.T) {
	type file struct {
		name string
		run  func(*testing.T, string) *wycheproof.Tally
	}
	var files []file
	for _, f := range []struct {
		name string
		alg  keys.Algorithm
	}{
		{"ecdsa_secp256r1_sha256_p1363_test.json", keys.ES256},
		{"ecdsa_secp384r1_sha384_p1363_test.json", keys.ES384},
		{"ecdsa_secp521r1_sha512_p1363_test.json", keys.ES512},
	} {
		files = append(files, file{f.name, func(t *testing.T, n string) *wycheproof.Tally { return runECDSA(t, n, f.alg) }})
	}
	for _, name := range wycheproof.Glob(t, "rsa_signature_*_test.json") {
		files = append(files, file{name, func(t *testing.T, n string) *wycheproof.Tally { return runRSA(t, n, keys.RS256) }})
	}
	for _, name := range wycheproof.Glob(t, "rsa_pss_*_test.json") {
		files = append(files, file{name, func(t *testing.T, n string) *wycheproof.Tally { return runRSA(t, n, keys.PS256) }})
	}
	files = append(files, file{"ed25519_test.json", runEdDSA})

	tallies := make([]*wycheproof.Tally, len(files))
	t.Run("files", func(t *testing.T) {
		for i, f := range files {
			t.Run(strings.TrimSuffix(f.name, "_test.json"), func(t *testing.T) {
				t.Parallel()
				tallies[i] = f.run(t, f.name)
			})
		}
	})
	if t.Failed() {
		return // a file could not be read; its tally is missing
	}
	wycheproof.Report(t, tallies)
}

// group is what the runners share about one test group: its key in every
// form, the verdict of the load-time rules on it, and whether the group's
// signature scheme is the algorithm's.
type group struct {
	tally *wycheproof.Tally
	cases []wycheproof.Case
	alg   keys.Algorithm
	raw   crypto.PublicKey // built from the group's raw components

	keyOK     bool   // the load-time rules accept raw for alg
	keyReason string // why not

	jwk      []byte // the group's JWK, or one built from raw
	jwkAlg   string // its "alg" member, "" if none
	pem      string // SPKI
	der      []byte // the same SPKI in DER, when the group has it
	spkiPSS  bool   // the SPKI's algorithm is id-RSASSA-PSS
	pkcs1    []byte // RSAPublicKey DER, for RSA
	sshLine  []byte // an OpenSSH public key line
	imported bool   // some form loaded the key
	name     string // names the key in reports; "" for a Wycheproof group's
}

func (g *group) label() string {
	if g.name != "" {
		return g.name
	}
	return "(group key)"
}

// load runs every form of g's key through its parser and records, as
// disagreements, the forms that decide otherwise than the load-time rules or
// that load a key other than raw. It sets g.imported.
func (g *group) load() {
	type form struct {
		name    string
		want    bool
		why     string
		present bool
		parse   func() (crypto.PublicKey, error)
	}
	jwkWithAlg := setMember(g.jwk, "alg", string(g.alg))
	jwkWant, jwkWhy := g.keyOK, g.keyReason
	if g.jwkAlg != "" && g.jwkAlg != string(g.alg) && jwkWant {
		jwkWant, jwkWhy = false, fmt.Sprintf("the JWK's alg %s is not %s", g.jwkAlg, g.alg)
	}
	if g.jwkAlg != "" {
		jwkWithAlg = g.jwk // the JWK's own alg stands
	}
	// keys reads DER only inside PEM; check that the group's PEM is its DER,
	// so that the PEM form covers the DER form.
	if g.der != nil {
		if b, _ := pem.Decode([]byte(g.pem)); b == nil || !bytes.Equal(b.Bytes, g.der) {
			g.tally.Problem("tcIds %s: publicKeyPem does not hold publicKeyDer", wycheproof.Span(g.cases))
		}
	}
	pemWant, pemWhy := g.keyOK, g.keyReason
	if g.spkiPSS && pemWant {
		pemWant, pemWhy = false, "SPKI with the id-RSASSA-PSS algorithm is not a wsproof key encoding"
	}
	const kid = "wycheproof"
	forms := []form{
		{"JWK via ParseJWK", jwkWant, jwkWhy, g.jwk != nil, func() (crypto.PublicKey, error) {
			k, _, alg, err := keys.ParseJWK(jwkWithAlg)
			if err == nil && alg != g.alg {
				return nil, fmt.Errorf("loaded for %s", alg)
			}
			return k, err
		}},
		{"JWK via ParsePublicKey", jwkWant, jwkWhy, g.jwk != nil, func() (crypto.PublicKey, error) {
			return keys.ParsePublicKey(g.jwk)
		}},
		{"JWK Set via ParsePublicSet", jwkWant, jwkWhy, g.jwk != nil, func() (crypto.PublicKey, error) {
			s, err := keys.ParsePublicSet(jwkSet(setMember(jwkWithAlg, "kid", kid)))
			if err != nil {
				return nil, err
			}
			p, _ := s.Lookup(kid)
			return p.Key, nil
		}},
		{"registry via ParseRegistry", jwkWant, jwkWhy, g.jwk != nil, func() (crypto.PublicKey, error) {
			s, err := keys.ParseRegistry(jwkSet(setMember(setMember(jwkWithAlg, "kid", kid), "sub", "wycheproof")))
			if err != nil {
				return nil, err
			}
			e, _ := s.Lookup(kid)
			return e.Key, nil
		}},
		{"PEM SPKI via ParsePublicKey", pemWant, pemWhy, g.pem != "", func() (crypto.PublicKey, error) {
			return keys.ParsePublicKey([]byte(g.pem))
		}},
		{"PEM PKCS#1 via ParsePublicKey", g.keyOK, g.keyReason, g.pkcs1 != nil, func() (crypto.PublicKey, error) {
			return keys.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: g.pkcs1}))
		}},
		{"OpenSSH via ParsePublicKey", g.keyOK, g.keyReason, g.sshLine != nil, func() (crypto.PublicKey, error) {
			return keys.ParsePublicKey(g.sshLine)
		}},
		{"OpenSSH via ParseAuthorizedKeys", g.keyOK, g.keyReason, g.sshLine != nil, func() (crypto.PublicKey, error) {
			ks, err := keys.ParseAuthorizedKeys(g.sshLine)
			if err != nil {
				return nil, err
			}
			if len(ks) != 1 {
				return nil, fmt.Errorf("%d keys", len(ks))
			}
			return ks[0].Key, nil
		}},
		{"raw key via NewPublicSet", g.keyOK, g.keyReason, true, func() (crypto.PublicKey, error) {
			_, err := keys.NewPublicSet([]keys.PublicKey{{KeyID: kid, Algorithm: g.alg, Key: g.raw}})
			return g.raw, err
		}},
		{"raw key via NewSet", g.keyOK, g.keyReason, true, func() (crypto.PublicKey, error) {
			_, err := keys.NewSet([]*keys.Entry{{KeyID: kid, Algorithm: g.alg, Key: g.raw, Subject: "wycheproof"}})
			return g.raw, err
		}},
	}
	for _, f := range forms {
		if !f.present {
			continue
		}
		k, err := parse(f.parse)
		want := "accept"
		if !f.want {
			want = "refuse (" + f.why + ")"
		}
		switch {
		case err == nil && !f.want:
			g.tally.Disagree(g.cases, g.label(), "import: "+f.name, want, "loaded the key")
		case err != nil && f.want:
			g.tally.Disagree(g.cases, g.label(), "import: "+f.name, want, "refused: "+err.Error())
		case err == nil && !sameKey(k, g.raw):
			g.tally.Disagree(g.cases, g.label(), "import: "+f.name, "the group's key", fmt.Sprintf("another key (%T)", k))
		}
		if err == nil {
			g.imported = true
		}
	}
}

// parse calls f, turning a panic into an error: a parser that panics on its
// input is a disagreement to report, not a crash of the whole suite.
func parse(f func() (crypto.PublicKey, error)) (k crypto.PublicKey, err error) {
	defer func() {
		if r := recover(); r != nil {
			k, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// verify runs c through keys.Verify with g's algorithm, if some form loaded
// the key, and records the outcome under verdict v.
//
// An out-of-profile group can hold signatures that are valid under the
// algorithm's own parameters all the same: a SHA-224 group's "message hashed
// with SHA-256 instead" case is a valid RS256 signature, and the salt-0 PSS
// group's "s_len changed to 32" case a valid PS256 one. So in such a group an
// acceptance is checked, not counted as a disagreement outright: ours, the
// algorithm's exact parameters in crypto/rsa (which keys.Verify wraps), must
// accept the signature too. The out-of-profile groups thereby check that
// keys.Verify binds the parameters (hash, MGF hash, salt length, no salt
// auto-detection) and accepts nothing else; the in-profile groups check the
// verification itself against Wycheproof's results.
func (g *group) verify(c sigCase, v wycheproof.Verdict, ours func(sigCase) bool) {
	if !g.imported {
		g.tally.Record(c.Case, "import", v, false, "key refused at import")
		return
	}
	err := verifyNoPanic(g.raw, g.alg, c.Msg, c.Sig)
	got := "accepted"
	if err != nil {
		got = "refused: " + err.Error()
	}
	if err == nil && v.OutOfProfile && g.keyOK && ours != nil && ours(c) {
		v = wycheproof.Verdict{Accept: true, OutOfProfile: true,
			Reason: v.Reason + "; yet a valid " + string(g.alg) + " signature under its exact parameters, so accepted"}
	}
	g.tally.Record(c.Case, "keys.Verify "+string(g.alg), v, err == nil, got)
}

func verifyNoPanic(pub crypto.PublicKey, alg keys.Algorithm, msg, sig []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return keys.Verify(pub, alg, msg, sig)
}

// verdict is the verdict for c: out of profile if the group is (scheme, or
// key refused by the load-time rules), else by c's result.
func (g *group) verdict(c sigCase, scheme string) wycheproof.Verdict {
	if scheme != "" {
		return wycheproof.OutOfProfile(scheme)
	}
	if !g.keyOK {
		return wycheproof.OutOfProfile("key refused at import: " + g.keyReason)
	}
	v, ok := wycheproof.InProfile(c.Case, acceptableDecisions)
	if !ok {
		g.tally.Problem("tcId %d: %s", c.TcID, v.Reason)
	}
	return v
}

func cases(ts []sigCase) []wycheproof.Case {
	out := make([]wycheproof.Case, len(ts))
	for i, c := range ts {
		out[i] = c.Case
	}
	return out
}

func runECDSA(t *testing.T, name string, alg keys.Algorithm) *wycheproof.Tally {
	var f wycheproof.File[ecdsaGroup]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	curve, size, ecdhCurve, sshCurve := ecParams(alg)
	for _, eg := range f.TestGroups {
		x, y := new(big.Int).SetBytes(eg.PublicKey.Wx), new(big.Int).SetBytes(eg.PublicKey.Wy)
		g := &group{tally: tally, cases: cases(eg.Tests), alg: alg,
			raw: &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, jwk: eg.PublicKeyJwk, pem: eg.PublicKeyPem, der: eg.PublicKeyDer}
		g.keyOK, g.keyReason = true, ""
		if _, err := ecdhCurve.NewPublicKey(eg.PublicKey.Uncompressed); err != nil {
			g.keyOK, g.keyReason = false, "not a point of "+curve.Params().Name
		}
		if g.jwk == nil {
			g.jwk = mustJSON(map[string]string{"kty": "EC", "crv": curve.Params().Name,
				"x": b64(fixed(x, size)), "y": b64(fixed(y, size))})
		}
		g.jwkAlg = memberOf(g.jwk, "alg")
		g.sshLine = sshLine("ecdsa-sha2-"+sshCurve, []byte(sshCurve), eg.PublicKey.Uncompressed)
		if want := map[keys.Algorithm]string{keys.ES256: "SHA-256", keys.ES384: "SHA-384", keys.ES512: "SHA-512"}[alg]; eg.Sha != want {
			tally.Problem("group with hash %s in an %s file", eg.Sha, alg)
		}
		g.load()
		for _, c := range eg.Tests {
			g.verify(c, g.verdict(c, ""), nil)
		}
	}
	checkCount(t, tally, f.NumberOfTests)
	return tally
}

func ecParams(alg keys.Algorithm) (elliptic.Curve, int, ecdh.Curve, string) {
	switch alg {
	case keys.ES256:
		return elliptic.P256(), 32, ecdh.P256(), "nistp256"
	case keys.ES384:
		return elliptic.P384(), 48, ecdh.P384(), "nistp384"
	}
	return elliptic.P521(), 66, ecdh.P521(), "nistp521"
}

// hashes maps the Wycheproof hash names to crypto.Hash, for the self-checks.
var hashes = map[string]crypto.Hash{
	"SHA-1": crypto.SHA1, "SHA-224": crypto.SHA224, "SHA-256": crypto.SHA256,
	"SHA-384": crypto.SHA384, "SHA-512": crypto.SHA512,
	"SHA-512/224": crypto.SHA512_224, "SHA-512/256": crypto.SHA512_256,
	"SHA3-224": crypto.SHA3_224, "SHA3-256": crypto.SHA3_256, "SHA3-384": crypto.SHA3_384, "SHA3-512": crypto.SHA3_512,
}

var oidRSASSAPSS = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}

func runRSA(t *testing.T, name string, alg keys.Algorithm) *wycheproof.Tally {
	var f wycheproof.File[rsaGroup]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	for _, rg := range f.TestGroups {
		n := new(big.Int).SetBytes(rg.PublicKey.Modulus)
		e := new(big.Int).SetBytes(rg.PublicKey.PublicExponent)
		raw := &rsa.PublicKey{N: n, E: int(e.Int64())}
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			raw.E = -1 // never a valid exponent; the rules refuse it below
		}
		g := &group{tally: tally, cases: cases(rg.Tests), alg: alg, raw: raw, pem: rg.PublicKeyPem, der: rg.PublicKeyDer, pkcs1: rg.PublicKeyAsn}
		g.keyOK, g.keyReason = rsaRules(n, e)
		switch {
		case rg.PublicKeyJwk != nil:
			g.jwk = rg.PublicKeyJwk
		case rg.KeyJwk != nil:
			g.jwk = rg.KeyJwk
		default:
			g.jwk = mustJSON(map[string]string{"kty": "RSA", "n": b64(n.Bytes()), "e": b64(e.Bytes())})
		}
		g.jwkAlg = memberOf(g.jwk, "alg")
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(rg.PublicKeyDer, &spki); err != nil {
			tally.Problem("group tcIds %d...: unreadable publicKeyDer: %v", rg.Tests[0].TcID, err)
		}
		g.spkiPSS = spki.Algorithm.Algorithm.Equal(oidRSASSAPSS)
		g.sshLine = sshLine("ssh-rsa", mpint(e), mpint(n))

		// The group's scheme: in profile only if it is exactly alg's.
		var scheme string
		var selfCheck func(c sigCase) error
		var ours func(c sigCase) bool
		h, known := hashes[rg.Sha]
		if alg == keys.RS256 {
			ours = func(c sigCase) bool {
				return rsa.VerifyPKCS1v15(raw, crypto.SHA256, digest(crypto.SHA256, c.Msg), c.Sig) == nil
			}
			if rg.Sha != "SHA-256" {
				scheme = fmt.Sprintf("RSASSA-PKCS1-v1_5 with %s: RS256 is SHA-256 only", rg.Sha)
			}
			if known {
				selfCheck = func(c sigCase) error { return rsa.VerifyPKCS1v15(raw, h, digest(h, c.Msg), c.Sig) }
			}
		} else {
			ours = func(c sigCase) bool {
				return rsa.VerifyPSS(raw, crypto.SHA256, digest(crypto.SHA256, c.Msg), c.Sig,
					&rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 32}) == nil
			}
			if rg.Sha != "SHA-256" || rg.Mgf != "MGF1" || rg.MgfSha != "SHA-256" || rg.SLen != 32 {
				scheme = fmt.Sprintf("RSASSA-PSS with %s, %s %s, salt %d: PS256 is SHA-256, MGF1 SHA-256, salt 32 only",
					rg.Sha, rg.Mgf, rg.MgfSha, rg.SLen)
			}
			if known && rg.Mgf == "MGF1" && rg.MgfSha == rg.Sha {
				opts := &rsa.PSSOptions{Hash: h, SaltLength: rg.SLen} // 0 is "auto", which accepts the 0-byte salt too
				selfCheck = func(c sigCase) error { return rsa.VerifyPSS(raw, h, digest(h, c.Msg), c.Sig, opts) }
			}
		}
		g.load()
		for _, c := range rg.Tests {
			v := g.verdict(c, scheme)
			// A valid signature refused only because it is out of profile
			// must be valid under its own parameters, or the refusal would
			// prove nothing.
			if scheme != "" && c.Result == wycheproof.Valid && selfCheck != nil && raw.E > 0 {
				if err := selfCheck(c); err != nil {
					tally.Problem("self-check: tcId %d does not verify under its own parameters with crypto/rsa: %v", c.TcID, err)
				}
			}
			g.verify(c, v, ours)
		}
	}
	checkCount(t, tally, f.NumberOfTests)
	return tally
}

// rsaRules are the load-time rules for an RSA public key.
func rsaRules(n, e *big.Int) (bool, string) {
	switch bits := n.BitLen(); {
	case bits < keys.MinRSABits || bits > keys.MaxRSABits:
		return false, fmt.Sprintf("RSA modulus of %d bits", bits)
	case n.Bit(0) == 0:
		return false, "even RSA modulus"
	case e.Cmp(big.NewInt(keys.RSAExponent)) != 0:
		return false, "RSA exponent " + e.String()
	}
	return true, ""
}

func digest(h crypto.Hash, msg []byte) []byte {
	w := h.New()
	w.Write(msg)
	return w.Sum(nil)
}

func runEdDSA(t *testing.T, name string) *wycheproof.Tally {
	var f wycheproof.File[eddsaGroup]
	wycheproof.Load(t, name, &f)
	tally := wycheproof.NewTally(name)
	for _, eg := range f.TestGroups {
		pk := []byte(eg.PublicKey.Pk)
		g := &group{tally: tally, cases: cases(eg.Tests), alg: keys.EdDSA,
			raw: ed25519.PublicKey(pk), jwk: eg.PublicKeyJwk, pem: eg.PublicKeyPem, der: eg.PublicKeyDer}
		g.keyReason = ed25519Rules(pk)
		g.keyOK = g.keyReason == ""
		if g.jwk == nil {
			g.jwk = mustJSON(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pk)})
		}
		g.jwkAlg = memberOf(g.jwk, "alg")
		g.sshLine = sshLine("ssh-ed25519", pk)
		g.load()
		for _, c := range eg.Tests {
			g.verify(c, g.verdict(c, ""), nil)
		}
	}
	checkCount(t, tally, f.NumberOfTests)
	return tally
}

func checkCount(t *testing.T, tally *wycheproof.Tally, n int) {
	if tally.Cases != n {
		tally.Problem("ran %d cases, the file says numberOfTests %d", tally.Cases, n)
	}
}

// The Ed25519 load-time rule, computed with math/big from RFC 8032 section
// 5.1.3, independently of crypto/ed25519 and package keys.
var (
	edP      = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	edD      = new(big.Int).Mod(new(big.Int).Mul(big.NewInt(-121665), new(big.Int).ModInverse(big.NewInt(121666), edP)), edP)
	edSqrtM1 = new(big.Int).Exp(big.NewInt(2), new(big.Int).Rsh(new(big.Int).Sub(edP, big.NewInt(1)), 2), edP)
)

// ed25519Rules returns why the load-time rules refuse the Ed25519 public key
// pk, or "" if they accept it.
func ed25519Rules(pk []byte) string {
	if len(pk) != ed25519.PublicKeySize {
		return fmt.Sprintf("Ed25519 key of %d bytes", len(pk))
	}
	le := bytes.Clone(pk)
	sign := uint(le[31] >> 7)
	le[31] &= 0x7f
	for i, j := 0, len(le)-1; i < j; i, j = i+1, j-1 {
		le[i], le[j] = le[j], le[i]
	}
	y := new(big.Int).SetBytes(le)
	if y.Cmp(edP) >= 0 {
		return "non-canonical Ed25519 encoding (y >= p)"
	}
	// x^2 = (y^2 - 1) / (d y^2 + 1)
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Mod(new(big.Int).Sub(y2, big.NewInt(1)), edP)
	v := new(big.Int).Mod(new(big.Int).Add(new(big.Int).Mul(edD, y2), big.NewInt(1)), edP)
	x2 := new(big.Int).Mod(new(big.Int).Mul(u, new(big.Int).ModInverse(v, edP)), edP)
	x := new(big.Int).Exp(x2, new(big.Int).Rsh(new(big.Int).Add(edP, big.NewInt(3)), 3), edP)
	if new(big.Int).Mod(new(big.Int).Mul(x, x), edP).Cmp(x2) != 0 {
		x.Mod(x.Mul(x, edSqrtM1), edP)
		if new(big.Int).Mod(new(big.Int).Mul(x, x), edP).Cmp(x2) != 0 {
			return "not an Ed25519 point"
		}
	}
	if x.Sign() == 0 && sign == 1 {
		return "non-canonical Ed25519 encoding (x = 0 with the sign bit set)"
	}
	if x.Bit(0) != sign {
		x.Sub(edP, x)
	}
	// Small order: [8]P is the identity (0, 1).
	px, py := x, y
	for range 3 {
		px, py = edAdd(px, py, px, py)
	}
	if px.Sign() == 0 && py.Cmp(big.NewInt(1)) == 0 {
		return "Ed25519 point of small order"
	}
	return ""
}

// edAdd adds two points of edwards25519 (a = -1) in affine coordinates; the
// formula is complete because d is not a square.
func edAdd(x1, y1, x2, y2 *big.Int) (*big.Int, *big.Int) {
	m := func(a, b *big.Int) *big.Int { return new(big.Int).Mod(new(big.Int).Mul(a, b), edP) }
	t := m(edD, m(m(x1, x2), m(y1, y2)))
	one := big.NewInt(1)
	x3 := m(new(big.Int).Add(m(x1, y2), m(y1, x2)), new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Add(one, t), edP), edP))
	y3 := m(new(big.Int).Add(m(y1, y2), m(x1, x2)), new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Sub(one, t), edP), edP))
	return x3, y3
}

// TestEd25519RulesOracle checks the test's own Ed25519 rule on known points,
// so that a wrong oracle cannot pass for a keys bug or hide one.
func TestEd25519RulesOracle(t *testing.T) {
	h := func(s string) []byte {
		b, err := hexDecode(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	for _, c := range []struct {
		pk   []byte
		want string
	}{
		{pub, ""},
		{h("0100000000000000000000000000000000000000000000000000000000000000"), "Ed25519 point of small order"}, // identity
		{h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), "Ed25519 point of small order"}, // order 2
		{h("0000000000000000000000000000000000000000000000000000000000000000"), "Ed25519 point of small order"}, // order 4
		{h("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "Ed25519 point of small order"}, // order 8
		{h("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"), "Ed25519 point of small order"}, // order 8
		{h("0100000000000000000000000000000000000000000000000000000000000080"), "non-canonical Ed25519 encoding (x = 0 with the sign bit set)"},
		{h("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), "non-canonical Ed25519 encoding (y >= p)"},
		{h("0200000000000000000000000000000000000000000000000000000000000000"), "not an Ed25519 point"},
	} {
		if got := ed25519Rules(c.pk); got != c.want {
			t.Errorf("%x: got %q, want %q", c.pk, got, c.want)
		}
	}
}

// TestEd25519EdgeKeysAtImport runs the Ed25519 public keys that the load-time
// rules refuse (every small-order point, non-canonical encodings, a y that is
// not on the curve) through every key form, as the Wycheproof groups' keys
// are. ed25519_test.json has no such key, so without this the rule would go
// untested. The table counts no cases: only the forms' decisions.
func TestEd25519EdgeKeysAtImport(t *testing.T) {
	tally := wycheproof.NewTally("(not Wycheproof) Ed25519 edge keys")
	for _, s := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity, order 1
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"0000000000000000000000000000000000000000000000000000000000000080", // order 4
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", // order 8
		"0100000000000000000000000000000000000000000000000000000000000080", // identity, x = 0 with the sign bit
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1
		"0200000000000000000000000000000000000000000000000000000000000000", // y = 2, not on the curve
	} {
		pk, err := hexDecode(s)
		if err != nil {
			t.Fatal(err)
		}
		reason := ed25519Rules(pk)
		if reason == "" {
			t.Fatalf("%s: the rules accept it", s)
		}
		der := append([]byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}, pk...)
		g := &group{tally: tally, name: "key " + s, alg: keys.EdDSA,
			raw: ed25519.PublicKey(pk), keyReason: reason,
			jwk:     mustJSON(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pk)}),
			pem:     string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
			sshLine: sshLine("ssh-ed25519", pk)}
		g.load()
	}
	wycheproof.Report(t, []*wycheproof.Tally{tally})
}

func hexDecode(s string) ([]byte, error) {
	var h wycheproof.Hex
	err := h.UnmarshalJSON([]byte(`"` + s + `"`))
	return h, err
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// fixed returns x big-endian in exactly n bytes (x < 2^(8n) here).
func fixed(x *big.Int, n int) []byte {
	b := x.Bytes()
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// memberOf returns the string member name of the JSON object obj, or "".
func memberOf(obj []byte, name string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[name], &s) != nil {
		return ""
	}
	return s
}

// setMember returns the JSON object obj with member name set to value.
func setMember(obj []byte, name, value string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		panic(err)
	}
	m[name] = mustJSON(value)
	return mustJSON(m)
}

func jwkSet(jwk []byte) []byte { return []byte(`{"keys":[` + string(jwk) + `]}`) }

// sshLine builds an OpenSSH public key line (RFC 4253 section 6.6) of type
// typ whose blob holds typ and then fields, each as an SSH string.
func sshLine(typ string, fields ...[]byte) []byte {
	blob := sshString(nil, []byte(typ))
	for _, f := range fields {
		blob = sshString(blob, f)
	}
	return []byte(typ + " " + base64.StdEncoding.EncodeToString(blob) + " wycheproof")
}

func sshString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// mpint is the SSH encoding of a non-negative integer's bytes (RFC 4251
// section 5), without the length.
func mpint(x *big.Int) []byte {
	b := x.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}
