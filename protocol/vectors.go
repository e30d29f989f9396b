package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectorkeys"
	"github.com/wsproof/wsproof/keys"
)

// VectorResult is the outcome of one test vector: Want is the expected
// outcome ("valid" or an error code), Got what this package produced.
type VectorResult struct {
	ID, Role  string
	Want, Got string
	OK        bool
}

// RunVectors runs every vector of a vector file (spec section "Test
// vectors", testdata/vectors.json) through this package, as spec section
// "Running a vector" describes. It returns an error only when the file
// itself cannot be used: unknown fields, duplicate ids, keys that do not
// load.
func RunVectors(data []byte) ([]VectorResult, error) {
	f, err := vectorfile.Parse(data)
	if err != nil {
		return nil, err
	}
	env, err := newVectorEnv(f)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := make([]VectorResult, 0, len(f.Vectors))
	for _, v := range f.Vectors {
		if seen[v.ID] {
			return nil, fmt.Errorf("protocol: duplicate vector id %q", v.ID)
		}
		seen[v.ID] = true
		want := vectorfile.Valid
		if v.Result == vectorfile.Invalid {
			want = v.Error
		}
		if (v.Result != vectorfile.Valid && v.Result != vectorfile.Invalid) || (v.Result == vectorfile.Valid) != (v.Error == "") ||
			(v.Error != "" && !Code(v.Error).Known()) {
			return nil, fmt.Errorf("protocol: vector %q has result %q and error %q", v.ID, v.Result, v.Error)
		}
		got := env.run(v)
		out = append(out, VectorResult{ID: v.ID, Role: v.Role, Want: want, Got: got, OK: got == want})
	}
	return out, nil
}

type vectorEnv struct {
	f   *vectorfile.File
	srv *Server
	*vectorkeys.Keys
}

func newVectorEnv(f *vectorfile.File) (*vectorEnv, error) {
	k, err := vectorkeys.Load(f.Keys)
	if err != nil {
		return nil, err
	}
	var algs []keys.Algorithm
	for _, a := range f.Server.Algs {
		alg, err := keys.ParseAlgorithm(a)
		if err != nil {
			return nil, err
		}
		algs = append(algs, alg)
	}
	srv, err := NewServer(&ServerConfig{Identity: f.Server.Identity, Keys: k.Server, Registry: k.Registry, Algorithms: algs,
		RequiredGroups: f.Server.RequiredGroups, ChallengeLifetime: vectorfile.Seconds(f.Server.ChallengeLifetime),
		TokenLifetime: vectorfile.Seconds(f.Server.TokenLifetime)})
	if err != nil {
		return nil, err
	}
	return &vectorEnv{f: f, srv: srv, Keys: k}, nil
}

func (env *vectorEnv) client(kid string, requireCB bool) (*Client, error) {
	s, ok := env.Clients[kid]
	if !ok {
		return nil, fmt.Errorf("no private key for %q", kid)
	}
	// A vector names whether the client requires channel binding, which a
	// client derives from its connection and configuration (spec section
	// "When channel binding is required").
	return NewClient(&ClientConfig{KeyID: kid, Signer: s, Algorithm: env.Algs[kid], ServerKeys: env.Pinned,
		ServerIdentity: env.f.Server.Identity, InsecureAllowUnbound: !requireCB,
		ClockSkew: time.Duration(env.f.Server.ClockSkew) * time.Second})
}

// outcome turns an error into a vector outcome: "valid", a spec code, or a
// description of a failure that has no code (which never matches).
func outcome(err error) string {
	if err == nil {
		return vectorfile.Valid
	}
	if c := CodeOf(err); c != "" {
		return string(c)
	}
	return "error without a code: " + err.Error()
}

