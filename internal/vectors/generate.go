// Package vectors generates testdata/vectors.json, the language-neutral test
// vectors of spec/wsproof-v1.md section "Test vectors".
//
// Everything is derived from fixed labels and a fixed clock (package
// fixture), so the output is reproducible: TestVectorsUpToDate regenerates
// the file and fails if it differs from the committed one (run it with
// -update to rewrite the file), and TestSessionVectorsUpToDate does the same
// for testdata/session-vectors.json, which package sessions makes.
// The one random input that cannot be passed in, the AES-GCM IV that go-jose
// draws from crypto/rand, is made deterministic by running the generator
// under testing/cryptotest.SetGlobalRandom.
//
// Valid objects are made by the protocol package itself; invalid ones are
// crafted byte by byte, each breaking exactly one rule: the server-role and
// client-role vectors are the message cases of package conformance, the
// token and key vectors are crafted here.
package vectors

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Spec sections that vectors cite in their "rule" field.
const (
	secResponse  = "Server: verifying a response"
	secChallenge = "Client: verifying a challenge"
	secToken     = "Opening a token"
	secRegistry  = "Load-time rules"
	secExchange  = "Overview"
	secSession   = "Claims"
)

// Now is the clock of every vector: 2026-01-01T00:00:00Z.
const Now = fixture.Now

// gen is the vector file being made in the vectors' fixed world.
type gen struct {
	*fixture.Fixture
	f *vectorfile.File
}

// newGen starts the vector file.
func newGen() (*gen, error) {
	fx, err := fixture.New()
	if err != nil {
		return nil, err
	}
	return &gen{Fixture: fx, f: &vectorfile.File{
		Spec:    "wsproof-v1",
		License: "CC0-1.0",
		Comment: "Test vectors for wsproof v1 (spec/wsproof-v1.md, section Test vectors). All private keys in this " +
			"file are test keys, published on purpose: never use them for anything else.",
		Generator: "go test ./internal/vectors -update",
		Server:    fx.Config,
		Keys:      fx.Keys,
	}}, nil
}

// Generate builds the vector file.
func Generate() (*vectorfile.File, error) {
	g, err := newGen()
	if err != nil {
		return nil, err
	}
	steps := []func() error{g.exchanges, g.serverVectors, g.clientVectors, g.tokenVectors, g.keyVectors}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	flagged := 0
	for _, v := range g.f.Vectors {
		if v.JOSE {
			flagged++
		}
	}
	if flagged != len(joseRules) {
		return nil, fmt.Errorf("vectors: joseRules names %d vectors, %d exist", len(joseRules), flagged)
	}
	return g.f, nil
}

func (g *gen) add(v vectorfile.Vector) {
	if v.Now == 0 {
		v.Now = Now
	}
	if v.Error != "" {
		v.Result = vectorfile.Invalid
		v.JOSE = joseRules[v.ID]
	} else {
		v.Result = vectorfile.Valid
	}
	g.f.Vectors = append(g.f.Vectors, v)
}

// exchanges makes one complete handshake per algorithm, one with channel
// binding and one sealed with A256KW.
func (g *gen) exchanges() error {
	type ex struct {
		id, kid string
		srv     *protocol.Server
		cb      []byte
		comment string
	}
	var list []ex
	for _, a := range keys.Algorithms {
		kid := "client-" + strings.ToLower(string(a))
		list = append(list, ex{"exchange-" + strings.ToLower(string(a)), kid, g.Srv, nil,
			"A complete handshake with a " + string(a) + " client key, without TLS channel binding."})
	}
	list = append(list,
		ex{"exchange-es256-tls-exporter", "client-es256", g.Srv, fixture.Exporter,
			"A complete handshake over TLS with tls-exporter channel binding: the response carries cb and the token cbh."},
		ex{"exchange-eddsa-a256kw", "client-eddsa", g.SrvKW, nil,
			"A complete handshake whose session token is sealed with an A256KW token key instead of dir."},
	)
	for _, e := range list {
		r := fixture.Stream(e.id)
		sh, challenge, err := e.srv.Start(r, fixture.Time(), e.cb)
		if err != nil {
			return err
		}
		ch := g.Client(e.kid, false).Handshake()
		resp, err := ch.ReadChallenge(challenge, r, fixture.Time(), e.cb)
		if err != nil {
			return fmt.Errorf("%s: %w", e.id, err)
		}
		sess, accept, err := sh.ReadResponse(resp, r, fixture.Time())
		if err != nil {
			return fmt.Errorf("%s: %w", e.id, err)
		}
		v := vectorfile.Vector{ID: e.id, Comment: e.comment, Role: vectorfile.RoleExchange, Rule: secExchange,
			Challenge: string(challenge), Response: string(resp), Accept: string(accept), Token: sess.Token,
			Expected: g.expected(sess, e.cb)}
		if e.cb != nil {
			v.ChannelBinding = b64u.Encode(e.cb)
		}
		g.add(v)
	}
	return nil
}

