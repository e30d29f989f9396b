package conformance

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The client suite's cases that are one challenge, which a client must
// answer or refuse (spec section "Client: verifying a challenge"), are the
// table ChallengeCases, as the server suite's responses are ResponseCases:
// the suite makes each challenge on a live socket, and the generator of
// testdata/vectors.json makes the cases marked Vector with the vectors'
// keys and clock, as client-role vectors.

// ChallengeInput is what a challenge case is made from: the claims of a
// valid challenge on the client's socket, and the server's keys.
type ChallengeInput struct {
	// Claims are those of a valid challenge: the socket's sid, a fresh
	// nonce, iat the current time, exp 30 s later, every algorithm in
	// algs, and cb "none" (in a live run over TLS 1.3, "tls-exporter").
	Claims protocol.ChallengeClaims
	// Signing are the server signing keys the client pins, the current
	// first; Signing[1] is the previous one, still pinned.
	Signing []Key
	// Impostor is a server key that the client does not pin.
	Impostor Key
	// ClientAlg is the client key's algorithm.
	ClientAlg keys.Algorithm
	// TokenExp is, for a re-challenge, the exp of the session's token: the
	// accept's.
	TokenExp int64
	// Slack is how far a case's times go beyond a limit of the client's
	// clock (the 60 s skew allowance): none in a vector, which tests each
	// limit to the second; more in a live run, for clocks that differ.
	Slack time.Duration
	// Rand is the source of signatures' randomness and of made-up values.
	Rand io.Reader
}

// ChallengeCase is a case of the client suite that is one challenge: the
// client must refuse it with Code, or, when Code is empty, answer it and
// take the accept.
type ChallengeCase struct {
	Case
	// Rechallenge: the message is a re-challenge on an open session, whose
	// token expires at ChallengeInput.TokenExp; else it is the socket's
	// first message.
	Rechallenge bool
	// Vector: the case is also a client-role vector of
	// testdata/vectors.json, with the same id, rule, code and comment.
	Vector bool
	// NoTLS: the case needs a connection without TLS; a run over TLS
	// (ClientTarget.TLSConfig) leaves it out.
	NoTLS bool
	// Build makes the message. An error means that the case does not apply
	// to in: its text says why.
	Build func(in *ChallengeInput) (string, error)

	// assumes is what the case takes for granted about the client, for the
	// report.
	assumes func(in *ChallengeInput) string
}

// claimsObj is the input's claims as an editable object.
func (in *ChallengeInput) claims() jobj { return claimsObj(&in.Claims) }

// randB64 is n octets of in.Rand in base64url.
func (in *ChallengeInput) randB64(n int) string {
	b := make([]byte, n)
	io.ReadFull(in.Rand, b)
	return b64u.Encode(b)
}

// signed is a challenge by k under header h (nil: k's correct header) with
// the given claims (nil: the input's).
func (in *ChallengeInput) signed(k *Key, h, claims jobj) (string, error) {
	if h == nil {
		h = header(string(k.Alg), k.ID, protocol.TypChallenge)
	}
	if claims == nil {
		claims = in.claims()
	}
	return k.sign(in.Rand, h.String(), claims.String())
}

// valid is a valid challenge by the current key.
func (in *ChallengeInput) valid() (string, error) { return in.signed(&in.Signing[0], nil, nil) }

// secs is d in whole seconds.
func secs(d time.Duration) int64 { return int64(d / time.Second) }

// Groups of the client table.
const (
	gChallenge = "Challenge verification"
	gClientSM  = "Client state machine"
)

