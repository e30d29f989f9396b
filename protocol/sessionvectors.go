package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectorkeys"
	"github.com/wsproof/wsproof/keys"
)

// RunSessionVectors runs every script of a session vector file (spec section
// "Session vectors", testdata/session-vectors.json) through this package's
// state machines, ServerConn and ClientConn. A result is OK when every step
// produced exactly the expected actions and state; Got then names the first
// step that did not. It returns an error only when the file itself cannot be
// used.
func RunSessionVectors(data []byte) ([]VectorResult, error) {
	f, err := vectorfile.ParseSession(data)
	if err != nil {
		return nil, err
	}
	env, err := newSessionEnv(f)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := make([]VectorResult, 0, len(f.Vectors))
	for _, v := range f.Vectors {
		if seen[v.ID] {
			return nil, fmt.Errorf("protocol: duplicate session vector id %q", v.ID)
		}
		seen[v.ID] = true
		const want = "the script's actions"
		err := env.run(&v)
		got := want
		if err != nil {
			got = err.Error()
		}
		out = append(out, VectorResult{ID: v.ID, Role: v.Role, Want: want, Got: got, OK: err == nil})
	}
	return out, nil
}

type sessionEnv struct {
	f *vectorfile.SessionFile
	*vectorkeys.Keys
}

func newSessionEnv(f *vectorfile.SessionFile) (*sessionEnv, error) {
	k, err := vectorkeys.Load(f.Keys)
	if err != nil {
		return nil, err
	}
	return &sessionEnv{f: f, Keys: k}, nil
}

func (env *sessionEnv) server(v *vectorfile.SessionVector, reg keys.Registry) (*Server, error) {
	sc, secs := env.f.ServerFor(v), vectorfile.Seconds
	var algs []keys.Algorithm
	for _, a := range sc.Algs {
		alg, err := keys.ParseAlgorithm(a)
		if err != nil {
			return nil, err
		}
		algs = append(algs, alg)
	}
	return NewServer(&ServerConfig{
		Identity: sc.Identity, Keys: env.Server, Registry: reg, Algorithms: algs, RequiredGroups: sc.RequiredGroups,
		ChallengeLifetime: secs(sc.ChallengeLifetime), TokenLifetime: secs(sc.TokenLifetime),
		RefreshBefore: secs(sc.RefreshBefore), HandshakeTimeout: secs(sc.HandshakeTimeout),
		PingInterval: secs(sc.PingInterval), MaxMessageSize: sc.MaxMessageSize, MaxQueued: sc.MaxQueued,
	})
}

func (env *sessionEnv) client(v *vectorfile.SessionVector, kid string, allowUnbound bool) (*Client, error) {
	s, ok := env.Clients[kid]
	if !ok {
		return nil, fmt.Errorf("no private key for %q", kid)
	}
	cc, secs := env.f.ClientFor(v), vectorfile.Seconds
	return NewClient(&ClientConfig{KeyID: kid, Signer: s, Algorithm: env.Algs[kid], ServerKeys: env.Pinned,
		ServerIdentity: env.f.Server.Identity, InsecureAllowUnbound: allowUnbound, ClockSkew: secs(cc.ClockSkew),
		HandshakeTimeout: secs(cc.HandshakeTimeout), PingInterval: secs(cc.PingInterval),
		MaxMessageSize: cc.MaxMessageSize})
}

// sessionRand is the randomness of a script: none of its outcomes depends on
// it, so any stream will do; a seeded one keeps runs reproducible.
func sessionRand() *rand.ChaCha8 { return rand.NewChaCha8([32]byte{'w', 's', 'p', 'r', 'o', 'o', 'f'}) }

// script drives one machine through a vector: steps feed inputs, check
// actions. The role-specific parts are in the closures.
type script struct {
	v       *vectorfile.SessionVector
	sid     string
	lastIn  []byte // the last challenge the server sent (server role) or received (client role)
	lastOut []byte
}

func (env *sessionEnv) run(v *vectorfile.SessionVector) error {
	var exporter []byte
	if v.Start.ChannelBinding != "" {
		var err error
		if exporter, err = b64u.Decode(v.Start.ChannelBinding); err != nil {
			return errors.New("bad channel_binding in vector")
		}
	}
	switch v.Role {
	case vectorfile.SessionServerRole:
		return env.runServer(v, exporter)
	case vectorfile.SessionClientRole:
		return env.runClient(v, exporter)
	}
	return fmt.Errorf("unknown role %q", v.Role)
}

