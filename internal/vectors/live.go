package vectors

import (
	"crypto"
	"time"

	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
)

// LiveCase is a server-role vector that a transport test replays against a
// running server: Build answers the challenge the server really sent, the way
// the vector answers its recorded one, so every rule is exercised over the
// wire with the code the vector names.
type LiveCase struct {
	ID   string
	Code string // expected error code; "" for a valid response

	// TLS marks cases that need tls-exporter binding in force.
	TLS bool
	// Late is how long after the challenge was issued the server must
	// believe the response arrives.
	Late time.Duration
	// SessionKID, when set, means the case answers a re-challenge on a
	// session authenticated with this client key.
	SessionKID string

	// Build returns the response to challenge; exporter is the client's
	// tls-exporter value, or nil.
	Build func(challenge, exporter []byte) []byte
}

// LiveFixture is the server configuration the cases assume.
type LiveFixture struct {
	Identity       string
	RequiredGroups []string
	Keys           *keys.ServerKeys
	Registry       *keys.Set
	Clients        map[string]crypto.Signer // private keys of the registry entries, by key id
	Cases          []LiveCase
}

// Live returns the server-role cases of the vectors in live form.
func Live() (*LiveFixture, error) {
	g, err := newGen()
	if err != nil {
		return nil, err
	}
	if err := g.exchanges(); err != nil { // the token-as-response case needs a token
		return nil, err
	}
	lf := &LiveFixture{Identity: fixture.Identity, RequiredGroups: g.f.Server.RequiredGroups, Keys: g.SK, Registry: g.Reg, Clients: g.Clients}
	lf.Cases = g.liveCases()
	return lf, nil
}
