package protocol

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectorkeys"
	"github.com/wsproof/wsproof/keys"
)

// FuzzSessionMachines drives ServerConn and ClientConn with arbitrary input
// sequences and checks the invariants of spec section "State machines" that
// hold whatever the peer does: nothing is delivered or sent after the close,
// the socket closes at most once and with a code from the table, every timer
// is in the future, and no input panics. A fuzz input is a script in a
// compact encoding: its first byte picks the session vector whose start it
// uses (so that the recorded first messages verify), then a sequence of
// operations; the seeds are the session vectors' own scripts, encoded.
//
//	go test ./protocol -run '^$' -fuzz FuzzSessionMachines -fuzztime 60s
func FuzzSessionMachines(f *testing.F) {
	f.Helper()
	data := readSessionVectors(f)
	sf, err := vectorfile.ParseSession(data)
	if err != nil {
		f.Fatal(err)
	}
	env, err := newSessionEnv(sf)
	if err != nil {
		f.Fatal(err)
	}
	for i := range sf.Vectors {
		f.Add(encodeScript(i, &sf.Vectors[i]))
	}
	if len(sf.Vectors) == 0 {
		f.Fatal("no session vectors to seed from")
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) == 0 {
			return
		}
		v := &sf.Vectors[int(script[0])%len(sf.Vectors)]
		fuzzScript(t, env, v, script[1:])
	})
}

// The operations of a fuzz script. Each is one byte of kind, one byte of
// seconds to advance the clock, and for message operations a two-byte
// length and the payload.
const (
	opText byte = iota
	opBinary
	opRespond
	opPong
	opTimer
	opRevoke
	opRestore
	opUnavailable
	opSend
	opWritten
	opWriteTimeout
	opClose
	opShutdown
	opPeerClose
	opLost
	numOps
)

func encodeScript(i int, v *vectorfile.SessionVector) []byte {
	out := []byte{byte(i)}
	at := v.Start.At
	for _, st := range v.Steps {
		dt := min(max(st.At-at, 0), 255)
		at += dt
		var op byte
		var payload []byte
		in := st.Input
		switch in.Type {
		case vectorfile.InText:
			op, payload = opText, []byte(in.Data)
		case vectorfile.InBinary:
			op = opBinary
			payload, _ = vectorfile.Payload(false, in.Data, min(in.Size, 1<<12))
		case vectorfile.InRespond:
			op = opRespond
		case vectorfile.InPong:
			op = opPong
		case vectorfile.InRegistry:
			op = opRevoke
		case vectorfile.InSend:
			op = opSend
			payload, _ = vectorfile.Payload(false, in.Data, min(in.Size, 1<<12))
		case vectorfile.InWritten:
			op = opWritten
		case vectorfile.InWriteTimeout:
			op = opWriteTimeout
		case vectorfile.InClose:
			op = opClose
		case vectorfile.InShutdown:
			op = opShutdown
		case vectorfile.InPeerClose:
			op = opPeerClose
		case vectorfile.InLost:
			op = opLost
		default:
			op = opTimer
		}
		out = append(out, op, byte(dt))
		if op == opText || op == opBinary || op == opSend {
			out = binary.BigEndian.AppendUint16(out, uint16(len(payload)))
			out = append(out, payload...)
		}
	}
	return out
}

// fuzzMachine is what the fuzz checks need of either machine.
type fuzzMachine interface {
	machine
	State() State
}