func (env *sessionEnv) runServer(v *vectorfile.SessionVector, exporter []byte) error {
	reg := vectorkeys.NewRegistry(env.Registry)
	srv, err := env.server(v, reg)
	if err != nil {
		return err
	}
	r := sessionRand()
	hs, err := srv.resume([]byte(v.Start.Challenge), exporter, nil)
	if err != nil {
		return fmt.Errorf("the start challenge is not the server's: %w", err)
	}
	c := &ServerConn{s: srv, rand: r, exporter: exporter, state: StateChallenged, hs: hs,
		deadline: time.Unix(v.Start.At, 0).Add(srv.cfg.HandshakeTimeout).UnixNano()}
	c.arm()
	lastChallenge := []byte(v.Start.Challenge)
	for i, st := range v.Steps {
		now := time.Unix(st.At, 0)
		in := &st.Input
		acts, done, err := feedCommon(c, in, now)
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		switch {
		case done:
		case in.Type == vectorfile.InRespond:
			cl, err := env.client(v, in.KID, exporter == nil)
			if err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
			h := cl.Handshake()
			if sess := c.Session(); sess != nil {
				h = cl.Refresh(&ClientSession{SocketID: sess.SocketID, Expiry: sess.Expiry})
			}
			resp, err := h.ReadChallenge(lastChallenge, r, now, exporter)
			if err != nil {
				return fmt.Errorf("step %d: the client refuses the server's challenge: %w", i, err)
			}
			acts = c.HandleMessage(now, true, resp)
		case in.Type == vectorfile.InRegistry:
			if err := reg.Apply(in); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
			acts = c.Recheck(now)
		case in.Type == vectorfile.InSend:
			p, err := vectorfile.Payload(false, in.Data, in.Size)
			if err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
			acts, _ = c.Send(now, p)
		case in.Type == vectorfile.InWritten:
			c.Written(int(in.Size))
		case in.Type == vectorfile.InShutdown:
			acts = c.Shutdown(now)
		default:
			return fmt.Errorf("step %d: input %q is not a server input", i, in.Type)
		}
		check := func(a Action, e *vectorfile.SessionEvent) error {
			if !a.Text || a.Kind != ActionSend {
				return nil
			}
			switch e.Message {
			case vectorfile.MsgChallenge:
				cl, err := claimsOfChallenge(env.Pinned, a.Data)
				if err != nil {
					return err
				}
				if cl.iat != st.At || cl.exp != e.Exp || cl.sid != c.SocketID() {
					return fmt.Errorf("challenge iat %d exp %d sid %s, want %d %d %s", cl.iat, cl.exp, cl.sid, st.At, e.Exp, c.SocketID())
				}
				lastChallenge = a.Data
			case vectorfile.MsgAccept:
				exp, err := acceptExp(a.Data)
				if err != nil {
					return err
				}
				if exp != e.Exp {
					return fmt.Errorf("accept exp %d, want %d", exp, e.Exp)
				}
			}
			return nil
		}
		if err := compareActions(acts, st.Expect, false, check); err != nil {
			return fmt.Errorf("step %d (%s at %d): %w", i, in.Type, st.At, err)
		}
		if got := c.State().String(); got != st.State {
			return fmt.Errorf("step %d (%s at %d): state %s, want %s", i, in.Type, st.At, got, st.State)
		}
	}
	return nil
}

