package client

import (
	"context"
	"errors"
	"testing"
	"time"

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
// client notices within its idle timeout, and the failure is retryable.
func TestIdleServer(t *testing.T) {
	defer func(p, i time.Duration) { pingInterval, idleTimeout = p, i }(pingInterval, idleTimeout)
	pingInterval, idleTimeout = 20*time.Millisecond, 100*time.Millisecond
	f := newFixture(t, keys.EdDSA)
	ts := newServer(t, f, serverOptions{afterAccept: func(int, *serverConn) { time.Sleep(time.Second) }})
	c, err := Dial(ctxT(t), ts.url, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Read(ctxT(t))
	if !isTimeout(err) || !retryable(err) {
		t.Fatalf("Read: %v, want a retryable timeout", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("noticed after %v", d)
	}
}
