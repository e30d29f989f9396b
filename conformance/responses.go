package conformance

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Most negative cases of the server suite are one message: a response to
// the server's challenge that breaks one rule of spec section "Server:
// verifying a response". ResponseCases is their table. Each case's Build
// makes its message from a ResponseInput: the suite fills it from the
// challenge a live server sent, and the generator of testdata/vectors.json
// from the vectors' fixed keys and randomness, so that a server-role vector
// and the case of the same id are one definition.

// Fixtures are client keys that some server cases need besides
// ServerTarget.Key, each registered at the server as its field says. A case
// whose fixture is missing is skipped, and its result says which it needs.
type Fixtures struct {
	Denied      *Key // registered, in none of the groups the server requires
	Revoked     *Key // registered, and revoked
	NotYetValid *Key // registered, with a validity that starts later
	Expired     *Key // registered, with a validity that has ended
	CBRequired  *Key // registered in the required groups, with channel binding required
	// Expiring is registered in the required groups, with a validity that
	// ends during the run: valid when the run starts, and ending within
	// FinalWait of it. The final-token cases (spec section "Session
	// lifecycle", S8) follow its session to that end.
	Expiring *Key
	// Registered are further registered keys, in any groups: the cases of
	// algorithm confusion need a registered key of a given algorithm,
	// which ServerTarget.Key or a fixture above may also be.
	Registered []Key
	// Unregistered is a key that no registry holds; nil: the suite makes
	// one of Key's algorithm.
	Unregistered *Key
}

// ResponseInput is what a response case is made from: the challenge it
// answers, and the client keys.
type ResponseInput struct {
	Challenge string                   // the challenge, exactly as the server sent it
	Claims    protocol.ChallengeClaims // its claims
	Exporter  []byte                   // the client's tls-exporter value; nil without TLS 1.3
	Key       Key                      // the client key the server accepts
	Fixtures  Fixtures                 // with Unregistered set
	Token     string                   // a session token the server issued, for a case with NeedsToken
	// Rand is the source of signatures' randomness and of the values a
	// case makes up (another nonce, a short sid).
	Rand io.Reader
}

// ResponseCase is a case of the server suite that is one message in answer
// to a challenge: the server must refuse it with Code, or accept it when
// Code is empty.
type ResponseCase struct {
	Case
	// Binding, when set, is the channel binding the challenge must demand
	// for the case to apply: protocol.BindingNone or
	// protocol.BindingTLSExporter (which also needs TLS 1.3).
	Binding string
	// AtExpiry: the response arrives when the challenge expires (step 11).
	// A vector's clock is the challenge's exp; the suite sends the message
	// just after it.
	AtExpiry bool
	// Refresh: the message answers the re-challenge of a session that Key
	// authenticated (spec section "Refresh").
	Refresh bool
	// NeedsToken: Build uses ResponseInput.Token.
	NeedsToken bool
	// Vector: the case is also a server-role vector of
	// testdata/vectors.json (spec section "Test vectors"), with the same
	// id, rule, code and comment (the title).
	Vector bool
	// Build makes the message. An error means that the case does not apply
	// to in (a fixture is missing, the key's algorithm has no such
	// signature): its text says why.
	Build func(in *ResponseInput) (string, error)

	// accepted, on a valid case, judges the accept beyond its form.
	accepted func(a *acceptMsg) error
}

// notApplicable is the error of a Build that cannot make its message from
// its input: the reason, which a suite reports as the skip's.
type notApplicable string

func (n notApplicable) Error() string { return string(n) }

func skipf(format string, args ...any) error { return notApplicable(fmt.Sprintf(format, args...)) }

// need returns the fixture k, or the reason its case cannot run: what it
// needs, and where a target gives it.
func need(k *Key, name, what string) (*Key, error) {
	if k == nil {
		field := "Registered"
		for _, fs := range fixtureSlots {
			if fs.name == name {
				field = fs.field
			}
		}
		return nil, skipf("needs %s (ServerTarget.Fixtures.%s; probe: --fixture %s=FILE)", what, field, name)
	}
	return k, nil
}

// fixtureSlots are the fixtures that hold one key: their names, as Add
// takes them, and their fields.
var fixtureSlots = []struct {
	name, field string
	slot        func(f *Fixtures) **Key
}{
	{"denied", "Denied", func(f *Fixtures) **Key { return &f.Denied }},
	{"revoked", "Revoked", func(f *Fixtures) **Key { return &f.Revoked }},
	{"not-yet-valid", "NotYetValid", func(f *Fixtures) **Key { return &f.NotYetValid }},
	{"expired", "Expired", func(f *Fixtures) **Key { return &f.Expired }},
	{"cb-required", "CBRequired", func(f *Fixtures) **Key { return &f.CBRequired }},
	{"expiring", "Expiring", func(f *Fixtures) **Key { return &f.Expiring }},
	{"unregistered", "Unregistered", func(f *Fixtures) **Key { return &f.Unregistered }},
}