func (env *sessionEnv) runClient(v *vectorfile.SessionVector, exporter []byte) error {
	cl, err := env.client(v, v.Start.ClientKID, v.Start.AllowUnbound)
	if err != nil {
		return err
	}
	reg := vectorkeys.NewRegistry(env.Registry)
	srv, err := env.server(v, reg)
	if err != nil {
		return err
	}
	r := sessionRand()
	c, _ := cl.NewConn(r, time.Unix(v.Start.At, 0), time.Time{}, v.Start.TLS, exporter)
	var lastChallenge []byte
	for i, st := range v.Steps {
		now := time.Unix(st.At, 0)
		in := &st.Input
		if in.Type == vectorfile.InText && (len(in.Data) == 0 || in.Data[0] != '{') && in.Size == 0 {
			lastChallenge = []byte(in.Data)
		}
		acts, done, err := feedCommon(c, in, now)
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		switch {
		case done:
		case in.Type == vectorfile.InSend:
			p, err := vectorfile.Payload(false, in.Data, in.Size)
			if err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
			acts, _ = c.Send(now, p)
		default:
			return fmt.Errorf("step %d: input %q is not a client input", i, in.Type)
		}
		check := func(a Action, e *vectorfile.SessionEvent) error {
			if a.Kind != ActionSend || !a.Text {
				return nil
			}
			if e.Message != vectorfile.MsgResponse {
				return fmt.Errorf("sent a response, want %s", e.Message)
			}
			// The response must be one the server accepts for the
			// challenge it answers.
			var prev *Session
			if s := c.Session(); s != nil {
				prev = &Session{SocketID: s.SocketID, KeyID: v.Start.ClientKID}
			}
			ct, err := claimsOfChallenge(env.Pinned, lastChallenge)
			if err != nil {
				return err
			}
			var inForce []byte // the server's exporter, when the challenge binds to it
			if ct.cb == BindingTLSExporter {
				inForce = exporter
			}
			h, err := srv.resume(lastChallenge, inForce, prev)
			if err != nil {
				return err
			}
			if _, _, err := h.ReadResponse(a.Data, r, now); err != nil {
				return fmt.Errorf("the server refuses the response: %w", err)
			}
			return nil
		}
		if err := compareActions(acts, st.Expect, true, check); err != nil {
			return fmt.Errorf("step %d (%s at %d): %w", i, in.Type, st.At, err)
		}
		if got := c.State().String(); got != st.State {
			return fmt.Errorf("step %d (%s at %d): state %s, want %s", i, in.Type, st.At, got, st.State)
		}
	}
	return nil
}

// machine is what the two state machines have in common: the inputs that
// mean the same for both roles.
type machine interface {
	HandleMessage(now time.Time, text bool, data []byte) []Action
	HandlePong(now time.Time) []Action
	HandleTimeout(now time.Time) []Action
	HandleWriteError(now time.Time, timeout bool) []Action
	HandlePeerClose(now time.Time, code int) []Action
	HandleLost(now time.Time, err error) []Action
	Close(now time.Time) []Action
}

// feedCommon feeds m an input both roles share and reports whether in was
// one.
func feedCommon(m machine, in *vectorfile.SessionInput, now time.Time) ([]Action, bool, error) {
	switch in.Type {
	case vectorfile.InText, vectorfile.InBinary:
		p, err := vectorfile.Payload(in.Type == vectorfile.InText, in.Data, in.Size)
		if err != nil {
			return nil, true, err
		}
		return m.HandleMessage(now, in.Type == vectorfile.InText, p), true, nil
	case vectorfile.InPong:
		return m.HandlePong(now), true, nil
	case vectorfile.InTimer:
		return m.HandleTimeout(now), true, nil
	case vectorfile.InWriteTimeout:
		return m.HandleWriteError(now, true), true, nil
	case vectorfile.InClose:
		return m.Close(now), true, nil
	case vectorfile.InPeerClose:
		return m.HandlePeerClose(now, in.Code), true, nil
	case vectorfile.InLost:
		return m.HandleLost(now, errors.New("connection lost")), true, nil
	}
	return nil, false, nil
}

