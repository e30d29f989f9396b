package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// resp describes one server-role vector: a response to a fresh challenge.
type resp struct {
	id, comment, rule, code string
	cb                      []byte // tls-exporter in force at the server
	now                     int64  // 0: Now
	session                 *vectorfile.Session
	// build returns the response message for challenge.
	build func(challenge string, c challengeClaims) string
}

// signedResp is a correctly signed response by kid, with claims edited by
// edit (which may be nil).
func (g *gen) signedResp(kid string, edit func(map[string]any)) func(string, challengeClaims) string {
	return func(challenge string, c challengeClaims) string {
		claims := respClaims(challenge, c)
		if c.CB == protocol.BindingTLSExporter {
			claims["cb"] = b64u.Encode(g.exporter)
		}
		if edit != nil {
			edit(claims)
		}
		alg := g.algs[kid]
		return sign(hdr(string(alg), kid, protocol.TypResponse), mustJSON(claims), g.clients[kid], alg)
	}
}

// withHeader is a response by client-es256 under a hand-written header.
func (g *gen) withHeader(header string) func(string, challengeClaims) string {
	return func(challenge string, c challengeClaims) string {
		return sign(header, mustJSON(respClaims(challenge, c)), g.clients["client-es256"], keys.ES256)
	}
}

// withPayload is a response by client-es256 whose payload is the given text.
func (g *gen) withPayload(payload func(challenge string, c challengeClaims) string) func(string, challengeClaims) string {
	return func(challenge string, c challengeClaims) string {
		return sign(hdr("ES256", "client-es256", protocol.TypResponse), payload(challenge, c), g.clients["client-es256"], keys.ES256)
	}
}

// withSig replaces the signature of a correct client-es256 response.
func (g *gen) withSig(sig func(si string) string) func(string, challengeClaims) string {
	return func(challenge string, c challengeClaims) string {
		h, p, _ := segments(g.signedResp("client-es256", nil)(challenge, c))
		return h + "." + p + "." + sig(h+"."+p)
	}
}

func step(sec string, n int) string { return fmt.Sprintf("%s, step %d", sec, n) }

func (g *gen) serverVectors() error {
	for _, r := range g.serverCases() {
		challenge, c := g.challengeFor(r.id, r.cb)
		if r.session != nil {
			// A re-challenge on a live socket: same sid as the session.
			r.session.SID = c.Sid
		}
		v := vectorfile.Vector{ID: r.id, Comment: r.comment, Role: vectorfile.RoleServer, Rule: r.rule, Now: r.now,
			Session: r.session, Challenge: challenge, Response: r.build(challenge, c), Error: r.code}
		if r.cb != nil {
			v.ChannelBinding = b64u.Encode(r.cb)
		}
		if r.code == "" {
			v.Expected = &vectorfile.Expected{SID: c.Sid, Subject: "device:" + es256, Groups: []string{"devices", "admins"}, ClientKID: es256,
				JKT: g.thumb(es256), Expiry: Now + 300}
			if r.id == "response-valid-token-capped-by-key" {
				kid := "client-expiring"
				v.Expected = &vectorfile.Expected{SID: c.Sid, Subject: "device:" + kid, Groups: []string{"devices"}, ClientKID: kid,
					JKT: g.thumb(kid), Expiry: Now + 120}
			}
		}
		g.add(v)
	}
	return nil
}

const es256 = "client-es256"