// Add sets the fixture that name names, as the probe's flag --fixture
// NAME=FILE does: "denied", "revoked", "not-yet-valid", "expired",
// "cb-required", "expiring" or "unregistered" set that field; "registered" appends to
// Registered.
func (f *Fixtures) Add(name string, k Key) error {
	if name == "registered" {
		f.Registered = append(f.Registered, k)
		return nil
	}
	names := []string{"registered"}
	for _, fs := range fixtureSlots {
		if fs.name == name {
			*fs.slot(f) = &k
			return nil
		}
		names = append(names, fs.name)
	}
	slices.Sort(names)
	return fmt.Errorf("conformance: no fixture %q; the fixtures are %s", name, strings.Join(names, ", "))
}

// registered are Key and every registered fixture, in a fixed order: the
// candidates of the cases that need some registered key.
func (in *ResponseInput) registered() []*Key {
	out := []*Key{&in.Key}
	for i := range in.Fixtures.Registered {
		out = append(out, &in.Fixtures.Registered[i])
	}
	f := in.Fixtures
	for _, k := range []*Key{f.Denied, f.CBRequired, f.Revoked, f.NotYetValid, f.Expired} {
		if k != nil {
			out = append(out, k)
		}
	}
	return out
}

// keyFor is a registered key of algorithm alg, or the reason there is none.
func (in *ResponseInput) keyFor(alg keys.Algorithm) (*Key, error) {
	for _, k := range in.registered() {
		if k.Alg == alg {
			return k, nil
		}
	}
	return nil, skipf("needs a registered %s key (ServerTarget.Key, or one of ServerTarget.Fixtures; probe: --key, or --fixture registered=FILE)", alg)
}

// other is a registered key other than Key, of Key's algorithm when there
// is one.
func (in *ResponseInput) other() (*Key, error) {
	var fallback *Key
	for _, k := range in.registered()[1:] {
		if k.ID == in.Key.ID {
			continue
		}
		if k.Alg == in.Key.Alg {
			return k, nil
		}
		if fallback == nil {
			fallback = k
		}
	}
	if fallback == nil {
		return nil, skipf("needs a second registered key (one of ServerTarget.Fixtures; probe: --fixture registered=FILE)")
	}
	return fallback, nil
}

// randB64 is n octets of in.Rand in base64url.
func (in *ResponseInput) randB64(n int) string {
	b := make([]byte, n)
	io.ReadFull(in.Rand, b)
	return b64u.Encode(b)
}

// claims are the claims of a correct response: with cb when the challenge
// demands tls-exporter binding and the client has an exporter value.
func (in *ResponseInput) claims() jobj {
	c := in.Claims
	o := jobj{{"aud", jstr(c.Iss)}, {"sid", jstr(c.Sid)}, {"nonce", jstr(c.Nonce)}, {"cha", jstr(sha256b64(in.Challenge))}}
	if c.CB == protocol.BindingTLSExporter && in.Exporter != nil {
		o = o.set("cb", jstr(b64u.Encode(in.Exporter)))
	}
	return o
}

// hdr is the correct response header of k.
func hdr(k *Key) jobj { return header(string(k.Alg), k.ID, protocol.TypResponse) }

// sign is header and payload signed by k.
func (in *ResponseInput) sign(k *Key, header, payload string) (string, error) {
	return k.sign(in.Rand, header, payload)
}

// signed is a response by k with the correct header and the given claims.
func (in *ResponseInput) signed(k *Key, claims jobj) (string, error) {
	return in.sign(k, hdr(k).String(), claims.String())
}

// good is a correct response by Key.
func (in *ResponseInput) good() (string, error) { return in.signed(&in.Key, in.claims()) }

// under is the signing input of a correct response by k under header alg.
func (in *ResponseInput) under(alg string, k *Key) string {
	return signingInput(header(alg, k.ID, protocol.TypResponse).String(), in.claims().String())
}

// withSig is a correct response by Key whose signature segment is sig(signing
// input), encoded by enc (base64url, unless the case breaks that).
func (in *ResponseInput) withSig(sig func(si string) ([]byte, error), enc func([]byte) string) (string, error) {
	si := signingInput(hdr(&in.Key).String(), in.claims().String())
	s, err := sig(si)
	if err != nil {
		return "", err
	}
	return si + "." + enc(s), nil
}

// sigEdit is a correct response by Key whose signature edit changes.
func (in *ResponseInput) sigEdit(edit func([]byte) []byte) (string, error) {
	return in.withSig(func(si string) ([]byte, error) {
		s, err := in.Key.sigOver(in.Rand, si)
		if err != nil {
			return nil, err
		}
		return edit(s), nil
	}, b64u.Encode)
}

