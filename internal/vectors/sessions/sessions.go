// Package sessions makes the session vectors (spec section "Session
// vectors"; testdata/session-vectors.json): scripts through the state
// machines of both roles, in the vectors' fixed world (package fixture).
package sessions

import (
	"fmt"
	"strings"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/fixture"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Now is the vectors' clock, at which every script starts.
const Now = fixture.Now

// The configuration of the session vectors' server and client. The Ping
// interval is longer than any script, so that Pings appear only in the
// scripts that override it.
const (
	sessTokenLife   = 300
	sessRefresh     = 60
	sessChallenge   = 30
	sessHandshake   = 10
	sessPingNever   = 3600
	sessMaxMessage  = 65536
	sessMaxQueued   = 1 << 20
	sessClockSkew   = 60
	sessAuth        = Now + 1 // every server script's response arrives here
	sessTokenExp    = sessAuth + sessTokenLife
	sessRefreshTime = sessTokenExp - sessRefresh
)

// sessionGen builds the session vector file. Expected actions are written
// out here from the spec's state tables, never computed by running the
// implementation; only the messages a script feeds in (challenges, accepts,
// responses) are made with package protocol.
type sessionGen struct {
	*fixture.Fixture
	f   *vectorfile.SessionFile
	srv *protocol.Server // the session vectors' server, for making messages
}

// Generate builds the session vector file.
func Generate() (*vectorfile.SessionFile, error) {
	g, err := fixture.New()
	if err != nil {
		return nil, err
	}
	srv, err := protocol.NewServer(&protocol.ServerConfig{
		Identity: fixture.Identity, Keys: g.SK, Registry: g.Reg, RequiredGroups: []string{"devices"},
		ChallengeLifetime: sessChallenge * time.Second, TokenLifetime: sessTokenLife * time.Second,
		RefreshBefore: sessRefresh * time.Second, HandshakeTimeout: sessHandshake * time.Second,
		PingInterval: sessPingNever * time.Second, MaxMessageSize: sessMaxMessage, MaxQueued: sessMaxQueued,
	})
	if err != nil {
		return nil, err
	}
	s := &sessionGen{Fixture: g, srv: srv}
	s.f = &vectorfile.SessionFile{
		Spec:    "wsproof-v1",
		License: "CC0-1.0",
		Comment: "Session vectors for wsproof v1 (spec/wsproof-v1.md, section Session vectors): scripts through the " +
			"state machines of both roles. All private keys in this file are test keys, published on purpose.",
		Generator: "go test ./internal/vectors -update",
		Server: vectorfile.SessionServer{
			Identity: fixture.Identity, Algs: g.Config.Algs, RequiredGroups: []string{"devices"},
			ChallengeLifetime: sessChallenge, TokenLifetime: sessTokenLife, RefreshBefore: sessRefresh,
			HandshakeTimeout: sessHandshake, PingInterval: sessPingNever, MaxMessageSize: sessMaxMessage,
			MaxQueued: sessMaxQueued,
		},
		Client: vectorfile.SessionClient{ClockSkew: sessClockSkew, HandshakeTimeout: sessHandshake,
			PingInterval: sessPingNever, MaxMessageSize: sessMaxMessage},
		Keys: g.Keys,
	}
	s.serverScripts()
	if err := s.clientScripts(); err != nil {
		return nil, err
	}
	return s.f, nil
}

// Builders of steps and expected actions.

type ev = vectorfile.SessionEvent
type in = vectorfile.SessionInput

func st(at int64, i in, state protocol.State, expect ...ev) vectorfile.SessionStep {
	if expect == nil {
		expect = []ev{}
	}
	return vectorfile.SessionStep{At: at, Input: i, Expect: expect, State: state.String()}
}

var (
	open       = protocol.StateOpen
	refreshing = protocol.StateRefreshing
	closed     = protocol.StateClosed
	challenged = protocol.StateChallenged
	awaitChal  = protocol.StateAwaitChallenge
	awaitAcc   = protocol.StateAwaitAccept
)

func text(s string) in      { return in{Type: vectorfile.InText, Data: s} }
func textSize(n int64) in   { return in{Type: vectorfile.InText, Size: n} }
func binary(s string) in    { return in{Type: vectorfile.InBinary, Data: b64u.Encode([]byte(s))} }
func binarySize(n int64) in { return in{Type: vectorfile.InBinary, Size: n} }
func respond(kid string) in { return in{Type: vectorfile.InRespond, KID: kid} }
func timer() in             { return in{Type: vectorfile.InTimer} }
func pong() in              { return in{Type: vectorfile.InPong} }
func send(s string) in      { return in{Type: vectorfile.InSend, Data: b64u.Encode([]byte(s))} }
func sendSize(n int64) in   { return in{Type: vectorfile.InSend, Size: n} }
func written(n int64) in    { return in{Type: vectorfile.InWritten, Size: n} }
func peerClose(c int) in    { return in{Type: vectorfile.InPeerClose, Code: c} }

var (
	writeTimeout = in{Type: vectorfile.InWriteTimeout}
	appClose     = in{Type: vectorfile.InClose}
	shutdown     = in{Type: vectorfile.InShutdown}
	lost         = in{Type: vectorfile.InLost}
)

func sendChallenge(exp int64) ev {
	return ev{Action: vectorfile.DoSend, Message: vectorfile.MsgChallenge, Exp: exp}
}
func sendAccept(exp int64) ev {
	return ev{Action: vectorfile.DoSend, Message: vectorfile.MsgAccept, Exp: exp}
}
func sendBinary(s string) ev {
	return ev{Action: vectorfile.DoSend, Message: vectorfile.MsgBinary, Data: b64u.Encode([]byte(s))}
}
func sendBinarySize(n int64) ev {
	return ev{Action: vectorfile.DoSend, Message: vectorfile.MsgBinary, Size: n}
}
func deliver(s string) ev { return ev{Action: vectorfile.DoDeliver, Data: b64u.Encode([]byte(s))} }

var (
	sendResponse = ev{Action: vectorfile.DoSend, Message: vectorfile.MsgResponse}
	accepted     = ev{Action: vectorfile.DoAccepted}
	ping         = ev{Action: vectorfile.DoPing}
)

// fails is the server's close for a failure with code.
func fails(code protocol.Code) ev {
	return ev{Action: vectorfile.DoClose, Error: string(code), CloseCode: code.CloseCode()}
}

// closes is a close without an error code: with close code cc, or with
// nothing sent when cc is 0.
func closes(cc int) ev { return ev{Action: vectorfile.DoClose, CloseCode: cc} }

// clientFails and clientCloses are the client's closes, with Retry.
func clientFails(code protocol.Code) ev {
	e := fails(code)
	r := code.Retryable()
	e.Retry = &r
	return e
}

func clientCloses(code protocol.Code, cc int, retry bool) ev {
	return ev{Action: vectorfile.DoClose, Error: string(code), CloseCode: cc, Retry: &retry}
}

// entry returns the registry entry of kid, changed by mutate, as JSON text.
func (s *sessionGen) entry(kid string, mutate func(*keys.Entry)) string {
	e, ok := s.Reg.Lookup(kid)
	if !ok {
		panic("no entry " + kid)
	}
	c := *e
	c.Groups = append([]string(nil), e.Groups...)
	if mutate != nil {
		mutate(&c)
	}
	tp, err := keys.Thumbprint(c.Key)
	if err != nil {
		panic(err)
	}
	c.Thumbprint = tp
	b, err := keys.MarshalEntry(&c)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (s *sessionGen) setEntry(kid string, mutate func(*keys.Entry)) in {
	return in{Type: vectorfile.InRegistry, KID: kid, Entry: s.entry(kid, mutate)}
}

func available(ok bool) in { return in{Type: vectorfile.InRegistry, Available: &ok} }

// serverStart returns the start of a server script for id: the challenge
// the server sends at Now, and the recorded response of kid's client to it
// at sessAuth.
func (s *sessionGen) serverStart(id, kid string, cb []byte) (vectorfile.SessionStart, in) {
	_, challenge, err := s.srv.Start(fixture.Stream("session "+id), fixture.Time(), cb)
	if err != nil {
		panic(err)
	}
	c := s.Client(kid, cb != nil)
	resp, err := c.Handshake().ReadChallenge(challenge, fixture.Stream("session response "+id), time.Unix(sessAuth, 0), cb)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", id, err))
	}
	st := vectorfile.SessionStart{At: Now, Challenge: string(challenge)}
	if cb != nil {
		st.ChannelBinding = b64u.Encode(cb)
	}
	return st, text(string(resp))
}

func (s *sessionGen) add(v vectorfile.SessionVector) { s.f.Vectors = append(s.f.Vectors, v) }

// server adds a server script whose socket authenticates kid at sessAuth
// (unless steps are given for the handshake itself with raw).
func (s *sessionGen) server(id, comment string, rows []string, cfg *vectorfile.SessionConfig, kid string, steps ...vectorfile.SessionStep) {
	start, resp := s.serverStart(id, kid, nil)
	exp := int64(sessTokenExp)
	if cfg != nil && cfg.TokenLifetime != 0 {
		exp = sessAuth + cfg.TokenLifetime
	}
	if e, _ := s.Reg.Lookup(kid); !e.NotAfter.IsZero() && e.NotAfter.Unix() < exp {
		exp = e.NotAfter.Unix()
	}
	auth := st(sessAuth, resp, open, sendAccept(exp), accepted)
	s.add(vectorfile.SessionVector{ID: "server-" + id, Comment: comment, Role: vectorfile.SessionServerRole,
		Rows: rows, Config: cfg, Start: start, Steps: append([]vectorfile.SessionStep{auth}, steps...)})
}

// serverRaw adds a server script that drives the handshake itself.
func (s *sessionGen) serverRaw(id, comment string, rows []string, kid string, cb []byte, steps func(resp in) []vectorfile.SessionStep) {
	start, resp := s.serverStart(id, kid, cb)
	s.add(vectorfile.SessionVector{ID: "server-" + id, Comment: comment, Role: vectorfile.SessionServerRole,
		Rows: rows, Start: start, Steps: steps(resp)})
}

func rows(r ...string) []string { return r }

func (s *sessionGen) serverScripts() {
	es, ed := "client-es256", "client-eddsa"
	t := func(d int64) int64 { return sessAuth + d }

	// CHALLENGED.
	s.serverRaw("handshake", "The first response is valid: the server sends an accept and the session begins.",
		rows("S6", "S16"), es, nil, func(r in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(sessAuth, r, open, sendAccept(sessTokenExp), accepted)}
		})
	s.serverRaw("handshake-channel-binding", "A handshake with tls-exporter channel binding in force.",
		rows("S6", "S16"), es, fixture.Exporter, func(r in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(sessAuth, r, open, sendAccept(sessTokenExp), accepted)}
		})
	s.serverRaw("handshake-refused", "A response the server refuses (signed by a revoked key) ends the socket with the failing step's code; nothing after it counts.",
		rows("S16", "S35"), "client-revoked", nil, func(r in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{
				st(sessAuth, r, closed, fails(protocol.CodeKeyRevoked)),
				st(sessAuth+1, binary("after the end"), closed),
			}
		})
	s.serverRaw("handshake-binary", "A binary message before authentication.", rows("S15"), es, nil,
		func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(sessAuth, binary("early"), closed, fails(protocol.CodeUnexpectedMessage))}
		})
	s.serverRaw("handshake-text-too-large", "A text message of 4097 octets before authentication.", rows("S14"), es, nil,
		func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(sessAuth, textSize(4097), closed, fails(protocol.CodeTooLarge))}
		})
	s.serverRaw("handshake-binary-too-large", "A binary message of 4097 octets before authentication: the size limit comes before the type.",
		rows("S14"), es, nil, func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(sessAuth, binarySize(4097), closed, fails(protocol.CodeTooLarge))}
		})
	s.serverRaw("handshake-timeout", "No response: nothing happens until the handshake deadline, 10 s after the challenge, which closes the socket.",
		rows("S7"), es, nil, func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{
				st(Now+sessHandshake-1, timer(), challenged),
				st(Now+sessHandshake, timer(), closed, fails(protocol.CodeHandshakeTimeout)),
			}
		})
	s.serverRaw("handshake-late-response", "A valid response that arrives at the handshake deadline is refused by the deadline, even though no timer fired first.",
		rows("S7"), es, nil, func(r in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(Now+sessHandshake, r, closed, fails(protocol.CodeHandshakeTimeout))}
		})
	s.serverRaw("handshake-registry-change", "A registry change before the response does nothing to the socket; the response is then checked against the new registry.",
		rows("S22", "S16"), es, nil, func(r in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{
				st(Now, s.setEntry(es, func(e *keys.Entry) { e.Revoked = true }), challenged),
				st(sessAuth, r, closed, fails(protocol.CodeKeyRevoked)),
			}
		})
	s.serverRaw("handshake-shutdown", "A shutdown closes a socket that has not authenticated with 1001.", rows("S31"), es, nil,
		func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(Now, shutdown, closed, closes(protocol.CloseGoingAway))}
		})
	s.serverRaw("handshake-peer-close", "The client closes before responding.", rows("S33"), es, nil,
		func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(Now, peerClose(1000), closed, closes(0))}
		})
	s.serverRaw("handshake-lost", "The connection ends before the response.", rows("S34"), es, nil,
		func(in) []vectorfile.SessionStep {
			return []vectorfile.SessionStep{st(Now, lost, closed, closes(0))}
		})

	// OPEN: messages.
	s.server("deliver", "Application messages are delivered with the session, in order, until the token's exp; one arriving at exp is refused. A message that arrives after the refresh time, before the timer fired, follows the re-challenge (timed rows come first).",
		rows("S18", "S12", "S9"), nil, es,
		st(t(1), binary("one"), open, deliver("one")),
		st(t(2), binary("two"), open, deliver("two")),
		st(sessTokenExp-1, binary("last"), refreshing, sendChallenge(sessTokenExp), deliver("last")),
		st(sessTokenExp, binary("late"), closed, fails(protocol.CodeTokenExpired)),
		st(sessTokenExp+1, binary("later"), closed))
	s.server("binary-too-large", "An application message over the 65536-octet limit.", rows("S17"), nil, es,
		st(t(1), binarySize(sessMaxMessage), open, ev{Action: vectorfile.DoDeliver, Size: sessMaxMessage}),
		st(t(2), binarySize(sessMaxMessage+1), closed, fails(protocol.CodeTooLarge)))
	s.server("text-too-large", "A text message over 4096 octets on an authenticated socket.", rows("S17"), nil, es,
		st(t(1), textSize(4097), closed, fails(protocol.CodeTooLarge)))
	s.server("text-in-open", "A text message with no challenge outstanding.", rows("S19"), nil, es,
		st(t(1), text("hello"), closed, fails(protocol.CodeUnexpectedMessage)))

	// Refresh.
	s.server("refresh", "The refresh: nothing before token exp - RefreshBefore, then a re-challenge that expires with the token; messages flow while it is outstanding; the response brings a new token.",
		rows("S12", "S18", "S20"), nil, es,
		st(sessRefreshTime-1, timer(), open),
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessRefreshTime+1, binary("during"), refreshing, deliver("during")),
		st(sessRefreshTime+2, respond(es), open, sendAccept(sessRefreshTime+2+sessTokenLife), accepted),
		st(sessRefreshTime+3, binary("after"), open, deliver("after")),
		st(sessRefreshTime+2+sessTokenLife-sessRefresh, timer(), refreshing, sendChallenge(sessRefreshTime+2+sessTokenLife)))
	s.server("refresh-late-timer", "A timer that fires late still sends the re-challenge, which still expires with the token.",
		rows("S12"), nil, es,
		st(sessTokenExp-10, timer(), refreshing, sendChallenge(sessTokenExp)))
	s.server("refresh-unanswered", "A re-challenge with no answer: the session ends at the token's exp with token_expired, which is retryable.",
		rows("S12", "S9"), nil, es,
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessTokenExp-1, timer(), refreshing),
		st(sessTokenExp, timer(), closed, fails(protocol.CodeTokenExpired)))
	s.server("refresh-late-response", "A refresh response that arrives at the token's exp is refused with token_expired, not challenge_expired: the client was slow, not wrong.",
		rows("S9", "S20"), nil, es,
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessTokenExp, respond(es), closed, fails(protocol.CodeTokenExpired)))
	s.server("refresh-other-key", "A refresh response signed by another registered key.", rows("S20"), nil, es,
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessRefreshTime+1, respond(ed), closed, fails(protocol.CodeKeyMismatch)))
	s.server("refresh-text-outstanding", "A second text message after the refresh response: no challenge is outstanding any more.",
		rows("S20", "S19"), nil, es,
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessRefreshTime+1, respond(es), open, sendAccept(sessRefreshTime+1+sessTokenLife), accepted),
		st(sessRefreshTime+2, text("again"), closed, fails(protocol.CodeUnexpectedMessage)))
	long := &vectorfile.SessionConfig{TokenLifetime: 900}
	s.server("rechallenge-expires-first", "With a 900 s token, a re-challenge sent early (after a group change) lives 300 s, not until the token's exp; unanswered, it ends the session with token_expired.",
		rows("S25", "S10"), long, es,
		st(t(10), s.setEntry(es, func(e *keys.Entry) { e.Groups = []string{"devices", "ops"} }), refreshing, sendChallenge(t(10)+300)),
		st(t(10)+299, timer(), refreshing),
		st(t(10)+300, timer(), closed, fails(protocol.CodeTokenExpired)))

	// Key expiry: the final token.
	expiring := "client-expiring" // exp at Now+120
	keyExp := int64(Now + 120)
	s.server("final-token", "A token capped by its key's exp is final: no re-challenge at exp - RefreshBefore, and at exp the session ends with session_revoked.",
		rows("S8"), nil, expiring,
		st(keyExp-sessRefresh, timer(), open),
		st(keyExp-1, binary("last"), open, deliver("last")),
		st(keyExp, timer(), closed, fails(protocol.CodeSessionRevoked)))
	s.server("final-token-message", "A message at the key's exp is refused with session_revoked, not token_expired.",
		rows("S8"), nil, expiring,
		st(keyExp, binary("late"), closed, fails(protocol.CodeSessionRevoked)))
	s.server("final-token-extended", "The key's exp moves later: the token is no longer final and the refresh schedule applies at once.",
		rows("S26", "S12"), nil, expiring,
		st(t(10), s.setEntry(expiring, func(e *keys.Entry) { e.NotAfter = time.Unix(Now+7200, 0) }), open),
		st(keyExp-sessRefresh, timer(), refreshing, sendChallenge(keyExp)),
		st(keyExp-sessRefresh+1, respond(expiring), open, sendAccept(keyExp-sessRefresh+1+sessTokenLife), accepted))
	s.server("key-exp-moved-earlier", "The key's exp moves before the token's: the session ends at the key's new exp with session_revoked.",
		rows("S26", "S8"), nil, es,
		st(t(10), s.setEntry(es, func(e *keys.Entry) { e.NotAfter = time.Unix(sessAuth+50, 0) }), open),
		st(sessAuth+49, binary("still"), open, deliver("still")),
		st(sessAuth+50, timer(), closed, fails(protocol.CodeSessionRevoked)))

	// Registry changes.
	revoked := func(id, comment string, change in) {
		s.server(id, comment, rows("S23", "S35"), nil, es,
			st(t(5), change, closed, fails(protocol.CodeSessionRevoked)),
			st(t(5), binary("after the decision"), closed))
	}
	revoked("revoked", "The key is revoked: the session ends at once, and nothing after the decision is delivered.",
		s.setEntry(es, func(e *keys.Entry) { e.Revoked = true }))
	revoked("removed", "The key's entry is removed.", in{Type: vectorfile.InRegistry, KID: es, Remove: true})
	revoked("deauthorized", "The key's groups no longer include a required group.",
		s.setEntry(es, func(e *keys.Entry) { e.Groups = []string{"visitors"} }))
	revoked("not-yet-valid", "The key's validity window moves into the future.",
		s.setEntry(es, func(e *keys.Entry) { e.NotBefore = time.Unix(Now+3600, 0) }))
	revoked("cb-required", "The key now requires channel binding, and this session is not bound.",
		s.setEntry(es, func(e *keys.Entry) { e.RequireChannelBinding = true }))
	revoked("kid-reassigned", "The key id now names another key.",
		s.setEntry(es, func(e *keys.Entry) {
			e.Key, e.Algorithm = s.Clients["client-unregistered"].Public(), s.Algs["client-unregistered"]
		}))
	s.server("registry-unavailable", "The registry becomes unavailable: the session ends with internal_error, which is retryable.",
		rows("S24"), nil, es, st(t(5), available(false), closed, fails(protocol.CodeInternalError)))
	s.server("registry-other-entry", "A change to another entry does nothing.", rows("S26"), nil, es,
		st(t(5), s.setEntry(ed, func(e *keys.Entry) { e.Revoked = true }), open),
		st(t(6), binary("still"), open, deliver("still")))
	s.server("groups-changed", "The entry still authorizes the session but its groups changed: the server refreshes at once, so the token carries them.",
		rows("S25", "S20"), nil, es,
		st(t(5), s.setEntry(es, func(e *keys.Entry) { e.Groups = []string{"devices", "ops"} }), refreshing, sendChallenge(sessTokenExp)),
		st(t(6), respond(es), open, sendAccept(t(6)+sessTokenLife), accepted))
	s.server("revoked-while-refreshing", "A revocation while a refresh is outstanding ends the session at once.",
		rows("S23"), nil, es,
		st(sessRefreshTime, timer(), refreshing, sendChallenge(sessTokenExp)),
		st(sessRefreshTime+1, s.setEntry(es, func(e *keys.Entry) { e.Revoked = true }), closed, fails(protocol.CodeSessionRevoked)),
		st(sessRefreshTime+2, respond(es), closed))

	// Keepalive.
	pings := &vectorfile.SessionConfig{PingInterval: 30}
	s.server("keepalive", "Pings every 30 s; a Pong keeps the socket alive; 60 s with nothing received ends it.",
		rows("S13", "S21", "S11"), pings, es,
		st(t(29), timer(), open),
		st(t(30), timer(), open, ping),
		st(t(31), pong(), open),
		st(t(60), timer(), open, ping),
		st(t(90), timer(), open, ping),
		st(t(91), timer(), closed, fails(protocol.CodeKeepaliveTimeout)))
	s.server("keepalive-messages", "Application messages keep the socket alive too; when the keepalive timeout and a Ping are both due, the timeout comes first.",
		rows("S11", "S13", "S18"), pings, es,
		st(t(30), timer(), open, ping),
		st(t(50), binary("alive"), open, deliver("alive")),
		st(t(60), timer(), open, ping),
		st(t(110), timer(), closed, fails(protocol.CodeKeepaliveTimeout)))
	s.server("keepalive-catch-up", "A Ping that is due when a message arrives is sent before the message is delivered.",
		rows("S13", "S18"), pings, es,
		st(t(45), binary("late"), open, ping, deliver("late")))

	// The application and the operator.
	s.server("send", "The application's messages are sent as binary messages.", rows("S27"), nil, es,
		st(t(1), send("hello"), open, sendBinary("hello")))
	queue := &vectorfile.SessionConfig{MaxQueued: 100}
	s.server("send-queue-full", "With a 100-octet outbound bound: messages queue while written ones free room; one that would pass the bound closes the socket with slow_reader.",
		rows("S27", "S28"), queue, es,
		st(t(1), sendSize(60), open, sendBinarySize(60)),
		st(t(1), written(60), open),
		st(t(2), sendSize(60), open, sendBinarySize(60)),
		st(t(2), sendSize(40), open, sendBinarySize(40)),
		st(t(3), sendSize(1), closed, fails(protocol.CodeSlowReader)))
	s.server("send-large-when-empty", "A message larger than the bound is sent when nothing is waiting.", rows("S27"), queue, es,
		st(t(1), sendSize(500), open, sendBinarySize(500)))
	s.server("write-timeout", "A write that does not complete within the write deadline.", rows("S29"), nil, es,
		st(t(1), writeTimeout, closed, fails(protocol.CodeSlowReader)))
	s.server("app-close", "The application ends the session.", rows("S30"), nil, es,
		st(t(1), appClose, closed, closes(protocol.CloseNormal)))
	s.server("shutdown", "A shutdown closes an authenticated socket with 1001.", rows("S31"), nil, es,
		st(t(1), shutdown, closed, closes(protocol.CloseGoingAway)))
	s.server("peer-close", "The client closes the socket.", rows("S33"), nil, es,
		st(t(1), peerClose(1000), closed, closes(0)))
	s.server("lost", "The connection ends without a Close frame.", rows("S34"), nil, es,
		st(t(1), lost, closed, closes(0)))
}

