package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the delay between the attempts of Keep: Initial after the first
// failure, doubling after each further one up to Max, of which the fraction
// Jitter is random (spec section "Retry": exponential backoff with random
// jitter). A nil *Backoff or a zero field means the default.
type Backoff struct {
	// Initial is the first delay. Zero means 500 milliseconds.
	Initial time.Duration

	// Max caps the delay. Zero means 30 seconds.
	Max time.Duration

	// Jitter is the random fraction of each delay: a delay d becomes a
	// uniformly random duration in [d*(1-Jitter), d], so 1 is "full jitter".
	// Zero means 0.5; a negative value means no jitter. Values above 1 count
	// as 1.
	Jitter float64
}

// stableAfter is how long a connection must last for Keep to start its
// backoff again from Initial. A variable so that tests can shorten it.
var stableAfter = time.Minute

// Keep keeps a connection to url up: it dials, passes the Conn to fn, and
// when the socket ends in a way spec section "Retry" marks retryable, it
// waits and dials again. fn must return when it is done with the Conn or when
// the Conn fails, with the error from Read or Write (possibly wrapped with
// %w); Keep closes the Conn after fn returns, so fn must not keep it.
//
// Keep never classifies errors itself where the spec decides: after a socket
// ended, the client state machine's Retry decides (a retryable close code of
// the server such as 1001, 4007 keepalive_timeout, 4009 slow_reader or 4010
// token_expired; a connection lost without a Close frame; a retryable failure
// the client detected, such as handshake_timeout); an upgrade refused with an
// HTTP status is retried as protocol.UpgradeRefused says (429, 503, 502,
// 504). A network failure before the upgrade is retried; a TLS certificate
// the client does not accept, a server that does not select wsproof.v1, or a
// URL Dial refuses is not. Before each new attempt Keep waits as b says; the
// delay starts again from b.Initial after a connection that stayed up for a
// minute or more.
//
// Keep returns nil when fn returns nil; the error when it is terminal (a
// *CloseError that is not Retryable, a non-retryable spec code such as any
// authentication failure, a configuration error, or an error of fn's own,
// which is anything but the Conn's end); and ctx.Err() when ctx ends.
func Keep(ctx context.Context, url string, cfg *Config, b *Backoff, fn func(ctx context.Context, c *Conn) error) error {
	s, err := newSetup(cfg)
	if err != nil {
		return err
	}
	bo := b.withDefaults()
	for attempt := 0; ; attempt++ {
		c, retry, err := s.dial(ctx, url)
		if err == nil {
			start := time.Now()
			err = fn(ctx, c)
			retry = c.retryAfter(err)
			c.Close()
			if err == nil {
				return nil
			}
			if time.Since(start) >= stableAfter {
				attempt = 0
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retry {
			return err
		}
		t := time.NewTimer(bo.delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (b *Backoff) withDefaults() Backoff {
	var bo Backoff
	if b != nil {
		bo = *b
	}
	if bo.Initial <= 0 {
		bo.Initial = 500 * time.Millisecond
	}
	if bo.Max <= 0 {
		bo.Max = 30 * time.Second
	}
	if bo.Max < bo.Initial {
		bo.Max = bo.Initial
	}
	switch {
	case bo.Jitter == 0:
		bo.Jitter = 0.5
	case bo.Jitter < 0:
		bo.Jitter = 0
	case bo.Jitter > 1:
		bo.Jitter = 1
	}
	return bo
}

// delay is the wait before attempt n+1, counting from 0.
func (b Backoff) delay(n int) time.Duration {
	d := b.Initial
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(rand.Float64()*b.Jitter*float64(d))
}
