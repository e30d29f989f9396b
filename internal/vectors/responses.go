package vectors

import (
	"fmt"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The server-role vectors are the cases of the conformance package's
// table that it marks Vector (conformance.ResponseCases), made here with
// the vectors' keys, clock and randomness, and the one valid case that
// only a vector can state.

const es256 = "client-es256"

// serverCases are the server-role vectors' cases, in the order of the file.
func (g *gen) serverCases() []conformance.ResponseCase {
	var out []conformance.ResponseCase
	for _, rc := range conformance.ResponseCases() {
		if rc.Vector {
			out = append(out, rc)
		}
	}
	// The token expiry that a key's validity caps (spec section "Claims")
	// is seen only in the issued session, which the suite cannot know to
	// expect: this case is the vectors' own. Valid objects are made by
	// package protocol.
	capped := conformance.ResponseCase{
		Case: conformance.Case{ID: "response-valid-token-capped-by-key", Section: secSession,
			Title: "A valid response by a key whose validity ends in 120 s: the token expires then, not after the 300 s token lifetime."},
		Build: func(in *conformance.ResponseInput) (string, error) {
			resp, err := g.Client("client-expiring", false).Handshake().ReadChallenge([]byte(in.Challenge), in.Rand, fixture.Time(), in.Exporter)
			return string(resp), err
		},
	}
	return append(out, capped)
}

// responseInput is the input of case id's message in answer to challenge,
// with the vectors' keys: client-es256 is the accepted key, and the other
// client keys of the registry are the fixtures their names say.
func (g *gen) responseInput(id, challenge string, exp []byte) *conformance.ResponseInput {
	key := func(kid string) conformance.Key {
		return conformance.Key{ID: kid, Alg: g.Algs[kid], Signer: fixture.DetSigner{Signer: g.Clients[kid]}}
	}
	ptr := func(kid string) *conformance.Key { k := key(kid); return &k }
	return &conformance.ResponseInput{Challenge: challenge, Claims: fixture.ClaimsOf(challenge), Exporter: exp, Key: key(es256),
		Fixtures: conformance.Fixtures{
			Denied: ptr("client-visitor"), Revoked: ptr("client-revoked"), NotYetValid: ptr("client-not-yet-valid"),
			Expired: ptr("client-expired"), CBRequired: ptr("client-cb-required"), Unregistered: ptr("client-unregistered"),
			Registered: []conformance.Key{key("client-es384"), key("client-es512"), key("client-rs256"), key("client-ps256"), key("client-eddsa")},
		},
		Token: g.f.Vectors[0].Token, // exchange-es256's
		Rand:  fixture.Stream("response " + id),
	}
}

func (g *gen) serverVectors() error {
	for _, rc := range g.serverCases() {
		var cb []byte
		if rc.Binding == protocol.BindingTLSExporter {
			cb = fixture.Exporter
		}
		challenge, c := g.challengeFor(rc.ID, cb)
		msg, err := rc.Build(g.responseInput(rc.ID, challenge, fixture.Exporter))
		if err != nil {
			return fmt.Errorf("vectors: %s: %w", rc.ID, err)
		}
		v := vectorfile.Vector{ID: rc.ID, Comment: rc.Title, Role: vectorfile.RoleServer, Rule: rc.Section,
			Challenge: challenge, Response: msg, Error: string(rc.Code)}
		if rc.AtExpiry {
			v.Now = c.Exp
		}
		if rc.Refresh {
			// A re-challenge on a live socket: same sid as the session.
			v.Session = &vectorfile.Session{KID: es256, SID: c.Sid}
		}
		if cb != nil {
			v.ChannelBinding = b64u.Encode(cb)
		}
		if rc.Code == "" {
			kid := es256
			if rc.ID == "response-valid-token-capped-by-key" {
				kid = "client-expiring"
			}
			e, _ := g.Reg.Lookup(kid)
			v.Expected = &vectorfile.Expected{SID: c.Sid, Subject: e.Subject, Groups: e.Groups, ClientKID: kid,
				JKT: g.thumb(kid), Expiry: min(Now+g.f.Server.TokenLifetime, expiry(e))}
		}
		g.add(v)
	}
	return nil
}

// expiry is the end of an entry's validity, or never.
func expiry(e *keys.Entry) int64 {
	if e.NotAfter.IsZero() {
		return 1 << 62
	}
	return e.NotAfter.Unix()
}

// liveCases are the server-role vectors' cases in live form (see Live).
func (g *gen) liveCases() []LiveCase {
	var out []LiveCase
	for _, rc := range g.serverCases() {
		lc := LiveCase{ID: rc.ID, Code: string(rc.Code), TLS: rc.Binding == protocol.BindingTLSExporter,
			Build: func(challenge, exp []byte) []byte {
				msg, err := rc.Build(g.responseInput(rc.ID, string(challenge), exp))
				if err != nil {
					panic(fmt.Sprintf("vectors: %s: %v", rc.ID, err))
				}
				return []byte(msg)
			}}
		if rc.AtExpiry {
			lc.Late = time.Duration(g.f.Server.ChallengeLifetime) * time.Second
		}
		if rc.Refresh {
			lc.SessionKID = es256
		}
		out = append(out, lc)
	}
	return out
}