// padded is a correct response by Key padded with an ignored claim to size
// octets, or one less when base64url lengths skip size.
func (in *ResponseInput) padded(size int) (string, error) {
	probe, err := in.good()
	if err != nil {
		return "", err
	}
	_, _, sig, _ := splitJWS(probe)
	h := b64u.Encode([]byte(hdr(&in.Key).String()))
	base := in.claims().set("pad", `""`).String()
	room := size - len(h) - len(sig) - 2 // for the payload segment
	n := max(room*3/4-len(base), 0)
	for n > 0 && len(b64u.Encode(make([]byte, len(base)+n))) > room {
		n--
	}
	return in.signed(&in.Key, in.claims().set("pad", jstr(strings.Repeat("w", n))))
}

// Groups of the table.
const (
	gControl   = "Handshake (controls)"
	gStructure = "Response: structure (steps 1-3)"
	gType      = "Response: type (step 4)"
	gAlg       = "Response: algorithms (steps 5, 14)"
	gClaims    = "Response: claims (step 6)"
	gBinding   = "Response: transcript and freshness (steps 7-11)"
	gKeys      = "Response: key and signature (steps 12-17)"
	gCB        = "Response: channel binding (step 18)"
	gAuthz     = "Authorization (step 19)"
	gRefresh   = "Refresh"
	gReplay    = "Replay"
)