func fuzzScript(t *testing.T, env *sessionEnv, v *vectorfile.SessionVector, script []byte) {
	reg := vectorkeys.NewRegistry(env.Registry)
	srv, err := env.server(v, reg)
	if err != nil {
		t.Fatal(err)
	}
	r := sessionRand()
	now := time.Unix(v.Start.At, 0)
	var m fuzzMachine
	var sc *ServerConn
	var cc *ClientConn
	var lastChallenge []byte
	if v.Role == vectorfile.SessionServerRole {
		hs, err := srv.resume([]byte(v.Start.Challenge), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sc = &ServerConn{s: srv, rand: r, state: StateChallenged, hs: hs,
			deadline: now.Add(srv.cfg.HandshakeTimeout).UnixNano()}
		sc.arm()
		m, lastChallenge = sc, []byte(v.Start.Challenge)
	} else {
		cl, err := env.client(v, v.Start.ClientKID, true)
		if err != nil {
			t.Fatal(err)
		}
		cc, _ = cl.NewConn(r, now, time.Time{}, false, nil)
		m = cc
	}
	closed := false
	check := func(acts []Action) {
		for _, a := range acts {
			if closed && a.Kind != ActionTimer {
				t.Fatalf("%v after the close", a.Kind)
			}
			switch a.Kind {
			case ActionClose:
				closed = true
				if a.Code != "" && (!a.Code.Known() || a.CloseCode != a.Code.CloseCode()) {
					t.Fatalf("close with code %q and close code %d", a.Code, a.CloseCode)
				}
				if m.State() != StateClosed {
					t.Fatalf("closed in state %v", m.State())
				}
			case ActionTimer:
				if !a.At.After(now) {
					t.Fatalf("timer at %v, not after now %v", a.At, now)
				}
			case ActionSend:
				if a.Text && sc != nil {
					lastChallenge = a.Data
				}
			}
		}
		if (m.State() == StateClosed) != closed {
			t.Fatalf("state %v, closed %v", m.State(), closed)
		}
	}
	for len(script) >= 2 {
		op, dt := script[0]%numOps, script[1]
		script = script[2:]
		now = now.Add(time.Duration(dt) * time.Second)
		var payload []byte
		if op == opText || op == opBinary || op == opSend {
			if len(script) < 2 {
				return
			}
			n := min(int(binary.BigEndian.Uint16(script)), len(script)-2)
			payload, script = script[2:2+n], script[2+n:]
		}
		var acts []Action
		switch op {
		case opText:
			acts = m.HandleMessage(now, true, payload)
		case opBinary:
			acts = m.HandleMessage(now, false, payload)
		case opRespond:
			if sc == nil {
				continue
			}
			cl, err := env.client(v, "client-es256", true)
			if err != nil {
				t.Fatal(err)
			}
			h := cl.Handshake()
			if s := sc.Session(); s != nil {
				h = cl.Refresh(&ClientSession{SocketID: s.SocketID, Expiry: s.Expiry})
			}
			resp, err := h.ReadChallenge(lastChallenge, r, now, nil)
			if err != nil {
				continue // the challenge is stale or the clock moved on: nothing to answer
			}
			acts = sc.HandleMessage(now, true, resp)
		case opPong:
			acts = m.HandlePong(now)
		case opTimer:
			acts = m.HandleTimeout(now)
		case opRevoke, opRestore, opUnavailable:
			if sc == nil {
				continue
			}
			switch op {
			case opRevoke:
				e, _ := env.Registry.Lookup("client-es256")
				c := *e
				c.Revoked = true
				s, err := keys.NewSet(append(withoutKey(env.Registry, c.KeyID), &c))
				if err != nil {
					t.Fatal(err)
				}
				reg.Store(s)
			case opRestore:
				reg.Store(env.Registry)
				reg.SetAvailable(true)
			case opUnavailable:
				reg.SetAvailable(false)
			}
			acts = sc.Recheck(now)
		case opSend:
			if sc != nil {
				acts, _ = sc.Send(now, payload)
			} else {
				acts, _ = cc.Send(now, payload)
			}
		case opWritten:
			if sc != nil {
				sc.Written(int(dt))
			}
		case opWriteTimeout:
			acts = m.HandleWriteError(now, true)
		case opClose:
			acts = m.Close(now)
		case opShutdown:
			if sc != nil {
				acts = sc.Shutdown(now)
			}
		case opPeerClose:
			acts = m.HandlePeerClose(now, 1000+int(dt))
		case opLost:
			acts = m.HandleLost(now, errors.New("lost"))
		}
		check(acts)
	}
}

func withoutKey(s *keys.Set, kid string) []*keys.Entry {
	var out []*keys.Entry
	for _, e := range s.Entries() {
		if e.KeyID != kid {
			out = append(out, e)
		}
	}
	return out
}
