package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/protocol"
)

// settable is a clock for Config.Time that tests move by hand.
type settable struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settable) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *settable) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// upgradeRequest is a WebSocket upgrade for wsproof that a trusted proxy
// (10.9.9.9) forwards for client.
func upgradeRequest(client string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.RemoteAddr = "10.9.9.9:4000"
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	r.Header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	r.Header.Set("X-Forwarded-For", client)
	return r
}

// TestAdmissionBoundOverHTTP sends floods through ServeHTTP from many
// client addresses behind a trusted proxy: thousands of IPv4 addresses,
// then thousands of addresses inside one IPv6 /64. An upgrade that passes
// the limits is one the server would sign a challenge for; the recorder
// cannot be hijacked, so each such upgrade ends right after the limiter
// and releases its slot. At one instant at most the burst passes, and over
// time at most the rate.
func TestAdmissionBoundOverHTTP(t *testing.T) {
	f := newFixture(t, false, nil) // only for its keys and registry
	clk := &settable{now: time.Unix(1_000_000, 0)}
	s, err := New(&Config{
		Identity: identity, Keys: f.sk, Registry: f.srv.cfg.Registry, Handler: echo{},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Time:           clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(client string) bool {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, upgradeRequest(client))
		return w.Code != http.StatusTooManyRequests
	}
	flood := func(name string, addr func(int) string, burst int, rate float64) {
		t.Helper()
		var admitted []time.Time
		n := 0
		for range 5000 {
			n++
			if serve(addr(n)) {
				admitted = append(admitted, clk.Now())
			}
		}
		if len(admitted) > burst {
			t.Errorf("%s: %d of 5000 upgrades admitted at one instant, want at most %d", name, len(admitted), burst)
		}
		// 20 more every 10 ms for 5 s.
		for range 500 {
			clk.Add(10 * time.Millisecond)
			for range 20 {
				n++
				if serve(addr(n)) {
					admitted = append(admitted, clk.Now())
				}
			}
		}
		if x := maxExcess(admitted, rate); x > float64(burst)+1e-6 {
			t.Errorf("%s: %d admitted; they exceed %.0f/s by %.0f in some interval, want at most the burst %d", name, len(admitted), rate, x, burst)
		}
		if got := stateLen(s.limit); got > len(admitted) {
			t.Errorf("%s: %d per-address entries for %d admissions", name, got, len(admitted))
		}
		clk.Add(time.Minute) // let the buckets refill
	}
	flood("IPv4", func(i int) string { return fmt.Sprintf("198.%d.%d.%d", 18+i>>16&1, i>>8&255, i&255) }, defBurst, defRate)
	flood("IPv6 /64", func(i int) string { return fmt.Sprintf("2001:db8:7:7:%x:%x:%x:1", i>>16, i&0xffff, i%7) }, defPerBurst, defPerAddr)
}

// TestAdmissionSignaturesBounded: through real sockets, 300 clients with
// distinct addresses arriving in one instant get at most the burst of
// challenges (each a signature); the others are refused with 429 before
// the upgrade.
func TestAdmissionSignaturesBounded(t *testing.T) {
	clk := &settable{now: time.Now()}
	f := newFixture(t, false, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.Time = clk.Now
	})
	challenged, refused := 0, 0
	for i := range 300 {
		c, resp, err := f.dial(t, http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.%d.%d", i>>8, i&255)}})
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("dial %d: %v %v", i, resp, err)
			}
			refused++
			continue
		}
		c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if mt, _, err := c.ws.ReadMessage(); err != nil || mt != websocket.TextMessage {
			t.Fatalf("dial %d: no challenge: %v", i, err)
		}
		challenged++
		c.ws.Close()
	}
	if challenged > defBurst {
		t.Errorf("%d of 300 clients challenged (each a signature) in one instant, %d refused; want at most the burst %d", challenged, refused, defBurst)
	}
}

func TestConfigAdmissionFields(t *testing.T) {
	f := newFixture(t, false, nil)
	for _, tc := range []struct {
		edit func(*Config)
		ok   bool
	}{
		{func(c *Config) { c.IPv6PrefixLen = -1 }, false},
		{func(c *Config) { c.IPv6PrefixLen = 129 }, false},
		{func(c *Config) { c.IPv6PrefixLen = 128 }, true},
		{func(c *Config) { c.MaxTrackedAddrs = -1 }, false},
	} {
		c := f.srv.cfg
		c.IPv6PrefixLen, c.MaxTrackedAddrs = 0, 0
		tc.edit(&c)
		if _, err := New(&c); (err == nil) != tc.ok {
			t.Errorf("IPv6PrefixLen %d MaxTrackedAddrs %d: err %v", c.IPv6PrefixLen, c.MaxTrackedAddrs, err)
		}
	}
	if f.srv.cfg.IPv6PrefixLen != 64 || f.srv.cfg.MaxTrackedAddrs != defaultMaxTrackedAddrs {
		t.Errorf("defaults: IPv6PrefixLen %d MaxTrackedAddrs %d, want 64 and %d", f.srv.cfg.IPv6PrefixLen, f.srv.cfg.MaxTrackedAddrs, defaultMaxTrackedAddrs)
	}
}
