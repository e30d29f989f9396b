package protocol

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
)

// loadVectors reads testdata/vectors.json strictly and builds the server and
// keys it describes.
type vectorEnv struct {
	f       *vectorfile.File
	srv     *Server
	pinned  *keys.PublicSet
	clients map[string]crypto.Signer
	algs    map[string]keys.Algorithm
}

func loadVectors(t testing.TB) *vectorEnv {
	t.Helper()
	f, err := vectorfile.Load(filepath.Join("..", vectorfile.Path))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keys.ParseServerKeys(f.Keys.ServerPrivate)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := keys.ParseRegistry(f.Keys.Registry)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := keys.ParsePublicSet(f.Keys.ServerPublic)
	if err != nil {
		t.Fatal(err)
	}
	var algs []keys.Algorithm
	for _, a := range f.Server.Algs {
		alg, err := keys.ParseAlgorithm(a)
		if err != nil {
			t.Fatal(err)
		}
		algs = append(algs, alg)
	}
	srv, err := NewServer(&ServerConfig{Identity: f.Server.Identity, Keys: sk, Registry: reg, Algorithms: algs,
		RequiredGroups: f.Server.RequiredGroups, ChallengeLifetime: time.Duration(f.Server.ChallengeLifetime) * time.Second,
		TokenLifetime: time.Duration(f.Server.TokenLifetime) * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	env := &vectorEnv{f: f, srv: srv, pinned: pinned, clients: map[string]crypto.Signer{}, algs: map[string]keys.Algorithm{}}
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(f.Keys.ClientPrivate, &set); err != nil {
		t.Fatal(err)
	}
	for _, raw := range set.Keys {
		k, kid, alg, err := keys.ParseJWK(raw)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			t.Fatalf("client key %q is not private", kid)
		}
		env.clients[kid], env.algs[kid] = s, alg
	}
	return env
}

func (env *vectorEnv) client(t testing.TB, kid string, requireCB bool) *Client {
	t.Helper()
	c, err := NewClient(&ClientConfig{KeyID: kid, Signer: env.clients[kid], Algorithm: env.algs[kid], ServerKeys: env.pinned,
		ServerIdentity: env.f.Server.Identity, RequireChannelBinding: requireCB,
		ClockSkew: time.Duration(env.f.Server.ClockSkew) * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVectors runs every vector in testdata/vectors.json through this
// package and fails on any difference from its expected outcome.
func TestVectors(t *testing.T) {
	env := loadVectors(t)
	if len(env.f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	invalid := 0
	seen := map[string]bool{}
	for _, v := range env.f.Vectors {
		if seen[v.ID] {
			t.Fatalf("duplicate vector id %q", v.ID)
		}
		seen[v.ID] = true
		if v.Result == vectorfile.Invalid {
			invalid++
			if !Code(v.Error).Known() {
				t.Fatalf("%s: unknown error code %q", v.ID, v.Error)
			}
		} else if v.Result != vectorfile.Valid || v.Error != "" {
			t.Fatalf("%s: result %q with error %q", v.ID, v.Result, v.Error)
		}
		t.Run(v.ID, func(t *testing.T) { env.run(t, v) })
	}
	if invalid < 40 {
		t.Fatalf("only %d negative vectors, the spec promises at least 40", invalid)
	}
}

func (env *vectorEnv) run(t *testing.T, v vectorfile.Vector) {
	now := time.Unix(v.Now, 0)
	var cb []byte
	if v.ChannelBinding != "" {
		var err error
		if cb, err = b64u.Decode(v.ChannelBinding); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	switch v.Role {
	case vectorfile.RoleExchange:
		env.runExchange(t, v, now, cb)
		return
	case vectorfile.RoleServer:
		var prev *Session
		if v.Session != nil {
			prev = &Session{SocketID: v.Session.SID, KeyID: v.Session.KID}
		}
		h, rerr := env.srv.resume([]byte(v.Challenge), cb, prev)
		if rerr != nil {
			t.Fatalf("the vector's challenge is not the server's: %v", rerr)
		}
		var sess *Session
		sess, _, err = h.ReadResponse([]byte(v.Response), fixedRand(), now)
		if err == nil {
			checkSession(t, v.Expected, sess.SocketID, sess.Subject, sess.Groups, sess.KeyID, sess.Thumbprint, sess.Expiry.Unix())
		}
	case vectorfile.RoleClient:
		c := env.client(t, v.ClientKID, v.RequireChannelBinding)
		h := c.Handshake()
		if v.Session != nil {
			h = c.Refresh(&ClientSession{SocketID: v.Session.SID})
		}
		_, err = h.ReadChallenge([]byte(v.Challenge), fixedRand(), now, cb)
	case vectorfile.RoleToken:
		var c *TokenClaims
		c, err = env.srv.Tokens().Open(v.Token, v.SID, now)
		if err == nil {
			checkSession(t, v.Expected, c.SocketID, c.Subject, c.Groups, c.ClientKeyID, c.Cnf.JKT, c.Expiry)
		}
	case vectorfile.RoleKey:
		_, err = keys.ParseRegistry(v.KeySet)
		if err != nil && !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("registry error %v does not wrap keys.ErrInvalidKey", err)
		}
		if err != nil {
			err = wrap(CodeBadKey, err)
		}
	default:
		t.Fatalf("unknown role %q", v.Role)
	}
	if got := CodeOf(err); got != Code(v.Error) {
		t.Fatalf("got code %q (%v), want %q", got, err, v.Error)
	}
}

func (env *vectorEnv) runExchange(t *testing.T, v vectorfile.Vector, now time.Time, cb []byte) {
	c := env.client(t, v.Expected.ClientKID, false)
	ch := c.Handshake()
	if _, err := ch.ReadChallenge([]byte(v.Challenge), fixedRand(), now, cb); err != nil {
		t.Fatalf("client refuses the challenge: %v", err)
	}
	h, err := env.srv.resume([]byte(v.Challenge), cb, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := h.ReadResponse([]byte(v.Response), fixedRand(), now)
	if err != nil {
		t.Fatalf("server refuses the response: %v", err)
	}
	checkSession(t, v.Expected, sess.SocketID, sess.Subject, sess.Groups, sess.KeyID, sess.Thumbprint, sess.Expiry.Unix())
	cs, err := ch.ReadAccept([]byte(v.Accept), now)
	if err != nil {
		t.Fatalf("client refuses the accept: %v", err)
	}
	if cs.Token != v.Token || cs.Subject != v.Expected.Subject || !slices.Equal(cs.Groups, v.Expected.Groups) {
		t.Fatalf("accept does not carry the vector's token and session")
	}
	tc, err := env.srv.Tokens().Open(v.Token, v.Expected.SID, now)
	if err != nil {
		t.Fatalf("token does not open: %v", err)
	}
	checkSession(t, v.Expected, tc.SocketID, tc.Subject, tc.Groups, tc.ClientKeyID, tc.Cnf.JKT, tc.Expiry)
	if tc.ChannelBindingHash != v.Expected.ChannelBindingHash {
		t.Fatalf("cbh = %q, want %q", tc.ChannelBindingHash, v.Expected.ChannelBindingHash)
	}
}

func checkSession(t *testing.T, x *vectorfile.Expected, sid, sub string, groups []string, kid, jkt string, exp int64) {
	t.Helper()
	if x == nil {
		t.Fatal("valid vector without expected session")
	}
	if sid != x.SID || sub != x.Subject || !slices.Equal(groups, x.Groups) || kid != x.ClientKID || jkt != x.JKT || exp != x.Expiry {
		t.Fatalf("session (%s %s %v %s %s %d) differs from expected %+v", sid, sub, groups, kid, jkt, exp, *x)
	}
}

// fixedRand is the randomness for steps whose output the vectors do not fix.
func fixedRand() *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{0x42}, 1<<12)) }