// serverCases are the server-role vectors, each a function of the challenge
// it answers, so that they can also be replayed against a live server.
func (g *gen) serverCases() []resp {
	es := "client-es256"
	esHdr := func(extra string) string {
		return `{"alg":"ES256",` + extra + `"kid":"client-es256","typ":"wsproof-response+jwt"}`
	}
	unsigned := func(alg string) func(string, challengeClaims) string {
		return func(challenge string, c challengeClaims) string {
			return b64u.Encode([]byte(hdr(alg, es, protocol.TypResponse))) + "." + b64u.Encode([]byte(mustJSON(respClaims(challenge, c)))) + "."
		}
	}
	otherSID := b64u.Encode(derive("other socket", protocol.SocketIDSize))
	otherNonce := b64u.Encode(derive("other nonce", protocol.NonceSize))
	list := []resp{
		{id: "response-valid-extra-claims-ignored", rule: step(secResponse, 19),
			comment: "A valid response that also claims groups and an unknown member: both are ignored; the groups come from the registry only.",
			build:   g.signedResp(es, func(m map[string]any) { m["groups"] = []string{"root"}; m["x-future"] = 1 })},
		{id: "response-alg-none", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: `"alg":"none" with an empty signature.`, build: unsigned("none")},
		{id: "response-alg-none-capitalized", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: `"alg":"None": algorithm names are case-sensitive.`, build: unsigned("None")},
		{id: "response-alg-none-upper", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: `"alg":"NONE".`, build: unsigned("NONE")},
		{id: "response-alg-es256-lower", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: `"alg":"es256" is not ES256.`, build: func(challenge string, c challengeClaims) string {
				h, p, s := segments(g.signedResp(es, nil)(challenge, c))
				_ = h
				return b64u.Encode([]byte(hdr("es256", es, protocol.TypResponse))) + "." + p + "." + s
			}},
		{id: "response-alg-rs512", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: "RS512 is a JOSE algorithm but not a wsproof one.",
			build: func(challenge string, c challengeClaims) string {
				si := b64u.Encode([]byte(hdr("RS512", "client-rs256", protocol.TypResponse))) + "." + b64u.Encode([]byte(mustJSON(respClaims(challenge, c))))
				d := sha512.Sum512([]byte(si))
				sig, _ := rsa.SignPKCS1v15(nil, g.clients["client-rs256"].(*rsa.PrivateKey), crypto.SHA512, d[:])
				return si + "." + b64u.Encode(sig)
			}},
		{id: "response-hs256-public-key", code: "alg_not_allowed", rule: step(secResponse, 5),
			comment: "HS256 keyed with the PEM of the client's registered public key (the RFC 8725 section 2.1 key confusion).",
			build: func(challenge string, c challengeClaims) string {
				si := b64u.Encode([]byte(hdr("HS256", es, protocol.TypResponse))) + "." + b64u.Encode([]byte(mustJSON(respClaims(challenge, c))))
				return si + "." + b64u.Encode(hmacSHA256(spkiPEM(g.clients[es].Public()), si))
			}},
		{id: "response-rs256-under-ps256-key", code: "alg_mismatch", rule: step(secResponse, 14),
			comment: "A correct RS256 signature by a key registered for PS256: one key, one algorithm.",
			build: func(challenge string, c challengeClaims) string {
				return sign(hdr("RS256", "client-ps256", protocol.TypResponse), mustJSON(respClaims(challenge, c)), g.clients["client-ps256"], keys.RS256)
			}},
		{id: "response-ps256-under-rs256-key", code: "alg_mismatch", rule: step(secResponse, 14),
			comment: "A correct PS256 signature by a key registered for RS256.",
			build: func(challenge string, c challengeClaims) string {
				return sign(hdr("PS256", "client-rs256", protocol.TypResponse), mustJSON(respClaims(challenge, c)), g.clients["client-rs256"], keys.PS256)
			}},
		{id: "response-es384-under-p256-key", code: "alg_mismatch", rule: step(secResponse, 14),
			comment: "ES384 claimed for a P-256 key registered for ES256 (curve and algorithm disagree).",
			build: func(challenge string, c challengeClaims) string {
				si := b64u.Encode([]byte(hdr("ES384", es, protocol.TypResponse))) + "." + b64u.Encode([]byte(mustJSON(respClaims(challenge, c))))
				d := sha512.Sum384([]byte(si))
				return si + "." + b64u.Encode(rawECDSA(g.clients[es].(*ecdsa.PrivateKey), crypto.SHA384, d[:], 32))
			}},
		{id: "response-header-jwk", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "An embedded jwk header naming the signing key: keys come from the registry only.",
			build:   g.withHeader(esHdr(`"jwk":` + g.publicJWK(es) + `,`))},
		{id: "response-header-jku", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "A jku header pointing at an attacker's key set.",
			build:   g.withHeader(esHdr(`"jku":"https://attacker.example/jwks.json",`))},
		{id: "response-header-x5u", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "An x5u header.", build: g.withHeader(esHdr(`"x5u":"https://attacker.example/cert.pem",`))},
		{id: "response-header-x5c", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "An x5c header.", build: g.withHeader(esHdr(`"x5c":["MIIBszCCAVmgAwIBAgIUEXAMPLE"],`))},
		{id: "response-header-crit", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "A crit header, even naming a registered member.", build: g.withHeader(esHdr(`"crit":["exp"],`))},
		{id: "response-header-zip", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "A zip header.", build: g.withHeader(esHdr(`"zip":"DEF",`))},
		{id: "response-header-b64-false", code: "header_not_allowed", rule: step(secResponse, 3),
			comment: "An RFC 7797 b64 header.", build: g.withHeader(esHdr(`"b64":false,`))},
		{id: "response-missing-typ", code: "malformed", rule: step(secResponse, 3),
			comment: "No typ header.", build: g.withHeader(`{"alg":"ES256","kid":"client-es256"}`)},
		{id: "response-wrong-typ", code: "wrong_type", rule: step(secResponse, 4),
			comment: `"typ":"JWT" instead of wsproof-response+jwt.`, build: g.withHeader(hdr("ES256", es, "JWT"))},
		{id: "response-typ-case-variant", code: "wrong_type", rule: step(secResponse, 4),
			comment: "typ values are compared byte for byte.", build: g.withHeader(hdr("ES256", es, "Wsproof-Response+JWT"))},
		{id: "response-challenge-reflected", code: "wrong_type", rule: step(secResponse, 4),
			comment: "The server's own challenge sent back as the response.",
			build:   func(challenge string, _ challengeClaims) string { return challenge }},
		{id: "response-token-as-response", code: "malformed", rule: step(secResponse, 2),
			comment: "A session token (a compact JWE of five segments) sent as the response.",
			build:   func(string, challengeClaims) string { return g.f.Vectors[0].Token }},
		{id: "response-json-serialization-flattened", code: "malformed", rule: step(secResponse, 2),
			comment: "A correct response in flattened JWS JSON serialization: compact only.",
			build: func(challenge string, c challengeClaims) string {
				h, p, s := segments(g.signedResp(es, nil)(challenge, c))
				return mustJSON(map[string]string{"protected": h, "payload": p, "signature": s})
			}},
		{id: "response-json-serialization-general", code: "malformed", rule: step(secResponse, 2),
			comment: "A correct response in general JWS JSON serialization.",
			build: func(challenge string, c challengeClaims) string {
				h, p, s := segments(g.signedResp(es, nil)(challenge, c))
				return mustJSON(map[string]any{"payload": p, "signatures": []map[string]string{{"protected": h, "signature": s}}})
			}},
		{id: "response-duplicate-header-member", code: "malformed", rule: step(secResponse, 2),
			comment: "The header names alg twice.", build: g.withHeader(esHdr(`"alg":"ES256",`))},
		{id: "response-duplicate-claim", code: "malformed", rule: step(secResponse, 6),
			comment: "The payload names nonce twice, with different values.",
			build: g.withPayload(func(challenge string, c challengeClaims) string {
				j := mustJSON(respClaims(challenge, c))
				return strings.TrimSuffix(j, "}") + `,"nonce":"` + otherNonce + `"}`
			})},
		{id: "response-case-variant-claim", code: "malformed", rule: step(secResponse, 6),
			comment: `The payload has both "nonce" and "Nonce".`,
			build: g.withPayload(func(challenge string, c challengeClaims) string {
				j := mustJSON(respClaims(challenge, c))
				return strings.TrimSuffix(j, "}") + `,"Nonce":"` + otherNonce + `"}`
			})},
		{id: "response-trailing-data", code: "malformed", rule: step(secResponse, 6),
			comment: "The payload has bytes after the JSON object.",
			build:   g.withPayload(func(challenge string, c challengeClaims) string { return mustJSON(respClaims(challenge, c)) + " []" })},
		{id: "response-missing-cha", code: "malformed", rule: step(secResponse, 6),
			comment: "No cha claim.", build: g.signedResp(es, func(m map[string]any) { delete(m, "cha") })},
		{id: "response-nonce-not-string", code: "malformed", rule: step(secResponse, 6),
			comment: "nonce is a number.", build: g.signedResp(es, func(m map[string]any) { m["nonce"] = 42 })},
		{id: "response-aud-too-long", code: "malformed", rule: step(secResponse, 6),
			comment: "aud is the server identity padded to 257 octets; aud is 1 to 256 octets, like the identity, and is refused before it is compared.",
			build: g.signedResp(es, func(m map[string]any) {
				m["aud"] = m["aud"].(string) + strings.Repeat("/", protocol.MaxIdentity+1-len(m["aud"].(string)))
			})},
		{id: "response-aud-empty", code: "malformed", rule: step(secResponse, 6),
			comment: "aud is the empty string; aud is 1 to 256 octets.",
			build:   g.signedResp(es, func(m map[string]any) { m["aud"] = "" })},
		{id: "response-noncanonical-signature", code: "malformed", rule: step(secResponse, 2),
			comment: "The signature's last base64url character has non-zero unused bits.",
			build: g.withSig(func(si string) string {
				_, _, s := segments(signInput(si, g.clients[es], keys.ES256))
				return s[:len(s)-1] + nonCanonical(s[len(s)-1])
			})},
		{id: "response-padded-signature", code: "malformed", rule: step(secResponse, 2),
			comment: "The signature segment carries '=' padding.",
			build: g.withSig(func(si string) string {
				_, _, s := segments(signInput(si, g.clients[es], keys.ES256))
				sig, _ := b64u.Decode(s)
				return base64.URLEncoding.EncodeToString(sig)
			})},
		{id: "response-noncanonical-payload", code: "malformed", rule: step(secResponse, 2),
			comment: "The payload segment has non-zero unused bits; the signature covers that exact text.",
			build: func(challenge string, c challengeClaims) string {
				p := mustJSON(respClaims(challenge, c))
				for len(p)%3 == 0 {
					p += " "
				}
				e := b64u.Encode([]byte(p))
				e = e[:len(e)-1] + nonCanonical(e[len(e)-1])
				return signInput(b64u.Encode([]byte(hdr("ES256", es, protocol.TypResponse)))+"."+e, g.clients[es], keys.ES256)
			}},
		{id: "response-der-signature", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A correct ECDSA signature in ASN.1 DER instead of raw r||s.",
			build: g.withSig(func(si string) string {
				d := sha256.Sum256([]byte(si))
				der, _ := g.clients[es].Sign(nil, d[:], crypto.SHA256)
				return b64u.Encode(der)
			})},
		{id: "response-signature-short", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A 63-byte ES256 signature.", build: g.withSig(func(si string) string {
				_, _, s := segments(signInput(si, g.clients[es], keys.ES256))
				b, _ := b64u.Decode(s)
				return b64u.Encode(b[:63])
			})},
		{id: "response-signature-long", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A correct ES256 signature with one zero byte appended.", build: g.withSig(func(si string) string {
				_, _, s := segments(signInput(si, g.clients[es], keys.ES256))
				b, _ := b64u.Decode(s)
				return b64u.Encode(append(b, 0))
			})},
		{id: "response-signature-empty", code: "bad_signature", rule: step(secResponse, 15),
			comment: "An empty signature under a valid algorithm.", build: g.withSig(func(string) string { return "" })},
		{id: "response-signature-flipped", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A correct signature with one bit flipped.", build: g.withSig(func(si string) string {
				_, _, s := segments(signInput(si, g.clients[es], keys.ES256))
				b, _ := b64u.Decode(s)
				b[10] ^= 1
				return b64u.Encode(b)
			})},
		{id: "response-ps256-salt-0", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A PSS signature with an empty salt: PS256 requires a 32-byte salt.",
			build:   g.pss(0)},
		{id: "response-ps256-salt-64", code: "bad_signature", rule: step(secResponse, 15),
			comment: "A PSS signature with a 64-byte salt.", build: g.pss(64)},
		{id: "response-signed-by-other-registered-key", code: "bad_signature", rule: step(secResponse, 15),
			comment: "kid names client-es256 but the signature is by client-cb-required, another registered ES256 key.",
			build: func(challenge string, c challengeClaims) string {
				return sign(hdr("ES256", es, protocol.TypResponse), mustJSON(respClaims(challenge, c)), g.clients["client-cb-required"], keys.ES256)
			}},
		{id: "response-wrong-nonce", code: "nonce_mismatch", rule: step(secResponse, 9),
			comment: "A signed response carrying another nonce.", build: g.signedResp(es, func(m map[string]any) { m["nonce"] = otherNonce })},
		{id: "response-wrong-socket", code: "socket_mismatch", rule: step(secResponse, 8),
			comment: "A signed response for another socketID.", build: g.signedResp(es, func(m map[string]any) { m["sid"] = otherSID })},
		{id: "response-wrong-audience", code: "audience_mismatch", rule: step(secResponse, 10),
			comment: "A signed response addressed to another server.",
			build:   g.signedResp(es, func(m map[string]any) { m["aud"] = "wss://other.example/ws" })},
		{id: "response-to-other-challenge", code: "transcript_mismatch", rule: step(secResponse, 7),
			comment: "cha is the hash of another challenge (sid, nonce and aud are right).",
			build: g.signedResp(es, func(m map[string]any) {
				other, _ := g.challengeFor("another challenge", nil)
				sum := sha256.Sum256([]byte(other))
				m["cha"] = b64u.Encode(sum[:])
			})},
		{id: "response-challenge-expired", code: "challenge_expired", now: Now + 30, rule: step(secResponse, 11),
			comment: "A correct response arriving when the challenge expires (30 s after it was issued).",
			build:   g.signedResp(es, nil)},
		{id: "response-unknown-key", code: "unknown_key", rule: step(secResponse, 12),
			comment: "A correct response by a key that is not in the registry.", build: g.signedResp("client-unregistered", nil)},
		{id: "response-revoked-key", code: "key_revoked", rule: step(secResponse, 16),
			comment: "A correct response by a revoked key.", build: g.signedResp("client-revoked", nil)},
		{id: "response-key-not-yet-valid", code: "key_not_valid", rule: step(secResponse, 17),
			comment: "A correct response by a key whose validity starts in an hour.", build: g.signedResp("client-not-yet-valid", nil)},
		{id: "response-key-expired", code: "key_not_valid", rule: step(secResponse, 17),
			comment: "A correct response by a key whose validity ended an hour ago.", build: g.signedResp("client-expired", nil)},
		{id: "response-missing-group", code: "access_denied", rule: step(secResponse, 19),
			comment: "A correct response by a key in none of the required groups.", build: g.signedResp("client-visitor", nil)},
		{id: "response-client-claimed-groups", code: "access_denied", rule: step(secResponse, 19),
			comment: "A key without the required group claims it in the response: claims cannot grant groups.",
			build:   g.signedResp("client-visitor", func(m map[string]any) { m["groups"] = []string{"devices"} })},
		{id: "response-channel-binding-wrong", code: "channel_binding_mismatch", cb: exporter, rule: step(secResponse, 18),
			comment: "The server's TLS connection has another tls-exporter value than the client's (a relay).",
			build:   g.signedResp(es, func(m map[string]any) { m["cb"] = b64u.Encode(derive("relay exporter", 32)) })},
		{id: "response-channel-binding-missing", code: "channel_binding_mismatch", cb: exporter, rule: step(secResponse, 18),
			comment: "The challenge demands tls-exporter binding and the response has no cb.",
			build:   g.signedResp(es, func(m map[string]any) { delete(m, "cb") })},
		{id: "response-channel-binding-unexpected", code: "channel_binding_mismatch", rule: step(secResponse, 18),
			comment: "cb is present though the challenge said none.",
			build:   g.signedResp(es, func(m map[string]any) { m["cb"] = b64u.Encode(exporter) })},
		{id: "response-channel-binding-required", code: "channel_binding_required", rule: step(secResponse, 18),
			comment: "A key registered with cb_required answers a challenge without channel binding.",
			build:   g.signedResp("client-cb-required", nil)},
		{id: "response-refresh-other-key", code: "key_mismatch", rule: step(secResponse, 13),
			session: &vectorfile.Session{KID: es},
			comment: "A re-challenge on client-es256's session answered by another registered key.",
			build:   g.signedResp("client-eddsa", nil)},
		{id: "response-oversized", code: "too_large", rule: step(secResponse, 1),
			comment: "A correctly signed response of more than 4096 bytes.",
			build:   g.signedResp(es, func(m map[string]any) { m["pad"] = strings.Repeat("a", 4000) })},
	}
	return append(list, resp{id: "response-valid-token-capped-by-key", rule: secSession,
		comment: "A valid response by a key whose validity ends in 120 s: the token expires then, not after the 300 s token lifetime.",
		build:   g.signedResp("client-expiring", nil)})
}