func (env *vectorEnv) run(v vectorfile.Vector) string {
	now := time.Unix(v.Now, 0)
	var cb []byte
	if v.ChannelBinding != "" {
		var err error
		if cb, err = b64u.Decode(v.ChannelBinding); err != nil {
			return "bad channel_binding in vector"
		}
	}
	switch v.Role {
	case vectorfile.RoleExchange:
		return outcome(env.runExchange(v, now, cb))
	case vectorfile.RoleServer:
		var prev *Session
		if v.Session != nil {
			prev = &Session{SocketID: v.Session.SID, KeyID: v.Session.KID}
		}
		h, err := env.srv.resume([]byte(v.Challenge), cb, prev)
		if err != nil {
			return "the vector's challenge is not the server's: " + err.Error()
		}
		sess, _, err := h.ReadResponse([]byte(v.Response), vectorRand(), now)
		if err == nil {
			err = checkSession(v.Expected, sess.SocketID, sess.Subject, sess.Groups, sess.KeyID, sess.Thumbprint, sess.Expiry.Unix())
		}
		return outcome(err)
	case vectorfile.RoleClient:
		c, err := env.client(v.ClientKID, v.RequireChannelBinding)
		if err != nil {
			return err.Error()
		}
		h := c.Handshake()
		if v.Session != nil {
			if v.Session.Exp == 0 {
				return "a client re-challenge vector needs session.exp"
			}
			h = c.Refresh(&ClientSession{SocketID: v.Session.SID, Expiry: time.Unix(v.Session.Exp, 0)})
		}
		_, err = h.ReadChallenge([]byte(v.Challenge), vectorRand(), now, cb)
		return outcome(err)
	case vectorfile.RoleToken:
		c, err := env.srv.Tokens().Open(v.Token, v.SID, now)
		if err == nil {
			err = checkSession(v.Expected, c.SocketID, c.Subject, c.Groups, c.ClientKeyID, c.Cnf.JKT, c.Expiry)
		}
		return outcome(err)
	case vectorfile.RoleKey:
		_, err := keys.ParseRegistry([]byte(v.KeySet))
		switch {
		case err == nil:
			return vectorfile.Valid
		case errors.Is(err, keys.ErrInvalidKey):
			return string(CodeBadKey)
		}
		return outcome(err)
	}
	return "unknown role " + v.Role
}

func (env *vectorEnv) runExchange(v vectorfile.Vector, now time.Time, cb []byte) error {
	if v.Expected == nil {
		return errors.New("exchange vector without expected session")
	}
	c, err := env.client(v.Expected.ClientKID, false)
	if err != nil {
		return err
	}
	ch := c.Handshake()
	if _, err := ch.ReadChallenge([]byte(v.Challenge), vectorRand(), now, cb); err != nil {
		return fmt.Errorf("client refuses the challenge: %w", err)
	}
	h, err := env.srv.resume([]byte(v.Challenge), cb, nil)
	if err != nil {
		return err
	}
	sess, _, err := h.ReadResponse([]byte(v.Response), vectorRand(), now)
	if err != nil {
		return fmt.Errorf("server refuses the response: %w", err)
	}
	if err := checkSession(v.Expected, sess.SocketID, sess.Subject, sess.Groups, sess.KeyID, sess.Thumbprint, sess.Expiry.Unix()); err != nil {
		return err
	}
	cs, err := ch.ReadAccept([]byte(v.Accept), now)
	if err != nil {
		return fmt.Errorf("client refuses the accept: %w", err)
	}
	if cs.Token != v.Token || cs.Subject != v.Expected.Subject || !slices.Equal(cs.Groups, v.Expected.Groups) {
		return errors.New("accept does not carry the vector's token and session")
	}
	tc, err := env.srv.Tokens().Open(v.Token, v.Expected.SID, now)
	if err != nil {
		return fmt.Errorf("token does not open: %w", err)
	}
	if err := checkSession(v.Expected, tc.SocketID, tc.Subject, tc.Groups, tc.ClientKeyID, tc.Cnf.JKT, tc.Expiry); err != nil {
		return err
	}
	if tc.ChannelBindingHash != v.Expected.ChannelBindingHash {
		return fmt.Errorf("cbh %q, want %q", tc.ChannelBindingHash, v.Expected.ChannelBindingHash)
	}
	return nil
}

func checkSession(x *vectorfile.Expected, sid, sub string, groups []string, kid, jkt string, exp int64) error {
	if x == nil {
		return errors.New("valid outcome without an expected session in the vector")
	}
	if sid != x.SID || sub != x.Subject || !slices.Equal(groups, x.Groups) || kid != x.ClientKID || jkt != x.JKT || exp != x.Expiry {
		return fmt.Errorf("session (%s %s %v %s %s %d) differs from the expected one", sid, sub, groups, kid, jkt, exp)
	}
	return nil
}

// vectorRand is the randomness for steps whose output the vectors do not fix.
func vectorRand() *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{0x42}, 1<<12)) }