// ChallengeCases is the table of the client suite's challenge cases, in
// the order they run (ClientCases lists them among the others).
func ChallengeCases() []ChallengeCase {
	var cs []ChallengeCase
	typ := protocol.TypChallenge
	add := func(group, id, section string, code protocol.Code, vector bool, title string, build func(in *ChallengeInput) (string, error)) *ChallengeCase {
		cs = append(cs, ChallengeCase{Case: Case{ID: id, Group: group, Section: section, Title: title, Code: code}, Vector: vector, Build: build})
		return &cs[len(cs)-1]
	}
	// edited is a challenge by the current key whose claims edit changes.
	edited := func(edit func(o jobj, in *ChallengeInput) jobj) func(in *ChallengeInput) (string, error) {
		return func(in *ChallengeInput) (string, error) { return in.signed(&in.Signing[0], nil, edit(in.claims(), in)) }
	}
	// underHeader is a challenge by the current key under the header h
	// makes.
	underHeader := func(h func(k *Key) jobj) func(in *ChallengeInput) (string, error) {
		return func(in *ChallengeInput) (string, error) { return in.signed(&in.Signing[0], h(&in.Signing[0]), nil) }
	}
	// valid's segments, for the cases that rework them.
	segments := func(in *ChallengeInput) (h, pl, sig string, err error) {
		msg, err := in.valid()
		h, pl, sig, _ = splitJWS(msg)
		return h, pl, sig, err
	}
	// The skew allowance the cases assume: the spec's default, and the
	// vectors' server.clock_skew.
	const skew = 60

	// Valid challenges: the client must answer.
	add(gControl, "challenge-valid", secChallenge, "", true, "A valid challenge from the current server key.",
		func(in *ChallengeInput) (string, error) { return in.valid() })
	add(gControl, "challenge-valid-previous-server-key", cstep(6), "", true,
		"A valid challenge signed by the previous (rotated) server key, still pinned.",
		func(in *ChallengeInput) (string, error) {
			if len(in.Signing) < 2 {
				return "", skipf("needs a previous server signing key")
			}
			return in.signed(&in.Signing[1], nil, nil)
		})
	add(gControl, "challenge-unknown-claim", "Conventions: Unknown members", "", false,
		"A valid challenge with a claim the client does not know: it must be ignored.",
		edited(func(o jobj, _ *ChallengeInput) jobj { return o.set("x-future", `{"a":[1,2]}`) }))
	add(gControl, "challenge-header-order", secChallenge, "", false,
		"A valid challenge whose header lists typ, kid, alg: member order carries no meaning.",
		underHeader(func(k *Key) jobj { return jobj{{"typ", jstr(typ)}, {"kid", jstr(k.ID)}, {"alg", jstr(string(k.Alg))}} }))
	add(gControl, "challenge-sid-32-octets", secSockets, "", false, "A valid challenge with a 32-octet sid: receivers accept 16 to 32.",
		edited(func(o jobj, in *ChallengeInput) jobj { return o.set("sid", jstr(in.randB64(32))) }))
	c := add(gControl, "challenge-within-skew", cstep(11), "", false,
		"A challenge that expired 30 s ago: within the default 60 s clock skew allowance.",
		edited(func(o jobj, in *ChallengeInput) jobj {
			return o.set("iat", fmt.Sprint(in.Claims.Iat-60)).set("exp", fmt.Sprint(in.Claims.Iat-30))
		}))
	c.assumes = func(*ChallengeInput) string { return "the client's default clock skew of 60 s" }

	// Challenges the client must refuse, in the order of the procedure.
	add(gChallenge, "challenge-oversized", cstep(1), protocol.CodeTooLarge, true, "A correctly signed challenge of more than 4096 bytes.",
		edited(func(o jobj, _ *ChallengeInput) jobj { return o.set("pad", jstr(strings.Repeat("w", 4200))) }))
	add(gChallenge, "challenge-truncated", cstep(2), protocol.CodeMalformed, false, "A valid challenge cut in the middle of its payload.",
		func(in *ChallengeInput) (string, error) {
			h, pl, _, err := segments(in)
			return h + "." + pl[:len(pl)/2], err
		})
	add(gChallenge, "challenge-noncanonical-signature", cstep(2), protocol.CodeMalformed, false,
		"The signature's last base64url character has non-zero unused bits.",
		func(in *ChallengeInput) (string, error) {
			h, pl, sig, err := segments(in)
			if nc := nonCanonicalLast(sig); nc != "" {
				sig = nc
			} else {
				sig += "="
			}
			return h + "." + pl + "." + sig, err
		})
	add(gChallenge, "challenge-json-serialization-spaced", cstep(2), protocol.CodeMalformed, false,
		"The flattened JWS JSON serialization after a space: it does not begin with '{', so it is verified as a challenge, and is malformed.",
		func(in *ChallengeInput) (string, error) {
			h, pl, sig, err := segments(in)
			return " " + jobj{{"protected", jstr(h)}, {"payload", jstr(pl)}, {"signature", jstr(sig)}}.String(), err
		})
	add(gChallenge, "challenge-duplicate-header-member", cstep(2), protocol.CodeMalformed, false, "The header names alg twice.",
		underHeader(func(k *Key) jobj {
			return append(jobj{{"alg", jstr(string(k.Alg))}}, header(string(k.Alg), k.ID, typ)...)
		}))
	add(gChallenge, "challenge-header-jwk", cstep(3), protocol.CodeHeaderNotAllowed, true,
		"A challenge that embeds its own verification key.", // an impostor key, which signs it
		func(in *ChallengeInput) (string, error) {
			k := &in.Impostor
			j, err := keys.MarshalJWK(k.Signer.Public(), k.ID, k.Alg)
			if err != nil {
				return "", err
			}
			return in.signed(k, header(string(k.Alg), k.ID, typ, member{"jwk", strings.TrimSpace(string(j))}), nil)
		})
	add(gChallenge, "challenge-header-jku", cstep(3), protocol.CodeHeaderNotAllowed, false, "A jku header pointing at an attacker's key set.",
		underHeader(func(k *Key) jobj {
			return header(string(k.Alg), k.ID, typ, member{"jku", jstr("https://wsproof-probe.invalid/jwks.json")})
		}))
	add(gChallenge, "challenge-header-crit", cstep(3), protocol.CodeHeaderNotAllowed, false, "A crit header.",
		underHeader(func(k *Key) jobj { return header(string(k.Alg), k.ID, typ, member{"crit", `["exp"]`}) }))
	add(gChallenge, "challenge-missing-kid", cstep(3), protocol.CodeMalformed, false, "No kid header.",
		underHeader(func(k *Key) jobj { return header(string(k.Alg), k.ID, typ).del("kid") }))
	add(gChallenge, "challenge-wrong-typ", cstep(4), protocol.CodeWrongType, false, `"typ":"JWT" instead of wsproof-challenge+jwt.`,
		underHeader(func(k *Key) jobj { return header(string(k.Alg), k.ID, "JWT") }))
	add(gChallenge, "challenge-reflected-response", cstep(4), protocol.CodeWrongType, true,
		"A client's response presented to another client as a challenge.", // typed as a response, signed by the pinned server key
		func(in *ChallengeInput) (string, error) {
			ch, err := in.valid()
			k := &in.Signing[0]
			c := in.Claims
			claims := jobj{{"aud", jstr(c.Iss)}, {"sid", jstr(c.Sid)}, {"nonce", jstr(c.Nonce)}, {"cha", jstr(sha256b64(ch))}}
			msg, err2 := in.signed(k, header(string(k.Alg), k.ID, protocol.TypResponse), claims)
			return msg, errors.Join(err, err2)
		})
	unsigned := func(alg string) func(in *ChallengeInput) (string, error) {
		return func(in *ChallengeInput) (string, error) {
			return signingInput(header(alg, in.Signing[0].ID, typ).String(), in.claims().String()) + ".", nil
		}
	}
	add(gChallenge, "challenge-alg-none", cstep(5), protocol.CodeAlgNotAllowed, true, `An unsigned challenge, "alg":"none".`, unsigned("none"))
	add(gChallenge, "challenge-alg-none-capitalized", cstep(5), protocol.CodeAlgNotAllowed, false, `"alg":"None".`, unsigned("None"))
	add(gChallenge, "challenge-hs256-server-public-key", cstep(5), protocol.CodeAlgNotAllowed, true,
		"A challenge MACed with HS256 keyed by the PEM of the server's public key.",
		func(in *ChallengeInput) (string, error) {
			k := &in.Signing[0]
			si := signingInput(header("HS256", k.ID, typ).String(), in.claims().String())
			mac, err := hs256(k.Signer.Public(), si)
			return si + "." + b64u.Encode(mac), err
		})
	add(gChallenge, "challenge-empty-kid", cstep(6), protocol.CodeMalformed, false, "An empty kid.",
		underHeader(func(k *Key) jobj { return header(string(k.Alg), "", typ) }))
	add(gChallenge, "challenge-impostor-key", cstep(6), protocol.CodeUnknownKey, true, "A challenge signed by a key the client does not pin.",
		func(in *ChallengeInput) (string, error) { return in.signed(&in.Impostor, nil, nil) })
	add(gChallenge, "challenge-sibling-alg", cstep(7), protocol.CodeAlgMismatch, true,
		"Another algorithm of its key type claimed under the pinned server key (ES384 under an ES256 key), with a matching signature.",
		func(in *ChallengeInput) (string, error) {
			k := &in.Signing[0]
			alg := sibling(k.Alg, nil)
			si := signingInput(header(string(alg), k.ID, typ).String(), in.claims().String())
			sig, err := k.signAs(in.Rand, alg, si)
			return si + "." + b64u.Encode(sig), err
		})
	add(gChallenge, "challenge-impostor-same-kid", cstep(8), protocol.CodeBadSignature, true,
		"A challenge naming the pinned server kid but signed by an impostor key.",
		func(in *ChallengeInput) (string, error) {
			return in.signed(&Key{ID: in.Signing[0].ID, Alg: in.Impostor.Alg, Signer: in.Impostor.Signer}, nil, nil)
		})
	add(gChallenge, "challenge-signature-truncated", cstep(8), protocol.CodeBadSignature, false,
		"A valid challenge whose signature lost its last three octets.",
		func(in *ChallengeInput) (string, error) {
			h, pl, sig, err := segments(in)
			raw, _ := b64u.Decode(sig)
			return h + "." + pl + "." + b64u.Encode(raw[:len(raw)-3]), err
		})
	add(gChallenge, "challenge-der-signature", cstep(8), protocol.CodeBadSignature, false,
		"A correct ECDSA signature in ASN.1 DER instead of raw r||s.",
		func(in *ChallengeInput) (string, error) {
			k := &in.Signing[0]
			si := signingInput(header(string(k.Alg), k.ID, typ).String(), in.claims().String())
			der, err := k.derSig(in.Rand, si)
			return si + "." + b64u.Encode(der), err
		})
	for _, c := range []struct {
		id, title string
		vector    bool
		edit      func(o jobj, in *ChallengeInput) jobj
	}{
		{"challenge-lifetime-too-long", "exp - iat is 301 s; the maximum is 300.", true,
			func(o jobj, in *ChallengeInput) jobj { return o.set("exp", fmt.Sprint(in.Claims.Iat+301)) }},
		{"challenge-exp-before-iat", "exp is before iat.", false,
			func(o jobj, in *ChallengeInput) jobj {
				return o.set("iat", fmt.Sprint(in.Claims.Iat+20)).set("exp", fmt.Sprint(in.Claims.Iat+10))
			}},
		{"challenge-iat-fraction", "iat is not an integer.", false,
			func(o jobj, in *ChallengeInput) jobj { return o.set("iat", fmt.Sprintf("%d.5", in.Claims.Iat)) }},
		{"challenge-nonce-short", "A 16-byte nonce; nonces are 32 bytes.", true,
			func(o jobj, in *ChallengeInput) jobj { return o.set("nonce", jstr(in.randB64(16))) }},
		{"challenge-sid-short", "An 8-octet sid; 16 to 32 are allowed.", false,
			func(o jobj, in *ChallengeInput) jobj { return o.set("sid", jstr(in.randB64(8))) }},
		{"challenge-algs-unknown-name", "algs names an algorithm outside the closed list.", true,
			func(o jobj, _ *ChallengeInput) jobj { return o.set("algs", `["ES256","HS256"]`) }},
		{"challenge-algs-duplicate", "algs names ES256 twice.", true,
			func(o jobj, _ *ChallengeInput) jobj {
				return o.set("algs", `["ES256","ES256","EdDSA","ES384","ES512","RS256","PS256"]`)
			}},
		{"challenge-algs-empty", "algs is empty.", false, func(o jobj, _ *ChallengeInput) jobj { return o.set("algs", `[]`) }},
		{"challenge-cb-unknown", `cb is "tls-unique", neither of the two values.`, false,
			func(o jobj, _ *ChallengeInput) jobj { return o.set("cb", jstr("tls-unique")) }},
		{"challenge-missing-iss", "No iss claim.", false, func(o jobj, _ *ChallengeInput) jobj { return o.del("iss") }},
		{"challenge-duplicate-claim", "The payload names nonce twice.", false,
			func(o jobj, in *ChallengeInput) jobj { return o.add("nonce", jstr(in.randB64(protocol.NonceSize))) }},
	} {
		add(gChallenge, c.id, cstep(9), protocol.CodeMalformed, c.vector, c.title, edited(c.edit))
	}
	add(gChallenge, "challenge-trailing-data", cstep(9), protocol.CodeMalformed, false, "Bytes after the payload's JSON object.",
		func(in *ChallengeInput) (string, error) {
			k := &in.Signing[0]
			return k.sign(in.Rand, header(string(k.Alg), k.ID, typ).String(), in.claims().String()+" []")
		})
	add(gChallenge, "challenge-wrong-issuer", cstep(10), protocol.CodeAudienceMismatch, true,
		"A challenge from another server identity under the pinned key.",
		edited(func(o jobj, _ *ChallengeInput) jobj { return o.set("iss", jstr("wss://wsproof-probe.invalid/ws")) }))
	add(gChallenge, "challenge-stale", cstep(11), protocol.CodeChallengeExpired, true,
		"A challenge that expired 60 s ago, the allowed skew (a live run adds its slack, for clocks that differ).",
		edited(func(o jobj, in *ChallengeInput) jobj {
			exp := in.Claims.Iat - skew - secs(in.Slack)
			return o.set("iat", fmt.Sprint(exp-30)).set("exp", fmt.Sprint(exp))
		}))
	add(gChallenge, "challenge-from-future", cstep(11), protocol.CodeChallengeExpired, true,
		"A challenge issued 61 s in the client's future, past the allowed 60 s skew (a live run adds its slack, for clocks that differ).",
		edited(func(o jobj, in *ChallengeInput) jobj {
			iat := in.Claims.Iat + skew + 1 + secs(in.Slack)
			return o.set("iat", fmt.Sprint(iat)).set("exp", fmt.Sprint(iat+30))
		}))
	add(gChallenge, "challenge-binding-without-tls", cstep(12), protocol.CodeChannelBindingMismatch, true,
		"The challenge demands tls-exporter binding but the client's connection has no TLS (a relay downgraded it).",
		edited(func(o jobj, _ *ChallengeInput) jobj { return o.set("cb", jstr(protocol.BindingTLSExporter)) })).NoTLS = true
	c = add(gChallenge, "challenge-alg-not-offered", cstep(13), protocol.CodeAlgNotAllowed, true,
		"algs offers every algorithm but the client key's.",
		edited(func(o jobj, in *ChallengeInput) jobj {
			var algs []string
			for _, a := range keys.Algorithms {
				if a != in.ClientAlg {
					algs = append(algs, jstr(string(a)))
				}
			}
			return o.set("algs", "["+strings.Join(algs, ",")+"]")
		}))
	c.assumes = func(in *ChallengeInput) string { return "the client signs with " + string(in.ClientAlg) }
	add(gClientSM, "challenge-json-serialization", secClientSM, protocol.CodeUnexpectedMessage, false,
		"A valid challenge in flattened JWS JSON serialization: it begins with '{', so the state machine refuses it as an accept out of turn.",
		func(in *ChallengeInput) (string, error) {
			h, pl, sig, err := segments(in)
			return jobj{{"protected", jstr(h)}, {"payload", jstr(pl)}, {"signature", jstr(sig)}}.String(), err
		})

	// Re-challenges on an open session (spec section "Refresh").
	re := func(group, id, section string, code protocol.Code, vector bool, title string, build func(in *ChallengeInput) (string, error)) {
		add(group, id, section, code, vector, title, build).Rechallenge = true
	}
	re(gControl, "rechallenge-valid", cstep(15), "", true,
		"A re-challenge on the live session, expiring with the session's token.",
		edited(func(o jobj, in *ChallengeInput) jobj { return o.set("exp", fmt.Sprint(in.TokenExp)) }))
	re(gClientSM, "rechallenge-other-socket", cstep(14), protocol.CodeSocketMismatch, true,
		"A re-challenge on a live session whose sid is not the session's.",
		edited(func(o jobj, in *ChallengeInput) jobj { return o.set("sid", jstr(in.randB64(protocol.SocketIDSize))) }))
	re(gClientSM, "rechallenge-outlives-token", cstep(15), protocol.CodeMalformed, true,
		"A re-challenge that expires one second after the session's token.",
		edited(func(o jobj, in *ChallengeInput) jobj { return o.set("exp", fmt.Sprint(in.TokenExp+1)) }))
	re(gClientSM, "rechallenge-impostor-key", cstep(6), protocol.CodeUnknownKey, false, "A re-challenge signed by a key the client does not pin.",
		func(in *ChallengeInput) (string, error) { return in.signed(&in.Impostor, nil, nil) })
	re(gClientSM, "rechallenge-stale", cstep(11), protocol.CodeChallengeExpired, false, "A re-challenge that expired an hour ago.",
		edited(func(o jobj, in *ChallengeInput) jobj {
			return o.set("iat", fmt.Sprint(in.Claims.Iat-3600)).set("exp", fmt.Sprint(in.Claims.Iat-3570))
		}))
	re(gClientSM, "rechallenge-oversized", secClientSM, protocol.CodeTooLarge, false, "A text message of more than 4096 octets on the open socket.",
		edited(func(o jobj, _ *ChallengeInput) jobj { return o.set("pad", jstr(strings.Repeat("w", 4200))) }))

	for i := range cs {
		c := &cs[i]
		switch {
		case c.ID == "challenge-valid":
			c.Rows = []string{"C3", "C8", "C12"}
		case c.ID == "rechallenge-valid":
			c.Rows = []string{"C19", "C21"}
		case c.Rechallenge && c.Code == protocol.CodeTooLarge:
			c.Rows = []string{"C15"}
		case c.Rechallenge:
			c.Rows = []string{"C19"}
		case c.Code == protocol.CodeTooLarge:
			c.Rows = []string{"C5"}
		case c.Code == protocol.CodeUnexpectedMessage:
			c.Rows = []string{"C7"} // a message that begins with '{': an accept out of turn
		case c.Code == "":
			c.Rows = []string{"C8", "C12"}
		default:
			c.Rows = []string{"C8"} // a challenge that fails verification
		}
		c.Expected = "the client completes the exchange"
		if c.Code != "" {
			c.Expected = expClose(c.Code) + ", no response"
		}
	}
	return cs
}