// ResponseCases is the table of the server suite's message cases, in the
// order they run (ServerCases lists them among the others).
func ResponseCases() []ResponseCase {
	var cs []ResponseCase
	// add appends a case refused with code ("" for an accept) at the given
	// step of the response procedure.
	add := func(group, id string, stepN int, code protocol.Code, vector bool, title string, build func(in *ResponseInput) (string, error)) *ResponseCase {
		section := secResponse
		if stepN > 0 {
			section = step(secResponse, stepN)
		}
		cs = append(cs, ResponseCase{Case: Case{ID: id, Group: group, Section: section, Title: title, Code: code}, Vector: vector, Build: build})
		return &cs[len(cs)-1]
	}
	// withHeader is a response by Key under the header h makes.
	withHeader := func(h func(in *ResponseInput) string) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) { return in.sign(&in.Key, h(in), in.claims().String()) }
	}
	// withClaims is a response by Key whose claims edit changes.
	withClaims := func(edit func(o jobj, in *ResponseInput) string) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) {
			return in.sign(&in.Key, hdr(&in.Key).String(), edit(in.claims(), in))
		}
	}
	typ := protocol.TypResponse

	c := add(gControl, "response-valid-extra-claims-ignored", 19, "", true,
		"A valid response that also claims groups, a subject and an unknown member: all three are ignored; the subject and groups come from the registry only.",
		withClaims(func(o jobj, _ *ResponseInput) string {
			return o.set("groups", `["`+claimedGroup+`"]`).set("sub", jstr(claimedGroup)).set("x-future", "1").String()
		}))
	c.Expected = expAccept + " with the registry's sub and groups"
	c.accepted = func(a *acceptMsg) error {
		if a.Sub == claimedGroup || slices.Contains(a.Groups, claimedGroup) {
			return errors.New("the accept echoes the subject or groups the response claimed")
		}
		return nil
	}
	c = add(gControl, "response-at-size-limit", 0, "", false,
		"A valid response padded with an ignored claim to the 4096-octet limit (or 4095 when base64url cannot make 4096).",
		func(in *ResponseInput) (string, error) { return in.padded(protocol.MaxHandshakeMessage) })
	c.Section = secLimits

	// Steps 1 to 3: size, structure and header.
	add(gStructure, "response-oversized", 1, protocol.CodeTooLarge, true, "A correctly signed response of more than 4096 bytes.",
		func(in *ResponseInput) (string, error) { return in.padded(protocol.MaxHandshakeMessage + 200) })
	add(gStructure, "response-empty", 2, protocol.CodeMalformed, false, "An empty text message.",
		func(*ResponseInput) (string, error) { return "", nil })
	add(gStructure, "response-two-segments", 2, protocol.CodeMalformed, false, "A correct response without its signature segment.",
		func(in *ResponseInput) (string, error) {
			g, err := in.good()
			h, pl, _, _ := splitJWS(g)
			return h + "." + pl, err
		})
	add(gStructure, "response-four-segments", 2, protocol.CodeMalformed, false, "A correct response with a fourth segment.",
		func(in *ResponseInput) (string, error) {
			g, err := in.good()
			_, _, s, _ := splitJWS(g)
			return g + "." + s, err
		})
	add(gStructure, "response-json-serialization-flattened", 2, protocol.CodeMalformed, true,
		"A correct response in flattened JWS JSON serialization: compact only.",
		func(in *ResponseInput) (string, error) {
			g, err := in.good()
			h, pl, s, _ := splitJWS(g)
			return jobj{{"protected", jstr(h)}, {"payload", jstr(pl)}, {"signature", jstr(s)}}.String(), err
		})
	add(gStructure, "response-json-serialization-general", 2, protocol.CodeMalformed, true,
		"A correct response in general JWS JSON serialization.",
		func(in *ResponseInput) (string, error) {
			g, err := in.good()
			h, pl, s, _ := splitJWS(g)
			sigs := "[" + jobj{{"protected", jstr(h)}, {"signature", jstr(s)}}.String() + "]"
			return jobj{{"payload", jstr(pl)}, {"signatures", sigs}}.String(), err
		})
	add(gStructure, "response-padded-signature", 2, protocol.CodeMalformed, true, "The signature segment carries '=' padding.",
		func(in *ResponseInput) (string, error) {
			return in.withSig(func(si string) ([]byte, error) { return in.Key.sigOver(in.Rand, si) }, func(sig []byte) string {
				s := base64.URLEncoding.EncodeToString(sig)
				if !strings.HasSuffix(s, "=") {
					s += "=="
				}
				return s
			})
		})
	add(gStructure, "response-noncanonical-signature", 2, protocol.CodeMalformed, true,
		"The signature's last base64url character has non-zero unused bits.",
		func(in *ResponseInput) (string, error) {
			var none bool
			msg, err := in.withSig(func(si string) ([]byte, error) { return in.Key.sigOver(in.Rand, si) }, func(sig []byte) string {
				s := nonCanonicalLast(b64u.Encode(sig))
				none = s == ""
				return s
			})
			if err == nil && none {
				err = skipf("a %s signature has no unused bits in base64url", in.Key.Alg)
			}
			return msg, err
		})
	add(gStructure, "response-noncanonical-payload", 2, protocol.CodeMalformed, true,
		"The payload segment has non-zero unused bits; the signature covers that exact text.",
		func(in *ResponseInput) (string, error) {
			pl := in.claims().String()
			for len(pl)%3 == 0 {
				pl += " "
			}
			si := b64u.Encode([]byte(hdr(&in.Key).String())) + "." + nonCanonicalLast(b64u.Encode([]byte(pl)))
			sig, err := in.Key.sigOver(in.Rand, si)
			return si + "." + b64u.Encode(sig), err
		})
	add(gStructure, "response-line-break", 2, protocol.CodeMalformed, false, "A line break inside the header segment (base64 decoders often skip it).",
		func(in *ResponseInput) (string, error) {
			g, err := in.good()
			return g[:4] + "\n" + g[4:], err
		})
	add(gStructure, "response-header-not-object", 2, protocol.CodeMalformed, false, "The header is a JSON array.",
		withHeader(func(in *ResponseInput) string { return `["` + string(in.Key.Alg) + `"]` }))
	add(gStructure, "response-header-bom", 2, protocol.CodeMalformed, false, "The header starts with a UTF-8 byte order mark.",
		withHeader(func(in *ResponseInput) string { return "\ufeff" + hdr(&in.Key).String() }))
	add(gStructure, "response-header-invalid-utf8", 2, protocol.CodeMalformed, false, "The header's kid holds a byte that is not UTF-8.",
		withHeader(func(in *ResponseInput) string {
			return `{"alg":` + jstr(string(in.Key.Alg)) + `,"kid":"` + in.Key.ID + "\xff" + `","typ":` + jstr(typ) + `}`
		}))
	add(gStructure, "response-duplicate-header-member", 2, protocol.CodeMalformed, true, "The header names alg twice.",
		withHeader(func(in *ResponseInput) string {
			return append(jobj{{"alg", jstr(string(in.Key.Alg))}}, hdr(&in.Key)...).String()
		}))
	add(gStructure, "response-case-variant-header-member", 2, protocol.CodeMalformed, false,
		`The header has both "alg" and "ALG": a JSON rule, before the header allow-list.`,
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).add("ALG", jstr(string(in.Key.Alg))).String() }))
	for _, m := range []struct {
		id, name, value, why string
		vector               bool
	}{
		{"jwk", "jwk", "", "An embedded jwk header naming the signing key: keys come from the registry only.", true},
		{"jku", "jku", jstr("https://wsproof-probe.invalid/jwks.json"), "A jku header pointing at an attacker's key set.", true},
		{"x5u", "x5u", jstr("https://wsproof-probe.invalid/cert.pem"), "An x5u header.", true},
		{"x5c", "x5c", `["MIIBszCCAVmgAwIBAgIUEXAMPLE"]`, "An x5c header.", true},
		{"x5t-s256", "x5t#S256", "", "An x5t#S256 header.", false},
		{"crit", "crit", `["exp"]`, "A crit header, even naming a registered member.", true},
		{"zip", "zip", jstr("DEF"), "A zip header.", true},
		{"b64-false", "b64", "false", "An RFC 7797 b64 header.", true},
		{"cty", "cty", jstr("JWT"), "A cty header in a JWS.", false},
		{"nonce", "nonce", "", "The challenge's nonce as a header member.", false},
		{"epk", "epk", "", "An epk header.", false},
	} {
		add(gStructure, "response-header-"+m.id, 3, protocol.CodeHeaderNotAllowed, m.vector, m.why,
			func(in *ResponseInput) (string, error) {
				v := m.value
				switch m.name {
				case "jwk":
					j, err := keys.MarshalJWK(in.Key.Signer.Public(), in.Key.ID, in.Key.Alg)
					if err != nil {
						return "", err
					}
					v = string(bytes.TrimSpace(j))
				case "nonce":
					v = jstr(in.Claims.Nonce)
				case "x5t#S256":
					v = jstr(in.randB64(32))
				case "epk":
					v = `{"kty":"OKP","crv":"X25519","x":"` + in.randB64(32) + `"}`
				}
				return in.sign(&in.Key, header(string(in.Key.Alg), in.Key.ID, typ, member{m.name, v}).String(), in.claims().String())
			})
	}
	add(gStructure, "response-missing-typ", 3, protocol.CodeMalformed, true, "No typ header.",
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).del("typ").String() }))
	add(gStructure, "response-missing-kid", 3, protocol.CodeMalformed, false, "No kid header.",
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).del("kid").String() }))
	add(gStructure, "response-missing-alg", 3, protocol.CodeMalformed, false, "No alg header.",
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).del("alg").String() }))
	add(gStructure, "response-kid-not-string", 3, protocol.CodeMalformed, false, "kid is a number.",
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).set("kid", "1").String() }))
	add(gStructure, "response-alg-not-string", 3, protocol.CodeMalformed, false, "alg is an array.",
		withHeader(func(in *ResponseInput) string { return hdr(&in.Key).set("alg", `["`+string(in.Key.Alg)+`"]`).String() }))

	// Step 4: explicit typing.
	for _, t := range []struct {
		id, typ, why string
		vector       bool
	}{
		{"response-wrong-typ", "JWT", `"typ":"JWT" instead of wsproof-response+jwt.`, true},
		{"response-typ-case-variant", "Wsproof-Response+JWT", "typ values are compared byte for byte.", true},
		{"response-typ-media-type", "application/wsproof-response+jwt", "The application/ prefix RFC 7515 would tolerate is not accepted.", false},
		{"response-typ-session", protocol.TypSession, "A response typed as a session token (cross-JWT confusion).", false},
		{"response-typ-challenge", protocol.TypChallenge, "A response typed as a challenge.", false},
	} {
		add(gType, t.id, 4, protocol.CodeWrongType, t.vector, t.why,
			withHeader(func(in *ResponseInput) string { return header(string(in.Key.Alg), in.Key.ID, t.typ).String() }))
	}
	add(gType, "response-challenge-reflected", 4, protocol.CodeWrongType, true, "The server's own challenge sent back as the response.",
		func(in *ResponseInput) (string, error) { return in.Challenge, nil })

	// Steps 5 and 14: algorithms.
	unsigned := func(alg string) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) { return in.under(alg, &in.Key) + ".", nil }
	}
	// misnamed is a signature by Key under header alg.
	misnamed := func(alg string) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) {
			si := in.under(alg, &in.Key)
			sig, err := in.Key.sigOver(in.Rand, si)
			return si + "." + b64u.Encode(sig), err
		}
	}
	add(gAlg, "response-alg-none", 5, protocol.CodeAlgNotAllowed, true, `"alg":"none" with an empty signature.`, unsigned("none"))
	add(gAlg, "response-alg-none-capitalized", 5, protocol.CodeAlgNotAllowed, true, `"alg":"None": algorithm names are case-sensitive.`, unsigned("None"))
	add(gAlg, "response-alg-none-upper", 5, protocol.CodeAlgNotAllowed, true, `"alg":"NONE".`, unsigned("NONE"))
	add(gAlg, "response-alg-es256-lower", 5, protocol.CodeAlgNotAllowed, true,
		`"alg":"es256" is not ES256.`, misnamed("es256")) // over Key's own signature: the name is refused before the key is looked up
	add(gAlg, "response-alg-rs512", 5, protocol.CodeAlgNotAllowed, true,
		"RS512 is a JOSE algorithm but not a wsproof one.",
		func(in *ResponseInput) (string, error) {
			// A correct RS512 signature by a registered RSA key, which a
			// JOSE library that allows RS512 would accept; without one, the
			// accepted key's own signature.
			k, err := in.keyFor(keys.RS256)
			if err != nil {
				k, err = in.keyFor(keys.PS256)
			}
			if err != nil {
				return misnamed("RS512")(in)
			}
			si := in.under("RS512", k)
			sig, err := k.rs512(in.Rand, si)
			return si + "." + b64u.Encode(sig), err
		})
	add(gAlg, "response-hs256-public-key", 5, protocol.CodeAlgNotAllowed, true,
		"HS256 keyed with the PEM of the client's registered public key (the RFC 8725 section 2.1 key confusion).",
		func(in *ResponseInput) (string, error) {
			si := in.under("HS256", &in.Key)
			mac, err := hs256(in.Key.Signer.Public(), si)
			return si + "." + b64u.Encode(mac), err
		})
	add(gAlg, "response-alg-not-offered", 5, protocol.CodeAlgNotAllowed, false,
		"An algorithm of the closed list that the challenge's algs does not offer.",
		func(in *ResponseInput) (string, error) {
			for _, a := range keys.Algorithms {
				if slices.Contains(in.Claims.Algs, string(a)) {
					continue
				}
				si := in.under(string(a), &in.Key)
				sig, err := in.Key.signAs(in.Rand, a, si)
				if err != nil {
					sig, err = in.Key.sigOver(in.Rand, si)
				}
				return si + "." + b64u.Encode(sig), err
			}
			return "", skipf("the server offers all six algorithms")
		})
	add(gAlg, "response-empty-kid", 5, protocol.CodeMalformed, false, "An empty kid, checked after alg.",
		withHeader(func(in *ResponseInput) string { return header(string(in.Key.Alg), "", typ).String() }))
	// sibling is a correct signature under alg by a registered key of
	// algorithm of, which its key type can also make (spec: one key, one
	// algorithm). The server refuses an algorithm it does not offer at
	// step 5, before the key: the case then does not apply.
	sibling := func(alg, of keys.Algorithm) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) {
			k, err := in.keyFor(of)
			if err != nil {
				return "", err
			}
			if !slices.Contains(in.Claims.Algs, string(alg)) {
				return "", skipf("the server does not offer %s: it refuses the algorithm at step 5, before the key's", alg)
			}
			si := in.under(string(alg), k)
			sig, err := k.signAs(in.Rand, alg, si)
			return si + "." + b64u.Encode(sig), err
		}
	}
	add(gAlg, "response-rs256-under-ps256-key", 14, protocol.CodeAlgMismatch, true,
		"A correct RS256 signature by a key registered for PS256: one key, one algorithm.", sibling(keys.RS256, keys.PS256))
	add(gAlg, "response-ps256-under-rs256-key", 14, protocol.CodeAlgMismatch, true,
		"A correct PS256 signature by a key registered for RS256.", sibling(keys.PS256, keys.RS256))
	add(gAlg, "response-es384-under-p256-key", 14, protocol.CodeAlgMismatch, true,
		"ES384 claimed for a P-256 key registered for ES256 (curve and algorithm disagree).", sibling(keys.ES384, keys.ES256))

	// Step 6: claims.
	otherNonce := func(in *ResponseInput) string { return jstr(in.randB64(protocol.NonceSize)) }
	for _, c := range []struct {
		id, why string
		vector  bool
		edit    func(o jobj, in *ResponseInput) string
	}{
		{"response-duplicate-claim", "The payload names nonce twice, with different values.", true,
			func(o jobj, in *ResponseInput) string { return o.add("nonce", otherNonce(in)).String() }},
		{"response-case-variant-claim", `The payload has both "nonce" and "Nonce".`, true,
			func(o jobj, in *ResponseInput) string { return o.add("Nonce", otherNonce(in)).String() }},
		{"response-trailing-data", "The payload has bytes after the JSON object.", true,
			func(o jobj, _ *ResponseInput) string { return o.String() + " []" }},
		{"response-payload-array", "The payload is a JSON array.", false, func(jobj, *ResponseInput) string { return "[]" }},
		{"response-missing-cha", "No cha claim.", true, func(o jobj, _ *ResponseInput) string { return o.del("cha").String() }},
		{"response-missing-aud", "No aud claim.", false, func(o jobj, _ *ResponseInput) string { return o.del("aud").String() }},
		{"response-aud-too-long", "aud is the server identity padded to 257 octets; aud is 1 to 256 octets, like the identity, and is refused before it is compared.", true,
			func(o jobj, in *ResponseInput) string {
				return o.set("aud", jstr(in.Claims.Iss+strings.Repeat("/", protocol.MaxIdentity+1-len(in.Claims.Iss)))).String()
			}},
		{"response-aud-empty", "aud is the empty string; aud is 1 to 256 octets.", true,
			func(o jobj, _ *ResponseInput) string { return o.set("aud", `""`).String() }},
		{"response-nonce-not-string", "nonce is a number.", true, func(o jobj, _ *ResponseInput) string { return o.set("nonce", "42").String() }},
		{"response-cha-short", "cha is 16 octets, not 32.", false,
			func(o jobj, in *ResponseInput) string { return o.set("cha", jstr(in.randB64(16))).String() }},
		{"response-sid-short", "sid is 8 octets; 16 to 32 are allowed.", false,
			func(o jobj, in *ResponseInput) string { return o.set("sid", jstr(in.randB64(8))).String() }},
		{"response-cb-wrong-length", "cb is present but 16 octets.", false,
			func(o jobj, in *ResponseInput) string { return o.set("cb", jstr(in.randB64(16))).String() }},
		{"response-noncanonical-claim", "nonce is in non-canonical base64url (a set unused bit).", false,
			func(o jobj, in *ResponseInput) string {
				return o.set("nonce", jstr(nonCanonicalLast(in.Claims.Nonce))).String()
			}},
	} {
		add(gClaims, c.id, 6, protocol.CodeMalformed, c.vector, c.why, withClaims(c.edit))
	}

	// Steps 7 to 11: transcript binding and freshness, before any registry
	// access.
	add(gBinding, "response-to-other-challenge", 7, protocol.CodeTranscriptMismatch, true,
		"cha is the hash of another challenge (sid, nonce and aud are right).",
		withClaims(func(o jobj, in *ResponseInput) string {
			return o.set("cha", jstr(sha256b64(in.Challenge+" "))).String()
		}))
	add(gBinding, "response-wrong-socket", 8, protocol.CodeSocketMismatch, true, "A signed response for another socketID.",
		withClaims(func(o jobj, in *ResponseInput) string {
			return o.set("sid", jstr(in.randB64(protocol.SocketIDSize))).String()
		}))
	add(gBinding, "response-wrong-nonce", 9, protocol.CodeNonceMismatch, true, "A signed response carrying another nonce.",
		withClaims(func(o jobj, in *ResponseInput) string { return o.set("nonce", otherNonce(in)).String() }))
	add(gBinding, "response-wrong-audience", 10, protocol.CodeAudienceMismatch, true, "A signed response addressed to another server.",
		withClaims(func(o jobj, _ *ResponseInput) string {
			return o.set("aud", jstr("wss://wsproof-probe.invalid/ws")).String()
		}))
	c = add(gBinding, "response-challenge-expired", 11, protocol.CodeChallengeExpired, true,
		"A correct response arriving when the challenge expires.", func(in *ResponseInput) (string, error) { return in.good() })
	c.AtExpiry = true

	// Steps 12 to 17: the registry entry and the signature.
	// by is a correct response by the fixture k.
	by := func(k func(f *Fixtures) (*Key, error)) func(in *ResponseInput) (string, error) {
		return func(in *ResponseInput) (string, error) {
			key, err := k(&in.Fixtures)
			if err != nil {
				return "", err
			}
			return in.signed(key, in.claims())
		}
	}
	add(gKeys, "response-unknown-key", 12, protocol.CodeUnknownKey, true, "A correct response by a key that is not in the registry.",
		by(func(f *Fixtures) (*Key, error) {
			return need(f.Unregistered, "unregistered", "a key that no registry holds")
		}))
	add(gKeys, "response-signed-by-other-registered-key", 15, protocol.CodeBadSignature, true,
		"kid names the accepted key but the signature is by another registered key, of the same algorithm when there is one.",
		func(in *ResponseInput) (string, error) {
			o, err := in.other()
			if err != nil {
				return "", err
			}
			si := signingInput(hdr(&in.Key).String(), in.claims().String())
			sig, err := o.signAs(in.Rand, in.Key.Alg, si)
			if err != nil {
				sig, err = o.sigOver(in.Rand, si)
			}
			return si + "." + b64u.Encode(sig), err
		})
	add(gKeys, "response-der-signature", 15, protocol.CodeBadSignature, true, "A correct ECDSA signature in ASN.1 DER instead of raw r||s.",
		func(in *ResponseInput) (string, error) {
			k := &in.Key
			if !strings.HasPrefix(string(k.Alg), "ES") {
				var err error
				if k, err = in.keyFor(keys.ES256); err != nil {
					return "", skipf("needs an ECDSA key (ServerTarget.Key, or one of ServerTarget.Fixtures)")
				}
			}
			si := signingInput(hdr(k).String(), in.claims().String())
			der, err := k.derSig(in.Rand, si)
			return si + "." + b64u.Encode(der), err
		})
	add(gKeys, "response-signature-short", 15, protocol.CodeBadSignature, true, "A correct signature without its last octet.",
		func(in *ResponseInput) (string, error) {
			return in.sigEdit(func(s []byte) []byte { return s[:len(s)-1] })
		})
	add(gKeys, "response-signature-long", 15, protocol.CodeBadSignature, true, "A correct signature with one zero octet appended.",
		func(in *ResponseInput) (string, error) {
			return in.sigEdit(func(s []byte) []byte { return append(s, 0) })
		})
	add(gKeys, "response-signature-empty", 15, protocol.CodeBadSignature, true, "An empty signature under a valid algorithm.",
		func(in *ResponseInput) (string, error) { return in.sigEdit(func([]byte) []byte { return nil }) })
	add(gKeys, "response-signature-flipped", 15, protocol.CodeBadSignature, true, "A correct signature with one bit flipped.",
		func(in *ResponseInput) (string, error) {
			return in.sigEdit(func(s []byte) []byte { s[10] ^= 1; return s })
		})
	for _, c := range []struct {
		salt  int
		title string
	}{
		{0, "A PSS signature with an empty salt: PS256 requires a 32-byte salt."},
		{64, "A PSS signature with a 64-byte salt."},
	} {
		salt := c.salt
		add(gKeys, fmt.Sprintf("response-ps256-salt-%d", salt), 15, protocol.CodeBadSignature, true, c.title,
			func(in *ResponseInput) (string, error) {
				k, err := in.keyFor(keys.PS256)
				if err != nil {
					return "", err
				}
				si := signingInput(hdr(k).String(), in.claims().String())
				sig, err := k.pssWithSalt(in.Rand, si, salt)
				return si + "." + b64u.Encode(sig), err
			})
	}
	add(gKeys, "response-revoked-key", 16, protocol.CodeKeyRevoked, true, "A correct response by a revoked key.",
		by(func(f *Fixtures) (*Key, error) { return need(f.Revoked, "revoked", "a revoked registered key") }))
	add(gKeys, "response-key-not-yet-valid", 17, protocol.CodeKeyNotValid, true, "A correct response by a key whose validity has not started.",
		by(func(f *Fixtures) (*Key, error) {
			return need(f.NotYetValid, "not-yet-valid", "a registered key whose validity starts later")
		}))
	add(gKeys, "response-key-expired", 17, protocol.CodeKeyNotValid, true, "A correct response by a key whose validity has ended.",
		by(func(f *Fixtures) (*Key, error) {
			return need(f.Expired, "expired", "a registered key whose validity has ended")
		}))

	// Step 18: channel binding. otherCB is a response whose cb is an
	// exporter value of some other connection.
	otherCB := withClaims(func(o jobj, in *ResponseInput) string {
		return o.set("cb", jstr(in.randB64(protocol.ExporterSize))).String()
	})
	c = add(gCB, "response-channel-binding-unexpected", 18, protocol.CodeChannelBindingMismatch, true,
		"cb is present though the challenge said none.", otherCB)
	c.Binding = protocol.BindingNone
	c = add(gCB, "response-channel-binding-missing", 18, protocol.CodeChannelBindingMismatch, true,
		"The challenge demands tls-exporter binding and the response has no cb.",
		withClaims(func(o jobj, _ *ResponseInput) string { return o.del("cb").String() }))
	c.Binding = protocol.BindingTLSExporter
	c = add(gCB, "response-channel-binding-wrong", 18, protocol.CodeChannelBindingMismatch, true,
		"The server's TLS connection has another tls-exporter value than the client's (a relay).", otherCB)
	c.Binding = protocol.BindingTLSExporter
	c = add(gCB, "response-channel-binding-required", 18, protocol.CodeChannelBindingRequired, true,
		"A key registered with cb_required answers a challenge without channel binding.",
		by(func(f *Fixtures) (*Key, error) {
			return need(f.CBRequired, "cb-required", "a registered key that requires channel binding")
		}))
	c.Binding = protocol.BindingNone

	// Step 19: authorization.
	denied := func(f *Fixtures) (*Key, error) {
		return need(f.Denied, "denied", "a registered key outside the required groups")
	}
	add(gAuthz, "response-missing-group", 19, protocol.CodeAccessDenied, true, "A correct response by a key in none of the required groups.", by(denied))
	add(gAuthz, "response-client-claimed-groups", 19, protocol.CodeAccessDenied, true,
		"A key without the required group claims groups in the response: claims cannot grant groups.",
		func(in *ResponseInput) (string, error) {
			k, err := denied(&in.Fixtures)
			if err != nil {
				return "", err
			}
			return in.signed(k, in.claims().set("groups", `["admin","admins","devices","users","root","wsproof"]`))
		})

	// A refresh (spec section "Refresh").
	c = add(gRefresh, "response-refresh-other-key", 13, protocol.CodeKeyMismatch, true,
		"A re-challenge on the accepted key's session answered by another registered key.",
		func(in *ResponseInput) (string, error) {
			o, err := in.other()
			if err != nil {
				return "", err
			}
			return in.signed(o, in.claims())
		})
	c.Refresh = true
	c = add(gRefresh, "refresh-challenge-reflected", 4, protocol.CodeWrongType, false, "The re-challenge sent back as its own response.",
		func(in *ResponseInput) (string, error) { return in.Challenge, nil })
	c.Refresh = true

	// A token where a response belongs.
	c = add(gReplay, "response-token-as-response", 2, protocol.CodeMalformed, true,
		"A session token the server issued (a compact JWE of five segments) sent as the response on another socket.",
		func(in *ResponseInput) (string, error) { return in.Token, nil })
	c.NeedsToken = true

	for i := range cs {
		switch {
		case cs[i].Refresh:
			cs[i].Rows = []string{"S20"} // a text message in REFRESHING
		case cs[i].Code == protocol.CodeTooLarge:
			cs[i].Rows = []string{"S14"}
		default:
			cs[i].Rows = []string{"S16"} // a text message in CHALLENGED
		}
		if cs[i].Expected == "" {
			cs[i].Expected = expAccept
			if cs[i].Code != "" {
				cs[i].Expected = expClose(cs[i].Code)
			}
		}
	}
	return cs
}

// claimedGroup is the subject and group a response claims in
// response-valid-extra-claims-ignored.
const claimedGroup = "wsproof-probe-claimed"
