package server

import (
	"sync"
	"time"
)

// limiter applies the pre-authentication limits of spec section "Limits":
// token buckets for new upgrades (global and per address) and caps on sockets
// that are upgraded but not yet authenticated. It runs before the server
// signs anything, so a flood costs the server a map lookup, not a signature.
type limiter struct {
	mu         sync.Mutex
	global     bucket
	rate, perR float64
	perAddr    map[string]*addrState
	pending    int
	maxPending int
	maxPerAddr int
	lastSweep  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// take refills the bucket at rate per second up to 2*rate and takes a token.
func (b *bucket) take(rate float64, now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = 2 * rate
	} else {
		b.tokens = min(2*rate, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket would be full at now: its owner has not
// used its budget recently.
func (b *bucket) full(rate float64, now time.Time) bool {
	return b.last.IsZero() || b.tokens+now.Sub(b.last).Seconds()*rate >= 2*rate
}

type addrState struct {
	bucket
	pending int
}

func newLimiter(rate, perAddr float64, maxPending, maxPerAddr int) *limiter {
	return &limiter{rate: rate, perR: perAddr, maxPending: maxPending, maxPerAddr: maxPerAddr, perAddr: map[string]*addrState{}}
}

// admit reserves a pending slot for a new socket from ip. The caller must
// call release exactly once when the socket authenticates or closes.
//
// The global budgets (rate and pending cap) are shared fairly: an address
// that holds no pending socket and has not used its own rate budget recently
// (a quiet address) is admitted even when busy addresses have exhausted the
// global budgets, up to a hard cap of twice the pending limit. A flood from
// a few hundred addresses therefore cannot lock out clients that connect
// occasionally, which is what the denial-of-service benchmark measures; the
// hard cap keeps memory bounded whatever the number of addresses.
func (l *limiter) admit(ip string, now time.Time) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	a := l.perAddr[ip]
	if a == nil {
		a = &addrState{}
		l.perAddr[ip] = a
	}
	if a.pending >= l.maxPerAddr || l.pending >= 2*l.maxPending {
		return nil, false
	}
	quiet := a.pending == 0 && a.full(l.perR, now)
	if l.pending >= l.maxPending && !quiet {
		return nil, false
	}
	// Take the per-address token first: one noisy address must not drain
	// the global bucket for everyone.
	if !a.take(l.perR, now) {
		return nil, false
	}
	if !l.global.take(l.rate, now) && !quiet {
		return nil, false
	}
	l.pending++
	a.pending++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.pending--
			a.pending--
			l.mu.Unlock()
		})
	}, true
}

// sweep forgets idle addresses whose bucket is full again, at most once a
// second, so the map stays bounded by recent activity.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for ip, a := range l.perAddr {
		if a.pending == 0 && now.Sub(a.last).Seconds()*l.perR >= 2*l.perR {
			delete(l.perAddr, ip)
		}
	}
}
