// Package vectors generates testdata/vectors.json, the language-neutral test
// vectors of spec/wsproof-v1.md section "Test vectors".
//
// Everything is derived from fixed labels and a fixed clock, so the output is
// reproducible: TestVectorsUpToDate regenerates the file and fails if it
// differs from the committed one (run it with -update to rewrite the file).
// The one random input that cannot be passed in, the AES-GCM IV that go-jose
// draws from crypto/rand, is made deterministic by running the generator
// under testing/cryptotest.SetGlobalRandom.
//
// Valid objects are made by the protocol package itself; invalid ones are
// crafted here, byte by byte, each breaking exactly one rule.
package vectors

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Now is the clock of every vector: 2026-01-01T00:00:00Z.
const Now = 1767225600

const identity = "wss://wsproof.example/ws"

// Spec sections that vectors cite in their "rule" field.
const (
	secResponse  = "Server: verifying a response"
	secChallenge = "Client: verifying a challenge"
	secToken     = "Opening a token"
	secRegistry  = "Load-time rules"
	secExchange  = "Overview"
	secSession   = "Claims"
)

type gen struct {
	f        *vectorfile.File
	srv      *protocol.Server
	srvKW    *protocol.Server // same keys, A256KW token key current
	sk       *keys.ServerKeys
	server   crypto.Signer // current server signing key
	prevSrv  crypto.Signer // previous server signing key (rotation)
	impostor crypto.Signer
	clients  map[string]crypto.Signer // kid -> private key
	algs     map[string]keys.Algorithm
	reg      *keys.Set
	exporter []byte // the tls-exporter value responses bind to
}

const (
	serverKID     = "server-es256-2026"
	prevServerKID = "server-ed25519-2025"
	tokenKID      = "token-2026"
	prevTokenKID  = "token-2025-kw"
)