// clientStart is the start of a client script: kid's client on a socket
// just upgraded at Now.
func clientStart(kid string, tls bool, cb []byte, allowUnbound bool) vectorfile.SessionStart {
	st := vectorfile.SessionStart{At: Now, ClientKID: kid, TLS: tls, AllowUnbound: allowUnbound}
	if cb != nil {
		st.ChannelBinding = b64u.Encode(cb)
	}
	return st
}

// transcript is a real exchange between the vector server and a client,
// recorded to be fed to client scripts: the challenge, the accept, a
// re-challenge at the refresh time and its accept.
type transcript struct {
	challenge, accept, rechallenge, reaccept string
	sid                                      string
	exp, reexp                               int64
}

func (s *sessionGen) transcript(id, kid string, srv *protocol.Server, cb []byte) (*transcript, error) {
	r := fixture.Stream("session transcript " + id)
	c := s.Client(kid, cb != nil)
	sc, acts := srv.NewConn(r, fixture.Time(), cb)
	sent := func(acts []protocol.Action) (string, error) {
		for _, a := range acts {
			if a.Kind == protocol.ActionSend && a.Text {
				return string(a.Data), nil
			}
			if a.Kind == protocol.ActionClose {
				return "", fmt.Errorf("%s: the vector server closed: %v", id, a.Err)
			}
		}
		return "", fmt.Errorf("%s: the vector server sent nothing", id)
	}
	t := &transcript{}
	var err error
	if t.challenge, err = sent(acts); err != nil {
		return nil, err
	}
	h := c.Handshake()
	resp, err := h.ReadChallenge([]byte(t.challenge), r, fixture.Time(), cb)
	if err != nil {
		return nil, err
	}
	if t.accept, err = sent(sc.HandleMessage(fixture.Time(), true, resp)); err != nil {
		return nil, err
	}
	cs, err := h.ReadAccept([]byte(t.accept), fixture.Time())
	if err != nil {
		return nil, err
	}
	t.sid, t.exp = cs.SocketID, cs.Expiry.Unix()
	at := time.Unix(t.exp-sessRefresh, 0)
	if t.rechallenge, err = sent(sc.HandleTimeout(at)); err != nil {
		return nil, err
	}
	rh := c.Refresh(cs)
	resp, err = rh.ReadChallenge([]byte(t.rechallenge), r, at, cb)
	if err != nil {
		return nil, err
	}
	if t.reaccept, err = sent(sc.HandleMessage(at, true, resp)); err != nil {
		return nil, err
	}
	cs2, err := rh.ReadAccept([]byte(t.reaccept), at)
	if err != nil {
		return nil, err
	}
	t.reexp = cs2.Expiry.Unix()
	return t, nil
}