// compareActions checks that acts, without timers, are exactly want; check
// inspects each control message sent.
func compareActions(acts []Action, want []vectorfile.SessionEvent, client bool, check func(Action, *vectorfile.SessionEvent) error) error {
	var got []Action
	for _, a := range acts {
		if a.Kind != ActionTimer {
			got = append(got, a)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("actions [%s], want [%s]", describeActions(got), describeEvents(want))
	}
	for i := range got {
		a, e := got[i], &want[i]
		mismatch := fmt.Errorf("action %d is %s, want %s", i, describeAction(a), describeEvent(e))
		switch e.Action {
		case vectorfile.DoSend:
			if a.Kind != ActionSend || a.Text != (e.Message != vectorfile.MsgBinary) {
				return mismatch
			}
			if !a.Text {
				p, err := vectorfile.Payload(false, e.Data, e.Size)
				if err != nil || !bytes.Equal(p, a.Data) {
					return mismatch
				}
			}
			if err := check(a, e); err != nil {
				return fmt.Errorf("action %d: %w", i, err)
			}
		case vectorfile.DoPing:
			if a.Kind != ActionPing {
				return mismatch
			}
		case vectorfile.DoDeliver:
			p, err := vectorfile.Payload(false, e.Data, e.Size)
			if a.Kind != ActionDeliver || err != nil || !bytes.Equal(p, a.Data) {
				return mismatch
			}
		case vectorfile.DoAccepted:
			if a.Kind != ActionAccepted {
				return mismatch
			}
		case vectorfile.DoClose:
			if a.Kind != ActionClose || string(a.Code) != e.Error || a.CloseCode != e.CloseCode {
				return mismatch
			}
			if client && (e.Retry == nil || *e.Retry != a.Retry) {
				return mismatch
			}
			if !client && e.Retry != nil {
				return errors.New("a server-role close has no retry")
			}
		default:
			return fmt.Errorf("unknown action %q", e.Action)
		}
	}
	return nil
}

func describeAction(a Action) string {
	switch a.Kind {
	case ActionSend:
		if a.Text {
			return fmt.Sprintf("send text %.40q", a.Data)
		}
		return fmt.Sprintf("send binary (%d octets)", len(a.Data))
	case ActionDeliver:
		return fmt.Sprintf("deliver (%d octets)", len(a.Data))
	case ActionClose:
		return fmt.Sprintf("close %q %d retry=%v", a.Code, a.CloseCode, a.Retry)
	}
	return a.Kind.String()
}

func describeActions(acts []Action) string {
	var s []string
	for _, a := range acts {
		s = append(s, describeAction(a))
	}
	return strings.Join(s, ", ")
}

func describeEvent(e *vectorfile.SessionEvent) string {
	switch e.Action {
	case vectorfile.DoSend:
		return "send " + e.Message
	case vectorfile.DoClose:
		r := ""
		if e.Retry != nil {
			r = fmt.Sprintf(" retry=%v", *e.Retry)
		}
		return fmt.Sprintf("close %q %d%s", e.Error, e.CloseCode, r)
	}
	return e.Action
}

func describeEvents(es []vectorfile.SessionEvent) string {
	var s []string
	for i := range es {
		s = append(s, describeEvent(&es[i]))
	}
	return strings.Join(s, ", ")
}

type challengeTimes struct {
	sid, cb  string
	iat, exp int64
}

// claimsOfChallenge verifies a challenge with the pinned set and returns its
// socketID and times.
func claimsOfChallenge(pinned *keys.PublicSet, msg []byte) (*challengeTimes, error) {
	j, err := parseJWSHeader(msg, TypChallenge)
	if err != nil {
		return nil, err
	}
	pk, ok := pinned.Lookup(j.kid)
	if !ok || pk.Algorithm != j.alg {
		return nil, errors.New("challenge not signed by a pinned key")
	}
	payload, err := j.verify(pk.Key)
	if err != nil {
		return nil, err
	}
	o, err := parseObject(payload)
	if err != nil {
		return nil, err
	}
	var t challengeTimes
	if t.sid, err = o.str("sid"); err != nil {
		return nil, err
	}
	if t.iat, err = o.date("iat"); err != nil {
		return nil, err
	}
	if t.exp, err = o.date("exp"); err != nil {
		return nil, err
	}
	if t.cb, err = o.str("cb"); err != nil {
		return nil, err
	}
	return &t, nil
}

func acceptExp(msg []byte) (int64, error) {
	o, err := parseObject(msg)
	if err != nil {
		return 0, err
	}
	return o.date("exp")
}

// sessionRows lists the rows of the spec's state tables that session vectors
// exercise, for the spec test.
func sessionRows(f *vectorfile.SessionFile) []string {
	var rows []string
	for _, v := range f.Vectors {
		rows = append(rows, v.Rows...)
	}
	slices.Sort(rows)
	return slices.Compact(rows)
}