// Generate builds the vector file.
func Generate() (*vectorfile.File, error) {
	g := &gen{clients: map[string]crypto.Signer{}, algs: map[string]keys.Algorithm{}, exporter: exporter}
	if err := g.setup(); err != nil {
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

func (g *gen) setup() error {
	g.server = ecKey(elliptic.P256(), "server signing key 2026")
	g.prevSrv = edKey("server signing key 2025")
	g.impostor = ecKey(elliptic.P256(), "impostor server key")
	g.sk = &keys.ServerKeys{
		Signing: []keys.SigningKey{
			{KeyID: serverKID, Algorithm: keys.ES256, Signer: detSigner{g.server}},
			{KeyID: prevServerKID, Algorithm: keys.EdDSA, Signer: detSigner{g.prevSrv}},
		},
		Token: []keys.TokenKey{
			{KeyID: tokenKID, Algorithm: keys.TokenDir, Secret: derive("token key 2026", 32)},
			{KeyID: prevTokenKID, Algorithm: keys.TokenA256KW, Secret: derive("token key 2025", 32)},
		},
	}
	type client struct {
		kid      string
		alg      keys.Algorithm
		key      crypto.Signer
		groups   []string
		mutate   func(*keys.Entry)
		register bool
	}
	devices := []string{"devices"}
	list := []client{
		{"client-es256", keys.ES256, ecKey(elliptic.P256(), "client es256"), []string{"devices", "admins"}, nil, true},
		{"client-es384", keys.ES384, ecKey(elliptic.P384(), "client es384"), devices, nil, true},
		{"client-es512", keys.ES512, ecKey(elliptic.P521(), "client es512"), devices, nil, true},
		{"client-rs256", keys.RS256, rsaKey(2048, "client rs256"), devices, nil, true},
		{"client-ps256", keys.PS256, rsaKey(2048, "client ps256"), devices, nil, true},
		{"client-eddsa", keys.EdDSA, edKey("client eddsa"), devices, nil, true},
		{"client-revoked", keys.EdDSA, edKey("client revoked"), devices, func(e *keys.Entry) { e.Revoked = true }, true},
		{"client-not-yet-valid", keys.EdDSA, edKey("client not yet valid"), devices,
			func(e *keys.Entry) { e.NotBefore = time.Unix(Now+3600, 0) }, true},
		{"client-expired", keys.EdDSA, edKey("client expired"), devices, func(e *keys.Entry) {
			e.NotBefore, e.NotAfter = time.Unix(Now-86400, 0), time.Unix(Now-3600, 0)
		}, true},
		{"client-expiring", keys.EdDSA, edKey("client expiring"), devices, func(e *keys.Entry) { e.NotAfter = time.Unix(Now+120, 0) }, true},
		{"client-visitor", keys.EdDSA, edKey("client visitor"), []string{"visitors"}, nil, true},
		{"client-cb-required", keys.ES256, ecKey(elliptic.P256(), "client cb required"), devices,
			func(e *keys.Entry) { e.RequireChannelBinding = true }, true},
		{"client-unregistered", keys.EdDSA, edKey("client unregistered"), devices, nil, false},
	}
	var entries []*keys.Entry
	var private [][]byte
	for _, c := range list {
		g.clients[c.kid], g.algs[c.kid] = c.key, c.alg
		jwk, err := keys.MarshalJWK(c.key, c.kid, c.alg)
		if err != nil {
			return err
		}
		private = append(private, jwk)
		if !c.register {
			continue
		}
		e := &keys.Entry{KeyID: c.kid, Key: c.key.Public(), Algorithm: c.alg, Subject: "device:" + c.kid, Groups: c.groups}
		if c.mutate != nil {
			c.mutate(e)
		}
		entries = append(entries, e)
	}
	impostorJWK, err := keys.MarshalJWK(g.impostor, "impostor", keys.ES256)
	if err != nil {
		return err
	}
	private = append(private, impostorJWK)
	reg, err := keys.NewSet(entries)
	if err != nil {
		return err
	}
	g.reg = reg
	cfg := protocol.ServerConfig{Identity: identity, Keys: g.sk, Registry: reg, RequiredGroups: []string{"devices"}}
	if g.srv, err = protocol.NewServer(&cfg); err != nil {
		return err
	}
	kw := *g.sk
	kw.Token = []keys.TokenKey{g.sk.Token[1], g.sk.Token[0]}
	cfg.Keys = &kw
	if g.srvKW, err = protocol.NewServer(&cfg); err != nil {
		return err
	}

	serverPriv, err := keys.MarshalServerKeys(&keys.ServerKeys{
		Signing: []keys.SigningKey{
			{KeyID: serverKID, Algorithm: keys.ES256, Signer: g.server},
			{KeyID: prevServerKID, Algorithm: keys.EdDSA, Signer: g.prevSrv},
		},
		Token: g.sk.Token,
	})
	if err != nil {
		return err
	}
	serverPub, err := keys.MarshalPublicSet(g.sk.Public())
	if err != nil {
		return err
	}
	regJSON, err := keys.MarshalRegistry(entries)
	if err != nil {
		return err
	}
	algNames := make([]string, len(keys.Algorithms))
	for i, a := range keys.Algorithms {
		algNames[i] = string(a)
	}
	g.f = &vectorfile.File{
		Spec:    "wsproof-v1",
		License: "CC0-1.0",
		Comment: "Test vectors for wsproof v1 (spec/wsproof-v1.md, section Test vectors). All private keys in this " +
			"file are test keys, published on purpose: never use them for anything else.",
		Generator: "go test ./internal/vectors -update",
		Server: vectorfile.Server{
			Identity: identity, Algs: algNames, RequiredGroups: []string{"devices"},
			ChallengeLifetime: 30, TokenLifetime: 300, ClockSkew: 60,
		},
		Keys: vectorfile.Keys{
			ServerPrivate: serverPriv,
			ServerPublic:  serverPub,
			Registry:      regJSON,
			ClientPrivate: []byte(fmt.Sprintf("{\"keys\":[%s]}", bytes.Join(private, []byte(",")))),
		},
	}
	return nil
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

func now() time.Time { return time.Unix(Now, 0) }

// exporter is the tls-exporter value of the vectors' TLS connections.
var exporter = derive("tls-exporter", protocol.ExporterSize)

// client returns a protocol client for kid.
func (g *gen) client(kid string, requireCB bool) *protocol.Client {
	c, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: detSigner{g.clients[kid]}, Algorithm: g.algs[kid],
		ServerKeys: g.sk.Public(), ServerIdentity: identity, InsecureAllowUnbound: !requireCB})
	if err != nil {
		panic(err)
	}
	return c
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
		list = append(list, ex{"exchange-" + strings.ToLower(string(a)), kid, g.srv, nil,
			"A complete handshake with a " + string(a) + " client key, without TLS channel binding."})
	}
	list = append(list,
		ex{"exchange-es256-tls-exporter", "client-es256", g.srv, exporter,
			"A complete handshake over TLS with tls-exporter channel binding: the response carries cb and the token cbh."},
		ex{"exchange-eddsa-a256kw", "client-eddsa", g.srvKW, nil,
			"A complete handshake whose session token is sealed with an A256KW token key instead of dir."},
	)
	for _, e := range list {
		r := stream(e.id)
		sh, challenge, err := e.srv.Start(r, now(), e.cb)
		if err != nil {
			return err
		}
		ch := g.client(e.kid, false).Handshake()
		resp, err := ch.ReadChallenge(challenge, r, now(), e.cb)
		if err != nil {
			return fmt.Errorf("%s: %w", e.id, err)
		}
		sess, accept, err := sh.ReadResponse(resp, r, now())
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
func (g *gen) challengeFor(id string, cb []byte) (string, challengeClaims) {
	_, c, err := g.srv.Start(stream(id), now(), cb)
	if err != nil {
		panic(err)
	}
	return string(c), claimsOf(string(c))
}

// challengeClaims are the claims of a challenge: protocol's definition.
type challengeClaims = protocol.ChallengeClaims

func claimsOf(jws string) challengeClaims {
	p, err := b64u.Decode(strings.Split(jws, ".")[1])
	if err != nil {
		panic(err)
	}
	var c challengeClaims
	if err := json.Unmarshal(p, &c); err != nil {
		panic(err)
	}
	return c
}

func hdr(alg, kid, typ string) string {
	return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":%q}`, alg, kid, typ)
}

func mustJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// sign returns header.payload.signature with the signature made by key under
// alg over the exact segments given.
func sign(header, payload string, key crypto.Signer, alg keys.Algorithm) string {
	si := b64u.Encode([]byte(header)) + "." + b64u.Encode([]byte(payload))
	return signInput(si, key, alg)
}

func signInput(si string, key crypto.Signer, alg keys.Algorithm) string {
	sig, err := keys.Sign(nil, detSigner{key}, alg, []byte(si))
	if err != nil {
		panic(err)
	}
	return si + "." + b64u.Encode(sig)
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
