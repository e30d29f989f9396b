package protocol

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// openConn returns a ServerConn authenticated by the world's EdDSA client at
// testNow.
func openConn(t testing.TB, w *world) *ServerConn {
	t.Helper()
	c, acts := w.srv.NewConn(rand.Reader, testNow, nil)
	var challenge []byte
	for _, a := range acts {
		if a.Kind == ActionSend {
			challenge = a.Data
		}
	}
	resp, err := w.clients[keys.EdDSA].Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.HandleMessage(testNow, true, resp)
	if c.State() != StateOpen {
		t.Fatalf("state %v after the response", c.State())
	}
	return c
}

// TestPerMessageCost pins spec section "Later-frame authorization": an
// application message costs no allocation and no cryptography, in either
// direction.
func TestPerMessageCost(t *testing.T) {
	w := newWorld(t, nil)
	c := openConn(t, w)
	msg := bytes.Repeat([]byte{1}, 100)
	now := testNow.Add(time.Second)
	if n := testing.AllocsPerRun(1000, func() {
		acts := c.HandleMessage(now, false, msg)
		if len(acts) != 1 || acts[0].Kind != ActionDeliver {
			t.Fatalf("actions %v", acts)
		}
	}); n != 0 {
		t.Errorf("HandleMessage allocates %v times per message", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := c.Send(now, msg); !ok {
			t.Fatal("send refused")
		}
		c.Written(len(msg))
	}); n != 0 {
		t.Errorf("Send allocates %v times per message", n)
	}
}

// TestTimerIsLowerBound checks the contract of ActionTimer: the machine never
// needs to be woken later than the timer it asked for, and a timer that fires
// early (a message moved the keepalive deadline) is re-armed, not lost.
func TestTimerIsLowerBound(t *testing.T) {
	w := newWorld(t, func(c *ServerConfig, _ []*keys.Entry) { c.PingInterval = 10 * time.Second })
	c := openConn(t, w)
	at := func(acts []Action) time.Time {
		for _, a := range acts {
			if a.Kind == ActionTimer {
				return a.At
			}
		}
		return time.Time{}
	}
	// A message at +5 s moves the keepalive deadline, not the timer.
	if acts := c.HandleMessage(testNow.Add(5*time.Second), false, []byte("x")); !at(acts).IsZero() {
		t.Fatalf("a message re-armed the timer: %v", acts)
	}
	// The Ping at +10 s, then the timer for the next Ping at +20 s.
	acts := c.HandleTimeout(testNow.Add(10 * time.Second))
	if len(acts) != 2 || acts[0].Kind != ActionPing || !at(acts).Equal(testNow.Add(20*time.Second)) {
		t.Fatalf("timeout at +10 s: %v", acts)
	}
	// At +20 s a Ping; the keepalive deadline is +25 s (5 s + 20 s).
	acts = c.HandleTimeout(testNow.Add(20 * time.Second))
	if len(acts) != 2 || acts[0].Kind != ActionPing || !at(acts).Equal(testNow.Add(25*time.Second)) {
		t.Fatalf("timeout at +20 s: %v", acts)
	}
	acts = c.HandleTimeout(testNow.Add(25 * time.Second))
	if len(acts) != 1 || acts[0].Kind != ActionClose || acts[0].Code != CodeKeepaliveTimeout {
		t.Fatalf("timeout at +25 s: %v", acts)
	}
	if _, ended := c.End(); !ended {
		t.Fatal("not ended")
	}
	// CLOSED ignores everything.
	if acts := c.HandleMessage(testNow.Add(26*time.Second), false, []byte("x")); len(acts) != 0 {
		t.Fatalf("CLOSED acted: %v", acts)
	}
}

// TestRefreshBeforeValidated pins spec section "Refresh": a RefreshBefore
// outside its range is a configuration error, never silently adjusted.
func TestRefreshBeforeValidated(t *testing.T) {
	for _, tc := range []struct {
		token, before time.Duration
		ok            bool
	}{
		{0, 0, true},
		{300 * time.Second, 150 * time.Second, true},
		{300 * time.Second, 151 * time.Second, false},
		{time.Hour, 301 * time.Second, false},
		{300 * time.Second, -time.Second, false},
		{60 * time.Second, 0, true}, // default: min(60 s, 30 s)
	} {
		w := newWorld(t, nil)
		_, err := NewServer(&ServerConfig{Identity: "wss://example.test/ws", Keys: w.srv.Keys(), Registry: w.reg,
			TokenLifetime: tc.token, RefreshBefore: tc.before})
		if (err == nil) != tc.ok {
			t.Errorf("token %v refresh-before %v: err %v, want ok=%v", tc.token, tc.before, err, tc.ok)
		}
	}
	srv, err := NewServer(&ServerConfig{Identity: "wss://example.test/ws", Keys: newWorld(t, nil).srv.Keys(),
		Registry: newWorld(t, nil).reg, TokenLifetime: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.RefreshBefore != 30*time.Second {
		t.Fatalf("default RefreshBefore for a 60 s token: %v, want 30s", srv.cfg.RefreshBefore)
	}
}

func BenchmarkServerConnMessage(b *testing.B) {
	w := newWorld(b, nil)
	c := openConn(b, w)
	msg := bytes.Repeat([]byte{1}, 100)
	now := testNow.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		c.HandleMessage(now, false, msg)
	}
}
