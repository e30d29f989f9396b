package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

var fastBackoff = &Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}

// readUntilError is the usual fn for Keep: it returns the Conn's failure.
func readUntilError(ctx context.Context, c *Conn) error {
	for {
		if _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

func TestKeepTerminalClose(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{afterAccept: func(_ int, sc *serverConn) {
		sc.closeWith(4011, "session revoked")
	}})
	err := Keep(ctxT(t), ts.url, f.config(), fastBackoff, readUntilError)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Spec != protocol.CodeSessionRevoked {
		t.Fatalf("Keep: %v, want session_revoked", err)
	}
	if n := ts.sockets.Load(); n != 1 {
		t.Errorf("%d sockets, want 1", n)
	}
}

func TestKeepRetries(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	// Retryable closures, then a terminal one.
	codes := []int{4010, 1001, 4050, 4029, 4008, 4011}
	ts := newServer(t, f, serverOptions{afterAccept: func(n int, sc *serverConn) {
		sc.closeWith(codes[n-1], "")
	}})
	err := Keep(ctxT(t), ts.url, f.config(), fastBackoff, readUntilError)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4011 {
		t.Fatalf("Keep: %v, want close 4011", err)
	}
	if n := ts.sockets.Load(); n != int32(len(codes)) {
		t.Errorf("%d sockets, want %d", n, len(codes))
	}
}

// TestKeepBackoffReset: after a connection that lasted stableAfter, the
// delay starts again from Initial instead of doubling.
func TestKeepBackoffReset(t *testing.T) {
	defer func(d time.Duration) { stableAfter = d }(stableAfter)
	stableAfter = 0
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{afterAccept: func(n int, sc *serverConn) {
		if n <= 4 {
			sc.closeWith(1001, "")
		} else {
			sc.closeWith(4011, "")
		}
	}})
	start := time.Now()
	Keep(ctxT(t), ts.url, f.config(), &Backoff{Initial: 100 * time.Millisecond, Jitter: -1}, readUntilError)
	// Four waits: 400ms with the reset, 1.5s (100+200+400+800ms) without.
	if d := time.Since(start); d < 400*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("Keep took %v, want about 400ms", d)
	}
	if n := ts.sockets.Load(); n != 5 {
		t.Errorf("%d sockets, want 5", n)
	}
}

func TestKeepUpgradeRefused(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	statuses := []int{429, 503, 502, 0}
	ts := newServer(t, f, serverOptions{refuse: func(n int) int {
		if n <= len(statuses) {
			return statuses[n-1]
		}
		return 0
	}})
	err := Keep(ctxT(t), ts.url, f.config(), fastBackoff, func(ctx context.Context, c *Conn) error {
		echoOnce(t, c, "finally")
		return nil
	})
	if err != nil {
		t.Fatalf("Keep: %v", err)
	}
	if n := ts.requests.Load(); n != int32(len(statuses)) {
		t.Errorf("%d requests, want %d", n, len(statuses))
	}

	ts = newServer(t, f, serverOptions{refuse: func(int) int { return 403 }})
	err = Keep(ctxT(t), ts.url, f.config(), fastBackoff, readUntilError)
	if protocol.CodeOf(err) != protocol.CodeOriginNotAllowed || ts.requests.Load() != 1 {
		t.Fatalf("Keep: %v after %d requests, want origin_not_allowed after 1", err, ts.requests.Load())
	}
}

func TestKeepNetworkError(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})
	url := ts.url
	ts.close() // nothing listens any more: connection refused, again and again
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := Keep(ctx, url, f.config(), fastBackoff, readUntilError)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Keep: %v, want the context's end", err)
	}
}

