package vectors

import (
	"fmt"
	"slices"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The client-role vectors are the cases of the conformance package's
// table that it marks Vector (conformance.ChallengeCases), made here with
// the vector server's keys, at the vectors' clock, to the second (no
// slack), and the one case that only a vector can state: a client that
// requires channel binding over TLS.

// challengeInput is the input of case id's challenge: a valid challenge's
// claims at Now, the vector server's current and previous signing keys, and
// for a re-challenge a session token that expires with that challenge.
func (g *gen) challengeInput(id string) *conformance.ChallengeInput {
	c := protocol.ChallengeClaims{Iss: fixture.Identity, Sid: b64u.Encode(fixture.Derive("client vector sid", protocol.SocketIDSize)),
		Nonce: b64u.Encode(fixture.Derive("client vector nonce", protocol.NonceSize)), Iat: Now, Exp: Now + 30,
		Algs: g.f.Server.Algs, CB: protocol.BindingNone}
	return &conformance.ChallengeInput{Claims: c,
		Signing: []conformance.Key{
			{ID: fixture.ServerKID, Alg: keys.ES256, Signer: fixture.DetSigner{Signer: g.Server}},
			{ID: fixture.PrevServerKID, Alg: keys.EdDSA, Signer: fixture.DetSigner{Signer: g.PrevSrv}},
		},
		Impostor:  conformance.Key{ID: "impostor", Alg: keys.ES256, Signer: fixture.DetSigner{Signer: g.Impostor}},
		ClientAlg: g.Algs[es256], TokenExp: c.Exp, Rand: fixture.Stream("challenge " + id)}
}

func (g *gen) clientVectors() error {
	for _, cc := range conformance.ChallengeCases() {
		if !cc.Vector {
			continue
		}
		in := g.challengeInput(cc.ID)
		msg, err := cc.Build(in)
		if err != nil {
			return fmt.Errorf("vectors: %s: %w", cc.ID, err)
		}
		v := vectorfile.Vector{ID: cc.ID, Comment: cc.Title, Role: vectorfile.RoleClient, Rule: cc.Section, ClientKID: es256,
			Challenge: msg, Error: string(cc.Code)}
		if cc.Rechallenge {
			v.Session = &vectorfile.Session{SID: in.Claims.Sid, KID: es256, Exp: in.TokenExp}
		}
		g.add(v)
	}
	// A client that requires channel binding, on a TLS connection, and the
	// valid challenge of challenge-valid, which does not demand it: the
	// suite's misbehaving server has no TLS, so this case is the vectors'
	// own.
	i := slices.IndexFunc(g.f.Vectors, func(v vectorfile.Vector) bool { return v.ID == "challenge-valid" })
	if i < 0 {
		return fmt.Errorf("vectors: no challenge-valid vector")
	}
	g.add(vectorfile.Vector{ID: "challenge-binding-required-by-client", Comment: "The client demands channel binding; the challenge says none.",
		Role: vectorfile.RoleClient, Rule: step(secChallenge, 12), ClientKID: es256, RequireChannelBinding: true,
		ChannelBinding: b64u.Encode(fixture.Exporter), Challenge: g.f.Vectors[i].Challenge, Error: string(protocol.CodeChannelBindingRequired)})
	return nil
}