func (g *gen) thumb(kid string) string {
	t, err := keys.Thumbprint(g.clients[kid].Public())
	if err != nil {
		panic(err)
	}
	return t
}

func (g *gen) publicJWK(kid string) string {
	j, err := keys.MarshalJWK(g.clients[kid].Public(), kid, g.algs[kid])
	if err != nil {
		panic(err)
	}
	return string(j)
}

// pss signs a client-ps256 response with the given salt length.
func (g *gen) pss(salt int) func(string, challengeClaims) string {
	return func(challenge string, c challengeClaims) string {
		si := b64u.Encode([]byte(hdr("PS256", "client-ps256", protocol.TypResponse))) + "." + b64u.Encode([]byte(mustJSON(respClaims(challenge, c))))
		d := sha256.Sum256([]byte(si))
		sig, err := rsa.SignPSS(stream("pss salt"), g.clients["client-ps256"].(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			panic(err)
		}
		return si + "." + b64u.Encode(sig)
	}
}

// nonCanonical returns another base64url character that decodes to the same
// leading bits as c but sets an unused trailing bit.
func nonCanonical(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return string(alphabet[strings.IndexByte(alphabet, c)|1])
}

// chal describes one client-role vector.
type chal struct {
	id, comment, rule, code string
	now                     int64
	cb                      []byte
	requireCB               bool
	client                  string // default client-es256
	session                 *vectorfile.Session
	build                   func() string
}

// serverChallenge signs claims as a challenge with the current server key,
// or another key and header.
func (g *gen) serverChallenge(edit func(*challengeClaims)) string {
	c := challengeClaims{Iss: identity, Sid: b64u.Encode(derive("client vector sid", 16)),
		Nonce: b64u.Encode(derive("client vector nonce", 32)), Iat: Now, Exp: Now + 30,
		Algs: g.f.Server.Algs, CB: protocol.BindingNone}
	if edit != nil {
		edit(&c)
	}
	return sign(hdr("ES256", serverKID, protocol.TypChallenge), mustJSON(c), g.server, keys.ES256)
}

func (g *gen) clientVectors() error {
	base := func() string { return g.serverChallenge(nil) }
	liveChallenge := base()
	live := claimsOf(liveChallenge)
	list := []chal{
		{id: "challenge-valid", rule: secChallenge, comment: "A valid challenge from the current server key.", build: base},
		{id: "challenge-valid-previous-server-key", rule: step(secChallenge, 6),
			comment: "A valid challenge signed by the previous (rotated) server key, still pinned.",
			build: func() string {
				c := claimsOf(base())
				return sign(hdr("EdDSA", prevServerKID, protocol.TypChallenge), mustJSON(c), g.prevSrv, keys.EdDSA)
			}},
		{id: "challenge-impostor-key", code: "unknown_key", rule: step(secChallenge, 6),
			comment: "A challenge signed by a key the client does not pin.",
			build: func() string {
				return sign(hdr("ES256", "impostor", protocol.TypChallenge), mustJSON(claimsOf(base())), g.impostor, keys.ES256)
			}},
		{id: "challenge-impostor-same-kid", code: "bad_signature", rule: step(secChallenge, 8),
			comment: "A challenge naming the pinned server kid but signed by an impostor key.",
			build: func() string {
				return sign(hdr("ES256", serverKID, protocol.TypChallenge), mustJSON(claimsOf(base())), g.impostor, keys.ES256)
			}},
		{id: "challenge-alg-none", code: "alg_not_allowed", rule: step(secChallenge, 5),
			comment: `An unsigned challenge, "alg":"none".`,
			build: func() string {
				return b64u.Encode([]byte(hdr("none", serverKID, protocol.TypChallenge))) + "." + b64u.Encode([]byte(mustJSON(claimsOf(base())))) + "."
			}},
		{id: "challenge-hs256-server-public-key", code: "alg_not_allowed", rule: step(secChallenge, 5),
			comment: "A challenge MACed with HS256 keyed by the PEM of the server's public key.",
			build: func() string {
				si := b64u.Encode([]byte(hdr("HS256", serverKID, protocol.TypChallenge))) + "." + b64u.Encode([]byte(mustJSON(claimsOf(base()))))
				return si + "." + b64u.Encode(hmacSHA256(spkiPEM(g.server.Public()), si))
			}},
		{id: "challenge-sibling-alg", code: "alg_mismatch", rule: step(secChallenge, 7),
			comment: "ES384 claimed under the pinned ES256 server key.",
			build: func() string {
				si := b64u.Encode([]byte(hdr("ES384", serverKID, protocol.TypChallenge))) + "." + b64u.Encode([]byte(mustJSON(claimsOf(base()))))
				d := sha512.Sum384([]byte(si))
				return si + "." + b64u.Encode(rawECDSA(g.server.(*ecdsa.PrivateKey), crypto.SHA384, d[:], 32))
			}},
		{id: "challenge-header-jwk", code: "header_not_allowed", rule: step(secChallenge, 3),
			comment: "A challenge that embeds its own verification key.",
			build: func() string {
				jwk, _ := keys.MarshalJWK(g.impostor.Public(), "impostor", keys.ES256)
				h := `{"alg":"ES256","jwk":` + string(jwk) + `,"kid":"impostor","typ":"wsproof-challenge+jwt"}`
				return sign(h, mustJSON(claimsOf(base())), g.impostor, keys.ES256)
			}},
		{id: "challenge-reflected-response", code: "wrong_type", rule: step(secChallenge, 4),
			comment: "A client's response presented to another client as a challenge.",
			build: func() string {
				ch := base()
				return sign(hdr("ES256", serverKID, protocol.TypResponse), mustJSON(respClaims(ch, claimsOf(ch))), g.server, keys.ES256)
			}},
		{id: "challenge-stale", code: "challenge_expired", now: Now + 30 + 60, rule: step(secChallenge, 11),
			comment: "A challenge that expired 60 s ago (the allowed skew).", build: base},
		{id: "challenge-from-future", code: "challenge_expired", now: Now - 61, rule: step(secChallenge, 11),
			comment: "A challenge issued 61 s in the client's future.", build: base},
		{id: "challenge-wrong-issuer", code: "audience_mismatch", rule: step(secChallenge, 10),
			comment: "A challenge from another server identity under the pinned key.",
			build:   func() string { return g.serverChallenge(func(c *challengeClaims) { c.Iss = "wss://other.example/ws" }) }},
		{id: "challenge-lifetime-too-long", code: "malformed", rule: step(secChallenge, 9),
			comment: "exp - iat is 301 s; the maximum is 300.",
			build:   func() string { return g.serverChallenge(func(c *challengeClaims) { c.Exp = c.Iat + 301 }) }},
		{id: "challenge-nonce-short", code: "malformed", rule: step(secChallenge, 9),
			comment: "A 16-byte nonce; nonces are 32 bytes.",
			build: func() string {
				return g.serverChallenge(func(c *challengeClaims) { c.Nonce = b64u.Encode(derive("short nonce", 16)) })
			}},
		{id: "challenge-algs-unknown-name", code: "malformed", rule: step(secChallenge, 9),
			comment: "algs names an algorithm outside the closed list.",
			build: func() string {
				return g.serverChallenge(func(c *challengeClaims) { c.Algs = []string{"ES256", "HS256"} })
			}},
		{id: "challenge-algs-duplicate", code: "malformed", rule: step(secChallenge, 9),
			comment: "algs names ES256 twice.",
			build: func() string {
				return g.serverChallenge(func(c *challengeClaims) { c.Algs = []string{"ES256", "ES256"} })
			}},
		{id: "challenge-alg-not-offered", code: "alg_not_allowed", rule: step(secChallenge, 13),
			comment: "The server accepts only EdDSA; the client's key is ES256.",
			build:   func() string { return g.serverChallenge(func(c *challengeClaims) { c.Algs = []string{"EdDSA"} }) }},
		{id: "challenge-binding-without-tls", code: "channel_binding_mismatch", rule: step(secChallenge, 12),
			comment: "The challenge demands tls-exporter binding but the client's connection has no TLS (a relay downgraded it).",
			build: func() string {
				return g.serverChallenge(func(c *challengeClaims) { c.CB = protocol.BindingTLSExporter })
			}},
		{id: "challenge-binding-required-by-client", code: "channel_binding_required", cb: exporter, requireCB: true,
			rule: step(secChallenge, 12), comment: "The client demands channel binding; the challenge says none.", build: base},
		{id: "rechallenge-other-socket", code: "socket_mismatch", rule: step(secChallenge, 14),
			session: &vectorfile.Session{SID: b64u.Encode(derive("live socket", 16)), KID: "client-es256", Exp: Now + 300},
			comment: "A re-challenge on a live session whose sid is not the session's.", build: base},
		{id: "rechallenge-valid", rule: step(secChallenge, 15), session: &vectorfile.Session{SID: live.Sid, KID: "client-es256", Exp: live.Exp},
			comment: "A re-challenge on the live session, expiring with the session's token.", build: func() string { return liveChallenge }},
		{id: "rechallenge-outlives-token", code: "malformed", rule: step(secChallenge, 15),
			session: &vectorfile.Session{SID: live.Sid, KID: "client-es256", Exp: live.Exp - 1},
			comment: "A re-challenge that expires one second after the session's token.", build: func() string { return liveChallenge }},
		{id: "challenge-oversized", code: "too_large", rule: step(secChallenge, 1),
			comment: "A correctly signed challenge of more than 4096 bytes.",
			build: func() string {
				c := claimsOf(base())
				m := map[string]any{"iss": c.Iss, "sid": c.Sid, "nonce": c.Nonce, "iat": c.Iat, "exp": c.Exp, "algs": c.Algs, "cb": c.CB,
					"pad": strings.Repeat("a", 4000)}
				return sign(hdr("ES256", serverKID, protocol.TypChallenge), mustJSON(m), g.server, keys.ES256)
			}},
	}
	for _, c := range list {
		if c.client == "" {
			c.client = "client-es256"
		}
		v := vectorfile.Vector{ID: c.id, Comment: c.comment, Role: vectorfile.RoleClient, Rule: c.rule, Now: c.now,
			ClientKID: c.client, RequireChannelBinding: c.requireCB, Session: c.session, Challenge: c.build(), Error: c.code}
		if c.cb != nil {
			v.ChannelBinding = b64u.Encode(c.cb)
		}
		g.add(v)
	}
	return nil
}

// tokenClaims returns the claims of a token for client-es256 on sid.
func tokenClaims(sid string) *protocol.TokenClaims {
	return &protocol.TokenClaims{Issuer: identity, Subject: "device:client-es256", Audience: identity, SocketID: sid,
		ID: b64u.Encode(derive("jti", 16)), IssuedAt: Now, NotBefore: Now, Expiry: Now + 300,
		Cnf: protocol.Confirmation{JKT: ""}, Groups: []string{"devices", "admins"}, ClientKeyID: "client-es256"}
}

func (g *gen) tokenVectors() error {
	ex := g.f.Vectors[0] // exchange-es256
	sid := ex.Expected.SID
	cl := tokenClaims(sid)
	cl.Cnf.JKT = g.thumb("client-es256")
	inner := func(c *protocol.TokenClaims, typ string, key crypto.Signer, kid string, alg keys.Algorithm) string {
		return sign(hdr(string(alg), kid, typ), mustJSON(c), key, alg)
	}
	good := inner(cl, protocol.TypSession, g.server, serverKID, keys.ES256)
	tk := g.sk.Token[0]
	flip := func(tok string, seg int) string {
		p := strings.Split(tok, ".")
		b, _ := b64u.Decode(p[seg])
		b[0] ^= 1
		p[seg] = b64u.Encode(b)
		return strings.Join(p, ".")
	}
	type tv struct {
		id, comment, code string
		now               int64
		sid               string
		token             string
	}
	nyv := *cl
	nyv.NotBefore = Now + 120
	list := []tv{
		{"token-valid", "The token of exchange-es256, opened on its own socket.", "", 0, sid, ex.Token},
		{"token-valid-crafted", "A token built field by field as the spec describes, sealed with dir + A256GCM.", "", 0, sid,
			seal(good, tk, protocol.TypSessionE, "JWT")},
		{"token-valid-a256kw", "The token of exchange-eddsa-a256kw: sealed with the previous, A256KW, token key.", "", 0,
			g.f.Vectors[len(keys.Algorithms)+1].Expected.SID, g.f.Vectors[len(keys.Algorithms)+1].Token},
		{"token-other-socket", "A valid token presented on another socket.", "socket_mismatch", 0,
			b64u.Encode(derive("other socket", 16)), ex.Token},
		{"token-expired", "A valid token at its expiry time.", "token_expired", ex.Expected.Expiry, sid, ex.Token},
		{"token-not-yet-valid", "A token whose nbf is 120 s ahead.", "token_invalid", 0, sid,
			seal(inner(&nyv, protocol.TypSession, g.server, serverKID, keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-tampered-ciphertext", "One bit of the ciphertext flipped.", "token_invalid", 0, sid, flip(ex.Token, 3)},
		{"token-tampered-tag", "One bit of the authentication tag flipped.", "token_invalid", 0, sid, flip(ex.Token, 4)},
		{"token-tampered-iv", "One bit of the IV flipped.", "token_invalid", 0, sid, flip(ex.Token, 2)},
		{"token-dir-with-encrypted-key", "A dir token whose encrypted-key segment is not empty.", "token_invalid", 0, sid,
			func() string {
				p := strings.Split(ex.Token, ".")
				p[1] = b64u.Encode([]byte("x"))
				return strings.Join(p, ".")
			}()},
		{"token-tag-shifted", "The last ciphertext byte moved to the front of the tag: same bytes, wrong segment lengths.", "token_invalid", 0, sid,
			func() string {
				p := strings.Split(ex.Token, ".")
				ct, _ := b64u.Decode(p[3])
				tag, _ := b64u.Decode(p[4])
				p[3], p[4] = b64u.Encode(ct[:len(ct)-1]), b64u.Encode(append([]byte{ct[len(ct)-1]}, tag...))
				return strings.Join(p, ".")
			}()},
		{"token-unknown-signing-key", "The inner JWS is signed by a key that is not the server's.", "token_invalid", 0, sid,
			seal(inner(cl, protocol.TypSession, g.impostor, "impostor", keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-inner-alg-none", "The inner JWS is unsigned.", "token_invalid", 0, sid,
			seal(b64u.Encode([]byte(hdr("none", serverKID, protocol.TypSession)))+"."+b64u.Encode([]byte(mustJSON(cl)))+".", tk, protocol.TypSessionE, "JWT")},
		{"token-wrong-outer-typ", `The JWE typ is "JWT".`, "token_invalid", 0, sid, seal(good, tk, "JWT", "JWT")},
		{"token-missing-cty", "The JWE has no cty.", "token_invalid", 0, sid, seal(good, tk, protocol.TypSessionE, "")},
		{"token-wrong-inner-typ", "The inner JWS is typed as a challenge.", "token_invalid", 0, sid,
			seal(inner(cl, protocol.TypChallenge, g.server, serverKID, keys.ES256), tk, protocol.TypSessionE, "JWT")},
		{"token-unknown-token-key", "Sealed with a token key the server does not hold.", "token_invalid", 0, sid,
			seal(good, keys.TokenKey{KeyID: "token-unknown", Algorithm: keys.TokenDir, Secret: derive("unknown token key", 32)},
				protocol.TypSessionE, "JWT")},
		{"token-other-issuer", "A well-formed token issued for another server identity.", "token_invalid", 0, sid,
			func() string {
				c := *cl
				c.Issuer, c.Audience = "wss://other.example/ws", "wss://other.example/ws"
				return seal(inner(&c, protocol.TypSession, g.server, serverKID, keys.ES256), tk, protocol.TypSessionE, "JWT")
			}()},
		{"token-oversized", "A token of more than 8192 bytes.", "too_large", 0, sid,
			func() string {
				c := *cl
				c.Subject = strings.Repeat("s", 8192)
				return seal(inner(&c, protocol.TypSession, g.server, serverKID, keys.ES256), tk, protocol.TypSessionE, "JWT")
			}()},
	}
	for _, t := range list {
		v := vectorfile.Vector{ID: t.id, Comment: t.comment, Role: vectorfile.RoleToken, Rule: secToken, Now: t.now,
			SID: t.sid, Token: t.token, Error: t.code}
		if t.code == "" {
			v.Expected = &vectorfile.Expected{SID: t.sid, Subject: cl.Subject, Groups: cl.Groups, ClientKID: cl.ClientKeyID,
				JKT: cl.Cnf.JKT, Expiry: cl.Expiry}
			if t.id == "token-valid-a256kw" {
				x := *g.f.Vectors[len(keys.Algorithms)+1].Expected
				v.Expected = &x
			}
		}
		g.add(v)
	}
	return nil
}

type kv struct {
	id, comment, code string
	set               string
}

// keyVectors are registry key sets that must be refused at load time, and
// some that must load.
func (g *gen) keyVectors() error {
	entry := func(kid string, edit func(map[string]any)) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(g.publicJWK(kid)), &m); err != nil {
			panic(err)
		}
		m["sub"], m["groups"] = "device:"+kid, []string{"devices"}
		if edit != nil {
			edit(m)
		}
		return m
	}
	set := func(members ...any) string { return mustJSON(map[string]any{"keys": members}) }
	weak := rsaKey(1024, "weak rsa 1024")
	weakJWK, err := keys.MarshalJWK(&weak.PublicKey, "weak", keys.RS256)
	if err == nil {
		return fmt.Errorf("vectors: MarshalJWK accepted RSA-1024: %s", weakJWK)
	}
	weakEntry := entry("client-rs256", func(m map[string]any) {
		m["kid"], m["n"] = "weak", b64u.Encode(weak.N.Bytes())
	})
	list := []kv{
		{"key-valid", "A registry with one well-formed entry.", "", set(entry("client-es256", nil))},
		{"key-rsa-1024", "An RSA key of 1024 bits.", "bad_key", set(weakEntry)},
		{"key-rsa-exponent-3", "An RSA key with e = 3.", "bad_key", set(entry("client-rs256", func(m map[string]any) { m["e"] = "Aw" }))},
		{"key-off-curve", "A P-256 point that is not on the curve.", "bad_key", set(entry("client-es256", func(m map[string]any) {
			y, _ := b64u.Decode(m["y"].(string))
			y[31] ^= 1
			m["y"] = b64u.Encode(y)
		}))},
		{"key-alg-curve-mismatch", "A P-256 key registered for ES384.", "bad_key", set(entry("client-es256", func(m map[string]any) { m["alg"] = "ES384" }))},
		{"key-alg-kty-mismatch", "An Ed25519 key registered for ES256.", "bad_key", set(entry("client-eddsa", func(m map[string]any) { m["alg"] = "ES256" }))},
		{"key-rsa-registered-hs256", "An RSA key registered for HS256.", "bad_key", set(entry("client-rs256", func(m map[string]any) { m["alg"] = "HS256" }))},
		{"key-use-enc", `A key with "use":"enc".`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["use"] = "enc" }))},
		{"key-symmetric", "A symmetric (oct) key.", "bad_key", set(map[string]any{"kty": "oct", "kid": "shared", "alg": "HS256",
			"k": b64u.Encode(derive("oct", 32)), "sub": "device:shared", "groups": []string{"devices"}})},
		{"key-missing-alg", "A key without alg: one key, one algorithm, stated.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "alg") }))},
		{"key-missing-kid", "A key without kid.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "kid") }))},
		{"key-missing-sub", "A key without sub.", "bad_key", set(entry("client-es256", func(m map[string]any) { delete(m, "sub") }))},
		{"key-private-member", "A registry entry that holds the private key (d).", "bad_key", set(entry("client-es256", func(m map[string]any) {
			m["d"] = b64u.Encode(g.clients["client-es256"].(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32)))
		}))},
		{"key-duplicate-kid", "Two entries with one kid.", "bad_key", set(entry("client-es256", nil),
			entry("client-eddsa", func(m map[string]any) { m["kid"] = "client-es256" }))},
		{"key-duplicate-member", "An entry that names sub twice.", "bad_key", strings.Replace(set(entry("client-es256", nil)),
			`"sub":`, `"sub":"device:other","sub":`, 1)},
		{"key-groups-not-array", "groups is a string.", "bad_key", set(entry("client-es256", func(m map[string]any) { m["groups"] = "devices" }))},
	}
	list = append(list, g.importVectors(entry, set)...)
	for _, k := range list {
		g.add(vectorfile.Vector{ID: k.id, Comment: k.comment, Role: vectorfile.RoleKey, Rule: secRegistry, KeySet: k.set, Error: k.code})
	}
	return nil
}

// wycheproofROCAModulus is the RSA modulus of Project Wycheproof's
// json_web_key_test.json tcId 7, "rejectsKeyWithRocaVulnerability"
// (github.com/C2SP/wycheproof, Apache License 2.0; the key set is kept in
// keys/testdata/wycheproof): a modulus with the ROCA fingerprint.
const wycheproofROCAModulus = "AanFpofbj7KjD4Lf-N2hVMKR7yewSyXhhbirIMTGpfYEhZ_lnt5UoK98DnKIgArXGTu3MaW_HhFw16HGaTDUHqPrId7fe4r11CqRw09yBFuW79V8sYIwHdzCaWflUI6auImYbVfoN9_nD5n8N8SY9DwXw7mwZM9wREPXoDPgOoIWl6q_MPsp7n0zs3Z5ZaiQWOOzl1S9OhwAfSiiOwz6efnXEaxuTEtPd7BjSx7NaFka8Dx9U7YqXy2RFj1O9PjyaDGuRh7YXsX3iMUSP_wSyHQg_c_qHRtKUsNSGCT7OZg0hzm2KphtjnayKJvC64vAbROBR4Ubg6Bxg9IQVZ-QYyE"

// importVectors are the key vectors of issue 12: key import at the level of
// Project Wycheproof's json_web_key tests, one vector for each refused case
// of spec section "Load-time rules" that the older vectors did not cover.
func (g *gen) importVectors(entry func(string, func(map[string]any)) map[string]any, set func(...any) string) []kv {
	rsaPriv := g.clients["client-rs256"].(*rsa.PrivateKey)
	rsaPriv.Precompute()
	privMember := map[string]string{
		"p": b64u.Encode(rsaPriv.Primes[0].Bytes()), "q": b64u.Encode(rsaPriv.Primes[1].Bytes()),
		"dp": b64u.Encode(rsaPriv.Precomputed.Dp.Bytes()), "dq": b64u.Encode(rsaPriv.Precomputed.Dq.Bytes()),
		"qi": b64u.Encode(rsaPriv.Precomputed.Qinv.Bytes()),
	}
	// bump sets the unused bits of the last character of a base64url string
	// whose length is 2 or 3 modulo 4: the same octets, not canonical.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	bump := func(v string) string {
		if len(v)%4 < 2 {
			panic("vectors: no unused bits in " + v)
		}
		return v[:len(v)-1] + string(alphabet[strings.IndexByte(alphabet, v[len(v)-1])+1])
	}
	edit := func(kid, member string, f func(string) string) string {
		return set(entry(kid, func(m map[string]any) { m[member] = f(m[member].(string)) }))
	}
	newline := func(v string) string { return v[:2] + "\n" + v[2:] }
	ed := func(hexKey string) string {
		return set(entry("client-eddsa", func(m map[string]any) {
			b, err := hex.DecodeString(hexKey)
			if err != nil {
				panic(err)
			}
			m["x"] = b64u.Encode(b)
		}))
	}
	n := rsaPriv.N.Bytes()
	even := new(big.Int).SetBytes(n)
	even.SetBit(even, 0, 0)

	list := []kv{
		{"key-valid-key-ops-verify", `A registry entry with "key_ops":["verify"], the one key_ops a public signing key may have.`, "",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"verify"} }))},
		{"key-valid-rsa", "An RSA entry of 2048 bits and an RSA entry under PS256 of another key: one key, one algorithm, distinct keys.", "",
			set(entry("client-rs256", nil), entry("client-ps256", nil))},
	}
	for _, m := range []string{"p", "q", "dp", "dq", "qi"} {
		list = append(list, kv{"key-rsa-" + m + "-without-d",
			fmt.Sprintf("An RSA entry with the private member %s but no d: a private key with members missing, not a public key.", m),
			"bad_key", set(entry("client-rs256", func(mm map[string]any) { mm[m] = privMember[m] }))})
	}
	list = append(list, []kv{
		{"key-rsa-roca", "An RSA modulus with the ROCA fingerprint (CVE-2017-15361): Project Wycheproof json_web_key_test.json tcId 7.", "bad_key",
			set(map[string]any{"kty": "RSA", "n": wycheproofROCAModulus, "e": "AQAB", "kid": "kid-rsa-roca-sign", "alg": "RS256", "use": "sig",
				"sub": "device:roca", "groups": []string{"devices"}})},
		{"key-rsa-even-modulus", "An even RSA modulus.", "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["n"] = b64u.Encode(even.Bytes()) }))},
		{"key-rsa-n-leading-zero", "An RSA modulus with a leading zero octet: integers take the fewest octets.", "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["n"] = b64u.Encode(append([]byte{0}, n...)) }))},
		{"key-rsa-e-leading-zero", `"e":"AAEAAQ", 65537 with a leading zero octet.`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["e"] = "AAEAAQ" }))},
		{"key-rsa-n-unused-bits", "An RSA modulus whose last base64url character has unused bits set.", "bad_key", edit("client-rs256", "n", bump)},
		{"key-rsa-e-escaped-newline", `"e":"AQ\nAB": an escaped line break inside base64url.`, "bad_key", edit("client-rs256", "e", newline)},
		{"key-ec-x-unused-bits", "An EC x coordinate whose last base64url character has unused bits set.", "bad_key", edit("client-es256", "x", bump)},
		{"key-ec-y-unused-bits", "An EC y coordinate whose last base64url character has unused bits set.", "bad_key", edit("client-es256", "y", bump)},
		{"key-ec-y-escaped-newline", "An EC y coordinate with an escaped line break inside.", "bad_key", edit("client-es256", "y", newline)},
		{"key-okp-x-unused-bits", "An Ed25519 x whose last base64url character has unused bits set.", "bad_key", edit("client-eddsa", "x", bump)},
		{"key-okp-x-padded", "An Ed25519 x with base64 padding.", "bad_key", edit("client-eddsa", "x", func(v string) string { return v + "=" })},
		{"key-same-key-two-algorithms", "The same RSA key as RS256 under one kid and PS256 under another: one key, one algorithm.", "bad_key",
			set(entry("client-rs256", nil), entry("client-rs256", func(m map[string]any) { m["kid"], m["alg"] = "client-rs256-pss", "PS256" }))},
		{"key-same-key-two-kids", "The same EC key under two kids with one algorithm: one key, one identity.", "bad_key",
			set(entry("client-es256", nil), entry("client-es256", func(m map[string]any) { m["kid"] = "client-es256-alias" }))},
		{"key-kid-case-variant", "Two keys whose kids differ only in case.", "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["kid"] = "Device-1" }),
				entry("client-eddsa", func(m map[string]any) { m["kid"] = "device-1" }))},
		{"key-use-empty", `"use":"": present, so it must be "sig".`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["use"] = "" }))},
		{"key-d-null", `"d":null: a private-key member, whatever its value.`, "bad_key", set(entry("client-es256", func(m map[string]any) { m["d"] = nil }))},
		{"key-key-ops-sign", `"key_ops":["sign"] on a public key.`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"sign"} }))},
		{"key-key-ops-contradicts-use", `"key_ops":["encrypt"] with "use":"sig".`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"encrypt"} }))},
		{"key-key-ops-verify-twice", `"key_ops":["verify","verify"].`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["key_ops"] = []string{"verify", "verify"} }))},
		{"key-rsa-oth", `An RSA entry with "oth" (multi-prime RSA).`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["oth"] = []map[string]string{{"r": "Aw", "d": "AQ", "t": "AQ"}} }))},
		{"key-ec-k-member", `An EC entry with "k", a member of symmetric keys.`, "bad_key",
			set(entry("client-es256", func(m map[string]any) { m["k"] = b64u.Encode(derive("oct", 32)) }))},
		{"key-rsa-crv-member", `An RSA entry with "crv", a member of EC and OKP keys.`, "bad_key",
			set(entry("client-rs256", func(m map[string]any) { m["crv"] = "P-256" }))},
		{"key-ed25519-identity", "The Ed25519 identity point (order 1): R = identity, S = 0 verifies every message under it.", "bad_key",
			ed("0100000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-order-2", "The Ed25519 point (0, -1), of order 2.", "bad_key",
			ed("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"key-ed25519-order-4", "An Ed25519 point of order 4 (y = 0).", "bad_key",
			ed("0000000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-order-8", "An Ed25519 point of order 8.", "bad_key",
			ed("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")},
		{"key-ed25519-not-on-curve", "An Ed25519 key that is not a point: y = 2 has no x on the curve.", "bad_key",
			ed("0200000000000000000000000000000000000000000000000000000000000000")},
		{"key-ed25519-non-canonical", "An Ed25519 key encoding y = p + 3, a point of large order, not canonically (y must be below p).", "bad_key",
			ed("f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"key-ed25519-negative-zero", "The Ed25519 identity with the sign bit set on x = 0: non-canonical and of small order.", "bad_key",
			ed("0100000000000000000000000000000000000000000000000000000000000080")},
	}...)
	return list
}