func TestKeepStops(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{})

	t.Run("fn-error", func(t *testing.T) {
		mine := errors.New("application gave up")
		err := Keep(ctxT(t), ts.url, f.config(), fastBackoff, func(context.Context, *Conn) error { return mine })
		if err != mine {
			t.Fatalf("Keep: %v", err)
		}
	})
	t.Run("cancel-while-connected", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		err := Keep(ctx, ts.url, f.config(), fastBackoff, readUntilError)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Keep: %v", err)
		}
	})
	t.Run("cancel-while-waiting", func(t *testing.T) {
		ts := newServer(t, f, serverOptions{refuse: func(int) int { return 503 }})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		err := Keep(ctx, ts.url, f.config(), &Backoff{Initial: time.Hour}, readUntilError)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Fatalf("Keep: %v after %v", err, time.Since(start))
		}
	})
	t.Run("bad-config", func(t *testing.T) {
		cfg := f.config()
		cfg.Signer = nil
		if err := Keep(ctxT(t), ts.url, cfg, nil, readUntilError); err == nil {
			t.Fatal("Keep accepted a Config without a Signer")
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	var nilB *Backoff
	def := nilB.withDefaults()
	if def.Initial != 500*time.Millisecond || def.Max != 30*time.Second || def.Jitter != 0.5 {
		t.Fatalf("defaults %+v", def)
	}
	exact := (&Backoff{Initial: time.Second, Max: 10 * time.Second, Jitter: -1}).withDefaults()
	for n, want := range []time.Duration{1, 2, 4, 8, 10, 10, 10} {
		if got := exact.delay(n); got != want*time.Second {
			t.Errorf("delay(%d) = %v, want %vs", n, got, want)
		}
	}
	if d := exact.delay(1000); d != 10*time.Second {
		t.Errorf("delay(1000) = %v", d)
	}
	full := (&Backoff{Initial: time.Second, Max: time.Minute, Jitter: 2}).withDefaults()
	for range 1000 {
		if d := full.delay(3); d < 0 || d > 8*time.Second {
			t.Fatalf("full jitter delay %v outside [0, 8s]", d)
		}
		if d := def.delay(0); d < 250*time.Millisecond || d > 500*time.Millisecond {
			t.Fatalf("default jitter delay %v outside [250ms, 500ms]", d)
		}
	}
}

// TestIdleServer: a server that stops reading stops answering Pings; the
// client's state machine closes the socket with keepalive_timeout after two
// Ping intervals, and the end is retryable.
func TestIdleServer(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{afterAccept: func(int, *serverConn) { time.Sleep(time.Second) }})
	cfg := f.config()
	cfg.PingInterval = 20 * time.Millisecond
	c, err := Dial(ctxT(t), ts.url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Read(ctxT(t))
	if protocol.CodeOf(err) != protocol.CodeKeepaliveTimeout || !c.retryAfter(err) {
		t.Fatalf("Read: %v, want a retryable keepalive_timeout", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("noticed after %v", d)
	}
	if code := ts.waitClose(); code != 4007 {
		t.Errorf("close code %d, want 4007", code)
	}
}

// TestKeepRetryTable is the client side of issue 11's defect 4: Keep
// reconnects exactly after the socket ends that spec section "Retry" marks
// retryable, and stops after every other end, against a real server that
// ends the first socket (or refuses the first upgrade) as each row says and
// ends the second with 1000.
func TestKeepRetryTable(t *testing.T) {
	f := newFixture(t, keys.EdDSA)
	const drop = -1 // the connection ends without a Close frame (1006)
	type row struct {
		name   string
		close  int // the server's close code after the accept, or drop
		status int // or: the HTTP status refusing the first upgrade
		// fnOwn: fn returns an error of its own that looks like a network
		// timeout, while the socket is fine
		fnOwn bool
		retry bool
	}
	rows := []row{
		{name: "4007-keepalive_timeout", close: 4007, retry: true},
		{name: "4008-handshake_timeout", close: 4008, retry: true},
		{name: "4009-slow_reader", close: 4009, retry: true},
		{name: "4010-token_expired", close: 4010, retry: true},
		{name: "4029-rate_limited", close: 4029, retry: true},
		{name: "4050-internal_error", close: 4050, retry: true},
		{name: "1001-going-away", close: 1001, retry: true},
		{name: "1006-no-close-frame", close: drop, retry: true},
		{name: "1011-server-error", close: 1011, retry: true},
		{name: "1012-service-restart", close: 1012, retry: true},
		{name: "1013-try-again-later", close: 1013, retry: true},
		{name: "1014-bad-gateway", close: 1014, retry: true},
		{name: "http-502", status: 502, retry: true},
		{name: "http-503", status: 503, retry: true},
		{name: "http-504", status: 504, retry: true},
		{name: "http-429", status: 429, retry: true},

		{name: "1000-normal", close: 1000},
		{name: "1005-no-code", close: 1005},
		{name: "1008-policy", close: 1008},
		{name: "2000-unassigned", close: 2000},
		{name: "4000-malformed", close: 4000},
		{name: "4001-unexpected_message", close: 4001},
		{name: "4002-too_large", close: 4002},
		{name: "4003-authentication-failed", close: 4003},
		{name: "4004-alg_not_allowed", close: 4004},
		{name: "4005-header_not_allowed", close: 4005},
		{name: "4006-wrong_type", close: 4006},
		{name: "4011-session_revoked", close: 4011},
		{name: "4099-not-in-the-table", close: 4099},
		{name: "4999-private", close: 4999},
		{name: "http-400", status: 400},
		{name: "http-403", status: 403},
		{name: "http-404", status: 404},
		{name: "http-500", status: 500},
		{name: "fn-own-timeout", fnOwn: true},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, f, serverOptions{
				refuse: func(n int) int {
					if n == 1 {
						return tc.status
					}
					return 0
				},
				afterAccept: func(n int, sc *serverConn) {
					switch {
					case n > 1 || tc.status != 0:
						sc.closeWith(1000, "")
					case tc.fnOwn:
						time.Sleep(200 * time.Millisecond)
						sc.closeWith(1000, "")
					case tc.close == drop:
						sc.ws.UnderlyingConn().Close()
					case tc.close == 1005:
						sc.ws.WriteControl(websocket.CloseMessage, nil, time.Now().Add(time.Second))
					default:
						sc.closeWith(tc.close, "")
					}
				},
			})
			fn := readUntilError
			if tc.fnOwn {
				fn = func(ctx context.Context, c *Conn) error {
					ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
					defer cancel()
					_, err := c.Read(ctx)
					return err // context.DeadlineExceeded: fn's own, not the socket's
				}
			}
			err := Keep(ctxT(t), ts.url, f.config(), fastBackoff, fn)
			attempts := ts.requests.Load()
			switch {
			case tc.retry:
				var ce *CloseError
				if attempts != 2 || !errors.As(err, &ce) || ce.Code != 1000 {
					t.Fatalf("Keep: %v after %d attempts, want a reconnection, then the 1000 of the second socket", err, attempts)
				}
			case attempts != 1:
				t.Fatalf("Keep: %v after %d attempts, want it to stop after the first", err, attempts)
			case err == nil:
				t.Fatal("Keep returned nil after a terminal end")
			}
		})
	}
}
