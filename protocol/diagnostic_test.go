package protocol

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// TestCodeOfClose pins spec section "Diagnostic reasons" for every code: the
// diagnostic reason names the code exactly, fits a Close frame, and the
// plain reason names a code only when its close code is the code's alone.
func TestCodeOfClose(t *testing.T) {
	shared := map[int]int{}
	for _, c := range Codes() {
		shared[c.CloseCode()]++
	}
	for _, c := range Codes() {
		cc := c.CloseCode()
		if cc == 0 {
			continue
		}
		r := c.DiagnosticReason()
		if len(r) > 123 {
			t.Errorf("%s: diagnostic reason %q is %d octets, more than a Close frame carries", c, r, len(r))
		}
		if got, exact := CodeOfClose(cc, r); got != c || !exact {
			t.Errorf("CodeOfClose(%d, %q) = %q, %v; want %q, true", cc, r, got, exact, c)
		}
		want := c
		if shared[cc] > 1 {
			want = ""
		}
		if got, exact := CodeOfClose(cc, c.Reason()); got != want || exact {
			t.Errorf("CodeOfClose(%d, %q) = %q, %v; want %q, false", cc, c.Reason(), got, exact, want)
		}
		// The code in brackets must belong to the close code and the
		// reason must be exactly the diagnostic one.
		if got, exact := CodeOfClose(cc+1000, r); exact {
			t.Errorf("CodeOfClose(%d, %q) = %q, exact, for a close code that is not the code's", cc+1000, r, got)
		}
		if got, exact := CodeOfClose(cc, "x"+r); exact {
			t.Errorf("CodeOfClose(%d, %q) = %q, exact, for a reason with a prefix", cc, "x"+r, got)
		}
	}
	if got, exact := CodeOfClose(4003, "authentication failed [no_such_code]"); got != "" || exact {
		t.Errorf("an unknown code in brackets: got %q, %v", got, exact)
	}
}

// TestDiagnosticReasons checks that a server and a client configured for
// diagnostic reasons name the code in their Close frame, and that without
// the option they send the table's reason text, which for close code 4003
// names no code.
func TestDiagnosticReasons(t *testing.T) {
	for _, diag := range []bool{false, true} {
		w := newWorld(t, func(c *ServerConfig, _ []*keys.Entry) { c.DiagnosticReasons = diag })
		// A response by a key id the registry does not hold: unknown_key.
		stranger, err := NewClient(&ClientConfig{KeyID: "not-registered", Signer: testKey(t, keys.EdDSA),
			Algorithm: keys.EdDSA, ServerKeys: w.clients[keys.EdDSA].cfg.ServerKeys,
			ServerIdentity: w.clients[keys.EdDSA].cfg.ServerIdentity, DiagnosticReasons: diag})
		if err != nil {
			t.Fatal(err)
		}
		c, acts := w.srv.NewConn(rand.Reader, testNow, nil)
		var challenge []byte
		for _, a := range acts {
			if a.Kind == ActionSend {
				challenge = a.Data
			}
		}
		resp, err := stranger.Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := CodeUnknownKey.Reason()
		if diag {
			want = "authentication failed [unknown_key]"
		}
		a := closeOf(t, c.HandleMessage(testNow, true, resp))
		if a.Code != CodeUnknownKey || a.CloseCode != 4003 || a.Reason != want {
			t.Errorf("server, diagnostic %v: close %s %d %q; want unknown_key 4003 %q", diag, a.Code, a.CloseCode, a.Reason, want)
		}

		// A client that receives a challenge that is not a JWS: malformed.
		cc, _ := stranger.NewConn(rand.Reader, testNow, testNow.Add(time.Minute), false, nil)
		want = CodeMalformed.Reason()
		if diag {
			want = "malformed message [malformed]"
		}
		a = closeOf(t, cc.HandleMessage(testNow, true, []byte("not a challenge")))
		if a.Code != CodeMalformed || a.CloseCode != 4000 || a.Reason != want {
			t.Errorf("client, diagnostic %v: close %s %d %q; want malformed 4000 %q", diag, a.Code, a.CloseCode, a.Reason, want)
		}
	}
}

func closeOf(t *testing.T, acts []Action) Action {
	t.Helper()
	for _, a := range acts {
		if a.Kind == ActionClose {
			return a
		}
	}
	t.Fatalf("no close among %v", acts)
	return Action{}
}