func (g *gen) expected(s *protocol.Session, cb []byte) *vectorfile.Expected {
	x := &vectorfile.Expected{SID: s.SocketID, Subject: s.Subject, Groups: s.Groups, ClientKID: s.KeyID,
		JKT: s.Thumbprint, Expiry: s.Expiry.Unix()}
	if cb != nil {
		sum := sha256.Sum256(cb)
		x.ChannelBindingHash = b64u.Encode(sum[:])
	}
	return x
}

// challengeFor returns a fresh challenge from the vector server for id.
func (g *gen) challengeFor(id string, cb []byte) (string, protocol.ChallengeClaims) {
	_, c, err := g.Srv.Start(fixture.Stream(id), fixture.Time(), cb)
	if err != nil {
		panic(err)
	}
	return string(c), fixture.ClaimsOf(string(c))
}

// seal encrypts inner as a session token with the given header values.
func seal(inner string, tk keys.TokenKey, typ, cty string) string {
	opts := &jose.EncrypterOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if cty != "" {
		opts = opts.WithContentType(jose.ContentType(cty))
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.KeyAlgorithm(tk.Algorithm), Key: tk.Secret, KeyID: tk.KeyID}, opts)
	if err != nil {
		panic(err)
	}
	obj, err := enc.Encrypt([]byte(inner))
	if err != nil {
		panic(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// joseRules are the negative vectors whose rule a generic JOSE library
// enforces: unknown or disallowed algorithms, algorithm/key confusion,
// crit, serialization, signature and AEAD integrity, and the JWT time and
// issuer claims. client/js/test/vectors.test.js checks that panva/jose
// refuses every one of them. Everything else is wsproof's own rule.
var joseRules = map[string]bool{
	"response-alg-none": true, "response-alg-none-capitalized": true, "response-alg-none-upper": true,
	"response-alg-es256-lower": true, "response-alg-rs512": true, "response-hs256-public-key": true,
	"response-rs256-under-ps256-key": true, "response-ps256-under-rs256-key": true, "response-es384-under-p256-key": true,
	"response-header-crit": true, "response-json-serialization-flattened": true, "response-json-serialization-general": true,
	"response-token-as-response": true, "response-der-signature": true, "response-signature-short": true,
	"response-signature-long": true, "response-signature-empty": true, "response-signature-flipped": true,
	"response-ps256-salt-0": true, "response-ps256-salt-64": true, "response-signed-by-other-registered-key": true,
	"response-unknown-key": true,

	"challenge-impostor-key": true, "challenge-impostor-same-kid": true, "challenge-alg-none": true,
	"challenge-hs256-server-public-key": true, "challenge-sibling-alg": true,

	"token-tampered-ciphertext": true, "token-tampered-tag": true, "token-tampered-iv": true,
	"token-dir-with-encrypted-key": true, "token-tag-shifted": true, "token-unknown-signing-key": true,
	"token-inner-alg-none": true, "token-unknown-token-key": true, "token-expired": true,
	"token-not-yet-valid": true, "token-other-issuer": true,

	"key-rsa-1024": true, "key-off-curve": true, "key-alg-curve-mismatch": true, "key-alg-kty-mismatch": true,
	"key-rsa-registered-hs256": true,
}