// forgeChallenge signs a challenge with the current server key whose claims
// are those of base changed by mutate.
func (s *sessionGen) forgeChallenge(base string, mutate func(*protocol.ChallengeClaims)) string {
	c := fixture.ClaimsOf(base)
	mutate(&c)
	return fixture.Sign(fixture.Hdr("ES256", fixture.ServerKID, protocol.TypChallenge), fixture.MustJSON(c), s.Server, keys.ES256)
}

func (s *sessionGen) clientScripts() error {
	es := "client-es256"
	tr, err := s.transcript("client", es, s.srv, nil)
	if err != nil {
		return err
	}
	refreshAt := tr.exp - sessRefresh
	add := func(id, comment string, r []string, cfg *vectorfile.SessionConfig, start vectorfile.SessionStart, steps ...vectorfile.SessionStep) {
		s.add(vectorfile.SessionVector{ID: "client-" + id, Comment: comment, Role: vectorfile.SessionClientRole,
			Rows: r, Config: cfg, Start: start, Steps: steps})
	}
	plain := clientStart(es, false, nil, false)
	hello := []vectorfile.SessionStep{
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, text(tr.accept), open, accepted),
	}
	opened := func(steps ...vectorfile.SessionStep) []vectorfile.SessionStep {
		return append(append([]vectorfile.SessionStep{}, hello...), steps...)
	}

	// The handshake.
	add("handshake", "A challenge, the response, the accept: the session begins.", rows("C3", "C8", "C12"), nil, plain, hello...)
	add("handshake-too-large", "A message over 4096 octets before the challenge.", rows("C5"), nil, plain,
		st(Now, textSize(4097), closed, clientFails(protocol.CodeTooLarge)))
	add("handshake-binary", "A binary message before the challenge.", rows("C6"), nil, plain,
		st(Now, binary("early"), closed, clientFails(protocol.CodeUnexpectedMessage)))
	add("handshake-accept-first", "An accept before the challenge.", rows("C7"), nil, plain,
		st(Now, text(tr.accept), closed, clientFails(protocol.CodeUnexpectedMessage)))
	wrongIss := s.forgeChallenge(tr.challenge, func(c *protocol.ChallengeClaims) { c.Iss = "wss://elsewhere.example/ws/browser" })
	add("handshake-other-identity", "A challenge from another endpoint of a server whose key is pinned: the client always checks the identity.",
		rows("C8"), nil, plain,
		st(Now, text(wrongIss), closed, clientFails(protocol.CodeAudienceMismatch)))
	unbound := s.forgeChallenge(tr.challenge, func(c *protocol.ChallengeClaims) { c.CB = protocol.BindingNone })
	add("handshake-tls-unbound", "On a TLS connection a client refuses a challenge without channel binding unless configured for it.",
		rows("C8"), nil, clientStart(es, true, fixture.Exporter, false),
		st(Now, text(unbound), closed, clientFails(protocol.CodeChannelBindingRequired)))
	add("handshake-tls-unbound-allowed", "A client configured for a server behind a TLS-terminating proxy accepts it.",
		rows("C8"), nil, clientStart(es, true, fixture.Exporter, true),
		st(Now, text(unbound), awaitAcc, sendResponse))
	add("handshake-tls12-unbound", "A TLS connection without an exporter value (TLS 1.2) also requires binding by default.",
		rows("C8"), nil, clientStart(es, true, nil, false),
		st(Now, text(unbound), closed, clientFails(protocol.CodeChannelBindingRequired)))
	add("handshake-timeout", "No challenge: the handshake deadline closes the socket; handshake_timeout is retryable.",
		rows("C4"), nil, plain,
		st(Now+sessHandshake-1, timer(), awaitChal),
		st(Now+sessHandshake, timer(), closed, clientFails(protocol.CodeHandshakeTimeout)))
	add("handshake-timeout-accept", "No accept after the response.", rows("C4"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now+sessHandshake, text(tr.accept), closed, clientFails(protocol.CodeHandshakeTimeout)))
	add("accept-too-large", "A message over 16384 octets while the accept is awaited.", rows("C9"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, textSize(16385), closed, clientFails(protocol.CodeTooLarge)))
	add("accept-binary", "A binary message while the accept is awaited.", rows("C10"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, binary("early"), closed, clientFails(protocol.CodeUnexpectedMessage)))
	add("accept-challenge-again", "A second challenge instead of the accept.", rows("C11"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, text(tr.challenge), closed, clientFails(protocol.CodeUnexpectedMessage)))
	expired := strings.Replace(tr.accept, fmt.Sprintf(`"exp":%d`, tr.exp), fmt.Sprintf(`"exp":%d`, Now-sessClockSkew), 1)
	add("accept-expired", "An accept whose exp plus the skew is not after now: token_expired, retryable.", rows("C12"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, text(expired), closed, clientFails(protocol.CodeTokenExpired)))
	noMax := strings.Replace(tr.accept, fmt.Sprintf(`,"max_size":%d`, sessMaxMessage), "", 1)
	add("accept-without-max-size", "An accept without max_size is malformed.", rows("C12"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, text(noMax), closed, clientFails(protocol.CodeMalformed)))

	// OPEN and REFRESHING.
	add("deliver", "Binary messages are delivered in order.", rows("C17"), nil, plain, opened(
		st(Now+1, binary("one"), open, deliver("one")),
		st(Now+2, binary("two"), open, deliver("two")))...)
	add("binary-too-large", "A binary message over the client's 65536-octet limit.", rows("C15"), nil, plain, opened(
		st(Now+1, binarySize(sessMaxMessage), open, ev{Action: vectorfile.DoDeliver, Size: sessMaxMessage}),
		st(Now+2, binarySize(sessMaxMessage+1), closed, clientFails(protocol.CodeTooLarge)))...)
	add("open-text-too-large", "A text message over 4096 octets in OPEN.", rows("C15"), nil, plain, opened(
		st(Now+1, textSize(4097), closed, clientFails(protocol.CodeTooLarge)))...)
	add("open-accept", "An accept with no response outstanding.", rows("C18"), nil, plain, opened(
		st(Now+1, text(tr.accept), closed, clientFails(protocol.CodeUnexpectedMessage)))...)
	add("refresh", "A re-challenge is answered with the session's key; messages are delivered while the refresh is outstanding; the accept replaces the session.",
		rows("C19", "C17", "C21"), nil, plain, opened(
			st(refreshAt, text(tr.rechallenge), refreshing, sendResponse),
			st(refreshAt, binary("during"), refreshing, deliver("during")),
			st(refreshAt, text(tr.reaccept), open, accepted),
			st(refreshAt+1, binary("after"), open, deliver("after")))...)
	otherSID := s.forgeChallenge(tr.rechallenge, func(c *protocol.ChallengeClaims) { c.Sid = b64u.Encode(fixture.Derive("other socket", 16)) })
	add("rechallenge-other-socket", "A re-challenge for another socket.", rows("C19"), nil, plain, opened(
		st(refreshAt, text(otherSID), closed, clientFails(protocol.CodeSocketMismatch)))...)
	tooLate := s.forgeChallenge(tr.rechallenge, func(c *protocol.ChallengeClaims) { c.Exp = tr.exp + 1 })
	add("rechallenge-outlives-token", "A re-challenge whose exp is after the token's exp (step 15).", rows("C19"), nil, plain, opened(
		st(refreshAt, text(tooLate), closed, clientFails(protocol.CodeMalformed)))...)
	add("refreshing-text", "A text message other than the accept while the refresh is outstanding.", rows("C20"), nil, plain, opened(
		st(refreshAt, text(tr.rechallenge), refreshing, sendResponse),
		st(refreshAt, text(tr.rechallenge), closed, clientFails(protocol.CodeUnexpectedMessage)))...)
	add("refreshing-too-large", "A text message over 16384 octets in REFRESHING.", rows("C16"), nil, plain, opened(
		st(refreshAt, text(tr.rechallenge), refreshing, sendResponse),
		st(refreshAt, textSize(16385), closed, clientFails(protocol.CodeTooLarge)))...)
	add("refreshing-binary-too-large", "A binary message over the limit in REFRESHING.", rows("C16"), nil, plain, opened(
		st(refreshAt, text(tr.rechallenge), refreshing, sendResponse),
		st(refreshAt, binarySize(sessMaxMessage+1), closed, clientFails(protocol.CodeTooLarge)))...)

	// Keepalive.
	pings := &vectorfile.SessionConfig{PingInterval: 30}
	add("keepalive", "Pings every 30 s; Pongs and messages keep the socket alive; 60 s with nothing received ends it with keepalive_timeout, retryable.",
		rows("C14", "C22", "C13"), pings, plain, opened(
			st(Now+29, timer(), open),
			st(Now+30, timer(), open, ping),
			st(Now+31, pong(), open),
			st(Now+60, timer(), open, ping),
			st(Now+70, binary("alive"), open, deliver("alive")),
			st(Now+90, timer(), open, ping),
			st(Now+130, timer(), closed, clientFails(protocol.CodeKeepaliveTimeout)))...)

	// The application.
	add("send", "The application's messages are sent as binary messages.", rows("C24"), nil, plain, opened(
		st(Now+1, send("hello"), open, sendBinary("hello")))...)
	small, err := protocol.NewServer(&protocol.ServerConfig{Identity: fixture.Identity, Keys: s.SK, Registry: s.Reg,
		RequiredGroups: []string{"devices"}, MaxMessageSize: 100, PingInterval: sessPingNever * time.Second})
	if err != nil {
		return err
	}
	trSmall, err := s.transcript("client small", es, small, nil)
	if err != nil {
		return err
	}
	add("send-too-large", "The accept says the server takes at most 100 octets: a longer message is refused locally and the socket stays open.",
		rows("C23", "C24"), nil, plain,
		st(Now, text(trSmall.challenge), awaitAcc, sendResponse),
		st(Now, text(trSmall.accept), open, accepted),
		st(Now+1, sendSize(101), open),
		st(Now+1, sendSize(100), open, sendBinarySize(100)))
	add("write-timeout", "A write that does not complete within the write deadline: slow_reader, retryable.", rows("C25"), nil, plain, opened(
		st(Now+1, writeTimeout, closed, clientFails(protocol.CodeSlowReader)))...)
	add("app-close", "The application closes the socket: close 1000 and no reconnection.", rows("C26"), nil, plain, opened(
		st(Now+1, appClose, closed, clientCloses("", protocol.CloseNormal, false)))...)
	add("app-close-handshake", "The application gives up during the handshake.", rows("C26"), nil, plain,
		st(Now, appClose, closed, clientCloses("", protocol.CloseNormal, false)))
	add("lost", "The connection ends without a Close frame: retryable.", rows("C28"), nil, plain, opened(
		st(Now+1, lost, closed, clientCloses("", 0, true)))...)

	// The retry rules, one script per way the server can close.
	for _, c := range []struct {
		code  int
		spec  protocol.Code
		retry bool
		why   string
	}{
		{4011, protocol.CodeSessionRevoked, false, "session_revoked is terminal"},
		{4003, "", false, "an authentication failure (4003, shared by fourteen codes) is terminal"},
		{4010, protocol.CodeTokenExpired, true, "token_expired is retryable"},
		{4007, protocol.CodeKeepaliveTimeout, true, "keepalive_timeout is retryable"},
		{4009, protocol.CodeSlowReader, true, "slow_reader is retryable"},
		{4029, protocol.CodeRateLimited, true, "rate_limited is retryable"},
		{4050, protocol.CodeInternalError, true, "internal_error is retryable"},
		{1000, "", false, "1000: the server's application ended the session; terminal"},
		{1001, "", true, "1001: a server going away; retryable"},
		{1005, "", false, "a Close frame without a code; terminal"},
		{1008, "", false, "1008 (policy violation), outside the retryable list; terminal"},
		{1011, "", true, "1011 (server error); retryable"},
		{1012, "", true, "1012 (service restart); retryable"},
		{1013, "", true, "1013 (try again later); retryable"},
		{4099, "", false, "a 4000-4999 code outside the table; terminal"},
	} {
		add(fmt.Sprintf("peer-close-%d", c.code), "The server closes with "+fmt.Sprint(c.code)+": "+c.why+".", rows("C27"), nil, plain, opened(
			st(Now+1, peerClose(c.code), closed, clientCloses(c.spec, 0, c.retry)))...)
	}
	add("peer-close-handshake", "The server closes during the handshake (4003 after refusing the key): terminal.", rows("C27"), nil, plain,
		st(Now, text(tr.challenge), awaitAcc, sendResponse),
		st(Now, peerClose(4003), closed, clientCloses("", 0, false)))
	add("closed-ignores", "After the socket ended, nothing is delivered and nothing is sent.", rows("C27", "C29"), nil, plain, opened(
		st(Now+1, peerClose(1001), closed, clientCloses("", 0, true)),
		st(Now+1, binary("after"), closed),
		st(Now+2, send("after"), closed))...)
	return nil
}
